"""Keys of artifacts built from outside the store follow the content read: kit files (SHA-256), Hub datasets (their
revision), the GGUF file; reused artifacts report their build seconds; a damaged sibling record is read apart."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from types import SimpleNamespace

import huggingface_hub
import pytest
from huggingface_hub import constants

from conftest import compose_cfg
from mixgap.core import runrecord
from mixgap.core.store import ArtifactSpec, Store
from mixgap.results.sweep import job_results
from mixgap.stages import data, models
from mixgap.stages.completions import completions_spec
from mixgap.stages.generate import generation_spec

TRACES = "traces/short_cot_qwen2.5-14b-instruct_math500.jsonl"


def kit_copy(tmp_path: Path, kit: Path, name: str) -> Path:
    """A copy of the kit's short-CoT traces file in a new kit folder ``name``."""
    (tmp_path / name / "traces").mkdir(parents=True)
    shutil.copy(kit / TRACES, tmp_path / name / TRACES)
    return tmp_path / name


def write_rows(root: Path, relative: str, answers: list[str]) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"id": f"p{i}", "problem": f"Q{i}", "answer": a}) + "\n"
                            for i, a in enumerate(answers)))


def test_a_kit_copy_with_one_edited_trace_gives_a_new_generation_key(tmp_path, kit):
    kit_root = kit
    teacher = compose_cfg("teacher=kit_short_cot").teacher
    same, edited = kit_copy(tmp_path, kit_root, "same"), kit_copy(tmp_path, kit_root, "edited")
    lines = (edited / TRACES).read_text(encoding="utf-8").splitlines(keepends=True)
    row = json.loads(lines[3])
    row["response"] += " (edited)"
    (edited / TRACES).write_text("".join(lines[:3] + [json.dumps(row) + "\n"] + lines[4:]), encoding="utf-8")
    key = generation_spec(teacher, None, kit_root).key
    assert generation_spec(teacher, None, same).key == key  # the kit's location is not identity
    assert generation_spec(teacher, None, edited).key != key
    content = generation_spec(teacher, None, same).fields["content"]
    assert content == {"kit": TRACES, "sha256": hashlib.sha256((kit_root / TRACES).read_bytes()).hexdigest()}


def test_generation_and_evaluation_keys_follow_the_problems_file(tmp_path):
    cfg = compose_cfg("teacher=qwq32b", "benchmark=[math500]")
    write_rows(tmp_path / "a", "math/math_train.jsonl", ["1", "2", "3"])
    write_rows(tmp_path / "b", "math/math_train.jsonl", ["1", "2", "4"])  # one gold answer differs
    write_rows(tmp_path / "a", "math/math500_test.jsonl", ["5"])
    write_rows(tmp_path / "b", "math/math500_test.jsonl", ["6"])
    gen = {k: generation_spec(cfg.teacher, cfg.problems, tmp_path / k) for k in "ab"}
    assert gen["a"].key != gen["b"].key and gen["a"].fields["problems_source"] == "kit"
    ev = {k: completions_spec(cfg.benchmark.math500, cfg.eval, "model-x", None, tmp_path / k, "model") for k in "ab"}
    assert ev["a"].key != ev["b"].key
    assert ev["a"].fields["content"]["sha256"] == hashlib.sha256(
        (tmp_path / "a/math/math500_test.jsonl").read_bytes()).hexdigest()


@pytest.fixture()
def hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face hub cache, a fresh revision memo, and no Hub client that could reach the network."""
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(data, "_REVISIONS", {})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "hub"


def test_offline_the_hub_revision_is_the_local_snapshot_else_unresolved_with_a_warning(hub_cache, caplog):
    ref = hub_cache / "datasets--HuggingFaceH4--MATH-500" / "refs" / "main"
    ref.parent.mkdir(parents=True)
    ref.write_text("ff5b20257d8185524591543f8ff5993951537bb8")
    bench = compose_cfg("benchmark=[math500]").benchmark.math500
    assert data.source_digest(bench, None) == {"hub": "HuggingFaceH4/MATH-500",
                                               "revision": "ff5b20257d8185524591543f8ff5993951537bb8"}
    with caplog.at_level(logging.WARNING):
        assert data.hub_revision("no-such/dataset") == "unresolved"
    assert [r.getMessage() for r in caplog.records] == [
        "the revision of Hub dataset no-such/dataset is unresolved (not reachable, not in the local cache): "
        "its artifacts' keys do not follow a change of the data"]


def test_online_the_hub_revision_is_the_dataset_info_sha_and_a_new_revision_is_a_new_key(hub_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    shas = iter(["a" * 40, "b" * 40])
    monkeypatch.setattr(huggingface_hub.HfApi, "dataset_info",
                        lambda self, repo_id, timeout=None: SimpleNamespace(sha=next(shas)))
    cfg = compose_cfg("benchmark=[math500]")
    spec = lambda: completions_spec(cfg.benchmark.math500, cfg.eval, "model-x", None, None, "model")  # noqa: E731
    first = spec()
    assert first.fields["content"] == {"hub": "HuggingFaceH4/MATH-500", "revision": "a" * 40}
    assert spec().key == first.key  # once per process
    monkeypatch.setattr(data, "_REVISIONS", {})
    assert spec().key != first.key


def test_the_gguf_weights_key_follows_the_file_content(tmp_path, monkeypatch):
    gguf = compose_cfg("student=smollm2_135m").student.gguf
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF" + bytes(60))
    monkeypatch.setattr(models, "gguf_path", lambda _g: path)
    spec = models.gguf_spec(gguf)
    assert spec.fields["gguf_file"] == {"bytes": 64, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    path.write_bytes(b"GGUF" + bytes(59) + b"\x01")  # same size, one byte changed
    assert models.gguf_spec(gguf).key != spec.key


def test_reused_build_times_add_completions_generation_seconds(tmp_path):
    store = Store(tmp_path)
    ev, pool = ArtifactSpec("completions", {"b": 1}), ArtifactSpec("pool", {"p": 1})
    store.get_or_build(ev, lambda out, _w: {"generation_s": 120.25})
    store.get_or_build(pool, lambda out, _w: None)
    rows = [{"role": "completions.untuned.math500", "key": ev.key, "done": True},
            {"role": "pool.strong", "key": pool.key, "done": True}]
    walls = {r: store.manifest(s.key)["wall_s"] for r, s in (("completions.untuned.math500", ev), ("pool.strong", pool))}
    assert runrecord.reused_build_times(store, rows) == {
        "completions.untuned.math500": round(walls["completions.untuned.math500"] + 120.25, 3), "pool.strong": walls["pool.strong"]}


def test_a_damaged_sibling_result_is_read_apart_and_the_others_as_they_are(tmp_path, caplog):
    for name, text in (("0", json.dumps({"status": "done"})), ("1", '{"status": "do')):
        (tmp_path / name / ".hydra").mkdir(parents=True)
        (tmp_path / name / "result.json").write_text(text)
    with caplog.at_level(logging.WARNING):
        records = job_results(tmp_path)
    assert [(f.name, r["status"]) for f, r in records] == [("0", "done"), ("1", "unreadable")]
    assert records[1][1]["error"].startswith(f"{tmp_path / '1'}/result.json is not valid JSON (JSONDecodeError")
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path / '1'}/result.json cannot be read (JSONDecodeError); counted as unreadable"]
    assert json.loads((tmp_path / "0" / "result.json").read_text()) == {"status": "done"}


@pytest.mark.parametrize("pair", [("qwq32b", "qwen32b"), ("kit_long_cot", "kit_short_cot")])
def test_display_names_enter_no_key(pair, kit):
    """A model's display_name is what figures print: every artifact key of a job (generations, pools, mixture,
    predictions, checkpoint, evaluations, judge) is the same with the YAML's display names, none, or others."""
    from mixgap.plan import jobs

    base = (f"teacher@mix.strong={pair[0]}", f"teacher@mix.weak={pair[1]}", "student=smollm2_135m", "stage=all",
            "predict.enabled=true", "+judge@eval.judge=qwen32b", "finetune_mode.overlength=drop_pair")

    def keys(*names: str) -> dict[str, str]:
        cfg = compose_cfg(*base, *(f"{node}.display_name={name!r}" for node, name in
                                   zip(("mix.strong", "mix.weak", "student"), names, strict=True)), data=kit)
        return {role: spec.key for role, spec in jobs.job_specs(cfg).items()}

    shipped = compose_cfg(*base, data=kit)
    assert shipped.student.display_name == "SmolLM2-135M-Instruct"  # the YAMLs name them
    assert "" not in (shipped.mix.strong.display_name, shipped.mix.weak.display_name)
    default = keys("", "", "")
    assert {"generation.strong", "mixture", "predict.strong", "checkpoint", "eval.tuned.math", "judge.tuned.math"} <= set(default)
    assert keys("A strong", "A weak", "A student") == default
    assert {r: s.key for r, s in jobs.job_specs(shipped).items()} == default
