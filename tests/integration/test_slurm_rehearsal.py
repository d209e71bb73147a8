"""The one SLURM command, rehearsed on the local one-node cluster (``slurm_cluster.py``): ``python launch.py -m
+experiment=slurm_rehearsal hydra/launcher=slurm_local_test`` from an empty store (the SmolLM2 weights aside,
converted once for the whole test session) submits two pool jobs (SmolLM2 as a teacher at 64 and 24 new tokens),
the grid (w = 0 and 1, one array after both pools) and the report, and waits for them. The same command again
submits nothing. A third study whose pool job is cancelled: SLURM drops the grid jobs waiting for it, and the
command's summary names each, one line per job; ``stage=cancel`` cancels what is left.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import slurm_cluster

from conftest import ROOT, compose_cfg
from mixgap.core.store import Store
from mixgap.results.sweep import job_results
from mixgap.stages.models import model_spec

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

COMMAND = ["launch.py", "-m", "+experiment=slurm_rehearsal", "hydra/launcher=slurm_local_test"]
TIMEOUT_S = float(os.environ.get("MIXGAP_SLURM_TEST_TIMEOUT_S", 330))


#: The local cluster (MIXGAP_SLURM_ROOT): started unless one runs there, stopped at the end when started here.
cluster = pytest.fixture(scope="module", name="cluster")(slurm_cluster.for_tests)


def _store_with_weights(folder: Path, smollm2_path: str, test_cache: Path) -> Path:
    """A store holding only SmolLM2's converted weights (hard links to the test session's conversion)."""
    key = model_spec(compose_cfg("student=smollm2_135m").student).key
    assert Store(test_cache).is_done(key), smollm2_path
    shutil.copytree(test_cache / "model" / key, folder / "model" / key, copy_function=os.link)
    return folder


def _launch(cluster, kit, sweep: Path, cache: Path, *extra: str, wait: bool = True):
    args = [sys.executable, *COMMAND, f"hydra.sweep.dir={sweep}", f"paths.cache={cache}", *extra]
    env = {**cluster.env, "MIXGAP_DATA": str(kit), "HF_HUB_OFFLINE": "1"}
    if not wait:
        return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)


@pytest.fixture(scope="module")
def rehearsal(cluster, kit, smollm2_path, test_cache, tmp_path_factory):
    root = tmp_path_factory.mktemp("rehearsal")
    sweep, cache = root / "sweep", _store_with_weights(root / "cache", smollm2_path, test_cache)
    started = time.time()
    first = _launch(cluster, kit, sweep, cache)
    first_s = time.time() - started
    started = time.time()
    second = _launch(cluster, kit, sweep, cache)
    second_s = time.time() - started
    print(f"\nrehearsal: first run {first_s:.0f} s, second run {second_s:.0f} s")
    return SimpleNamespace(dir=sweep, store=cache, first=first, second=second, first_s=first_s, second_s=second_s,
                           dag=json.loads((sweep / "dag.json").read_text()))


def _manifest(store: Path, key: str) -> dict:
    return json.loads((store / key.rsplit("-", 1)[0] / key / "manifest.json").read_text())


def test_one_command_runs_pools_then_grid_then_report(rehearsal):
    assert rehearsal.first.returncode == 0, rehearsal.first.stdout[-3000:] + rehearsal.first.stderr[-3000:]
    first = rehearsal.dag["submissions"][0]
    kinds = [(j["kind"], j["name"], j["dependency"]) for j in first["jobs"]]
    pools = {j["name"]: j["slurm_id"] for j in first["jobs"] if j["kind"] == "pool"}
    array = first["jobs"][2]["slurm_id"].split("_")[0]
    assert kinds == [("pool", "smollm2_long", ""), ("pool", "smollm2_short", ""),
                     ("grid", "0", f"afterok:{pools['smollm2_long']}:{pools['smollm2_short']}"),
                     ("grid", "1", f"afterok:{pools['smollm2_long']}:{pools['smollm2_short']}"),
                     ("report", "report", f"afterany:{array}")]
    assert [(o["kind"], o["status"]) for o in first["outcomes"]] == [
        ("pool", "done"), ("pool", "done"), ("grid", "done"), ("grid", "done"), ("report", "done")]
    assert (rehearsal.dir / "report" / "report.md").is_file()
    assert "smollm2_long" in (rehearsal.dir / "report" / "gaps.csv").read_text()
    assert "pool     2: 2 done" in rehearsal.first.stdout and "report   1: 1 done" in rehearsal.first.stdout


def test_the_pool_jobs_built_the_pools_before_any_grid_job_started(rehearsal):
    grid = [r for _, r in job_results(rehearsal.dir)]
    assert [r["job"]["weight"] for r in grid] == [0.0, 1.0] and all(r["status"] == "done" for r in grid)
    grid_start = min(r["started"] for r in grid)
    for name, role in (("smollm2_long", "strong"), ("smollm2_short", "weak")):
        pool = json.loads((rehearsal.dir / "pools" / name / "result.json").read_text())
        assert pool["status"] == "done" and pool["job"]["stage"] == "generate"
        assert all(r["artifacts"][f"generation.{role}"] == pool["artifacts"]["generation.teacher"] for r in grid)
        assert all(r["artifacts"][f"pool.{role}"] == pool["artifacts"]["pool.teacher"] for r in grid)
        for key in (pool["artifacts"]["generation.teacher"], pool["artifacts"]["pool.teacher"]):
            made = _manifest(rehearsal.store, key)  # built inside the pool job's run, ended before the grid began
            assert pool["started"] <= made["started"] <= made["finished"] < grid_start, (name, key)
    generations = {p.parent.name for p in (rehearsal.store / "generation").glob("*/manifest.json")}
    assert len(generations) == 2  # one per teacher, none by a grid job


def test_no_grid_job_generated_or_waited_for_a_pool(rehearsal):
    for folder, result in job_results(rehearsal.dir):
        done = {row["role"]: row["done"] for row in result["plan"]}
        assert all(done[f"{kind}.{role}"] for kind in ("generation", "pool") for role in ("strong", "weak")), folder
        assert all(result["timings"][f"generate.{role}"] < 1.0 for role in ("strong", "weak")), result["timings"]
        assert not [k for k in result["timings"] if k.startswith("wait.generate")], result["timings"]


def test_the_same_command_again_submits_nothing(rehearsal):
    assert rehearsal.second.returncode == 0, rehearsal.second.stdout[-3000:] + rehearsal.second.stderr[-3000:]
    again = rehearsal.dag["submissions"][1]
    assert again["jobs"] == [] and again["kept"] == [
        "2 grid job(s) done (result.json done, every artifact in the store)",
        f"the report: {rehearsal.dir / 'report' / 'report.md'} is written and no grid job is left"]
    assert "mixgap: nothing to submit" in rehearsal.second.stdout


def test_status_reads_the_study(rehearsal, cluster, kit):
    done = subprocess.run([sys.executable, "launch.py", "stage=status", f"study.sweep={rehearsal.dir}",
                           f"hydra.run.dir={rehearsal.dir.parent / 'status'}"],
                          cwd=ROOT, env={**cluster.env, "MIXGAP_DATA": str(kit)}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[-6:] == [
        f"study {rehearsal.dir}: 5 job(s) in 2 submission(s)", "  pool     2: 2 done", "  grid     2: 2 done",
        "  report   1: 1 done", "  not resubmitted: 2 grid job(s) done (result.json done, every artifact in the store)",
        f"  not resubmitted: the report: {rehearsal.dir / 'report' / 'report.md'} is written and no grid job is left"]


def test_a_failed_pool_job_drops_its_grid_jobs_and_the_summary_names_them(cluster, kit, smollm2_path,
                                                                         test_cache, tmp_path):
    """The faster pool job (24 tokens) is cancelled while it runs: SLURM drops both grid jobs (--kill-on-invalid-dep=yes), then
    ``stage=cancel`` cancels what is still queued or running, and the command ends naming every job, exit 1."""
    sweep, cache = tmp_path / "sweep", _store_with_weights(tmp_path / "cache", smollm2_path, test_cache)
    proc = _launch(cluster, kit, sweep, cache, wait=False)
    try:
        deadline = time.monotonic() + 120
        while not (sweep / "dag.json").is_file():
            assert time.monotonic() < deadline and proc.poll() is None, "the study was not submitted"
            time.sleep(0.5)
        jobs = json.loads((sweep / "dag.json").read_text())["submissions"][0]["jobs"]
        short = next(j["slurm_id"] for j in jobs if j["name"] == "smollm2_short")
        subprocess.run(["scancel", short], env=cluster.env, check=True)
        grid = [j["slurm_id"] for j in jobs if j["kind"] == "grid"]
        while True:  # SLURM drops the grid jobs waiting for it
            states = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-j", grid[0].split("_")[0], "-o", "%i %T %r"],
                                    env=cluster.env, capture_output=True, text=True).stdout.split("\n")
            if sorted(filter(None, states)) == sorted(f"{i} CANCELLED DependencyNeverSatisfied" for i in grid):
                break
            assert time.monotonic() < deadline, states
            time.sleep(0.5)
        cancel = subprocess.run([sys.executable, "launch.py", "stage=cancel", f"study.sweep={sweep}",
                                 f"hydra.run.dir={tmp_path / 'cancel'}"], cwd=ROOT, env={**cluster.env, "MIXGAP_DATA": str(kit)},
                                capture_output=True, text=True, timeout=120)
        assert cancel.returncode == 0 and "pool smollm2_long" in cancel.stdout, cancel.stdout + cancel.stderr
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            subprocess.run(["scancel", *[j["slurm_id"] for j in jobs]], env=cluster.env)
    assert proc.returncode == 1, out[-3000:]
    ids = {j["name"]: j["slurm_id"] for j in jobs}
    lines = out.splitlines()
    for name in ("0", "1"):  # the line names the pool jobs it waited for that failed
        [line] = [ln for ln in lines if ln.startswith(f"    grid {name} (SLURM job {ids[name]}, {name}): ")]
        assert line.startswith(f"    grid {name} (SLURM job {ids[name]}, {name}): dropped: not run, SLURM dropped it "
                               "(DependencyNeverSatisfied): "), line
        assert f"pool smollm2_short (job {short}) failed" in line, line
    assert f"    pool smollm2_short (SLURM job {short}, pools/smollm2_short): failed: cancelled" in out
    assert f"    pool smollm2_long (SLURM job {ids['smollm2_long']}, pools/smollm2_long): failed: cancelled" in out
    assert job_results(sweep) == []  # no grid job ran
