"""mixgap.results.recommend: P(best) per mix weight, the recommended weight and the weights within noise of it.

Hand computations (resampling n problems with replacement draws a given problem 0 times with probability
((n-1)/n)^n, and a given set of m problems never with ((n-m)/n)^n):

- 3 arms on 5 problems, A = [1,0,0,0,0], B = [0,1,0,0,0], C = 0: A wins when problem 0 is drawn more often than
  problem 1, B the reverse, a tie a = b > 0 splits A/B, and all three tie when neither is drawn, (3/5)^5 = 0.07776.
  So P(C) = 0.07776 / 3 = 0.02592 and P(A) = P(B) = (1 − 0.02592) / 2 = 0.48704.
- The report fixture's qwen3b (tests/fixtures/report_sweep.json): the problems w = 0 solves are a subset of
  w = 1's, those a subset of w = 0.2's, so w = 0.2 is never below. w = 1 ties w = 0.2 when MATH500 problem 5 and
  AIME24 problem 1 are not drawn, 0.9^10 · 0.8^5 = 0.1142545; all three tie when MATH500 problems 4 and 5 and AIME24
  problem 1 are not drawn, 0.8^10 · 0.8^5 = 0.0351844.
"""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from test_report import build_sweep

from conftest import FIXTURES, RecordingTracker, compose_cfg
from mixgap.core.tracking import NullTracker
from mixgap.results import recommend, report
from mixgap.results.tables import recommend as render
from mixgap.stats.intervals import Interval

BOOT = {"n_boot": 20_000, "seed": 0, "confidence": 0.95}


def enumerate_p_best(arms: list[list[int]]) -> list[float]:
    """Exact P(best) of one-benchmark arms: every one of the n^n ordered resamples, ties split."""
    n = len(arms[0])
    shares = [0.0] * len(arms)
    for draw in itertools.product(range(n), repeat=n):
        totals = [sum(arm[i] for i in draw) for arm in arms]
        winners = [a for a, t in enumerate(totals) if t == max(totals)]
        for a in winners:
            shares[a] += 1 / len(winners)
    return [s / n**n for s in shares]


def test_p_best_splits_ties_over_given_resamples():
    samples = np.array([[1.0, 2.0, 2.0], [1.0, 1.0, 2.0], [0.0, 2.0, 1.0]])
    assert recommend.p_best(samples) == pytest.approx([0.5, 1 / 3, 1 / 6])
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        recommend.p_best(np.zeros(3))


def test_p_best_of_three_arms_on_five_problems_by_hand_and_by_enumeration():
    arms = [[1, 0, 0, 0, 0], [0, 1, 0, 0, 0], [0, 0, 0, 0, 0]]
    exact = enumerate_p_best(arms)  # all 5^5 = 3125 resamples
    assert exact == pytest.approx([0.48704, 0.48704, 0.02592])
    _, boot = recommend.arms_p_best([{"b": a} for a in arms], n_boot=200_000, seed=1)
    assert boot == pytest.approx(exact, abs=0.004)
    lopsided = [[1, 1, 0, 0, 0], [1, 0, 1, 1, 0], [0, 0, 0, 1, 1]]
    exact = enumerate_p_best(lopsided)
    assert sum(exact) == pytest.approx(1.0) and exact[1] > exact[0] > exact[2]
    _, boot = recommend.arms_p_best([{"b": a} for a in lopsided], n_boot=200_000, seed=2)
    assert boot == pytest.approx(exact, abs=0.004)


def test_a_clearly_worse_weight_is_worse_and_ties_within_noise():
    n = 40
    good = [1] * 30 + [0] * 10
    close = [1] * 29 + [0] * 11  # one problem fewer: within noise
    bad = [0] * n
    rec = recommend.recommend([0.0, 0.2, 1.0], [{"b": bad}, {"b": good}, {"b": close}], BOOT)
    assert rec["best"] == 0.2 and rec["status"] == {0.2: "best", 0.0: "worse", 1.0: "within noise"}
    assert rec["points"] == [0.0, 75.0, 72.5] and rec["delta"][0.0].estimate == -75.0
    assert sum(rec["p_best"]) == pytest.approx(1.0) and rec["p_best"][0] == 0.0
    p = rec["p_best"][1]
    assert recommend.sentence(rec) == f"w = 0.2 is best with P = {p:.2f}; 1 is within noise; 0 is worse."
    with pytest.raises(ValueError, match="needs >= 2 weights"):
        recommend.recommend([0.2], [{"b": good}], BOOT)


def test_sentence_names_every_group():
    iv = Interval(0.0, -1.0, 1.0)
    rec = {"weights": [0.0, 0.1, 0.2, 0.3, 1.0], "p_best": [0.0, 0.2, 0.61, 0.19, 0.0], "best": 0.2, "delta": {},
           "status": {0.0: "worse", 0.1: "within noise", 0.2: "best", 0.3: "within noise", 1.0: "worse"}}
    assert recommend.sentence(rec) == "w = 0.2 is best with P = 0.61; 0.1 and 0.3 are within noise; 0 and 1 are worse."
    rec = {**rec, "weights": [0.0, 0.2], "p_best": [0.05, 0.95], "delta": {0.0: iv},
           "status": {0.0: "worse", 0.2: "best"}}
    assert recommend.sentence(rec) == "w = 0.2 is best with P = 0.95; no other weight is within noise; 0 is worse."


def test_learnability_prediction_agrees_with_the_winning_side():
    rec = {"weights": [0.0, 0.2, 1.0], "p_best": [0.1, 0.6, 0.3], "best": 0.2, "points": [1, 2, 3], "delta": {},
           "status": {0.0: "within noise", 0.2: "best", 1.0: "within noise"}}
    cell = ("s", "long", "short", "full")
    pred = {("s", "long", "short"): {"prediction": {"better": "weak"}}}
    row = recommend.cell_row(cell, rec, {}, pred)
    assert (row["side"], row["predicted"], row["agrees"]) == ("weak", "weak", True)
    assert recommend.cell_row(cell, {**rec, "best": 1.0}, {}, pred)["agrees"] is False
    assert recommend.cell_row(cell, rec, {}, {})["agrees"] is None
    assert "predicted the **weak** pool" in render.markdown([row], [], 0.95)


def _report(root: Path, spec: dict | None = None, tracker=None) -> dict:
    sweeps, cache = build_sweep(root, spec)
    cfg = compose_cfg("stage=report", f"report.sweep=['{sweeps[0]}']", f"paths.cache={cache}",
                      "tracking.backend=none", f"report.n_boot={BOOT['n_boot']}")
    return report.run(cfg, None, lambda out: tracker or NullTracker())


def test_report_section_on_the_fixture_sweep(tmp_path, capsys):
    tracker = RecordingTracker()
    paths = _report(tmp_path, tracker=tracker)
    rows = [r for r in csv.DictReader(open(paths["recommend_csv"])) if r["student"] == "qwen3b"]
    p = {float(r["weight"]): float(r["p_best"]) for r in rows}
    all_tie, two_tie = 0.8**15, 0.9**10 * 0.8**5 - 0.8**15
    assert p[0.0] == pytest.approx(all_tie / 3, abs=0.004)
    assert p[1.0] == pytest.approx(two_tie / 2 + all_tie / 3, abs=0.006)
    assert p[0.2] == pytest.approx(1 - 0.9**10 * 0.8**5 + two_tie / 2 + all_tie / 3, abs=0.006)
    assert sum(p.values()) == pytest.approx(1.0)
    best = {float(r["weight"]): r["verdict"] for r in rows}
    assert best == {0.0: "within noise", 0.2: "best", 1.0: "within noise"}  # Δ's CI reaches 0 (ties > 2.5%)
    by_w = {float(r["weight"]): r for r in rows}
    assert float(by_w[0.2]["accuracy"]) == 50.0 and float(by_w[0.2]["realised_weight"]) == pytest.approx(27 / 187)
    assert float(by_w[1.0]["delta_vs_recommended"]) == -15.0
    text = Path(paths["markdown"]).read_text()
    assert f"**w = 0.2 is best with P = {p[0.2]:.2f}; 0 and 1 are within noise.**" in text
    assert "## Which mix weight?" in text and len(paths["recommend_figures"]) == 2  # qwen3b and qwen0.5b
    assert all(Path(f).stat().st_size > 10_000 for f in paths["recommend_figures"])
    columns, table = tracker.tables["recommend"]
    assert len(table) == 5 and columns[:5] == ["student", "strong", "weak", "finetune_mode", "weight"]
    assert tracker.values["recommend/qwq32b_vs_qwen32b/qwen3b/full"] == 0.2
    assert tracker.values["p_best/qwq32b_vs_qwen32b/qwen3b/full"] == pytest.approx(p[0.2])
    assert {Path(f).name for f in paths["recommend_figures"]} <= set(tracker.images)


def test_one_weight_per_student_says_there_is_nothing_to_recommend(tmp_path):
    spec = json.loads((FIXTURES / "report_sweep.json").read_text())
    spec["sweeps"] = {"a": [j for j in spec["sweeps"]["a"] if "mix.weight=1" in j["overrides"]
                            and "finetune_mode.seed=43" not in j["overrides"]]}
    paths = _report(tmp_path, spec)
    text = Path(paths["markdown"]).read_text()
    section = text[text.index("## Which mix weight?"):].split("\n## ")[0].strip().splitlines()
    assert section == ["## Which mix weight?", "", render.NOTHING]
    assert paths["recommend_csv"] is None and paths["recommend_figures"] == []
