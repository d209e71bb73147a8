"""A benchmark and a teacher's traces from a researcher's own files: ``path`` (absolute or relative to the folder
launch.py runs in) beside ``kit_path`` (under MIXGAP_DATA), read through the YAML's ``fields``; keyed by content."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil

import pytest

from conftest import compose_cfg
from mixgap.core.config import check_sources, validate
from mixgap.core.errors import ConfigError
from mixgap.stages import data
from mixgap.stages.backends.dataset import DatasetImport
from mixgap.stages.completions import completions_spec
from mixgap.stages.data import DataError
from mixgap.stages.generate import generation_spec

ROWS = [{"question": "What is 2+3?", "answer": "5"}, {"question": "What is 7*6?", "answer": "42"}]
FIELDS = ("fields.id=null", "fields.problem=question", "fields.answer=answer", "fields.solution=null")


def write(path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def bench(*overrides: str, data_root=None):
    """``benchmark.math500`` turned into a benchmark of one's own file (no hub_id)."""
    cfg = compose_cfg("benchmark=[math500]", "benchmark.math500.hub_id=null", "benchmark.math500.kit_path=null",
                      *(f"benchmark.math500.{o}" for o in overrides), data=data_root)
    return cfg, cfg.benchmark.math500


def test_a_question_answer_file_by_path_is_read_through_its_field_map(tmp_path, caplog):
    write(tmp_path / "mine.jsonl", ROWS)
    _, source = bench(f"path={tmp_path / 'mine.jsonl'}", *FIELDS)
    assert data.source_kind(source, None) == "file"
    with caplog.at_level(logging.INFO, logger="mixgap.stages.data"):
        problems = data.load_source(source, None)
    assert [(p.id, p.problem, p.answer) for p in problems] == [("math500-0", "What is 2+3?", "5"),
                                                               ("math500-1", "What is 7*6?", "42")]
    assert "math500: fields.id is null: its problems are numbered by row, math500-0 to math500-1" in caplog.messages


def test_a_relative_path_is_read_from_the_folder_launch_runs_in(tmp_path, monkeypatch, kit):
    write(tmp_path / "data" / "mine.jsonl", ROWS)
    monkeypatch.chdir(tmp_path)
    cfg, source = bench("path=data/mine.jsonl", *FIELDS, data_root=kit)
    check_sources(cfg)  # MIXGAP_DATA set: the path still wins over the kit
    assert data.source_kind(source, kit) == "file" and len(data.load_source(source, kit)) == 2


def test_a_kit_file_in_another_layout_is_read_through_the_field_map_too(tmp_path):
    write(tmp_path / "kit" / "eval" / "mine.jsonl", ROWS)
    _, source = bench("kit_path=eval/mine.jsonl", *FIELDS)
    problems = data.load_source(source, tmp_path / "kit")
    assert [(p.id, p.answer) for p in problems] == [("math500-0", "5"), ("math500-1", "42")]
    assert data.in_kit_layout([{"id": "a", "problem": "b", "answer": "c"}]) and not data.in_kit_layout(ROWS)


def test_a_field_the_rows_lack_is_one_line_naming_the_file_the_field_and_the_fields_present(tmp_path):
    write(tmp_path / "mine.jsonl", ROWS)
    _, source = bench(f"path={tmp_path / 'mine.jsonl'}", "fields.id=null", "fields.answer=answer")
    with pytest.raises(DataError) as err:
        data.load_source(source, None)
    assert str(err.value) == (f"{tmp_path / 'mine.jsonl'}: row 0 has no field 'problem' (fields.problem of math500); "
                              "its fields: answer, question")
    _, source = bench(f"path={tmp_path / 'mine.jsonl'}", "fields.problem=question", "fields.answer=answer")
    with pytest.raises(DataError) as err:
        data.load_source(source, None)
    assert str(err.value).endswith("row 0 has no field 'unique_id' (fields.id of math500); its fields: answer, question; "
                                   "set fields.id: null to number the rows")


def test_the_key_follows_the_files_content_not_where_it_lies(tmp_path):
    write(tmp_path / "a" / "mine.jsonl", ROWS)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    write(tmp_path / "c" / "mine.jsonl", [ROWS[0], {**ROWS[1], "answer": "41"}])
    keys = {}
    for name in "abc":
        cfg, source = bench(f"path={tmp_path / name / 'mine.jsonl'}", *FIELDS)
        spec = completions_spec(source, cfg.eval, "model-x", None, None, "model")
        keys[name] = spec.key
    assert keys["a"] == keys["b"] != keys["c"]
    assert "path" not in spec.fields["benchmark"] and spec.fields["source"] == "file"
    assert spec.fields["content"] == {"file": "mine.jsonl",
                                      "sha256": hashlib.sha256((tmp_path / "c" / "mine.jsonl").read_bytes()).hexdigest()}


@pytest.mark.parametrize(("overrides", "message"), [
    (("path=/no/such/mine.jsonl",), "benchmark.math500.path='/no/such/mine.jsonl' is not allowed: /no/such/mine.jsonl "
                                    "does not exist (a relative path is read from the folder launch.py runs in, "),
    ((), "benchmark.math500 has no source to read (none given); give benchmark.math500.path (a local JSONL or Parquet "
         "file), benchmark.math500.kit_path (a file of MIXGAP_DATA) or benchmark.math500.hub_id (a Hugging Face dataset)"),
])
def test_a_benchmark_without_a_readable_source_is_refused_in_one_line(overrides, message, kit):
    cfg, _ = bench(*overrides, data_root=kit)
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_a_teachers_traces_from_a_local_file_are_imported_through_their_field_map(tmp_path, monkeypatch):
    write(tmp_path / "traces.jsonl", [{"q": "What is 2+3?", "gold": "5", "key": "a", "out": "\\boxed{5}"}])
    monkeypatch.chdir(tmp_path)
    teacher = compose_cfg("teacher=kit_short_cot", "teacher.dataset.path=traces.jsonl", "teacher.dataset.kit_path=null",
                          "teacher.dataset.fields.id=key", "teacher.dataset.fields.problem=q",
                          "teacher.dataset.fields.answer=gold", "teacher.dataset.fields.response=out").teacher
    rows, counts = DatasetImport.import_samples(teacher, None, None)
    assert [(r["id"], r["answer"], r["response"]) for r in rows] == [("a", "5", "\\boxed{5}")] and counts["rows"] == 1
    spec = generation_spec(teacher, None, None)
    assert spec.fields["source"] == "file" and spec.fields["dataset"]["path"] is None
    assert spec.fields["content"]["file"] == "traces.jsonl"
    broken = compose_cfg("teacher=kit_short_cot", "teacher.dataset.path=traces.jsonl").teacher  # fields: id, problem ...
    with pytest.raises(DataError) as err:
        DatasetImport.import_samples(broken, None, None)
    assert str(err.value) == (f"teacher kit_short_cot: {tmp_path / 'traces.jsonl'}: row 0 has no field 'problem' "
                              "(dataset.fields.problem); its fields: gold, key, out, q")
