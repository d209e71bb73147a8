"""``launch.py`` runs of the planning path: the README's headline command plans six jobs sharing two pools and three
mixtures, and bad values exit 2 with one line (processes: here, not in the unit tests)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, conf_hub_models, fake_commit


def _launch(*args: str, cwd, **extra_env: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **extra_env, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
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


def test_a_student_aware_arm_on_slurm_plans_the_scoring_of_every_problem_with_its_hours(tmp_path):
    """qwen3b with mix.strategy=rsr on hydra/launcher=slurm, on a Hugging Face cache that holds every model's commit
    (as tests/conftest.py hub_cached): the grid job's line plans the untuned student's scoring of the paper's 5,383
    problems x 2 traces on one GPU (hours: tests/unit/test_mix_rsr.py) before the mixture that reads it."""
    cache = tmp_path / "hf-hub"
    for hf_id in conf_hub_models():
        ref = cache / f"models--{hf_id.replace('/', '--')}" / "refs" / "main"
        ref.parent.mkdir(parents=True)
        ref.write_text(fake_commit(hf_id))
    proc = _launch("-m", "student=qwen3b", "mix.strategy=rsr", "stage=plan", "hydra/launcher=slurm",
                   f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path, HF_HUB_CACHE=str(cache))
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.startswith("  qwen3b qwq32b/qwen32b mix.strategy=rsr full "))
    assert "scoring 10,766 traces 16.1 GB on 1 GPU; scoring 4 min + train " in line, line
    assert "  scores                 2 distinct (0 done), used 2 times" in proc.stdout
    plan = json.loads((tmp_path / "sweep" / "0" / "result.json").read_text())
    assert plan["job"]["strategy"] == "rsr" and plan["preflight"]["score_traces"] == 10766
    roles = [row["role"] for row in plan["plan"]]
    assert roles.index("scores.strong") < roles.index("scores.weak") < roles.index("mixture")


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


def test_one_byte_changed_in_a_local_students_weights_plans_its_evaluations_and_checkpoint_to_build(
        tmp_path, smollm2_path, kit):
    """A copy of the converted SmolLM2 folder as the student (student.hf_id=<folder>): its evaluations, checkpoint and
    learnability scores, marked finished in the store, are planned done; after one byte of model.safetensors changes
    (same size) they are planned "to build" under new keys, and the teachers' pools and the mixture keep theirs."""
    student = tmp_path / "student"
    student.mkdir()
    for path in Path(smollm2_path).iterdir():
        if path.name != "manifest.json":  # the store's record of the converted folder, not the model's
            shutil.copy(path, student / path.name)
    cache = tmp_path / "cache"

    def plan(run: str) -> dict:
        proc = _launch("+experiment=demo", "student=qwen0.5b", f"student.hf_id={student}", "stage=plan",
                       f"paths.cache={cache}", f"paths.data={kit}", f"hydra.run.dir={tmp_path / run}", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert f"student shape from {student}/config.json: 0.135B parameters" in proc.stdout + proc.stderr
        return {row["role"]: row for row in json.loads((tmp_path / run / "result.json").read_text())["plan"]}

    before = plan("first")
    on_student = [role for role in before
                  if role == "checkpoint" or role.startswith(("completions.", "eval.", "predict."))]
    assert len(on_student) == 23 and not any(before[role]["done"] for role in on_student)
    for role in on_student:  # finished, as a store records it (a manifest without files is checked as JSON only)
        key = before[role]["key"]
        (cache / key.split("-")[0] / key).mkdir(parents=True)
        (cache / key.split("-")[0] / key / "manifest.json").write_text(json.dumps({"key": key}))
    assert all(row["done"] for role, row in plan("second").items() if role in on_student)
    weights = student / "model.safetensors"
    size = weights.stat().st_size
    with open(weights, "r+b") as fh:  # one byte in the last tensor's data: same size
        fh.seek(size - 1)
        last = fh.read(1)
        fh.seek(size - 1)
        fh.write(bytes([last[0] ^ 1]))
    assert weights.stat().st_size == size
    after = plan("third")
    assert [role for role in on_student if after[role]["done"]] == []
    assert all(after[role]["key"] != before[role]["key"] for role in on_student)
    assert {role: after[role]["key"] for role in after if role not in on_student} == {
        role: before[role]["key"] for role in before if role not in on_student}
