"""Every sweep point checked before the first job starts: the logic of the multirun sweeper.

``conf/config.yaml`` sets ``hydra.sweeper._target_`` to ``hydra_plugins.mixgap_sweeper.PreflightSweeper``
(Hydra instantiates sweepers only from the ``hydra_plugins`` package; that class is a thin
``BasicSweeper`` subclass calling the functions here; experiments still set ``hydra.sweeper.params``).
Before the launcher starts anything, the sweeper composes every job's config
(``config_loader.load_sweep_config``, as the launcher will), runs :func:`mixgap.plan.jobs.checked_plan` (the
job's checks and plan, once per process) and :func:`mixgap.plan.machine.plan_job` (for what the chosen launcher gives a job: this
machine's CUDA devices or the CPU under the basic launcher, a cluster launcher's GPUs) on each, and refuses the
whole sweep with one line per bad job and field: a SLURM array is never submitted with a job that would fail.
With ``stage=plan`` nothing is ever submitted: the jobs run in the calling process (the basic launcher's
semantics) whatever ``hydra/launcher`` says, each planned for the resources that launcher would give it.

On a SLURM launcher (``hydra_plugins.mixgap_launcher.StudyLauncher``) the sweep is a study of dependent jobs
(:func:`study_of`, :mod:`mixgap.plan.dag`): its teacher pools, the grid, the report; ``stage=plan`` prints it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from mixgap.core.errors import ConfigError
from mixgap.core.store import Store
from mixgap.plan.dag import Point, Study, make_study
from mixgap.plan.jobs import checked_plan
from mixgap.plan.machine import Allocation, job_allocation, plan_job


def job_config(sweep_config: DictConfig) -> tuple[DictConfig, list[str], Allocation]:
    """The task config of one composed sweep point (without ``hydra``), its task overrides and its allocation
    (:func:`mixgap.plan.machine.job_allocation` of its ``hydra/launcher``)."""
    overrides = list(sweep_config.hydra.overrides.task)
    choice = sweep_config.hydra.runtime.choices.get("hydra/launcher")
    gpus = job_allocation(choice, sweep_config.hydra.launcher)
    cfg = copy.deepcopy(sweep_config)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg, overrides, gpus


def check_job(cfg: DictConfig, overrides: Sequence[str], gpus: Allocation | int) -> tuple[str | None, dict[str, Any] | None]:
    """``(validation error or None, preflight or None)`` for one job config on ``gpus`` (an allocation, or a GPU
    count of ``cluster.gpu_memory_gb`` GPUs); reads the store, builds nothing. The job's checks and plan are
    :func:`mixgap.plan.jobs.checked_plan`'s, shared with the job itself when it runs in this process."""
    try:
        plan = checked_plan(cfg, overrides)
    except ConfigError as err:
        return str(err), None
    if plan is None:  # a reader (report, analyze): no plan, no preflight
        return None, None
    store = existing_store(cfg)
    allocation = gpus if isinstance(gpus, Allocation) else Allocation(None, gpus)
    return None, plan_job(cfg, plan, allocation, store)


def sweep_refusals(checked: Sequence[tuple[Sequence[str], str | None, dict[str, Any] | None]], plan_only: bool) -> list[str]:
    """One line per refused job and field: ``job <n> (<overrides>): <reason>``.

    Validation errors refuse on every stage; preflight refusals only when the sweep runs (with
    ``stage=plan`` every job is planned and its refusals printed by the sweep summary instead).
    """
    lines = []
    for num, (overrides, error, report) in enumerate(checked):
        reasons = [error] if error else ([] if plan_only or report is None else report["refusals"])
        label = " ".join(o for o in overrides if not o.startswith("hydra"))
        lines.extend(f"job {num} ({label}): {reason}" for reason in reasons)
    return lines


def submission_error(launcher: str, err: BaseException) -> str:
    """The one line for a launcher that could not submit: the launcher and the first line of its error
    (submitit raises ``FailedJobError(sbatch's stderr)``, or ``RuntimeError`` when there is no ``srun``)."""
    text = str(err).strip().splitlines()
    first = text[0] if text else type(err).__name__
    return f"hydra/launcher={launcher} could not submit the sweep (nothing was started): {first}"


def existing_store(cfg: DictConfig) -> Store | None:
    """The job's store (``paths.cache``), None while its folder does not exist (``Store()`` would make it)."""
    return Store(cfg.paths.cache) if Path(cfg.paths.cache).is_dir() else None


def study_of(points: Sequence[Point], compose: Callable[[list[str]], DictConfig], master: DictConfig) -> Study:
    """The study of a checked sweep on a SLURM launcher (:func:`mixgap.plan.dag.make_study`): ``compose`` is the
    sweeper's ``load_sweep_config`` of one job's overrides, ``master`` the multirun's config (its sweep dir and
    launcher)."""
    launcher = master.hydra.runtime.choices.get("hydra/launcher", "slurm")
    params = OmegaConf.to_container(master.hydra.launcher, resolve=True)
    return make_study(points, lambda overrides: job_config(compose(overrides))[:2], Path(master.hydra.sweep.dir),
                      launcher, params, existing_store)
