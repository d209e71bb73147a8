"""Multi-GPU training rehearsed on the CPU: 2 gloo ranks, DeepSpeed ZeRO-3, SmolLM2-135M, kill + resume.

The job runs through the launch a GPU job uses (``build_checkpoint`` -> ``launch.world_plan`` ->
``launch.torchrun_command`` -> ``launch.run_launch`` -> ``python -m mixgap.stages.train`` in every rank);
``MIXGAP_CPU_PROCESSES=2`` stands in for the allocation's 2 GPUs. Global batch 4 = 2 ranks x per-device
1 x accumulation 2; the 1-process reference trains in this process with per-device 1 x accumulation 4
(no DeepSpeed), so both see the same 4 examples per optimiser step: the seeded sampler draws one
permutation per epoch whatever the world size, and accelerate deals its per-device batches round-robin to
the ranks (rank 0 gets positions 0, 2, rank 1 positions 1, 3 of each step's 4). 8 examples, so no rank
pads its share by repeating one. Gradient checkpointing is off (not in the checkpoint key; faster here).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, compose_cfg
from mixgap.core.store import Store
from mixgap.stages.train import checks
from mixgap.stages.train.stage import build_checkpoint, checkpoint_spec

pytestmark = [pytest.mark.slow, pytest.mark.multiprocess]
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
MIXTURE = FIXTURES / "train_mixture"
# 8 of the fixture's 10 rows fit in 200 tokens; global batch 4 -> 2 steps per epoch, 4 steps = 2 epochs;
# checkpoint at step 2 (the kill comes after it), lr 1e-4 so the loss moves in 4 steps.
RUN = ("student=smollm2_135m", "finetune_mode.max_steps=4", "finetune_mode.max_seq_len=200",
       "finetune_mode.per_device_batch_size=1", "finetune_mode.global_batch_size=4",
       "finetune_mode.logging_steps=1", "finetune_mode.save_steps=2", "finetune_mode.learning_rate=1e-4",
       "finetune_mode.gradient_checkpointing=false", "finetune_mode.deepspeed=zero3",
       "finetune_mode.loss_normalization=global_tokens")  # the token denominator recorded per step (num_items_in_batch)
# fp32 on both sides; what differs is the reduction order (2 ranks' gradients summed by gloo, ZeRO-3's
# reduce-scatter in buckets, 2 accumulated micro-batches per rank instead of 4 in one process).
# Measured (2026-12-01, loaded machine): 2 ranks 1.5934181, 1.0872248, 0.9030089, 0.8711701 at steps 1-4 against
# 1 process 1.593, 1.087, 0.903, 0.8712 as the Trainer prints them (4 digits): equal to the printed precision,
# i.e. within ~1e-4 relative. fp32 reduction-order noise is ~1e-6; 1e-3 leaves room for 4 steps of
# amplification at lr 1e-4, and is still 100x below the gap between steps (a wrong batch composition or
# data order changes the loss by > 5%).
LOSS_RTOL = 1e-3


def _losses(logs) -> dict[int, float]:
    return {int(step): m["train/loss"] for step, m in logs if step and "train/loss" in m}


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, smollm2_path):
    """The reference: the same job in this process (1 rank, accumulation 4), per-step losses and counts."""
    from mixgap.core.tracking import NullTracker

    class Recorder(NullTracker):
        def __init__(self):
            self.logs = []

        def log(self, metrics, step=None):
            self.logs.append((step, dict(metrics)))

    cfg = compose_cfg(*RUN, "finetune_mode.launch=local")
    store, tracker = Store(tmp_path_factory.mktemp("one")), Recorder()
    spec = checkpoint_spec(cfg.finetune_mode, "student-test", "mixture-test")
    store.get_or_build(spec, lambda o, w: build_checkpoint(cfg, MIXTURE, smollm2_path, o, w, tracker))
    return _losses(tracker.logs), store.manifest(spec.key)["counts"]


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the job and every process under it (torchrun starts its ranks in sessions of their own)."""
    import psutil

    parent = psutil.Process(proc.pid)
    family = [*parent.children(recursive=True), parent]
    for p in family:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    proc.wait(timeout=60)
    psutil.wait_procs(family, timeout=60)


def _failure(output: str) -> str:
    """A failed run's lines that say why (a rank's own error comes long before torchrun's summary), then its tail."""
    why = [line for line in output.splitlines()
           if re.search(r"terminate called|what\(\)|Error|Exception|Abort|Signal|exitcode", line)]
    return "\n".join(why[-40:]) + "\n--- last 3000 characters ---\n" + output[-3000:]


def test_two_cpu_ranks_zero3_match_one_process_and_resume_after_sigkill(tmp_path, smollm2_path, one_process):
    pytest.importorskip("deepspeed")
    ref_losses, ref = one_process
    env = {**os.environ, "MIXGAP_CPU_PROCESSES": "2",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    script = [sys.executable, str(FIXTURES / "train_resume_job.py"), str(tmp_path), smollm2_path, "-1", *RUN]
    key = checkpoint_spec(compose_cfg(*RUN).finetune_mode, "student-test", "mixture-test").key
    work = tmp_path / ".work" / key
    done = work / "trainer" / "checkpoint-2" / "trainer_state.json"

    # 1. the job, SIGKILLed (parent, torchrun and both ranks) once checkpoint-2 is complete
    # its output goes to a file: an unread pipe fills (progress bars) and blocks the ranks for good
    job_log = tmp_path / "killed_job.log"
    with open(job_log, "w") as fh:
        job = subprocess.Popen(script, env=env, stdout=fh, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 900
    while not done.is_file() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert job.poll() is None, (job.returncode, job_log.read_text()[-3000:])
    assert done.is_file(), "no checkpoint-2 within 15 minutes"
    time.sleep(2)  # into step 3
    _kill_tree(job)
    store = Store(tmp_path)
    assert not store.is_done(key)
    before = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    killed_losses = {row["step"]: row["train/loss"] for row in before}
    assert {1, 2} <= set(killed_losses) and max(killed_losses) < 4

    # 2. the rerun: every rank resumes from the last complete checkpoint and finishes the run
    rerun = subprocess.run(script, env=env, capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, _failure(rerun.stdout + rerun.stderr)
    lines = rerun.stdout.strip().splitlines()
    counts = json.loads(lines[-1])
    logs = json.loads(next(line for line in lines if line.startswith("LOGS "))[5:])
    assert store.is_done(key) and not work.exists()  # published; the finished job's work dir is gone
    assert (counts["launch"], counts["deepspeed"], counts["world_size"], counts["steps"]) == ("torchrun", "zero3", 2, 4)
    ranks = counts["ranks"]
    assert [r["rank"] for r in ranks] == [0, 1]
    for r in ranks:  # both ranks loaded checkpoint-2 and trained steps 3 and 4, 2 micro-batches of 1 each
        assert r["resumed_from"].endswith("checkpoint-2") and r["global_step"] == 4
        assert sorted(r["micro_batches"]) == ["3", "4"]
        assert all(row[:2] == [2, 2] for row in r["micro_batches"].values()), r["micro_batches"]
        # the DeepSpeed engine's own batch: 1 per device x 2 accumulation x 2 ranks
        assert (r["train_batch_size"], r["gradient_accumulation_steps"]) == (4, 2)
    ref_steps = ref["ranks"][0]["micro_batches"]
    for step in ("3", "4"):
        # the loss denominator of each optimiser step is the supervised tokens of all 4 examples, both ranks
        # together, and it equals the 1-process run's for that step: the same 4 examples in every step
        shares = [r["micro_batches"][step][2] for r in ranks]
        assert ranks[0]["micro_batches"][step][3] == sum(shares) == ref_steps[step][3] == ref_steps[step][2]
        assert ref_steps[step][:2] == [4, 4] and all(s > 0 for s in shares)

    # 3. the loss after 4 steps (and at every step, killed run for 1-2, resumed run for 3-4) = 1 process
    losses = {**{s: v for s, v in killed_losses.items() if s <= 2}, **_losses(logs)}
    assert sorted(losses) == [1, 2, 3, 4] == sorted(ref_losses)
    diffs = {s: abs(losses[s] - ref_losses[s]) / ref_losses[s] for s in losses}
    print("2-rank vs 1-process loss per step:", {s: (losses[s], ref_losses[s], diffs[s]) for s in losses})
    assert max(diffs.values()) <= LOSS_RTOL, diffs
    assert counts["final_loss"] == losses[4] and ref_losses[4] < ref_losses[1]

    # 4. the consolidated ZeRO-3 checkpoint: full weights (the save checks), and it reloads with its stop token
    out = store.path(key)
    weights = checks.check_saved_weights(out, checks.expected_parameters(out))
    assert weights["elements"] == counts["weights"]["elements"] == ref["weights"]["elements"]
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(out)
    ids = torch.tensor([[1, 28, 339, 2]])
    assert torch.isfinite(model(ids).logits).all()
    assert json.loads((out / "generation_config.json").read_text())["eos_token_id"][0] == 2
