"""Download the wheels `make gpu-check` needs on a bare GPU box into one folder: ``make gpu-wheels`` (-> ``.whl/``).

A lent GPU machine has Python 3.12, PyTorch 2.11 (CUDA), transformers 5.17, tokenizers 0.23.2, peft, accelerate 1.15,
safetensors 0.8.0, huggingface-hub 1.33, PyYAML, pyarrow, pandas, tqdm, ... and neither Hydra, OmegaConf, DeepSpeed,
datasets, vLLM nor math-verify; nothing can be downloaded there. This fetches, at the versions of
``requirements/cluster.lock.txt``, for CPython 3.12 on manylinux x86_64, without their dependencies:

- :data:`WHEELS`: the stack gpu-check compares with the lock (transformers, tokenizers, peft, accelerate, datasets,
  Hydra, OmegaConf, math-verify) and what they need that the box lacks (datasets: dill, multiprocess; math-verify:
  latex2sympy2_extended; DeepSpeed: hjson, pydantic and its core);
- :data:`BUILT`: the two that PyPI has only as source, built here with ``pip wheel`` into pure-Python wheels:
  DeepSpeed (``DS_BUILD_OPS=0``: no op compiled here; on the GPU its ops compile on first use) and
  antlr4-python3-runtime 4.9.3 (the parser runtime Hydra and OmegaConf pin).

vLLM is not among them (hundreds of MB with its CUDA kernels): its checks say ``skipped: vllm not installed``.
huggingface-hub stays the box's (2.x needs httpx2, which the box lacks; gpu-check downloads nothing).

On the box (the device tool's README)::

    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site && python3 benchmarks/gpu_check.py

    python requirements/gpu_wheels.py [--dest .whl]      # prints each wheel's size and the total
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "cluster.lock.txt"
WHEELS = ("transformers", "tokenizers", "peft", "accelerate", "datasets", "dill", "multiprocess", "hydra-core",
          "omegaconf", "math-verify", "latex2sympy2-extended", "hjson", "pydantic", "pydantic-core", "annotated-types",
          "typing-inspection", "typing-extensions")
BUILT = ("deepspeed", "antlr4-python3-runtime")
#: The box's interpreter and platform (pip download's cross-platform options; pip matches manylinux tags exactly).
TARGET = ("--python-version", "3.12", "--implementation", "cp", "--platform", "manylinux_2_28_x86_64",
          "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64")
MIB = 2 ** 20


def pins(names: tuple[str, ...], lock: Path = LOCK) -> list[str]:
    """``name==version`` for each of ``names`` as the lock pins it.

    Raises:
        SystemExit: a name the lock does not pin (run ``make lock``).
    """
    locked = {}
    for line in lock.read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            locked[name.strip().lower()] = version.strip()
    absent = [n for n in names if n not in locked]
    if absent:
        raise SystemExit(f"not in {lock.name}: {', '.join(absent)} (run `make lock`)")
    return [f"{n}=={locked[n]}" for n in names]


def tracked_bytes() -> int:
    """Bytes of the files git tracks in the checkout (what travels to the device machine besides the wheels)."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    return sum((ROOT / f.decode()).stat().st_size for f in files if f and (ROOT / f.decode()).is_file())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dest", default=str(ROOT / ".whl"), help="the folder (emptied first: one version of each)")
    dest = Path(p.parse_args(argv).dest)
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    pip = [sys.executable, "-m", "pip"]
    subprocess.run([*pip, "download", "--no-deps", "--only-binary=:all:", *TARGET, "-d", str(dest), *pins(WHEELS)],
                   check=True)
    subprocess.run([*pip, "wheel", "--no-deps", "--no-cache-dir", "-w", str(dest), *pins(BUILT)], check=True,
                   env={**os.environ, "DS_BUILD_OPS": "0"})
    wheels = sorted(dest.glob("*.whl"))
    not_pure = [w.name for w in wheels if any(w.name.startswith(b.replace("-", "_")) for b in BUILT)
                and not w.name.endswith("-py3-none-any.whl")]
    if not_pure:
        raise SystemExit(f"built wheels are not pure Python (py3-none-any): {not_pure}")
    for wheel in wheels:
        print(f"{wheel.stat().st_size / MIB:8.2f} MiB  {wheel.name}")
    total, repo = sum(w.stat().st_size for w in wheels), tracked_bytes()
    print(f"{total / MIB:8.2f} MiB  {len(wheels)} wheels in {dest}; with the checkout's tracked files "
          f"({repo / MIB:.2f} MiB): {(total + repo) / MIB:.2f} MiB of the device tool's 64 MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
