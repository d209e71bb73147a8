"""A bad command line is refused by ``python launch.py`` in one line (``mixgap: error: ...``, exit 2), in under
3 s, before Hydra composes or writes anything (no outputs/ or multirun/ folder). The checks themselves are unit
tested in tests/unit/test_overrides.py and tests/unit/test_config_keys.py."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import ROOT

STUDENTS = ("llama1b, llama3b, llama70b, llama8b, qwen0.5b, qwen0.5b_base, qwen1.5b, qwen1.5b_base, qwen14b, qwen32b, "
            "qwen3b, qwen3b_base, qwen7b, qwen7b_base, qwen_math1.5b, qwen_math7b, smollm2_135m")


def _launch(tmp_path, *args: str) -> subprocess.CompletedProcess:
    """``launch.py <args>`` in ``tmp_path`` (its refusal speed is benchmarks/bench_cli.py's, not a test's)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, str(ROOT / "launch.py"), *args], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120)


@pytest.mark.parametrize(("args", "line"), [
    (["student=qwen99b"], f"student=qwen99b is not an option; choose one of {STUDENTS} (did you mean qwen7b?)"),
    (["benchmark=[mathx]"], "benchmark=[mathx]: mathx is not an option; choose one of aime24, amc23, gsm8k, math, "
                            "math500, olympiadbench (did you mean math?)"),
    (["+judge=qwen32b"], "+judge=qwen32b: the judge group cannot go there, the top level has no field 'judge' of "
                         "the config schema; put it at eval.judge: +judge@eval.judge=qwen32b"),
    (["mix.weight=abc"], "mix.weight=abc is not allowed; mix.weight must be a float (a number such as 0.2)"),
    (["-m", "student=qwen3b,qwen99b"], f"student=qwen3b,qwen99b: qwen99b is not an option; choose one of {STUDENTS} "
                                       "(did you mean qwen7b?)"),
    (["mix.weight=0,1"], "mix.weight=0,1 is a sweep (one job per value); add -m: python launch.py -m mix.weight=0,1 ..."),
    (["+experiment=demo", "+mix.wieght=0.2"], "+mix.wieght=0.2: mix.wieght is not a field of the config schema; did "
                                              "you mean mix.weight? (mix has: strong, weak, weight, problems, seed, strategy)"),
    (["+experiment=demo", "mix.wieght=0.2"], "mix.wieght=0.2: mix.wieght is not a field of the config schema; did "
                                             "you mean mix.weight? (mix has: strong, weak, weight, problems, seed, strategy)"),
    (["experiment=demo"], "experiment=demo: no defaults list chooses the experiment group, so it is added, not set: "
                          "+experiment=demo"),
    (["+mix.weight=0.3"], "+mix.weight=0.3: mix.weight is already in the config, so it is set, not added: "
                          "mix.weight=0.3"),
])
def test_launch_refuses_in_one_line_with_nothing_written(tmp_path, args, line):
    proc = _launch(tmp_path, *args)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [f"mixgap: error: {line}"]
    assert list(tmp_path.iterdir()) == []  # no outputs/, multirun/ or cache/: Hydra never composed


@pytest.mark.parametrize("stage", ["report", "analyze"])
def test_a_sweep_folder_without_job_folders_is_refused_before_a_job_folder_is_made(tmp_path_factory, stage):
    empty = tmp_path_factory.mktemp("sweep")
    (empty / "0").mkdir()  # a folder, but no job wrote .hydra/ in it
    cwd = tmp_path_factory.mktemp("cwd")
    proc = _launch(cwd, f"stage={stage}", f"{stage}.sweep={empty}")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"mixgap: error: {stage}.sweep=['{empty}']: no Hydra job folder (one holding .hydra/) in it; give the folder "
        "a `launch.py -m` run wrote (its hydra.sweep.dir)"]
    assert list(cwd.iterdir()) == []
