"""Sampled evaluation: pass@k, maj@n, the mean-correctness bootstrap, detectable gaps, stop strings, keys."""

from __future__ import annotations

from math import comb

import numpy as np
import pytest

from conftest import compose_cfg
from mixgap.core.config import validate
from mixgap.core.errors import ConfigError
from mixgap.grading.equivalence import is_equivalent
from mixgap.stages.backends.base import cut_at_stop_string, first_prefix
from mixgap.stages.backends.vllm import vllm_sampling_kwargs
from mixgap.stages.completions import completions_spec, problem_seed, sampling_fields, stop_strings
from mixgap.stages.verdicts import score
from mixgap.stats.bootstrap import accuracy, bootstrap_arms, compare, mean_ci
from mixgap.stats.intervals import detectable_gap, wilson_interval
from mixgap.stats.runs import align, as_scores
from mixgap.stats.sampled import (
    answer_classes,
    graded_same,
    majority_correct,
    pass_at_k,
    pass_at_k_scores,
    pass_ks,
    per_problem_mean,
)


@pytest.mark.parametrize(("n", "c", "k", "expected"), [
    (4, 0, 1, 0.0), (4, 0, 4, 0.0),          # all wrong
    (4, 4, 1, 1.0), (4, 4, 4, 1.0),          # all right
    (4, 1, 1, 0.25), (4, 1, 2, 0.5),         # 1 - C(3,2)/C(4,2) = 1 - 3/6
    (4, 1, 4, 1.0), (4, 2, 4, 1.0),          # k = n: any correct sample
    (16, 3, 4, 1 - comb(13, 4) / comb(16, 4)),  # 1 - 715/1820
    (5, 2, 3, 1 - comb(3, 3) / comb(5, 3)),     # 0.9
])
def test_pass_at_k_matches_the_combinatorial_form(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_scores_and_bad_input():
    # problems with 1 and 3 of 4 correct: pass@1 = 50%, pass@2 = (0.5 + 1)/2 = 75%, pass@4 = 100%
    assert pass_at_k_scores([(4, 1), (4, 3)]) == {"pass@1": 50.0, "pass@2": 75.0, "pass@4": 100.0}
    assert pass_ks(16) == [1, 2, 4, 8, 16] and pass_ks(6) == [1, 2, 4, 6] and pass_ks(1) == [1]
    with pytest.raises(ValueError, match="k=5"):
        pass_at_k(4, 1, 5)
    with pytest.raises(ValueError, match="same number"):
        pass_at_k_scores([(4, 1), (2, 1)])


def test_majority_vote():
    assert majority_correct(["7", "5", "7", None], [True, False, True, False]) is True
    assert majority_correct(["5", "7", "7", "5"], [False, True, True, False]) is False  # tie: first seen
    assert majority_correct([None, None], [False, False]) is False


def test_majority_vote_over_equivalent_answers():
    # three correct spellings of 1/2 against two identical wrong 3s: by strings "3" wins 2 to 1
    answers = ["\\dfrac{1}{2}", "3", "\\frac{1}{2}", "3", "0.5"]
    correct = [True, False, True, False, True]
    assert majority_correct(answers, correct) is False
    assert majority_correct(answers, correct, graded_same(answers, correct)) is True  # 3 votes to 2
    assert answer_classes(answers, graded_same(answers, correct)) == [[0, 2, 4], [1, 3]]
    # two wrong answers the grader calls equal are one class: {3, 3.0} (2 votes, seen first) beats 1/2 (2)
    answers, correct = ["3", "1/2", "1/2", "3.0"], [False, True, True, False]
    assert majority_correct(answers, correct) is True
    assert majority_correct(answers, correct, graded_same(answers, correct, is_equivalent)) is False
    with pytest.raises(ValueError, match="one entry per sample"):
        graded_same(["3"], [True, False])


def test_score_votes_over_equivalent_answers_and_keeps_wilson_for_one_sample():
    rows = [{"id": "p1", "sample": j, "correct": c, "extracted": e, "finish_reason": "stop", "reason": "r"}
            for j, (e, c) in enumerate([("\\dfrac{1}{2}", True), ("3", False), ("\\frac{1}{2}", True), ("3", False),
                                        ("0.5", True)])]
    assert score(rows, "math")["maj@5"] == 100.0
    # 0 of 2 problems, one sample each: Wilson [0, z^2/(2 + z^2)] = [0, 3.841459/5.841459] = [0, 65.762]
    wrong = [{"id": i, "correct": False, "extracted": "1", "finish_reason": "stop", "reason": "r"} for i in ("a", "b")]
    s = score(wrong, "aime24")
    assert (s["accuracy"], s["ci_low"]) == (0.0, 0.0) and s["ci_high"] == pytest.approx(65.762, abs=1e-3)
    assert (s["ci_low"], s["ci_high"]) != (0.0, 0.0)


def test_per_problem_mean_keeps_bools_for_one_sample():
    rows = [{"id": 1, "correct": True}, {"id": "2", "correct": 1}, {"id": "2", "correct": False}, {"id": 3, "correct": 0}]
    assert per_problem_mean(rows) == {"1": True, "2": 0.5, "3": False}
    assert per_problem_mean([{"id": "a", "rule": False, "correct": True}], key="rule") == {"a": False}


def test_bootstrap_with_several_samples_matches_the_hand_computation():
    # two problems with mean correctness 1/4 and 3/4: a resample of 2 problems has mean 25 (p 1/4), 50 (1/2)
    # or 75 (1/4); so the 95% interval is [25, 75] and the bootstrap SE is the plug-in sd / sqrt(n):
    # sqrt(((25-50)^2 + (75-50)^2) / 2) / sqrt(2) = 17.678 points
    low, high, se = mean_ci([0.25, 0.75], n_boot=20_000)
    assert (low, high) == (25.0, 75.0)
    assert se == pytest.approx(25 / np.sqrt(2), rel=0.02)
    acc = accuracy({"b": [0.25, 0.75]})["b"]
    assert acc.estimate == 50.0
    # paired Δ: strong (1, 1/2), weak (1/2, 0): Δ is 50 on every resample, a degenerate bootstrap
    _, samples = bootstrap_arms([{"b": [1.0, 0.5]}, {"b": [0.5, 0.0]}])
    assert np.allclose(samples["b"][0] - samples["b"][1], 50.0)
    # so Newcombe's formula with phi = 0 from the arms' bootstrap intervals: strong resamples 100/75/50 with
    # p 1/4, 1/2, 1/4 -> [50, 100] around 75; weak [0, 50] around 25. L = 50 - hypot(75 - 50, 50 - 25) =
    # 50 - 25 sqrt(2) = 14.645, U = 50 + hypot(100 - 75, 25 - 0) = 85.355; SE = 70.711 / (2 * 1.959964) = 18.039
    comp = compare({"b": [1.0, 0.5]}, {"b": [0.5, 0.0]})["b"]
    assert (comp.strong.low, comp.strong.high, comp.weak.low, comp.weak.high) == (50.0, 100.0, 0.0, 50.0)
    assert (comp.delta.estimate, comp.delta.low, comp.delta.high) == pytest.approx((50.0, 50 - 25 * 2**0.5, 50 + 25 * 2**0.5))
    assert comp.delta_se == pytest.approx(25 * 2**0.5 / 1.959964, abs=1e-4)  # (U - L) / (2 z)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        as_scores([0.5, 1.5])


def test_mean_ci_of_verdicts_is_wilson():
    # 1 of 4 (one sample per problem): Wilson, not the bootstrap. centre 0.25 + z^2/8 = 0.730182, half
    # z*sqrt(0.1875/4 + z^2/64) = 0.640815, / (1 + z^2/4 = 1.960365) -> [4.5587, 69.9358];
    # SE 100*sqrt(0.25*0.75/4) = 21.6506 (the exact sd of the bootstrap distribution of the mean)
    low, high, se = mean_ci([1, 0, 0, 0])
    assert (low, high) == wilson_interval(1, 4) == pytest.approx((4.5587, 69.9358), abs=1e-4)
    assert se == pytest.approx(21.6506, abs=1e-4)
    assert mean_ci([0.0, 0.0]) == (0.0, pytest.approx(65.762, abs=1e-3), 0.0)  # 0/2 is not [0, 0]
    with pytest.raises(ValueError, match="scores must hold"):
        mean_ci([0.5, 2.0])


def test_align_keeps_mean_correctness_and_bools():
    ids, matrix = align([{"a": 0.5, "b": 1.0}, {"a": 0.25, "b": 0.0}])
    assert ids == ["a", "b"] and matrix.dtype == np.float64 and matrix.tolist() == [[0.5, 1.0], [0.25, 0.0]]
    assert align([{"a": True, "b": False}])[1].dtype == bool


def test_detectable_gap_is_z_sum_times_se():
    assert detectable_gap(1.0) == pytest.approx(1.959964 + 0.841621, abs=1e-5)
    assert detectable_gap(3.0, power=0.9) == pytest.approx(3 * (1.959964 + 1.281552), abs=1e-5)


def test_score_with_samples():
    rows = [{"id": "p1", "sample": j, "correct": c, "extracted": e, "finish_reason": "stop", "reason": "r"}
            for j, (c, e) in enumerate([(True, "7"), (False, "5"), (True, "7"), (False, None)])]
    rows += [{"id": "p2", "sample": j, "correct": False, "extracted": "1", "finish_reason": "length", "reason": "r"}
             for j in range(4)]
    s = score(rows, "aime24")
    assert (s["n"], s["n_samples"], s["correct"]) == (2, 4, 2)
    assert (s["pass@1"], s["pass@2"], s["pass@4"], s["maj@4"]) == (25.0, 41.666666667, 50.0, 50.0)
    assert s["accuracy"] == 25.0 and s["ci_low"] <= 25.0 <= s["ci_high"] and s["length_stop_frac"] == 0.5


def test_stop_strings_cut_like_the_harness():
    assert cut_at_stop_string("x = 5.\nProblem: next", ["Problem:"]) == ("x = 5.\n", True)
    assert cut_at_stop_string("Q: a Problem: b", ["Problem:", "Q:"]) == ("", True)
    assert cut_at_stop_string("no stop", ["Problem:"]) == ("no stop", False)
    assert first_prefix(10, lambda j: j >= 7) == 7 and first_prefix(1, lambda j: True) == 1
    kwargs = vllm_sampling_kwargs(max_new_tokens=8, temperature=0.6, top_p=0.95, n=1, seed=3, stop_token_ids=[2],
                                  stop=["Problem:"])
    assert kwargs["stop"] == ["Problem:"] and kwargs["seed"] == 3


def test_stop_defaults_are_the_papers_and_enter_the_key():
    cfg = compose_cfg("+experiment=demo")
    assert stop_strings(cfg.benchmark.math, cfg.eval) == ["Problem:"]
    assert stop_strings(cfg.benchmark.gsm8k, cfg.eval) == ["Q:"]
    cfg.eval.stop = []
    none = completions_spec(cfg.benchmark.math, cfg.eval, "m", None, None, "model")
    assert none.fields["stop"] == [] and none.fields["sampling"] is None  # no stop, greedy: in the key as such
    cfg.eval.stop = None
    assert completions_spec(cfg.benchmark.math, cfg.eval, "m", None, None, "model").fields["stop"] == ["Problem:"]


def test_sampling_fields_seeds_and_validation():
    cfg = compose_cfg("+experiment=demo", "+protocol=sampled")
    assert sampling_fields(cfg.eval, cfg.benchmark.aime24)["n_samples"] == 16
    assert sampling_fields(cfg.eval, cfg.benchmark.math) == {"n_samples": 4, "temperature": 0.6, "top_p": 0.95, "seed": 0}
    greedy = compose_cfg("+experiment=demo")
    assert sampling_fields(greedy.eval) is None
    assert problem_seed(0, "math", "a") == problem_seed(0, "math", "a") != problem_seed(1, "math", "a")
    assert 0 <= problem_seed(0, "math", "a") < 2**31
    bad = compose_cfg("+experiment=demo", "eval.n_samples=4")
    with pytest.raises(ConfigError, match="eval.n_samples=4 is not allowed with eval.temperature=0"):
        validate(bad)
    bad = compose_cfg("+experiment=demo", "eval.temperature=0.6", "eval.top_p=0")
    with pytest.raises(ConfigError, match="eval.top_p=0"):
        validate(bad)
