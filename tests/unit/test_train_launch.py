"""Launch assembly (torchrun / SLURM), batch arithmetic, the checkpoint key and resume-point selection."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import compose_cfg
from mixgap.stages.train.launch import (
    WorldPlan,
    cpu_processes,
    deepspeed_config,
    torchrun_command,
    use_subprocess,
    world_plan,
)
from mixgap.stages.train.stage import checkpoint_spec, resolve_precision
from mixgap.stages.train.step_losses import final_loss, read_losses, write_losses
from mixgap.stages.train.trainer import gradient_accumulation, last_complete_checkpoint

PY = sys.executable
TAIL = ["-m", "mixgap.stages.train", "job.json"]


def hosts(nodelist: str) -> list[str]:
    assert nodelist == "gpu[07-08]"
    return ["gpu07", "gpu08"]


def test_single_node_uses_every_visible_gpu():
    plan = world_plan({}, gpu_count=4)
    assert plan == WorldPlan(nproc_per_node=4) and plan.world_size == 4
    assert torchrun_command(plan, "job.json") == [
        PY, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=4", *TAIL
    ]


def test_cpu_is_one_process_and_slurm_gpus_override_visible_count():
    assert world_plan({}, gpu_count=0).nproc_per_node == 1
    assert world_plan({"SLURM_GPUS_ON_NODE": "2", "SLURM_NNODES": "1"}, gpu_count=8).nproc_per_node == 2


SLURM = {"SLURM_NNODES": "2", "SLURM_NODEID": "1", "SLURM_JOB_NODELIST": "gpu[07-08]", "SLURM_GPUS_ON_NODE": "4",
         "SLURM_JOB_ID": "123456"}


def test_slurm_one_task_per_node():
    plan = world_plan({**SLURM, "SLURM_NTASKS": "2"}, gpu_count=4, hostnames=hosts)
    assert plan == WorldPlan(nnodes=2, node_rank=1, nproc_per_node=4, master_addr="gpu07", master_port=23456)
    assert plan.world_size == 8
    assert torchrun_command(plan, "job.json") == [
        PY, "-m", "torch.distributed.run", "--nnodes=2", "--master_addr=gpu07", "--master_port=23456",
        "--node_rank=1", "--nproc_per_node=4", *TAIL,
    ]


def test_slurm_single_task_wraps_torchrun_in_srun_with_per_node_rank():
    plan = world_plan({**SLURM, "SLURM_NTASKS": "1"}, gpu_count=4, hostnames=hosts)
    assert plan.srun
    cmd = torchrun_command(plan, "job.json", python="echo")
    assert cmd[:7] == ["srun", "--overlap", "--nodes=2", "--ntasks=2", "--ntasks-per-node=1", "--kill-on-bad-exit=1",
                       "bash"]
    # what srun runs on node 1: the shell expands that node's own SLURM_NODEID
    out = subprocess.run(cmd[-3:], env={"SLURM_NODEID": "1", "PATH": "/usr/bin:/bin"}, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["-m", "torch.distributed.run", "--nnodes=2", "--master_addr=gpu07", "--master_port=23456",
                   "--node_rank=1", "--nproc_per_node=4", *TAIL]


def test_slurm_errors():
    with pytest.raises(ValueError, match="SLURM_JOB_NODELIST is not set"):
        world_plan({"SLURM_NNODES": "2"}, gpu_count=4)
    with pytest.raises(ValueError, match="fewer than SLURM_NNODES=3"):
        world_plan({**SLURM, "SLURM_NNODES": "3"}, gpu_count=4, hostnames=hosts)
    with pytest.raises(ValueError, match="SLURM_GPUS_ON_NODE='four' is not an integer"):
        world_plan({"SLURM_GPUS_ON_NODE": "four"}, gpu_count=4)


@pytest.mark.parametrize(
    ("launch", "gpus", "want"),
    [("auto", 0, False), ("auto", 2, True), ("torchrun", 0, True), ("local", 8, False)],
)
def test_use_subprocess(launch, gpus, want):
    assert use_subprocess(launch, gpus) is want


def test_use_subprocess_rejects_unknown():
    with pytest.raises(ValueError, match="finetune_mode.launch='slurm' is not allowed; choose one of auto, local, torchrun"):
        use_subprocess("slurm", 0)


@pytest.mark.parametrize(("global_batch", "per_device", "world", "accum"), [(8, 2, 4, 1), (8, 2, 1, 4), (80, 2, 8, 5)])
def test_gradient_accumulation(global_batch, per_device, world, accum):
    assert gradient_accumulation(global_batch, per_device, world) == accum


def test_gradient_accumulation_not_divisible():
    with pytest.raises(ValueError, match="global_batch_size=8 .* on 3 device\\(s\\); it must be a positive multiple of 6"):
        gradient_accumulation(8, 2, 3)


def test_deepspeed_config_files():
    for name, stage in (("zero2", 2), ("zero3", 3)):
        assert json.loads(open(deepspeed_config(name)).read())["zero_optimization"]["stage"] == stage
    assert deepspeed_config(None) is None
    with pytest.raises(FileNotFoundError, match="finetune_mode.deepspeed='zero9'"):
        deepspeed_config("zero9")


def test_precision():
    assert [resolve_precision("auto", g) for g in (True, False)] == ["bf16", "fp32"]
    assert resolve_precision("bf16", False) == "bf16"
    with pytest.raises(ValueError, match="finetune_mode.precision='fp16' is not allowed"):
        resolve_precision("fp16", True)


def test_checkpoint_key_tracks_weight_fields_only():
    def key(*overrides: str, inputs=("student-a", "mixture-b")) -> str:
        return checkpoint_spec(compose_cfg(*overrides).finetune_mode, *inputs).key

    base = key()
    assert key("finetune_mode.logging_steps=1", "finetune_mode.save_steps=7") == base
    assert key("finetune_mode.gradient_checkpointing=false", "finetune_mode.deepspeed=zero2") == base
    assert key("finetune_mode.learning_rate=2e-5") != base
    assert key("finetune_mode.max_seq_len=8192") != base
    assert key("finetune_mode.lora.r=32") == base  # read only with mode=lora
    assert key("finetune_mode=lora") != key("finetune_mode=lora", "finetune_mode.lora.r=32")
    assert key("finetune_mode.pack_len=2048") == base  # read only with batch_unit=packed_sequences
    assert key("finetune_mode.settings_source=x") == base != key("finetune_mode.overlength=drop_pair")
    assert key(inputs=("student-a", "mixture-c")) != base
    assert checkpoint_spec(compose_cfg().finetune_mode, "s", "m").stage == "checkpoint"


def test_last_complete_checkpoint(tmp_path):
    assert last_complete_checkpoint(tmp_path / "missing") is None
    for step, complete in ((9, True), (10, True), (12, False)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if complete:
            (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    (tmp_path / "checkpoint-11").mkdir()
    (tmp_path / "checkpoint-11" / "trainer_state.json").write_text('{"global_st')  # cut mid-write
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-10")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-10", "checkpoint-9"]


def test_final_loss_is_the_mean_of_the_last_logging_steps_by_step_number(tmp_path):
    losses = {1: 2.0, 2: 1.5, 3: 1.25, 4: 1.0, 5: 0.75, 6: 0.5}
    # logging_steps=4 over 6 steps: steps 3-6, (1.25 + 1.0 + 0.75 + 0.5) / 4, wherever the logging windows fell
    assert final_loss(losses, 6, 4) == 0.875
    assert final_loss(losses, 6, 1) == 0.5 and final_loss(losses, 2, 10) == 1.75  # a window longer than the run
    assert final_loss({}, 0, 10) != final_loss({}, 0, 10)  # NaN: nothing trained
    with pytest.raises(ValueError, match=r"optimiser step\(s\) \[3\] of the final window 3-6"):
        final_loss({s: v for s, v in losses.items() if s != 3}, 6, 4)  # a resume from a checkpoint without losses
    with pytest.raises(ValueError, match="window=0 is not allowed"):
        final_loss(losses, 6, 0)
    write_losses(tmp_path / "checkpoint-3", {s: v for s, v in losses.items() if s <= 3})
    assert read_losses(tmp_path / "checkpoint-3") == {1: 2.0, 2: 1.5, 3: 1.25}
    assert read_losses(tmp_path / "checkpoint-9") == {} == read_losses(None)


def test_run_launch_forwards_metrics_and_fails_loudly(tmp_path):
    from mixgap.stages.train.launch import run_launch
    from mixgap.stages.train.trainer import jsonl_sink

    log = tmp_path / "metrics.jsonl"
    jsonl_sink(log)({"train/loss": 9.0}, 1)  # left by an earlier (killed) attempt: not forwarded again
    child = ("import json, time\n"
             f"f = open({str(log)!r}, 'a')\n"
             "for step in (2, 3):\n"
             "    f.write(json.dumps({'step': step, 'train/loss': 1.0 / step}) + '\\n'); f.flush(); time.sleep(0.3)\n")
    seen = []
    run_launch([sys.executable, "-c", child], log, lambda m, s: seen.append((s, m)), poll_s=0.1)
    assert seen == [(2, {"train/loss": 0.5}), (3, {"train/loss": 1.0 / 3})]
    with pytest.raises(RuntimeError, match="training subprocess failed with exit code 3"):
        run_launch([sys.executable, "-c", "raise SystemExit(3)"], log, lambda m, s: None, poll_s=0.1)


@pytest.mark.parametrize(
    ("precision", "mode", "deepspeed", "dtype"),
    [("bf16", "lora", None, "bfloat16"), ("bf16", "full", "zero3.json", "bfloat16"), ("bf16", "full", None, "float32"),
     ("fp32", "lora", None, "float32")],
)
def test_load_dtype(precision, mode, deepspeed, dtype):
    from mixgap.stages.train.trainer import TrainJob, load_dtype

    job = TrainJob("s", None, {"mode": mode}, "e", "t", "o", "l", "r", precision=precision, deepspeed_config=deepspeed)
    assert load_dtype(job) == dtype


def test_cpu_processes_ask_for_cpu_ranks_only_without_gpus():
    env = {"MIXGAP_CPU_PROCESSES": "2"}
    assert world_plan(env, gpu_count=0).nproc_per_node == 2
    assert world_plan(env, gpu_count=4).nproc_per_node == 4  # GPUs win: one rank per GPU
    assert world_plan({**env, "SLURM_GPUS_ON_NODE": "8"}, gpu_count=0).nproc_per_node == 8
    assert torchrun_command(world_plan(env, gpu_count=0), "job.json", python=PY)[-4] == "--nproc_per_node=2"
    assert cpu_processes({}) == 1 and cpu_processes(env) == 2
    with pytest.raises(ValueError, match="environment MIXGAP_CPU_PROCESSES='0' is not allowed; it must be >= 1"):
        cpu_processes({"MIXGAP_CPU_PROCESSES": "0"})
    with pytest.raises(ValueError, match="MIXGAP_CPU_PROCESSES='two' is not an integer"):
        cpu_processes({"MIXGAP_CPU_PROCESSES": "two"})


@pytest.mark.parametrize(("launch", "gpus", "cpu_ranks", "want"),
                         [("auto", 0, 2, True), ("auto", 0, 1, False), ("torchrun", 0, 2, True), ("auto", 4, 2, True)])
def test_use_subprocess_with_cpu_ranks(launch, gpus, cpu_ranks, want):
    assert use_subprocess(launch, gpus, cpu_ranks) is want


def test_local_launch_refuses_several_cpu_ranks():
    with pytest.raises(ValueError, match="finetune_mode.launch=local runs one process but MIXGAP_CPU_PROCESSES=2"):
        use_subprocess("local", 0, 2)
    assert use_subprocess("local", 1, 2) is False  # with a GPU the variable is not read


def test_a_rank_leaves_its_process_group_closed(tmp_path):
    """The rank entry point ends with the group destroyed (barrier first), and is a no-op without a group."""
    import torch.distributed as dist

    from mixgap.stages.train.__main__ import close_process_group

    close_process_group()  # no group: nothing to do, no error
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    assert dist.is_initialized()
    close_process_group()
    assert not dist.is_initialized()
