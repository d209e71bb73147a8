"""A job stopped by a signal is recorded as interrupted, never done, and ``launch.py`` ends in one line with
exit 128 + the signal's number, no traceback: SIGTERM during real training (SmolLM2-135M on the kit's traces, a
few steps; the report of its sweep does not count it), Ctrl-C (SIGINT) while the job waits for another process's
lock, and Ctrl-C inside Hydra's own code before the job starts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, write_hub_cache
from mixgap.core.store import Store

SIGINT_LINE = "mixgap: interrupted by SIGINT; rerun the same command to resume"
# a job whose teachers' pools are not in the store: with data.missing_pool=wait it waits for their lock
WAITING = ["teacher@mix.strong=smollm2_135m", "teacher@mix.weak=smollm2_135m", "student=smollm2_135m",
           "benchmark=[math500]", "finetune_mode.max_seq_len=2048", "eval.max_new_tokens=1024", "eval.max_model_len=null",
           "tracking.backend=none"]
STALL = """
import time
from pathlib import Path

from hydra.experimental.callback import Callback


class Stall(Callback):
    def __init__(self, marker):
        self.marker = marker

    def on_run_start(self, config, **kwargs):  # Hydra's own code, before the job's output folder exists
        Path(self.marker).write_text("started")
        time.sleep(120)
"""

RUN = ["+experiment=demo", "mix.weight=0", "stage=train", "finetune_mode.max_steps=40", "finetune_mode.save_steps=1",
       "finetune_mode.max_seq_len=768", "tracking.backend=none"]


@pytest.mark.slow
def test_sigterm_during_training_is_recorded_as_interrupted(tmp_path, kit, smollm2_path):
    store = Store(tmp_path / "cache")
    converted = Path(smollm2_path)  # the session's converted weights, linked in as a store artifact
    (store.root / "model").mkdir(parents=True)
    (store.root / "model" / converted.name).symlink_to(converted)
    job = tmp_path / "run"
    job.mkdir()
    (job / "result.json").write_text(json.dumps({"status": "done", "store": str(store.root)}))  # an earlier run
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "MIXGAP_DATA": str(kit),
           "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(ROOT / "launch.py"), *RUN, f"paths.cache={store.root}",
                             f"hydra.run.dir={job}"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 900
        while not list((store.root / ".work").glob("checkpoint-*/**/checkpoint-1")):  # in the training loop
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            assert time.time() < deadline, "training never saved its first checkpoint"
            time.sleep(0.5)
        assert json.loads((job / "result.json").read_text())["status"] == "running"
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    record = json.loads((job / "result.json").read_text())
    assert proc.returncode == 128 + signal.SIGTERM, output[-3000:]
    assert record["status"] == "interrupted" and record["interrupted"]["signal"] == "SIGTERM"
    assert record["pid"] == proc.pid and record["started"] > 0
    assert "interrupted by SIGTERM; rerun to resume" in output
    assert not list((store.root / "checkpoint").glob("*/manifest.json"))  # nothing reads as finished
    assert list((store.root / ".work").glob("checkpoint-*"))  # the resumable state is kept


def _sigint_default() -> None:
    """In the child before exec: SIGINT back to its default, as in a terminal. A suite started in the background
    (``cmd &`` in a script, ``nohup``) inherits SIGINT ignored, and Python then installs no KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _env(tmp_path, kit=None):
    """A subprocess's environment: offline, with a Hugging Face cache holding a commit of every Hub model of conf/
    (the default teachers'), so no job is refused for an unresolved revision."""
    hub = tmp_path / "hf-hub"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}",
           "HF_HUB_CACHE": str(hub if hub.is_dir() else write_hub_cache(hub))}
    return {**env, "MIXGAP_DATA": str(kit)} if kit is not None else env


def _wait_for(proc, ready, what, seconds=120):
    deadline = time.time() + seconds
    while not ready():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, what
        time.sleep(0.1)


def test_ctrl_c_while_the_job_waits_is_one_line_and_recorded_as_interrupted(tmp_path, kit):
    launch = [sys.executable, str(ROOT / "launch.py"), *WAITING, f"paths.cache={tmp_path / 'cache'}"]
    subprocess.run([*launch, "stage=plan", f"hydra.run.dir={tmp_path / 'plan'}"], cwd=tmp_path, env=_env(tmp_path, kit),
                   capture_output=True, text=True, timeout=120, check=True)
    rows = json.loads((tmp_path / "plan" / "result.json").read_text())["plan"]
    key = next(row["key"] for row in rows if row["role"] == "generation.strong")
    job = tmp_path / "run"
    with Store(tmp_path / "cache").holding(key):  # "another process" is building the strong pool
        proc = subprocess.Popen([*launch, "stage=mix", "data.missing_pool=wait", f"hydra.run.dir={job}"], cwd=tmp_path,
                                env=_env(tmp_path, kit), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=_sigint_default)
        try:
            log = job / "launch.log"
            _wait_for(proc, lambda: log.is_file() and f"waiting for {key}" in log.read_text(), "never waited")
            proc.send_signal(signal.SIGINT)
            _, stderr = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    record = json.loads((job / "result.json").read_text())
    assert proc.returncode == 128 + signal.SIGINT == 130
    assert stderr.splitlines() == [SIGINT_LINE]  # no traceback
    assert record["status"] == "interrupted" and record["interrupted"]["signal"] == "SIGINT"


def test_ctrl_c_inside_hydra_before_the_job_starts_is_one_line(tmp_path):
    (tmp_path / "stall_callback.py").write_text(STALL)
    marker = tmp_path / "started"
    proc = subprocess.Popen([sys.executable, str(ROOT / "launch.py"), "+hydra.callbacks.stall._target_=stall_callback.Stall",
                             f"+hydra.callbacks.stall.marker={marker}", f"paths.cache={tmp_path / 'cache'}"],
                            cwd=tmp_path, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_sigint_default)
    try:
        _wait_for(proc, marker.exists, "Hydra never called on_run_start")
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert stderr.splitlines() == [SIGINT_LINE]
    assert not (tmp_path / "outputs").exists() and not list(tmp_path.rglob("result.json"))  # no job ran


EVALUATE = ["+experiment=demo", "mix.weight=0", "stage=evaluate", "benchmark=[math500]", "eval.limit=6",
            "eval.batch_size=2", "eval.max_new_tokens=32", "tracking.backend=none"]


def _evaluate(tmp_path, kit, smollm2_path, name, *extra):
    """``launch.py`` evaluating the untuned SmolLM2 on 6 MATH500 problems into the store ``<name>/cache``, the
    session's converted weights linked in as the store's ``model`` artifact; returns the process and its store."""
    store = Store(tmp_path / name / "cache")
    if not (store.root / "model").exists():
        (store.root / "model").mkdir(parents=True)
        (store.root / "model" / Path(smollm2_path).name).symlink_to(smollm2_path)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "MIXGAP_DATA": str(kit),
           "PYTHONPATH": str(ROOT)}
    args = [sys.executable, str(ROOT / "launch.py"), *EVALUATE, *extra, f"paths.cache={store.root}",
            f"hydra.run.dir={tmp_path / name / 'run'}"]
    return subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True), store


@pytest.mark.slow
def test_a_kill_9_mid_evaluation_keeps_its_chunks_and_the_rerun_is_byte_identical(tmp_path, kit, smollm2_path):
    """SIGKILL (no handler runs) once the first chunk of 2 completions is written: the rerun generates only the
    samples not in a kept chunk, and completions.jsonl is byte for byte that of an uninterrupted run."""
    proc, store = _evaluate(tmp_path, kit, smollm2_path, "killed", "eval.chunk_size=2")
    try:
        _wait_for(proc, lambda: list((store.root / ".work").glob("completions-*/chunk-*.jsonl")), "no chunk", 600)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    kept = len(list((store.root / ".work").glob("completions-*/chunk-*.jsonl")))
    assert proc.returncode == -signal.SIGKILL and 1 <= kept < 3
    assert not list((store.root / "completions").glob("*/manifest.json"))  # nothing reads as finished
    rerun, _ = _evaluate(tmp_path, kit, smollm2_path, "killed", "eval.chunk_size=2")
    whole, other = _evaluate(tmp_path, kit, smollm2_path, "whole")
    for done in (rerun, whole):
        output, _ = done.communicate(timeout=900)
        assert done.returncode == 0, output[-3000:]
    counts = json.loads((tmp_path / "killed" / "run" / "result.json").read_text())["counts"]["completions.untuned"]
    assert counts == {"samples": 6, "generated": 6 - 2 * kept, "resumed": 2 * kept}
    [mine] = (store.root / "completions").glob("*/completions.jsonl")
    [theirs] = (other.root / "completions").glob("*/completions.jsonl")
    assert mine.parent.name == theirs.parent.name  # the chunk size is not in the key
    assert mine.read_bytes() == theirs.read_bytes()
