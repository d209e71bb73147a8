"""mixgap's single entry point: ``python launch.py [-m] [group=option ...] [key=value ...]``.

Examples (README): ``python launch.py`` (one job, paper defaults), ``python launch.py -m student=qwen0.5b,qwen3b
mix.weight=0,0.2,1`` (a grid), ``python launch.py -m +experiment=long_vs_short hydra/launcher=slurm`` (Table 1 on
SLURM), ``python launch.py stage=report report.sweep=multirun/<date>/<time>``.

A bad command line is refused in one line (``mixgap: error: ...``, exit 2) before Hydra composes or writes
anything; Ctrl-C (SIGINT) or SIGTERM ends in one line too, exit 128 + the signal's number.
"""

from __future__ import annotations

import signal
import sys

import hydra
from hydra import compose, initialize_config_dir
from hydra._internal.utils import get_args_parser
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from mixgap.core.config import (
    CONF_DIR,
    ConfigError,
    check_override_keys,
    register_configs,
    to_container,
    validate,
)
from mixgap.core.runrecord import Interrupted
from mixgap.core.store import StoreError
from mixgap.pipeline import run_job
from mixgap.plan.jobs import make_plan
from mixgap.plan.machine import enforce, error_lines, job_allocation
from mixgap.results.sweep import read_sweeps
from mixgap.stages.backends import BackendUnavailable
from mixgap.stages.data import DataError
from mixgap.stages.generate import PoolMissing
from mixgap.stages.models import ModelSourceError

register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    """One Hydra job: :func:`mixgap.pipeline.run_job` in the job's output folder."""
    hc = HydraConfig.get()
    group = hc.sweep.dir if hc.mode == RunMode.MULTIRUN else hc.runtime.output_dir
    try:
        # the job runs on what its launcher gives it: this machine's CUDA devices (or the CPU) under the basic one
        allocation = job_allocation(hc.runtime.choices.get("hydra/launcher"), hc.launcher)
        result = run_job(cfg, hc.runtime.output_dir, group=group, overrides=list(hc.overrides.task), gpus=allocation)
        if result.get("preflight") and hc.mode != RunMode.MULTIRUN:  # a multirun's summary lists every job's refusals
            enforce(result["preflight"])
    except (ConfigError, DataError, ModelSourceError, PoolMissing, BackendUnavailable, StoreError) as err:
        # one line per reason, no traceback: each names the field or file and what to do (a refused job: all of them)
        for line in error_lines(err):
            print(line, file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as stop:  # SIGTERM (Interrupted) or Ctrl-C, recorded interrupted in result.json
        line, status = interrupted_line(stop)
        print(line, file=sys.stderr)
        sys.exit(status)


def check_argv() -> None:
    """Refuse a bad command line in one line (exit 2) before Hydra composes or writes anything: an unknown key
    (``mix.wieght=0.2``), an option a group does not have (``student=qwen99b``), a group out of place
    (``+judge=qwen32b``), a value of the wrong type (``mix.weight=abc``), a sweep without ``-m``
    (:func:`mixgap.core.overrides.check_override_keys`)."""
    args, _ = get_args_parser().parse_known_args()
    try:
        check_override_keys(args.overrides, multirun=args.multirun)
        if not args.multirun and not args.cfg and not args.info:  # a sweep's points are checked by its sweeper
            check_values(args.overrides)
    except ConfigError as err:
        print(f"mixgap: error: {err}", file=sys.stderr)
        sys.exit(2)


def check_values(overrides: list[str]) -> None:
    """Compose the job's config as Hydra will (without the ``hydra`` node) and run the checks of its values
    (:func:`mixgap.core.config.validate`) and of its plan (:func:`mixgap.plan.jobs.make_plan`: the teachers'
    backends), so a value out of range is refused before Hydra makes the job's output folder.

    Raises:
        ConfigError: one line naming the field, the value and what is allowed. A config Hydra itself cannot
            compose is left to Hydra (its own message).
    """
    task = [o for o in overrides if not o.lstrip("+~").startswith("hydra")]
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose("config", overrides=task)
    except Exception:  # noqa: BLE001 (Hydra's own composition error: Hydra prints it when it composes)
        return
    validate(cfg, task)
    if cfg.stage in ("report", "analyze"):  # a folder without job folders is refused here, not in a new job folder
        sweeps = to_container(cfg[cfg.stage].sweep)
        read_sweeps([sweeps] if isinstance(sweeps, str) else [str(s) for s in sweeps], None, f"{cfg.stage}.sweep")
    else:
        make_plan(cfg)


def interrupted_line(err: KeyboardInterrupt) -> tuple[str, int]:
    """The one line and the exit status for a job (or Hydra before it) stopped by SIGTERM or Ctrl-C (SIGINT):
    ``128 + signal number``, as the shell reports a process the signal ended (130 for SIGINT, 143 for SIGTERM)."""
    signum = err.signum if isinstance(err, Interrupted) else signal.SIGINT
    name = signal.Signals(signum).name
    return f"mixgap: interrupted by {name}; rerun the same command to resume", 128 + signum


if __name__ == "__main__":
    try:
        check_argv()
        main()
    except KeyboardInterrupt as stop:  # Ctrl-C inside Hydra's own code, before or between jobs
        line, status = interrupted_line(stop)
        print(line, file=sys.stderr)
        sys.exit(status)
