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
    close_process_group()  # only after a run every rank finished: a failed rank must not wait at a barrier
    return 0


def close_process_group() -> None:
    """Leave the ranks' process group together: a barrier, then ``destroy_process_group``.

    A rank that exits with the group still open leaves gloo's teardown to the interpreter's exit, in no set
    order against its peer (a rank was seen to die of SIGABRT there, after a finished run, failing the whole
    launch). PyTorch's documentation asks every rank to call ``destroy_process_group`` before it exits
    (``torch.distributed`` docs, "Shutdown"). A no-op without a group (one process, no torchrun).
    """
    import torch.distributed as dist  # heavy: torch, imported only when a rank ends

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
