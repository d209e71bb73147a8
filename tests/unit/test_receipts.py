"""Every stage ends with one line of what it made (mixgap.core.stage.BuildContext.receipt), logged at INFO (Hydra prints
it on screen) and kept in result.json: a tiny study of one's own files, run twice through the whole pipeline with the
real SmolLM2-135M-Instruct; the second run reuses every artifact and says so."""

from __future__ import annotations

import json
import logging

import pytest

from conftest import compose_cfg, write_study
from mixgap import pipeline
from mixgap.core import conftree
from mixgap.core.store import Store

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def receipts(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "mixgap.core.stage"]


def test_every_stage_of_a_tiny_study_says_what_it_made_then_that_it_reused_it(tmp_path, kit, smollm2_path, caplog):
    """Hand-checked: the strong teacher keeps p0, p1, p2 of 4 (p3's \\boxed{41} is not 42), the weak one all 4; the
    mixture is the 3 shared problems, floor(0.5 x 3 + 0.5) = 2 of them strong (p2 and p0, the two lowest
    sha256("0:<id>")), so w = 2/3; p0's strong response (~300 tokens) is over max_seq_len=128, so training keeps 2 of
    3 examples and predict, going p2, p0, p1, scores p2 and p1 (p0 over length); the untuned and the tuned student
    answer neither benchmark question within 4 new tokens."""
    overrides = [*write_study(tmp_path / "study"), f"paths.cache={tmp_path / 'cache'}", f"paths.data={kit}",
                 "student=smollm2_135m", "student.gguf=null", f"student.hf_id={smollm2_path}",
                 "finetune_mode.max_seq_len=128", "finetune_mode.max_steps=1", "finetune_mode.per_device_batch_size=1",
                 "finetune_mode.global_batch_size=1", "finetune_mode.deepspeed=null", "finetune_mode.warmup_ratio=0",
                 "finetune_mode.gradient_checkpointing=false", "eval.backend=hf", "eval.max_new_tokens=4",
                 "eval.max_model_len=null", "predict.max_samples=2", "predict.batch_size=1", "predict.n_boot=100"]
    tree = conftree.from_command_line(overrides)
    pipeline.check_command_line(overrides, tree)
    task = [o for o in overrides if not o.startswith("hydra.")]
    cfg = conftree.compose(task, tree)
    caplog.set_level(logging.INFO, logger="mixgap")
    first = pipeline.run_job(cfg, tmp_path / "job1", overrides=task)
    loss = Store(tmp_path / "cache").manifest(first["artifacts"]["checkpoint"])["counts"]["final_loss"]
    rsr = {r: first["learnability"][r]["rsr"]["estimate"] for r in ("strong", "weak")}
    better = first["learnability"]["prediction"]
    made = [
        f"prepare: student smollm2_135m: {smollm2_path}",
        "generate.strong: {}kit_long_cot pool: kept 3 of 4 problems (75.0%)",
        "generate.weak: {}kit_short_cot pool: kept 4 of 4 problems (100.0%)",
        "mix: {}3 examples, 2 strong and 1 weak (realised w = 0.667; mix.weight=0.5)",
        "benchmarks: mybench 2 problems to evaluate",
        f"predict: {{}}2 problems scored in both pools (3 shared, 1 over length); RSR strong {rsr['strong']:.3f}, weak "
        f"{rsr['weak']:.3f}: {better['better']} predicted better ({better['verdict']})",
        f"train: {{}}2 examples (1 dropped, 0 truncated for length), 1 optimiser step(s), final loss {loss:.4f}",
        "completions.untuned: {}mybench 2 completions of 2 problems",
        "evaluate.untuned: {}mybench 0 of 2 correct (0.0%)",
        "completions.tuned: {}mybench 2 completions of 2 problems",
        "evaluate.tuned: {}mybench 0 of 2 correct (0.0%)",
    ]
    assert receipts(caplog) == [line.format("") for line in made]
    assert list(first["receipts"].values()) == receipts(caplog)  # result.json keeps them too
    assert json.loads((tmp_path / "job1" / "result.json").read_text())["receipts"] == first["receipts"]
    caplog.clear()
    pipeline.run_job(cfg, tmp_path / "job2", overrides=task)
    assert receipts(caplog) == [line.format("reused: ") for line in made]


def test_the_judge_says_how_many_rule_misses_it_turned(tmp_path, monkeypatch, caplog):
    """judge.run's receipt, its verdicts stood in (judge_scores' fields): built by this job, then reused."""
    from mixgap.core.stage import BuildContext
    from mixgap.core.tracking import NullTracker
    from mixgap.plan import jobs
    from mixgap.stages import judge

    cfg = compose_cfg("+judge@eval.judge=smollm2_135m", "benchmark=[math500]", "paths.data=null")
    specs = jobs.job_specs(cfg)
    store = Store(tmp_path / "cache")
    monkeypatch.setattr(judge, "judge_evaluations", lambda *args: {
        "judge.untuned.math500": {"flips": 1, "sent": 3, "judge_accuracy": 37.5}})
    caplog.set_level(logging.INFO, logger="mixgap")
    for built in (True, False):
        ctx = BuildContext(cfg, store, NullTracker(), specs, values={"benchmarks": {"math500": []}})
        store.built = {specs["judge.untuned.math500"].key} if built else set()
        judge.run(ctx, ["judge.untuned.math500"])
    assert receipts(caplog) == [
        "judge: untuned.math500: 1 of 3 rule misses judged correct (37.5% judged)",
        "judge: reused: untuned.math500: 1 of 3 rule misses judged correct (37.5% judged)"]
