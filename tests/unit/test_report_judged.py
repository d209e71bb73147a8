"""The judge feeds Δ, and both extraction modes are shown for the same completions.

Hand-made judged sweep (qwen3b, qwq32b/qwen32b, full; MATH500 n = 10, AIME24 n = 5; ``eval.judge`` on):

- Both modes: the last problem of each benchmark is correct under policy only (policy one problem up).
- w=1 rule: MATH500 5/10, AIME24 1/5; the judge flips MATH500 problem 5 (wrong -> True): judged 6/10, 1/5.
- w=0 rule = judged: MATH500 4/10, AIME24 1/5 (the judge flips nothing).
- Rule Δ: MATH500 +10.0, AIME24 0.0, average +5.0. Judged Δ: MATH500 +20.0 (= +10 + 1/10 · 100), average +10.0
  (the flip moves one benchmark of two: 1/10 · 100 / 2 = 5 points on the average).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf

from conftest import compose_cfg
from mixgap.core.files import write_json_atomic
from mixgap.core.runrecord import job_identity
from mixgap.core.store import Store
from mixgap.core.tracking import NullTracker
from mixgap.results import learnability_report, report, sweep
from mixgap.stages import judge, verdicts
from mixgap.stages.data import Problem
from mixgap.stats.intervals import Interval

N = {"math500": 10, "aime24": 5}
TURN = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n1+1?<|im_end|>\n"


def _artifact(cache: Path, key: str, files: dict[str, object], manifest: dict | None = None) -> None:
    folder = cache / key.rsplit("-", 1)[0] / key
    folder.mkdir(parents=True)
    for name, content in files.items():
        if name.endswith(".jsonl"):
            (folder / name).write_text("".join(json.dumps(r) + "\n" for r in content))
        else:
            write_json_atomic(folder / name, content)
    write_json_atomic(folder / "manifest.json", {"key": key, **(manifest or {})})


def _eval(cache: Path, key: str, bench: str, correct: set[int], by_extract: dict | None) -> None:
    """An evaluation under eval.extract=boxed; ``correct_policy`` = the boxed verdict, or the last problem (a
    bare ``Final Answer:`` the official scorer does not read, never correct under boxed here): policy is one up."""
    rows = [{"id": f"{bench}/{i}", "sample": 0, "gold": "1", "completion": "...", "extracted": "2" if i not in correct else "1",
             "correct": i in correct, "reason": "", "correct_policy": i in correct or i == N[bench] - 1, "extracted_policy": "1",
             "reason_policy": "", "finish_reason": "stop", "completion_tokens": 10} for i in range(N[bench])]
    scores = {"benchmark": bench, "n": N[bench], "correct": len(correct), "accuracy": 100 * len(correct) / N[bench],
              "length_stop_frac": 0.0, "extract": "boxed"}
    if by_extract is not None:
        scores["accuracy_by_extract"] = by_extract
    _artifact(cache, key, {"predictions.jsonl": rows, "scores.json": scores},
              {"first_turn": {"id": f"{bench}/0", "user": "Solve: 1+1?", "chat_template": "model"}})


def _judgments(cache: Path, key: str, bench: str, correct: set[int], flips: set[int]) -> None:
    rows = [{"id": f"{bench}/{i}", "sample": 0, "rule": i in correct, "sent": i not in correct, "reply": "x",
             "verdict": i in flips, "correct": i in correct or i in flips} for i in range(N[bench])]
    _artifact(cache, key, {judge.JUDGMENTS: rows})


def build_judged_sweep(root: Path, judged: bool = True) -> tuple[Path, Path]:
    """Two jobs (w=1, w=0) and their store; ``judged=False`` leaves the judge out of ``artifacts``."""
    cache, folder = root / "cache", root / "multirun" / "d" / "t"
    verdicts = {1: {"math500": set(range(5)), "aime24": {0}}, 0: {"math500": set(range(4)), "aime24": {0}}}
    for num, weight in enumerate((1, 0)):
        cfg = compose_cfg("student=qwen3b", f"mix.weight={weight}", "benchmark=[math500,aime24]",
                          "tracking.backend=none", "eval.extract=boxed", "+judge@eval.judge=qwen32b")
        job = folder / str(num)
        (job / ".hydra").mkdir(parents=True)
        OmegaConf.save(cfg, job / ".hydra" / "config.yaml")
        artifacts = {}
        for bench, correct in verdicts[weight].items():
            artifacts[f"eval.tuned.{bench}"] = key = f"eval-w{weight}_{bench}"
            modes = {"boxed": 100 * len(correct) / N[bench], "policy": 100 * len(correct | {N[bench] - 1}) / N[bench]}
            _eval(cache, key, bench, correct, modes if bench == "math500" else None)  # aime24: from the rows
            if judged:
                artifacts[f"judge.tuned.{bench}"] = f"judge-w{weight}_{bench}"
                flips = {5} if (weight, bench) == (1, "math500") else set()
                _judgments(cache, artifacts[f"judge.tuned.{bench}"], bench, correct, flips)
        train = {"kept": {"strong": 10 * weight, "weak": 10 * (1 - weight)}, "training_turn": {"id": "train/7", "text": TURN}}
        write_json_atomic(job / "result.json", {"status": "done", "job": job_identity(cfg), "store": str(cache),
                                                "artifacts": artifacts, "counts": {"train": train}})
    return folder, cache


def _report(tmp_path: Path, judged: bool) -> dict:
    folder, cache = build_judged_sweep(tmp_path, judged)
    cfg = compose_cfg("stage=report", f"report.sweep={folder}", f"paths.cache={cache}", "tracking.backend=none",
                      f"report.out={tmp_path / 'report'}")
    return report.run(cfg, Store(cache), lambda out: NullTracker())


def _gaps(paths: dict) -> dict[str, dict]:
    return {r["benchmark"]: r for r in csv.DictReader(open(paths["gaps_csv"]))}


def test_the_judge_flipping_one_verdict_moves_delta_by_one_problem(tmp_path):
    rule = _gaps(_report(tmp_path / "rule", judged=False))
    paths = _report(tmp_path / "judged", judged=True)
    judged = _gaps(paths)
    assert (float(rule["math500"]["delta"]), float(judged["math500"]["delta"])) == (10.0, 20.0)  # + 1/10 · 100
    assert (float(rule["average"]["delta"]), float(judged["average"]["delta"])) == (5.0, 10.0)  # half: 1 of 2 benches
    assert float(judged["aime24"]["delta"]) == float(rule["aime24"]["delta"]) == 0.0
    assert (rule["average"]["scoring"], judged["average"]["scoring"]) == (
        "rule (eval.extract=boxed, eval.rule=paper)", "judged (qwen2.5_32b_instruct)")  # the paper preset's rule
    assert float(judged["math500"]["p_strong"]) == 60.0 and float(rule["math500"]["p_strong"]) == 50.0
    text = Path(paths["markdown"]).read_text()
    assert "Δ and Better? from **judged (qwen2.5_32b_instruct)** verdicts" in text
    assert "Accuracies from **judged (qwen2.5_32b_instruct)** verdicts" in text  # Table 3 counts the judged ones too
    tidy = [r for r in csv.DictReader(open(paths["results_csv"])) if r["benchmark"] == "math500" and r["arm"] == "tuned"]
    assert sorted((r["scoring"], r["accuracy"]) for r in tidy) == [("judged", "40.0"), ("judged", "60.0")]


def test_the_report_shows_both_extraction_modes_for_the_same_completions(tmp_path):
    text = Path(_report(tmp_path, judged=True)["markdown"]).read_text()
    section = text.split("## Scoring rules (the same completions)")[1].split("\n## ")[0]
    table = [[c.strip() for c in line.split("|")[2:7]] for line in section.splitlines() if line.startswith("| ")]
    # MATH500 from scores.json's accuracy_by_extract; AIME24 computed from the rows' correct_policy
    cells = sorted(tuple(row) for row in table if row[1] == "boxed")
    assert cells == [("AIME24", "boxed", "40.0", "20.0", "-20.0"), ("AIME24", "boxed", "40.0", "20.0", "-20.0"),
                     ("MATH-500", "boxed", "50.0", "40.0", "-10.0"), ("MATH-500", "boxed", "60.0", "50.0", "-10.0")]


def test_settings_show_the_rendered_training_and_evaluation_turns(tmp_path):
    text = Path(_report(tmp_path, judged=False)["markdown"]).read_text()
    settings = text.split("## Settings")[1].split("\n## ")[0]
    assert f"Training turn (mixture row `train/7`, exactly as tokenised):\n\n```text\n{TURN}\n```" in settings
    assert "Evaluation turn (problem `math500/0`)" in settings and "```text\nSolve: 1+1?\n```" in settings


def test_a_judge_artifact_with_other_problem_ids_is_refused(tmp_path):
    folder, cache = build_judged_sweep(tmp_path)
    graded = sweep.load_evaluation(Store(cache), "eval-w1_math500")
    _judgments(cache, "judge-other_math500", "aime24", set(), set())
    with pytest.raises(ValueError, match="problem ids differ from those of evaluation eval-w1_math500"):
        sweep.load_judgments(Store(cache), "judge-other_math500", graded)


def test_grade_rows_store_both_modes_and_scores_hold_both_accuracies(tmp_path):
    cfg = compose_cfg("eval.extract=boxed", "benchmark=[math500]")
    bench = cfg.benchmark.math500
    problems = [Problem("a", "?", "5"), Problem("b", "?", "5"), Problem("c", "?", "5")]
    texts = ["Final Answer: 5", "so \\boxed{5}", "\\boxed{4}"]
    done = [[SimpleNamespace(text=t, finish_reason="stop", completion_tokens=3)] for t in texts]
    extras = verdicts.write_eval(bench, problems, done, cfg, tmp_path, NullTracker(), "hf")
    rows = [json.loads(line) for line in open(tmp_path / verdicts.PREDICTIONS)]
    assert [(r["correct"], r["correct_policy"]) for r in rows] == [(False, True), (True, True), (False, False)]
    assert [(r["extracted"], r["extracted_policy"]) for r in rows] == [(None, "5"), ("5", "5"), ("4", "4")]
    scores = json.loads((tmp_path / verdicts.SCORES).read_text())
    assert scores["accuracy_by_scoring"] == pytest.approx({"paper": 100 / 3, "boxed": 100 / 3, "policy": 200 / 3})
    assert (scores["extract"], scores["rule"], scores["scoring"], scores["extraction"]) == ("boxed", "paper", "paper", "boxed")
    assert extras["first_turn"]["id"] == "a" and "?" in extras["first_turn"]["user"]
    # the judge's sent set follows the mode in force: "Final Answer: 5" has no box, so it is not sent
    assert [judge.needs_judge(r, "boxed") for r in rows] == [False, False, True]
    assert judge.needs_judge({"correct": False, "extracted": "3"}, "last_number") is False  # GSM8K: never judged


def test_prediction_and_agreement_cells_read_as_what_they_mean():
    assert learnability_report.predicted_cell("weak", "Weak") == "weak pool (CI excludes 0)"
    assert learnability_report.predicted_cell("strong", "n.s.") == "strong pool (RSR adv. n.s.)"
    spans = {"agreed": False, "delta": Interval(-0.5, -1.5, 0.5)}
    assert learnability_report.agreement_cell(spans) == "untested (Δ n.s.; point signs differ)"
    assert learnability_report.agreement_cell({"agreed": False, "delta": Interval(-2.0, -3.0, -1.0)}) == "no"


LONG = ("deepseek_r1_distill_qwen32b", "qwen2.5_72b_instruct")


def test_figures_keep_their_axes_wide_and_a_cap_on_the_zero_line_visible(tmp_path, monkeypatch):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from mixgap.results import figures
    from mixgap.results.tables.names import pair_kind
    from mixgap.stats.bootstrap import AVERAGE

    saved = []
    original = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: saved.append(self) or original(self, *a, **k))
    series = {"qwen3b": [(0.0, Interval(30, 22, 38)), (0.2, Interval(34, 26, 42)), (1.0, Interval(36, 28, 44))]}
    figures.accuracy_vs_weight(series, tmp_path / "w.png", *LONG, realised={"qwen3b": {0.2: 0.171}})
    gaps = [{"strong": LONG[0], "weak": LONG[1], "names": pair_kind("long"), "student": s, "family": "qwen",
             "size_b": b, "mode": "full", "paper": None, "comparison": {AVERAGE: SimpleNamespace(delta=Interval(*d))}}
            for s, b, d in (("qwen0.5b", 0.5, (-4.0, -9.0, 0.0)), ("qwen3b", 3.09, (5.0, 0.0, 12.0)))]
    figures.gap_vs_size(gaps, tmp_path / "s.png")
    weight_fig, size_fig = saved
    canvas = FigureCanvasAgg(weight_fig)
    canvas.draw()
    whole = weight_fig.get_tightbbox(canvas.get_renderer()).width * weight_fig.dpi  # the saved canvas (tight bbox)
    # the one-line label made the canvas 1492 px wide around 595 px of axes (0.40); wrapped, the axes keep > 0.6
    assert weight_fig.axes[0].get_window_extent().width / whole > 0.6
    ax = size_fig.axes[0]
    zero = [line for line in ax.get_lines() if list(line.get_ydata()) == [0.0, 0.0]]
    caps = [line for line in ax.get_lines() if line.get_marker() == "_"]  # one line of lower caps, one of upper
    assert sorted(list(c.get_ydata()) for c in caps) == [[-9.0, 0.0], [0.0, 12.0]]  # a cap of each on the zero line
    assert len(zero) == 1 and all(c.get_zorder() > zero[0].get_zorder() for c in caps)  # drawn over it


def test_scoring_names_each_benchmark_and_warns_when_runs_mix_judged_and_rule():
    def job(kinds: dict[str, str]) -> sweep.Job:
        evals = {b: sweep.Evaluation(f"{k}-{b}", {}, {}, k) for b, k in kinds.items()}
        return sweep.Job(Path("j"), "done", {}, evals={"tuned": evals}, complete={"tuned"},
                         fields={"eval.extract": '"boxed"', "eval.judge.name": '"qwen2.5_32b_instruct"'})

    warnings: list[str] = []
    split = [job({"math500": "judged", "gsm8k": "rule"})] * 2
    assert report.scoring(split, "tuned", "cell", warnings) == (
        "judged (qwen2.5_32b_instruct) on math500; rule (eval.extract=boxed) on gsm8k") and warnings == []
    mixed = [job({"math500": "judged"}), job({"math500": "rule"})]
    assert report.scoring(mixed, "tuned", "cell", warnings) == "mixed judged/rule"
    assert warnings == ["cell: math500 mix judged and rule-graded runs (eval.judge differs between jobs); the accuracy "
                        "and Δ average over both"]
