"""Speed of launch.py's one-line refusals: a bad command must be refused before Hydra composes anything, in under
3 s on a 2-core machine (the target the integration tests of tests/integration/test_cli_refusals.py used to time).
`python benchmarks/bench_cli.py [--repeats 3]`: the best of the repeats per command, and the slowest of those."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 3.0
COMMANDS = (["student=qwen99b"], ["benchmark=[mathx]"], ["mix.weight=abc"], ["mix.weight=0,1"],
            ["+experiment=demo", "mix.wieght=0.2"], ["-m", "student=qwen3b,qwen99b"])


def refusal_s(args: list[str], cwd: str) -> float:
    """Seconds from start to exit of ``launch.py <args>``, which must refuse (exit 2)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(ROOT / "launch.py"), *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=120)
    elapsed = time.perf_counter() - start
    if proc.returncode != 2:
        raise SystemExit(f"launch.py {' '.join(args)} exited {proc.returncode}, not 2: {proc.stderr[-500:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    repeats = parser.parse_args().repeats
    best = {}
    with tempfile.TemporaryDirectory() as cwd:
        for args in COMMANDS:
            best[" ".join(args)] = min(refusal_s(args, cwd) for _ in range(repeats))
    for command, seconds in best.items():
        print(f"{seconds:6.2f} s  launch.py {command}")
    worst = max(best.values())
    print(f"slowest refusal {worst:.2f} s (target < {TARGET_S:.0f} s): {'ok' if worst < TARGET_S else 'OVER'}")


if __name__ == "__main__":
    main()
