"""A submitted study read back: its ``dag.json`` (what the SLURM launcher submitted, :mod:`mixgap.plan.dag`), the
jobs' states in SLURM (``squeue``, then ``sacct`` for jobs ``squeue`` no longer lists) and their ``result.json``
files; ``stage=status`` prints where it stands, ``stage=cancel`` cancels what is still queued or running
(``study.sweep=<sweep dir>``, :func:`run`).

``dag.json`` (written atomically by the launcher) holds ``{"sweep", "submissions": [...]}``; each submission has
``submitted`` (epoch seconds), ``jobs`` (``kind``, ``name``, ``folder``, ``slurm_id``, ``after`` as SLURM job ids,
``dependency``, ``resources``, ``overrides``, ``log``), ``kept`` (what was not resubmitted, one line each) and, once
the submitting command has seen every job end, ``outcomes``. A rerun adds a submission: a job of a later one
replaces the earlier job of its folder.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mixgap.core.errors import ConfigError
from mixgap.core.files import write_json_atomic
from mixgap.core.store import Store
from mixgap.results.sweep import read_result

DAG = "dag.json"
KINDS = ("pool", "grid", "report")
#: SLURM job states of a job that has ended (``squeue --states=all`` / ``sacct``; slurm.schedmd.com/squeue.html).
ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE",
         "OUT_OF_MEMORY", "REVOKED"}
#: States of a job holding its allocation (the others that have not ended wait in the queue).
RUNNING = {"RUNNING", "COMPLETING", "CONFIGURING", "SIGNALING", "STAGE_OUT", "SUSPENDED", "STOPPED", "RESIZING"}
NEVER = "DependencyNeverSatisfied"  # SLURM's reason for a job whose dependency failed


@dataclass(frozen=True)
class Outcome:
    """Where one job of the study stands: ``status`` (pending | running | done | failed | dropped | unknown) and,
    for a job that did not end done, why (one line)."""

    kind: str
    name: str
    folder: str
    slurm_id: str
    status: str
    why: str = ""

    @property
    def ended(self) -> bool:
        return self.status not in ("pending", "running")

    def line(self) -> str:
        return f"{self.kind} {self.name} (SLURM job {self.slurm_id}, {self.folder}): {self.status}: {self.why}"


def read_dag(sweep: str | Path, field: str = "study.sweep") -> dict[str, Any]:
    """``<sweep>/dag.json``.

    Raises:
        ConfigError: no such file (the message names ``field`` and what writes it).
    """
    path = Path(sweep) / DAG
    if not path.is_file():
        raise ConfigError(f"{field}={str(sweep)!r} holds no {DAG}; give the folder a `launch.py -m ... "
                          f"hydra/launcher=slurm` study was submitted into (its hydra.sweep.dir)")
    return json.loads(path.read_text())


def add_submission(sweep: Path, submission: dict[str, Any]) -> int:
    """Append ``submission`` to ``<sweep>/dag.json`` (made when missing; written atomically); returns its index."""
    path = Path(sweep) / DAG
    dag = json.loads(path.read_text()) if path.is_file() else {"sweep": str(sweep), "submissions": []}
    dag["submissions"].append(submission)
    write_json_atomic(path, dag)
    return len(dag["submissions"]) - 1


def record_outcomes(sweep: Path, index: int, outcomes: Sequence[Outcome]) -> None:
    """Store the jobs' last outcomes into submission ``index`` of ``<sweep>/dag.json`` (atomically)."""
    path = Path(sweep) / DAG
    dag = json.loads(path.read_text())
    dag["submissions"][index]["outcomes"] = [o.__dict__ for o in outcomes]
    write_json_atomic(path, dag)


def _run(cmd: list[str]) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout if done.returncode == 0 else ""


def slurm_states(ids: Iterable[str]) -> dict[str, tuple[str, str]]:
    """``{job id: (state, reason)}`` of the SLURM jobs ``ids`` (``123`` or an array task ``123_4``): ``squeue``
    first (one line per array task), then ``sacct`` for those it no longer lists; a job neither knows is left out
    (a cluster without accounting forgets a job ``MinJobAge`` seconds after it ends)."""
    wanted = {str(i) for i in ids if i}
    if not wanted:
        return {}
    bases = sorted({i.split("_")[0] for i in wanted})
    states: dict[str, tuple[str, str]] = {}
    for line in _run(["squeue", "-h", "-r", "-t", "all", "-j", ",".join(bases), "-o", "%i|%T|%r"]).splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3 and parts[0] in wanted:
            states[parts[0]] = (parts[1], parts[2])
    missing = sorted({i.split("_")[0] for i in wanted - set(states)})
    if missing:
        out = _run(["sacct", "-n", "-P", "-X", "-j", ",".join(missing), "-o", "JobID,State,Reason"])
        for line in out.splitlines():
            parts = line.strip().split("|")
            if len(parts) == 3 and parts[0] in wanted and parts[0] not in states:
                states[parts[0]] = (parts[1].split()[0] if parts[1] else "UNKNOWN", parts[2])
    return states


def log_reason(log: str | None) -> str:
    """The last ``mixgap: error:`` line of a job's log (else its last non-empty line), or ""."""
    path = Path(log) if log else None
    if path is None or not path.is_file():
        return ""
    with path.open("rb") as fh:
        fh.seek(max(0, path.stat().st_size - 20000))
        lines = [ln.strip() for ln in fh.read().decode(errors="replace").splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("mixgap: error:")]
    return (errors or lines or [""])[-1][:300]


def outcome(job: Mapping[str, Any], sweep: Path, state: tuple[str, str] | None, since: float,
            ended: Mapping[str, Outcome]) -> Outcome:
    """One job's :class:`Outcome` from its SLURM ``state`` (None: SLURM no longer lists it), its ``result.json``
    (written after ``since``, the submission time) or, for the report job, ``report.md``; a job SLURM dropped
    names the jobs it waited for that did not end done (``ended``: outcomes by SLURM job id)."""
    def made(status: str, why: str = "") -> Outcome:
        return Outcome(job["kind"], job["name"], job["folder"], job["slurm_id"], status, why)

    name, reason = state or ("", "")
    reason = "" if reason in ("None", "(null)") else reason
    if reason == NEVER and name in ("PENDING", "CANCELLED"):
        bad = [f"{o.kind} {o.name} (job {o.slurm_id}) {o.status}" for i in job.get("after", [])
               if (o := ended.get(i)) and o.ended and o.status != "done"]
        return made("dropped", f"not run, SLURM dropped it ({NEVER}): {', '.join(bad) or 'a job it waits for failed'}")
    if state is not None and name not in ENDED:
        return made("running" if name in RUNNING else "pending", reason)
    folder = sweep / job["folder"]
    if job["kind"] == "report":
        report = folder / "report.md"
        if report.is_file() and report.stat().st_mtime >= since and name in ("", "COMPLETED"):
            return made("done")
        return made("failed", log_reason(job.get("log")) or f"SLURM state {name or 'unknown'}, no new report.md")
    result = read_result(folder) or {}
    fresh = float(result.get("started") or 0) >= since
    if fresh and result.get("status") == "done":
        return made("done")
    error = result.get("error") if fresh else None
    if name == "CANCELLED":
        error = f"cancelled ({reason})" if reason else "cancelled"
    why = error or log_reason(job.get("log")) or (f"SLURM state {name}" + (f" ({reason})" if reason else "") if name
                                                   else "SLURM no longer lists it and it wrote no result.json since its submission")
    return made("failed" if state is not None or fresh else "unknown", why)


def current_jobs(dag: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """The jobs of every submission, a later one replacing the earlier job of its folder (in submission order),
    and the lines of what the last submission kept (not resubmitted)."""
    jobs: dict[str, dict[str, Any]] = {}
    for sub in dag["submissions"]:
        for job in sub["jobs"]:
            jobs[job["folder"]] = {**job, "submitted": sub["submitted"]}
    return list(jobs.values()), (dag["submissions"][-1].get("kept", []) if dag["submissions"] else [])


def outcomes_of(jobs: Sequence[Mapping[str, Any]], sweep: Path,
                states: Callable[[Iterable[str]], Mapping[str, tuple[str, str]]] | None = None) -> list[Outcome]:
    """Every job's :class:`Outcome` (pools first, then the grid and the report, so a dropped job can name the
    job it waited for); ``states`` of the SLURM jobs: :func:`slurm_states` unless given."""
    now = (states or slurm_states)([job["slurm_id"] for job in jobs])
    ended: dict[str, Outcome] = {}
    out = []
    for job in sorted(jobs, key=lambda j: KINDS.index(j["kind"])):
        made = outcome(job, Path(sweep), now.get(job["slurm_id"]), float(job.get("submitted", 0)), ended)
        ended[job["slurm_id"]] = ended[job["slurm_id"].split("_")[0]] = made
        out.append(made)
    return out


def summary_lines(outcomes: Sequence[Outcome], kept: Sequence[str] = ()) -> list[str]:
    """Per kind, how many jobs are pending, running, done, failed, dropped, unknown; then one line per job that
    did not end done (and is not waiting or running), with why; then what was not resubmitted."""
    lines = []
    for kind in KINDS:
        mine = [o for o in outcomes if o.kind == kind]
        if mine:
            counts = Counter(o.status for o in mine)
            lines.append(f"  {kind:<6} {len(mine):>3}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    bad = [o for o in outcomes if o.ended and o.status != "done"]
    if bad:
        lines.append(f"  {len(bad)} job(s) failed or were dropped:")
        lines += [f"    {o.line()}" for o in bad]
    return lines + [f"  not resubmitted: {line}" for line in kept]


def status_lines(sweep: str | Path) -> list[str]:
    """``stage=status``: where the study in ``sweep`` stands (:func:`summary_lines` of its jobs now)."""
    dag = read_dag(sweep)
    jobs, kept = current_jobs(dag)
    head = f"study {sweep}: {len(jobs)} job(s) in {len(dag['submissions'])} submission(s)"
    return [head, *summary_lines(outcomes_of(jobs, Path(sweep)), kept)]


def cancel(sweep: str | Path, scancel: Callable[[list[str]], Any] | None = None) -> list[str]:
    """``stage=cancel``: ``scancel`` every job of the study in ``sweep`` still waiting or running; one line each."""
    jobs, _ = current_jobs(read_dag(sweep))
    live = [o for o in outcomes_of(jobs, Path(sweep)) if not o.ended]
    if not live:
        return [f"study {sweep}: no job is waiting or running; nothing to cancel"]
    ids = [o.slurm_id for o in live]
    (scancel or (lambda i: subprocess.run(["scancel", *i], check=True, capture_output=True, text=True)))(ids)
    return [f"study {sweep}: cancelled {len(ids)} job(s) (scancel {' '.join(ids)})",
            *[f"  {o.kind} {o.name} (SLURM job {o.slurm_id}, was {o.status})" for o in live]]


def check(cfg: Any) -> None:
    """``study.sweep`` names a folder holding ``dag.json``.

    Raises:
        ConfigError: one line naming the field and what to give.
    """
    if not cfg.study.sweep:
        raise ConfigError(f"study.sweep=None is not allowed with stage={cfg.stage}; give the study's folder "
                          "(its hydra.sweep.dir), e.g. study.sweep=multirun/long_vs_short/<date>_<time>")
    read_dag(cfg.study.sweep)


def run(cfg: Any, store: Store, tracker_for: Callable[[Path], Any]) -> dict[str, Any]:
    """``stage=status`` or ``stage=cancel`` on ``study.sweep``: print the lines, return ``{"lines": [...]}``."""
    lines = status_lines(cfg.study.sweep) if cfg.stage == "status" else cancel(cfg.study.sweep)
    for line in lines:
        print(line, flush=True)
    return {"lines": lines, "status": cfg.stage}


def wait(jobs: Sequence[Mapping[str, Any]], sweep: Path, poll_s: Callable[[float], float],
         states: Callable[[Iterable[str]], Mapping[str, tuple[str, str]]] | None = None) -> list[Outcome]:
    """Poll until every job has ended (:attr:`Outcome.ended`); returns their outcomes. ``poll_s(elapsed)`` gives
    the seconds to the next poll."""
    start = time.monotonic()
    while True:
        out = outcomes_of(jobs, sweep, states)
        if all(o.ended for o in out):
            return out
        time.sleep(poll_s(time.monotonic() - start))
