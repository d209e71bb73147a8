"""Intervals right at 0 and n: Wilson for single accuracies, Newcombe (method 10) for degenerate paired gaps."""

from __future__ import annotations

import numpy as np
import pytest

from mixgap.stats.bootstrap import accuracy, compare
from mixgap.stats.intervals import (
    Interval,
    newcombe_paired_interval,
    newcombe_phi,
    paired_table,
    wilson_interval,
)

Z2 = 1.959963984540054 ** 2  # the 97.5% normal quantile, squared


def test_wilson_known_values():
    # 0/n: [0, z^2/(n + z^2)]; n/n: [n/(n + z^2), 1]; 5/10: the textbook [0.2366, 0.7634]
    assert wilson_interval(0, 8) == pytest.approx((0.0, 100 * Z2 / (8 + Z2)))
    assert wilson_interval(0, 8)[1] == pytest.approx(32.4408, abs=1e-4)
    assert wilson_interval(8, 8) == pytest.approx((100 * 8 / (8 + Z2), 100.0))
    assert wilson_interval(5, 10) == pytest.approx((23.6593, 76.3407), abs=1e-4)
    # 1/20 at 90%: z = 1.644854, centre 0.05 + z²/40 = 0.117638, half 0.104885, / (1 + z²/20) = 1.135277
    assert wilson_interval(1, 20, confidence=0.9) == pytest.approx((1.1234, 19.6010), abs=1e-3)
    with pytest.raises(ValueError, match="successes=9 of n=8"):
        wilson_interval(9, 8)


def test_zero_of_n_accuracy_is_not_certain():
    result = accuracy({"aime": [0] * 8, "amc": [1] * 4})
    assert (result["aime"].estimate, result["aime"].low) == (0.0, 0.0)
    assert result["aime"].high == pytest.approx(32.4408, abs=1e-4) and result["aime"].n == 8
    assert result["amc"].low == pytest.approx(100 * 4 / (4 + Z2)) and result["amc"].high == 100.0
    # the average of 0/8 and 4/4 = 50 is not degenerate... but the average of two 0/n benchmarks is:
    zero = accuracy({"aime": [0] * 8, "amc": [0] * 4})["average"]
    assert (zero.estimate, zero.low, zero.n) == (0.0, 0.0, 12) and zero.high == pytest.approx(100 * Z2 / (12 + Z2))
    seeds = accuracy({"b": np.zeros((3, 8), dtype=int)})["b"]  # three seeds all wrong: still not [0, 0]
    assert seeds.high == pytest.approx(100 * Z2 / (8 + Z2))


@pytest.mark.parametrize(("strong", "weak"), [(0, 0), (1, 1)])
def test_gap_of_two_constant_arms_is_not_zero_zero(strong, weak):
    comp = compare({"b": [strong] * 8}, {"b": [weak] * 8})["b"]
    half = 100 * Z2 / (8 + Z2)  # each arm's Wilson half-width at the end it sits on
    assert comp.delta.estimate == 0.0
    assert (comp.delta.low, comp.delta.high) == pytest.approx((-half, half))
    assert comp.verdict == "n.s." and comp.delta.fmt() == "0.0 [-32.4, 32.4]"


def test_gap_that_varies_keeps_the_paired_bootstrap():
    # strong 6/8, weak 2/8: 4 problems strong-only (b = 4), 2 both right, 2 both wrong. A resample's Δ is
    # 12.5 * K with K ~ Bin(8, 4/8) the draws of strong-only problems: P(K <= 0) = 1/256 < 0.025 <=
    # P(K <= 1) = 9/256 = 0.035 and P(K <= 6) = 247/256 = 0.965 < 0.975 <= P(K <= 7) -> [12.5, 87.5]
    # (each level is >= 0.01 from an atom: 6 Monte Carlo SDs at 10,000 resamples).
    strong, weak = [1, 1, 1, 1, 1, 1, 0, 0], [0, 0, 0, 0, 1, 1, 0, 0]
    comp = compare({"b": strong}, {"b": weak})["b"]
    assert (comp.delta.estimate, comp.delta.low, comp.delta.high) == (50.0, 12.5, 87.5)
    assert comp.verdict == "Strong"
    # each arm alone is one run: Wilson. 2/8: centre 0.25 + z^2/16 = 0.490091, half
    # z*sqrt(0.1875/8 + z^2/256) = 0.384289, / 1.480182 -> [7.1479, 59.0725]; 6/8 mirrors it.
    assert (comp.weak.low, comp.weak.high) == pytest.approx((7.1479, 59.0725), abs=1e-4)
    assert (comp.strong.low, comp.strong.high) == pytest.approx((100 - 59.0725, 100 - 7.1479), abs=1e-4)
    assert comp.strong.n == 8
    # Var(Δ*) = 12.5^2 * 8 * 1/2 * 1/2 = 312.5: SE 17.68 (Monte Carlo: within 3%)
    assert comp.delta_se == pytest.approx(312.5 ** 0.5, rel=0.03)


def test_newcombe_phi_from_the_2x2_table():
    # phi = (A - n/2) / sqrt(margins) when A = ad - bc > n/2; 0 when 0 <= A <= n/2; A / sqrt(margins) when A < 0
    assert newcombe_phi(5, 0, 0, 25) == pytest.approx((125 - 15) / 125)  # margins 5*25*5*25 = 125^2
    assert newcombe_phi(4, 1, 1, 4) == pytest.approx((15 - 5) / 25)  # A = 16 - 1, margins 5^4
    assert newcombe_phi(2, 1, 1, 2) == 0.0  # A = 3 = n/2
    assert newcombe_phi(36, 12, 2, 0) == pytest.approx(-24 / (48 * 2 * 38 * 12) ** 0.5)  # -0.114708
    assert newcombe_phi(0, 6, 0, 0) == 0.0 and newcombe_phi(0, 0, 0, 8) == 0.0  # an empty margin
    assert paired_table(np.array([1, 1, 0, 0, 1]), np.array([1, 0, 1, 0, 1])) == (2, 1, 1, 1)
    with pytest.raises(ValueError, match="counts must be >= 0"):
        newcombe_phi(1, -1, 0, 0)


def test_newcombe_method_10_by_hand():
    # Table a=36, b=12, c=2, d=0 (n=50): p1 = 48/50 = 0.96, p2 = 38/50 = 0.76, Δ = 0.20, z^2 = 3.841459.
    # Wilson 48/50: centre 0.96 + z^2/100 = 0.998415, half z*sqrt(0.96*0.04/50 + z^2/10^4) = 0.066528,
    #   / (1 + z^2/50 = 1.076829) -> l1 = 0.865399, u1 = 0.988961.
    # Wilson 38/50: centre 0.798415, half z*sqrt(0.76*0.24/50 + z^2/10^4) = 0.124456 -> l2 = 0.625873,
    #   u2 = 0.857026.
    # phi = -24 / sqrt(48*2*38*12) = -0.114708.
    # L = 0.20 - sqrt(0.094601^2 + 0.097026^2 + 2*0.114708*0.094601*0.097026) = 0.20 - 0.143070 = 0.056930
    # U = 0.20 + sqrt(0.028961^2 + 0.134127^2 + 2*0.114708*0.028961*0.134127) = 0.20 + 0.140428 = 0.340428
    strong = Interval(96.0, *wilson_interval(48, 50))
    weak = Interval(76.0, *wilson_interval(38, 50))
    assert (strong.low, strong.high, weak.low, weak.high) == pytest.approx((86.5399, 98.8961, 62.5873, 85.7026), abs=1e-3)
    phi = newcombe_phi(36, 12, 2, 0)
    assert newcombe_paired_interval(strong, weak, phi) == pytest.approx((5.6930, 34.0428), abs=1e-3)
    with pytest.raises(ValueError, match="phi=1.5"):
        newcombe_paired_interval(strong, weak, 1.5)


def test_identical_non_constant_arms_are_not_certain():
    # both arms solve the same 5 of 30: the paired bootstrap gives Δ* = 0 on every resample.
    # Table a=5, b=c=0, d=25: phi = (125 - 15) / 125 = 0.88. Wilson 5/30: centre 1/6 + z^2/60 = 0.230691,
    # half z*sqrt((5/36)/30 + z^2/3600) = 0.147931, / (1 + z^2/30 = 1.128049) -> [7.3365, 33.5644]:
    # dl = 16.6667 - 7.3365 = 9.3301, du = 33.5644 - 16.6667 = 16.8977.
    # L = -sqrt(9.3301^2 - 2*0.88*9.3301*16.8977 + 16.8977^2) = -sqrt(87.05 - 277.48 + 285.53) = -9.7522.
    arm = [1] * 5 + [0] * 25
    comp = compare({"b": arm}, {"b": arm})["b"]
    assert (comp.delta.estimate, comp.delta.low, comp.delta.high) == pytest.approx((0.0, -9.7522, 9.7522), abs=1e-4)
    assert comp.delta.low < 0 < comp.delta.high and comp.verdict == "n.s."
    # SE = 19.5044 / (2 * 1.959964) = 4.9757, detectable = (1.959964 + 0.841621) * 4.9757 = 13.940
    assert comp.delta_se == pytest.approx(4.9757, abs=1e-4)
    assert comp.detectable == pytest.approx(13.940, abs=1e-3) and comp.detectable > 0
