"""Write ``requirements/cluster.lock.txt``: the exact stack ``pip install -e ".[gpu,dev]"`` resolves to today.

Run by ``make lock`` (``python requirements/lock.py``; nothing is installed: ``pip install --dry-run --ignore-installed --report``). The file is
a pip constraints file, one ``name==version`` a line, sorted, for every package of the GPU install (vLLM,
its CUDA torch, transformers, DeepSpeed, ...) and of the test extras:

- the cluster installs with it: ``pip install -c requirements/cluster.lock.txt -e ".[gpu]"``;
- ``make setup`` installs ``.venv`` with it, less the lines of :data:`CPU_EXEMPT` (``python requirements/lock.py
  --cpu-constraints <file>``: the CPU torch wheel stays ``TORCH``; vLLM and its CUDA packages are not installed
  there), so every package the tests share with the
  cluster has the cluster's version; ``tests/unit/test_stack.py`` fails when ``.venv`` drifts from it.

The resolution is pip's on the Python that runs this script (CPython 3.11 on Linux x86_64 here); a pip
configuration's own constraints (``pip config list``) apply to it too and are named in the header.
"""

from __future__ import annotations

import json
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "cluster.lock.txt"
EXTRAS = "gpu,dev"
#: Lines ``make setup`` leaves out of ``.venv``'s constraints: the CPU torch wheel replaces the CUDA build (and
#: the packages only the CUDA build or vLLM bring), and vLLM runs on the CPU only in ``.venv-vllm``.
CPU_EXEMPT = re.compile(r"^(torch|torchvision|torchaudio|torchcodec|triton|vllm|nvidia-[a-z0-9-]+|cuda-[a-z0-9-]+)==")


def canonical(name: str) -> str:
    """PEP 503's normalised name (``Jinja2`` -> ``jinja2``, ``typing_extensions`` -> ``typing-extensions``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def resolve(extras: str = EXTRAS) -> dict[str, str]:
    """``{normalised name: version}`` pip would install for ``-e .[extras]`` into an empty environment."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                        "--report", str(report), "-e", f"{ROOT}[{extras}]"], check=True)
        installs = json.loads(report.read_text())["install"]
    return {canonical(i["metadata"]["name"]): i["metadata"]["version"] for i in installs
            if canonical(i["metadata"]["name"]) != "mixgap"}


def pip_constraints() -> str:
    """The constraints a pip configuration of this machine adds (``global.constraint``), or ``none``."""
    out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
    found = [line.split("=", 1)[1].strip("'") for line in out.splitlines() if line.split("=", 1)[0].endswith(".constraint")]
    return ", ".join(found) or "none"


def cpu_constraints(out: Path) -> None:
    """Write the lock less its :data:`CPU_EXEMPT` lines to ``out``: the constraints ``.venv`` installs with."""
    lines = [line for line in LOCK.read_text().splitlines() if not CPU_EXEMPT.match(line)]
    out.write_text("\n".join(lines) + "\n")


def main() -> None:
    if sys.argv[1:2] == ["--cpu-constraints"]:
        cpu_constraints(Path(sys.argv[2]))
        return
    pins = resolve()
    pip = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True, text=True).stdout.split()[1]
    header = [
        "# The cluster stack: pip's resolution of `pip install -e \".[gpu,dev]\"`, written by `make lock`",
        f"# (requirements/lock.py; pip {pip}, CPython {platform.python_version()}, {platform.system()} "
        f"{platform.machine()}; pip's own constraints: {pip_constraints()}).",
        "# GPU install: pip install -c requirements/cluster.lock.txt -e \".[gpu]\"",
        "# .venv (make setup) installs with these pins except torch/vLLM/CUDA lines (requirements/lock.py CPU_EXEMPT).",
    ]
    LOCK.write_text("\n".join(header + [f"{n}=={v}" for n, v in sorted(pins.items())]) + "\n")
    print(f"wrote {LOCK.relative_to(ROOT)}: {len(pins)} packages (transformers {pins.get('transformers')}, "
          f"vllm {pins.get('vllm')}, torch {pins.get('torch')})")


if __name__ == "__main__":
    main()
