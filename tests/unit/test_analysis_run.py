"""Stage ``analyze`` end to end on a synthetic sweep (tests/fixtures/analysis_sweep.json), with a fake student.

The fake student is word-level: its tokenizer splits on whitespace, and its next-token logits are the same
at every position: 0 for every word except ``Wait`` (-1) and ``But`` (-0.5). So with V = 4096 ids, every
word is unshifted (rank 1, ties in its favour) except ``Wait`` (rank 4096: all others are larger) and ``But``
(rank 4095). Hand counts, with analyze.max_completions=3 (round robin: A, X, B):

- qwen0.5b: untuned 7+3+3 = 13 positions, none shifted; w=0 10+1+3 = 14, none; w=0.2 10+2+5 = 17, 2 ``But``;
  w=1 seed=42 13+4+7 = 24, 4 ``Wait`` + 1 ``But``; w=1 seed=43 3+2+3 = 8, 1 ``But``.
- qwen3b: untuned 2+1+1 = 4, none; w=1 (job 6) 3+1+3 = 7, 1 ``Wait``; w=1 with mix.seed=1 (job 7; same weight
  and seed, so both are also named by their job folder) 1+1+1 = 3, none.
- case study, qwen0.5b: the fine-tuned arms disagree on A, B, C (MATH500) and X (AIME24); Y agrees -> A, X, B, C.
  qwen3b's two fine-tuned arms disagree on B only.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from conftest import FIXTURES, RecordingTracker, compose_cfg
from mixgap.core.errors import ConfigError
from mixgap.core.files import write_json_atomic
from mixgap.core.runrecord import job_identity
from mixgap.core.store import Store
from mixgap.core.tracking import NullTracker
from mixgap.pipeline import run_job
from mixgap.results import analysis

BENCH_OF = {"A": "math500", "B": "math500", "C": "math500", "X": "aime24", "Y": "aime24"}
V = 4096


def no_tracker(out):
    """No tracker run."""
    return NullTracker()


class WordTokenizer:
    pad_token_id = 0

    def __init__(self):
        self.vocab = {"<pad>": 0, "Wait": 1, "But": 2}

    def _id(self, word):
        return self.vocab.setdefault(word, len(self.vocab))

    def apply_chat_template(self, messages, tokenize, add_generation_prompt, chat_template=None):
        assert (tokenize, add_generation_prompt, chat_template) == (False, True, None)
        return f"<user> {messages[0]['content']} <assistant>"

    def __call__(self, text, add_special_tokens):
        return {"input_ids": [self._id(w) for w in text.split()]}

    def decode(self, ids):
        names = {i: w for w, i in self.vocab.items()}
        return " ".join(names[i] for i in ids)


class NeverWaits(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.head = torch.nn.Linear(1, V, bias=False)
        self.head.weight.data.zero_()
        self.head.weight.data[1, 0], self.head.weight.data[2, 0] = -1.0, -0.5

        class Body(torch.nn.Module):
            def forward(self, input_ids, attention_mask):
                return SimpleNamespace(last_hidden_state=torch.ones(*input_ids.shape, 1))

        self.base_model = Body()

    def get_output_embeddings(self):
        return self.head


def build_sweep(root: Path) -> Path:
    spec = json.loads((FIXTURES / "analysis_sweep.json").read_text())
    store = Store(root / "cache")
    for stem, rows in spec["evals"].items():
        for bench in ("math500", "aime24"):
            folder = store.path(f"eval-{stem}_{bench}")
            folder.mkdir(parents=True)
            lines = [json.dumps({"id": spec["ids"][k], "gold": "g", "completion": text, "extracted": None,
                                 "correct": ok, "reason": "wrong_answer" if not ok else "equivalent",
                                 "finish_reason": "stop" if text else "prompt_too_long",
                                 "completion_tokens": len(text.split())}) + "\n"
                     for k, (ok, text) in rows.items() if BENCH_OF[k] == bench]
            (folder / "predictions.jsonl").write_text("".join(lines))
            write_json_atomic(folder / "manifest.json", {"key": folder.name})
    sweep = root / "multirun" / "sweep"
    for num, job in enumerate(spec["jobs"]):
        cfg = compose_cfg(*job["overrides"], "benchmark=[math500,aime24]", "tracking.backend=none")
        folder = sweep / str(num)
        (folder / ".hydra").mkdir(parents=True)
        OmegaConf.save(cfg, folder / ".hydra" / "config.yaml")
        artifacts = {f"eval.{arm}.{b}": f"eval-{job[arm]}_{b}" for arm in ("tuned", "untuned") if arm in job
                     for b in ("math500", "aime24")}
        write_json_atomic(folder / "result.json", {"status": job["status"], "job": job_identity(cfg),
                                                   "store": str(store.root), "artifacts": artifacts})
    return sweep


@pytest.fixture(scope="module")
def made(tmp_path_factory, kit):
    root = tmp_path_factory.mktemp("analysis")
    sweep = build_sweep(root)
    tracker, tokenizer = RecordingTracker(), WordTokenizer()
    mp = pytest.MonkeyPatch()
    mp.setattr("mixgap.stages.models.hub_snapshot", lambda name, hf_id, revision: hf_id)  # the student below is a fake
    mp.setattr("mixgap.stages.scoring.load_student", lambda path: (NeverWaits(), tokenizer))
    mp.setattr("mixgap.core.tracking.make_tracker", lambda *a, **k: tracker)
    cfg = compose_cfg("stage=analyze", f"analyze.sweep={sweep}", "analyze.max_completions=3",
                      f"paths.cache={root / 'cache'}", "tracking.backend=none", data=kit)
    stdout = io.StringIO()
    try:
        with contextlib.redirect_stdout(stdout):
            result = run_job(cfg, root / "job")
    finally:
        mp.undo()  # never leak the fake tracker into later tests
    return {"result": result, "tracker": tracker, "stdout": stdout.getvalue(), "sweep": sweep}


def _csv(path):
    return list(csv.DictReader(open(path, encoding="utf-8")))


def test_shares_per_arm_hand_counted(made):
    rows = {(r["cell"].split(",")[0], r["arm"]): r for r in _csv(made["result"]["shares_csv"])}
    expected = {("qwen0.5b", "untuned"): (13, 0), ("qwen0.5b", "w=0"): (14, 0), ("qwen0.5b", "w=0.2"): (17, 2),
                ("qwen0.5b", "w=1 seed=42"): (24, 5), ("qwen0.5b", "w=1 seed=43"): (8, 1),
                ("qwen3b", "untuned"): (4, 0), ("qwen3b", "w=1 seed=42 [sweep/6]"): (7, 1), ("qwen3b", "w=1 seed=42 [sweep/7]"): (3, 0)}
    assert set(rows) == set(expected)  # the rerun of w=1 seed=42 (same keys) counts once; the failed job not at all
    for key, (positions, shifted) in expected.items():
        row = rows[key]
        assert (int(row["positions"]), int(row["completions"])) == (positions, 3), key
        assert float(row["shifted"]) == pytest.approx(shifted / positions, abs=1e-6), key
        assert float(row["marginal"]) == 0.0
        assert float(row["unshifted"]) == pytest.approx(1 - shifted / positions, abs=1e-6)
    assert made["result"]["skipped"] and all("status 'failed'" in s for s in made["result"]["skipped"])


def test_top_tokens_and_side_by_side(made):
    top = [r for r in _csv(made["result"]["top_tokens_csv"]) if r["arm"] == "w=1 seed=42"]
    assert [(r["token"], r["shifted"], r["occurrences"], r["mean_shifted_rank"]) for r in top] == [
        ("Wait", "4", "4", "4096.0"), ("But", "1", "1", "4095.0")]
    assert float(top[0]["shifted_per_1k"]) == pytest.approx(1000 * 4 / 24, abs=1e-3)
    side = [r for r in _csv(made["result"]["side_by_side_csv"]) if r["cell"].startswith("qwen0.5b")]
    assert [r["token"] for r in side] == ["Wait", "But"]  # best rates: 4/24 (w=1 seed=42) vs 1/8 (w=1 seed=43)
    wait, but = side
    assert (wait["w=0 shifted"], wait["w=1 seed=42 shifted"], wait["w=1 seed=42 place"]) == ("0", "4", "1")
    assert (but["w=0.2 shifted"], but["w=0.2 place"], but["w=1 seed=43 mean shifted rank"]) == ("2", "1", "4095.0")
    assert but["w=0 place"] == ""


def test_case_study_picks_disagreements_in_round_robin(made):
    text = Path(made["result"]["case_study"]).read_text(encoding="utf-8")
    small, large = text.split("## qwen3b")
    heads = [line for line in small.splitlines() if line.startswith("### ")]
    assert heads == ["### math500 · `test/precalculus/807.json`", "### aime24 · `aime24-60`",
                     "### math500 · `test/intermediate_algebra/1994.json`", "### math500 · `test/algebra/2584.json`"]
    assert "4 problems where the fine-tuned arms disagree; showing 4." in small
    assert "| | untuned | w=0 | w=0.2 | w=1 seed=42 | w=1 seed=43 |" in small
    assert "| “Wait” | 0 | 0 | 0 | 2 | 0 |" in small  # problem A
    assert "Convert the point $(0,3)$" in small  # the problem text comes from the kit
    assert "1 problem where the fine-tuned arms disagree; showing 1." in large
    assert "| | untuned | w=1 seed=42 [sweep/6] | w=1 seed=42 [sweep/7] |" in large
    assert [line for line in large.splitlines() if line.startswith("### ")] == [
        "### math500 · `test/intermediate_algebra/1994.json`"]


def test_outputs_open_and_tracker_gets_tables(made):
    result, tracker = made["result"], made["tracker"]
    assert Path(result["out"]) == made["sweep"] / "analysis"
    from PIL import Image

    for fig in result["figures"]:
        with Image.open(fig) as image:
            assert image.format == "PNG" and image.size[0] > 500
    assert len(result["figures"]) == 2
    summary = Path(result["markdown"]).read_text(encoding="utf-8")
    assert "| `Wait` | 0 | 0 | 0 | 4 (166.7; 4096) | 0 |" in summary
    columns, rows = tracker.tables["rank_shift/shares"]
    assert len(rows) == 8 and columns[:3] == ["cell", "arm", "kind"]
    assert tracker.values["shifted/qwen3b, qwq32b/qwen32b, full/w=1 seed=42 [sweep/6]"] == pytest.approx(1 / 7, abs=1e-6)
    assert tracker.finished == 0 and len(tracker.images) == 2
    assert "w=1 seed=42 | 3 | 24 | 100.0" not in made["stdout"] and "| 24 | 79.2 | 0.0 | 20.8 |" in made["stdout"]


def test_chosen_problems_and_missing_ids(made):
    cells, _ = analysis.read_cells([str(made["sweep"])], Store(made["sweep"]))
    problems = {"math500": {}, "aime24": {}}
    note, cases = analysis.case_cell(cells[0], problems, ["aime24-61", "nope"])
    assert [(c.benchmark, c.id) for c in cases] == [("aime24", "aime24-61")]
    assert note == "Problems chosen by `analyze.problems`. Not answered by every arm: nope."
    assert cases[0].rows["w=0.2"]["completion"] == "" and cases[0].problem == "(problem text not found)"


@pytest.mark.parametrize(("ids", "cap", "expected"), [
    ({"a": ["1", "2", "3"], "b": ["x"]}, 3, [("a", "1"), ("b", "x"), ("a", "2")]),
    ({"a": ["1"], "b": []}, 5, [("a", "1")]),
    ({}, 2, []),
])
def test_pick_completions_round_robin(ids, cap, expected):
    assert analysis.pick_completions(ids, cap) == expected


def test_bad_cap_and_empty_sweep_raise(tmp_path):
    with pytest.raises(ValueError, match="analyze.max_completions=0"):
        analysis.pick_completions({"a": ["1"]}, 0)
    (tmp_path / "sweep").mkdir()
    cfg = compose_cfg("stage=analyze", f"analyze.sweep={tmp_path / 'sweep'}", "tracking.backend=none")
    with pytest.raises(ConfigError, match="analyze.sweep=.*: no Hydra job folder"):
        analysis.run(cfg, Store(tmp_path / "cache"), no_tracker)
    (tmp_path / "sweep" / "0" / ".hydra").mkdir(parents=True)  # a job that never wrote result.json
    with pytest.raises(ConfigError, match="no finished job with a fine-tuned evaluation; left out: .*no result.json"):
        analysis.run(cfg, Store(tmp_path / "cache"), no_tracker)
