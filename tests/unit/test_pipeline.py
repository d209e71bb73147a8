"""The job plan: artifact keys shared across a sweep, stage roles, and the CLI's one-line errors."""

from __future__ import annotations

import pytest

from conftest import compose_cfg
from mixgap.plan import jobs, summary


def _keys(*overrides: str) -> dict[str, str]:
    cfg = compose_cfg(*overrides, "paths.data=null")
    return {role: spec.key for role, spec in jobs.job_specs(cfg).items()}


def test_pool_keys_follow_the_teachers_sampling_not_the_student():
    base = _keys("student=qwen0.5b")
    other_student = _keys("student=qwen7b")
    hotter = _keys("student=qwen0.5b", "mix.strong.sampling.temperature=1.0")
    assert other_student["pool.strong"] == base["pool.strong"] and other_student["pool.weak"] == base["pool.weak"]
    assert other_student["mixture"] == base["mixture"]
    assert other_student["checkpoint"] != base["checkpoint"]
    assert hotter["generation.strong"] != base["generation.strong"] and hotter["pool.strong"] != base["pool.strong"]
    assert hotter["pool.weak"] == base["pool.weak"]


def test_weights_share_pools_and_the_untuned_evaluation_but_not_mixtures():
    a, b = _keys("mix.weight=0"), _keys("mix.weight=1")
    assert a["pool.strong"] == b["pool.strong"] and a["eval.untuned.math"] == b["eval.untuned.math"]
    assert a["mixture"] != b["mixture"] and a["eval.tuned.math"] != b["eval.tuned.math"]
    assert _keys("mix.weight=1")["mixture"] == _keys("mix.weight=1.0")["mixture"]


@pytest.mark.parametrize(
    "stage, roles",
    [
        ("prepare", []),
        ("generate", ["generation.strong", "pool.strong", "generation.weak", "pool.weak"]),
        ("mix", ["generation.strong", "pool.strong", "generation.weak", "pool.weak", "mixture"]),
        ("train", ["generation.strong", "pool.strong", "generation.weak", "pool.weak", "mixture", "checkpoint"]),
    ],
)
def test_each_stage_builds_what_comes_before_it(stage, roles):
    cfg = compose_cfg(f"stage={stage}", "paths.data=null")
    assert list(jobs.make_plan(cfg).roles) == roles


def test_evaluate_is_the_untuned_student_and_all_adds_the_fine_tuned_one():
    cfg = compose_cfg("stage=evaluate", "benchmark=[aime24,amc23]", "paths.data=null")
    assert list(jobs.make_plan(cfg).roles)[-4:] == ["completions.untuned.aime24", "completions.untuned.amc23",
                                                    "eval.untuned.aime24", "eval.untuned.amc23"]
    cfg = compose_cfg("stage=all", "benchmark=[aime24]", "paths.data=null", "student=smollm2_135m")
    assert list(jobs.make_plan(cfg).roles) == [
        "model", "generation.strong", "pool.strong", "generation.weak", "pool.weak", "mixture", "predict.strong",
        "predict.weak", "checkpoint", "completions.untuned.aime24", "eval.untuned.aime24", "completions.tuned.aime24",
        "eval.tuned.aime24"]  # build order


def test_generate_with_a_teacher_plans_only_that_teacher():
    cfg = compose_cfg("stage=generate", "teacher=qwen72b", "paths.data=null")
    assert list(jobs.make_plan(cfg).roles) == ["generation.teacher", "pool.teacher"]


def test_plan_summary_counts_distinct_artifacts_and_uses():
    results = [
        {"status": "planned", "plan": [{"role": "pool.strong", "key": "pool-a", "done": True},
                                       {"role": "mixture", "key": "mixture-1", "done": False},
                                       {"role": "eval.untuned.math", "key": "eval-u", "done": False}]},
        {"status": "planned", "plan": [{"role": "pool.strong", "key": "pool-a", "done": True},
                                       {"role": "mixture", "key": "mixture-2", "done": False},
                                       {"role": "eval.untuned.math", "key": "eval-u", "done": False}]},
    ]
    assert summary.plan_summary(results) == {
        "pool": {"distinct": 1, "done": 1, "uses": 2},
        "mixture": {"distinct": 2, "done": 0, "uses": 2},
        "eval.untuned": {"distinct": 1, "done": 0, "uses": 2},
    }
