"""Preflight (mixgap.plan.preflight) and the sweeper that runs it on every sweep point before the first job.

Memory figures are hand-computed from the arch facts in conf/student/*.yaml; GB = 1e9 bytes.
"""

from __future__ import annotations

import os
import re

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from conftest import ROOT, compose_cfg
from mixgap.core.errors import ConfigError
from mixgap.plan.estimates import (
    decode_rate,
    kv_bytes_per_rank_token,
    lora_params,
    one_node_hours,
    sequences_in_flight,
)
from mixgap.plan.jobs import make_plan
from mixgap.plan.preflight import preflight as plan_preflight
from mixgap.plan.printout import describe
from mixgap.plan.sweeper import check_job, job_config, submission_error, sweep_refusals
from mixgap.stages.train.batching import batch_layout


def preflight(cfg, gpus, store=None):
    """The preflight of ``cfg``'s own plan."""
    return plan_preflight(cfg, make_plan(cfg), gpus, store)


@pytest.fixture(autouse=True)
def _no_cluster_environment(monkeypatch):
    for name in [n for n in os.environ if n.startswith("MIXGAP_SLURM_")]:
        monkeypatch.delenv(name)


@pytest.mark.parametrize(
    ("global_batch", "per_device", "world", "expected"),
    [
        (8, 2, 1, (2, 4, False)),  # the paper's 8 = 2 x 1 x 4
        (8, 2, 2, (2, 2, False)),
        (8, 2, 4, (2, 1, False)),  # the paper's 4 devices x 2
        (8, 2, 8, (1, 1, True)),  # SLURM's 8 GPUs: 2 x 8 = 16 > 8, so per-device 1
        (80, 2, 8, (2, 5, False)),  # the released Mix configs' global 80
        (24, 2, 8, (1, 3, True)),  # 2 x 8 = 16 does not divide 24; 1 x 8 x 3 does
    ],
)
def test_batch_layout_gives_exactly_the_global_batch(global_batch, per_device, world, expected):
    layout = batch_layout(global_batch, per_device, world)
    assert (layout.per_device_batch_size, layout.gradient_accumulation_steps, layout.derived) == expected
    assert layout.per_device_batch_size * world * layout.gradient_accumulation_steps == global_batch


@pytest.mark.parametrize(("global_batch", "world"), [(6, 4), (8, 16), (12, 8)])
def test_batch_layout_refuses_a_global_batch_the_world_cannot_split(global_batch, world):
    with pytest.raises(ConfigError, match=rf"^finetune_mode.global_batch_size={global_batch} is not allowed on {world} GPUs"):
        batch_layout(global_batch, 2, world)


def test_lora_params_of_qwen32b():
    # 64 layers x r 16 x (q 5120+5120, k/v 2 x (5120+1024), o 5120+5120, gate/up 2 x (5120+27648), down 27648+5120)
    arch = compose_cfg("student=qwen32b").student.arch
    assert lora_params(arch, 16, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]) == (
        64 * 16 * (10240 + 12288 + 10240 + 65536 + 32768))


# (overrides, GPUs, GPU memory GB) -> train GB per GPU at the per-device batch chosen (the largest whose memory fits, or
# 1 when none fits), that per-device batch; refused?
# The logit buffers count 12 bytes per logit (mixgap.plan.estimates.LOGIT_BYTES: fp32 log-probs 4 + their gradient 4
# + the logits' gradient 4) and a job may use 90% of each GPU (cluster.memory_headroom=0.1).
CASES = [
    # qwen3b full, 8 GPUs, ZeRO-3, per-device 1 x 16384 tokens: 4 x 311.2M (embedding 151936 x 2048) = 1.245 GB
    # + 18 x 3.09e9 / 8 = 6.953 GB; activations 36 x 2 x 16384 x 2048 = 2.416 GB + 34 x 16384 x 2048 = 1.141 GB
    # + logits 12 x 16384 x 151936 = 29.871 GB; + 2 GB overhead = 43.6 GB < 72: fits
    (["student=qwen3b", "finetune_mode=full"], 8, 80, 43.6, 1, False),
    # qwen3b full on 1 GPU: 1.245 + 18 x 3.09 = 55.62 GB + activations at per-device 2 (32768 tokens)
    # 2 x 3.557 + logits 59.743 = 66.86 GB + 2 = 125.7 GB > 72; at per-device 1 (16384 tokens: 1.245 + 55.62 + 3.557
    # + 29.871 + 2 = 92.3 GB) > 72 still: refused at per-device 1
    (["student=qwen3b", "finetune_mode=full"], 1, 80, 92.3, 1, True),
    # the same on one 141 GB H200: 125.7 < 126.9 usable (90%): fits at the configured per-device 2
    (["student=qwen3b", "finetune_mode=full"], 1, 141, 125.7, 2, False),
    # ... and at per-device 1 when configured so
    (["student=qwen3b", "finetune_mode=full", "finetune_mode.per_device_batch_size=1"], 1, 141, 92.3, 1, False),
    # qwen32b full on 8 GPUs: 4 x 778.6M (152064 x 5120) = 3.114 + 18 x 32.5 / 8 = 73.125; activations
    # 64 x 2 x 16384 x 5120 = 10.737 + 2.852 + 12 x 16384 x 152064 = 29.897; + 2 = 121.7 GB > 72: refused
    (["student=qwen32b", "finetune_mode=full"], 8, 80, 121.7, 1, True),
    # qwen32b LoRA (r 8) on 8 GPUs: base 2 x 32.5e9 / 8 = 8.125 + adapter 16 x 67.1M / 8 = 0.134 + 4L 3.114
    # + activations 10.737 + 2.852 + 29.897 + 2 = 56.9 GB < 72: fits (the paper's choice from 14B)
    (["student=qwen32b"], 8, 80, 56.9, 1, False),
    # llama70b LoRA (r 8) on 8 GPUs of 40 GB: 2 x 70.6 / 8 = 17.65 + adapter 16 x 103.5M / 8 = 0.21 + 4 x 1.05B (128256 x 8192) = 4.2
    # + activations 80 x 2 x 16384 x 8192 = 21.5 + 4.6 + 12 x 16384 x 128256 = 25.2 logits, + 2 = 75.3 GB > 36: refused
    (["student=llama70b"], 8, 40, 75.3, 1, True),
]


@pytest.mark.parametrize(("overrides", "gpus", "memory", "train_gb", "per_device", "refused"), CASES)
def test_memory_table(overrides, gpus, memory, train_gb, per_device, refused):
    cfg = compose_cfg(*overrides, "data.missing_pool=wait", f"cluster.gpu_memory_gb={memory}")
    report = preflight(cfg, gpus)
    assert report["train_memory_gb_per_gpu"] == pytest.approx(train_gb, abs=0.15)
    assert report["per_device_batch_size"] == per_device
    memory_refusals = [r for r in report["refusals"] if "GB per GPU" in r]
    assert bool(memory_refusals) == refused, report["refusals"]
    if refused:
        assert memory_refusals[0].startswith(f"finetune_mode.mode={cfg.finetune_mode.mode} for student={cfg.student.name}")
        assert f"usable (90% of {memory} GB, cluster.gpu_memory_gb={memory}; cluster.memory_headroom=0.1)" in memory_refusals[0]


# qwen0.5b full SFT on 1 GPU (ZeRO-3, 16384 tokens per example): 4 L (embedding 151936 x 896) 0.545 GB + 18 N (0.49e9)
# 8.820 GB = 9.365 GB of model states; per token kept inputs 24 x 2 x 896 + one layer 34 x 896 + logits 12 x 151936
# = 1,896,704 bytes; + 2 GB overhead. Per-device 1: 9.365 + 31.076 + 2 = 42.4 GB; 2: 73.5 GB; 4: 135.7 GB.
LAYOUTS = [
    # 85 GB (76.5 usable): the configured per-device 2 fits, accumulation 4
    ([], 85, (2, 4), 73.5, None),
    # 80 GB (72.0 usable): 2 would need 73.5; 1 x accumulation 8 fits at 42.4
    ([], 80, (1, 8), 42.4, "per-device 2 would need 73.5 GB > 72.0 GB usable"),
    # configured 4 on 85 GB: 4 would need 135.7; 2 fits
    (["finetune_mode.per_device_batch_size=4"], 85, (2, 4), 73.5, "per-device 4 would need 135.7 GB > 76.5 GB usable"),
    # configured 4 on 80 GB: 4 and 2 do not fit; the reason names the smallest that did not (2)
    (["finetune_mode.per_device_batch_size=4"], 80, (1, 8), 42.4, "per-device 2 would need 73.5 GB > 72.0 GB usable"),
    # configured 3: 3 does not divide 8 (divisibility gives 2), then memory gives 1
    (["finetune_mode.per_device_batch_size=3"], 80, (1, 8), 42.4,
     "per-device 3 x 1 GPU(s) does not divide global 8; per-device 2 would need 73.5 GB > 72.0 GB usable"),
]


@pytest.mark.parametrize(("overrides", "memory", "layout", "train_gb", "reason"), LAYOUTS)
def test_the_largest_per_device_batch_that_fits_is_chosen(overrides, memory, layout, train_gb, reason):
    cfg = compose_cfg("student=qwen0.5b", "finetune_mode=full", "data.missing_pool=wait", *overrides,
                      f"cluster.gpu_memory_gb={memory}")
    report = preflight(cfg, 1)
    assert report["refusals"] == []
    assert (report["per_device_batch_size"], report["gradient_accumulation_steps"], report["global_batch_size"]) == (*layout, 8)
    assert report["train_memory_gb_per_gpu"] == pytest.approx(train_gb, abs=0.05)
    assert report["layout_reason"] == reason
    assert report["decisions"]["train_per_device_batch_size"] == layout[0]  # what the train stage runs
    assert describe(report).startswith(
        f"1 GPU(s) of {memory} GB; world 1 x per-device {layout[0]} x accumulation {layout[1]} = global 8"
        + (f" ({reason}); " if reason else "; "))


def test_a_layout_refused_even_at_per_device_1_names_the_remedies_that_remain():
    # 40 GB (36.0 usable) < 42.4 GB at per-device 1: refused; lowering the per-device batch is no remedy left. On the
    # slurm launcher's 8 GPUs of 40 GB, ZeRO-3 splits 18 N: 0.545 + 18 x 0.49 / 8 + 31.076 + 2 = 34.7 GB: it fits there
    cfg = compose_cfg("student=qwen0.5b", "finetune_mode=full", "data.missing_pool=wait", "cluster.gpu_memory_gb=40")
    report = preflight(cfg, 1)
    assert (report["per_device_batch_size"], report["gradient_accumulation_steps"]) == (1, 8)
    assert report["train_memory_gb_per_gpu"] == pytest.approx(42.4, abs=0.05) and report["layout_reason"] is None
    assert report["refusals"] == [
        "finetune_mode.mode=full for student=qwen0.5b needs 42.4 GB per GPU on 1 GPU(s) (ZeRO-3, per-device batch 1 x "
        "16384 tokens, lowered from 2) > 36.0 GB usable (90% of 40 GB, cluster.gpu_memory_gb=40; "
        "cluster.memory_headroom=0.1); allowed: hydra/launcher=slurm (8 GPUs of 40 GB: 34.7 GB per GPU), finetune_mode=lora, a "
        "shorter finetune_mode.max_seq_len (now 16384), GPUs with more memory (cluster.gpu_memory_gb)"]


def test_on_the_cpu_memory_does_not_lower_the_per_device_batch():
    cfg = compose_cfg("student=qwen0.5b", "finetune_mode=full", "data.missing_pool=wait", "cluster.gpu_memory_gb=40")
    report = plan_preflight(cfg, make_plan(cfg), 1, cpu=True)
    assert (report["per_device_batch_size"], report["gradient_accumulation_steps"], report["refusals"]) == (2, 4, [])
    assert report["layout_reason"] is None


def test_slurm_default_trains_the_paper_batch_on_8_gpus():
    report = preflight(compose_cfg("student=qwen3b", "finetune_mode=full", "data.missing_pool=wait"), 8)
    assert (report["world_size"], report["per_device_batch_size"], report["gradient_accumulation_steps"],
            report["global_batch_size"]) == (8, 1, 1, 8)
    assert report["refusals"] == []


def test_math_expert_context_is_refused_at_the_papers_budget_and_fits_in_the_preset():
    paper = preflight(compose_cfg("student=qwen_math7b", "data.missing_pool=wait"), 8)
    assert paper["refusals"] == [
        "finetune_mode.max_seq_len=16384 is not allowed for student=qwen_math7b; it must be <= its context, "
        "max_position_embeddings=4096",
        "eval.max_model_len=16000 is not allowed for student=qwen_math7b; it must be <= its context, "
        "max_position_embeddings=4096",
    ]
    preset = compose_cfg("+experiment=math_experts", "student=qwen_math7b")
    assert preset.eval.max_new_tokens == 3584 and preflight(preset, 8)["refusals"] == []
    more = compose_cfg("+experiment=math_experts", "student=qwen_math1.5b", "eval.max_model_len=8192")
    assert preflight(more, 8)["refusals"][0].startswith("eval.max_model_len=8192 is not allowed for student=qwen_math1.5b")
    # without an engine context, the budget itself must fit the model's context
    bare = compose_cfg("+experiment=math_experts", "student=qwen_math1.5b", "eval.max_new_tokens=4000", "eval.max_model_len=null")
    assert preflight(bare, 8)["refusals"][0].startswith("eval.max_new_tokens=4000 is not allowed for student=qwen_math1.5b")


def test_the_engine_context_caps_the_planned_decoding():
    """With eval.max_model_len=16000 (the paper's harness) a 16,000-token budget ends at 16,000 - 512 prompt tokens:
    the planned hours are those of 15,488 new tokens per completion (at the compute bound, where hours are
    proportional to new tokens)."""
    compute = "cluster.gpu_memory_bandwidth_gbs=1000000000"
    capped = preflight(compose_cfg("student=qwen3b", "data.missing_pool=wait", "stage=evaluate", compute), 8)
    uncapped = preflight(compose_cfg("student=qwen3b", "data.missing_pool=wait", "stage=evaluate",
                                     "eval.max_model_len=null", compute), 8)
    assert capped["eval_hours_estimate"] == pytest.approx(uncapped["eval_hours_estimate"] * 15488 / 16000, rel=2e-3)


def test_teachers_count_only_when_the_job_generates_them():
    # missing_pool=generate on 1 GPU: qwq32b needs tensor_parallel_size 4
    gen = preflight(compose_cfg("student=qwen0.5b", "data.missing_pool=generate"), 1)
    assert "mix.strong.tensor_parallel_size=4 is not allowed on 1 GPU(s); it must be <= the node's GPUs " \
           "(hydra.launcher.gpus_per_node)" in gen["refusals"]
    wait = preflight(compose_cfg("student=qwen0.5b", "data.missing_pool=wait"), 1)
    assert not any(r.startswith("mix.") for r in wait["refusals"])


def test_large_student_is_evaluated_with_the_tensor_parallelism_it_needs():
    # llama70b: bf16 weights 141.2 GB; TP 2: 70.6 + KV 16 x 16512 tokens x 4 kv heads x 2 x 80 x 128 x 2 B
    # = 43.3 GB + 2 = 115.9 > 80; TP 4: 35.3 + 21.6 + 2 = 58.9 <= 80 (whole batch fits) -> TP 4
    report = preflight(compose_cfg("student=llama70b", "data.missing_pool=wait"), 8)
    assert report["eval_tensor_parallel_size"] == 4
    one_gpu = preflight(compose_cfg("student=llama70b", "data.missing_pool=wait", "stage=evaluate"), 1)
    assert any(r.startswith("evaluation of student=llama70b needs") for r in one_gpu["refusals"])


def test_tensor_parallel_must_divide_the_heads():
    report = preflight(compose_cfg("student=qwen7b", "data.missing_pool=wait", "eval.tensor_parallel_size=3"), 8)
    assert "eval.tensor_parallel_size=3 is not allowed: it must divide the 28 attention heads; allowed: 1, 2, 4" \
        in report["refusals"]


def test_hours_from_the_papers_data_size():
    # qwen3b full, w=0.2, no pools in the store: 5383 examples x (0.2 x 4154/3.5 + 0.8 x 1316/3.5 + 512)
    # = 5383 x 1050.2 tokens; 6 x 3.09e9 x 5.653e6 x 2 epochs / (8 x 989e12 x 0.35) / 3600 = 0.0210 h
    report = preflight(compose_cfg("student=qwen3b", "finetune_mode=full", "data.missing_pool=wait"), 8)
    assert report["train_hours_estimate"] == pytest.approx(0.021, abs=0.001)
    assert report["tokens_source"].startswith("paper: 5383 examples")


def test_eval_hours_follow_model_size_samples_and_arms():
    # at the compute bound (the bandwidth set out of reach): qwen3b (3.09e9 params), TP 1, decode_mfu 0.1:
    # 989e12 x 0.1 / (2 x 3.09e9) = 16,003 tok/s per engine, 8 replicas on 8 GPUs; the five paper benchmarks:
    # 5000 + 1319 + 30 + 40 + 675 = 7,064 problems x 16,000 tokens / (8 x 16,003) / 3600 = 1.962 / 8 = 0.245 h per
    # arm; stage=all evaluates the untuned and the fine-tuned student: 0.491 h (no engine context cap:
    # test_the_engine_context_caps_the_planned_decoding has the paper's 16,000)
    base = ("student=qwen3b", "data.missing_pool=wait", "eval.max_model_len=null", "cluster.gpu_memory_bandwidth_gbs=1000000000")
    report = preflight(compose_cfg(*base), 8)
    assert report["eval_rate_bound"] == "compute" and report["data_parallel_size"]["evaluation"] == 8
    assert report["eval_untuned_hours_estimate"] == pytest.approx(1.962 / 8, abs=0.001)
    assert report["eval_hours_estimate"] == pytest.approx(3.924 / 8, abs=0.001)
    # llama70b (70.6e9) on TP 4: 4 x 989e12 x 0.1 / (2 x 70.6e9) = 2,802 tok/s -> 7,064 x 16,000 / 2,802 / 3600
    # = 11.2 h per arm on one engine, 5.6 h on the 2 replicas of 8 GPUs: slower than qwen3b although each
    # replica holds 4 GPUs (the size term)
    big = preflight(compose_cfg("student=llama70b", *base[1:]), 8)
    assert big["eval_untuned_hours_estimate"] == pytest.approx(11.2 / 2, rel=0.01)
    # +protocol=sampled: 16 samples on AIME24/AMC23, 4 elsewhere: (5000 + 1319 + 675) x 4 + 70 x 16 = 29,096
    # completions = 4.119 x the greedy 7,064
    sampled = preflight(compose_cfg(*base, "+protocol=sampled"), 8)
    assert sampled["eval_untuned_hours_estimate"] == pytest.approx(1.962 / 8 * 29096 / 7064, rel=0.003)
    # stage=evaluate builds the untuned arm only
    untuned = preflight(compose_cfg(*base, "stage=evaluate"), 8)
    assert untuned["eval_hours_estimate"] == pytest.approx(1.962 / 8, abs=0.001)


def test_sweep_total_counts_each_untuned_evaluation_once():
    from mixgap.plan.printout import summary_lines

    def job(weight):
        report = preflight(compose_cfg("student=qwen3b", "data.missing_pool=wait", f"mix.weight={weight}"), 8)
        return {"preflight": report, "job": {"student": "qwen3b", "weight": weight, "finetune_mode": "full",
                                             "benchmarks": ["math", "gsm8k"]}}

    jobs = [job(0), job(1)]
    lines, refused = summary_lines(jobs)
    first, second = jobs[0]["preflight"], jobs[1]["preflight"]  # w=0 and w=1 differ in training tokens only
    expected = first["gpu_hours_estimate"] + second["gpu_hours_estimate"] - 8 * second["eval_untuned_hours_estimate"]
    total = float(re.match(r"sweep total: ([0-9.]+) GPU-hours", lines[-2]).group(1))
    assert total == pytest.approx(expected, abs=0.1) and not refused  # per-job figures are rounded to 1e-3 h
    # one 8-GPU node, the two 8-GPU jobs in sequence: their hours, the shared untuned evaluation once
    wall = sum(p["train_hours_estimate"] + p["eval_hours_estimate"] for p in (first, second))
    wall -= second["eval_untuned_hours_estimate"]
    node = re.match(r"one 8-GPU node: the sweep takes ([0-9.]+) h \(([0-9.]+) days\)", lines[-1])
    assert float(node.group(1)) == pytest.approx(wall, abs=0.05) == pytest.approx(expected / 8, abs=0.05)


def test_memory_refusal_suggests_only_what_the_job_does_not_use():
    report = preflight(compose_cfg("student=qwen32b", "data.missing_pool=wait", "cluster.gpu_memory_gb=10"), 8)
    reason = next(r for r in report["refusals"] if r.startswith("finetune_mode.mode=lora"))
    assert "finetune_mode=lora" not in reason.split("allowed:")[1] and "more GPUs" not in reason
    assert "a shorter finetune_mode.max_seq_len (now 16384)" in reason


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("benchmark=[]", "benchmark=[] is not allowed; give at least one of"),
        ("cluster.gpu_memory_gb=0", "cluster.gpu_memory_gb=0.0 is not allowed; it must be > 0"),
        ("cluster.decode_mfu=1.5", "cluster.decode_mfu=1.5 is not allowed; it must be in (0, 1]"),
    ],
)
def test_cluster_and_benchmark_list_are_range_checked(override, message):
    from mixgap.core.config import validate

    with pytest.raises(ConfigError, match=re.escape(message)):
        validate(compose_cfg(override))


def test_sampled_protocol_composes_without_aime_and_amc():
    cfg = compose_cfg("+protocol=sampled", "benchmark=[gsm8k]")
    assert list(cfg.benchmark) == ["gsm8k"] and cfg.eval.n_samples_by_benchmark["aime24"] == 16
    from mixgap.stages.completions import sampling_fields

    assert sampling_fields(cfg.eval, cfg.benchmark.gsm8k)["n_samples"] == 4


def test_sweep_refusals_lines():
    checked = [(["mix.weight=0"], None, {"refusals": []}),
               (["mix.weight=1.5"], "mix.weight=1.5 is not allowed; it must be in [0, 1]", None),
               (["student=qwen32b"], None, {"refusals": ["too big"]})]
    assert sweep_refusals(checked, plan_only=False) == [
        "job 1 (mix.weight=1.5): mix.weight=1.5 is not allowed; it must be in [0, 1]", "job 2 (student=qwen32b): too big"]
    assert sweep_refusals(checked, plan_only=True) == ["job 1 (mix.weight=1.5): mix.weight=1.5 is not allowed; it must be in [0, 1]"]
    err = RuntimeError("sbatch: error: invalid partition specified: gpu\nmore")
    assert submission_error("slurm", err) == ("hydra/launcher=slurm could not submit the sweep (nothing was started): "
                                              "sbatch: error: invalid partition specified: gpu")


@pytest.mark.slow
def test_every_preset_passes_preflight_on_slurm(hub_cached):


    bad = []
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        for path in sorted((ROOT / "conf" / "experiment").glob("*.yaml")):
            if path.stem in ("demo", "demo_rsr", "slurm_rehearsal"):
                continue  # CPU presets (global batch 2, 1): refused on 8 GPUs, see the test above
            base = [f"+experiment={path.stem}", "hydra/launcher=slurm"]
            params = compose("config", overrides=base, return_hydra_config=True).hydra.sweeper.params
            parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
            for job in BasicSweeper.split_arguments(parsed, None)[0]:
                cfg, _, gpus = job_config(compose("config", overrides=[*base, *job], return_hydra_config=True))
                error, report = check_job(cfg, [*base, *job], gpus)
                bad += [f"{path.stem} {job}: {r}" for r in ([error] if error else report["refusals"])]
    assert bad == []


def test_evaluation_runs_one_replica_per_tensor_parallel_group():
    # qwen3b at TP 1 fills 8 GPUs with 8 replicas; llama70b needs TP 4 (test above): 2 replicas
    small = preflight(compose_cfg("student=qwen3b", "data.missing_pool=wait"), 8)
    assert (small["eval_tensor_parallel_size"], small["data_parallel_size"]["evaluation"]) == (1, 8)
    assert small["decisions"]["eval_data_parallel_size"] == 8
    big = preflight(compose_cfg("student=llama70b", "data.missing_pool=wait"), 8)
    assert (big["eval_tensor_parallel_size"], big["data_parallel_size"]["evaluation"]) == (4, 2)
    one = preflight(compose_cfg("student=qwen3b", "data.missing_pool=wait"), 1)  # slurm_1gpu's allocation
    assert one["data_parallel_size"]["evaluation"] == 1
    assert small["eval_hours_estimate"] == pytest.approx(one["eval_hours_estimate"] / 8, rel=0.01)
    assert small["eval_tokens_per_s"] == one["eval_tokens_per_s"]  # per replica: the same engine


def test_judge_and_teacher_generation_get_their_replicas():
    # the paper's judge (Qwen2.5-32B-Instruct at TP 4) on 8 GPUs: 2 replicas; no judge, no judge replicas
    judged = preflight(compose_cfg("student=qwen3b", "data.missing_pool=wait", "+judge@eval.judge=qwen32b"), 8)
    assert judged["data_parallel_size"]["judge"] == 2 and judged["decisions"]["judge_data_parallel_size"] == 2
    assert preflight(compose_cfg("student=qwen3b", "data.missing_pool=wait"), 8)["data_parallel_size"]["judge"] is None
    gen = preflight(compose_cfg("student=qwen0.5b", "data.missing_pool=generate"), 8)
    tps = {f: int(compose_cfg("student=qwen0.5b").mix[f.split(".")[1]].tensor_parallel_size)
           for f in gen["decisions"]["generation_data_parallel_size"]}
    assert gen["decisions"]["generation_data_parallel_size"] == {f: 8 // tp for f, tp in tps.items()}
    assert gen["data_parallel_size"]["generation"] == min(8 // tp for tp in tps.values())


def test_decode_rate_is_the_smaller_of_the_compute_and_bandwidth_bounds():
    arch = compose_cfg("student=qwen3b").student.arch
    # KV per token: 2 kv heads x (K, V) x 36 layers x 128 dims x 2 B = 36,864 B; mean context 512 + 16,000 / 2
    # = 8,512 tokens = 313.8 MB per sequence; free: 0.9 x 80 - 2 - 6.18 = 63.82 GB -> 203 sequences in flight
    assert kv_bytes_per_rank_token(arch, 1) == 36864 and sequences_in_flight(arch, 1, 80.0, 8512) == 203
    h100 = OmegaConf.create({"gpu_bf16_tflops": 989.0, "decode_mfu": 0.1, "gpu_memory_gb": 80.0,
                             "gpu_memory_bandwidth_gbs": 3350.0})
    # per step: 6.18 GB of weights + 203 x 313.8 MB = 69.88 GB read for 203 tokens: 203 x 3350 / 69.88 = 9,732
    # tok/s < the compute bound 16,003
    rate, bound = decode_rate(arch, 1, h100, 512, 16000)
    assert bound == "bandwidth" and rate == pytest.approx(9732, abs=1)
    # H200 (141 GB, 4,800 GB/s): 378 sequences fit, capped at vLLM's 256: 256 x 4800 / 86.51 GB = 14,204 tok/s
    h200 = OmegaConf.merge(h100, {"gpu_memory_gb": 141.0, "gpu_memory_bandwidth_gbs": 4800.0})
    assert decode_rate(arch, 1, h200, 512, 16000) == (pytest.approx(14204, abs=1), "bandwidth")
    # short completions of a large batch: little KV to read, the compute bound holds
    assert decode_rate(arch, 1, h200, 512, 256)[1] == "compute"
    # one node: a whole-node job takes its hours, 1-GPU jobs share the node: (2 x 8 + 1 x 1 + 3 x 16) / 8
    assert one_node_hours([(2.0, 8), (1.0, 1), (3.0, 16)], 8) == pytest.approx(8.125)


def test_describe_names_the_replicas_and_the_bound():
    line = describe(preflight(compose_cfg("student=llama70b", "data.missing_pool=wait"), 8))
    assert "(eval TP 4 x data_parallel_size 2, bandwidth-bound)" in line


def test_plan_hours_read_in_minutes_or_two_significant_figures():
    from mixgap.plan.printout import duration

    assert [duration(h) for h in (0.0, 0.004, 0.02, 0.75, 3.92, 11.75, 123.4)] == [
        "0 h", "1 min", "1 min", "0.75 h", "3.9 h", "12 h", "123 h"]
