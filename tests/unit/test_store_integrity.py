"""The store checks every reuse against the manifest's file records: cut, edited or missing files and a manifest that
is not JSON are set aside (one warning naming the file) and rebuilt."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from mixgap.core import digests
from mixgap.core.files import write_jsonl_atomic
from mixgap.core.store import MANIFEST, ArtifactSpec, Store, StoreError
from mixgap.stages.generate import SAMPLES, build_pool, pool_spec, read_pool

TEACHER = OmegaConf.create({"name": "tiny", "cot": "short"})
N_PROBLEMS = 6


def samples(n: int = N_PROBLEMS) -> list[dict]:
    """n problems ``p<i>`` with gold ``i + 2``, each answered correctly once (every one is kept in the pool)."""
    return [{"id": f"p{i}", "problem": f"What is {i} + 2?", "answer": str(i + 2), "sample_index": 0,
             "response": f"{i} + 2 = {i + 2}. The answer is \\boxed{{{i + 2}}}.", "finish_reason": "stop",
             "prompt_tokens": 9, "completion_tokens": 14, "status": "ok", "teacher": "tiny"} for i in range(n)]


def tiny_pool(store: Store) -> tuple:
    """A real generation and its pool built by the store; returns the pool's spec and a builder for it."""
    gen = store.get_or_build(ArtifactSpec("generation", {"t": "tiny"}),
                             lambda out, _w: write_jsonl_atomic(out / SAMPLES, samples()))
    spec = pool_spec(TEACHER, gen.name)
    calls = []

    def build(out: Path, _work: Path) -> dict:
        calls.append(1)
        return build_pool(gen, TEACHER, out)

    store.get_or_build(spec, build)
    assert len(read_pool(store.path(spec.key))) == N_PROBLEMS and calls == [1]
    return spec, build, calls


def writer(name: str, text: str):
    """A build writing one file ``name`` with ``text`` (no manifest extras)."""
    return lambda out, _work: (out / name).write_text(text) and None


def damage_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "is damaged" in r.getMessage()]


def test_the_manifest_records_each_file_size_digest_and_rows(tmp_path):
    store = Store(tmp_path)
    spec, _, _ = tiny_pool(store)
    pool = store.path(spec.key) / "pool.jsonl"
    record = store.manifest(spec.key)["files"]
    assert list(record) == ["pool.jsonl"]  # the manifest itself is not listed
    assert record["pool.jsonl"] == {"bytes": pool.stat().st_size, "rows": N_PROBLEMS,
                                    "sha256": hashlib.sha256(pool.read_bytes()).hexdigest()}


def test_a_pool_cut_at_a_line_boundary_is_caught_and_rebuilt_with_one_warning(tmp_path, caplog):
    store = Store(tmp_path)
    spec, build, calls = tiny_pool(store)
    pool = store.path(spec.key) / "pool.jsonl"
    pool.write_text("".join(pool.read_text().splitlines(keepends=True)[:2]))  # 2 of the 6 rows kept, valid JSONL
    with caplog.at_level(logging.WARNING):
        assert store.is_done(spec.key) is False
        again = store.get_or_build(spec, build)
    (warning,) = damage_warnings(caplog)
    assert f"artifact {spec.key} is damaged (pool.jsonl has 2 rows" in warning
    assert "the manifest records 6 rows" in warning and "\n" not in warning
    assert len(read_pool(again)) == N_PROBLEMS and calls == [1, 1]
    (aside,) = (tmp_path / ".damaged").iterdir()
    assert aside.name.startswith(f"{spec.key}.") and len(read_pool(aside)) == 2  # kept for a look


def test_a_manifest_cut_in_half_is_damage_not_a_traceback_and_the_artifact_is_rebuilt(tmp_path, caplog):
    store = Store(tmp_path)
    spec, build, calls = tiny_pool(store)
    manifest = store.path(spec.key) / MANIFEST
    text = manifest.read_text()
    manifest.write_text(text[: len(text) // 2])
    with caplog.at_level(logging.WARNING):
        assert store.is_done(spec.key) is False
    (warning,) = damage_warnings(caplog)
    assert "manifest.json is not valid JSON (JSONDecodeError" in warning
    store.get_or_build(spec, build)
    assert calls == [1, 1] and store.manifest(spec.key)["counts"]["kept"] == N_PROBLEMS


def test_manifest_of_a_damaged_artifact_is_one_line_naming_the_file(tmp_path):
    store = Store(tmp_path)
    spec = ArtifactSpec("eval", {"b": "math"})
    folder = store.get_or_build(spec, writer("scores.json", '{"accuracy": 41.5}'))
    (folder / "scores.json").write_text('{"accur')  # cut in half
    with pytest.raises(StoreError) as err:
        store.manifest(spec.key)
    assert str(err.value) == (f"artifact {folder} is damaged (scores.json is 7 bytes, the manifest records 18); "
                              "rerun the job to rebuild it")
    assert isinstance(err.value, ValueError) and not folder.exists()


def test_a_same_size_edit_is_caught_by_the_digest_and_only_by_it(tmp_path):
    spec = ArtifactSpec("eval", {"b": "math"})
    folder = Store(tmp_path).get_or_build(spec, writer("scores.json", '{"accuracy": 41.5}'))
    (folder / "scores.json").write_text('{"accuracy": 91.5}')
    assert Store(tmp_path, digests=False).is_done(spec.key) is True  # sizes only: the same 18 bytes
    assert Store(tmp_path).damage(spec.key).startswith("scores.json has SHA-256 ")
    assert Store(tmp_path).is_done(spec.key) is False and not folder.exists()


def test_a_missing_file_and_a_missing_manifest_are_damage(tmp_path):
    store = Store(tmp_path)
    a, b = ArtifactSpec("pool", {"a": 1}), ArtifactSpec("pool", {"a": 2})
    for spec in (a, b):
        store.get_or_build(spec, writer("pool.jsonl", '{"id": 1}\n'))
    (store.path(a.key) / "pool.jsonl").unlink()
    (store.path(b.key) / MANIFEST).unlink()
    assert store.damage(a.key) == "pool.jsonl is missing" and store.damage(b.key) == "manifest.json is missing"
    assert store.damage("pool-0000000000000000") is None  # never built: not damage
    rebuilt = store.get_or_build(b, writer("pool.jsonl", '{"id": 2}\n'))
    assert (rebuilt / "pool.jsonl").read_text() == '{"id": 2}\n'


def test_digests_are_cached_by_path_size_and_mtime(tmp_path, monkeypatch):
    path = tmp_path / "kit.jsonl"
    path.write_text('{"id": 1}\n{"id": 2}\n')
    digests.forget()
    assert digests.file_digest(path) == (hashlib.sha256(path.read_bytes()).hexdigest(), 2)
    reads = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda *a, **k: reads.append(a[0]) or real_open(*a, **k))
    digests.file_digest(path)
    assert reads == []  # served from the cache
    path.write_text('{"id": 3}\n')  # a new size: hashed again
    assert digests.file_digest(path)[1] == 1 and reads == [path]


def test_a_damaged_artifact_that_cannot_be_set_aside_is_refused_in_one_line(tmp_path, monkeypatch):
    store = Store(tmp_path)
    spec = ArtifactSpec("pool", {"a": 1})
    folder = store.get_or_build(spec, writer("pool.jsonl", '{"id": 1}\n'))
    (folder / "pool.jsonl").write_text("")

    def refuse(src, dst):
        raise PermissionError(13, "read-only store")

    monkeypatch.setattr("mixgap.core.store.os.rename", refuse)
    with pytest.raises(StoreError) as err:
        store.is_done(spec.key)
    assert str(err.value) == (f"artifact {folder} is damaged (pool.jsonl has 0 rows (0 bytes), the manifest records "
                              "1 rows (10 bytes)) and cannot be set aside (PermissionError); remove that folder so "
                              "that it is rebuilt")
    assert json.loads((folder / MANIFEST).read_text())["key"] == spec.key  # left as it was


def test_a_manifest_whose_files_are_no_record_a_file_in_place_of_the_folder_are_damage(tmp_path, caplog):
    store = Store(tmp_path)
    a, b = ArtifactSpec("pool", {"a": 1}), ArtifactSpec("pool", {"a": 2})
    for spec in (a, b):
        store.get_or_build(spec, writer("pool.jsonl", '{"id": 1}\n'))
    manifest = json.loads((store.path(a.key) / MANIFEST).read_text())
    (store.path(a.key) / MANIFEST).write_text(json.dumps({**manifest, "files": "oops"}))
    assert store.damage(a.key) == "manifest.json's files is not a record of the artifact's files (path -> bytes, sha256)"
    folder = store.path(b.key)
    (folder / "pool.jsonl").unlink()
    (folder / MANIFEST).unlink()
    folder.rmdir()
    folder.write_text("not a folder")
    assert store.damage(b.key) == "it is a file, not an artifact folder"
    with caplog.at_level(logging.WARNING):
        for spec in (a, b):
            rebuilt = store.get_or_build(spec, writer("pool.jsonl", '{"id": 3}\n'))
            assert rebuilt.is_dir() and (rebuilt / "pool.jsonl").read_text() == '{"id": 3}\n'
    assert len(damage_warnings(caplog)) == 2
    assert len(list((tmp_path / ".damaged").iterdir())) == 2


def test_a_damaged_folder_that_is_a_file_is_refused_in_one_line(tmp_path):
    store = Store(tmp_path)
    spec = ArtifactSpec("pool", {"a": 1})
    folder = store.get_or_build(spec, writer("pool.jsonl", '{"id": 1}\n'))
    (folder / "pool.jsonl").write_text("")
    (tmp_path / ".damaged").write_text("in the way")
    with pytest.raises(StoreError) as err:
        store.is_done(spec.key)
    assert str(err.value).startswith(f"artifact {folder} is damaged (pool.jsonl has 0 rows") and "\n" not in str(err.value)
