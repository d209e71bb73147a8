"""The multirun's summary: a Hydra callback that prints each job's place in the sweep while it runs, then how
the jobs ended, their stage times, the preflight (memory per GPU, GPU-hours, refusals) and how they share
artifacts (a shared artifact is built once)."""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from mixgap.core.store import Store, StoreError
from mixgap.plan import study
from mixgap.plan.printout import summary_lines
from mixgap.results.sweep import job_results

log = logging.getLogger(__name__)
ARMED = ("completions", "eval")  # kinds counted per arm (untuned / tuned), e.g. completions.untuned


def _done_now(store: Store, key: str) -> bool:
    try:
        return store.is_done(key)
    except StoreError as err:  # a damaged artifact of a read-only store: not done, said once, the summary goes on
        log.warning("%s", err)
        return False


def plan_summary(results: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Distinct artifacts per kind over several jobs' plans: ``{kind: {"distinct", "done", "uses"}}``.

    The kind is the role without its teacher or benchmark: ``generation``, ``pool``, ``mixture``,
    ``checkpoint``, ``completions.untuned``, ``completions.tuned``, ``eval.untuned``, ``eval.tuned``, ``model``. ``done`` counts finished artifacts: as
    planned for ``stage=plan`` jobs, in the store now for the others.
    """
    kinds: dict[str, dict[str, int]] = {}
    seen: dict[str, tuple[str, bool]] = {}
    uses: Counter[str] = Counter()
    for result in results:
        store = Store(result["store"]) if result.get("status") != "planned" and result.get("store") else None
        for row in result.get("plan", []):
            parts = row["role"].split(".")
            uses[row["key"]] += 1
            done = _done_now(store, row["key"]) if store is not None else row["done"]  # now, after the jobs ran
            seen[row["key"]] = (".".join(parts[:2]) if parts[0] in ARMED else parts[0], done)
    for key, (kind, done) in seen.items():
        entry = kinds.setdefault(kind, {"distinct": 0, "done": 0, "uses": 0})
        entry["distinct"] += 1
        entry["done"] += int(done)
        entry["uses"] += uses[key]
    return kinds


def sweep_size(overrides: Sequence[str]) -> int:
    """Jobs of a basic sweep: the product of the number of values of each sweep override (``a=0,0.2,1``)."""
    size = 1
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        if override.is_sweep_override():
            size *= len(list(override.sweep_string_iterator()))
    return size


class SweepSummary(Callback):
    """Hydra callback: before each job of a multirun, print which job it is and how many are left; after the
    multirun, how the jobs share artifacts (plan) or how they ended."""

    total: int | None = None  # jobs in the sweep, known in the process that launched it
    started: float = 0.0  # when the multirun started (epoch seconds): a study submitted since is this one's

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started = time.time()
        try:
            task = list(config.hydra.overrides.task)
            keys = {o.split("=", 1)[0].lstrip("+~") for o in task}
            params = config.hydra.get("sweeper", {}).get("params") or {}  # an experiment's own sweep
            self.total = sweep_size(task + [f"{k}={v}" for k, v in params.items() if k not in keys])
        except Exception:  # another sweeper's syntax: progress without a total
            self.total = None

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        hydra_cfg = config.get("hydra")
        if hydra_cfg is None or hydra_cfg.get("mode") != RunMode.MULTIRUN:
            return
        num = int(hydra_cfg.job.num)
        what = " ".join(hydra_cfg.overrides.task)
        if self.total:
            print(f"job {num + 1}/{self.total} ({what}); {self.total - num - 1} left after it", flush=True)
        else:
            print(f"job {num + 1} ({what})", flush=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        jobs = job_results(sweep_dir)
        results = [r for _, r in jobs if r is not None]
        statuses = Counter(r["status"] if r else "missing" for _, r in jobs)
        print(f"\n{len(jobs)} jobs in {sweep_dir}: " + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())))
        timings: Counter[str] = Counter()
        for result in results:
            timings.update(result.get("timings", {}))
        if timings:
            print("wall time per stage, summed over jobs: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
        reused: dict[str, float] = {}
        for result in results:
            for role, wall in result.get("reused_build_s", {}).items():
                reused.setdefault(role, wall)  # a shared artifact counts once
        if reused:
            kinds: Counter[str] = Counter()
            for role, wall in reused.items():
                parts = role.split(".")
                kinds[".".join(parts[:2]) if parts[0] in ARMED else parts[0]] += wall
            print("reused from the store (their build time when made): "
                  + ", ".join(f"{k} {v:.0f} s" for k, v in kinds.items()))
        lines, refused = summary_lines(results)
        for line in lines:
            print(line)
        summary = plan_summary(results)
        if summary:
            print("artifacts they need (shared artifacts are built once):")
            for kind, entry in summary.items():
                print(
                    f"  {kind:<19} {entry['distinct']:>4} distinct ({entry['done']} done), "
                    f"used {entry['uses']} times"
                )
        if refused:
            raise SystemExit(2)  # stage=plan: every job planned and printed; any refusal fails the sweep
        lines, failed = study_summary(sweep_dir, self.started)
        for line in lines:
            print(line)
        if failed:
            raise SystemExit(1)  # a job of the study failed, or SLURM dropped it: each said above


def study_summary(sweep_dir: Path, since: float) -> tuple[list[str], bool]:
    """The lines of the study this multirun submitted to SLURM (the last submission of ``<sweep>/dag.json``, made
    after ``since``): how its jobs ended, one line per job that failed or that SLURM dropped, what was not
    resubmitted; and whether any job did not end done. Nothing for a sweep that submitted no study."""
    path = sweep_dir / study.DAG
    if not path.is_file():
        return [], False
    last = (json.loads(path.read_text())["submissions"] or [{}])[-1]
    if float(last.get("submitted", 0)) < since:
        return [], False
    if not last.get("jobs"):
        return ["the study (dag.json): nothing submitted (why: above)"], False
    outcomes = [study.Outcome(**o) for o in last.get("outcomes", [])]
    lines = [f"the study's {len(last['jobs'])} SLURM job(s) (dag.json):", *study.summary_lines(outcomes, last.get("kept", []))]
    return lines, any(o.status != "done" for o in outcomes) or len(outcomes) < len(last["jobs"])
