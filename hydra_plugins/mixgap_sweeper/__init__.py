"""mixgap's multirun sweeper (a Hydra plugin: Hydra instantiates sweepers only from ``hydra_plugins``).

A :class:`~hydra._internal.core_plugins.basic_sweeper.BasicSweeper` that validates and preflights every
sweep point before the launcher starts anything (see :mod:`mixgap.plan.sweeper`), runs ``stage=plan`` sweeps in
the calling process whatever the launcher, and turns a failed submission into one line. On the SLURM launcher
(:class:`hydra_plugins.mixgap_launcher.StudyLauncher`) the sweep is submitted as a study of dependent jobs
(teacher pools, the grid, the report: :mod:`mixgap.plan.dag`), which ``stage=plan`` prints.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from hydra_plugins.mixgap_launcher import StudyLauncher


class PreflightSweeper(BasicSweeper):
    """``BasicSweeper`` + :mod:`mixgap.plan.sweeper`'s checks of every job before the first one starts."""

    def setup(self, *, hydra_context, task_function, config) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        self._task_function = task_function

    def _all_jobs(self, arguments: list[str]) -> list[list[str]]:
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        overrides = parser.parse_overrides([*self._parse_config(), *arguments])
        return [job for batch in self.split_arguments(overrides, self.max_batch_size) for job in batch]

    def sweep(self, arguments: list[str]) -> Any:
        from mixgap.plan.dag import Point, study_lines  # lazy: Hydra imports every plugin at start
        from mixgap.plan.sweeper import check_job, job_config, study_of, submission_error, sweep_refusals

        checked, points, plan_only = [], [], True
        loader = self.hydra_context.config_loader
        for num, overrides in enumerate(self._all_jobs(arguments)):
            sweep_config = loader.load_sweep_config(self.config, overrides)
            cfg, task_overrides, gpus = job_config(sweep_config)
            plan_only = plan_only and cfg.stage == "plan"
            checked.append((overrides, *check_job(cfg, task_overrides, gpus)))
            points.append(Point(num, task_overrides, cfg, dict(sweep_config.hydra.runtime.choices)))
        refusals = sweep_refusals(checked, plan_only)
        study = None
        if not refusals and isinstance(self.launcher, StudyLauncher):  # SLURM: the study of dependent jobs
            study = study_of(points, lambda o: loader.load_sweep_config(self.config, o), self.config)
            refusals = study.refusals
        if refusals:
            jobs = len({r.split(":")[0] for r in refusals})
            print(f"mixgap: error: the sweep is refused before any job started: {jobs} of {len(checked)} jobs cannot run"
                  if study is None else f"mixgap: error: the study is refused before any job was submitted: "
                  f"{len(refusals)} reason(s)", file=sys.stderr)
            for line in refusals:
                print(f"mixgap: error: {line}", file=sys.stderr)
            sys.exit(2)
        launcher = self.config.hydra.runtime.choices.get("hydra/launcher", "basic")
        if plan_only and launcher != "basic":  # stage=plan never submits: plan in this process
            # only for stage=plan on another launcher
            from hydra._internal.core_plugins.basic_launcher import BasicLauncher

            self.launcher = BasicLauncher()
            self.launcher.setup(hydra_context=self.hydra_context, task_function=self._task_function, config=self.config)
            print(f"mixgap: stage=plan: {len(checked)} jobs planned here for hydra/launcher={launcher}'s resources "
                  "(nothing is submitted)")
        try:
            if study is not None and not plan_only:
                return self._launch_study(study, points)
            returns = super().sweep(arguments)
        except Exception as err:  # noqa: BLE001 (a launcher that cannot submit: one line, no traceback)
            if launcher == "basic" or plan_only:
                raise
            print(f"mixgap: error: {submission_error(launcher, err)}", file=sys.stderr)
            sys.exit(2)
        if study is not None:  # stage=plan: the study after the jobs' plans, before the summary
            print("\n".join(["", *study_lines(study, points), "(stage=plan: nothing is submitted)"]), flush=True)
        return returns

    def _launch_study(self, study: Any, points: list[Any]) -> Any:
        """Print the study, save ``multirun.yaml`` as the basic sweeper does, submit it and wait (or, with nothing
        to submit, record that in ``dag.json``)."""
        from mixgap.plan.dag import study_lines  # lazy: Hydra imports every plugin at start
        from mixgap.plan.study import add_submission

        print("\n".join(study_lines(study, points)), flush=True)
        study.sweep.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, study.sweep / "multirun.yaml")
        if not study.jobs:
            add_submission(study.sweep, {"submitted": time.time(), "launcher": study.launcher, "jobs": [],
                                         "kept": list(study.kept)})
            print("mixgap: nothing to submit: every pool is in the store and every grid job is done")
            return []
        return self.launcher.launch_study(study)
