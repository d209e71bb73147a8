"""How the SFT loss averages token losses over an optimiser step (``finetune_mode.loss_normalization``).

Two ways, both the plain next-token cross-entropy on the supervised tokens (labels != -100):

- ``global_tokens``: every supervised token of the optimiser step weighs the same, over all micro-batches of the
  accumulation window and all devices: loss = sum of token losses / supervised tokens of the whole global batch.
  This is what the pinned transformers (5.20.2) does by default: ``Trainer._get_num_items_in_batch`` counts the
  supervised tokens of every micro-batch of the window (``labels[..., 1:] != -100``), gathers and sums them over
  the ranks (``TrainingArguments.average_tokens_across_devices=True``, its default), the model divides each
  micro-batch's summed loss by that count (``ForCausalLMLoss(num_items_in_batch=...)``) and ``compute_loss``
  multiplies by the number of processes to undo the data-parallel gradient mean. A long example weighs by its
  length: one 8,000-token long-CoT trace outweighs forty 200-token short ones.
- ``per_device``: each micro-batch's mean token loss, averaged over the micro-batches of the step (accumulation
  steps and devices). This is the authors' trainer: LLaMA-Factory 0.9.2 under transformers <= 4.49 (official repo
  ``Small-Model-Gap/Small-Model-Learnability-Gap`` at 814cf97, ``LLaMA-Factory/requirements.txt``), where
  ``average_tokens_across_devices`` defaulted to False, so each device divided its summed token loss by its own
  supervised tokens and DDP/DeepSpeed averaged the devices' gradients. With their long/short-CoT layout
  (``MATH_{long,short}_CoT.yaml``: 4 GPUs x ``per_device_train_batch_size`` 2, accumulation 1) that is the mean,
  over the step's 4 micro-batches of 2 examples, of each micro-batch's mean token loss, which is this mode on
  any layout whose micro-batch is 2 examples (``finetune_mode.per_device_batch_size``). (Under accumulation > 1,
  4.49 averaged over each device's whole window instead; the released Mix config, 5 x 4 accumulation, is that
  case: ``finetune_mode/recipe/released_mix.yaml`` explains why it keeps ``global_tokens``.)

  Mechanism in the pinned transformers 5.20.2 (``transformers/trainer.py``): ``average_tokens_across_devices=False``
  alone is not enough, because ``num_items_in_batch`` is still summed over the accumulation window, so the
  micro-batches of one device would share one denominator. Setting ``trainer.model_accepts_loss_kwargs = False``
  (the attribute LLaMA-Factory's own DPO/KTO/RM trainers set) makes ``_get_num_items_in_batch`` return None: the
  model then takes the mean over the micro-batch's own tokens, ``training_step`` divides it by the window's
  micro-batch count (``current_gradient_accumulation_steps``; DeepSpeed is told ``scale_wrt_gas=False``, so it
  does not divide again) and the data-parallel gradient mean averages the devices.
"""

from __future__ import annotations

from typing import Any

from mixgap.core.fields import check_field
from mixgap.core.schema import FinetuneConfig


def _checked(mode: str) -> str:
    """``mode`` when it is one of ``finetune_mode.loss_normalization``'s choices (the schema declares them)."""
    check_field(FinetuneConfig, "loss_normalization", mode, "finetune_mode.loss_normalization")
    return mode


def average_tokens_across_devices(mode: str) -> bool:
    """``TrainingArguments.average_tokens_across_devices`` for ``mode``: True only for ``global_tokens``.

    Raises:
        ValueError: ``mode`` not one of ``finetune_mode.loss_normalization``'s choices (named).
    """
    return _checked(mode) == "global_tokens"


def apply_loss_normalization(trainer: Any, mode: str) -> None:
    """Make ``trainer`` (a transformers ``Trainer``, built with :func:`average_tokens_across_devices`) average the
    loss as ``mode`` says: ``per_device`` turns off the token count over the accumulation window
    (``trainer.model_accepts_loss_kwargs = False``), ``global_tokens`` keeps the Trainer's default.

    Raises:
        ValueError: ``mode`` not one of ``finetune_mode.loss_normalization``'s choices (named).
    """
    if _checked(mode) == "per_device":
        trainer.model_accepts_loss_kwargs = False
