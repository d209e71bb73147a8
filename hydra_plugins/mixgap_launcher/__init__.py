"""mixgap's SLURM launcher (a Hydra plugin: Hydra instantiates launchers only from ``hydra_plugins``;
``conf/hydra/launcher/slurm.yaml`` names it as its ``_target_``).

hydra-submitit-launcher's ``SlurmLauncher`` submits a sweep as one array and blocks until it ends. Given the study
of a sweep (:mod:`mixgap.plan.dag`: teacher pool jobs, grid arrays, a report job), :meth:`StudyLauncher.launch_study`
submits every job first, each grid array with ``--dependency=afterok:<its pool jobs>`` and the report with
``afterany:<the arrays>`` (SLURM's own dependencies, ``--kill-on-invalid-dep=yes`` so SLURM drops a job whose pool
failed instead of keeping it pending), records them in ``<sweep>/dag.json``, then waits for all
(:func:`mixgap.plan.study.wait`: ``squeue``/``sacct`` and the jobs' ``result.json``; submitit's own wait reads
``sacct`` alone, which never sees a job SLURM dropped on a cluster without accounting). Each job runs through the
parent's ``__call__`` (the Hydra job in the SLURM task), so job folders, config snapshots and requeues behave as a
plain array's. ``launch`` (one array, the parent's) is left as it is.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher
from omegaconf import OmegaConf

#: Launcher fields that size the executor itself rather than the sbatch script (as the parent's ``launch``).
_INIT = ("submitit_folder", "max_num_timeout")


def poll_s(elapsed: float) -> float:
    """Seconds between two looks at the study's jobs (one ``squeue`` call): 2 s in its first minute, 5 s to ten
    minutes, then 30 s."""
    return 2.0 if elapsed < 60 else 5.0 if elapsed < 600 else 30.0


class StudyLauncher(SlurmLauncher):
    """``SlurmLauncher`` + :meth:`launch_study`: a sweep's pool, grid and report jobs with SLURM dependencies."""

    def executor(self, resources: dict[str, Any], dependency: str) -> Any:
        """A submitit executor with the launcher's fields, ``resources`` over them, and ``dependency``
        (``afterok:1:2``; "" for none) with ``--kill-on-invalid-dep=yes``; the parent's ``launch`` maps the fields
        the same way (``BaseQueueConf`` fields by name, the others with the ``slurm_`` prefix)."""
        import submitit  # heavy: submitit, only when submitting (Hydra imports every plugin at start)

        params = {**self.params, **resources}
        init = {"folder": params["submitit_folder"]}
        if params.get("max_num_timeout") is not None:
            init["slurm_max_num_timeout"] = params["max_num_timeout"]
        executor = submitit.AutoExecutor(cluster=self._EXECUTOR, **init)
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        fields = {k if k in base else f"{self._EXECUTOR}_{k}": v for k, v in params.items() if k not in _INIT}
        if dependency:
            fields["slurm_dependency"] = dependency
            fields["slurm_additional_parameters"] = {**(params.get("additional_parameters") or {}),
                                                     "kill_on_invalid_dep": "yes"}
        executor.update_parameters(**fields)
        return executor

    def _submit(self, jobs: list[Any], resources: dict[str, Any], dependency: str) -> list[Any]:
        """Submit ``jobs`` (:class:`mixgap.plan.dag.DagJob`) as one array (one plain job when alone)."""
        args = [(list(job.overrides), "hydra.sweep.dir", job.num, f"job_id_for_{job.num}", Singleton.get_state())
                for job in jobs]
        return list(self.executor(resources, dependency).map_array(self, *zip(*args, strict=True)))

    def launch_study(self, study: Any) -> list[Any]:
        """Submit ``study`` (:class:`mixgap.plan.dag.Study`), record it in ``<sweep>/dag.json``, wait for every
        job to end and record their outcomes; returns them (:class:`mixgap.plan.study.Outcome`). A submission
        that fails part-way cancels what it submitted, then raises."""
        from mixgap.plan import (
            study as studies,  # lazy: Hydra imports every plugin at start, mixgap only to submit
        )

        sweep = Path(study.sweep)
        sweep.mkdir(parents=True, exist_ok=True)
        submitted, ids, records = time.time(), {}, []
        try:
            for kind in ("pool", "grid", "report"):
                for label, jobs in _batches(study, kind):
                    after = [ids[a] for a in jobs[0].after if a in ids]
                    dependency = f"{jobs[0].dependency}:{':'.join(after)}" if after else ""
                    made = self._submit(jobs, jobs[0].resources, dependency)
                    ids[label] = made[0].job_id.split("_")[0]
                    records += [{"kind": job.kind, "name": job.name, "num": job.num, "folder": job.folder,
                                 "slurm_id": str(sub.job_id), "after": after, "dependency": dependency,
                                 "resources": _shown({**study.params, **job.resources}), "overrides": list(job.overrides),
                                 "log": str(sub.paths.stdout)} for job, sub in zip(jobs, made, strict=True)]
        except BaseException:
            if ids:
                subprocess.run(["scancel", *ids.values()], capture_output=True)
            raise
        index = studies.add_submission(sweep, {"submitted": submitted, "launcher": study.launcher, "jobs": records,
                                               "kept": list(study.kept)})
        print(f"mixgap: submitted {len(records)} job(s) to SLURM, recorded in {sweep / studies.DAG}; waiting for "
              f"them (Ctrl-C leaves them running: python launch.py stage=status study.sweep={sweep})", flush=True)
        try:
            outcomes = studies.wait(records, sweep, poll_s)
        except KeyboardInterrupt:
            print(f"mixgap: the study's jobs go on in SLURM: python launch.py stage=status study.sweep={sweep}",
                  file=sys.stderr)
            raise
        studies.record_outcomes(sweep, index, outcomes)
        return outcomes


def _shown(params: dict[str, Any]) -> dict[str, Any]:
    """The allocation fields of a job that ``dag.json`` records."""
    return {k: params.get(k) for k in ("partition", "gpus_per_node", "cpus_per_task", "mem_gb", "timeout_min", "name")}


def _batches(study: Any, kind: str) -> list[tuple[str, list[Any]]]:
    """``(label, jobs)`` submitted together: each pool job and the report alone, each grid array whole."""
    jobs = study.of(kind)
    if kind != "grid":
        return [(f"{kind}:{job.name}" if kind == "pool" else kind, [job]) for job in jobs]
    arrays = sorted({job.array for job in jobs})
    return [(f"array:{n}", [job for job in jobs if job.array == n]) for n in arrays]
