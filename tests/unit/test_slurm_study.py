"""The study on SLURM without a cluster (mixgap/plan/dag.py, mixgap/plan/study.py, hydra_plugins/mixgap_launcher):
which pool, grid and report jobs a sweep becomes, with what allocation and dependencies; what a rerun resubmits;
the sbatch lines; how a submitted study's jobs read back from SLURM states and result files."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from huggingface_hub import constants
from hydra import compose, initialize_config_dir
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.utils import create_config_search_path
from hydra.types import RunMode
from hydra.utils import instantiate

from conftest import ROOT, compose_cfg
from mixgap.core.errors import ConfigError
from mixgap.core.store import Store
from mixgap.plan import dag, jobs, study
from mixgap.plan.jobs import checked_plan, make_plan
from mixgap.plan.sweeper import job_config, study_of
from mixgap.results.sweep import find_jobs
from mixgap.stages import models

CONF = ROOT / "conf"


@pytest.fixture(autouse=True)
def _no_cluster_environment(monkeypatch):
    """The launchers read MIXGAP_SLURM_* from the environment: start each test from the defaults."""
    for name in [n for n in os.environ if n.startswith("MIXGAP_SLURM_")]:
        monkeypatch.delenv(name)


class Sweep:
    """A sweep composed as the sweeper composes it (the master config, then one ``load_sweep_config`` per job)."""

    def __init__(self, tmp_path: Path, kit: Path, common: list[str], jobs: list[list[str]], launcher: str = "slurm"):
        self.dir, self.cache = tmp_path / "sweep", tmp_path / "cache"
        self.loader = ConfigLoaderImpl(config_search_path=create_config_search_path(str(CONF)))
        self.master = self.loader.load_configuration(
            "config", overrides=[f"hydra/launcher={launcher}", f"hydra.sweep.dir={self.dir}"], run_mode=RunMode.MULTIRUN)
        self.common = [*common, f"paths.cache={self.cache}", f"paths.data={kit}"]
        self.points = []
        for num, job in enumerate(jobs):
            config = self.loader.load_sweep_config(self.master, [*job, *self.common])
            cfg, task, _ = job_config(config)
            checked_plan(cfg, task)
            self.points.append(dag.Point(num, task, cfg, dict(config.hydra.runtime.choices)))

    def compose(self, overrides):
        return self.loader.load_sweep_config(self.master, overrides)

    def study(self) -> dag.Study:
        return study_of(self.points, self.compose, self.master)

    def plan(self, overrides):
        cfg, task, _ = job_config(self.compose(overrides))
        return make_plan(cfg)


def test_long_vs_short_is_two_pool_jobs_then_the_grid_in_one_array_then_the_report(tmp_path, kit, hub_cached):
    sweep = Sweep(tmp_path, kit, ["+experiment=long_vs_short"],
                  [[f"student={s}", f"mix.weight={w}"] for s in ("qwen0.5b", "llama70b") for w in (0.0, 1.0)])
    made = sweep.study()
    assert made.refusals == [] and made.kept == []
    pools = {job.name: job for job in made.of("pool")}
    assert list(pools) == ["qwq32b", "qwen32b"]  # strong then weak, each once for the four grid jobs
    # each on its tensor_parallel_size GPUs of the 8-GPU node, the same share of its 32 CPUs (memory: the node's, 0)
    assert pools["qwq32b"].resources == {"gpus_per_node": 4, "cpus_per_task": 16, "name": "mixgap_generate_qwq32b"}
    assert pools["qwen32b"].resources == {"gpus_per_node": 2, "cpus_per_task": 8, "name": "mixgap_generate_qwen32b"}
    grid_plan = sweep.plan(sweep.points[0].overrides)
    for role, job in (("strong", pools["qwq32b"]), ("weak", pools["qwen32b"])):
        assert job.folder == f"pools/{job.name}" and job.overrides[-1] == f"hydra.sweep.subdir=pools/{job.name}"
        assert {"stage=generate", f"teacher={job.name}", "+experiment=long_vs_short"} <= set(job.overrides)
        assert [o for o in job.overrides if o.startswith("stage=")] == ["stage=generate"]
        pool_plan = sweep.plan(job.overrides)  # the pool job, composed as the launcher composes it
        assert pool_plan.roles == ("generation.teacher", "pool.teacher")
        assert pool_plan.key("pool.teacher") == grid_plan.key(f"pool.{role}")
        assert pool_plan.key("generation.teacher") == grid_plan.key(f"generation.{role}")
    grid = made.of("grid")
    assert [(j.name, j.folder, j.array, j.after, j.dependency) for j in grid] == [
        (str(n), str(n), 0, ("pool:qwq32b", "pool:qwen32b"), "afterok") for n in range(4)]
    [report] = made.of("report")
    assert report.overrides[-3:] == ["stage=report", f"report.sweep={sweep.dir}", "hydra.sweep.subdir=report"]
    assert "+experiment=long_vs_short" in report.overrides and not any(o.startswith("student=") for o in report.overrides)
    assert report.resources == {"gpus_per_node": None, "cpus_per_task": 2, "mem_gb": 16, "timeout_min": 240,
                                "name": "mixgap_report"}
    assert (report.after, report.dependency, report.num) == (("array:0",), "afterany", 6)
    lines = dag.study_lines(made, sweep.points)
    assert lines[0] == (f"the study on hydra/launcher=slurm ({sweep.dir}): 2 pool job(s), 4 grid job(s) in 1 array(s), "
                        "1 report job(s)")
    assert lines[1].startswith("  pool qwq32b: 4 GPU(s), 16 CPU(s), all the node's memory, 1440 min; stage=generate -> "
                               "pools/qwq32b; generation ")
    assert lines[3] == ("  array 0 (4 grid job(s)): 8 GPU(s), 32 CPU(s), all the node's memory, 1440 min; after ok: "
                        "pool qwq32b, pool qwen32b")
    assert lines[4] == "    grid 0 (student=qwen0.5b mix.weight=0.0) -> 0"
    assert lines[-1] == "  report: the CPU, 2 CPU(s), 16 GB, 240 min; stage=report -> report; after any: array 0"


def test_a_study_under_stage_plan_shows_its_pool_jobs_with_unresolved_revisions(tmp_path, kit, monkeypatch):
    """Offline with no Hugging Face cache, the teachers' revisions are unresolved: ``stage=plan`` still shows both
    pool jobs (their keys say 'unresolved'), and the same pool job, run, is refused in one line."""
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    for module, memo in ((models, "_REVISIONS"), (jobs, "_CHECKED")):
        monkeypatch.setattr(module, memo, {})
    sweep = Sweep(tmp_path, kit, ["+experiment=long_vs_short", "stage=plan"], [["student=qwen0.5b", "mix.weight=0.0"]])
    made = sweep.study()
    assert made.refusals == [] and [job.name for job in made.of("pool")] == ["qwq32b", "qwen32b"]
    pool, _, _ = job_config(sweep.compose(made.of("pool")[0].overrides))
    assert jobs.checked_plan(pool, planning=True).unresolved["pool.teacher"] == ["teacher"]
    with pytest.raises(ConfigError, match=r"^teacher.revision is needed: teacher.hf_id='Qwen/QwQ-32B-Preview' has no "):
        jobs.checked_plan(pool)


def test_grid_jobs_are_grouped_by_the_pools_they_wait_for(tmp_path, kit, hub_cached):
    """SLURM gives one dependency to a whole array: two strong teachers sharing a weak one make two arrays."""
    sweep = Sweep(tmp_path, kit, ["student=qwen0.5b", "data.missing_pool=wait"],
                  [["teacher@mix.strong=qwq32b"], ["teacher@mix.strong=r1_qwen32b"], ["teacher@mix.strong=qwq32b", "mix.weight=1"]])
    made = sweep.study()
    assert [j.name for j in made.of("pool")] == ["qwq32b", "qwen32b", "r1_qwen32b"]
    assert [(j.name, j.array, j.after) for j in made.of("grid")] == [
        ("0", 0, ("pool:qwq32b", "pool:qwen32b")), ("2", 0, ("pool:qwq32b", "pool:qwen32b")),
        ("1", 1, ("pool:r1_qwen32b", "pool:qwen32b"))]
    assert made.of("report")[0].after == ("array:0", "array:1")


def _build(store: Store, spec) -> None:
    def write(out, work):
        (out / "pool.jsonl").write_text('{"id": "p1"}\n')

    store.get_or_build(spec, write)


def test_a_pool_in_the_store_gets_no_job_and_no_dependency(tmp_path, kit, hub_cached):
    sweep = Sweep(tmp_path, kit, ["+experiment=long_vs_short", "student=qwen0.5b"], [["mix.weight=0.0"], ["mix.weight=1.0"]])
    plan = sweep.plan(sweep.points[0].overrides)
    _build(Store(sweep.cache), plan.specs["pool.strong"])
    made = sweep.study()
    assert [j.name for j in made.of("pool")] == ["qwen32b"]
    assert [j.after for j in made.of("grid")] == [("pool:qwen32b",), ("pool:qwen32b",)]
    assert made.kept == [f"pool qwq32b (mix.strong): in the store ({plan.key('pool.strong')})"]


def test_the_grid_teachers_command_line_fields_go_to_its_pool_job(tmp_path, kit, hub_cached):
    """mix.strong.sampling.max_new_tokens=1024 on the command line: the pool job generates with it (teacher.<field>=),
    so it builds the pool the grid job plans, not the teacher file's."""
    sweep = Sweep(tmp_path, kit, ["student=qwen0.5b", "mix.strong.sampling.max_new_tokens=1024"], [["mix.weight=0"]])
    [pool, _] = sweep.study().of("pool")
    assert "teacher.sampling.max_new_tokens=1024" in pool.overrides
    assert sweep.plan(pool.overrides).key("pool.teacher") == sweep.plan(sweep.points[0].overrides).key("pool.strong")


class FakeStore:
    def __init__(self, done):
        self.done = set(done)

    def is_done(self, key):
        return key in self.done


def test_a_rerun_resubmits_only_the_grid_jobs_not_done(tmp_path, kit, hub_cached):
    sweep = Sweep(tmp_path, kit, ["+experiment=long_vs_short", "student=qwen0.5b"], [["mix.weight=0.0"], ["mix.weight=1.0"]])
    plans = [checked_plan(p.cfg, p.overrides) for p in sweep.points]
    keys = [{role: plan.key(role) for role in plan.roles} for plan in plans]
    for num in (0, 1):
        (sweep.dir / str(num)).mkdir(parents=True)
        (sweep.dir / str(num) / "result.json").write_text(json.dumps({"status": "done", "artifacts": keys[num]}))

    def make(store):
        return dag.make_study(sweep.points, lambda o: job_config(sweep.compose(o))[:2], sweep.dir, "slurm",
                              {"gpus_per_node": 8, "cpus_per_task": 32, "mem_gb": 0, "timeout_min": 60}, lambda cfg: store)

    # job 0 done with every artifact in the store; job 1's result.json says done but its checkpoint is gone
    partly = make(FakeStore(set(keys[0].values()) | set(keys[1].values()) - {keys[1]["checkpoint"]}))
    assert [(j.kind, j.name, j.dependency) for j in partly.jobs] == [("grid", "1", ""), ("report", "report", "afterany")]
    assert partly.kept[-1] == "1 grid job(s) done (result.json done, every artifact in the store)"
    everything = FakeStore(set(keys[0].values()) | set(keys[1].values()))
    assert [(j.kind, j.dependency) for j in make(everything).jobs] == [("report", "")]  # no report.md yet
    (sweep.dir / "report").mkdir()
    (sweep.dir / "report" / "report.md").write_text("# report\n")
    done = make(everything)
    assert done.jobs == [] and done.kept == ["2 grid job(s) done (result.json done, every artifact in the store)",
                                             f"the report: {sweep.dir / 'report' / 'report.md'} is written and no grid job is left"]


def test_override_values_and_teacher_differences():
    assert [dag.override_value(v) for v in (None, True, 0.6, 64, "qwq32b", "a b", "null", [1, "a b"])] == [
        "null", "true", "0.6", "64", "qwq32b", "'a b'", "'null'", "[1,'a b']"]
    assert [dag.override_value(v) for v in ('say "x"', "a\nb", "it's", {"a": 1})] == [None, None, None, None]
    file = {"name": "qwq32b", "sampling": {"max_new_tokens": 100, "n": 1}, "prompt": "p"}
    mine = {"name": "long", "sampling": {"max_new_tokens": 64, "n": 1}, "prompt": "p", "cot": "long"}
    assert dag.teacher_overrides(file, mine) == ["teacher.name=long", "teacher.sampling.max_new_tokens=64", "teacher.cot=long"]
    assert dag.teacher_overrides(file, {**mine, "prompt": "two\nlines"}) is None  # the study is refused instead


def test_allocations_of_pool_and_report_jobs():
    node = {"gpus_per_node": 8, "cpus_per_task": 32, "mem_gb": 500, "timeout_min": 1440}
    assert dag.pool_resources(node, 4) == {"gpus_per_node": 4, "cpus_per_task": 16, "mem_gb": 250}
    assert dag.pool_resources(node, 2) == {"gpus_per_node": 2, "cpus_per_task": 8, "mem_gb": 125}
    assert dag.pool_resources({**node, "mem_gb": 0}, 16) == {"gpus_per_node": 8, "cpus_per_task": 32}  # at most the node
    assert dag.pool_resources({"gpus_per_node": None, "cpus_per_task": 1, "mem_gb": 6}, 4) == {}  # the CPU cluster's own
    assert dag.report_resources({"cpus_per_task": 1, "mem_gb": 6, "timeout_min": 20}) == {
        "gpus_per_node": None, "cpus_per_task": 1, "mem_gb": 6, "timeout_min": 20, "name": "mixgap_report"}
    assert dag.report_resources({**node, "mem_gb": 0})["mem_gb"] == 16


def _launcher(tmp_path, *overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=slurm", f"hydra.sweep.dir={tmp_path}/sweep", *overrides],
                      return_hydra_config=True)
    plugin = instantiate(cfg.hydra.launcher)
    plugin.config = cfg
    return plugin


def _script(executor, count=None) -> set[str]:
    if count:
        executor._executor.parameters["map_count"] = count
    text = executor._executor._make_submission_file_text("python -u -m submitit.core._submit x", "u")
    return {line for line in text.splitlines() if line.startswith("#SBATCH")}


def test_sbatch_lines_of_pool_grid_and_report_jobs(tmp_path):
    plugin = _launcher(tmp_path)
    pool = _script(plugin.executor(dag.pool_resources(plugin.params, 4), ""))
    assert {"#SBATCH --gpus-per-node=4", "#SBATCH --cpus-per-task=16", "#SBATCH --requeue"} <= pool
    assert not [line for line in pool if "dependency" in line or "kill-on-invalid-dep" in line]
    grid = _script(plugin.executor({}, "afterok:12:13"), count=20)
    assert {"#SBATCH --dependency=afterok:12:13", "#SBATCH --kill-on-invalid-dep=yes", "#SBATCH --requeue",
            "#SBATCH --gpus-per-node=8", "#SBATCH --array=0-19%20", "#SBATCH --job-name=mixgap_all"} <= grid
    report = _script(plugin.executor(dag.report_resources(plugin.params), "afterany:14"))
    assert {"#SBATCH --dependency=afterany:14", "#SBATCH --kill-on-invalid-dep=yes", "#SBATCH --cpus-per-task=2",
            "#SBATCH --mem=16GB", "#SBATCH --time=240", "#SBATCH --job-name=mixgap_report"} <= report
    assert not [line for line in report if "gpus" in line or "gres" in line]


def test_launch_study_submits_pools_first_and_wires_their_ids_into_the_dependencies(tmp_path, monkeypatch):
    plugin = _launcher(tmp_path)
    submitted = []

    class Job:
        def __init__(self, job_id):
            self.job_id, self.paths = job_id, type("P", (), {"stdout": Path(f"/log/{job_id}")})()

    def fake_submit(jobs, resources, dependency):
        base = 100 + len(submitted)
        submitted.append(([j.name for j in jobs], resources.get("gpus_per_node"), dependency))
        return [Job(f"{base}_{n}" if len(jobs) > 1 else str(base)) for n in range(len(jobs))]

    monkeypatch.setattr(plugin, "_submit", fake_submit)
    monkeypatch.setattr(study, "wait", lambda jobs, sweep, poll: [
        study.Outcome(j["kind"], j["name"], j["folder"], j["slurm_id"], "done") for j in jobs])
    made = dag.Study(tmp_path / "sweep", "slurm", dict(plugin.params), [
        dag.DagJob("pool", "a", 2, "pools/a", ["stage=generate"], {"gpus_per_node": 4}),
        dag.DagJob("pool", "b", 3, "pools/b", ["stage=generate"], {"gpus_per_node": 2}),
        dag.DagJob("grid", "0", 0, "0", ["mix.weight=0"], after=("pool:a", "pool:b"), dependency="afterok", array=0),
        dag.DagJob("grid", "1", 1, "1", ["mix.weight=1"], after=("pool:a", "pool:b"), dependency="afterok", array=0),
        dag.DagJob("report", "report", 4, "report", ["stage=report"], {"gpus_per_node": None}, ("array:0",), "afterany"),
    ])
    plugin.launch_study(made)
    assert submitted == [(["a"], 4, ""), (["b"], 2, ""), (["0", "1"], None, "afterok:100:101"),
                         (["report"], None, "afterany:102")]
    record = json.loads((tmp_path / "sweep" / "dag.json").read_text())["submissions"][-1]
    assert [(j["kind"], j["slurm_id"], j["after"]) for j in record["jobs"]] == [
        ("pool", "100", []), ("pool", "101", []), ("grid", "102_0", ["100", "101"]), ("grid", "102_1", ["100", "101"]),
        ("report", "103", ["102"])]
    assert [o["status"] for o in record["outcomes"]] == ["done"] * 5


def _job(kind, name, slurm_id, folder, after=(), submitted=1000.0):
    return {"kind": kind, "name": name, "slurm_id": slurm_id, "folder": folder, "after": list(after),
            "submitted": submitted, "log": None}


def _result(folder: Path, **fields):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "result.json").write_text(json.dumps(fields))


def test_a_failed_pool_job_names_the_grid_jobs_slurm_dropped(tmp_path):
    """SLURM states as ``squeue`` gives them on slurm-wlm 22.05: a pool job cancelled, its dependents dropped
    (CANCELLED with --kill-on-invalid-dep=yes, left PENDING without it), a grid job that failed on its own."""
    _result(tmp_path / "pools/short", status="done", started=1001.0)
    _result(tmp_path / "2", status="failed", started=1002.0, error="DataError: the mixture has no problems")
    _result(tmp_path / "3", status="done", started=10.0)  # an earlier submission's: not this job's
    jobs = [_job("pool", "long", "12", "pools/long"), _job("pool", "short", "13", "pools/short"),
            _job("grid", "0", "14_0", "0", ["12", "13"]), _job("grid", "1", "14_1", "1", ["12", "13"]),
            _job("grid", "2", "15", "2"), _job("grid", "3", "16", "3"), _job("report", "report", "17", "report", ["14"])]
    states = {"12": ("CANCELLED", "None"), "13": ("COMPLETED", "None"), "14_0": ("CANCELLED", study.NEVER),
              "14_1": ("PENDING", study.NEVER), "15": ("FAILED", "NonZeroExitCode"), "17": ("RUNNING", "None")}
    out = study.outcomes_of(jobs, tmp_path, lambda ids: states)
    assert [(o.name, o.status) for o in out] == [("long", "failed"), ("short", "done"), ("0", "dropped"),
                                                 ("1", "dropped"), ("2", "failed"), ("3", "unknown"), ("report", "running")]
    assert study.summary_lines(out, ["pool x (mix.weak): in the store (pool-1)"]) == [
        "  pool     2: 1 done, 1 failed",
        "  grid     4: 2 dropped, 1 failed, 1 unknown",
        "  report   1: 1 running",
        "  5 job(s) failed or were dropped:",
        "    pool long (SLURM job 12, pools/long): failed: cancelled",
        "    grid 0 (SLURM job 14_0, 0): dropped: not run, SLURM dropped it (DependencyNeverSatisfied): pool long (job 12) failed",
        "    grid 1 (SLURM job 14_1, 1): dropped: not run, SLURM dropped it (DependencyNeverSatisfied): pool long (job 12) failed",
        "    grid 2 (SLURM job 15, 2): failed: DataError: the mixture has no problems",
        "    grid 3 (SLURM job 16, 3): unknown: SLURM no longer lists it and it wrote no result.json since "
        "its submission",
        "  not resubmitted: pool x (mix.weak): in the store (pool-1)"]


def test_a_report_job_is_done_when_it_wrote_report_md_after_its_submission(tmp_path):
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "report.md").write_text("# r\n")
    now = time.time()
    job = _job("report", "report", "9", "report", submitted=now - 60)
    assert study.outcome(job, tmp_path, ("COMPLETED", "None"), now - 60, {}).status == "done"
    assert study.outcome(job, tmp_path, ("COMPLETED", "None"), now + 60, {}).why == "SLURM state COMPLETED, no new report.md"


def test_status_and_cancel_read_dag_json(tmp_path, monkeypatch):
    jobs = [_job("pool", "long", "12", "pools/long"), _job("grid", "0", "14_0", "0", ["12"])]
    study.add_submission(tmp_path, {"submitted": 1000.0, "jobs": jobs, "kept": []})
    states = {"12": ("RUNNING", "None"), "14_0": ("PENDING", "Dependency")}
    monkeypatch.setattr(study, "slurm_states", lambda ids: states)
    assert study.status_lines(tmp_path) == [f"study {tmp_path}: 2 job(s) in 1 submission(s)", "  pool     1: 1 running",
                                            "  grid     1: 1 pending"]
    cancelled = []
    assert study.cancel(tmp_path, cancelled.append)[0] == f"study {tmp_path}: cancelled 2 job(s) (scancel 12 14_0)"
    assert cancelled == [["12", "14_0"]]
    study.add_submission(tmp_path, {"submitted": 2000.0, "jobs": [], "kept": ["1 grid job(s) done"]})
    states.update({"12": ("COMPLETED", "None"), "14_0": ("COMPLETED", "None")})
    _result(tmp_path / "pools/long", status="done", started=1001.0)
    _result(tmp_path / "0", status="done", started=1002.0)
    assert study.status_lines(tmp_path)[1:] == ["  pool     1: 1 done", "  grid     1: 1 done",
                                                "  not resubmitted: 1 grid job(s) done"]
    assert study.cancel(tmp_path, cancelled.append) == [f"study {tmp_path}: no job is waiting or running; nothing to cancel"]


def test_status_needs_a_study_folder(tmp_path):
    with pytest.raises(ConfigError) as err:
        checked_plan(compose_cfg("stage=status"))
    assert str(err.value).startswith("study.sweep=None is not allowed with stage=status; give the study's folder")
    with pytest.raises(ConfigError) as err:
        checked_plan(compose_cfg("stage=cancel", f"study.sweep={tmp_path}"))
    assert str(err.value).startswith(f"study.sweep='{tmp_path}' holds no dag.json")


def test_the_report_reads_grid_jobs_not_pool_jobs(tmp_path):
    for folder in ("0/.hydra", "1/.hydra", "pools/qwq32b/.hydra", "report/.hydra"):
        (tmp_path / folder).mkdir(parents=True)
    assert [p.name for p in find_jobs(tmp_path)] == ["0", "1"]


def test_a_submission_failing_part_way_cancels_what_it_submitted(tmp_path, monkeypatch):
    import hydra_plugins.mixgap_launcher as launcher_module

    plugin = _launcher(tmp_path)
    calls, cancelled = [], []

    def fake_submit(jobs, resources, dependency):
        calls.append(jobs[0].name)
        if len(calls) == 3:
            raise RuntimeError("sbatch: error: Batch job submission failed: Invalid account")
        return [type("J", (), {"job_id": str(40 + len(calls)), "paths": type("P", (), {"stdout": "x"})()})()]

    monkeypatch.setattr(plugin, "_submit", fake_submit)
    monkeypatch.setattr(launcher_module.subprocess, "run", lambda cmd, **kw: cancelled.append(cmd))
    made = dag.Study(tmp_path / "sweep", "slurm", dict(plugin.params), [
        dag.DagJob("pool", "a", 2, "pools/a", []), dag.DagJob("pool", "b", 3, "pools/b", []),
        dag.DagJob("grid", "0", 0, "0", [], after=("pool:a", "pool:b"), dependency="afterok", array=0)])
    with pytest.raises(RuntimeError, match="Invalid account"):
        plugin.launch_study(made)
    assert cancelled == [["scancel", "41", "42"]] and not (tmp_path / "sweep" / "dag.json").exists()


def test_the_sweep_summary_names_the_jobs_that_did_not_end_done(tmp_path):
    from mixgap.plan.summary import study_summary

    outcomes = [study.Outcome("pool", "a", "pools/a", "12", "failed", "cancelled"),
                study.Outcome("grid", "0", "0", "13", "dropped", "not run")]
    study.add_submission(tmp_path, {"submitted": 1000.0, "jobs": [{}, {}], "kept": [], "outcomes": [o.__dict__ for o in outcomes]})
    assert study_summary(tmp_path, since=999.0) == ([
        "the study's 2 SLURM job(s) (dag.json):", "  pool     1: 1 failed", "  grid     1: 1 dropped",
        "  2 job(s) failed or were dropped:", "    pool a (SLURM job 12, pools/a): failed: cancelled",
        "    grid 0 (SLURM job 13, 0): dropped: not run"], True)
    assert study_summary(tmp_path, since=1001.0) == ([], False)  # an earlier command's study
    study.add_submission(tmp_path, {"submitted": 2000.0, "jobs": [], "kept": ["2 grid job(s) done"]})
    assert study_summary(tmp_path, since=1999.0) == (["the study (dag.json): nothing submitted (why: above)"], False)
