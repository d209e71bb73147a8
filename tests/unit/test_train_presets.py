"""Every preset's training run, as a GPU node would start it, built for real on this CPU with the pinned
transformers, DeepSpeed and peft: ``TrainingArguments`` (the object that raised a TypeError at the first step
of every cluster job when it was given names newer than the pin), its DeepSpeed config, and peft's LoRA config.

The device facts are faked (8 GPUs, bf16 supported); everything else is what
``mixgap.stages.train.stage.build_checkpoint`` computes (:func:`run_settings`, :func:`train_job`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import transformers.training_args as training_args

from conftest import compose_cfg
from mixgap.core.config import to_container
from mixgap.core.stage import BuildContext
from mixgap.core.store import ArtifactSpec
from mixgap.core.tracking import NullTracker
from mixgap.stages.train import batching, trainer
from mixgap.stages.train import stage as train_stage
from mixgap.stages.train.stage import checkpoint_spec, run_settings, train_job

PRESETS = {  # preset -> (overrides, GPUs, mode, ZeRO stage, per-device batch, accumulation)
    "paper full (Table 1, qwen3b)": (["+experiment=long_vs_short", "student=qwen3b"], 8, "full", 3, 1, 1),
    "paper LoRA (Table 1, qwen14b)": (["+experiment=long_vs_short", "student=qwen14b"], 8, "lora", 3, 1, 1),
    "paper LoRA (llama70b)": (["+experiment=long_vs_short", "student=llama70b"], 8, "lora", 3, 1, 1),
    "paper full on 4 GPUs (the authors' count)": (["+experiment=long_vs_short", "student=qwen0.5b"], 4, "full", 3, 2, 1),
    "released_mix": (["finetune_mode=released_mix"], 8, "full", 3, 5, None),
    # the CPU demo's global batch of 2 runs on 1 or 2 GPUs (8 refuse it); it sets no DeepSpeed
    "demo": (["+experiment=demo"], 2, "full", None, 1, 1),
}


@pytest.fixture
def bf16_gpu(monkeypatch):
    """transformers asks torch whether the GPU supports bf16; on a GPU node it does."""
    monkeypatch.setattr(training_args, "is_torch_bf16_gpu_available", lambda: True)


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_builds_its_training_arguments_on_gpus(name, bf16_gpu, tmp_path):
    overrides, gpus, mode, stage, per_device, accumulation = PRESETS[name]
    cfg = compose_cfg(*overrides)
    run = run_settings(to_container(cfg.finetune_mode), gpus=gpus, env={})
    assert run.subprocess and run.world.world_size == gpus and run.precision == "bf16"
    if run.finetune["batch_unit"] == "packed_sequences":  # as build_checkpoint does once lengths are known
        # 400 packs of 3,000 + 900 tokens, then 50 of 4 x 900: 450 packs = 6 steps of <= 80 packs; 1,000 examples
        # / 6 steps = 167 a step, rounded up to a multiple of 5 per device x 8 GPUs = 200
        batch = batching.packed_batch([3000] * 400 + [900] * 600, run.finetune["pack_len"],
                                      run.finetune["global_batch_size"], run.finetune["per_device_batch_size"] * gpus)
        assert (batch["packs"], batch["steps_per_epoch"], batch["examples_per_step"]) == (450, 6, 200)
        run.finetune["global_batch_size"] = batch["examples_per_step"]
        accumulation = 5  # 200 examples = 5 per device x 8 GPUs x 5
    job = train_job(run, "Qwen/Qwen2.5-3B-Instruct", cfg.student.chat_template, tmp_path / "work", tmp_path / "out")
    args = trainer.training_arguments(job, use_cpu=False)
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (per_device, accumulation)
    assert args.bf16 and args.gradient_checkpointing and args.gradient_checkpointing_kwargs == {"use_reentrant": False}
    assert args.learning_rate == cfg.finetune_mode.learning_rate and args.lr_scheduler_type == "cosine"
    assert args.optim == "adamw_torch" and args.num_train_epochs == cfg.finetune_mode.epochs
    if stage is None:
        assert args.deepspeed is None and run.deepspeed_config is None
    else:
        ds = args.hf_deepspeed_config.config
        assert ds["zero_optimization"]["stage"] == stage and ds["bf16"]["enabled"] is True
        assert ds["train_micro_batch_size_per_gpu"] == per_device and ds["gradient_accumulation_steps"] == accumulation
    assert job.save_dir == str(tmp_path / "out" / "adapter" if mode == "lora" else tmp_path / "out")
    if mode == "lora":
        lora = trainer.lora_config(run.finetune["lora"])
        assert (lora.r, lora.lora_alpha, lora.lora_dropout) == (8, 16, 0.0)
        assert set(lora.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
        assert trainer.load_dtype(job) == "bfloat16"


def test_the_demo_on_this_cpu_trains_in_process_in_fp32():
    cfg = compose_cfg("+experiment=demo")
    run = run_settings(to_container(cfg.finetune_mode), gpus=0, env={})
    assert not run.subprocess and run.deepspeed_config is None and run.precision == "fp32"
    job = train_job(run, "x", cfg.student.chat_template, Path("/tmp/w"), Path("/tmp/o"))
    args = trainer.training_arguments(job, use_cpu=True)
    assert not args.bf16 and args.deepspeed is None and args.per_device_train_batch_size == 1
    assert args.gradient_accumulation_steps == cfg.finetune_mode.global_batch_size


def test_two_cpu_ranks_take_the_gpu_launch_with_deepspeed():
    cfg = compose_cfg("+experiment=demo", "finetune_mode.deepspeed=zero3")
    run = run_settings(to_container(cfg.finetune_mode), gpus=0, env={"MIXGAP_CPU_PROCESSES": "2"})
    assert run.subprocess and run.world.world_size == 2 and Path(run.deepspeed_config).name == "zero3.json"


def test_the_ranks_run_the_preflights_per_device_batch(bf16_gpu, tmp_path):
    """qwen0.5b full SFT on one 80 GB GPU: the preflight decides per-device 1 (2 would need 73.5 GB > 72.0 usable);
    the run takes it with accumulation 8, keeping the global batch 8; the checkpoint's key keeps the configured 2."""
    cfg = compose_cfg("student=qwen0.5b", "finetune_mode=full")
    ft = to_container(cfg.finetune_mode)
    run = run_settings(ft, gpus=1, env={}, per_device=1)
    job = train_job(run, "Qwen/Qwen2.5-0.5B-Instruct", cfg.student.chat_template, tmp_path / "work", tmp_path / "out")
    args = trainer.training_arguments(job, use_cpu=False)
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (1, 8)
    ds = args.hf_deepspeed_config.config
    assert (ds["train_micro_batch_size_per_gpu"], ds["gradient_accumulation_steps"], ds["train_batch_size"]) == (1, 8, 8)
    assert ft["per_device_batch_size"] == 2 and checkpoint_spec(cfg.finetune_mode, "s", "m").fields["per_device_batch_size"] == 2
    # no decision, or one above the configured batch: the configured 2 x 4
    assert [run_settings(ft, 1, {}, cap).finetune["per_device_batch_size"] for cap in (None, 2, 4)] == [2, 2, 2]
    # the decision is a ceiling; the layout on the run's world still divides the global batch: 8 GPUs -> 1 x 1
    assert run_settings(ft, 8, {}, 2).finetune["per_device_batch_size"] == 1


def test_the_train_stage_hands_the_preflights_decision_to_the_run(monkeypatch, tmp_path):
    """stage.run -> build_checkpoint -> run_settings carries ctx.decisions["train_per_device_batch_size"]."""
    seen = []

    class Reached(Exception):
        pass

    def spy(ft, gpus, env, per_device=None):
        seen.append((ft["per_device_batch_size"], per_device))
        raise Reached

    class BuildHere:  # a store that builds in place
        def get_or_build(self, spec, build):
            return build(tmp_path / "out", tmp_path / "work")

    monkeypatch.setattr(train_stage, "run_settings", spy)
    cfg = compose_cfg("student=qwen0.5b", "finetune_mode=full")
    specs = {"student": ArtifactSpec("student", {"weights": {"hub": "Qwen/Qwen2.5-0.5B-Instruct", "revision": "c" * 40}}),
             "checkpoint": checkpoint_spec(cfg.finetune_mode, "s", "m")}
    ctx = BuildContext(cfg, BuildHere(), NullTracker(), specs,
                       {"train_per_device_batch_size": 1}, paths={"mixture": tmp_path}, values={"student": "x"})
    with pytest.raises(Reached):
        train_stage.run(ctx, ["checkpoint"])
    ctx.decisions = {}  # a job on the CPU: no decision, the configured batch
    with pytest.raises(Reached):
        train_stage.run(ctx, ["checkpoint"])
    assert seen == [(2, 1), (2, None)]
