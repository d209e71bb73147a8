"""mixgap's single entry point: ``python launch.py [-m] [group=option ...] [key=value ...]``.

Examples (README): ``python launch.py`` (one job, paper defaults), ``python launch.py -m student=qwen0.5b,qwen3b
mix.weight=0,0.2,1`` (a grid), ``python launch.py -m +experiment=long_vs_short hydra/launcher=slurm`` (Table 1 on
SLURM), ``python launch.py stage=report report.sweep=multirun/<date>/<time>``.
"""

from __future__ import annotations

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from mixgap.core.config import register_configs

register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from mixgap.stages.backends import BackendUnavailable  # noqa: PLC0415
    from mixgap.core.config import ConfigError  # noqa: PLC0415
    from mixgap.stages.data import DataError  # noqa: PLC0415
    from mixgap.stages.models import ModelSourceError  # noqa: PLC0415
    from mixgap.pipeline import run_job  # noqa: PLC0415
    from mixgap.stages.generate import PoolMissing  # noqa: PLC0415
    from mixgap.plan.preflight import job_gpus  # noqa: PLC0415
    from mixgap.core.runrecord import Interrupted  # noqa: PLC0415

    hc = HydraConfig.get()
    group = hc.sweep.dir if hc.mode == RunMode.MULTIRUN else hc.runtime.output_dir
    try:
        result = run_job(cfg, hc.runtime.output_dir, group=group, overrides=list(hc.overrides.task),
                         gpus=job_gpus(cfg.stage, hc.launcher))
        refusals = (result.get("preflight") or {}).get("refusals")
        if refusals and hc.mode != RunMode.MULTIRUN:  # a multirun's summary lists every job's refusals
            raise ConfigError(refusals[0])
    except (ConfigError, DataError, ModelSourceError, PoolMissing, BackendUnavailable) as err:
        # one line, no traceback: the message names the field or file and what to do
        print(f"mixgap: error: {err}", file=sys.stderr)
        sys.exit(2)
    except Interrupted as err:  # recorded as interrupted in result.json; exit non-zero like the signal would
        print(f"mixgap: {err}; rerun the same command to resume", file=sys.stderr)
        sys.exit(128 + err.signum)


def check_argv() -> None:
    """Refuse an unknown key on the command line (``mix.wieght=0.2`` or ``+mix.wieght=0.2``) in one line,
    before Hydra composes anything (:func:`mixgap.core.config.check_override_keys`)."""
    from hydra._internal.utils import get_args_parser  # noqa: PLC0415

    from mixgap.core.config import ConfigError, check_override_keys  # noqa: PLC0415

    args, _ = get_args_parser().parse_known_args()
    try:
        check_override_keys(args.overrides)
    except ConfigError as err:
        print(f"mixgap: error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    check_argv()
    main()
