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
from hydra._internal.utils import get_args_parser
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from mixgap.core.conftree import from_command_line, set_command_line
from mixgap.core.errors import MixgapError, error_lines
from mixgap.core.overrides import check_override_keys
from mixgap.core.runrecord import Interrupted
from mixgap.core.schema import register_configs
from mixgap.pipeline import check_command_line, check_output_folder, launch_job

register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    """One Hydra job: :func:`mixgap.pipeline.launch_job` in the job's output folder."""
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    try:
        launch_job(cfg, hc.runtime.output_dir, group=hc.sweep.dir if multirun else hc.runtime.output_dir,
                   overrides=list(hc.overrides.task), launcher=hc.runtime.choices.get("hydra/launcher"),
                   launcher_cfg=hc.launcher, multirun=multirun)
    except MixgapError as err:
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
    (:func:`mixgap.core.overrides.check_override_keys`), each group's options read from every folder Hydra composes
    from (``conf/``, ``--config-dir``, ``hydra.searchpath``: :func:`mixgap.core.conftree.from_command_line`); a job
    folder Hydra could not write (:func:`mixgap.pipeline.check_output_folder`); for a single job, every check of its
    config and its plan (:func:`mixgap.pipeline.check_command_line`; a sweep's points are checked by its sweeper)."""
    args, _ = get_args_parser().parse_known_args()
    try:
        tree = from_command_line(args.overrides, args.config_dir, args.config_path, args.config_name)
        set_command_line(tree)  # the sweeper's checks of every point read it
        check_override_keys(args.overrides, tree, multirun=args.multirun)
        if not args.cfg and not args.info:
            check_output_folder(args.overrides, tree, args.multirun)
        if not args.multirun and not args.cfg and not args.info:
            check_command_line(args.overrides, tree)
    except MixgapError as err:
        for line in error_lines(err):
            print(line, file=sys.stderr)
        sys.exit(2)


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
