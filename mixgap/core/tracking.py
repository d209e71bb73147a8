"""Experiment tracking: a ``Tracker`` protocol, ``NullTracker`` (tests) and ``WandbTracker`` (one run per job).

One W&B run per Hydra job: group = the sweep folder, job_type = the stage, config = the resolved config.
The run's id is derived from the job's identity (:func:`run_id`: its coordinates and its folder), and the run is
started with ``resume="allow"``, so a requeued or rerun job continues its own run instead of splitting its curves
over several. Runs are offline when no API key is set (``wandb sync`` uploads them later; every attempt's
offline folder carries the same run id). The pipeline calls ``finish()`` in a ``finally`` block, so a job that
raises still closes its run (marked failed). W&B is never read back: the report reads job folders and the store only.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from mixgap.core.config import to_container
from mixgap.core.runrecord import job_identity


class Tracker(Protocol):
    """What stages may report. Every method must be cheap and never raise into the pipeline."""
    run_id: str | None

    def log(self, metrics: Mapping[str, float], step: int | None = None) -> None: ...

    def log_table(self, name: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None: ...

    def log_image(self, name: str, path: str | os.PathLike) -> None: ...

    def summary(self, values: Mapping[str, Any]) -> None: ...

    def finish(self, exit_code: int = 0) -> None: ...


class NullTracker:
    """Tracks nothing (tests, `tracking.backend=none`)."""
    run_id = None

    def log(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        pass

    def log_table(self, name: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        pass

    def log_image(self, name: str, path: str | os.PathLike) -> None:
        pass

    def summary(self, values: Mapping[str, Any]) -> None:
        pass

    def finish(self, exit_code: int = 0) -> None:
        pass


def wandb_mode(setting: str) -> str:
    """The W&B mode for ``tracking.mode``: ``auto`` honours ``WANDB_MODE``, else online only with an API key."""
    if setting != "auto":
        return setting
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


def run_id(cfg: Any, run_dir: str | os.PathLike, job_type: str) -> str:
    """The W&B run id of a job: the first 16 hex digits of the SHA-256 of its identity
    (:func:`mixgap.core.runrecord.job_identity`: stage, student, teachers, weight, seeds, benchmarks), its
    ``job_type`` and its folder (resolved). A requeued job (SLURM puts it back into the same folder) and a rerun of
    the same command in the same folder get the same id; two jobs of a sweep differ in their folders. (W&B ids
    are letters and digits; an offline run's folder is ``offline-run-<time>-<id>``.)"""
    who = {"job": job_identity(cfg), "job_type": job_type, "folder": str(Path(run_dir).expanduser().resolve())}
    digest = hashlib.sha256(json.dumps(who, sort_keys=True, default=str).encode()).hexdigest()
    return digest[:16]


class WandbTracker:
    """One W&B run, continued when a run of the same ``run_id`` exists (``resume="allow"``). ``wandb`` is imported
    here only, so jobs without tracking never pay for it."""
    def __init__(
        self,
        *,
        project: str,
        entity: str | None,
        group: str,
        job_type: str,
        name: str,
        config: Mapping[str, Any],
        run_dir: str | os.PathLike,
        mode: str = "auto",
        run_id: str | None = None,
    ):
        import wandb  # heavy: wandb, imported only when used

        self._wandb = wandb
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=project,
            entity=entity,
            group=group,
            job_type=job_type,
            name=name,
            config=dict(config),
            dir=str(run_dir),
            mode=wandb_mode(mode),
            reinit="create_new",  # a fresh run per job, also when jobs share one process
            id=run_id,
            resume="allow",  # the job's own run again after a requeue or a rerun
        )
        self.run_id = self.run.id

    def log(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self.run.log(dict(metrics), step=step)

    def log_table(self, name: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.run.log({name: self._wandb.Table(columns=list(columns), data=[list(r) for r in rows])})

    def log_image(self, name: str, path: str | os.PathLike) -> None:
        self.run.log({name: self._wandb.Image(str(path))})

    def summary(self, values: Mapping[str, Any]) -> None:
        self.run.summary.update(dict(values))

    def finish(self, exit_code: int = 0) -> None:
        self.run.finish(exit_code=exit_code)


def make_tracker(cfg: Any, *, group: str, job_type: str, name: str, run_dir: str | os.PathLike) -> Tracker:
    """The tracker a job's config asks for (``tracking.backend``: ``wandb`` or ``none``); a W&B run's id is the
    job's (:func:`run_id` of ``cfg``, ``run_dir`` and ``job_type``)."""
    if cfg.tracking.backend == "none" or cfg.tracking.mode == "disabled":
        return NullTracker()
    return WandbTracker(
        project=cfg.tracking.project,
        entity=cfg.tracking.entity,
        group=group,
        job_type=job_type,
        name=name,
        config=to_container(cfg),
        run_dir=run_dir,
        mode=cfg.tracking.mode,
        run_id=run_id(cfg, run_dir, job_type),
    )
