"""The paired (two-level) percentile bootstrap of accuracies and gaps over problems and seeds.

Conventions: an *arm* (e.g. weight = 1) holds one run per seed, ``(S, n)`` (:mod:`mixgap.stats.runs`); the
arms of a comparison cover the same ``n`` problems in the same order. Values are in percent / points. The
average over benchmarks is the plain mean of per-benchmark accuracies (the paper's "Average"); its bootstrap
resamples each benchmark's problems independently (stratified) and averages the resampled values.

- Pairing: every resample draws the problems with replacement *once* and scores both arms on that draw,
  so shared problem difficulty cancels out of Δ (Efron & Tibshirani 1993, ch. 13; Koehn 2004; Dror et al. 2018).
- Several seeds: each resample first draws the arm's seeds with replacement (once, shared by all
  benchmarks: one seed is one trained model), then the problems (shared by all seeds and arms). Seeds and
  problems are crossed, so this is the two-way ("pigeonhole") bootstrap of Owen (2007, *Ann. Appl. Stat.*
  1(2)); Davison & Hinkley (1997) §3.8. With one seed it is the plain problem bootstrap.
- Exact and vectorised: a draw of ``n`` problems matters only through how often each distinct correctness
  pattern (a problem's column over all runs) is drawn, which is multinomial: O(B × k) for k patterns.

Intervals (:mod:`mixgap.stats.intervals`), right at 0 and n:

- one run on one benchmark: the Wilson score interval (0/8 is [0.0, 32.4]);
- the average, several seeds, or mean correctness: the percentile bootstrap; when it is degenerate (every
  run constant) Wilson on the pooled problems;
- Δ: the paired percentile bootstrap; when it is degenerate (every resample the same Δ: no discordant
  pairs, or every pair discordant the same way), Newcombe's paired score interval (method 10): φ from the observed
  2×2 table for one 0/1 run per arm, else φ = 0. Identical arms solving 5 of 30 give Δ 0.0 [−9.8, 9.8].
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mixgap.stats.intervals import (
    Interval,
    check_boot,
    clean,
    detectable_gap,
    interval_se,
    newcombe_paired_interval,
    newcombe_phi,
    paired_table,
    percentile_interval,
    verdict,
    wilson_interval,
)
from mixgap.stats.runs import as_scores

AVERAGE = "average"
_CHUNK_CELLS = 1 << 22  # multinomial draws per chunk (bounds memory: 32 MiB of counts)


@dataclass(frozen=True)
class Comparison:
    """Two arms on the same problems: each arm's accuracy and Δ = strong − weak, with intervals."""

    strong: Interval
    weak: Interval
    delta: Interval
    n: int  # problems (summed over benchmarks for the average)
    seeds: tuple[int, int]  # runs per arm (strong, weak)
    delta_se: float = float("nan")  # SE of Δ (points): :func:`delta_se`

    @property
    def detectable(self) -> float:
        """Smallest |Δ| this design detects with 80% power at α = 0.05 (points): ``detectable_gap(delta_se)``;
        never 0 from a degenerate bootstrap, whose SE is the Newcombe interval's (:func:`delta_se`)."""
        return detectable_gap(self.delta_se)

    @property
    def verdict(self) -> str:
        """``"Strong"`` when the Δ interval lies above 0, ``"Weak"`` below 0, else ``"n.s."``."""
        return verdict(self.delta)


def _resample_runs(matrix: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Per-run accuracies (fraction, shape ``(n_boot, R)``) on ``n_boot`` resamples of the problems.

    ``matrix`` is ``(R, n)``; one draw of problems with replacement is shared by all R runs (pairing).
    """
    runs, n = matrix.shape
    patterns, counts = np.unique(matrix.T, axis=0, return_counts=True)  # (k, R), (k,)
    weights = patterns.astype(np.float64) / n
    chunk = max(1, _CHUNK_CELLS // len(counts))
    out = np.empty((n_boot, runs))
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        drawn = rng.multinomial(n, counts / n, size=size)  # (size, k): times each pattern is drawn
        out[start : start + size] = drawn @ weights
    return out


def _seed_draws(seeds: int, n_boot: int, rng: np.random.Generator) -> np.ndarray | None:
    """Seed indices drawn with replacement, ``(n_boot, seeds)``; None for a single seed (nothing to draw)."""
    return None if seeds == 1 else rng.integers(0, seeds, size=(n_boot, seeds))


def _arm_mean(per_run: np.ndarray, draws: np.ndarray | None) -> np.ndarray:
    """Mean over the arm's (resampled) seeds: ``(n_boot, S)`` -> ``(n_boot,)``."""
    if draws is None:
        return per_run.mean(axis=1)
    return np.take_along_axis(per_run, draws, axis=1).mean(axis=1)


def _arms_matrix(arms: Sequence[Mapping[str, object]]) -> tuple[list[str], dict[str, list[np.ndarray]]]:
    """Validate the arms (same benchmarks, same n per benchmark) and convert them to run matrices."""
    if not arms or not arms[0]:
        raise ValueError("no benchmark given; each arm maps benchmark name -> 0/1 array (seeds, n)")
    names = list(arms[0])
    if AVERAGE in names:
        raise ValueError(f"benchmark name {AVERAGE!r} is reserved for the average over benchmarks")
    matrices: dict[str, list[np.ndarray]] = {}
    for name in names:
        matrices[name] = []
        for a, arm in enumerate(arms):
            if set(arm) != set(names):
                raise ValueError(f"arm {a} has benchmarks {sorted(arm)}; every arm needs exactly {sorted(names)}")
            matrices[name].append(as_scores(arm[name], f"arm {a} {name}"))
        sizes = {m.shape[1] for m in matrices[name]}
        if len(sizes) > 1:
            raise ValueError(f"benchmark {name}: arms cover different numbers of problems {sorted(sizes)}; align by id first")
    seeds = [m.shape[0] for m in matrices[names[0]]]
    for name in names[1:]:
        if [m.shape[0] for m in matrices[name]] != seeds:
            raise ValueError(f"benchmark {name}: seeds per arm differ from {names[0]}'s {seeds}; each seed needs every benchmark")
    return names, matrices


def bootstrap_arms(
    arms: Sequence[Mapping[str, object]], *, n_boot: int = 10_000, seed: int = 0
) -> tuple[dict[str, list[float]], dict[str, list[np.ndarray]]]:
    """Point accuracies and bootstrap resamples of several arms on the same problems.

    Args:
        arms: per arm, ``{benchmark: 0/1 array (S_arm, n_benchmark) or (n_benchmark,)}``; all arms give
            the same benchmarks with the same problems in the same order.
        n_boot: bootstrap resamples B.
        seed: seed of numpy's ``default_rng`` (same inputs and seed → same intervals).

    Returns:
        ``(points, samples)``, keyed by benchmark and :data:`AVERAGE`: per arm, the accuracy in percent
        (mean over seeds of the run accuracies; the average is the plain mean over benchmarks) and its
        ``(B,)`` resampled values (two-level, stratified: see the module docstring).

    Raises:
        ValueError: naming the arm or benchmark whose shape or values are wrong, or a bad ``n_boot``.
    """
    check_boot(n_boot)
    names, matrices = _arms_matrix(arms)
    rng = np.random.default_rng(seed)
    draws = [_seed_draws(m.shape[0], n_boot, rng) for m in matrices[names[0]]]
    points: dict[str, list[float]] = {}
    samples: dict[str, list[np.ndarray]] = {}
    for name in names:
        runs = matrices[name]
        per_run = _resample_runs(np.concatenate(runs), n_boot, rng)
        bounds = np.cumsum([0] + [m.shape[0] for m in runs])
        samples[name] = [100.0 * _arm_mean(per_run[:, lo:hi], d) for lo, hi, d in zip(bounds[:-1], bounds[1:], draws, strict=True)]
        points[name] = [clean(100.0 * m.mean()) for m in runs]
    points[AVERAGE] = [clean(np.mean([points[b][a] for b in names])) for a in range(len(arms))]
    samples[AVERAGE] = [np.mean([samples[b][a] for b in names], axis=0) for a in range(len(arms))]
    return points, samples


def _sizes(runs: Mapping[str, object]) -> dict[str, int]:
    """Problems per benchmark of an arm, and their sum under :data:`AVERAGE`."""
    sizes = {name: as_scores(runs[name]).shape[1] for name in runs}
    sizes[AVERAGE] = sum(sizes.values())
    return sizes


def arm_interval(
    runs: np.ndarray | None, estimate: float, samples: np.ndarray, n: int, confidence: float
) -> Interval:
    """The interval of one arm's accuracy (percent), by the rules of the module docstring.

    Args:
        runs: the arm's ``(S, n)`` matrix on one benchmark, or None for the average over benchmarks.
        estimate: the point accuracy in percent; samples: its ``(B,)`` bootstrap resamples.
        n: problems (summed over benchmarks for the average); confidence: coverage in (0, 1).

    Returns:
        Wilson (:func:`wilson_interval`) for a single 0/1 run on one benchmark, else the percentile bootstrap,
        falling back to Wilson on ``n`` pooled problems when every resample is equal; ``Interval.n = n``.
    """
    if runs is not None and runs.shape[0] == 1 and runs.dtype == bool:  # mean correctness (samples): bootstrap
        return Interval(estimate, *wilson_interval(int(runs.sum()), n, confidence), n=n)
    low, high = percentile_interval(samples, confidence)
    if low == high:  # every run constant: the bootstrap of a constant claims certainty
        low, high = wilson_interval(int(round(estimate * n / 100.0)), n, confidence)
    return Interval(estimate, low, high, n=n)


def paired_phi(strong: np.ndarray | None, weak: np.ndarray | None) -> float:
    """φ of Newcombe's interval for two arms' ``(S, n)`` matrices on one benchmark: :func:`newcombe_phi` of
    their 2×2 table when each arm is one 0/1 run, else 0 (several seeds, mean correctness, or None for the
    average over benchmarks: no single 2×2 table)."""
    if strong is None or weak is None or strong.shape[0] != 1 or weak.shape[0] != 1:
        return 0.0
    if strong.dtype != bool or weak.dtype != bool:
        return 0.0
    return newcombe_phi(*paired_table(strong[0], weak[0]))


def degenerate(samples: np.ndarray) -> bool:
    """Whether every resampled Δ is the same (to 1e-9 points): the paired bootstrap then has SE 0 and claims
    certainty. For one 0/1 run per arm this is a table without discordant pairs, or with every pair
    discordant the same way (n/n against 0/n)."""
    return bool(np.ptp(samples) < 1e-9)


def delta_interval(
    strong: Interval, weak: Interval, samples: np.ndarray, confidence: float, phi: float = 0.0
) -> Interval:
    """Δ = strong − weak with its paired percentile-bootstrap interval (``samples``: ``(B,)`` resampled Δs);
    when the bootstrap is :func:`degenerate`, :func:`newcombe_paired_interval` with ``phi``
    (:func:`paired_phi`) from the arms' intervals instead."""
    if degenerate(samples):
        low, high = newcombe_paired_interval(strong, weak, phi)
    else:
        low, high = percentile_interval(samples, confidence)
    return Interval(clean(strong.estimate - weak.estimate), low, high, n=strong.n)


def delta_se(samples: np.ndarray, delta: Interval, confidence: float) -> float:
    """SE of Δ (points): the standard deviation of the resampled Δs; when the paired bootstrap is
    :func:`degenerate` (its SE is 0), the SE implied by the Newcombe interval that replaced it,
    ``(U − L) / (2·z_{(1+c)/2})`` (:func:`mixgap.stats.intervals.interval_se`). The detectable |Δ|
    (:func:`detectable_gap`) is derived from this, so it is never 0 from a degenerate bootstrap."""
    return interval_se(delta, confidence) if degenerate(samples) else clean(np.std(samples))


def accuracy(
    runs: Mapping[str, object], *, n_boot: int = 10_000, seed: int = 0, confidence: float = 0.95
) -> dict[str, Interval]:
    """Accuracy of one arm per benchmark and on average, with intervals (:func:`arm_interval`).

    Args:
        runs: ``{benchmark: 0/1 array (S, n) or (n,)}`` (S seeds of the arm).
        n_boot, seed, confidence: bootstrap resamples, RNG seed, interval coverage in (0, 1).

    Returns:
        ``{benchmark: Interval, ..., "average": Interval}`` in percent.
    """
    check_boot(n_boot, confidence)
    points, samples = bootstrap_arms([runs], n_boot=n_boot, seed=seed)
    sizes = _sizes(runs)
    return {name: arm_interval(as_scores(runs[name]) if name != AVERAGE else None, points[name][0], samples[name][0],
                               sizes[name], confidence) for name in points}


def compare(
    strong: Mapping[str, object],
    weak: Mapping[str, object],
    *,
    n_boot: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Comparison]:
    """Δ = P_strong − P_weak per benchmark and on average, by the paired (two-level) bootstrap.

    Args:
        strong, weak: ``{benchmark: 0/1 array (S, n) or (n,)}`` on the same problems (see
            :func:`mixgap.stats.runs.align`); the arms may have different numbers of seeds.
        n_boot, seed, confidence: bootstrap resamples, RNG seed, interval coverage in (0, 1).

    Returns:
        ``{benchmark: Comparison, ..., "average": Comparison}``: each arm's accuracy and Δ (percentage
        points) with intervals (:func:`arm_interval`, :func:`delta_interval`); Δ's resamples are the
        differences of the arms' resamples on the same problem (and seed) draws; ``delta_se``: :func:`delta_se`.
    """
    check_boot(n_boot, confidence)
    points, samples = bootstrap_arms([strong, weak], n_boot=n_boot, seed=seed)
    seeds = (as_scores(next(iter(strong.values()))).shape[0], as_scores(next(iter(weak.values()))).shape[0])
    sizes = _sizes(strong)
    out = {}
    for name in points:
        (p_s, p_w), (s_s, s_w) = points[name], samples[name]
        runs = (as_scores(strong[name]), as_scores(weak[name])) if name != AVERAGE else (None, None)
        arm_s = arm_interval(runs[0], p_s, s_s, sizes[name], confidence)
        arm_w = arm_interval(runs[1], p_w, s_w, sizes[name], confidence)
        delta = delta_interval(arm_s, arm_w, s_s - s_w, confidence, paired_phi(*runs))
        out[name] = Comparison(strong=arm_s, weak=arm_w, delta=delta, n=sizes[name], seeds=seeds,
                               delta_se=delta_se(s_s - s_w, delta, confidence))
    return out


def accuracy_ci(
    correct: object, *, n_boot: int = 10_000, seed: int = 0, confidence: float = 0.95
) -> tuple[float, float]:
    """Interval ``(low, high)`` in percent of the accuracy of one benchmark run (Wilson for one run, else the
    percentile bootstrap: :func:`arm_interval`).

    Args:
        correct: 0/1 per problem, shape ``(n,)``; or ``(S, n)`` for S seeds (two-level bootstrap).
        n_boot, seed, confidence: bootstrap resamples, RNG seed, interval coverage in (0, 1).
    """
    result = accuracy({"benchmark": correct}, n_boot=n_boot, seed=seed, confidence=confidence)["benchmark"]
    return result.low, result.high


def paired_delta(
    strong: object, weak: object, *, n_boot: int = 10_000, seed: int = 0, confidence: float = 0.95
) -> Interval:
    """Δ = P_strong − P_weak (percentage points) on one benchmark, paired interval (:func:`compare`)."""
    result = compare({"benchmark": strong}, {"benchmark": weak}, n_boot=n_boot, seed=seed, confidence=confidence)
    return result["benchmark"].delta


def mean_ci(
    scores: object, *, n_boot: int = 10_000, seed: int = 0, confidence: float = 0.95
) -> tuple[float, float, float]:
    """``(low, high, se)`` in percent of a benchmark's pass@1 from its per-problem correctness.

    Args:
        scores: per problem, shape ``(n,)``: a 0/1 verdict (one sample) or its mean correctness over samples
            in [0, 1].
        n_boot, seed, confidence: bootstrap resamples, RNG seed, interval coverage in (0, 1).

    Returns:
        When every value is 0 or 1: the Wilson interval of k = sum of n (:func:`wilson_interval`, as the
        report's single runs; 0/30 is not [0, 0]) and the SE ``100·sqrt(p(1−p)/n)``, which is the exact
        standard deviation of the bootstrap distribution of a mean of n 0/1 values. Otherwise the percentile
        interval of the problem bootstrap (each problem carrying its mean) and the SD of its resamples.

    Raises:
        ValueError: for an empty array, a value outside [0, 1], or bad ``n_boot`` / ``confidence``.
    """
    check_boot(n_boot, confidence)
    runs = as_scores(scores, "scores")
    if runs.dtype == bool and runs.shape[0] == 1:
        n, k = runs.shape[1], int(runs.sum())
        return (*wilson_interval(k, n, confidence), clean(100.0 * np.sqrt(k / n * (1 - k / n) / n)))
    _, samples = bootstrap_arms([{"benchmark": scores}], n_boot=n_boot, seed=seed)
    low, high = percentile_interval(samples["benchmark"][0], confidence)
    return low, high, clean(np.std(samples["benchmark"][0]))
