"""The training loss of every optimiser step, kept across a resume, and the run's final loss.

transformers' ``Trainer`` logs the mean loss of each logging window and starts a new window at the step it resumes
from (``_globalstep_last_logged = global_step``, transformers 5.20 ``trainer.py``), so its last log entry depends on
where a run was interrupted: the same final weights read one loss uninterrupted and another after a resume. Instead every
optimiser step's loss is recorded (:mod:`mixgap.stages.train.trainer`: the value the Trainer adds to its window, the
mean over ranks as it logs it), saved into each checkpoint folder (:data:`STEP_LOSSES`, before the Trainer's
``trainer_state.json``, which marks the checkpoint complete) and read back on resume, and the final loss is
:func:`final_loss`: the mean over the last ``logging_steps`` optimiser steps by absolute step number.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mixgap.core.files import write_json_atomic

log = logging.getLogger(__name__)
STEP_LOSSES = "step_losses.json"  # in each checkpoint-N folder: {"1": loss, ..., "N": loss}


def final_loss(losses: Mapping[int, float], last_step: int, window: int) -> float:
    """The mean training loss of optimiser steps ``last_step - window + 1 .. last_step`` (from step 1 at the least).

    Args:
        losses: optimiser step (1-based) -> that step's loss (nats per supervised token, as the Trainer logs it).
        last_step: the run's final optimiser step (``state.global_step``).
        window: how many steps to average: ``finetune_mode.logging_steps`` (the Trainer's ``state.logging_steps``).

    Returns:
        The mean; NaN when ``last_step`` is 0 (nothing trained). Equal for a run with and without a resume.

    Raises:
        ValueError: ``window`` < 1, or a step of the window has no recorded loss (named).
    """
    if window < 1:
        raise ValueError(f"final_loss window={window} is not allowed; it must be >= 1 optimiser step")
    steps = range(max(1, last_step - window + 1), last_step + 1)
    missing = [s for s in steps if s not in losses]
    if missing:
        raise ValueError(f"no recorded loss for optimiser step(s) {missing[:5]} of the final window "
                         f"{steps.start}-{steps.stop - 1}")
    return sum(losses[s] for s in steps) / len(steps) if len(steps) else math.nan


def write_losses(checkpoint: str | Path, losses: Mapping[int, float]) -> None:
    """Save ``losses`` (step -> loss) as ``<checkpoint>/step_losses.json`` atomically (the folder is made)."""
    write_json_atomic(Path(checkpoint) / STEP_LOSSES, {str(s): float(v) for s, v in sorted(losses.items())})


def read_losses(checkpoint: str | Path | None) -> dict[int, float]:
    """The step losses saved in ``checkpoint`` by :func:`write_losses`; ``{}`` for None or a checkpoint without them
    (written before losses were kept: :func:`final_loss` then names the missing steps)."""
    path = Path(checkpoint) / STEP_LOSSES if checkpoint else None
    if path is None or not path.is_file():
        return {}
    return {int(s): float(v) for s, v in json.loads(path.read_text()).items()}


class StepLosses:
    """Mixed into the ``Trainer`` (before it: ``class T(StepLosses, Trainer)``): the loss of every optimiser step.

    :meth:`record` takes each ``training_step`` return (on device: no sync per micro-batch); a step's loss is their
    sum, what the Trainer adds to its logging window (a NaN included), averaged over ranks as its log does
    (``nested_gather(...).mean()``, transformers 5.20 ``trainer.py``). :meth:`step_losses` gathers the steps not yet
    gathered; each checkpoint saves them (:func:`write_losses`) before the Trainer's own files. The trainer starts
    with ``losses = pending_losses = {}``; a resumed run sets ``losses`` to the steps before it (:func:`read_losses`)
    before ``train()``.
    """

    losses: dict[int, float] | None = None
    pending_losses: dict[int, Any] | None = None

    def record(self, step: int, loss: Any) -> None:
        """Add one micro-batch's loss (a 0-d tensor, ``training_step``'s return) to optimiser step ``step``."""
        self.pending_losses[step] = self.pending_losses.get(step, 0) + loss

    def step_losses(self) -> dict[int, float]:
        """Every recorded step's loss (step -> mean over ranks); a collective: every rank calls it at the same point."""
        import torch  # heavy: torch, imported only when used
        from transformers import trainer_pt_utils  # heavy: transformers, imported only when used

        if self.pending_losses:
            steps = sorted(self.pending_losses)
            local = torch.stack([self.pending_losses[s].float().reshape(()) for s in steps])
            every = trainer_pt_utils.nested_gather(local, self.args.parallel_mode).reshape(-1, len(steps))  # (ranks, steps)
            self.losses.update(zip(steps, every.mean(dim=0).tolist(), strict=True))
            self.pending_losses.clear()
        return self.losses

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        """The Trainer's checkpoint (transformers 5.20: called on every rank), its step losses written first."""
        recorded = self.step_losses()
        if self.args.should_save:
            step = self.state.global_step
            folder = Path(self.args.output_dir) / f"checkpoint-{step}"  # where the Trainer saves (no hyperparameter search)
            write_losses(folder, {s: v for s, v in recorded.items() if s <= step})
        super()._save_checkpoint(model, trial)

    def final_loss(self) -> float:
        """:func:`final_loss` of the finished run over the Trainer's ``state.logging_steps`` (gathers the last
        steps: every rank calls it); the last logged window's loss, with a warning, when a step of the final window
        has no recorded loss (a resume from a checkpoint saved before losses were kept); NaN when nothing was logged."""
        recorded = self.step_losses()
        try:
            return final_loss(recorded, int(self.state.global_step), int(self.state.logging_steps))
        except ValueError as err:
            logged = [e["loss"] for e in self.state.log_history if "loss" in e]
            log.warning("final_loss: %s; using the last logged window instead", err)
            return float(logged[-1]) if logged else math.nan
