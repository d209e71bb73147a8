"""The study on a real SLURM cluster (the one-node local cluster of ``slurm_cluster.py``).

One CPU multirun through ``hydra/launcher=slurm_local_test``: the real SmolLM2-135M student, the kit's long/short
CoT teachers (dataset backend), mix.weight 0 / 0.5 / 1 (three jobs, two at a time on the two cores). While the
first training runs, its job is preempted the way SLURM does it (USR2, ``scancel --signal``): submitit requeues
it and the new attempt must resume training from the last checkpoint in the store's work folder, reuse every
finished artifact, and write into the same job folder. Then the report stage reads the sweep, and the card's
``+experiment=long_vs_short hydra/launcher=slurm`` command runs its plan on the cluster.

The cluster fixture lives here rather than in ``tests/integration/conftest.py``: a second ``conftest.py``
would shadow ``tests/conftest.py`` for every ``from conftest import ...`` in the suite.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import slurm_cluster

from conftest import ROOT, compose_cfg
from mixgap.plan import jobs
from mixgap.results.sweep import job_results

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

WEIGHTS = ("0", "0.5", "1")
MAX_STEPS, SAVE_STEPS = 4, 2
TINY = [  # a CPU job of a few minutes that still runs every stage for real
    "student=smollm2_135m", "teacher@mix.strong=kit_long_cot", "teacher@mix.weak=kit_short_cot",
    "data.decontamination=drop", "benchmark=[gsm8k]", "eval.limit=2", "eval.max_new_tokens=16",
    # 768 tokens keep a few long-CoT rows (the kit's shortest are ~650 tokens); over-long rows are dropped
    "finetune_mode.max_seq_len=768", f"finetune_mode.max_steps={MAX_STEPS}",
    f"finetune_mode.save_steps={SAVE_STEPS}", "finetune_mode.per_device_batch_size=1",
    "finetune_mode.global_batch_size=1", "finetune_mode.logging_steps=1", "tracking.backend=none",
    "predict.max_samples=4",  # learnability before training: one artifact per pool for the whole sweep
    "eval.max_model_len=null",  # SmolLM2's own context (the paper's 16,000 is beyond its 8,192)
    "report.n_boot=200",  # the study's report job, after the grid (the kit's pools are imports: no pool job)
]
SWEEP_TIMEOUT_S = float(os.environ.get("MIXGAP_SLURM_TEST_TIMEOUT_S", 330))  # the whole sweep, requeue included


#: The local cluster (MIXGAP_SLURM_ROOT): started unless one runs there, stopped at the end when started here.
cluster = pytest.fixture(scope="module", name="cluster")(slurm_cluster.for_tests)


def _squeue(cluster, job_id: str) -> str:
    """``STATE REASON`` of a job, or "" once it has left the queue."""
    done = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T %r"], env=cluster.env, capture_output=True, text=True)
    return done.stdout.strip()


def _wait(predicate, timeout_s: float, what: str, proc: subprocess.Popen | None = None, poll_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            return predicate()
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def _complete_checkpoint(work: Path) -> Path | None:
    found = sorted(work.glob("trainer/checkpoint-*/trainer_state.json"))
    return found[0].parent if found else None


@pytest.fixture(scope="module")
def sweep(cluster, kit, tmp_path_factory):
    """Run the multirun, preempt the first job that saves a training checkpoint, release its requeue, wait."""
    root = tmp_path_factory.mktemp("slurm-sweep")
    sweep_dir, cache = root / "sweep", root / "cache"
    common = [*TINY, f"paths.cache={cache}"]
    # the checkpoint key of each job, from the job_specs its job will use
    ckpt = {n: jobs.job_specs(compose_cfg(*common, f"mix.weight={w}", data=kit))["checkpoint"].key
            for n, w in enumerate(WEIGHTS)}
    log = open(root / "launch.log", "w")
    started = time.time()
    proc = subprocess.Popen(
        [sys.executable, "launch.py", "-m", "hydra/launcher=slurm_local_test", *common,
         f"hydra.sweep.dir={sweep_dir}", "mix.weight=" + ",".join(WEIGHTS)],
        cwd=ROOT, env={**cluster.env, "MIXGAP_DATA": str(kit)}, stdout=log, stderr=subprocess.STDOUT,
    )
    array = None
    try:
        found = _wait(
            lambda: next(((n, c) for n, key in ckpt.items() if (c := _complete_checkpoint(cache / ".work" / key))), None),
            SWEEP_TIMEOUT_S, "a first training checkpoint", proc,
        )
        assert found, f"the sweep ended before any training checkpoint:\n{(root / 'launch.log').read_text()[-3000:]}"
        victim, first_checkpoint = found
        array = next(m.group(1) for p in (sweep_dir / ".submitit").iterdir() if (m := re.fullmatch(r"(\d+)_\d+", p.name)))
        job_id = f"{array}_{victim}"
        preempted = time.time()
        subprocess.run(["scancel", "--signal=USR2", job_id], env=cluster.env, check=True)  # as SLURM preempts
        job_log = sweep_dir / ".submitit" / job_id / f"{job_id}_0_log.out"
        _wait(lambda: job_log.is_file() and f"Requeued job {job_id}" in job_log.read_text(), 60, f"submitit to requeue {job_id}")
        # SLURM holds a requeued job for about two minutes (reason BeginTime); release it now
        state = _wait(lambda: (s := _squeue(cluster, job_id)).startswith(("PENDING", "RUNNING")) and s, 60,
                      f"job {job_id} back in the queue", poll_s=0.5)
        if state.startswith("PENDING"):
            subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], env=cluster.env, check=True)
        proc.wait(timeout=max(10, SWEEP_TIMEOUT_S - (time.time() - started)))
    finally:
        if proc.poll() is None:  # stop what this test started: the submitting process and its job array
            proc.kill()
            if array:
                subprocess.run(["scancel", array], env=cluster.env)
        log.close()
    return SimpleNamespace(
        dir=sweep_dir, store=cache, ckpt=ckpt, victim=victim, job_id=job_id, preempted=preempted,
        first_checkpoint=first_checkpoint, returncode=proc.returncode, wall_s=time.time() - started,
        log=(root / "launch.log").read_text(),
    )


def _manifests(store: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in store.glob("*/*/manifest.json")]


def test_every_job_finishes_with_scores(sweep):
    assert sweep.returncode == 0, sweep.log[-3000:]
    jobs = job_results(sweep.dir)
    assert [p.name for p, _ in jobs] == ["0", "1", "2"]
    for (path, result), weight in zip(jobs, WEIGHTS, strict=True):
        assert result is not None and result["status"] == "done", path
        assert result["job"]["weight"] == float(weight) and result["job"]["student"] == "smollm2_135m"
        for arm in ("scores", "untuned"):
            assert set(result[arm]) >= {"gsm8k"} and result[arm]["gsm8k"]["n"] == 2


def test_each_artifact_is_built_once_for_the_whole_sweep(sweep):
    """Generation and pool once per teacher, the untuned completions and their verdicts once per student, one
    mixture and one training per weight, whatever the number of jobs that needed them."""
    built = Counter(m["stage"] for m in _manifests(sweep.store))
    assert built == {"model": 1, "generation": 2, "pool": 2, "predict": 2, "mixture": 3, "checkpoint": 3,
                     "completions": 1 + 3, "eval": 1 + 3}
    results = [r for _, r in job_results(sweep.dir)]
    for role in ("model", "generation.strong", "generation.weak", "pool.strong", "pool.weak", "predict.strong",
                 "predict.weak", "completions.untuned.gsm8k", "eval.untuned.gsm8k"):
        assert len({r["artifacts"][role] for r in results}) == 1, role  # shared by the three jobs
    assert sorted(r["artifacts"]["checkpoint"] for r in results) == sorted(sweep.ckpt.values())
    assert not list((sweep.store / ".tmp").glob("*"))  # no half-written artifact left behind
    assert not [p for p in (sweep.store / ".work").glob("*") if any(p.iterdir())]  # scratch removed once finished


def test_preempted_job_is_requeued_into_its_folder_and_resumes_training(sweep):
    victim_key = sweep.ckpt[sweep.victim]
    manifest = json.loads((sweep.store / "checkpoint" / victim_key / "manifest.json").read_text())
    resumed = manifest["counts"]["resumed_from"]
    assert resumed and Path(resumed).parent == sweep.store / ".work" / victim_key / "trainer", resumed
    step = int(Path(resumed).name.removeprefix("checkpoint-"))
    assert step >= int(sweep.first_checkpoint.name.removeprefix("checkpoint-")) >= SAVE_STEPS  # not from step 0
    assert manifest["counts"]["steps"] == MAX_STEPS and manifest["finished"] > sweep.preempted
    log = "\n".join(p.read_text() for p in (sweep.dir / ".submitit" / sweep.job_id).glob("*.out"))
    assert "this job is preempted" in log and f"Requeued job {sweep.job_id}" in log
    assert "restart count 1" in log  # the second attempt ran ...
    result = json.loads((sweep.dir / str(sweep.victim) / "result.json").read_text())
    assert result["status"] == "done" and result["artifacts"]["checkpoint"] == victim_key  # ... in the same folder
    # the second attempt's plan found everything before training finished, and only the training left to do
    done = {row["role"]: row["done"] for row in result["plan"]}
    assert all(done[r] for r in ("model", "generation.strong", "generation.weak", "pool.strong", "pool.weak", "mixture"))
    assert not done["checkpoint"] and not done["eval.tuned.gsm8k"]
    # what was finished before the preemption was read back, not rebuilt: one manifest each, older than it
    early = {m["key"]: m["finished"] for m in _manifests(sweep.store) if m["stage"] in ("model", "generation", "pool")}
    assert len(early) == 5 and all(finished < sweep.preempted for finished in early.values())


def test_report_reads_the_sweep(sweep, kit):
    done = subprocess.run(
        [sys.executable, "launch.py", "stage=report", f"report.sweep={sweep.dir}", "tracking.backend=none",
         "report.n_boot=200", f"paths.cache={sweep.store}"],
        cwd=ROOT, env={**os.environ, "MIXGAP_DATA": str(kit)}, capture_output=True, text=True, timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = sweep.dir / "report"
    rows = (report / "results.csv").read_text().splitlines()
    assert len(rows) > 3 and all(f"{float(w)}" in "\n".join(rows) for w in WEIGHTS)
    gaps = (report / "gaps.csv").read_text()
    assert "smollm2_135m" in gaps and "kit_long_cot" in gaps


def test_card_command_plans_on_the_cluster(cluster, tmp_path):
    """``python launch.py -m +experiment=long_vs_short hydra/launcher=slurm`` with the cluster's values from
    the environment (narrowed to two students, stage=plan: no model is loaded)."""
    env = {**cluster.env, "MIXGAP_SLURM_PARTITION": "debug", "MIXGAP_SLURM_GPUS_PER_NODE": "8",  # planned, never submitted
           "MIXGAP_SLURM_CPUS_PER_TASK": "1", "MIXGAP_SLURM_MEM_GB": "2", "MIXGAP_SLURM_TIMEOUT_MIN": "10"}
    done = subprocess.run(
        [sys.executable, "launch.py", "-m", "+experiment=long_vs_short", "hydra/launcher=slurm", "stage=plan",
         "student=qwen0.5b,llama70b", f"hydra.sweep.dir={tmp_path}/sweep", f"paths.cache={tmp_path}/cache"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    results = [r for _, r in job_results(tmp_path / "sweep")]
    assert sorted((r["job"]["student"], r["job"]["weight"]) for r in results) == [
        ("llama70b", 0.0), ("llama70b", 1.0), ("qwen0.5b", 0.0), ("qwen0.5b", 1.0)]
    assert all(r["status"] == "planned" and r["job"]["strong"] == "qwq32b" for r in results)
    # SweepSummary (printed by the submitting process): 4 jobs share the two teachers' generations
    assert re.search(r"generation\s+2 distinct \(0 done\), used 8 times", done.stdout), done.stdout[-2000:]
