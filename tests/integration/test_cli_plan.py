"""``launch.py`` runs of the planning path: the README's headline command plans six jobs sharing two pools and three
mixtures, and bad values exit 2 with one line (processes: here, not in the unit tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT


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
    for kind, distinct, uses in (("pool", 2, 12), ("mixture", 3, 6), ("checkpoint", 6, 6),
                                 ("completions.untuned", 10, 30), ("eval.untuned", 10, 30)):
        assert f"  {kind:<19} {distinct:>4} distinct (0 done), used {uses} times" in out, out
    plans = [json.loads((tmp_path / "sweep" / str(n) / "result.json").read_text()) for n in range(6)]
    assert {p["job"]["student"] for p in plans} == {"qwen0.5b", "qwen3b"}
    assert sorted(p["job"]["weight"] for p in plans) == [0.0, 0.0, 0.2, 0.2, 1.0, 1.0]
    assert not (tmp_path / "cache").exists()  # planning builds nothing


@pytest.mark.parametrize(
    "args, message",
    [
        (["mix.weight=1.5"], "mixgap: error: mix.weight=1.5 is not allowed; it must be in [0, 1]"),
        (["finetune_mode.lora.r=8"], "mixgap: error: finetune_mode.lora.r=8 is not allowed with finetune_mode.mode='full'"),
        (["paths.data=/no/such/kit"], "mixgap: error: paths.data='/no/such/kit' (from MIXGAP_DATA or the command line) is not an existing folder"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, args, message):
    proc = _launch(*args, "stage=plan", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and proc.stderr.startswith(message)
