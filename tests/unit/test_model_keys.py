"""Keys cover what models are (mixgap.stages.models): a local folder by its files' content, hashed once per process and
file; a Hub model by the commit it resolves to (pinned, the Hub's, the cache's), loaded from that commit; an
unresolved one only at stage=plan, which says so; every other stage refuses it in one line naming the field."""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path
from types import SimpleNamespace

import huggingface_hub
import pytest

from conftest import compose_cfg, fake_commit
from mixgap.core import digests
from mixgap.core.errors import ConfigError
from mixgap.core.store import Store
from mixgap.pipeline import _log_plan
from mixgap.plan import jobs
from mixgap.stages import models
from mixgap.stages.generate import generation_spec
from mixgap.stages.judge import judge_spec


def model_folder(path: Path, weights: bytes = b"\x00" * 64) -> Path:
    """A model folder: config.json, tokenizer.json, model.safetensors (bytes only: nothing loads them here)."""
    path.mkdir(parents=True)
    (path / "config.json").write_text('{"model_type": "llama"}')
    (path / "tokenizer.json").write_text("{}")
    (path / "model.safetensors").write_bytes(weights)
    return path


def test_a_local_folder_is_keyed_by_its_files_not_its_path(tmp_path):
    folder = model_folder(tmp_path / "a")
    (folder / "checkpoint-2").mkdir()  # a sub-folder: not what from_pretrained reads, not hashed
    (folder / "checkpoint-2" / "optimizer.pt").write_bytes(b"x")
    (folder / ".cache").mkdir()
    student = compose_cfg("student=qwen0.5b", f"student.hf_id={folder}").student
    spec = models.student_spec(student)
    assert spec.fields == {"weights": {"files": {
        name: {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        for name, data in (("config.json", b'{"model_type": "llama"}'), ("model.safetensors", b"\x00" * 64),
                           ("tokenizer.json", b"{}"))}}, "chat_template": "model"}
    copy = tmp_path / "elsewhere" / "b"
    shutil.copytree(folder, copy)
    assert models.student_spec(compose_cfg("student=qwen0.5b", f"student.hf_id={copy}").student).key == spec.key
    with open(copy / "model.safetensors", "r+b") as fh:  # one byte, same size
        fh.seek(10)
        fh.write(b"\x01")
    assert models.student_spec(compose_cfg("student=qwen0.5b", f"student.hf_id={copy}").student).key != spec.key


def test_a_teacher_and_a_judge_folder_are_keyed_by_content_too(tmp_path, kit):
    a, b = model_folder(tmp_path / "a"), model_folder(tmp_path / "b", b"\x00" * 63 + b"\x01")
    cfg = compose_cfg("teacher=qwen3b", f"teacher.hf_id={a}", "+judge@eval.judge=qwen32b", f"eval.judge.hf_id={a}",
                      data=kit)
    gen, judged = generation_spec(cfg.teacher, cfg.problems, kit), judge_spec(cfg.eval.judge, "eval-x")
    assert "hf_id" not in gen.fields and set(gen.fields["weights"]) == {"files"}
    assert "hf_id" not in judged.fields and judged.fields["weights"] == gen.fields["weights"]
    cfg.teacher.hf_id, cfg.eval.judge.hf_id = str(b), str(b)
    assert generation_spec(cfg.teacher, cfg.problems, kit).key != gen.key
    assert judge_spec(cfg.eval.judge, "eval-x").key != judged.key


def test_the_digest_of_a_folders_file_is_computed_once_per_process(tmp_path, monkeypatch, kit):
    """Three files, two plans of two jobs, each planning the student's spec many times: three SHA-256 passes."""
    folder = model_folder(tmp_path / "m")
    read = []

    def counting_open(path, *args, **kwargs):  # every file digests.file_digest reads to hash
        read.append(Path(path).name) if Path(path).parent == folder else None
        return open(path, *args, **kwargs)

    monkeypatch.setattr(digests, "open", counting_open, raising=False)
    for weight in (0.0, 0.2):  # two jobs of a sweep, each planning the student's spec again
        jobs.make_plan(compose_cfg("+experiment=demo", "student=qwen0.5b", f"student.hf_id={folder}",
                                   f"mix.weight={weight}", data=kit))
        models.student_spec(compose_cfg("student=qwen0.5b", f"student.hf_id={folder}").student)
    assert sorted(read) == ["config.json", "model.safetensors", "tokenizer.json"]
    (folder / "model.safetensors").write_bytes(b"\x00" * 65)  # changed in place: a new size, hashed again
    models.student_spec(compose_cfg("student=qwen0.5b", f"student.hf_id={folder}").student)
    assert sorted(read) == ["config.json", "model.safetensors", "model.safetensors", "tokenizer.json"]


def test_a_revision_on_a_local_folder_is_one_line(tmp_path):
    folder = model_folder(tmp_path / "m")
    student = compose_cfg("student=qwen0.5b", f"student.hf_id={folder}", "student.revision=main").student
    with pytest.raises(ConfigError) as err:
        models.student_spec(student)
    assert str(err.value) == (f"student.revision='main' is not allowed: student.hf_id='{folder}' is a local folder "
                              "(keyed by its files' content); drop the revision or give a Hub id")


def test_a_hub_model_is_keyed_by_its_revision_pinned_online_or_cached(hub_cached, monkeypatch):
    student = compose_cfg("student=qwen0.5b").student
    cached = fake_commit("Qwen/Qwen2.5-0.5B-Instruct")
    assert models.student_spec(student).fields["weights"] == {"hub": "Qwen/Qwen2.5-0.5B-Instruct", "revision": cached}
    student.revision = "d" * 40  # a pinned commit needs neither the Hub nor the cache
    assert models.student_spec(student).fields["weights"]["revision"] == "d" * 40
    student.revision = None
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # online: the Hub's sha, once per process
    shas, asked = iter(["a" * 40, "b" * 40]), []

    def model_info(self, repo_id, revision=None, timeout=None):
        asked.append((repo_id, revision))
        return SimpleNamespace(sha=next(shas))

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", model_info)
    monkeypatch.setattr(models, "_REVISIONS", {})
    first = models.student_spec(student)
    assert first.fields["weights"]["revision"] == "a" * 40
    assert models.student_spec(student).key == first.key and asked == [("Qwen/Qwen2.5-0.5B-Instruct", None)]
    monkeypatch.setattr(models, "_REVISIONS", {})  # a new process after the repo changed on the Hub: a new key
    assert models.student_spec(student).key != first.key


def test_offline_and_uncached_only_the_plan_keys_it_unresolved_and_says_so(tmp_path, monkeypatch, caplog, kit):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    for module, memo in ((models, "_REVISIONS"), (jobs, "_CHECKED")):
        monkeypatch.setattr(module, memo, {})
    overrides = ["+experiment=demo", "student=qwen0.5b"]  # the kit's teachers: only the student is on the Hub
    plan = jobs.checked_plan(compose_cfg(*overrides, "stage=plan", data=kit))
    assert plan.specs["student"].fields["weights"] == {"hub": "Qwen/Qwen2.5-0.5B-Instruct", "revision": "unresolved"}
    assert plan.unresolved["checkpoint"] == ["student"] and "pool.strong" not in plan.unresolved
    with caplog.at_level(logging.INFO, logger="mixgap.pipeline"):
        _log_plan(plan.rows(Store(tmp_path / "cache")))
    lines = [r.getMessage() for r in caplog.records]
    assert any(line.startswith("  checkpoint ") and line.endswith("to build; revision unresolved: student.revision")
               for line in lines)
    assert lines[-1].startswith("keys above hold revision 'unresolved' for student (the Hub unreachable")
    with pytest.raises(ConfigError) as err:
        jobs.checked_plan(compose_cfg(*overrides, "stage=train", data=kit))
    assert str(err.value) == (
        "student.revision is needed: student.hf_id='Qwen/Qwen2.5-0.5B-Instruct' has no resolved revision "
        f"(HF_HUB_OFFLINE=1 and it is not in the Hugging Face cache {tmp_path / 'empty-cache'}); set "
        "student.revision=<commit>, or `hf download Qwen/Qwen2.5-0.5B-Instruct` where the Hub is reachable and copy "
        "the cache here")
    assert jobs.checked_plan(compose_cfg(*overrides, "stage=train", "student.revision=" + "e" * 40, data=kit))
    generate = jobs.checked_plan(compose_cfg(*overrides, "stage=generate", data=kit))  # the student is not used
    assert generate.unresolved == {}


def test_a_hub_model_is_loaded_from_the_snapshot_of_its_keyed_commit(tmp_path, monkeypatch, hub_cached):
    commit = fake_commit("Qwen/Qwen2.5-0.5B-Instruct")
    fetched = []

    def snapshot_download(repo_id, *, revision, allow_patterns, ignore_patterns, local_files_only):
        fetched.append((repo_id, revision, local_files_only, "*.bin" in allow_patterns))
        folder = hub_cached / "snap" / revision
        if not folder.is_dir():
            model_folder(folder)
        return str(folder)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    path = models.resolve_model(compose_cfg("student=qwen0.5b").student, Store(tmp_path / "cache"))
    assert path == str(hub_cached / "snap" / commit)
    assert fetched == [("Qwen/Qwen2.5-0.5B-Instruct", commit, True, False)]


def test_a_cached_snapshot_without_weights_is_one_line_not_a_load_error_later(tmp_path, monkeypatch, hub_cached):
    """The cache of a machine that only planned (config.json read at the keyed commit) has no weights to load."""
    folder = tmp_path / "snap"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo_id, **_: str(folder))
    with pytest.raises(models.ModelSourceError) as err:
        models.resolve_model(compose_cfg("student=qwen0.5b").student, Store(tmp_path / "cache"))
    assert str(err.value) == (f"qwen0.5b: cannot load 'Qwen/Qwen2.5-0.5B-Instruct' (the cached snapshot {folder} has "
                              "no weights); download it where the Hub is reachable (`hf download "
                              "Qwen/Qwen2.5-0.5B-Instruct`, then copy the Hugging Face cache here) or set hf_id to a "
                              "local folder")
