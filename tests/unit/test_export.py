"""stage=export (mixgap.stages.export): a pool built in the test, written as a dataset folder that
``datasets.load_dataset`` reads, with its provenance card, and imported back as a teacher with the same rows."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
import yaml

from conftest import compose_cfg
from mixgap.core.config import validate
from mixgap.core.errors import ConfigError
from mixgap.pipeline import run_job
from mixgap.plan.jobs import make_plan
from mixgap.stages import export
from mixgap.stages.generate import read_pool

#: 4 problems, 3 answered correctly: the pool keeps 3 of 4 (keep-rate 0.75)
TRACES = [
    {"id": "p1", "problem": "What is 1+1?", "answer": "2", "response": "1+1=2. Final Answer: \\boxed{2}"},
    {"id": "p2", "problem": "What is 2+3?", "answer": "5", "response": "Wait, 2+3=5. Final Answer: \\boxed{5}"},
    {"id": "p3", "problem": "What is 6*7?", "answer": "42", "response": "6*7=41. Final Answer: \\boxed{41}"},
    {"id": "p4", "problem": "What is 9-4?", "answer": "5", "response": "9-4=5. Final Answer: \\boxed{5}"},
]


def _cfg(tmp_path: Path, strong: Path, *extra: str):
    weak = tmp_path / "weak.jsonl"
    weak.write_text("".join(json.dumps(r) + "\n" for r in TRACES[:2]))
    return compose_cfg("stage=export", "teacher@mix.strong=kit_long_cot", "teacher@mix.weak=kit_short_cot",
                       f"mix.strong.dataset.path={strong}", f"mix.weak.dataset.path={weak}", "benchmark=[aime24]",
                       f"paths.cache={tmp_path / 'cache'}", "tracking.backend=none", *extra)


def _pool_rows(tmp_path: Path, cfg) -> list[dict]:
    key = make_plan(cfg).key("pool.strong")
    return read_pool(tmp_path / "cache" / "pool" / key)


def test_pool_exports_to_a_dataset_folder_and_imports_back(tmp_path):
    traces = tmp_path / "traces.jsonl"
    traces.write_text("".join(json.dumps(r) + "\n" for r in TRACES))
    out = tmp_path / "exported"
    cfg = _cfg(tmp_path, traces, "export.artifact=pool.strong", f"export.out={out}")
    result = run_job(cfg, tmp_path / "job")
    assert result["status"] == "done" and result["export"]["rows"] == 3
    assert [s.name for s in make_plan(cfg).steps] == ["generate.strong", "export"]
    loaded = datasets.load_dataset(str(out))["train"]
    pool = _pool_rows(tmp_path, cfg)
    assert loaded.num_rows == 3 and loaded.to_list() == pool and [r["id"] for r in pool] == ["p1", "p2", "p4"]

    card = (out / "README.md").read_text()
    header = yaml.safe_load(card.split("---")[1])
    teacher = header["mixgap"]["teachers"]["strong"]
    assert header["license"] == "other" and "teacher model's license governs" in card
    assert (teacher["name"], teacher["keep_rate"], teacher["kept"], teacher["tried"]) == ("kit_long_cot", 0.75, 3, 4)
    assert header["mixgap"]["store_key"] == result["artifacts"]["pool.strong"]
    assert "keep-rate 75.0%" in card and "## Teacher (strong): kit_long_cot" in card

    again = tmp_path / "again"  # the export as the teacher's dataset: the same pool rows
    back = _cfg(tmp_path, out, "export.artifact=pool.strong", f"export.out={again}")
    run_job(back, tmp_path / "job2")
    assert make_plan(back).key("pool.strong") != make_plan(cfg).key("pool.strong")
    assert _pool_rows(tmp_path, back) == pool

    run_job(cfg, tmp_path / "job3")  # a previous export is replaced
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not a mixgap export"):
        run_job(_cfg(tmp_path, traces, f"export.out={tmp_path / 'busy'}"), tmp_path / "job4")


def test_mixture_card_carries_weight_and_realised_weight(tmp_path):
    traces = tmp_path / "traces.jsonl"
    traces.write_text("".join(json.dumps(r) + "\n" for r in TRACES))
    out = tmp_path / "mixture"
    run_job(_cfg(tmp_path, traces, "export.artifact=mixture", f"export.out={out}", "mix.weight=1"), tmp_path / "job")
    header = yaml.safe_load((out / "README.md").read_text().split("---")[1])
    mix = header["mixgap"]["mix"]
    # strong keeps p1, p2, p4, weak p1, p2: the intersection p1, p2, all from the strong teacher at w = 1
    assert (mix["weight"], mix["rows"], mix["realised_weight"]) == (1.0, 2, 1.0)
    assert set(header["mixgap"]["teachers"]) == {"strong", "weak"}
    assert datasets.load_dataset(str(out))["train"].num_rows == 2


@pytest.mark.parametrize(("override", "message"), [
    ("export.artifact=checkpoint", "export.artifact='checkpoint' is not allowed"),
    ("export.artifact=eval.tuned", "export.artifact='eval.tuned' is not allowed"),
    ("export.out=null", "export.out=None is not allowed with stage=export"),
])
def test_bad_export_settings_are_one_line_errors(tmp_path, override, message):
    (tmp_path / "t.jsonl").write_text("")  # a teacher file must exist (checked before any work)
    cfg = _cfg(tmp_path, tmp_path / "t.jsonl", "export.out=x", override)
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        validate(cfg)


def test_a_push_without_the_hub_is_refused_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "t.jsonl").write_text("")
    cfg = _cfg(tmp_path, tmp_path / "t.jsonl", "export.out=x", "export.repo_id=me/pool")
    with pytest.raises(ConfigError, match="HF_HUB_OFFLINE is set") as err:
        run_job(cfg, tmp_path / "job")
    assert "\n" not in str(err.value) and not (tmp_path / "cache").exists()


def test_builds_names_what_each_artifact_needs():
    assert export.builds("pool.weak") == ("generation.weak", "pool.weak")
    assert export.builds("eval.tuned.aime24")[-3:] == ("checkpoint", "completions.tuned.aime24", "eval.tuned.aime24")
    assert "checkpoint" not in export.builds("eval.untuned.aime24")
    assert export.shard_names(120_001) == [f"data/train-0000{i}-of-00003.parquet" for i in range(3)]
