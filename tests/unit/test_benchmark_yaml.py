"""A benchmark is one YAML file: a copy of conf/benchmark/aime24.yaml under a new name, and nothing else, plans the
same preflight hours as AIME24, grades the same way and is labelled by its own YAML."""

from __future__ import annotations

from pathlib import Path

from conftest import ROOT, compose_cfg
from mixgap.plan.jobs import make_plan
from mixgap.plan.preflight import preflight
from mixgap.stages.backends.base import Completion
from mixgap.stages.data import Problem
from mixgap.stages.verdicts import grade_rows


def copy_of_aime24(folder: Path) -> str:
    """``conf``-style search path holding benchmark/aime25.yaml = aime24.yaml renamed (name, key and label)."""
    text = (ROOT / "conf" / "benchmark" / "aime24.yaml").read_text()
    text = text.replace("aime24:", "aime25:").replace("name: aime24", "name: aime25").replace("label: AIME24", "label: AIME25")
    (folder / "benchmark").mkdir(parents=True)
    (folder / "benchmark" / "aime25.yaml").write_text(text)
    return f"hydra.searchpath=[file://{folder}]"


def test_a_copied_benchmark_plans_like_the_original(tmp_path):
    original = compose_cfg("benchmark=[aime24]", "data.missing_pool=wait")
    copy = compose_cfg("benchmark=[aime25]", "data.missing_pool=wait", copy_of_aime24(tmp_path))
    assert (copy.benchmark.aime25.label, copy.benchmark.aime25.size, copy.benchmark.aime25.extraction) == ("AIME25", 30, "boxed")
    plans = [make_plan(c) for c in (original, copy)]
    assert [r.replace("aime25", "aime24") for r in plans[1].roles] == list(plans[0].roles)
    assert plans[1].identity["benchmark_labels"] == {"aime25": "AIME25"}
    hours = [preflight(c, p, 8) for c, p in zip((original, copy), plans, strict=True)]
    # the same 30 problems x 15,488 new tokens (16,000 cut at the 16,000-token engine context), two arms
    assert hours[1]["eval_hours_estimate"] == hours[0]["eval_hours_estimate"] > 0
    assert hours[1]["gpu_hours_estimate"] == hours[0]["gpu_hours_estimate"]


def test_a_copied_benchmark_grades_with_its_own_extraction(tmp_path):
    copy = compose_cfg("benchmark=[aime25]", copy_of_aime24(tmp_path)).benchmark.aime25
    rows = grade_rows(copy, [Problem(id="1", problem="?", answer="204", solution=None)],
                      [[Completion("so \\boxed{204}", "stop", 3, 4, "ok")]], extract="boxed")
    assert (rows[0]["correct"], rows[0]["extracted"]) == (True, "204")


def test_math_prompts_are_the_papers_verbatim():
    cfg = compose_cfg("benchmark=[math,math500,aime24,amc23,olympiadbench]")
    # the authors' task YAMLs (Small-Model-Gap/Small-Model-Learnability-Gap, commit 814cf97, lm-evaluation-harness/
    # lm_eval/tasks/): hendrycks_math_algebra.yaml doc_to_text, "...problem and present..."
    assert cfg.benchmark.math.prompt == ("Solve the following math problem and present the final answer in the format: "
                                         "Final Answer: \\boxed{your_answer}.\nProblem: {problem}\nAnswer:")
    # hendrycks_math_500.yaml, AIME.yaml, AMC.yaml, Olympiad.yaml doc_to_text, "...problem. Present..."
    for name in ("math500", "aime24", "amc23", "olympiadbench"):
        assert cfg.benchmark[name].prompt == ("Solve the following math problem. Present the final answer in the format: "
                                              "Final Answer: \\boxed{your_answer}.\nProblem: {problem}\nAnswer:")
