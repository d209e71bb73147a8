"""The machine a job is planned for (mixgap.plan.machine): a laptop without a GPU, a workstation's local GPUs, a
cluster login node; the judge's engine; every refusal shown; the memory headroom and the training formula.

Device facts are faked by monkeypatching ``mixgap.plan.machine.device_facts`` (never skipped). Memory figures are
hand-computed from conf/student/*.yaml's arch facts; GB = 1e9 bytes.
"""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from conftest import compose_cfg
from mixgap.core.config import validate
from mixgap.core.errors import ConfigError, error_lines
from mixgap.plan import machine
from mixgap.plan.estimates import activation_bytes, logit_bytes, model_states_bytes
from mixgap.plan.jobs import make_plan
from mixgap.plan.machine import (
    Allocation,
    DeviceFacts,
    PreflightRefused,
    enforce,
    job_allocation,
    plan_job,
)
from mixgap.plan.printout import describe, report_lines

BASIC = OmegaConf.create({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"})
SLURM = OmegaConf.create({"gpus_per_node": 8, "nodes": 1})
#: qwen3b full SFT on 8 GPUs, ZeRO-3, per-device 1 x 16384 tokens, by the formula before the logit buffers were
#: counted at 12 bytes: 4 L (311.2M embedding) 1.245 + 18 N / 8 6.953 + kept inputs 36 x 2 x 16384 x 2048 2.416 +
#: one layer 34 x 16384 x 2048 1.141 + logits 10 x 16384 x 151936 24.893 + 2 overhead = 38.6 GB
QWEN3B_8GPU_BEFORE = 38.6
#: the same with the logit buffers at 12 bytes (fp32 log-probs 4 + their gradient 4 + the logits' gradient 4; the
#: bf16 logits are freed after the forward): + 2 x 16384 x 151936 = 4.979 GB -> 43.6 GB
QWEN3B_8GPU = 43.6


@pytest.fixture(autouse=True)
def _no_cluster_environment(monkeypatch):
    monkeypatch.delenv("MIXGAP_SLURM_GPUS_PER_NODE", raising=False)


def _facts(monkeypatch, count: int, memory_gb: float) -> None:
    monkeypatch.setattr(machine, "device_facts", lambda: DeviceFacts(count, memory_gb))


def _plan(monkeypatch, facts, *overrides, launcher=BASIC, choice="basic"):
    if facts is not None:
        _facts(monkeypatch, *facts)
    cfg = compose_cfg(*overrides)
    return plan_job(cfg, make_plan(cfg), job_allocation(choice, launcher))


def test_laptop_without_a_gpu_plans_the_cpu_here_and_the_cluster_beside_it(monkeypatch):
    # the README's headline job, teachers generating (qwq32b TP 4, qwen32b TP 2): nothing wrong on this machine
    report = _plan(monkeypatch, (0, 0.0), "student=qwen3b", "finetune_mode=full", "mix.weight=0.2", "stage=plan")
    assert report["cpu"] and report["refusals"] == [] and report["decisions"] == {}
    assert (report["world_size"], report["per_device_batch_size"], report["gradient_accumulation_steps"]) == (1, 2, 4)
    assert describe(report).startswith("runs on the CPU here (no CUDA device")
    there = report["elsewhere"]
    assert (there["launcher"], there["gpus"], there["world_size"], there["refusals"]) == ("slurm", 8, 8, [])
    assert there["train_memory_gb_per_gpu"] == pytest.approx(QWEN3B_8GPU, abs=0.05)
    assert report_lines(report)[0].startswith("on hydra/launcher=slurm: 8 GPU(s) of 85 GB; world 8 x per-device 1")
    enforce(report)  # a CPU job has no GPU memory to refuse


def test_laptop_still_refuses_what_is_wrong_here_too(monkeypatch):
    # qwen0.5b's context is 32768: a 100,000-token budget is wrong on any machine (the real limit: 32768 - 512)
    report = _plan(monkeypatch, (0, 0.0), "student=qwen0.5b", "data.missing_pool=wait", "stage=evaluate",
                   "eval.max_new_tokens=100000", "eval.max_model_len=null")
    assert report["refusals"] == [
        "eval.max_new_tokens=100000 is not allowed for student=qwen0.5b: with a 512-token prompt it exceeds "
        "max_position_embeddings=32768; allowed: <= 32256"]


def test_workstation_with_8_gpus_plans_the_8_gpu_layout(monkeypatch):
    report = _plan(monkeypatch, (8, 80.0), "student=qwen3b", "finetune_mode=full", "data.missing_pool=wait")
    assert (report["gpus"], report["world_size"], report["per_device_batch_size"]) == (8, 8, 1)
    assert report["train_memory_gb_per_gpu"] == pytest.approx(QWEN3B_8GPU, abs=0.05)
    assert QWEN3B_8GPU - QWEN3B_8GPU_BEFORE == pytest.approx(2 * 16384 * 151936 / 1e9, abs=0.05)
    assert report["refusals"] == [] and "elsewhere" not in report
    assert report["decisions"] == {"train_per_device_batch_size": 1, "eval_tensor_parallel_size": 1, "eval_data_parallel_size": 8,
                                   "judge_data_parallel_size": None, "generation_data_parallel_size": {}}


def test_one_24gb_gpu_is_refused_in_one_line_naming_the_launcher_that_fits(monkeypatch):
    # 1 GPU, per-device 2 x 16384: 4 L 1.245 + 18 N 55.62 + 2 x (2.416 + 1.141) + logits 12 x 32768 x 151936 59.74
    # + 2 = 125.7 GB > 21.6 GB (90% of 24); per-device 1: 1.245 + 55.62 + 3.557 + 29.871 + 2 = 92.3 GB > 21.6 still
    report = _plan(monkeypatch, (1, 24.0), "student=qwen3b", "finetune_mode=full", "data.missing_pool=wait")
    assert report["train_memory_gb_per_gpu"] == pytest.approx(92.3, abs=0.05)
    assert report["refusals"] == [
        "finetune_mode.mode=full for student=qwen3b needs 92.3 GB per GPU on 1 GPU(s) of hydra/launcher=basic "
        "(ZeRO-3, per-device batch 1 x 16384 tokens, lowered from 2) > 21.6 GB usable (90% of 24 GB, this machine's GPUs; "
        "cluster.memory_headroom=0.1); allowed: hydra/launcher=slurm (8 GPUs of 85 GB: 43.6 GB per GPU), "
        "finetune_mode=lora, a shorter finetune_mode.max_seq_len (now 16384), GPUs with more memory "
        "(cluster.gpu_memory_gb)"]
    assert report["elsewhere"]["refusals"] == []


def test_cluster_login_node_plans_the_launchers_gpus_without_looking_at_this_machine(monkeypatch):
    def no_probe():
        raise AssertionError("a cluster launcher's job is not planned for the login node's devices")

    monkeypatch.setattr(machine, "device_facts", no_probe)
    report = _plan(monkeypatch, None, "student=qwen3b", "finetune_mode=full", "data.missing_pool=wait",
                   launcher=SLURM, choice="slurm")
    assert (report["launcher"], report["gpus"], report["gpu_memory_gb"], report["world_size"]) == ("slurm", 8, 85.0, 8)
    assert report["refusals"] == [] and "elsewhere" not in report
    # a launcher without GPUs (the CPU test cluster, gpus_per_node: null) runs the job on the CPU
    cpu_node = job_allocation("slurm_local_test", OmegaConf.create({"gpus_per_node": None, "nodes": 1}))
    assert cpu_node == Allocation("slurm_local_test", 0) and cpu_node.cpu


def test_a_global_batch_no_layout_fits_is_one_message_with_the_whole_rule(monkeypatch):
    report = _plan(monkeypatch, None, "student=qwen3b", "finetune_mode=full", "data.missing_pool=wait",
                   "finetune_mode.global_batch_size=7", launcher=SLURM, choice="slurm")
    assert report["refusals"] == [
        "finetune_mode.global_batch_size=7 is not allowed on 8 GPUs of hydra/launcher=slurm: a global batch is "
        "per-device batch x 8 GPUs x accumulation steps (the per-device batch is lowered to fit, never the global "
        "batch), so on 8 GPUs it must be a multiple of 8 (8, 16, 24, ...); 7 runs on 1 GPU(s)"]
    # 6 on 8 GPUs: no layout; 6 on 2 GPUs with per-device 2: per-device 1 x 2 x 3 (derived, not refused)
    assert "6 runs on 1, 2 GPU(s)" in _plan(monkeypatch, None, "finetune_mode.global_batch_size=6", "data.missing_pool=wait",
                                           launcher=SLURM, choice="slurm")["refusals"][0]


def test_every_refusal_is_shown_one_line_each(monkeypatch):
    # on one 40 GB GPU: qwen0.5b's full SFT does not fit (42.4 GB even at per-device 1 x 16384 tokens > 36 usable),
    # and the evaluation budget exceeds the context; both reach the screen, in the order the plan checks them
    report = _plan(monkeypatch, (1, 40.0), "student=qwen0.5b", "data.missing_pool=wait", "eval.max_new_tokens=100000",
                   "eval.max_model_len=null")
    with pytest.raises(PreflightRefused) as err:
        enforce(report)
    lines = error_lines(err.value)
    assert len(lines) == 2 and all(line.startswith("mixgap: error: ") and "\n" not in line for line in lines)
    assert lines[0].startswith("mixgap: error: finetune_mode.mode=full for student=qwen0.5b needs ")
    assert lines[1].endswith("allowed: <= 32256")


# the judge, Qwen2.5-32B-Instruct at TP 4 and its own 32,768-token context: bf16 weights 65.0 / 4 = 16.25 GB + KV of
# 32,768 tokens x (8 / 4 kv heads x 2 x 64 layers x 128 x 2 B = 65,536 B) = 2.147 GB + 2 overhead = 20.4 GB per GPU
JUDGE = ("+judge@eval.judge=qwen32b", "student=qwen0.5b", "data.missing_pool=wait", "stage=evaluate")


def test_the_judge_is_planned_before_any_work(monkeypatch):
    fits = _plan(monkeypatch, None, *JUDGE, launcher=SLURM, choice="slurm")
    assert fits["refusals"] == [] and fits["generation_memory_gb_per_gpu"] >= 20.4
    small = _plan(monkeypatch, None, *JUDGE, "cluster.gpu_memory_gb=16", launcher=OmegaConf.create({"gpus_per_node": 4}),
                  choice="slurm")
    assert small["refusals"] == ["eval.judge.tensor_parallel_size=4 is too small for qwen2.5_32b_instruct: 20.4 GB per "
                                 "GPU on 4 GPU(s) of hydra/launcher=slurm > 14.4 GB usable (90% of 16 GB, "
                                 "cluster.gpu_memory_gb=16; cluster.memory_headroom=0.1)"]
    one_gpu = _plan(monkeypatch, (1, 24.0), *JUDGE)
    assert one_gpu["refusals"] == [
        "eval.judge.tensor_parallel_size=4 is not allowed on 1 GPU(s); it must be <= the node's GPUs "
        "(hydra.launcher.gpus_per_node); hydra/launcher=slurm runs it (8 GPUs of 85 GB: generation 20.4 GB per GPU)"]
    # a job that does not judge (stage=train) does not plan the judge
    train_only = _plan(monkeypatch, (1, 24.0), *JUDGE[:-1], "stage=train")
    assert train_only["refusals"] and not any("eval.judge" in r for r in train_only["refusals"])


def test_qwen14b_full_sft_is_refused_under_the_headroom():
    # 8 GPUs, ZeRO-3, per-device 1 x 16384: 4 L (152064 x 5120) 3.114 + 18 x 14.7 / 8 33.075 + kept inputs
    # 48 x 2 x 16384 x 5120 8.053 + one layer 34 x 16384 x 5120 2.852 + logits 12 x 16384 x 152064 29.897 + 2
    # = 79.0 GB > 76.5 usable (90% of the default 85 GB; was 74.0 with 10-byte logits and "fits" under 100% of 80)
    cfg = compose_cfg("student=qwen14b", "finetune_mode=full", "data.missing_pool=wait")
    report = plan_job(cfg, make_plan(cfg), Allocation("slurm", 8))
    assert report["train_memory_gb_per_gpu"] == pytest.approx(79.0, abs=0.05)
    assert "> 76.5 GB usable (90% of 85 GB, cluster.gpu_memory_gb=85; cluster.memory_headroom=0.1)" in report["refusals"][0]
    cfg.cluster.memory_headroom = 1.0  # refused before any plan (the schema declares its range)
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert str(err.value) == "cluster.memory_headroom=1.0 is not allowed; it must be in [0, 1)"


def test_zero2_is_deepspeeds_current_estimator():
    # estimate_zero2_model_states_mem_needs (DeepSpeed 0.19, no offload): 2 N + int(18 N / gpus)
    assert model_states_bytes(1e9, 1e9, 0, 2, 8) == pytest.approx(2e9 + 18e9 / 8)
    assert model_states_bytes(1e9, 1e9, 5e8, 3, 8) == pytest.approx(4 * 5e8 + 18e9 / 8)


def test_logit_buffers_and_fp32_activations():
    assert logit_bytes(16384, 151936) == 12 * 16384 * 151936
    arch = compose_cfg("student=smollm2_135m").student.arch
    # SmolLM2 (30 layers, hidden 576, vocab 49152) at 2048 tokens in fp32 with checkpointing: kept inputs
    # 30 x 4 x 2048 x 576 = 141.6 MB + one layer 2 x 34 x 2048 x 576 = 80.2 MB + logits 12 x 2048 x 49152 = 1208.0 MB
    assert activation_bytes(arch, 2048, True, element_bytes=4) == pytest.approx(141.56e6 + 80.22e6 + 1207.96e6, rel=1e-3)
