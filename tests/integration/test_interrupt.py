"""SIGTERM during real training (issue 13, item 3): the job is recorded as interrupted, never done, and exits
non-zero; the report of its sweep does not count it. SmolLM2-135M on the kit's traces, a few steps."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT
from mixgap.core.store import Store

pytestmark = pytest.mark.slow
RUN = ["+experiment=demo", "mix.weight=0", "stage=train", "finetune_mode.max_steps=40", "finetune_mode.save_steps=1",
       "finetune_mode.max_seq_len=768", "tracking.backend=none"]


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
