"""Multi-GPU training rehearsed on the CPU: 2 gloo ranks, DeepSpeed ZeRO-3, SmolLM2-135M, kill + resume; full SFT
and LoRA (the training path of every student of 14B and more).

The job runs through the launch a GPU job uses (``build_checkpoint`` -> ``launch.world_plan`` ->
``launch.torchrun_command`` -> ``launch.run_launch`` -> ``python -m mixgap.stages.train`` in every rank);
``MIXGAP_CPU_PROCESSES=2`` stands in for the allocation's 2 GPUs. Global batch 4 = 2 ranks x per-device
1 x accumulation 2; the 1-process reference trains in this process with per-device 1 x accumulation 4
(no DeepSpeed), so both see the same 4 examples per optimiser step: the seeded sampler draws one
permutation per epoch whatever the world size, and accelerate deals its per-device batches round-robin to
the ranks (rank 0 gets positions 0, 2, rank 1 positions 1, 3 of each step's 4). 8 examples, so no rank
pads its share by repeating one. Gradient checkpointing is off (not in the checkpoint key; faster here).
The LoRA run's adapter is checked as saved (rank 0, gathered) and as merged into what the evaluation loads.
"""

from __future__ import annotations

import json
import math
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
from mixgap.core.tracking import NullTracker
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
# Measured (2026-12-07, loaded machine): 2 ranks 2.0183644, 1.2881488, 0.9274822, 0.8624250 at steps 1-4 against
# 1 process 2.0183644, 1.2881495, 0.9274823, 0.8624245: at most 6.2e-7 relative (step 4; on 2026-12-01, before
# the training turn became the bare problem, equal to the 4 digits the Trainer prints). fp32 reduction-order
# noise is ~1e-6; 1e-3 leaves room for 4 steps of amplification at lr 1e-4, and is still 50x below the gap
# between steps (a wrong batch composition or data order changes the loss by > 5%).
LOSS_RTOL = 1e-3


def _losses(logs) -> dict[int, float]:
    return {int(step): m["train/loss"] for step, m in logs if step and "train/loss" in m}


class _Recorder(NullTracker):
    """A tracker keeping every ``log`` call."""

    def __init__(self):
        self.logs = []

    def log(self, metrics, step=None):
        self.logs.append((step, dict(metrics)))


def _train_here(root: Path, student: str, run: tuple[str, ...]) -> tuple[dict[int, float], dict, Path]:
    """The reference: ``run`` in this process (1 rank, no DeepSpeed): per-step losses, counts, the artifact."""
    cfg = compose_cfg(*run, "finetune_mode.launch=local")
    store, tracker = Store(root), _Recorder()
    spec = checkpoint_spec(cfg.finetune_mode, "student-test", "mixture-test")
    store.get_or_build(spec, lambda o, w: build_checkpoint(cfg, MIXTURE, student, o, w, tracker))
    return _losses(tracker.logs), store.manifest(spec.key)["counts"], store.path(spec.key)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, smollm2_path):
    """The full-SFT reference (accumulation 4): per-step losses and counts."""
    losses, counts, _out = _train_here(tmp_path_factory.mktemp("one"), smollm2_path, RUN)
    return losses, counts


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


def _killed_and_resumed(tmp_path: Path, student: str, run: tuple[str, ...]):
    """``run`` on 2 CPU ranks under torchrun, SIGKILLed once checkpoint-2 is complete, then run again to the end.

    Returns ``(store, key, losses of the killed run's steps 1-2, the rerun's tracker logs, the rerun's counts)``
    after checking that the rerun resumed both ranks from checkpoint-2 and fed them the same batches as the
    1-process reference would (see the module docstring).
    """
    env = {**os.environ, "MIXGAP_CPU_PROCESSES": "2",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    script = [sys.executable, str(FIXTURES / "train_resume_job.py"), str(tmp_path), student, "-1", *run]
    key = checkpoint_spec(compose_cfg(*run).finetune_mode, "student-test", "mixture-test").key
    work = tmp_path / ".work" / key
    done = work / "trainer" / "checkpoint-2" / "trainer_state.json"

    # 1. the job, SIGKILLed (parent, torchrun and both ranks) once checkpoint-2 is complete
    # its output goes to a file: an unread pipe fills (progress bars) and blocks the ranks for good
    job_log, started = tmp_path / "killed_job.log", time.monotonic()
    with open(job_log, "w") as fh:
        job = subprocess.Popen(script, env=env, stdout=fh, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 900
    while not done.is_file() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert job.poll() is None, (job.returncode, job_log.read_text()[-3000:])
    assert done.is_file(), "no checkpoint-2 within 15 minutes"
    time.sleep(2)  # into step 3
    _kill_tree(job)
    killed_s, started = time.monotonic() - started, time.monotonic()
    store = Store(tmp_path)
    assert not store.is_done(key)
    before = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    killed_losses = {row["step"]: row["train/loss"] for row in before if row["step"] <= 2}
    assert sorted(killed_losses) == [1, 2] and max(row["step"] for row in before) < 4

    # 2. the rerun: every rank resumes from the last complete checkpoint and finishes the run
    rerun = subprocess.run(script, env=env, capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, _failure(rerun.stdout + rerun.stderr)
    print(f"killed run {killed_s:.0f} s (to checkpoint-2 + 2 s), resumed run {time.monotonic() - started:.0f} s")
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
    return store, key, killed_losses, logs, counts


def _same_batches_and_losses(killed_losses, logs, counts, ref_losses, ref, rtol: float) -> dict[int, float]:
    """The 2-rank run fed the reference's examples at every step and logged its losses within ``rtol``."""
    ranks, ref_steps = counts["ranks"], ref["ranks"][0]["micro_batches"]
    for step in ("3", "4"):
        # the loss denominator of each optimiser step is the supervised tokens of all 4 examples, both ranks
        # together, and it equals the 1-process run's for that step: the same 4 examples in every step
        shares = [r["micro_batches"][step][2] for r in ranks]
        assert ranks[0]["micro_batches"][step][3] == sum(shares) == ref_steps[step][3] == ref_steps[step][2]
        assert ref_steps[step][:2] == [4, 4] and all(s > 0 for s in shares)
    # the loss at every step (killed run for 1-2, resumed run for 3-4) = 1 process
    losses = {**killed_losses, **_losses(logs)}
    assert sorted(losses) == [1, 2, 3, 4] == sorted(ref_losses)
    diffs = {s: abs(losses[s] - ref_losses[s]) / ref_losses[s] for s in losses}
    print("2-rank vs 1-process loss per step:", {s: (losses[s], ref_losses[s], diffs[s]) for s in losses})
    assert max(diffs.values()) <= rtol, diffs
    assert counts["final_loss"] == losses[4]
    return losses


def test_two_cpu_ranks_zero3_match_one_process_and_resume_after_sigkill(tmp_path, smollm2_path, one_process):
    pytest.importorskip("deepspeed")
    ref_losses, ref = one_process
    store, key, killed_losses, logs, counts = _killed_and_resumed(tmp_path, smollm2_path, RUN)
    _same_batches_and_losses(killed_losses, logs, counts, ref_losses, ref, LOSS_RTOL)
    assert ref_losses[4] < ref_losses[1]

    # the consolidated ZeRO-3 checkpoint: full weights (the save checks), and it reloads with its stop token
    out = store.path(key)
    weights = checks.check_saved_weights(out, checks.expected_parameters(out))
    assert weights["elements"] == counts["weights"]["elements"] == ref["weights"]["elements"]
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(out)
    ids = torch.tensor([[1, 28, 339, 2]])
    assert torch.isfinite(model(ids).logits).all()
    assert json.loads((out / "generation_config.json").read_text())["eos_token_id"][0] == 2


# LoRA (finetune_mode=lora: r 8, alpha 16, every linear layer of the attention and MLP), the path of every
# student of 14B and more: the base is partitioned by zero.Init at load, peft wraps it, DeepSpeed partitions
# the adapter too, and Trainer.save_model gathers only the trainable parameters on rank 0. lr 1e-3 and no
# warmup (lora.yaml's warmup 0.1 makes step 1's lr 0): B starts at zero, so the loss must move through the
# adapter alone.
LORA_RUN = (*(o for o in RUN if not o.startswith("finetune_mode.learning_rate")), "finetune_mode=lora",
            "finetune_mode.learning_rate=1e-3", "finetune_mode.warmup_ratio=0")
# Measured (2026-12-07, loaded machine), 2 ranks against 1 process: 2.0183644, 1.6682930, 1.4577788, 1.3906775
# against 2.0183644, 1.6682940, 1.4577792, 1.3906775 at steps 1-4: at most 5.7e-7 relative (step 2). 1e-4 is
# ~200x that, and 50x below the smallest gap between steps (4.6%, steps 3-4).
LORA_RTOL = 1e-4
# The adapters, element by element: Adam divides each gradient by its own running norm, so an element whose
# gradient is ~0 takes a step of up to lr in whichever direction fp32 reduction-order noise points. Measured:
# 4.2e-5 of the adapter (relative L2) and 4e-5 of its 2.44M elements off by more than 1e-5 (at most 6.5e-4,
# under one step of lr 1e-3); a different initialisation or a resume that lost the adapter is ~100% off.
ADAPTER_RTOL, ADAPTER_FLIPPED = 1e-3, 1e-3
LORA_TARGETS = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


@pytest.fixture(scope="module")
def one_process_lora(tmp_path_factory, smollm2_path):
    """The LoRA reference (1 process, accumulation 4): per-step losses, counts, the artifact folder."""
    return _train_here(tmp_path_factory.mktemp("one_lora"), smollm2_path, LORA_RUN)


def test_two_cpu_ranks_zero3_lora_match_one_process_and_save_a_real_adapter(tmp_path, smollm2_path, one_process_lora):
    pytest.importorskip("deepspeed")
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    ref_losses, ref, ref_out = one_process_lora
    store, key, killed_losses, logs, counts = _killed_and_resumed(tmp_path, smollm2_path, LORA_RUN)
    _same_batches_and_losses(killed_losses, logs, counts, ref_losses, ref, LORA_RTOL)

    # the adapter rank 0 saved: peft's config and every target module's A (r x in) and B (out x r), gathered
    out = store.path(key)
    adapter_config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert (adapter_config["r"], adapter_config["lora_alpha"]) == (8, 16)
    assert set(adapter_config["target_modules"]) == LORA_TARGETS
    adapter, ref_adapter = (load_file(p / "adapter" / "adapter_model.safetensors") for p in (out, ref_out))
    base = AutoModelForCausalLM.from_pretrained(smollm2_path)
    targets = {name: m for name, m in base.named_modules() if name.rsplit(".", 1)[-1] in LORA_TARGETS}
    assert len(targets) == 7 * base.config.num_hidden_layers == 210
    assert len(adapter) == 2 * len(targets) == counts["adapter"]["tensors"]
    for name, module in targets.items():
        a, b = (adapter[f"base_model.model.{name}.lora_{x}.weight"] for x in "AB")
        assert a.shape == (8, module.in_features) and b.shape == (module.out_features, 8), name
    # trained (B starts at zero) and the same adapter as the 1-process run's (see ADAPTER_RTOL)
    assert all(adapter[n].abs().max() > 0 for n in adapter if ".lora_B." in n)
    assert set(adapter) == set(ref_adapter)
    diff = {n: adapter[n] - ref_adapter[n] for n in adapter}
    rel = math.sqrt(sum(float(d.square().sum()) for d in diff.values())
                    / sum(float(t.square().sum()) for t in ref_adapter.values()))
    flipped = sum(int((d.abs() > 1e-5).sum()) for d in diff.values()) / counts["adapter"]["elements"]
    print(f"adapter vs 1 process: relative L2 difference {rel:.2e}, elements off by > 1e-5: {flipped:.1e}, "
          f"largest {max(float(d.abs().max()) for d in diff.values()):.2e}")
    assert rel <= ADAPTER_RTOL and flipped <= ADAPTER_FLIPPED, (rel, flipped)

    # what the evaluation loads: on every target module exactly base + B A alpha / r, every other weight the base's
    merged = AutoModelForCausalLM.from_pretrained(out).requires_grad_(False)
    base.requires_grad_(False)
    for name, module in targets.items():
        a, b = (adapter[f"base_model.model.{name}.lora_{x}.weight"] for x in "AB")
        assert torch.equal(merged.get_submodule(name).weight, module.weight + b @ a * (16 / 8)), name
    moved = max(float((merged.get_submodule(n).weight - m.weight).abs().max()) for n, m in targets.items())
    assert moved > 1e-4  # the adapter moved the weights measurably (max |B A alpha/r| ~1e-3 here)
    untouched = [n for n, _ in base.named_parameters() if n.removesuffix(".weight") not in targets]
    assert len(untouched) == 2 * base.config.num_hidden_layers + 2  # 2 norms a layer, the final norm, embeddings
    merged_params = dict(merged.named_parameters())
    assert all(torch.equal(merged_params[n], base.get_parameter(n)) for n in untouched)
    assert counts["weights"]["elements"] == ref["weights"]["elements"] == sum(p.numel() for p in base.parameters())
