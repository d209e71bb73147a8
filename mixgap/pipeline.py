"""One Hydra job: compute the artifact keys it needs (the plan), then build what is missing, stage by stage.

Stages (``stage=``), each making everything before it as needed through the store:

- ``plan``: print the artifacts the job needs and which already exist; loads no model.
- ``prepare``: the student's weights (a GGUF file is converted once into the store).
- ``generate``: teacher pools: ``teacher=<name>`` alone, else the job's strong and weak teachers.
- ``mix``: the mixture at ``mix.weight``; the decontamination check against the job's benchmarks.
- ``train``: the fine-tuned student (checkpoint).
- ``evaluate``: the untuned student on the job's benchmarks (the reference row; once per student).
- ``all``: train, then evaluate the untuned and the fine-tuned student (with ``predict.enabled``, the
  learnability prediction first).
- ``predict``: learnability before training: the untuned student's surprisal, rank and RSR on both pools
  (``mixgap.stages.predict``; one artifact per student x pool, shared by every mix weight).
- ``export``: one built artifact (``export.artifact``) as a Hugging Face dataset folder (``mixgap.stages.export``).
- ``report`` / ``analyze``: read finished sweeps (``mixgap.results.report``, ``mixgap.results.analysis``).
- ``status`` / ``cancel``: where a study submitted to SLURM stands, or cancel it (``mixgap.plan.study``).

The plan (:func:`mixgap.plan.jobs.make_plan`, from the one table of stages :data:`mixgap.plan.table.TABLE`) is
computed once and handed to the preflight and to the build, a loop over the plan's steps, each calling its stage
module's ``run(ctx, roles)`` (the one stage contract, :mod:`mixgap.core.stage`), so the plan and the run can never
disagree. A job writes ``result.json``
(atomically) into its Hydra output folder; the report reads that and the store.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from mixgap.core import conftree, runrecord, tracking
from mixgap.core.config import to_container
from mixgap.core.conftree import ConfTree
from mixgap.core.errors import filesystem_error
from mixgap.core.files import probe_writable, write_json_atomic
from mixgap.core.stage import BuildContext
from mixgap.core.store import Store
from mixgap.plan.jobs import JobPlan, checked_plan
from mixgap.plan.machine import Allocation, enforce, job_allocation, plan_job
from mixgap.plan.printout import log_preflight
from mixgap.plan.table import READERS

log = logging.getLogger(__name__)


def _log_plan(rows: list[dict[str, Any]]) -> None:
    """One line per planned artifact: role, key, done or to build; a key holding a Hub model whose revision is
    unresolved says so (``stage=plan`` only: every other stage refuses it, :func:`mixgap.plan.jobs.refuse_unresolved`)."""
    for row in rows:
        unresolved = row.get("unresolved")
        note = f"; revision unresolved: {', '.join(f'{f}.revision' for f in unresolved)}" if unresolved else ""
        log.info("  %-28s %-30s %s%s", row["role"], row["key"], "done" if row["done"] else "to build", note)
    fields = sorted({f for row in rows for f in row.get("unresolved", ())})
    if fields:
        log.warning("keys above hold revision 'unresolved' for %s (the Hub unreachable and the model not in the Hugging "
                    "Face cache): other stages refuse the job until %s names a commit or the Hub is reachable",
                    ", ".join(fields), " / ".join(f"{f}.revision" for f in fields))


def check_command_line(overrides: Sequence[str], tree: ConfTree | None = None) -> None:
    """The job's checks before Hydra makes its output folder (``launch.py``, a single job): its config composed as
    Hydra will from the conf tree ``tree`` (default: the checkout's; :func:`mixgap.core.conftree.from_command_line`
    gives the command line's, with ``--config-dir`` and ``hydra.searchpath``), without the ``hydra`` node, then
    :func:`mixgap.plan.jobs.checked_plan`, whose result the job itself reuses when Hydra runs it in this process.

    Raises:
        ConfigError: one line naming the field, the value and what is allowed. A config Hydra itself cannot
            compose is left to Hydra (its own message).
    """
    tree = tree or conftree.checkout()
    task = [o for o in overrides if not o.lstrip("+~").startswith("hydra")]
    try:
        cfg = conftree.compose(task, tree)
    except Exception:  # noqa: BLE001 (Hydra's own composition error: Hydra prints it when it composes)
        return
    checked_plan(cfg, task, tree)


def check_output_folder(overrides: Sequence[str], tree: ConfTree, multirun: bool) -> None:
    """Refuse, in one line, a job folder Hydra could not make (``hydra.run.dir``, or ``hydra.sweep.dir`` with
    ``-m``, as composed from ``tree``): its nearest existing folder is probed (:func:`mixgap.core.files.probe_writable`)
    before Hydra writes ``.hydra/`` there. A folder whose name cannot be resolved before the job runs is left to Hydra.

    Raises:
        FileSystemError: that folder is read-only, not ours, or on a full disk (:func:`mixgap.core.errors.filesystem_error`).
    """
    try:
        hydra = conftree.compose(overrides, tree, hydra=True, multirun=multirun).hydra
        folder = Path(str(hydra.sweep.dir if multirun else hydra.run.dir))
    except Exception:  # noqa: BLE001 (Hydra's own error, or an interpolation only a running job resolves)
        return
    try:
        probe_writable(folder)
    except OSError as err:
        line = filesystem_error(err, {"hydra.sweep.dir" if multirun else "hydra.run.dir": folder})
        if line is None:
            raise
        raise line from err


def launch_job(cfg: DictConfig, job_dir: str | Path, *, group: str, overrides: Sequence[str], launcher: str | None,
               launcher_cfg: DictConfig | None, multirun: bool) -> dict[str, Any]:
    """One job as ``launch.py`` starts it (:func:`run_job`), on what its ``hydra/launcher`` choice ``launcher`` and
    config give it (:func:`mixgap.plan.machine.job_allocation`: this machine's CUDA devices, or the CPU, under the
    basic launcher). A single ``stage=plan`` job whose preflight refuses raises, after writing ``result.json``;
    a multirun's summary lists every job's refusals instead.

    Raises:
        MixgapError: what :func:`run_job` raises; ``PreflightRefused`` for such a ``stage=plan`` job;
            :class:`~mixgap.core.errors.FileSystemError` for a write the store or the job folder refused (a full
            disk, a read-only file system, a folder not ours: :func:`mixgap.core.errors.filesystem_error`; any
            other ``OSError`` is raised as it is).
    """
    try:
        result = run_job(cfg, job_dir, group=group, overrides=overrides, gpus=job_allocation(launcher, launcher_cfg))
    except OSError as err:
        line = filesystem_error(err, {"paths.cache": cfg.paths.cache, "hydra.run.dir": job_dir})
        if line is None:
            raise
        raise line from err
    if result.get("preflight") and not multirun:
        enforce(result["preflight"])
    return result


def run_reader(cfg: DictConfig) -> dict[str, Any]:
    """``stage=report`` / ``stage=analyze`` (read finished sweeps; their tracker run is grouped with the first sweep),
    ``stage=status`` / ``stage=cancel`` (a submitted study, :mod:`mixgap.plan.study`)."""
    reader = READERS[cfg.stage]
    module, name = reader.module, reader.name
    sweeps = to_container(cfg[reader.node].sweep)
    group = str(sweeps if isinstance(sweeps, str) else (sweeps or [""])[0])

    def tracker_for(out: Path) -> Any:
        return tracking.make_tracker(cfg, group=group, job_type=cfg.stage, name=name, run_dir=out)

    return module.run(cfg, Store(cfg.paths.cache), tracker_for)


def run_job(
    cfg: DictConfig, job_dir: str | Path, *, group: str | None = None, overrides: Sequence[str] = (),
    gpus: Allocation | int | None = None,
) -> dict[str, Any]:
    """Check and plan (:func:`mixgap.plan.jobs.checked_plan`, once per process), preflight, then run ``cfg.stage``
    for one job and write ``<job_dir>/result.json``.

    Returns:
        The result dict (also written): ``status``, ``job`` (identity), ``artifacts`` (role -> key),
        ``scores``/``untuned`` (benchmark -> scores), ``timings`` (seconds per step), ``plan``, ``preflight``.

    Raises:
        MixgapError: one line per reason the job cannot run here: ``ConfigError`` before any work, for a bad
            config value, or (stage other than plan) the preflight's refusals
            (:class:`mixgap.plan.machine.PreflightRefused`, :func:`check_preflight`); ``PoolMissing``,
            ``DataError``, ``ModelSourceError``, ``BackendUnavailable``, ``StoreError`` while it builds.
    """
    job_plan = checked_plan(cfg, overrides)
    job_dir = Path(job_dir)
    if job_plan is None:  # a reader: report, analyze
        return run_reader(cfg)
    store = Store(cfg.paths.cache)
    runrecord.check_store(job_dir, group, store.root)
    result: dict[str, Any] = {"status": "running", "job": runrecord.job_identity(cfg), "store": str(store.root),
                              "timings": {}}
    if cfg.stage != "plan":
        runrecord.start(job_dir, result)  # status running before any work
    try:
        rows = job_plan.rows(store)
        result["plan"] = rows
        log.info("job %s: stage=%s, %d artifacts", job_dir.name, cfg.stage, len(rows))
        _log_plan(rows)
        result["preflight"] = check_preflight(cfg, job_plan, store, gpus)
        if result["job"]["student_size_b"] is None:  # no size_b in the student's YAML: its planned count
            result["job"]["student_size_b"] = result["preflight"].get("student_params_b")
    except Exception as err:  # a refused job: never left "running"
        if cfg.stage != "plan":
            result.update(status="failed", error=f"{type(err).__name__}: {err}"[:500])
            write_json_atomic(job_dir / runrecord.RESULT, result)
        raise
    if cfg.stage == "plan":
        result["status"] = "planned"
        write_json_atomic(job_dir / runrecord.RESULT, result)
        return result
    # a rerun that builds nothing (every planned artifact finished) adds no near-empty tracker run
    tracker = (tracking.NullTracker() if rows and all(row["done"] for row in rows) else
               tracking.make_tracker(cfg, group=group or str(job_dir.parent), job_type=cfg.stage, name=job_dir.name,
                                     run_dir=job_dir))
    exit_code = 1
    try:
        with runrecord.interruptible(result):
            result.update(build(cfg, store, tracker, job_plan, result["preflight"]["decisions"], result["timings"]))
        result["reused_build_s"] = runrecord.reused_build_times(store, rows)
        result["status"] = "done"
        result["wandb_run_id"] = tracker.run_id
        exit_code = 0
    except Exception as err:
        result["error"] = f"{type(err).__name__}: {err}"[:500]
        raise
    finally:
        if result["status"] == "running":
            result["status"] = "failed"
        write_json_atomic(job_dir / runrecord.RESULT, result)
        tracker.finish(exit_code=exit_code)
    return result


def check_preflight(cfg: DictConfig, job_plan: JobPlan, store: Store, gpus: Allocation | int | None) -> dict[str, Any]:
    """The job's preflight on its allocation (:func:`mixgap.plan.machine.plan_job`); refuses a non-plan job that
    cannot run there with every reason (:class:`mixgap.plan.machine.PreflightRefused`).

    ``gpus``: the allocation (``launch.py``: :func:`mixgap.plan.machine.job_allocation`), a GPU count of
    ``cluster.gpu_memory_gb`` GPUs, or None: the CPU (GPU memory and tensor parallelism are not checked, and the
    evaluation's tensor parallel size is not a decision).
    """
    allocation = gpus if isinstance(gpus, Allocation) else Allocation(None, gpus or 0)
    pf = plan_job(cfg, job_plan, allocation, store)
    log_preflight(pf)
    if cfg.stage != "plan":
        enforce(pf)
    return pf


def build(cfg: DictConfig, store: Store, tracker: Any, job_plan: JobPlan, decisions: dict[str, Any],
          timings: dict[str, float]) -> dict[str, Any]:
    """Build every role of the plan, step by step (each step's stage ``run``, which ends with its receipt line,
    :meth:`mixgap.core.stage.BuildContext.receipt`; ``made <roles>`` for a stage that logs none); returns
    ``artifacts``, ``counts`` and what the stages reported (``scores``, ``untuned``, ``learnability``, ``receipts``).

    Raises:
        RuntimeError: a stage's ``run`` returned without recording a role of its step (``ctx.paths`` or
            ``ctx.values``): the stage breaks the contract.
    """
    ctx = BuildContext(cfg, store, tracker, job_plan.specs, decisions)
    for step in job_plan.steps:
        with timed(timings, step.name, store):
            step.module.run(ctx, step.roles)
        missing = [role for role in step.roles if role not in ctx.paths and role not in ctx.values]
        if missing:
            raise RuntimeError(f"step {step.name} ({step.module.__name__}) did not record {', '.join(missing)}")
        if step.name not in ctx.result.get("receipts", {}):  # a stage that says nothing still ends with a line
            ctx.receipt(step.name, f"made {', '.join(step.roles)}", step.roles)
    return {"artifacts": {r: job_plan.key(r) for r in job_plan.roles}, **ctx.result}


@contextmanager
def timed(timings: dict[str, float], name: str, store: Store | None = None) -> Iterator[None]:
    """Add the wall seconds of the block to ``timings[name]`` (also when it raises); with ``store``, the
    seconds it waited for other processes' locks go to ``timings["wait.<name>"]`` instead."""
    start, waited = time.perf_counter(), store.wait_s if store is not None else 0.0
    log.info("stage %s ...", name)
    try:
        yield
    finally:
        wait = (store.wait_s - waited) if store is not None else 0.0
        log.info("stage %s: %.0f s", name, time.perf_counter() - start)
        timings[name] = round(timings.get(name, 0.0) + time.perf_counter() - start - wait, 3)
        if wait:
            timings[f"wait.{name}"] = round(timings.get(f"wait.{name}", 0.0) + wait, 3)
