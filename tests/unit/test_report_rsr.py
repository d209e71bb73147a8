"""A student-aware arm (mix.strategy=rsr) in the report: one more arm of "Which mix weight?", a Table 3 row, a lone
marker in Figure 6.

The sweep: qwen3b at w = 0, 0.2, 1 (tests/fixtures/report_sweep.json's evaluations) and mix.strategy=rsr run at w = 0
and w = 1 (one arm: rsr takes no weight, both jobs name the same evaluations). Correct problems are nested:
w = 0 (MATH500 0-3, AIME24 0) ⊂ w = 1 (0-4, 0) ⊂ w = 0.2 (0-5, 0-1) ⊂ rsr (0-8, 0-2), averages 30, 35, 50, 75.

Hand computations (n problems drawn with replacement: a given set of m problems is never drawn with ((n-m)/n)^n):

- rsr ties w = 0.2 only when none of MATH500 6-8 and AIME24 2 is drawn: A = 0.7^10 · 0.8^5; w = 1 joins the tie when
  neither MATH500 5 nor AIME24 1 is drawn either: B = 0.6^10 · 0.6^5; w = 0 joins when MATH500 4 is not drawn
  either: C = 0.5^10 · 0.6^5. P(best) of rsr = (1 − A) + (A − B)/2 + (B − C)/3 + C/4.
- Δ = rsr − best fixed (w = 0.2) = 75 − 50 = +25 points; Δ = 0 only in A (0.93% < 2.5%), so its 95% CI lies above 0:
  rsr beats the best fixed w.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from matplotlib.figure import Figure
from test_report import build_sweep

from conftest import FIXTURES, compose_cfg
from mixgap.core.tracking import NullTracker
from mixgap.results import figures, report
from mixgap.results.tables.names import arm_of, arm_title, weight_label
from mixgap.stats.intervals import Interval

BOOT = 20_000


def _spec() -> dict:
    spec = json.loads((FIXTURES / "report_sweep.json").read_text())
    spec["evals"]["eval-q3b_rsr_math500"] = {"benchmark": "math500", "correct": list(range(9))}
    spec["evals"]["eval-q3b_rsr_aime24"] = {"benchmark": "aime24", "correct": [0, 1, 2]}
    rsr = {"status": "done", "untuned": "q3b_untuned", "tuned": "q3b_rsr",
           "train": {"kept": {"strong": 70, "weak": 100}, "dropped": {"strong": 0, "weak": 0}}}
    jobs = [j for j in spec["sweeps"]["a"] if "student=qwen3b" in j["overrides"] and "finetune_mode.seed=43" not in
            j["overrides"]]
    jobs += [{**rsr, "overrides": ["student=qwen3b", f"mix.weight={w}", "mix.strategy=rsr"]} for w in (0, 1)]
    spec["sweeps"] = {"a": jobs}
    return spec


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("rsr")
    sweeps, cache = build_sweep(root, _spec())
    cfg = compose_cfg("stage=report", f"report.sweep=['{sweeps[0]}']", f"paths.cache={cache}", "tracking.backend=none",
                      f"report.n_boot={BOOT}")
    return report.run(cfg, None, lambda out: NullTracker())


def test_the_arm_of_a_job_is_its_weight_or_its_strategy():
    assert arm_of({"weight": 0.2}) == 0.2 and arm_of({"weight": 0.2, "strategy": "fixed"}) == 0.2
    assert arm_of({"weight": 1.0, "strategy": "rsr"}) == "rsr"
    assert arm_of({"weight": 0.2, "strategy": "rsr_budget"}) == "rsr_budget w=0.2"
    assert weight_label("rsr", [70 / 170]) == "rsr (0.412)"
    assert [arm_title(arm_of(i)) for i in ({"weight": 1.0}, {"weight": 0.0, "strategy": "rsr"},
                                           {"weight": 0.2, "strategy": "rsr_budget"})] == ["w=1", "rsr", "rsr_budget w=0.2"]


def test_p_best_is_over_the_weights_and_the_student_aware_arm_together(made):
    rows = list(csv.DictReader(open(made["recommend_csv"])))
    p = {r["weight"]: float(r["p_best"]) for r in rows}
    assert set(p) == {"0.0", "0.2", "1.0", "rsr"}  # the two rsr jobs are one arm
    a, b, c = 0.7**10 * 0.8**5, 0.6**15, 0.5**10 * 0.6**5
    assert p["rsr"] == pytest.approx((1 - a) + (a - b) / 2 + (b - c) / 3 + c / 4, abs=0.002)
    assert sum(p.values()) == pytest.approx(1.0, abs=1e-12)
    rsr = next(r for r in rows if r["weight"] == "rsr")
    assert (rsr["strategy"], rsr["verdict"], rsr["vs_best_fixed"]) == ("rsr", "best", "better")
    assert float(rsr["delta_vs_best_fixed"]) == 25.0 and float(rsr["realised_weight"]) == pytest.approx(70 / 170)
    assert float(rsr["accuracy"]) == 75.0
    text = Path(made["markdown"]).read_text()
    section = text[text.index("## Which mix weight?"):]
    assert "rsr beats the best fixed w = 0.2 (Δ = +25.0 [" in section
    assert p["rsr"] >= 0.995 and "**rsr is best with P > 0.99; no other weight is within noise; 0, 0.2 and 1 are worse." in section
    assert "| rsr | 0.412 | 75.0" in section


def test_table3_has_a_row_for_the_strategy_counted_once(made):
    text = Path(made["markdown"]).read_text()
    row = next(line for line in text.splitlines() if line.startswith("| Mix-Long (rsr) |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[3:5] == ["rsr (0.412)", "1"]  # w (realised), seeds: the two rsr jobs are one run


def test_figure6_draws_a_student_aware_arm_at_its_realised_weight_apart_from_the_curve(made):
    assert any(Path(f).name.startswith("fig_average_vs_weight_") for f in made["figures"])
    ax = Figure().add_subplot()
    before = len(ax.lines)
    handles = figures._aware_points(ax, [("rsr", 0.412, Interval(75.0, 60.0, 90.0))], "C0", 0.0)
    marker = handles[0].lines[0]  # the errorbar's data line: one point, no line joining it to anything
    assert list(marker.get_xdata()) == [0.412] and list(marker.get_ydata()) == [75.0]
    assert marker.get_marker() == "D" and marker.get_linestyle() == "None" and len(ax.lines) == before + 1 + 2
