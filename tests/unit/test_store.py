"""The artifact store: keys, build-once, atomic finish, concurrent jobs, killed writers."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mixgap.core.files import write_json_atomic
from mixgap.core.store import MANIFEST, ArtifactSpec, Store, make_key


def test_key_is_stage_plus_hash_of_fields_and_inputs():
    key = make_key("pool", {"a": 1, "b": [1, 2]}, ["generation-00"])
    assert key.startswith("pool-") and len(key) == len("pool-") + 16
    assert key == make_key("pool", {"b": [1, 2], "a": 1}, ["generation-00"])  # key order is irrelevant
    assert key != make_key("pool", {"a": 2, "b": [1, 2]}, ["generation-00"])
    assert key != make_key("pool", {"a": 1, "b": [1, 2]}, ["generation-01"])
    assert key != make_key("mixture", {"a": 1, "b": [1, 2]}, ["generation-00"])


@pytest.mark.parametrize("stage", ["Pool", "pool-x", "", "pool1"])
def test_bad_stage_names_are_refused(stage):
    with pytest.raises(ValueError, match="stage="):
        make_key(stage, {})


def test_get_or_build_builds_once_and_writes_a_manifest(tmp_path):
    store, calls = Store(tmp_path), []

    def build(out: Path, work: Path) -> dict:
        calls.append(1)
        (out / "data.txt").write_text("x")
        return {"counts": {"rows": 1}}

    spec = ArtifactSpec("pool", {"teacher": "t"}, ("generation-1",))
    first = store.get_or_build(spec, build)
    second = store.get_or_build(spec, build)
    assert first == second == tmp_path / "pool" / spec.key
    assert len(calls) == 1
    manifest = store.manifest(spec.key)
    assert manifest["key"] == spec.key and manifest["inputs"] == ["generation-1"]
    assert manifest["config"] == {"teacher": "t"} and manifest["counts"] == {"rows": 1}
    assert "torch" in manifest["versions"] and manifest["wall_s"] >= 0
    assert not (tmp_path / ".work" / spec.key).exists()  # scratch removed once finished
    assert list((tmp_path / ".tmp").iterdir()) == []


def test_a_failing_build_leaves_nothing_finished_and_releases_the_lock(tmp_path):
    store = Store(tmp_path)
    spec = ArtifactSpec("pool", {"x": 1})

    def bad(out: Path, work: Path) -> dict:
        (out / "half.txt").write_text("half")
        (work / "shard-0.jsonl").write_text("{}\n")
        raise RuntimeError("teacher crashed")

    with pytest.raises(RuntimeError, match="teacher crashed"):
        store.get_or_build(spec, bad)
    assert not store.is_done(spec.key) and not store.path(spec.key).exists()
    assert (tmp_path / ".work" / spec.key / "shard-0.jsonl").is_file()  # resumable state survives
    with pytest.raises(FileNotFoundError, match=spec.key):
        store.manifest(spec.key)
    assert store.get_or_build(spec, lambda out, work: {"resumed": (work / "shard-0.jsonl").exists()})
    assert store.manifest(spec.key)["resumed"] is True


def _slow_build_worker(root: str, counter: str, barrier) -> None:
    def build(out: Path, work: Path) -> dict:
        with open(counter, "a") as fh:
            fh.write(f"{os.getpid()}\n")
        time.sleep(1.0)
        (out / "pool.jsonl").write_text("{}\n")
        return {}

    barrier.wait()
    Store(root).get_or_build(ArtifactSpec("pool", {"teacher": "shared"}), build)


def test_two_processes_asking_for_one_key_compute_it_once(tmp_path):
    counter = tmp_path / "builds.txt"
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_slow_build_worker, args=(str(tmp_path / "cache"), str(counter), barrier)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    assert len(counter.read_text().splitlines()) == 1
    assert Store(tmp_path / "cache").is_done(ArtifactSpec("pool", {"teacher": "shared"}).key)


_KILLED_WRITER = """
import sys, time
from pathlib import Path
from mixgap.core.store import ArtifactSpec, Store

def build(out, work):
    (out / "part.jsonl").write_text("{}\\n")
    print("writing", flush=True)
    time.sleep(60)

Store(sys.argv[1]).get_or_build(ArtifactSpec("mixture", {"w": 0.2}), build)
"""


def test_a_writer_killed_mid_write_leaves_nothing_that_reads_as_finished(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    store, spec = Store(tmp_path), ArtifactSpec("mixture", {"w": 0.2})
    assert not store.is_done(spec.key) and not store.path(spec.key).exists()
    assert len(list((tmp_path / ".tmp").iterdir())) == 1  # the half-written folder, never renamed
    store.get_or_build(spec, lambda out, work: (out / "mixture.jsonl").write_text("{}\n") and None)
    assert store.is_done(spec.key) and (store.path(spec.key) / "mixture.jsonl").is_file()
    assert list((tmp_path / ".tmp").iterdir()) == []  # the stale folder was cleaned under the lock


def test_wait_false_raises_while_another_process_builds(tmp_path):
    store, spec = Store(tmp_path), ArtifactSpec("pool", {"t": 1})
    with store.lock(spec.key), pytest.raises(TimeoutError):
        Store(tmp_path).get_or_build(spec, lambda out, work: {}, wait=False)


def test_write_json_atomic_replaces_whole_files(tmp_path):
    path = tmp_path / "sub" / "result.json"
    write_json_atomic(path, {"a": 1})
    write_json_atomic(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert [p.name for p in path.parent.iterdir()] == ["result.json"]
    assert MANIFEST == "manifest.json"
