"""A job's run record: ``result.json`` says ``running`` from the first moment, ``interrupted`` after a signal,
``failed`` after an error, and ``done`` only after every artifact of the stage is finished.

- :func:`start` stamps the record (start time, host, pid, SLURM job id when present) and writes it with
  ``status: running`` before any work, so a job killed without a chance to write (SIGKILL, OOM, power) never
  leaves an earlier run's ``done`` behind.
- :func:`interruptible` turns SIGTERM (and Ctrl-C's SIGINT) into :class:`Interrupted`, records the job as
  ``interrupted`` (logged "interrupted; rerun to resume") and re-raises, so the process exits non-zero.
  Under submitit (SLURM) SIGTERM stays submitit's: it deliberately bypasses SIGTERM so that its USR2 handler
  (``checkpoint_and_try_requeue``) can requeue the job; the ``SystemExit`` that handler ends with is
  recorded as ``interrupted`` (requeued) and re-raised untouched.
- :func:`check_store` refuses a job whose store (``paths.cache``) differs from the one the earlier jobs of
  its sweep folder used: their results would point into two stores and the report would mix them.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mixgap.core.errors import ConfigError
from mixgap.core.files import write_json_atomic

log = logging.getLogger(__name__)
RESULT = "result.json"
UNFINISHED = ("running", "interrupted", "failed")  # statuses the report counts apart and never averages


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGINT arrived while the job ran; ``signum`` is the signal's number."""

    def __init__(self, signum: int):
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


def job_identity(cfg: Any) -> dict[str, Any]:
    """The coordinates of a job in the study, recorded in its ``result.json`` (``job``): what the report groups
    and compares by, and each benchmark's label (``conf/benchmark/<name>.yaml`` ``label``). ``student_size_b``: the
    YAML's ``size_b``, else its ``arch.params_b``, else None (the job fills it from its plan's shape). ``strategy``
    (``mix.strategy``, :mod:`mixgap.stages.mix`) only when not ``fixed``: a fixed job's identity, and so its W&B run
    id (:func:`mixgap.core.tracking.run_id`), is what it was before the field existed."""
    strategy = cfg.mix.get("strategy", "fixed")
    return {
        "stage": cfg.stage,
        "student": cfg.student.name,
        "student_family": cfg.student.family,
        "student_size_b": cfg.student.size_b if cfg.student.size_b is not None else (cfg.student.arch or {}).get("params_b"),
        "strong": cfg.mix.strong.name,
        "weak": cfg.mix.weak.name,
        "strong_cot": cfg.mix.strong.cot,
        "weight": cfg.mix.weight,
        "mix_seed": cfg.mix.seed,
        "finetune_mode": cfg.finetune_mode.mode,
        "seed": cfg.seed,
        "benchmarks": list(cfg.benchmark),
        "benchmark_labels": {name: (b.get("label") or name) for name, b in cfg.benchmark.items()},
    } | ({} if strategy == "fixed" else {"strategy": strategy})


def slurm_job_id() -> str | None:
    """``<array job>_<task>`` for an array task, else ``SLURM_JOB_ID``; None outside SLURM."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID")


def start(job_dir: str | Path, result: dict[str, Any]) -> None:
    """Stamp ``result`` (``started`` epoch seconds, ``host``, ``pid``, ``slurm_job_id``), set ``status:
    running`` and write it to ``<job_dir>/result.json`` atomically, replacing any earlier run's record."""
    result.update({"status": "running", "started": time.time(), "host": socket.gethostname(), "pid": os.getpid(),
                   "slurm_job_id": slurm_job_id()})
    write_json_atomic(Path(job_dir) / RESULT, result)


def _submitit_owns_sigterm() -> bool:
    handler = signal.getsignal(signal.SIGTERM)
    owner = getattr(handler, "__self__", None)
    return type(owner).__module__.startswith("submitit") if owner is not None else False


@contextmanager
def interruptible(result: dict[str, Any]) -> Iterator[None]:
    """Run the block with SIGTERM raising :class:`Interrupted` (unless submitit owns SIGTERM, see the module
    docstring); on SIGTERM, SIGINT or a ``SystemExit`` from inside (submitit's requeue) set
    ``result["status"] = "interrupted"`` and ``result["interrupted"] = {"signal", "at"}``, log, re-raise.
    The previous SIGTERM handler is restored on exit. Only usable from the main thread (``signal.signal``)."""

    def on_sigterm(signum: int, _frame: Any) -> None:
        raise Interrupted(signum)

    previous = None
    if not _submitit_owns_sigterm():
        previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    except (KeyboardInterrupt, SystemExit) as err:  # Interrupted is a KeyboardInterrupt
        name = (signal.Signals(err.signum).name if isinstance(err, Interrupted)
                else "SIGINT" if isinstance(err, KeyboardInterrupt) else f"exit {err.code} (submitit requeue?)")
        result["status"] = "interrupted"
        result["interrupted"] = {"signal": name, "at": time.time()}
        log.warning("job interrupted by %s; rerun to resume (finished artifacts are kept, training resumes "
                    "from its last checkpoint)", name)
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def check_store(job_dir: str | Path, group: str | Path | None, store_root: str | Path) -> None:
    """Refuse a job whose store differs from the one its sweep folder's earlier jobs used.

    Reads ``result.json`` of the job folder itself and, in a multirun (``group`` is the sweep folder, not the
    job folder), of its sibling job folders; compares their ``store`` with ``store_root`` (resolved).

    Raises:
        ConfigError: one line naming the folder, both stores and what to do.
    """
    job_dir, mine = Path(job_dir), str(Path(store_root).expanduser().resolve())
    folders = [job_dir]
    if group is not None and Path(group).resolve() != job_dir.resolve() and Path(group).is_dir():
        folders += sorted(p for p in Path(group).iterdir() if p.is_dir() and p != job_dir)
    for folder in folders:
        path = folder / RESULT
        try:
            theirs = json.loads(path.read_text()).get("store") if path.is_file() else None
        except (OSError, ValueError):
            continue
        if theirs and str(Path(theirs).resolve()) != mine:
            raise ConfigError(
                f"paths.cache={mine!r} differs from the store {theirs!r} that {path} used; a sweep folder holds "
                f"jobs of one store: rerun with paths.cache={theirs} or give a new hydra.sweep.dir"
            )


def describe(result: dict[str, Any]) -> str:
    """A one-line reading of an unfinished record for the report, e.g. ``status 'interrupted' (SIGTERM at
    10:02:03; rerun to resume)`` or ``status 'running' (pid 812 on host h, started 10:00:00; not alive)``."""
    status = result.get("status", "missing")
    when = lambda t: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "?"  # noqa: E731
    if status == "interrupted":
        info = result.get("interrupted", {})
        return f"status 'interrupted' ({info.get('signal', '?')} at {when(info.get('at'))}; rerun to resume)"
    if status == "running":
        pid, host = result.get("pid"), result.get("host")
        alive = ""
        if pid and host == socket.gethostname():
            try:
                os.kill(int(pid), 0)
                alive = "; still alive"
            except ProcessLookupError:
                alive = "; not alive: killed without a record, rerun to resume"
            except PermissionError:
                alive = "; still alive"
        slurm = f", SLURM job {result['slurm_job_id']}" if result.get("slurm_job_id") else ""
        return f"status 'running' (pid {pid} on host {host}{slurm}, started {when(result.get('started'))}{alive})"
    if status in ("failed", "unreadable") and result.get("error"):
        return f"status 'failed' ({result['error']})"
    return f"status {status!r}"


def reused_build_times(store: Any, rows: list[dict[str, Any]]) -> dict[str, float]:
    """``{role: seconds}`` of the artifacts that were already finished when the job planned (``rows``:
    :meth:`mixgap.plan.jobs.JobPlan.rows`), read from their manifests: ``wall_s`` plus, for completions,
    ``generation_s`` (their share of the engine pass that generated them, recorded apart because their ``wall_s``
    is the writing of the file only). A cached rerun keeps what each reused artifact cost to build beside its own ``timings``,
    instead of reporting zeros."""
    out = {}
    for row in rows:
        if row.get("done") and store.is_done(row["key"]):
            manifest = store.manifest(row["key"])
            if manifest.get("wall_s") is not None:
                out[row["role"]] = round(manifest["wall_s"] + (manifest.get("generation_s") or 0.0), 3)
    return out
