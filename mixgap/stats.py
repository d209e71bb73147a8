"""Accuracy and gap statistics with bootstrap confidence intervals.

The paper (Li et al., 2025) reports point estimates only; a gap such as Δ_Long = P_Long − P_Short is
read here with a **paired percentile bootstrap** over problems (Efron & Tibshirani 1993, *An Introduction
to the Bootstrap*, ch. 13; paired resampling of test items as in Koehn 2004 and Dror et al. 2018): every
resample draws the benchmark's problems with replacement *once* and scores both arms on that same draw,
so the arms' shared problem difficulty cancels out of Δ.

Conventions (all functions):

- A *run* is one evaluated model on one benchmark: a 0/1 vector over the benchmark's problems. An *arm*
  is one condition (e.g. weight = 1) and holds one run per seed: an array of shape ``(S, n)`` (or ``(n,)``
  for a single seed). Runs of every arm of a comparison must cover the same ``n`` problems in the same
  order (join by problem id first: :func:`align`).
- Accuracies and gaps are in **percent / percentage points** (0–100), like the paper's tables.
- The average over benchmarks is the plain mean of per-benchmark accuracies (the paper's "Average"); its
  bootstrap resamples each benchmark's problems independently (stratified) and averages the resampled
  per-benchmark values.
- With several seeds the bootstrap has **two levels**: each resample first draws the arm's seeds with
  replacement (once, shared by all benchmarks, since one seed is one trained model), then the problems
  (shared by all seeds and arms, keeping the pairing). Seeds and problems are crossed, not nested, so this
  is the conservative two-way ("pigeonhole") bootstrap of Owen (2007, *Ann. Appl. Stat.* 1(2)); see also
  Davison & Hinkley (1997) §3.8 on hierarchical data. With one seed it reduces to the plain problem bootstrap.
- Intervals are percentile intervals: the ``(1−c)/2`` and ``(1+c)/2`` quantiles of the resampled values,
  taken as order statistics (``numpy.quantile(..., method="inverted_cdf")``; Efron & Tibshirani ch. 13).

Intervals that must be right at 0 and n (issue 13): a percentile bootstrap of a constant (0/8) is [0, 0],
which claims certainty. So:

- One run on one benchmark: the **Wilson score interval** (Wilson 1927, *JASA* 22(158); recommended for
  small n by Brown, Cai & DasGupta 2001, *Stat. Sci.* 16(2)), :func:`wilson_interval`: 0/8 is [0.0, 32.4].
- The average, or several seeds: the percentile bootstrap; only when it is degenerate (every resample equal,
  i.e. every run constant) the Wilson interval on the pooled problems (k = estimate × N, N = problems summed
  over benchmarks).
- Δ: the paired percentile bootstrap; when it is degenerate and both arms are 0/n or n/n (every resample
  gives the same Δ), Newcombe's paired hybrid score interval (Newcombe 1998, *Stat. Med.* 17(22), method 10)
  from the arms' Wilson intervals, with φ = 0 as Newcombe sets it when a margin is empty
  (:func:`newcombe_paired_interval`): 0/8 vs 0/8 is Δ = 0.0 [−32.4, 32.4], never [0, 0].

Resampling is exact and vectorised: drawing ``n`` problems with replacement only matters through how many
times each distinct *correctness pattern* (the problem's 0/1 column over all runs) is drawn, which is
multinomial; cost is O(n_boot × k) for k distinct patterns (k ≤ min(n, 2^runs); 4 for a single-seed pair).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

AVERAGE = "average"
_CHUNK_CELLS = 1 << 22  # multinomial draws per chunk (bounds memory: 32 MiB of counts)


@dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap percentile interval, in percent (or percentage points)."""

    estimate: float
    low: float
    high: float
    n: int | None = None  # problems behind the estimate (summed over benchmarks for the average); None: unknown

    def fmt(self, digits: int = 1) -> str:
        """``"12.3 [10.1, 14.5]"``."""
        return f"{self.estimate:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


@dataclass(frozen=True)
class Comparison:
    """Two arms on the same problems: each arm's accuracy and Δ = strong − weak, with intervals."""

    strong: Interval
    weak: Interval
    delta: Interval
    n: int  # problems (summed over benchmarks for the average)
    seeds: tuple[int, int]  # runs per arm (strong, weak)
    delta_se: float = float("nan")  # bootstrap standard error of Δ (points): the sd of its resamples

    @property
    def detectable(self) -> float:
        """Smallest |Δ| this design detects with 80% power at α = 0.05 (points): :func:`detectable_gap`."""
        return detectable_gap(self.delta_se)

    @property
    def verdict(self) -> str:
        """``"Strong"`` when the Δ interval lies above 0, ``"Weak"`` below 0, else ``"n.s."``."""
        return verdict(self.delta)


def verdict(delta: Interval) -> str:
    """The paper's "Better?" column, decided by the interval: Strong (low > 0), Weak (high < 0) or n.s."""
    if delta.low > 0:
        return "Strong"
    if delta.high < 0:
        return "Weak"
    return "n.s."


def as_runs(correct: object, name: str = "correct") -> np.ndarray:
    """A run matrix of shape ``(S, n)`` (bool) from a 0/1 vector ``(n,)`` or matrix ``(S, n)``.

    Raises:
        ValueError: naming ``name``, for an empty array, more than 2 dimensions, or values other than 0/1.
    """
    array = np.asarray(correct)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty 0/1 array of shape (n,) or (seeds, n); got shape {array.shape}")
    if array.dtype != bool:
        if not np.isin(array, (0, 1)).all():
            raise ValueError(f"{name} must hold only 0/1 (or bool) values; got {np.unique(array)[:5].tolist()}")
        array = array.astype(bool)
    return array


def align(runs: Sequence[Mapping[str, bool]]) -> tuple[list[str], np.ndarray]:
    """Join runs by problem id: the sorted ids every run has, and the ``(len(runs), n)`` bool matrix.

    Args:
        runs: one ``{problem id: correct}`` mapping per run; ``correct`` is a bool, or a problem's mean
            correctness over its samples in [0, 1] (then the matrix is float, :func:`as_scores`).

    Returns:
        ``(ids, matrix)``; ``len(ids)`` is smaller than a run's size when the id sets differ (the caller
        warns with :func:`dropped_ids`).

    Raises:
        ValueError: when no run is given or the runs share no problem id.
    """
    if not runs:
        raise ValueError("runs is empty; give at least one {problem id: correct} mapping")
    ids = sorted(set.intersection(*(set(r) for r in runs)))
    if not ids:
        raise ValueError("the runs share no problem id; they did not evaluate the same benchmark")
    matrix = np.array([[float(r[i]) for i in ids] for r in runs])
    return ids, matrix.astype(bool) if np.isin(matrix, (0.0, 1.0)).all() else as_scores(matrix)


def dropped_ids(runs: Sequence[Mapping[str, bool]]) -> int:
    """How many problem ids appear in some run but not in all (left out by :func:`align`)."""
    sets = [set(r) for r in runs]
    return len(set.union(*sets) - set.intersection(*sets)) if sets else 0


def _check(n_boot: int, confidence: float | None = None) -> None:
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot={n_boot!r} is not allowed; it must be an integer >= 1 (e.g. 10000)")
    if confidence is not None and not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence={confidence!r} is not allowed; it must be in (0, 1), e.g. 0.95")


def percentile_interval(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    """The ``(1−c)/2`` and ``(1+c)/2`` order-statistic quantiles of bootstrap ``samples`` (shape ``(B,)``)."""
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(samples, [alpha, 1.0 - alpha], method="inverted_cdf")
    return _clean(low), _clean(high)


def _clean(value: float) -> float:
    """Round away float noise (e.g. 30.000000000000004 -> 30.0); 1e-9 points is far below any reported digit."""
    return round(float(value), 9) + 0.0  # + 0.0 turns -0.0 into 0.0


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
    _check(n_boot)
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
        points[name] = [_clean(100.0 * m.mean()) for m in runs]
    points[AVERAGE] = [_clean(np.mean([points[b][a] for b in names])) for a in range(len(arms))]
    samples[AVERAGE] = [np.mean([samples[b][a] for b in names], axis=0) for a in range(len(arms))]
    return points, samples


def accuracy(
    runs: Mapping[str, object], *, n_boot: int = 10_000, seed: int = 0, confidence: float = 0.95
) -> dict[str, Interval]:
    """Accuracy of one arm per benchmark and on average, with percentile bootstrap intervals.

    Args:
        runs: ``{benchmark: 0/1 array (S, n) or (n,)}`` (S seeds of the arm).
        n_boot, seed, confidence: bootstrap resamples, RNG seed, interval coverage in (0, 1).

    Returns:
        ``{benchmark: Interval, ..., "average": Interval}`` in percent.
    """
    _check(n_boot, confidence)
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
        strong, weak: ``{benchmark: 0/1 array (S, n) or (n,)}`` on the same problems (see :func:`align`);
            the arms may have different numbers of seeds.
        n_boot, seed, confidence: bootstrap resamples, RNG seed, interval coverage in (0, 1).

    Returns:
        ``{benchmark: Comparison, ..., "average": Comparison}``: each arm's accuracy and Δ (percentage
        points) with percentile intervals; Δ's resamples are the differences of the arms' resamples on
        the same problem (and seed) draws.
    """
    _check(n_boot, confidence)
    points, samples = bootstrap_arms([strong, weak], n_boot=n_boot, seed=seed)
    seeds = (as_scores(next(iter(strong.values()))).shape[0], as_scores(next(iter(weak.values()))).shape[0])
    sizes = _sizes(strong)
    out = {}
    for name in points:
        (p_s, p_w), (s_s, s_w) = points[name], samples[name]
        runs = (as_scores(strong[name]), as_scores(weak[name])) if name != AVERAGE else (None, None)
        arm_s = arm_interval(runs[0], p_s, s_s, sizes[name], confidence)
        arm_w = arm_interval(runs[1], p_w, s_w, sizes[name], confidence)
        out[name] = Comparison(
            strong=arm_s,
            weak=arm_w,
            delta=delta_interval(arm_s, arm_w, s_s - s_w, confidence),
            n=sizes[name],
            seeds=seeds,
            delta_se=_clean(np.std(s_s - s_w)),
        )
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
    """Δ = P_strong − P_weak (percentage points) on one benchmark, paired bootstrap interval."""
    result = compare({"benchmark": strong}, {"benchmark": weak}, n_boot=n_boot, seed=seed, confidence=confidence)
    return result["benchmark"].delta


def _sizes(runs: Mapping[str, object]) -> dict[str, int]:
    """Problems per benchmark of an arm, and their sum under :data:`AVERAGE`."""
    sizes = {name: as_scores(runs[name]).shape[1] for name in runs}
    sizes[AVERAGE] = sum(sizes.values())
    return sizes


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval ``(low, high)`` in percent for ``successes`` of ``n`` Bernoulli trials.

    ``(p + z²/2n ± z·sqrt(p(1−p)/n + z²/4n²)) / (1 + z²/n)`` with ``z`` the ``(1+c)/2`` normal quantile
    (Wilson 1927, *JASA* 22(158):209–212; Brown, Cai & DasGupta 2001, *Stat. Sci.* 16(2), eq. 4). Right at
    the ends: 0/n gives ``[0, z²/(n+z²)]``, n/n gives ``[n/(n+z²), 100]`` (0/8 at 95%: [0.0, 32.4]).

    Raises:
        ValueError: ``n < 1``, ``successes`` outside ``[0, n]``, or ``confidence`` outside (0, 1).
    """
    from statistics import NormalDist  # noqa: PLC0415

    if n < 1 or not 0 <= successes <= n:
        raise ValueError(f"wilson_interval: successes={successes!r} of n={n!r} is not allowed; need 0 <= successes <= n, n >= 1")
    _check(1, confidence)
    z = NormalDist().inv_cdf((1.0 + confidence) / 2.0)
    p = successes / n
    centre = p + z * z / (2 * n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    denom = 1 + z * z / n
    low = 0.0 if successes == 0 else (centre - half) / denom
    high = 1.0 if successes == n else (centre + half) / denom
    return _clean(100.0 * low), _clean(100.0 * high)


def arm_interval(
    runs: np.ndarray | None, estimate: float, samples: np.ndarray, n: int, confidence: float
) -> Interval:
    """The interval of one arm's accuracy (percent), by the rules of the module docstring.

    Args:
        runs: the arm's ``(S, n)`` bool matrix on one benchmark, or None for the average over benchmarks.
        estimate: the point accuracy in percent; samples: its ``(B,)`` bootstrap resamples.
        n: problems (summed over benchmarks for the average); confidence: coverage in (0, 1).

    Returns:
        Wilson (:func:`wilson_interval`) for a single run on one benchmark, else the percentile bootstrap,
        falling back to Wilson on ``n`` pooled problems when every resample is equal; ``Interval.n = n``.
    """
    if runs is not None and runs.shape[0] == 1 and runs.dtype == bool:  # mean correctness (samples): bootstrap
        return Interval(estimate, *wilson_interval(int(runs.sum()), n, confidence), n=n)
    low, high = percentile_interval(samples, confidence)
    if low == high:  # every run constant: the bootstrap of a constant claims certainty
        low, high = wilson_interval(int(round(estimate * n / 100.0)), n, confidence)
    return Interval(estimate, low, high, n=n)


def newcombe_paired_interval(strong: Interval, weak: Interval) -> tuple[float, float]:
    """Newcombe's paired hybrid score interval for Δ = P_strong − P_weak with φ = 0 (percentage points).

    ``L = Δ − sqrt((p1 − l1)² + (u2 − p2)²)``, ``U = Δ + sqrt((u1 − p1)² + (p2 − l2)²)`` from each arm's score
    interval ``[l, u]`` (Newcombe 1998, *Stat. Med.* 17(22):2635–2650, method 10; the correlation term φ is 0
    when a margin of the 2×2 table is empty, which is the case when both arms are 0/n or n/n).
    """
    d = strong.estimate - weak.estimate
    below = np.hypot(strong.estimate - strong.low, weak.high - weak.estimate)
    above = np.hypot(strong.high - strong.estimate, weak.estimate - weak.low)
    return _clean(max(-100.0, d - below)), _clean(min(100.0, d + above))


def delta_interval(strong: Interval, weak: Interval, samples: np.ndarray, confidence: float) -> Interval:
    """Δ = strong − weak with its paired percentile-bootstrap interval (``samples``: ``(B,)`` resampled Δs);
    when both arms are 0/n or n/n (the bootstrap is a constant) :func:`newcombe_paired_interval` instead."""
    low, high = percentile_interval(samples, confidence)
    estimate = _clean(strong.estimate - weak.estimate)
    if low == high and strong.estimate in (0.0, 100.0) and weak.estimate in (0.0, 100.0):
        low, high = newcombe_paired_interval(strong, weak)
    return Interval(estimate, low, high, n=strong.n)


# --- Sampled evaluation: several samples per problem (issue 15) ---------------------------------------------
# A run may also hold each problem's *mean correctness* over its samples (a value in [0, 1]) instead of a 0/1
# verdict. The bootstrap above is unchanged: it resamples problems and carries each problem's mean along, so
# an interval covers both the problem noise and the sample noise that the per-problem means keep.
Z_POWER_80_ALPHA_05 = 2.8016  # z_{0.975} + z_{0.80} = 1.95996 + 0.84162 (see detectable_gap)


def as_scores(values: object, name: str = "correct") -> np.ndarray:
    """A run matrix ``(S, n)`` of per-problem scores: bool for 0/1 input (as :func:`as_runs`), else float64.

    Args:
        values: ``(n,)`` or ``(S, n)``: 0/1 verdicts, or each problem's mean correctness over its samples.

    Raises:
        ValueError: naming ``name``, for an empty array, more than 2 dimensions, or a value outside [0, 1].
    """
    array = np.asarray(values)
    if array.dtype == bool or (array.size and np.isin(array, (0, 1)).all()):
        return as_runs(array, name)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty array of shape (n,) or (seeds, n); got shape {array.shape}")
    array = array.astype(np.float64)
    if not ((array >= 0) & (array <= 1)).all():
        raise ValueError(f"{name} must hold only 0/1 (or bool) values, or mean correctness values in [0, 1]; got min {array.min()}, max {array.max()}")
    return array


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem (a fraction, 0-1): P(at least one of k samples drawn without replacement
    from the n generated is correct), with c of the n correct.

    Chen et al. (2021), "Evaluating Large Language Models Trained on Code", arXiv 2107.03374, Sec. 2.1 and
    Fig. 3: ``1 - C(n-c, k) / C(n, k)``, computed in the numerically stable product form
    ``1 - prod_{i=n-c+1}^{n} (1 - k / i)`` (1 when ``n - c < k``).

    Raises:
        ValueError: unless ``0 <= c <= n`` and ``1 <= k <= n``.
    """
    if not (0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"pass_at_k(n={n}, c={c}, k={k}) is not allowed; it needs 0 <= c <= n and 1 <= k <= n")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def pass_ks(n: int) -> list[int]:
    """The k reported for n samples: 1, 2, 4, ... (powers of two) up to n, and n itself."""
    ks, k = [], 1
    while k <= n:
        ks.append(k)
        k *= 2
    return ks + ([n] if ks[-1] != n else [])


def pass_at_k_scores(counts: Sequence[tuple[int, int]], ks: Sequence[int] | None = None) -> dict[str, float]:
    """Benchmark pass@k in percent: the mean over problems of :func:`pass_at_k`.

    Args:
        counts: per problem ``(n samples, c correct)``; every problem needs the same n.
        ks: the k to report; None = :func:`pass_ks` of n.

    Returns:
        ``{"pass@1": ..., "pass@2": ..., ...}`` (percent, 0-100). pass@1 is the mean correctness over samples
        and problems.

    Raises:
        ValueError: for no problems or unequal n.
    """
    if not counts:
        raise ValueError("counts is empty; give (n, c) per problem")
    sizes = {n for n, _ in counts}
    if len(sizes) != 1:
        raise ValueError(f"every problem needs the same number of samples; got {sorted(sizes)}")
    n = sizes.pop()
    return {f"pass@{k}": _clean(100.0 * np.mean([pass_at_k(n, c, k) for _, c in counts])) for k in (ks or pass_ks(n))}


def majority_correct(answers: Sequence[str | None], correct: Sequence[bool]) -> bool:
    """maj@n of one problem: whether the most frequent extracted answer among its samples is graded correct.

    Samples without an extracted answer (None) do not vote; with none left the problem counts as wrong. A tie
    goes to the answer that appeared first (``collections.Counter`` keeps insertion order). Majority voting
    ("self-consistency"): Wang et al. (2023), arXiv 2203.11171; the maj@n metric as in lighteval.

    Raises:
        ValueError: when the two sequences differ in length.
    """
    from collections import Counter  # noqa: PLC0415

    if len(answers) != len(correct):
        raise ValueError(f"answers ({len(answers)}) and correct ({len(correct)}) must have one entry per sample")
    votes = Counter(a for a in answers if a is not None)
    if not votes:
        return False
    winner = votes.most_common(1)[0][0]
    return bool(next(c for a, c in zip(answers, correct, strict=True) if a == winner))


def detectable_gap(se: float, *, alpha: float = 0.05, power: float = 0.8) -> float:
    """Minimum detectable effect of a two-sided test: ``(z_{1-α/2} + z_{power}) × SE`` (≈ 2.8 × SE for
    α = 0.05 and 80% power), in the unit of ``se``.

    Source: the normal-approximation power formula, e.g. Cohen (1988), *Statistical Power Analysis for the
    Behavioral Sciences*, 2nd ed., ch. 2; Bloom (1995), "Minimum Detectable Effects", *Evaluation Review*
    19(5). ``se`` is the bootstrap standard error of Δ: a true gap smaller than this is likely to read "n.s.".

    Raises:
        ValueError: unless ``0 < alpha < 1`` and ``0 < power < 1``.
    """
    from statistics import NormalDist  # noqa: PLC0415

    if not (0 < alpha < 1 and 0 < power < 1):
        raise ValueError(f"alpha={alpha}, power={power} are not allowed; both must be in (0, 1)")
    z = NormalDist().inv_cdf(1 - alpha / 2) + NormalDist().inv_cdf(power)
    return _clean(z * se)


def mean_ci(
    scores: object, *, n_boot: int = 10_000, seed: int = 0, confidence: float = 0.95
) -> tuple[float, float, float]:
    """``(low, high, se)`` in percent of a benchmark's pass@1 from its per-problem mean correctness.

    Args:
        scores: per problem, its mean correctness over samples in [0, 1], shape ``(n,)`` (0/1 for one sample).
        n_boot, seed, confidence: bootstrap resamples, RNG seed, interval coverage in (0, 1).

    Returns:
        The percentile interval (problems resampled, each carrying its mean) and the bootstrap SE.
    """
    _check(n_boot, confidence)
    points, samples = bootstrap_arms([{"benchmark": scores}], n_boot=n_boot, seed=seed)
    low, high = percentile_interval(samples["benchmark"][0], confidence)
    return low, high, _clean(np.std(samples["benchmark"][0]))
