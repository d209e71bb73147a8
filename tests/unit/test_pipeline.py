"""The job plan: artifact keys shared across a sweep, stage roles, and the CLI's one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, compose_cfg
from mixgap import pipeline
from mixgap.plan import jobs
from mixgap.plan import summary


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
    assert list(jobs.make_plan(cfg).roles)[-2:] == ["eval.untuned.aime24", "eval.untuned.amc23"]
    cfg = compose_cfg("stage=all", "benchmark=[aime24]", "paths.data=null", "student=smollm2_135m")
    assert list(jobs.make_plan(cfg).roles) == [
        "model", "generation.strong", "pool.strong", "generation.weak", "pool.weak", "mixture", "predict.strong",
        "predict.weak", "checkpoint", "eval.untuned.aime24", "eval.tuned.aime24"]  # build order


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


def _launch(*args: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    env.pop("MIXGAP_DATA", None)
    return subprocess.run([sys.executable, str(ROOT / "launch.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_card_command_plans_six_jobs_sharing_two_pools_and_three_mixtures(tmp_path):
    proc = _launch("-m", "student=qwen0.5b,qwen3b", "mix.weight=0,0.2,1", "stage=plan", "hydra/launcher=slurm",
                   f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "6 jobs in" in out and "6 planned" in out
    assert "0 of 6 jobs refused" in out and "world 8 x per-device 1 x accumulation 1 = global 8" in out
    for line in ("pool             2 distinct (0 done), used 12 times",
                 "mixture          3 distinct (0 done), used 6 times",
                 "checkpoint       6 distinct (0 done), used 6 times",
                 "eval.untuned    10 distinct (0 done), used 30 times"):
        assert line in out, out
    plans = [json.loads((tmp_path / "sweep" / str(n) / "result.json").read_text()) for n in range(6)]
    assert {p["job"]["student"] for p in plans} == {"qwen0.5b", "qwen3b"}
    assert sorted(p["job"]["weight"] for p in plans) == [0.0, 0.0, 0.2, 0.2, 1.0, 1.0]
    assert not (tmp_path / "cache").exists()  # planning builds nothing


@pytest.mark.parametrize(
    "args, message",
    [
        (["mix.weight=1.5"], "mixgap: error: mix.weight=1.5 is not allowed; it must be in [0, 1]"),
        (["finetune_mode.lora.r=8"], "mixgap: error: finetune_mode.lora.r=8 is not allowed with finetune_mode.mode='full'"),
        (["paths.data=/no/such/kit"], "mixgap: error: paths.data='/no/such/kit' (MIXGAP_DATA) is not an existing folder"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, args, message):
    proc = _launch(*args, "stage=plan", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and proc.stderr.startswith(message)


def test_an_unknown_group_option_keeps_hydras_message(tmp_path):
    proc = _launch("student=qwen9000b", "stage=plan", cwd=tmp_path)
    assert proc.returncode == 1 and "Could not find 'student/qwen9000b'" in proc.stderr
