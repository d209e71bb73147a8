"""``launch.py`` on a researcher's own files: a config folder outside the checkout (``hydra.searchpath``) holding a
student YAML and a benchmark YAML whose JSONL file has ``question``/``answer`` fields (a ``fields:`` map), with
``MIXGAP_DATA`` set: the untuned student is evaluated on it, every stage saying what it made."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, write_study

pytestmark = pytest.mark.slow


def launch(*args: str, cwd, data) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline",
           "MIXGAP_DATA": str(data)}
    return subprocess.run([sys.executable, str(ROOT / "launch.py"), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture
def study(tmp_path, smollm2_path):
    """The tiny study (tests/conftest.py write_study) plus a student of one's own in its config folder: SmolLM2
    from a local folder, extending the shipped student YAML."""
    overrides = write_study(tmp_path / "study")
    (tmp_path / "study" / "conf" / "student").mkdir()
    (tmp_path / "study" / "conf" / "student" / "mysmol.yaml").write_text(
        f"defaults:\n  - smollm2_135m\n  - _self_\nname: mysmol\nhf_id: {smollm2_path}\ngguf: null\n")
    return overrides


def test_a_question_answer_benchmark_in_ones_own_folder_evaluates_a_student_of_ones_own(study, tmp_path, kit):
    proc = launch(*study, "student=mysmol", "stage=evaluate", "eval.backend=hf", "eval.max_new_tokens=4",
                  "eval.max_model_len=null", f"paths.cache={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'run'}",
                  cwd=tmp_path, data=kit)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["status"] == "done" and result["job"]["student"] == "mysmol"
    scores = result["untuned"]["mybench"]
    assert (scores["n"], scores["correct"]) == (2, 0)  # 4 new tokens answer neither question
    shown = proc.stdout + proc.stderr
    for line in ("generate.strong: kit_long_cot pool: kept 3 of 4 problems (75.0%)",
                 "mix: 3 examples, 2 strong and 1 weak (realised w = 0.667; mix.weight=0.5)",
                 "mybench: fields.id is null: its problems are numbered by row, mybench-0 to mybench-1",
                 "benchmarks: mybench 2 problems to evaluate",
                 "evaluate.untuned: mybench 0 of 2 correct (0.0%)"):
        assert line in shown, shown[-3000:]
    predictions = (tmp_path / "cache" / "eval" / result["artifacts"]["eval.untuned.mybench"] / "predictions.jsonl")
    rows = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert [(r["id"], r["gold"]) for r in rows] == [("mybench-0", "1729"), ("mybench-1", "92")]


def test_a_misspelt_option_of_ones_own_folder_is_one_line(study, tmp_path, kit):
    proc = launch(*study, "student=mysmoll", "stage=plan", cwd=tmp_path, data=kit)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("mixgap: error: student=mysmoll is not an option; choose one of llama1b, llama3b")
    assert proc.stderr.strip().endswith("(did you mean mysmol?)")
