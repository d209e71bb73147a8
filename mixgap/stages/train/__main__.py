"""One training rank: ``python -m mixgap.stages.train <job.json>`` (what the torchrun launch starts in every rank)."""

from __future__ import annotations

import logging
import sys

from mixgap.stages.train.trainer import TrainJob, jsonl_sink, run_training


def main(argv: list[str] | None = None) -> int:
    """Run the :class:`~mixgap.stages.train.trainer.TrainJob` in ``argv[0]``; metrics go to its ``log_path``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m mixgap.stages.train <job.json>", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    job = TrainJob.read(args[0])
    run_training(job, sinks=[jsonl_sink(job.log_path)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
