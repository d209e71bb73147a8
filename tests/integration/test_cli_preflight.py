"""``launch.py`` runs of the preflight: a bad sweep point refuses the whole sweep before any job, a SLURM sweep that
cannot fit is never submitted, a single plan job prints every reason, Table 1 plans on SLURM without submitting, and
a failed submission is one line (processes: here, not in the unit tests)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT, kit_root, write_hub_cache


def _launch(*args: str, cwd, **extra_env: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **extra_env, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "MIXGAP_DATA": str(kit_root()),
           "PYTHONPATH": str(ROOT)}
    env["MIXGAP_DATA"] = os.environ.get("MIXGAP_DATA", env["MIXGAP_DATA"])
    return subprocess.run([sys.executable, str(ROOT / "launch.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_a_bad_sweep_point_refuses_the_whole_sweep_before_any_job(tmp_path):
    proc = _launch("-m", "+experiment=demo", "mix.weight=0,0.2,1.5", f"paths.cache={tmp_path / 'cache'}",
                   f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[0] == "mixgap: error: the sweep is refused before any job started: 1 of 3 jobs cannot run"
    assert lines[1].startswith("mixgap: error: job 2 (mix.weight=1.5 ") and "mix.weight=1.5 is not allowed" in lines[1]
    assert not (tmp_path / "cache").exists() and not (tmp_path / "sweep").exists()  # nothing built, nothing run


def test_a_slurm_sweep_that_cannot_fit_is_never_submitted(tmp_path):
    # the demo's global batch 2 cannot be split over the slurm launcher's 8 GPUs: refused before submitit runs
    proc = _launch("-m", "+experiment=demo", "hydra/launcher=slurm", f"paths.cache={tmp_path / 'cache'}",
                   f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "3 of 3 jobs cannot run" in proc.stderr
    assert "finetune_mode.global_batch_size=2 is not allowed on 8 GPUs" in proc.stderr
    assert not (tmp_path / "sweep" / ".submitit").exists()


def test_single_plan_job_that_cannot_fit_prints_every_reason(tmp_path):
    """On this CPU machine (the basic launcher, no CUDA device) the two context refusals are wrong here too; the
    7B full SFT's GPU memory is not this machine's to refuse (it is planned on hydra/launcher=slurm beside it)."""
    proc = _launch("stage=plan", "student=qwen_math7b", "data.missing_pool=wait", f"paths.cache={tmp_path / 'c'}",
                   f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, CUDA_VISIBLE_DEVICES="")  # a machine without GPUs
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-2:] == [
        "mixgap: error: finetune_mode.max_seq_len=16384 is not allowed for student=qwen_math7b; it must be <= its "
        "context, max_position_embeddings=4096",
        "mixgap: error: eval.max_model_len=16000 is not allowed for student=qwen_math7b; it must be <= its context, "
        "max_position_embeddings=4096"]
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert set(result["preflight"]) >= {"world_size", "per_device_batch_size", "gradient_accumulation_steps",
                                        "global_batch_size", "train_memory_gb_per_gpu", "generation_memory_gb_per_gpu",
                                        "train_hours_estimate", "refusals"}
    assert len(result["preflight"]["refusals"]) == 2 and result["preflight"]["cpu"]
    there = result["preflight"]["elsewhere"]  # the cluster plan: both contexts, and no GPU memory refusal at 8 GPUs
    assert there["launcher"] == "slurm" and len(there["refusals"]) == 2


def test_a_full_sft_that_fits_at_a_smaller_per_device_batch_is_planned_there(tmp_path):
    """qwen0.5b full SFT on one 80 GB GPU (hydra/launcher=slurm_1gpu): per-device 2 x 16384 tokens would need
    73.5 GB > 72.0 GB usable; per-device 1 x accumulation 8 (42.4 GB) keeps the global batch 8 and fits, and is the
    per-device batch the train stage runs (decisions)."""
    proc = _launch("student=qwen0.5b", "finetune_mode=full", "hydra/launcher=slurm_1gpu", "cluster.gpu_memory_gb=80",
                   "data.missing_pool=wait", "stage=plan", f"paths.cache={tmp_path / 'c'}",
                   f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert ("preflight: 1 GPU(s) of 80 GB; world 1 x per-device 1 x accumulation 8 = global 8 (per-device 2 would "
            "need 73.5 GB > 72.0 GB usable); train 42.4 GB/GPU") in proc.stdout + proc.stderr
    pf = json.loads((tmp_path / "run" / "result.json").read_text())["preflight"]
    assert (pf["per_device_batch_size"], pf["gradient_accumulation_steps"], pf["global_batch_size"]) == (1, 8, 8)
    assert pf["refusals"] == [] and pf["decisions"]["train_per_device_batch_size"] == 1


@pytest.mark.slow
def test_table1_plans_on_slurm_without_submitting(tmp_path):
    proc = _launch("-m", "+experiment=long_vs_short", "hydra/launcher=slurm", "stage=plan",
                   f"paths.cache={tmp_path / 'cache'}", f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "20 jobs in" in out and "20 planned" in out and "0 of 20 jobs refused" in out
    rows = [line for line in out.splitlines() if re.match(r"^  \S+ \S+/\S+ w=\S+ (full|lora) .*train \d+\.\d GB/GPU.*GPU-h$", line)]
    assert len(rows) == 20 and re.search(r"^sweep total: \d+\.\d GPU-hours", out, re.M)
    assert not (tmp_path / "sweep" / ".submitit").exists()


def test_a_failed_slurm_submission_is_one_line(tmp_path):
    env_path = os.path.dirname(sys.executable)  # no srun/sbatch on this PATH: submitit cannot submit
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "PATH": env_path,
           "MIXGAP_DATA": str(kit_root()), "HF_HUB_CACHE": str(write_hub_cache(tmp_path / "hf-hub"))}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "launch.py"), "-m", "+experiment=long_vs_short", "hydra/launcher=slurm",
         "student=qwen0.5b", f"paths.cache={tmp_path / 'cache'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "mixgap: error: hydra/launcher=slurm could not submit the sweep (nothing was started): "
        'Could not detect "srun", are you indeed on a slurm cluster?')
