"""A smaller `make demo` in CI: the real CLI, the real student, the kit's real traces, every stage joined.

`python launch.py -m +experiment=demo` with few steps, short sequences and 2 problems a benchmark, then the
report and the analysis on its sweep, then the same command again (everything reused).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from mixgap.core.store import Store

pytestmark = pytest.mark.slow
TINY = ["finetune_mode.max_steps=2", "finetune_mode.max_seq_len=768", "finetune_mode.save_steps=1",
        "eval.limit=2", "eval.max_new_tokens=24", "eval.batch_size=2", "predict.max_samples=2"]


def launch(*args: str, cwd: Path, data: Path | None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline"}
    env.pop("MIXGAP_DATA", None)
    if data is not None:
        env["MIXGAP_DATA"] = str(data)
    return subprocess.run([sys.executable, str(ROOT / "launch.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=1500)


@pytest.fixture(scope="module")
def demo(tmp_path_factory, kit, smollm2_path):
    """The small demo sweep: (its folder, the store, the first run's stdout)."""
    root = tmp_path_factory.mktemp("demo")
    store = Store(root / "cache")
    converted = Path(smollm2_path)  # reuse the weights the session converted (a store artifact like any other)
    (store.root / "model").mkdir(parents=True)
    (store.root / "model" / converted.name).symlink_to(converted)
    proc = launch("-m", "+experiment=demo", *TINY, f"hydra.sweep.dir={root / 'sweep'}", f"paths.cache={store.root}",
                  cwd=root, data=kit)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "sweep", store, proc.stdout


def _results(sweep: Path) -> list[dict]:
    return [json.loads((sweep / str(n) / "result.json").read_text()) for n in range(3)]


def test_every_job_finishes_with_scores_for_the_five_benchmarks(demo):
    sweep, store, stdout = demo
    results = _results(sweep)
    assert [r["status"] for r in results] == ["done"] * 3
    assert [r["job"]["weight"] for r in results] == [0.0, 0.2, 1.0]
    benches = ["math", "gsm8k", "aime24", "amc23", "olympiadbench"]
    for r in results:
        assert list(r["scores"]) == [*benches, "average"] and list(r["untuned"]) == [*benches, "average"]
        assert all(r["scores"][b]["n"] == 2 for b in benches)
        mean = sum(r["scores"][b]["accuracy"] for b in benches) / 5
        assert r["scores"]["average"]["accuracy"] == pytest.approx(mean)
        for arm in ("scores", "untuned"):  # a 0/2 or 2/2 benchmark keeps a Wilson interval, never [0, 0] or [100, 100]
            assert all(r[arm][b]["ci_high"] - r[arm][b]["ci_low"] > 30 for b in benches), r[arm]
    # one untuned evaluation shared by the three jobs; one training per weight
    assert len({r["artifacts"]["eval.untuned.math"] for r in results}) == 1
    assert len({r["artifacts"]["checkpoint"] for r in results}) == 3
    assert "3 jobs in" in stdout and "3 done" in stdout and "wall time per stage" in stdout
    # learnability before training: one artifact per pool for the whole sweep, the same figures in every job
    assert len({r["artifacts"]["predict.strong"] for r in results}) == 1
    learn = results[0]["learnability"]
    assert set(learn["strong"]) >= {"surprisal", "mean_rank", "top1_share", "rsr"}
    assert learn["strong"]["rsr"]["n"] == learn["weak"]["rsr"]["n"] == 2  # the same 2 problems scored in both pools
    assert all(r["learnability"] == learn for r in results[1:])


def test_the_trained_problems_are_kept_out_of_the_math_evaluation(demo):
    """The kit's traces are MATH500 test problems: MATH is evaluated on the full test minus the trained ones."""
    sweep, store, _ = demo
    result = _results(sweep)[0]
    assert result["counts"]["decontamination"] == {
        "policy": "drop", "overlap": {"math": 211, "gsm8k": 0, "aime24": 0, "amc23": 0, "olympiadbench": 0}}
    trained = set(store.manifest(result["artifacts"]["mixture"])["counts"]["problem_ids"])
    predictions = store.path(result["artifacts"]["eval.tuned.math"]) / "predictions.jsonl"
    evaluated = [json.loads(line)["id"] for line in open(predictions)]
    assert len(trained) == 211 and len(evaluated) == 2 and not trained & set(evaluated)


def test_pools_mixtures_and_overlength_drops_are_counted(demo):
    results = _results(demo[0])
    pool = results[0]["counts"]["pool.strong"]
    assert (pool["tried"], pool["kept"]) == (500, 225)  # the long-CoT traces our grader accepts
    assert results[0]["counts"]["pool.weak"]["kept"] == 404
    n = results[0]["counts"]["mixture"]["N"]
    assert n == 211 and [r["counts"]["mixture"]["strong"] for r in results] == [0, 42, 211]
    train = [r["counts"]["train"] for r in results]
    assert train[0]["dropped"]["strong"] == 0 and train[2]["dropped"]["weak"] == 0
    assert train[2]["dropped"]["strong"] > train[1]["dropped"]["strong"] > 0  # long CoT over 768 tokens
    for t in train:
        kept = t["kept"]["strong"] + t["kept"]["weak"]
        assert kept + t["dropped"]["strong"] + t["dropped"]["weak"] == n and t["steps"] == 2


def test_report_and_analysis_open_on_the_sweep(demo, tmp_path, kit):
    sweep, store, _ = demo
    proc = launch("stage=report", f"report.sweep={sweep}", f"paths.cache={store.root}", cwd=tmp_path, data=kit)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Δ_Long = P_Long − P_Short" in proc.stdout and "full report:" in proc.stdout
    report_md = (sweep / "report" / "report.md").read_text()
    assert "Learnability before training" in report_md and "w (realised)" in report_md
    gaps = list(csv.DictReader(open(sweep / "report" / "gaps.csv", encoding="utf-8")))
    average = [g for g in gaps if g["benchmark"] == "average"]
    assert len(average) == 1 and average[0]["student"] == "smollm2_135m"
    from PIL import Image

    for png in (sweep / "report").glob("*.png"):
        with Image.open(png) as image:
            image.verify()
    proc = launch("stage=analyze", f"analyze.sweep={sweep}", "analyze.max_completions=4", f"paths.cache={store.root}",
                  cwd=tmp_path, data=kit)
    assert proc.returncode == 0, proc.stderr[-3000:]
    shares = list(csv.DictReader(open(sweep / "analysis" / "rank_shift_shares.csv", encoding="utf-8")))
    assert [r["arm"] for r in shares] == ["untuned", "w=0", "w=0.2", "w=1"]
    assert float(shares[0]["unshifted"]) >= 0.95  # the untuned student's own greedy completions
    assert (sweep / "analysis" / "case_study.md").read_text(encoding="utf-8").startswith("#")


def test_a_second_run_reuses_every_artifact(demo, kit):
    sweep, store, _ = demo
    finished = {p: p.stat().st_mtime for p in store.root.glob("*/*/manifest.json")}
    proc = launch("-m", "+experiment=demo", *TINY, f"hydra.sweep.dir={sweep}", f"paths.cache={store.root}",
                  cwd=sweep.parent, data=kit)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {p: p.stat().st_mtime for p in store.root.glob("*/*/manifest.json")} == finished
    assert all(r["timings"]["train"] < 1 and r["timings"]["completions.tuned"] < 1 and r["timings"]["evaluate.tuned"] < 1
               for r in _results(sweep))


def test_no_kit_and_no_hub_is_one_line_naming_mixgap_data(tmp_path):
    proc = launch("+experiment=demo", "stage=mix", f"paths.cache={tmp_path / 'cache'}", cwd=tmp_path, data=None)
    assert proc.returncode == 2
    assert proc.stderr.startswith("mixgap: error: ") and "MIXGAP_DATA" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_the_demo_pools_export_and_import_back_with_the_same_rows(demo, kit, tmp_path):
    """stage=export writes each demo pool as a dataset folder ``datasets.load_dataset`` reads, with a card naming the
    teacher and keep-rate; imported back as the teacher's dataset it gives a pool with the same rows."""
    import datasets

    from mixgap.stages.generate import read_pool

    sweep, store, _ = demo
    for role, teacher in (("strong", "kit_long_cot"), ("weak", "kit_short_cot")):
        out = tmp_path / role
        proc = launch("+experiment=demo", *TINY, "stage=export", f"export.artifact=pool.{role}", f"export.out={out}",
                      f"paths.cache={store.root}", "tracking.backend=none", f"hydra.run.dir={tmp_path / ('job-' + role)}",
                      cwd=tmp_path, data=kit)
        assert proc.returncode == 0, proc.stderr[-2000:]
        key = json.loads((tmp_path / f"job-{role}" / "result.json").read_text())["artifacts"][f"pool.{role}"]
        pool = read_pool(store.path(key))
        assert datasets.load_dataset(str(out))["train"].to_list() == pool
        card = (out / "README.md").read_text()
        kept, tried = store.manifest(key)["counts"]["kept"], store.manifest(key)["counts"]["tried"]
        assert f"## Teacher ({role}): {teacher}" in card and f"kept {kept} of {tried} problems" in card
        back = launch("+experiment=demo", *TINY, "stage=generate", f"mix.{role}.dataset.path={out}",
                      f"paths.cache={tmp_path / 'cache-back'}", "tracking.backend=none",
                      f"hydra.run.dir={tmp_path / ('back-' + role)}", cwd=tmp_path, data=kit)
        assert back.returncode == 0, back.stderr[-2000:]
        again = json.loads((tmp_path / f"back-{role}" / "result.json").read_text())["artifacts"][f"pool.{role}"]
        assert read_pool(Store(tmp_path / "cache-back").path(again)) == pool
