"""mixgap's multirun sweeper (a Hydra plugin: Hydra instantiates sweepers only from ``hydra_plugins``).

A :class:`~hydra._internal.core_plugins.basic_sweeper.BasicSweeper` that validates and preflights every
sweep point before the launcher starts anything (see :mod:`mixgap.plan.sweeper`), runs ``stage=plan`` sweeps in
the calling process whatever the launcher, and turns a failed submission into one line.
"""

from __future__ import annotations

import sys
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser


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
        from mixgap.plan.sweeper import (  # lazy: Hydra imports every plugin at start
            check_job,
            job_config,
            submission_error,
            sweep_refusals,
        )

        checked, plan_only = [], True
        for overrides in self._all_jobs(arguments):
            cfg, task_overrides, gpus = job_config(self.hydra_context.config_loader.load_sweep_config(self.config, overrides))
            plan_only = plan_only and cfg.stage == "plan"
            checked.append((overrides, *check_job(cfg, task_overrides, gpus)))
        refusals = sweep_refusals(checked, plan_only)
        if refusals:
            print(f"mixgap: error: the sweep is refused before any job started: {len({r.split(':')[0] for r in refusals})} "
                  f"of {len(checked)} jobs cannot run", file=sys.stderr)
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
            return super().sweep(arguments)
        except Exception as err:  # noqa: BLE001 (a launcher that cannot submit: one line, no traceback)
            if launcher == "basic" or plan_only:
                raise
            print(f"mixgap: error: {submission_error(launcher, err)}", file=sys.stderr)
            sys.exit(2)
