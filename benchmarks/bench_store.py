"""Cost of the store's integrity checks on an artifact set of the demo's sizes.

Builds, in a temporary store, three teacher pools (JSONL, ~2, 5 and 10 MB) and a checkpoint folder with a 517 MB
``model.safetensors`` (random bytes) plus small config/tokenizer files, then times:

- the build's inventory (``digest_s`` in each manifest: sizes, SHA-256, rows, once per artifact);
- ``is_done`` sizes only (``Store(root, digests=False)``);
- ``is_done`` with digests, cold (the per-process digest cache emptied: what a new process pays once per file;
  the files are in the page cache, so this is hashing speed, not disk speed);
- ``is_done`` with digests, warm (cached by path, size, mtime_ns: every later reuse in the same process).

With ``--store PATH`` (an existing store, e.g. the demo's ``cache``) it times instead the check of every finished
artifact in it, cold (SHA-256 of every file) then warm. With ``--model-folder PATH`` (a model folder, e.g. a copy of the
converted SmolLM2) it times the key of a student at that folder (``student.hf_id=PATH``: its files' digests,
:func:`mixgap.stages.models.student_spec`), cold then warm.

Usage: ``python benchmarks/bench_store.py [--checkpoint-mb 517] [--repeat 5]``,
``python benchmarks/bench_store.py --store cache`` or ``python benchmarks/bench_store.py --model-folder DIR``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

from omegaconf import OmegaConf

from mixgap.core import digests
from mixgap.core.store import ArtifactSpec, Store
from mixgap.stages import models


def pool_rows(megabytes: float, seed: int) -> str:
    """JSONL text of pool rows (a ~1.5 kB response each) until ``megabytes`` is reached."""
    rng, out, size, i = random.Random(seed), [], 0, 0
    while size < megabytes * 1e6:
        words = " ".join(rng.choice(["so", "the", "sum", "is", "x", "=", "2", "\\frac{1}{2}"]) for _ in range(300))
        line = json.dumps({"id": f"p{i}", "problem": f"Problem {i}", "answer": str(i), "response": words,
                           "teacher": "t", "cot": "long", "completion_tokens": 400}) + "\n"
        out.append(line)
        size, i = size + len(line), i + 1
    return "".join(out)


def checkpoint(out: Path, megabytes: int) -> None:
    with open(out / "model.safetensors", "wb") as fh:
        for _ in range(megabytes):
            fh.write(os.urandom(1 << 20))
    (out / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 576}))
    (out / "tokenizer.json").write_text(json.dumps({"vocab": {str(i): i for i in range(49152)}}))


def timed(fn, repeat: int) -> float:
    """Median seconds of ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def whole_store(root: Path) -> None:
    """Print the cost of checking every finished artifact of the store at ``root``: cold, then warm."""
    store = Store(root)
    keys = sorted(p.name for p in root.glob("*/*") if (p / "manifest.json").is_file())
    size = sum(f.stat().st_size for k in keys for f in store.path(k).rglob("*") if f.is_file())
    digests.forget()
    start = time.perf_counter()
    sound = [store.is_done(k) for k in keys]
    cold = time.perf_counter() - start
    warm = timed(lambda: [store.is_done(k) for k in keys], 3)
    print(f"{root}: {len(keys)} artifacts, {size / 2**20:,.0f} MiB, all sound: {all(sound)}; "
          f"cold {cold:.2f} s, warm {warm * 1000:.1f} ms")


def model_folder_key(folder: Path, repeat: int) -> None:
    """Print the cost of a student's key at ``folder`` (its files' digests): cold (a new process), then warm."""
    student = OmegaConf.create({"hf_id": str(folder), "revision": None, "gguf": None, "chat_template": "model"})
    size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
    digests.forget()
    start = time.perf_counter()
    key = models.student_spec(student).key
    cold = time.perf_counter() - start
    warm = timed(lambda: models.student_spec(student), repeat)
    print(f"{folder}: {size / 1e6:,.0f} MB, key {key}; cold {cold:.2f} s, warm {warm * 1000:.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint-mb", type=int, default=517)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--store", type=Path, help="time the check of every artifact of this existing store instead")
    parser.add_argument("--model-folder", type=Path, help="time the key of a student at this model folder instead")
    args = parser.parse_args()
    if args.store is not None:
        whole_store(args.store)
        return
    if args.model_folder is not None:
        model_folder_key(args.model_folder, args.repeat)
        return
    root = Path(tempfile.mkdtemp(prefix="bench-store-"))
    try:
        store = Store(root)
        specs = {}
        for i, mb in enumerate((2, 5, 10)):
            text = pool_rows(mb, i)
            specs[f"pool {mb} MB"] = spec = ArtifactSpec("pool", {"i": i})
            store.get_or_build(spec, lambda out, _w, t=text: (out / "pool.jsonl").write_text(t) and None)
        specs["checkpoint"] = spec = ArtifactSpec("checkpoint", {"mb": args.checkpoint_mb})
        store.get_or_build(spec, lambda out, _w: checkpoint(out, args.checkpoint_mb))
        sizes_only = Store(root, digests=False)
        print(f"store {root}: checkpoint {args.checkpoint_mb} MB, median of {args.repeat}")
        print(f"{'artifact':<14} {'MB':>8} {'build inventory s':>18} {'sizes s':>9} {'cold digest s':>14} "
              f"{'warm digest s':>14}")
        for name, spec in specs.items():
            mb = sum(f["bytes"] for f in store.manifest(spec.key)["files"].values()) / 1e6
            inventory = store.manifest(spec.key)["digest_s"]
            size_s = timed(lambda k=spec.key: sizes_only.is_done(k), args.repeat)
            cold = timed(lambda k=spec.key: (digests.forget(), store.is_done(k)), args.repeat)
            warm = timed(lambda k=spec.key: store.is_done(k), args.repeat)
            print(f"{name:<14} {mb:>8.1f} {inventory:>18.3f} {size_s:>9.5f} {cold:>14.3f} {warm:>14.5f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
