"""Speed of the paired bootstrap (mixgap.stats), 10,000 resamples: `python benchmarks/bench_stats.py`."""

from __future__ import annotations

import time

import numpy as np

from mixgap.stats.bootstrap import accuracy_ci, compare, mean_ci


def best_ms(fn, reps: int = 5) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * min(times)


def main() -> None:
    rng = np.random.default_rng(1)
    n = 5000
    a, b = rng.random(n) < 0.6, rng.random(n) < 0.55
    seeds_a, seeds_b = rng.random((3, n)) < 0.6, rng.random((3, n)) < 0.55
    sizes = {"math500": 500, "gsm8k": 1319, "aime24": 30, "amc23": 40, "olympiadbench": 675}
    arms = [{k: rng.random(v) < 0.5 for k, v in sizes.items()} for _ in range(2)]
    worst_a, worst_b = rng.random((8, n)) < 0.6, rng.random((8, n)) < 0.55
    cases = [
        ("compare, 1 benchmark x 5000 problems, 1 seed per arm", lambda: compare({"m": a}, {"m": b}), 5),
        ("accuracy_ci, 5000 problems", lambda: accuracy_ci(a), 5),
        ("compare, 5000 problems, 3+3 independent seeds", lambda: compare({"m": seeds_a}, {"m": seeds_b}), 5),
        ("compare, the paper's 5 benchmarks (2564 problems)", lambda: compare(*arms), 5),
        ("worst case: 8+8 independent seeds, 5000 problems", lambda: compare({"m": worst_a}, {"m": worst_b}), 1),
        ("compare, identical arms (degenerate: Newcombe), 5000 problems", lambda: compare({"m": a}, {"m": a}), 5),
        ("mean_ci, 5000 problems x 1 sample (Wilson)", lambda: mean_ci(a), 5),
        ("mean_ci, 5000 problems x 4 samples (bootstrap)", lambda: mean_ci(rng.integers(0, 5, n) / 4), 5),
    ]
    for label, fn, reps in cases:
        print(f"{label:<64} {best_ms(fn, reps):8.1f} ms")


if __name__ == "__main__":
    main()
