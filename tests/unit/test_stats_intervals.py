"""Intervals right at 0 and n (issue 13, item 5): Wilson for single accuracies, Newcombe for degenerate gaps."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mixgap import stats

Z2 = 1.959963984540054 ** 2  # the 97.5% normal quantile, squared


def test_wilson_known_values():
    # 0/n: [0, z^2/(n + z^2)]; n/n: [n/(n + z^2), 1]; 5/10: the textbook [0.2366, 0.7634]
    assert stats.wilson_interval(0, 8) == pytest.approx((0.0, 100 * Z2 / (8 + Z2)))
    assert stats.wilson_interval(0, 8)[1] == pytest.approx(32.4408, abs=1e-4)
    assert stats.wilson_interval(8, 8) == pytest.approx((100 * 8 / (8 + Z2), 100.0))
    assert stats.wilson_interval(5, 10) == pytest.approx((23.6593, 76.3407), abs=1e-4)
    # 1/20 at 90%: z = 1.644854, centre 0.05 + z²/40 = 0.117638, half 0.104885, / (1 + z²/20) = 1.135277
    assert stats.wilson_interval(1, 20, confidence=0.9) == pytest.approx((1.1234, 19.6010), abs=1e-3)
    with pytest.raises(ValueError, match="successes=9 of n=8"):
        stats.wilson_interval(9, 8)


def test_zero_of_n_accuracy_is_not_certain():
    result = stats.accuracy({"aime": [0] * 8, "amc": [1] * 4})
    assert (result["aime"].estimate, result["aime"].low) == (0.0, 0.0)
    assert result["aime"].high == pytest.approx(32.4408, abs=1e-4) and result["aime"].n == 8
    assert result["amc"].low == pytest.approx(100 * 4 / (4 + Z2)) and result["amc"].high == 100.0
    # the average of 0/8 and 4/4 = 50 is not degenerate... but the average of two 0/n benchmarks is:
    zero = stats.accuracy({"aime": [0] * 8, "amc": [0] * 4})["average"]
    assert (zero.estimate, zero.low, zero.n) == (0.0, 0.0, 12) and zero.high == pytest.approx(100 * Z2 / (12 + Z2))
    seeds = stats.accuracy({"b": np.zeros((3, 8), dtype=int)})["b"]  # three seeds all wrong: still not [0, 0]
    assert seeds.high == pytest.approx(100 * Z2 / (8 + Z2))


@pytest.mark.parametrize(("strong", "weak"), [(0, 0), (1, 1)])
def test_gap_of_two_constant_arms_is_not_zero_zero(strong, weak):
    comp = stats.compare({"b": [strong] * 8}, {"b": [weak] * 8})["b"]
    half = 100 * Z2 / (8 + Z2)  # each arm's Wilson half-width at the end it sits on
    assert comp.delta.estimate == 0.0
    assert (comp.delta.low, comp.delta.high) == pytest.approx((-half, half))
    assert comp.verdict == "n.s." and comp.delta.fmt() == "0.0 [-32.4, 32.4]"


def test_gap_that_varies_keeps_the_paired_bootstrap():
    strong, weak = [1, 1, 0, 0, 1, 0, 1, 0], [1, 0, 0, 0, 1, 0, 0, 0]
    comp = stats.compare({"b": strong}, {"b": weak})["b"]
    _, samples = stats.bootstrap_arms([{"b": strong}, {"b": weak}])
    assert (comp.delta.low, comp.delta.high) == stats.percentile_interval(samples["b"][0] - samples["b"][1], 0.95)
    assert comp.strong.n == 8 and math.isclose(comp.strong.low, stats.wilson_interval(4, 8)[0])
