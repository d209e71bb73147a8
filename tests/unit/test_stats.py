"""mixgap.stats against hand-computed bootstrap distributions.

Resampling n problems with replacement makes the number of draws of a fixed set of m problems
Binomial(n, m/n); so for small cases the exact bootstrap distribution, and its percentiles, are known.
"""

from __future__ import annotations

from fractions import Fraction
from math import comb

import numpy as np
import pytest

from mixgap.stats.bootstrap import accuracy, accuracy_ci, bootstrap_arms, compare, paired_delta
from mixgap.stats.intervals import Interval, verdict, wilson_interval
from mixgap.stats.runs import align, dropped_ids


def binomial(n: int, p: Fraction, scale: Fraction) -> dict[Fraction, Fraction]:
    """Exact distribution of scale * Binomial(n, p)."""
    return {scale * k: comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)}


def convolve(*dists: dict[Fraction, Fraction]) -> dict[Fraction, Fraction]:
    """Distribution of the sum of independent variables."""
    total = {Fraction(0): Fraction(1)}
    for dist in dists:
        out: dict[Fraction, Fraction] = {}
        for a, pa in total.items():
            for b, pb in dist.items():
                out[a + b] = out.get(a + b, Fraction(0)) + pa * pb
        total = out
    return total


def quantile(dist: dict[Fraction, Fraction], q: float) -> float:
    """Smallest value whose cdf reaches q (the order-statistic percentile of the exact distribution)."""
    cdf = Fraction(0)
    for value in sorted(dist):
        cdf += dist[value]
        if cdf >= Fraction(q):
            return float(value)
    raise AssertionError("q > 1")


def exact_ci(dist: dict[Fraction, Fraction], confidence: float = 0.95, slack: float = 0.004) -> tuple:
    """Exact percentile interval, checked to be robust to the Monte Carlo error of 10,000 resamples."""
    alpha = (1 - confidence) / 2
    low, high = quantile(dist, alpha), quantile(dist, 1 - alpha)
    # no atom boundary within `slack` of the quantile levels: the Monte Carlo percentile cannot differ
    assert quantile(dist, alpha - slack) == low == quantile(dist, alpha + slack)
    assert quantile(dist, 1 - alpha - slack) == high == quantile(dist, 1 - alpha + slack)
    return low, high


def test_identical_arms_give_a_newcombe_interval_not_zero_zero():
    # 4/8 in both arms on the same problems: every resampled Δ is 0, so Newcombe's method 10 replaces the
    # bootstrap. Table a=4, b=c=0, d=4, n=8: ad - bc = 16 > n/2 = 4, phi = (16 - 4) / sqrt(4*4*4*4) = 0.75.
    # Wilson 4/8 (z^2 = 3.841459): centre 0.5 + z^2/16 = 0.740091, half z*sqrt(1/32 + z^2/256) = 0.421532,
    # / (1 + z^2/8 = 1.480182) -> [21.5216, 78.4784]: both sides w = 28.4784 points.
    # L = -sqrt(w^2 - 2*0.75*w^2 + w^2) = -w*sqrt(0.5) = -20.1373; U = +20.1373.
    arm = [1, 0, 1, 1, 0, 0, 1, 0]
    comp = compare({"b": arm}, {"b": arm})["b"]
    assert comp.delta.estimate == 0.0
    assert (comp.delta.low, comp.delta.high) == pytest.approx((-20.1373, 20.1373), abs=1e-4)
    # SE from the interval: 40.2745 / (2 * 1.959964) = 10.2743; detectable = 2.8016 * 10.2743 = 28.78
    assert comp.delta_se == pytest.approx(10.2743, abs=1e-4) and comp.detectable == pytest.approx(28.785, abs=1e-2)
    assert comp.verdict == "n.s."
    # two identical seeds per arm: no 2x2 table, so phi = 0 from the arms' bootstrap intervals. Each arm's
    # resampled accuracy is 12.5 * Bin(8, 1/2): P(K <= 1) = 9/256 = 0.035 >= 0.025 > 1/256 and
    # P(K <= 6) = 247/256 = 0.965 < 0.975 -> [12.5, 87.5]; L = -hypot(50 - 12.5, 87.5 - 50) = -53.0330.
    seeds = np.array([arm, arm])
    average = compare({"b": seeds}, {"b": seeds})["average"]
    assert (average.strong.low, average.strong.high) == (12.5, 87.5)
    assert (average.delta.estimate, average.delta.low, average.delta.high) == pytest.approx((0.0, -53.0330, 53.0330), abs=1e-4)
    assert average.verdict == "n.s."


@pytest.mark.parametrize("n", [10, 20])
def test_one_differing_problem_gives_100_over_n(n):
    # problem 0: strong right, weak wrong; all others equal. Δ* = (100/n) * Binomial(n, 1/n).
    strong = [1] * (n // 2) + [0] * (n - n // 2)
    weak = [0] + strong[1:]
    delta = paired_delta(strong, weak)
    low, high = exact_ci(binomial(n, Fraction(1, n), Fraction(100, n)))
    assert delta.estimate == pytest.approx(100 / n)
    assert (delta.low, delta.high) == pytest.approx((low, high))
    assert (low, high) == pytest.approx((0.0, 300 / n))  # P(K <= 2) < 0.975 <= P(K <= 3) for n = 10, 20
    reverse = paired_delta(weak, strong)
    assert (reverse.estimate, reverse.low, reverse.high) == pytest.approx((-100 / n, -300 / n, 0.0))


def test_certain_gap_and_verdicts():
    # 6/6 vs 0/6: the bootstrap says [100, 100]; Newcombe (phi = 0) from Wilson [60.97, 100] and [0, 39.03]:
    # low = 100 - hypot(100 - 60.97, 39.03 - 0) = 44.80
    comp = compare({"b": [1] * 6}, {"b": [0] * 6})["b"]
    assert (comp.delta.estimate, comp.delta.high) == (100.0, 100.0)
    assert comp.delta.low == pytest.approx(100 - 2 ** 0.5 * 100 * 3.841459 / (6 + 3.841459), abs=1e-5)
    assert comp.verdict == "Strong"
    assert verdict(Interval(-3.0, -5.0, -1.0)) == "Weak"
    assert verdict(Interval(1.0, 0.0, 2.0)) == "n.s."


def test_accuracy_interval_is_the_binomial_percentile():
    # 5 of 10 correct, several seeds: resampled accuracy = 10 * Binomial(10, 1/2) -> [20, 80] (two identical
    # seeds: the seed draw changes nothing; one run alone gets Wilson, test_stats_intervals.py)
    low, high = accuracy_ci(np.array([[1] * 5 + [0] * 5] * 2))
    assert (low, high) == exact_ci(binomial(10, Fraction(1, 2), Fraction(10))) == (20.0, 80.0)


def test_average_is_stratified_over_benchmarks():
    # math: 5/10, aime: 1/5 -> average (50 + 20) / 2 = 35; resamples (10 X + 20 Y) / 2 with independent
    # X ~ Bin(10, 1/2), Y ~ Bin(5, 1/5).
    runs = {"math": [1] * 5 + [0] * 5, "aime": [1, 0, 0, 0, 0]}
    result = accuracy(runs)
    exact = convolve(binomial(10, Fraction(1, 2), Fraction(5)), binomial(5, Fraction(1, 5), Fraction(10)))
    assert result["average"].estimate == 35.0
    assert (result["average"].low, result["average"].high) == pytest.approx(exact_ci(exact)) == (15.0, 60.0)
    assert (result["aime"].low, result["aime"].high) == wilson_interval(1, 5)  # one run: Wilson


def test_seeds_are_resampled_too():
    # strong: seed A all right, seed B all wrong; weak: one seed all wrong. Δ = 50. Problems do not matter
    # (each run is constant); drawing 2 seeds with replacement gives Δ* = 100, 50, 0 w.p. 1/4, 1/2, 1/4.
    strong = np.array([[1] * 8, [0] * 8])
    weak = np.array([[0] * 8])
    comp = compare({"b": strong}, {"b": weak})["b"]
    assert comp.delta.estimate == 50.0 and comp.seeds == (2, 1)
    assert (comp.delta.low, comp.delta.high) == (0.0, 100.0)
    narrow = compare({"b": strong}, {"b": weak}, confidence=0.4)["b"]  # 30% and 70% quantiles
    assert (narrow.delta.low, narrow.delta.high) == (50.0, 50.0)
    _, samples = bootstrap_arms([{"b": strong}], n_boot=20_000, seed=1)
    shares = [np.mean(samples["b"][0] == v) for v in (0.0, 50.0, 100.0)]
    assert shares == pytest.approx([0.25, 0.5, 0.25], abs=0.015)


def test_seed_draw_is_shared_across_benchmarks():
    # one trained model = one seed on every benchmark: if seed draws were independent per benchmark the
    # average could take the value 50 from (100 on b1, 0 on b2); shared draws only give 0, 50, 100 via
    # seed mixes, and with both benchmarks identical the average equals each benchmark's value.
    strong = {"b1": np.array([[1] * 4, [0] * 4]), "b2": np.array([[1] * 6, [0] * 6])}
    _, samples = bootstrap_arms([strong], n_boot=2000, seed=3)
    assert np.array_equal(samples["average"][0], samples["b1"][0])
    assert np.array_equal(samples["b1"][0], samples["b2"][0])


def test_paired_resampling_spread_matches_theory():
    # Var(Δ*) = (p10 + p01 - (p10 - p01)^2) / n for paired 0/1 data (multinomial over the 4 patterns).
    n = 200
    strong = np.array([1] * 40 + [0] * 20 + [1] * 70 + [0] * 70)
    weak = np.array([0] * 40 + [1] * 20 + [1] * 70 + [0] * 70)
    _, samples = bootstrap_arms([{"b": strong}, {"b": weak}], n_boot=10_000, seed=0)
    deltas = samples["b"][0] - samples["b"][1]
    expected_sd = 100 * np.sqrt((0.2 + 0.1 - 0.1**2) / n)
    assert deltas.mean() == pytest.approx(10.0, abs=0.15)
    assert deltas.std() == pytest.approx(expected_sd, rel=0.03)


def test_same_seed_same_interval_and_other_seed_differs():
    rng = np.random.default_rng(0)
    a, b = rng.random(300) < 0.5, rng.random(300) < 0.45
    assert paired_delta(a, b, seed=7) == paired_delta(a, b, seed=7)
    assert paired_delta(a, b, seed=7) != paired_delta(a, b, seed=8)


def test_align_joins_by_id():
    ids, matrix = align([{"p1": True, "p2": False, "p3": True}, {"p3": False, "p1": True}])
    assert ids == ["p1", "p3"]
    assert matrix.tolist() == [[True, True], [True, False]]
    assert dropped_ids([{"p1": True, "p2": False, "p3": True}, {"p3": False, "p1": True}]) == 1


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: paired_delta([1, 0, 1], [1, 0]), "benchmark: arms cover different numbers of problems"),
        (lambda: accuracy_ci([1, 2, 0]), "only 0/1"),
        (lambda: accuracy_ci([]), "non-empty"),
        (lambda: accuracy_ci([1, 0], confidence=1.5), "confidence=1.5"),
        (lambda: accuracy_ci([1, 0], n_boot=0), "n_boot=0"),
        (lambda: compare({"a": [1]}, {"b": [1]}), "every arm needs exactly"),
        (lambda: compare({"a": [[1], [0]], "b": [1]}, {"a": [1], "b": [1]}), "seeds per arm differ"),
        (lambda: align([{"p1": True}, {"p2": True}]), "share no problem id"),
    ],
)
def test_bad_input_names_the_problem(call, message):
    with pytest.raises(ValueError, match=message):
        call()
