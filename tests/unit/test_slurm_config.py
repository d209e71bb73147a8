"""SLURM launchers (conf/hydra/launcher/slurm*.yaml) without a cluster: the fields, the sbatch script the
hydra-submitit plugin writes from them, the requeue-stable job folder, and data.missing_pool (what a
training job does when its teacher pool is missing: generate it, wait for the job generating it, or fail)."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest
import submitit
from hydra import compose, initialize_config_dir
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.utils import create_config_search_path
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import OmegaConf

from conftest import ROOT, compose_cfg
from mixgap.core.stage import BuildContext
from mixgap.core.store import Store
from mixgap.core.tracking import NullTracker
from mixgap.plan import jobs
from mixgap.stages import generate

CONF = ROOT / "conf"


@pytest.fixture(autouse=True)
def _no_cluster_environment(monkeypatch):
    """The launchers read MIXGAP_SLURM_* from the environment: start each test from the defaults."""
    for name in [n for n in os.environ if n.startswith("MIXGAP_SLURM_")]:
        monkeypatch.delenv(name)


def _launcher_cfg(launcher: str, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=[f"hydra/launcher={launcher}", *overrides], return_hydra_config=True)


def _fields(launcher: str, *overrides: str) -> dict:
    return OmegaConf.to_container(_launcher_cfg(launcher, *overrides).hydra.launcher, resolve=True)


def test_slurm_defaults_one_whole_node_one_task_with_requeue():
    f = _fields("slurm")
    assert f["_target_"] == "hydra_plugins.mixgap_launcher.StudyLauncher"  # hydra-submitit-launcher's SlurmLauncher + the study
    assert (f["nodes"], f["tasks_per_node"], f["gpus_per_node"], f["cpus_per_task"], f["mem_gb"]) == (1, 1, 8, 32, 0)
    assert (f["partition"], f["account"], f["qos"], f["constraint"]) == (None, None, None, None)
    assert (f["timeout_min"], f["signal_delay_s"], f["max_num_timeout"]) == (1440, 300, 20)
    assert f["additional_parameters"] == {"requeue": True}
    assert f["submitit_folder"].endswith("/.submitit/%j") and f["name"] == "mixgap_all"
    assert f["setup"][0] == "true"  # MIXGAP_SLURM_SETUP unset: a no-op line


def test_cluster_values_come_from_the_environment(monkeypatch):
    env = {"PARTITION": "gpu-a100", "ACCOUNT": "proj42", "QOS": "high", "CONSTRAINT": "a100", "GPUS_PER_NODE": "4",
           "CPUS_PER_TASK": "48", "MEM_GB": "500", "TIMEOUT_MIN": "2880", "ARRAY_PARALLELISM": "16",
           "SETUP": "module load cuda/12.4", "CPUS_PER_GPU": "12", "MEM_GB_PER_GPU": "90"}
    for key, value in env.items():
        monkeypatch.setenv(f"MIXGAP_SLURM_{key}", value)
    f = _fields("slurm")
    assert (f["partition"], f["account"], f["qos"], f["constraint"]) == ("gpu-a100", "proj42", "high", "a100")
    assert (f["gpus_per_node"], f["cpus_per_task"], f["mem_gb"], f["timeout_min"], f["array_parallelism"]) == (
        4, 48, 500, 2880, 16)
    assert f["setup"][0] == "module load cuda/12.4"
    one = _fields("slurm_1gpu")
    assert (one["gpus_per_node"], one["cpus_per_task"], one["mem_gb"], one["partition"]) == (1, 12, 90, "gpu-a100")
    local = _fields("slurm_local_test")  # the test cluster ignores the shell's cluster settings
    assert (local["partition"], local["account"], local["gpus_per_node"], local["cpus_per_task"]) == (
        "debug", None, None, 1)
    assert "module load cuda/12.4" not in local["setup"]


def test_command_line_overrides_a_launcher_field():
    f = _fields("slurm", "hydra.launcher.gpus_per_node=4", "hydra.launcher.timeout_min=60", "stage=generate")
    assert (f["gpus_per_node"], f["timeout_min"], f["name"]) == (4, 60, "mixgap_generate")


def _sbatch_script(monkeypatch, tmp_path: Path, launcher: str, *overrides: str) -> str:
    """The sbatch script the hydra-submitit plugin would submit for a 3-job sweep (nothing is submitted)."""
    scripts = []

    class RecordingExecutor(submitit.AutoExecutor):
        def map_array(self, fn, *iterable):
            # what SlurmExecutor._internal_process_submissions writes for an array of len(iterable[0]) jobs
            self._executor.parameters["map_count"] = len(iterable[0])
            scripts.append(self._executor._make_submission_file_text("python -u -m submitit.core._submit x", "u"))
            return []

    monkeypatch.setattr(submitit, "AutoExecutor", RecordingExecutor)
    cfg = _launcher_cfg(launcher, f"hydra.sweep.dir={tmp_path}/sweep", *overrides)
    plugin = instantiate(cfg.hydra.launcher)
    plugin.config = cfg
    plugin.launch([["mix.weight=0"], ["mix.weight=0.2"], ["mix.weight=1"]], initial_job_idx=0)
    return scripts[0]


def test_sbatch_script_of_the_default_launcher(monkeypatch, tmp_path):
    monkeypatch.setenv("MIXGAP_SLURM_PARTITION", "gpu")
    monkeypatch.setenv("MIXGAP_SLURM_ACCOUNT", "proj42")
    lines = _sbatch_script(monkeypatch, tmp_path, "slurm").splitlines()
    flags = {line for line in lines if line.startswith("#SBATCH")}
    for flag in ("--nodes=1", "--ntasks-per-node=1", "--gpus-per-node=8", "--cpus-per-task=32", "--mem=0GB",
                 "--time=1440", "--signal=USR2@300", "--requeue", "--partition=gpu", "--account=proj42",
                 "--array=0-2%3", "--job-name=mixgap_all"):
        assert f"#SBATCH {flag}" in flags, flag
    assert not any("None" in line for line in lines)  # unset qos/constraint are left out, not "--qos=None"
    assert not any(line.startswith(("#SBATCH --qos", "#SBATCH --constraint", "#SBATCH --gres")) for line in lines)
    assert f"#SBATCH --output={tmp_path}/sweep/.submitit/%A_%a/%A_%a_0_log.out" in flags
    setup = lines.index("# setup")
    assert lines[setup + 1] == "true" and lines.index("# command") > setup
    assert lines[-1].startswith("srun ")  # the job itself runs in one srun task


def test_sbatch_script_of_the_local_test_launcher_asks_no_gpu(monkeypatch, tmp_path):
    lines = _sbatch_script(monkeypatch, tmp_path, "slurm_local_test").splitlines()
    assert "#SBATCH --partition=debug" in lines and "#SBATCH --cpus-per-task=1" in lines
    assert "#SBATCH --mem=6GB" in lines and "#SBATCH --time=20" in lines and "#SBATCH --array=0-2%3" in lines
    assert not any("gpus" in line or "gres" in line for line in lines)


def test_requeued_job_finds_the_same_job_folder():
    """A requeued job unpickles the launcher and recomposes its config (``load_sweep_config``); the sweep
    dir's ``${now:}`` must resolve to the first attempt's value, not the requeue time."""
    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(str(CONF)))
    master = loader.load_configuration(
        "config", overrides=["hydra/launcher=slurm", "hydra.sweep.dir=multirun/${now:%H-%M-%S-%f}"],
        run_mode=RunMode.MULTIRUN,
    )
    first = master.hydra.sweep.dir  # resolved at submission (the plugin logs it before pickling itself)
    requeued = pickle.loads(pickle.dumps(master))
    time.sleep(0.01)
    job = loader.load_sweep_config(requeued, ["mix.weight=1"])
    assert job.hydra.sweep.dir == first
    assert OmegaConf.to_container(job.hydra.sweep)["subdir"] == "${hydra.job.num}"  # never the job id
    fresh = loader.load_sweep_config(loader.load_configuration(
        "config", overrides=["hydra/launcher=slurm", "hydra.sweep.dir=multirun/${now:%H-%M-%S-%f}"],
        run_mode=RunMode.MULTIRUN), ["mix.weight=1"])
    assert fresh.hydra.sweep.dir != first  # the check above is not vacuous


# ---- data.missing_pool ---------------------------------------------------------------------------------
SAMPLES = [  # one correct and one wrong teacher sample: the pool keeps p1 only
    {"id": "p1", "problem": "What is 1+1?", "answer": "2", "sample_index": 0,
     "response": "1+1=2.\nFinal Answer: \\boxed{2}", "finish_reason": "stop", "prompt_tokens": 9,
     "completion_tokens": 12, "status": "ok", "teacher": "qwq32b"},
    {"id": "p2", "problem": "What is 2+1?", "answer": "3", "sample_index": 0,
     "response": "2+1=5.\nFinal Answer: \\boxed{5}", "finish_reason": "stop", "prompt_tokens": 9,
     "completion_tokens": 12, "status": "ok", "teacher": "qwq32b"},
]
HOLDER = """
import json, sys, time
from pathlib import Path
from mixgap.core.store import ArtifactSpec, Store
root, spec, ready, rows = sys.argv[1], json.loads(sys.argv[2]), Path(sys.argv[3]), json.loads(sys.argv[4])
def build(out, work):
    ready.touch()
    time.sleep(2.0)
    (out / "samples.jsonl").write_text("".join(json.dumps(r) + "\\n" for r in rows))
Store(root).get_or_build(ArtifactSpec(spec["stage"], spec["fields"], tuple(spec["inputs"])), build)
"""


def _build_pool(cfg, store, role, specs, tracker):
    """The generate step of one teacher role (the stage contract), returning its pool folder."""
    ctx = BuildContext(cfg, store, tracker, specs)
    generate.run(ctx, (f"generation.{role}", f"pool.{role}"))
    return ctx.paths[f"pool.{role}"]


@pytest.fixture
def pool_job(tmp_path, monkeypatch):
    """(cfg, store, specs, calls) of a paper-default job (QwQ-32B-Preview strong teacher, vLLM backend)
    whose generation is replaced by writing SAMPLES; ``calls`` counts generations."""
    calls = []

    def fake_generation(teacher, cfg, store, out_dir, work_dir, tracker, data_parallel_size=None):
        calls.append(teacher.name)
        (Path(out_dir) / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in SAMPLES))
        return {}

    monkeypatch.setattr(generate, "build_generation", fake_generation)

    def make(policy: str):
        cfg = compose_cfg(f"data.missing_pool={policy}", f"paths.cache={tmp_path / 'cache'}", "paths.data=null")
        return cfg, Store(cfg.paths.cache), jobs.job_specs(cfg), calls

    return make


def test_missing_pool_generate_builds_it_once(pool_job):
    cfg, store, specs, calls = pool_job("generate")
    first = _build_pool(cfg, store, "strong", specs, NullTracker())
    again = _build_pool(cfg, store, "strong", specs, NullTracker())
    assert first == again and calls == ["qwq32b"]
    assert [r["id"] for r in generate.read_pool(first)] == ["p1"]


@pytest.mark.parametrize("policy", ["fail", "wait"])
def test_missing_pool_fails_fast_naming_the_command(pool_job, policy):
    cfg, store, specs, calls = pool_job(policy)
    start = time.monotonic()
    with pytest.raises(generate.PoolMissing) as err:
        _build_pool(cfg, store, "strong", specs, NullTracker())
    assert time.monotonic() - start < 1.0  # "wait" waits only for a job that is generating it now
    assert "make it first with: python launch.py stage=generate teacher=qwq32b" in str(err.value)
    assert specs["generation.strong"].key in str(err.value)
    assert calls == [] and not store.is_done(specs["generation.strong"].key)


def test_missing_pool_wait_blocks_on_the_generating_job_then_uses_its_pool(pool_job, tmp_path):
    cfg, store, specs, calls = pool_job("wait")
    gen = specs["generation.strong"]
    ready = tmp_path / "holder-started"
    holder = subprocess.Popen([
        sys.executable, "-c", HOLDER, str(store.root),
        json.dumps({"stage": gen.stage, "fields": gen.fields, "inputs": list(gen.inputs)}), str(ready),
        json.dumps(SAMPLES),
    ])
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():  # the other job holds the generation's lock
            assert time.monotonic() < deadline and holder.poll() is None, "holder process did not start"
            time.sleep(0.05)
        start = time.monotonic()
        pool = _build_pool(cfg, store, "strong", specs, NullTracker())
        waited = time.monotonic() - start
    finally:
        holder.wait(timeout=30)
    assert holder.returncode == 0 and waited > 1.0
    assert calls == []  # this job generated nothing: it used the other job's generation
    assert [r["id"] for r in generate.read_pool(pool)] == ["p1"]
