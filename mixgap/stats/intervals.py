"""Intervals of one accuracy and of a paired gap: percentile, Wilson score, Newcombe's paired interval.

All values are in percent / percentage points (0–100). The percentile interval reads bootstrap resamples
(:mod:`mixgap.stats.bootstrap`); Wilson and Newcombe are closed forms, right at 0/n and n/n where a
bootstrap of a constant would claim certainty.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

Z_POWER_80_ALPHA_05 = 2.8016  # z_{0.975} + z_{0.80} = 1.95996 + 0.84162 (see detectable_gap)


@dataclass(frozen=True)
class Interval:
    """A point estimate with its interval, in percent (or percentage points)."""

    estimate: float
    low: float
    high: float
    n: int | None = None  # problems behind the estimate (summed over benchmarks for the average); None: unknown

    def fmt(self, digits: int = 1) -> str:
        """``"12.3 [10.1, 14.5]"``."""
        return f"{self.estimate:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def verdict(delta: Interval) -> str:
    """The paper's "Better?" column, decided by the interval: Strong (low > 0), Weak (high < 0) or n.s."""
    if delta.low > 0:
        return "Strong"
    if delta.high < 0:
        return "Weak"
    return "n.s."


def check_boot(n_boot: int, confidence: float | None = None) -> None:
    """Raise ValueError unless ``n_boot`` is an integer >= 1 and ``confidence`` (when given) is in (0, 1)."""
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot={n_boot!r} is not allowed; it must be an integer >= 1 (e.g. 10000)")
    if confidence is not None and not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence={confidence!r} is not allowed; it must be in (0, 1), e.g. 0.95")


def clean(value: float) -> float:
    """Round away float noise (e.g. 30.000000000000004 -> 30.0); 1e-9 points is far below any reported digit."""
    return round(float(value), 9) + 0.0  # + 0.0 turns -0.0 into 0.0


def z_quantile(confidence: float) -> float:
    """The ``(1+c)/2`` standard normal quantile (1.959964 for c = 0.95)."""
    return NormalDist().inv_cdf((1.0 + confidence) / 2.0)


def percentile_interval(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    """The ``(1−c)/2`` and ``(1+c)/2`` order-statistic quantiles of bootstrap ``samples`` (shape ``(B,)``).

    ``numpy.quantile(..., method="inverted_cdf")``: the smallest resample whose empirical cdf reaches the
    level (Efron & Tibshirani 1993, *An Introduction to the Bootstrap*, ch. 13).
    """
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(samples, [alpha, 1.0 - alpha], method="inverted_cdf")
    return clean(low), clean(high)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval ``(low, high)`` in percent for ``successes`` of ``n`` Bernoulli trials.

    ``(p + z²/2n ± z·sqrt(p(1−p)/n + z²/4n²)) / (1 + z²/n)`` with ``z`` the ``(1+c)/2`` normal quantile
    (Wilson 1927, *JASA* 22(158):209–212; Brown, Cai & DasGupta 2001, *Stat. Sci.* 16(2), eq. 4). Right at
    the ends: 0/n gives ``[0, z²/(n+z²)]``, n/n gives ``[n/(n+z²), 100]`` (0/8 at 95%: [0.0, 32.4]).

    Raises:
        ValueError: ``n < 1``, ``successes`` outside ``[0, n]``, or ``confidence`` outside (0, 1).
    """
    if n < 1 or not 0 <= successes <= n:
        raise ValueError(f"wilson_interval: successes={successes!r} of n={n!r} is not allowed; need 0 <= successes <= n, n >= 1")
    check_boot(1, confidence)
    z = z_quantile(confidence)
    p = successes / n
    centre = p + z * z / (2 * n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    denom = 1 + z * z / n
    low = 0.0 if successes == 0 else (centre - half) / denom
    high = 1.0 if successes == n else (centre + half) / denom
    return clean(100.0 * low), clean(100.0 * high)


def paired_table(strong: np.ndarray, weak: np.ndarray) -> tuple[int, int, int, int]:
    """The paired 2×2 table ``(a, b, c, d)`` of two 0/1 runs on the same problems (shape ``(n,)`` each):
    a = both right, b = strong only, c = weak only, d = both wrong (Newcombe 1998, Table I)."""
    s, w = np.asarray(strong, dtype=bool), np.asarray(weak, dtype=bool)
    return int((s & w).sum()), int((s & ~w).sum()), int((~s & w).sum()), int((~s & ~w).sum())


def newcombe_phi(a: int, b: int, c: int, d: int) -> float:
    """Newcombe's estimate of the correlation φ of the two paired proportions from the 2×2 table.

    With ``A = ad − bc`` and ``P = (a+b)(c+d)(a+c)(b+d)`` the product of the margins: ``(A − n/2)/sqrt(P)``
    when ``A > n/2``, 0 when ``0 <= A <= n/2``, ``A/sqrt(P)`` when ``A < 0``, and 0 when any margin is 0
    (Newcombe 1998, *Stat. Med.* 17(22):2635–2650, method 10; Fagerland, Lydersen & Laake 2017,
    *Statistical Analysis of Contingency Tables*, ch. 8). The ``n/2`` shrinkage keeps the interval of two
    identical arms from collapsing to a point.

    Raises:
        ValueError: for a negative count or an empty table.
    """
    if min(a, b, c, d) < 0 or a + b + c + d == 0:
        raise ValueError(f"newcombe_phi: table (a, b, c, d) = {(a, b, c, d)} is not allowed; counts must be >= 0, n >= 1")
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    if margins == 0:
        return 0.0
    cross, n = a * d - b * c, a + b + c + d
    if cross > n / 2:
        return (cross - n / 2) / float(np.sqrt(margins))
    return cross / float(np.sqrt(margins)) if cross < 0 else 0.0


def newcombe_paired_interval(strong: Interval, weak: Interval, phi: float = 0.0) -> tuple[float, float]:
    """Newcombe's paired hybrid score interval for Δ = P_strong − P_weak (percentage points).

    ``L = Δ − sqrt(dl₁² − 2φ·dl₁·du₂ + du₂²)``, ``U = Δ + sqrt(du₁² − 2φ·du₁·dl₂ + dl₂²)`` with
    ``dl = p − l`` and ``du = u − p`` from each arm's score interval ``[l, u]`` (Newcombe 1998, *Stat. Med.*
    17(22):2635–2650, method 10, with Wilson intervals and φ from :func:`newcombe_phi`). With other arm
    intervals (several seeds, the average) it is the MOVER interval of Zou & Donner (2008, *Stat. Med.*
    27(10):1693–1702); φ = 0 there, which is wider than the truth for positively correlated arms.
    Clipped to [−100, 100].

    Raises:
        ValueError: ``phi`` outside [−1, 1].
    """
    if not -1.0 <= phi <= 1.0:
        raise ValueError(f"phi={phi!r} is not allowed; a correlation must be in [-1, 1]")
    d = strong.estimate - weak.estimate
    dl1, du1 = strong.estimate - strong.low, strong.high - strong.estimate
    dl2, du2 = weak.estimate - weak.low, weak.high - weak.estimate
    below = np.sqrt(max(0.0, dl1 * dl1 - 2 * phi * dl1 * du2 + du2 * du2))
    above = np.sqrt(max(0.0, du1 * du1 - 2 * phi * du1 * dl2 + dl2 * dl2))
    return clean(max(-100.0, d - below)), clean(min(100.0, d + above))


def interval_se(interval: Interval, confidence: float) -> float:
    """The standard error a normal interval of this width implies: ``(high − low) / (2·z_{(1+c)/2})``
    (points). Used for Δ when the paired bootstrap is degenerate and its own SE would be 0."""
    return clean((interval.high - interval.low) / (2.0 * z_quantile(confidence)))


def detectable_gap(se: float, *, alpha: float = 0.05, power: float = 0.8) -> float:
    """Minimum detectable effect of a two-sided test: ``(z_{1-α/2} + z_{power}) × SE`` (≈ 2.8 × SE for
    α = 0.05 and 80% power), in the unit of ``se``.

    Source: the normal-approximation power formula, e.g. Cohen (1988), *Statistical Power Analysis for the
    Behavioral Sciences*, 2nd ed., ch. 2; Bloom (1995), "Minimum Detectable Effects", *Evaluation Review*
    19(5). A true gap smaller than this is likely to read "n.s.".

    Raises:
        ValueError: unless ``0 < alpha < 1`` and ``0 < power < 1``.
    """
    if not (0 < alpha < 1 and 0 < power < 1):
        raise ValueError(f"alpha={alpha}, power={power} are not allowed; both must be in (0, 1)")
    z = NormalDist().inv_cdf(1 - alpha / 2) + NormalDist().inv_cdf(power)
    return clean(z * se)
