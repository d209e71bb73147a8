"""Waiting for another job's lock is logged with its owner and a heartbeat, and counted apart; a cached rerun
keeps the build time of what it reused."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time

from conftest import ROOT
from mixgap import pipeline
from mixgap.core import runrecord
from mixgap.core.store import ArtifactSpec, Store

HOLDER = """
import sys, time
from mixgap.core.store import Store
store = Store(sys.argv[1])
with store.holding(sys.argv[2]):
    print("held", flush=True)
    time.sleep(float(sys.argv[3]))
"""


def test_a_wait_names_the_owner_keeps_a_heartbeat_and_is_counted_apart(tmp_path, caplog):
    store = Store(tmp_path)
    store.heartbeat_s = 0.3
    spec = ArtifactSpec("mixture", {"w": 0.2})
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path), spec.key, "1.5"], stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert holder.stdout.readline().strip() == "held"
    assert store.owner(spec.key)["pid"] == holder.pid
    timings: dict[str, float] = {}
    caplog.set_level(logging.WARNING, logger="mixgap.core.store")
    with pipeline.timed(timings, "mix", store):
        store.get_or_build(spec, lambda out, work: (out / "x").write_text("1") and None)
    holder.wait(timeout=30)
    host = socket.gethostname()
    assert f"waiting for {spec.key} being built by pid {holder.pid} on host {host}" in caplog.text
    assert f"still waiting for {spec.key} being built by pid {holder.pid} on host {host}" in caplog.text
    assert 0.8 < timings["wait.mix"] < 10 and timings["mix"] < timings["wait.mix"]
    assert store.wait_s == timings["wait.mix"] or abs(store.wait_s - timings["wait.mix"]) < 1e-2
    assert not (tmp_path / ".locks" / f"{spec.key}.owner.json").exists()  # the sidecar goes with the lock


def test_timed_without_waits_has_no_wait_key(tmp_path):
    timings: dict[str, float] = {}
    store = Store(tmp_path)
    with pipeline.timed(timings, "train", store):
        time.sleep(0.05)
    assert list(timings) == ["train"] and timings["train"] >= 0.05


def test_a_cached_rerun_keeps_the_build_time_of_every_reused_artifact(tmp_path):
    store = Store(tmp_path)
    spec = ArtifactSpec("checkpoint", {"steps": 4})

    def build(out, work):
        time.sleep(0.2)

    store.get_or_build(spec, build)
    built = json.loads((store.path(spec.key) / "manifest.json").read_text())["wall_s"]
    rows = [{"role": "checkpoint", "key": spec.key, "done": True},
            {"role": "eval.tuned.math", "key": "eval-0000000000000000", "done": False}]
    assert built >= 0.2 and runrecord.reused_build_times(store, rows) == {"checkpoint": built}
