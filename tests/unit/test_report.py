"""mixgap.results.report on a synthetic sweep (tests/fixtures/report_sweep.json) with hand-computed numbers.

Derivations used below (resampling n problems with replacement draws a fixed set of m of them
Binomial(n, m/n) times; benchmarks are resampled independently; average = mean of MATH500 and AIME24):

- qwen3b, qwq32b/qwen32b. w=1 (seed 42; seed 43 lacks AIME24, so it is missing, not averaged): MATH500 5/10,
  AIME24 1/5 -> 35.0, resamples (10 Bin(10, .5) + 20 Bin(5, .2)) / 2. w=0: 4/10, 1/5 -> 30.0.
  They differ on one MATH500 problem only: Δ = 5.0, Δ* = 5 Bin(10, .1) -> [0, 15], n.s.
- qwen0.5b: w=1 has two seeds with identical answers, 2/10 and 0/5 -> 10.0; w=0: 6/10, 1/5 -> 40.0.
  Δ = -30.0; Δ* = -(5 Bin(10, .4) + 10 Bin(5, .2)) -> [-55, -10]: Weak. Seed 42's AIME24 stopped by length
  on 2/5 problems (40% > 20%): a loud warning.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from fractions import Fraction
from math import comb
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import FIXTURES, RecordingTracker, compose_cfg
from mixgap.core.errors import ConfigError
from mixgap.core.files import write_json_atomic
from mixgap.core.runrecord import job_identity
from mixgap.core.tracking import NullTracker
from mixgap.pipeline import run_job
from mixgap.results import report, sweep
from mixgap.results.tables.flags import length_flags
from mixgap.results.tables.markdown import bench_label, benchmark_labels
from mixgap.results.tables.names import method_name, pair_kind
from mixgap.results.tables.published import paper_gap, paper_table3
from mixgap.stats.bootstrap import compare

BENCHES = "benchmark=[math500,aime24]"


def no_tracker(out):
    """No tracker run."""
    return NullTracker()


def exact_ci(*terms: tuple[int, int, float], confidence: float = 0.95) -> tuple[float, float]:
    """Exact percentile interval of sum(scale * Binomial(n, k/n)) over independent terms (n, k, scale)."""
    dist = {Fraction(0): Fraction(1)}
    for n, k, scale in terms:
        p, new = Fraction(k, n), {}
        for value, prob in dist.items():
            for j in range(n + 1):
                v = value + Fraction(scale) * j
                new[v] = new.get(v, Fraction(0)) + prob * comb(n, j) * p**j * (1 - p) ** (n - j)
        dist = new
    alpha = (1 - Fraction(confidence)) / 2

    def quantile(q: Fraction) -> float:  # smallest value whose cdf reaches q
        cdf = Fraction(0)
        for value in sorted(dist):
            cdf += dist[value]
            if cdf >= q:
                return float(value)
        raise AssertionError(q)

    return quantile(alpha), quantile(1 - alpha)


def build_sweep(root: Path, spec: dict | None = None, identity: dict | None = None) -> tuple[list[Path], Path]:
    """Job folders (.hydra/config.yaml + result.json) and a store with hand-made evaluations.

    ``spec``: as tests/fixtures/report_sweep.json (the default); ``identity``: fields set over every job's
    ``result.json`` identity. The identity carries each benchmark's label (conf/benchmark/<name>.yaml) as
    ``benchmark_labels``, as the pipeline writes it.
    """
    spec = spec or json.loads((FIXTURES / "report_sweep.json").read_text())
    cache = root / "cache"
    for key, ev in spec["evals"].items():
        folder = cache / "eval" / key
        folder.mkdir(parents=True)
        n, bench = spec["problems"][ev["benchmark"]], ev["benchmark"]
        rows = [{"id": f"{bench}/{i}", "completion": "...", "extracted": None, "correct": i in ev["correct"],
                 "reason": "", "finish_reason": "length" if i in ev.get("length", []) else "stop",
                 "completion_tokens": 10} for i in range(n)]
        (folder / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        write_json_atomic(folder / "scores.json", {"benchmark": bench, "n": n, "correct": len(ev["correct"]),
                                                   "accuracy": 100 * len(ev["correct"]) / n,
                                                   "length_stop_frac": len(ev.get("length", [])) / n})
        write_json_atomic(folder / "manifest.json", {"key": key})
    sweeps = []
    for name, jobs in spec["sweeps"].items():
        sweep = root / "multirun" / name / "10-00-00"
        sweeps.append(sweep)
        for num, job in enumerate(jobs):
            cfg = compose_cfg(*job["overrides"], BENCHES, "tracking.backend=none")
            folder = sweep / str(num)
            (folder / ".hydra").mkdir(parents=True)
            OmegaConf.save(cfg, folder / ".hydra" / "config.yaml")
            if job["status"] is None:
                continue
            artifacts = {f"eval.{arm}.{b}": f"eval-{job[arm]}_{b}" for arm in ("tuned", "untuned") if arm in job
                         for b in spec["problems"]} if job["status"] == "done" else {}
            ident = {**job_identity(cfg), **(identity or {})}
            ident.setdefault("benchmark_labels", {name: b.label for name, b in cfg.benchmark.items()})
            write_json_atomic(folder / "result.json", {"status": job["status"], "job": ident,
                                                       "store": str(cache), "artifacts": artifacts,
                                                       "counts": {"train": job["train"]} if "train" in job else {}})
    return sweeps, cache


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Run stage=report once (through pipeline.run_job, as the CLI does) and keep what it wrote."""
    root = tmp_path_factory.mktemp("report")
    sweeps, cache = build_sweep(root)
    tracker = RecordingTracker()
    mp = pytest.MonkeyPatch()
    mp.setattr("mixgap.core.tracking.make_tracker", lambda *a, **k: tracker)
    cfg = compose_cfg("stage=report", f"report.sweep=['{sweeps[0]}','{sweeps[1]}']", f"paths.cache={cache}",
                      "tracking.backend=none")
    stdout = io.StringIO()
    try:
        with contextlib.redirect_stdout(stdout):
            paths = run_job(cfg, root / "report_job")
    finally:
        mp.undo()  # never leak the fake tracker into later tests
    return {"paths": paths, "stdout": stdout.getvalue(), "tracker": tracker, "sweeps": sweeps}


def _gap(made, student, bench="average"):
    rows = list(csv.DictReader(open(made["paths"]["gaps_csv"])))
    (row,) = [r for r in rows if r["student"] == student and r["benchmark"] == bench]
    return row


def _triple(row, prefix):
    return tuple(float(row[k]) for k in (prefix, f"{prefix}_low", f"{prefix}_high"))


def test_gap_table_numbers_match_hand_computation(made):
    q3 = _gap(made, "qwen3b")
    assert (q3["strong"], q3["weak"], q3["kind"], q3["seeds_strong"], q3["seeds_weak"]) == ("qwq32b", "qwen32b", "long", "1", "1")
    assert _triple(q3, "p_strong") == (35.0, *exact_ci((10, 5, 5), (5, 1, 10))) == (35.0, 15.0, 60.0)
    assert _triple(q3, "p_weak") == (30.0, *exact_ci((10, 4, 5), (5, 1, 10))) == (30.0, 10.0, 55.0)
    assert _triple(q3, "delta") == (5.0, *exact_ci((10, 1, 5))) == (5.0, 0.0, 15.0)
    assert q3["better"] == "n.s."
    assert (float(q3["paper_p_strong"]), float(q3["paper_p_weak"]), float(q3["paper_delta"])) == (40.3, 43.4, -3.1)
    math = _gap(made, "qwen3b", "math500")
    assert _triple(math, "delta") == (10.0, 0.0, 30.0) and math["n"] == "10"
    # identical 1/5 arms: Newcombe method 10 (a=1, d=4, phi=0.375, Wilson [3.6225, 62.4464]): +-39.352, never [0, 0]
    assert _triple(_gap(made, "qwen3b", "aime24"), "delta") == pytest.approx((0.0, -39.351683236, 39.351683236))

    q05 = _gap(made, "qwen0.5b")
    assert (q05["seeds_strong"], q05["seeds_weak"]) == ("2", "1")
    assert _triple(q05, "p_strong") == (10.0, *exact_ci((10, 2, 5), (5, 0, 10))) == (10.0, 0.0, 25.0)
    assert _triple(q05, "p_weak") == (40.0, *exact_ci((10, 6, 5), (5, 1, 10))) == (40.0, 20.0, 65.0)
    assert _triple(q05, "delta") == (-30.0, *exact_ci((10, 4, -5), (5, 1, -10))) == (-30.0, -55.0, -10.0)
    assert q05["better"] == "Weak"


def test_markdown_stdout_and_tracker(made):
    text = Path(made["paths"]["markdown"]).read_text()
    head = "| qwen3b | 3.09 | full | 1/1 | 35.0 [15.0, 60.0] n=15 | 30.0 [10.0, 55.0] n=15 | 5.0 [0.0, 15.0] | n.s. | "
    tail = " | 40.3 | 43.4 | -3.1 | MATH-500 / MATH 5k |"
    line = next(x for x in text.splitlines() if x.startswith(head))
    assert line.endswith(tail) and line in made["stdout"]
    # detectable |Δ| = 2.8016 x SE, and Δ* = 5 x Binomial(20, 1/20) (one differing problem of 20): SE = 4.873
    assert float(line[len(head) : -len(tail)]) == pytest.approx(2.8016 * 5 * (20 * 0.05 * 0.95) ** 0.5, abs=0.3)
    assert "| P_Long (w=1) | P_Short (w=0) | Δ_Long |" in text
    # headings name the models by their display names (conf/*/<name>.yaml display_name), the config name beside
    assert ("### Δ_Long = P_Long − P_Short: QwQ-32B-Preview (`qwq32b`) (strong) vs Qwen2.5-32B-Instruct (`qwen32b`) "
            "(weak)") in text
    assert "### Qwen2.5-3B-Instruct (`qwen3b`)" in text and "### Qwen2.5-0.5B-Instruct (`qwen0.5b`)" in text
    assert "| qwen0.5b | 0.49 | full | 2/1 | 10.0 [0.0, 25.0] n=15 | 40.0 [20.0, 65.0] n=15 | -30.0 [-55.0, -10.0] | Weak ⚠ length stops |" in text
    # Table 3: untuned (3/10, 1/5 -> 25.0, (10 Bin(10,.3) + 20 Bin(5,.2)) / 2 -> [5, 50]) and Mix-Long (6/10, 2/5)
    assert exact_ci((10, 3, 5), (5, 1, 10)) == (5.0, 50.0) and exact_ci((10, 6, 5), (5, 2, 10)) == (25.0, 75.0)
    assert "| Untuned | — | — | — | 1 | 30.0 [" in text and "| 25.0 [5.0, 50.0] n=15 |" in text
    # realised strong fraction beside w: 27 strong / (27 + 160) kept = 0.144 at w=0.2 (13 strong dropped)
    assert "| Mix-Long | qwq32b / qwen32b | full | 0.2 (0.144) | 1 | 60.0 [" in text and "| 50.0 [25.0, 75.0] n=15 |" in text
    assert "| Long CoT | qwq32b / qwen32b | full | 1 (1.000) | 1 | 50.0 [" in text
    # the paper's MATH (5k) cell beside our MATH-500, labelled
    assert "| Mix-Long (paper; its MATH is MATH 5k) | qwq32b / qwen32b |  |  |  | 64.7 | 10.0 | 45.9 |" in text
    assert "| qwen3b | qwq32b / qwen32b | 0.2 (0.144) | — (— / —) | 13 / 0 | 0 / 0 | 27 / 160 |" in text  # training data
    assert "| Students | Mode | LR |" in text and "| Li et al. 2025 (arXiv:2502.12143v1) Table 5" in text
    assert "`finetune_mode.seed` varies in 1 condition(s)" in text  # qwen0.5b w=1; qwen3b's seed 43 is unfinished
    # the half-finished, failed and never-run jobs are listed as missing
    missing = made["paths"]["missing"]
    assert len(missing) == 3
    assert any("seed=43" in m and "aime24" in m and "not finished" in m for m in missing)
    assert any("status 'failed'" in m for m in missing) and any("no result.json" in m for m in missing)
    assert "a student that never learned to stop is a training bug, not a result" in text
    assert "| length stop | " in text and " | AIME24 | 40% |" in text  # the warnings table, after the results
    assert text.index("## Warnings") > text.index("## Per benchmark")
    tracker = made["tracker"]
    assert tracker.finished == 0 and set(tracker.tables) == {"gaps", "recommend", "table3/qwen3b", "table3/qwen0.5b"}
    assert tracker.values["delta/qwq32b_vs_qwen32b/qwen0.5b/full"] == -30.0
    assert tracker.values["better/qwq32b_vs_qwen32b/qwen0.5b/full"] == "Weak"
    figures = made["paths"]["figures"] + made["paths"]["recommend_figures"]
    assert sorted(tracker.images) == sorted(Path(f).stem + ".png" for f in figures)


def test_tidy_csv_has_one_row_per_job_arm_benchmark(made):
    rows = list(csv.DictReader(open(made["paths"]["results_csv"])))
    # sweep a: 3 jobs x (tuned + untuned) x (2 benchmarks + average) = 18; the half-finished job 2 rows;
    # 3 complete tuned-only jobs x 3 = 9; failed and never-run jobs 2 missing rows each; sweep b's evaluate
    # job: untuned 2 + average = 3. Total 18 + 2 + 9 + 4 + 3 = 36.
    assert len(rows) == 36
    assert sum(r["eval_status"] == "missing" for r in rows) == 5
    (untuned,) = [r for r in rows if r["stage"] == "evaluate" and r["benchmark"] == "average"]
    assert (untuned["arm"], float(untuned["accuracy"]), float(untuned["ci_low"]), float(untuned["ci_high"])) == (
        "untuned", 25.0, 5.0, 50.0)
    (aime,) = [r for r in rows if r["eval_key"] == "eval-q05b_w1s42_aime24"]
    assert (aime["correct"], aime["n"], float(aime["length_stop_frac"])) == ("0", "5", 0.4)


def test_figures_are_written_and_open(made):
    from matplotlib.image import imread

    names = sorted(Path(f).name for f in made["paths"]["figures"])
    assert names == ["fig_average_vs_weight_qwq32b_vs_qwen32b.png", "fig_gap_vs_size_qwq32b_vs_qwen32b.png"]
    for path in made["paths"]["figures"]:
        image = imread(path)
        assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 500
        assert Path(made["paths"]["out"]) == Path(path).parent == made["sweeps"][0] / "report"


def test_aligned_warns_on_different_problem_ids():
    warnings: list[str] = []
    strong = [{"math500": {"a": True, "b": True, "c": False}}]
    weak = [{"math500": {"a": False, "b": True}}]
    s_arm, w_arm = report.aligned([strong, weak], "qwen3b", warnings)
    assert s_arm["math500"].tolist() == [[True, True]] and w_arm["math500"].tolist() == [[False, True]]
    assert warnings == ["qwen3b math500: 1 problem ids not in every run; compared on the intersection"]
    assert compare(s_arm, w_arm)["math500"].delta.estimate == 50.0


def test_names_and_published_lookup():
    assert method_name(0.2, pair_kind("long")) == "Mix-Long"
    assert method_name(0.5, pair_kind("short")) == "Mix-Large (w=0.5)"
    assert method_name(0.0, pair_kind("short")) == "Small"
    assert paper_gap("qwen72b", "qwen3b", "llama8b") == {"strong": 25.6, "weak": 25.1, "delta": 0.5}
    assert paper_gap("qwq32b", "qwen72b", "qwen3b") is None  # another pair: nothing to compare with
    assert paper_table3("llama3b", "qwen72b", "qwen3b", 0.2)["amc23"] == 25.0
    assert paper_table3("qwen3b", "qwq32b", "qwen32b", 0.5) is None


def test_empty_or_absent_sweep_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="report.sweep=.*nope' is not a folder"):
        sweep.find_jobs(tmp_path / "nope")
    with pytest.raises(ConfigError, match="analyze.sweep=.*nope' is not a folder"):
        sweep.read_sweeps([str(tmp_path / "nope")], None, "analyze.sweep")
    (tmp_path / "empty" / "0").mkdir(parents=True)  # a folder, but no job wrote .hydra/ in it
    with pytest.raises(ConfigError, match=r"report.sweep=\[.*empty'\]: no Hydra job folder"):
        report.run(compose_cfg("stage=report", f"report.sweep={tmp_path / 'empty'}", "tracking.backend=none"), None, no_tracker)
    cfg = compose_cfg("stage=report", f"report.sweep={tmp_path}", "tracking.backend=none", "report.n_boot=0")
    with pytest.raises(ValueError, match="n_boot=0"):
        report.run(cfg, None, no_tracker)


def test_a_sweep_whose_jobs_left_no_readable_result_is_one_line_and_writes_nothing(tmp_path):
    for n in range(3):  # job folders Hydra made, then: no result.json (0, 1), a result.json cut in half (2)
        (tmp_path / "sweep" / str(n) / ".hydra").mkdir(parents=True)
        OmegaConf.save(compose_cfg(), tmp_path / "sweep" / str(n) / ".hydra" / "config.yaml")
    (tmp_path / "sweep" / "2" / "result.json").write_text('{"status": "do')
    cfg = compose_cfg("stage=report", f"report.sweep={tmp_path / 'sweep'}", "tracking.backend=none")
    with pytest.raises(ConfigError) as err:
        report.run(cfg, None, no_tracker)
    assert str(err.value) == (f"report.sweep={tmp_path / 'sweep'}: none of its 3 job folder(s) has a readable "
                              "result.json (2 missing, 1 unreadable); run the sweep, or point report.sweep at another")
    assert not (tmp_path / "sweep" / "report").exists()


def test_jobs_that_differ_in_more_than_seeds_are_not_pooled(tmp_path):
    folder = tmp_path / "0"
    (folder / ".hydra").mkdir(parents=True)
    OmegaConf.save(compose_cfg("finetune_mode.learning_rate=2e-5", "seed=7", "mix.weight=1"), folder / ".hydra" / "config.yaml")
    identity, fields = sweep.read_config(folder)
    assert (identity["seed"], identity["weight"]) == (7, 1.0)
    assert fields["finetune_mode.learning_rate"] == "2e-05"
    assert not {"seed", "mix.seed", "finetune_mode.seed", "mix.weight", "paths.cache", "stage"} & set(fields)

    def job(num, weight, lr):
        ident = {"student": "qwen3b", "strong": "qwq32b", "weak": "qwen32b", "finetune_mode": "full", "weight": weight}
        return sweep.Job(tmp_path / str(num), "done", ident, fields={"finetune_mode.learning_rate": lr, "x": "1"})

    jobs = [job(0, 1.0, "1e-05"), job(1, 0.0, "1e-05"), job(2, 1.0, "2e-05"), job(3, 1.0, "1e-05")]
    sweep.assign_variants(jobs)
    assert [j.mode() for j in jobs] == ["full (finetune_mode.learning_rate=1e-05)", "full (finetune_mode.learning_rate=1e-05)",
                                        "full (finetune_mode.learning_rate=2e-05)", "full (finetune_mode.learning_rate=1e-05)"]
    assert jobs[0].condition() == jobs[3].condition() != jobs[2].condition()


def test_length_stops_of_the_untuned_model_read_as_a_budget_not_a_training_bug(tmp_path):
    def ev(key, frac):
        return sweep.Evaluation(key, {"p1": False}, {"length_stop_frac": frac})

    job = sweep.Job(tmp_path, "done", {"student": "qwen0.5b", "weight": 1.0})
    job.evals = {"untuned": {"math": ev("e-untuned", 0.5)}, "tuned": {"math": ev("e-tuned", 0.6), "gsm8k": ev("e-ok", 0.2)}}
    warnings, flagged = length_flags([job, job], 0.2)  # the same key met twice is flagged once
    assert flagged == {"e-untuned", "e-tuned"}  # 0.2 is not above the 0.2 threshold
    assert warnings == [
        "LENGTH STOP: untuned qwen0.5b math: 50% of the answers stopped by length (> 20%); "
        "the untuned model needs more than eval.max_new_tokens: its accuracy is a lower bound",
        f"LENGTH STOP: {job.label()} math: 60% of the answers stopped by length (> 20%); "
        "a student that never learned to stop is a training bug, not a result",
    ]


def test_jobs_only_planned_are_counted_apart_from_missing(tmp_path, capsys):
    for n, weight in enumerate((0.0, 1.0)):
        cfg = compose_cfg(f"mix.weight={weight}", "stage=plan")
        (tmp_path / "sweep" / str(n) / ".hydra").mkdir(parents=True)
        OmegaConf.save(cfg, tmp_path / "sweep" / str(n) / ".hydra" / "config.yaml")
        write_json_atomic(tmp_path / "sweep" / str(n) / "result.json", {"status": "planned", "job": job_identity(cfg)})
    out = report.run(compose_cfg("stage=report", f"report.sweep={tmp_path / 'sweep'}", "tracking.backend=none"), None, no_tracker)
    assert out["missing"] == []
    assert "0 warnings, 0 missing or unfinished jobs, 2 planned only (stage=plan); full report:" in capsys.readouterr().out


def test_a_benchmark_is_printed_by_its_label(tmp_path, capsys):
    """A benchmark outside conf/benchmark/ (aime25, label AIME25 in result.json) is named by its label in
    report.md's tables and by its name in the CSVs. qwen3b on 4 problems: untuned 1/4 = 25.0, w=1 2/4 = 50.0
    (2 of 4 stopped by length: 50% > 20%), w=0 3/4 = 75.0."""
    spec = {"problems": {"aime25": 4},
            "evals": {"eval-u_aime25": {"benchmark": "aime25", "correct": [0]},
                      "eval-w1_aime25": {"benchmark": "aime25", "correct": [0, 1], "length": [2, 3]},
                      "eval-w0_aime25": {"benchmark": "aime25", "correct": [0, 1, 2]}},
            "sweeps": {"c": [{"overrides": ["student=qwen3b", f"mix.weight={w}"], "status": "done", "untuned": "u",
                              "tuned": f"w{w}"} for w in (1, 0)]}}
    sweeps, cache = build_sweep(tmp_path, spec, {"benchmarks": ["aime25"], "benchmark_labels": {"aime25": "AIME25"}})
    cfg = compose_cfg("stage=report", f"report.sweep={sweeps[0]}", f"paths.cache={cache}", "tracking.backend=none")
    paths = report.run(cfg, None, no_tracker)
    text = Path(paths["markdown"]).read_text()
    assert "| Method | Teachers | Mode | w (realised) | Seeds | AIME25 | Average |" in text  # Table 3 header
    assert "| Untuned | — | — | — | 1 | 25.0 [" in text and "| Long CoT | qwq32b / qwen32b | full | 1 (—) | 1 | 50.0 [" in text
    assert " | AIME25 | 50% |" in text and "| aime25 " not in text  # the warnings table, by label
    assert "| no MATH / MATH 5k |" in text  # no MATH here; the paper's column keeps its label
    rows = list(csv.DictReader(open(paths["results_csv"])))
    assert {r["benchmark"] for r in rows} == {"aime25", "average"} and "benchmark_labels" not in rows[0]
    assert {r["benchmark"] for r in csv.DictReader(open(paths["gaps_csv"]))} == {"aime25", "average"}
    assert "| qwen3b | 3.09 | full | 1/1 | 50.0 [" in capsys.readouterr().out


def test_labels_are_merged_over_jobs_and_default_to_the_name(tmp_path):
    jobs = [sweep.Job(tmp_path, "done", {"benchmark_labels": {"aime25": "AIME25", "math": "MATH"}}),
            sweep.Job(tmp_path, "done", {"student": "qwen3b"}),  # a result.json without labels
            sweep.Job(tmp_path, "done", {"benchmark_labels": {"math": "MATH 5k"}})]
    labels = benchmark_labels(jobs)
    assert labels == {"aime25": "AIME25", "math": "MATH 5k"}  # a later job's label replaces an earlier one
    assert [bench_label(b, labels) for b in ("aime25", "gsm8k", "average")] == ["AIME25", "gsm8k", "Average"]
