"""How a global batch is realised on a world of devices (:func:`batch_layout`), and global batches counted in
packed sequences (the released Mix configs' recipe) turned into examples per step.

The paper's released Mix-Long / Mix-Large config (official repo, ``LLaMA-Factory/exp/MATH_mix.yaml``) trains
with LLaMA-Factory ``neat_packing``: the tokenised examples are packed into sequences of at most
``cutoff_len`` = 4,096 tokens, and its global batch of 80 (5 per device x 4 accumulation x 4 GPUs) counts those
packed sequences, i.e. several examples each. Our trainer counts examples, so :func:`packed_batch` packs the
examples' lengths the way LLaMA-Factory does (:func:`greedy_knapsack`) and returns the example count per
optimiser step that gives the released recipe's number of steps per epoch. The paper's text (Table 5: 4
devices x per-device batch 2, no packing) counts examples; ``batch_unit=examples`` is that.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass

from mixgap.core.errors import ConfigError
from mixgap.core.fields import check_field
from mixgap.core.schema import FinetuneConfig

#: GPU counts a global batch is suggested for when it does not divide the world (a node has 1, 2, 4 or 8 GPUs).
WORLD_SIZES = (1, 2, 4, 8)


def greedy_knapsack(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Pack sequence lengths into bins of at most ``capacity`` tokens, largest-that-fits first.

    The algorithm of LLaMA-Factory's ``greedy_knapsack`` (``src/llamafactory/data/processor/processor_utils.py``,
    used by ``neat_packing``): sort the lengths ascending; open a bin, repeatedly move into it the largest
    remaining length that still fits (binary search), close it when none fits; repeat until none is left.

    Args:
        lengths: token counts of the examples, each in ``[1, capacity]``.
        capacity: tokens per packed sequence (``finetune_mode.pack_len``), > 0.

    Returns:
        The bins, each a list of lengths (in the order they were packed).

    Raises:
        ValueError: a non-positive ``capacity``, or a length outside ``[1, capacity]`` (it could never be packed).
    """
    check_field(FinetuneConfig, "pack_len", capacity, "finetune_mode.pack_len")
    numbers = sorted(lengths)
    if numbers and (numbers[0] < 1 or numbers[-1] > capacity):
        bad = numbers[-1] if numbers[-1] > capacity else numbers[0]
        raise ValueError(f"an example of {bad} tokens cannot be packed into finetune_mode.pack_len={capacity}; "
                         "set finetune_mode.max_seq_len <= pack_len")
    bins = []
    while numbers:
        current, remaining = [], capacity
        while True:
            index = bisect.bisect(numbers, remaining) - 1
            if index < 0:
                break
            remaining -= numbers[index]
            current.append(numbers.pop(index))
        bins.append(current)
    return bins


def packed_batch(lengths: Sequence[int], pack_len: int, packs_per_step: int, micro_batch: int) -> dict[str, int | str]:
    """Examples per optimiser step equivalent to a global batch of ``packs_per_step`` packed sequences.

    Args:
        lengths: token counts of the training examples (after the over-length policy).
        pack_len: tokens per packed sequence (LLaMA-Factory ``cutoff_len``; 4,096 in the released Mix config).
        packs_per_step: the global batch in packed sequences (80 in the released Mix config).
        micro_batch: examples per forward pass over all devices (per-device batch x world size); the
            example count is rounded up to a multiple of it.

    Returns:
        ``{"unit": "packed_sequences", "pack_len", "packs", "packs_per_step", "steps_per_epoch",
        "examples_per_step"}`` with ``steps_per_epoch = ceil(packs / packs_per_step)`` and
        ``examples_per_step = ceil(ceil(N / steps_per_epoch) / micro_batch) * micro_batch``.

    Raises:
        ValueError: no example, a bad size, or an example longer than ``pack_len``.
    """
    if not lengths:
        raise ValueError("no training example to pack")
    if packs_per_step <= 0 or micro_batch <= 0:
        raise ValueError(f"finetune_mode.global_batch_size={packs_per_step} and the micro-batch {micro_batch} must be > 0")
    packs = len(greedy_knapsack(lengths, pack_len))
    steps = math.ceil(packs / packs_per_step)
    per_step = math.ceil(math.ceil(len(lengths) / steps) / micro_batch) * micro_batch
    return {"unit": "packed_sequences", "pack_len": pack_len, "packs": packs, "packs_per_step": packs_per_step,
            "steps_per_epoch": steps, "examples_per_step": per_step}


@dataclass(frozen=True)
class BatchLayout:
    """How a global batch is realised: ``global = per_device x world_size x accumulation``, exactly."""

    world_size: int
    per_device_batch_size: int
    gradient_accumulation_steps: int
    global_batch_size: int
    derived: bool  # True: the per-device batch is lowered from the configured one (to divide the global batch, or to fit)


def batch_layout(global_batch: int, per_device: int, world_size: int) -> BatchLayout:
    """The layout giving exactly ``global_batch`` examples per optimiser step on ``world_size`` devices.

    Keeps ``per_device`` when ``per_device x world_size`` divides the global batch; else derives the largest
    per-device batch ``p <= per_device`` with ``global % (p x world_size) == 0`` (e.g. global 8 on 8 GPUs
    with per-device 2: per-device 1, accumulation 1). The global batch is never changed. The first of
    :func:`exact_layouts`.

    Raises:
        ConfigError: the global batch is not a positive multiple of ``world_size`` (no layout exists), or a
            value is not positive.
    """
    return exact_layouts(global_batch, per_device, world_size)[0]


def exact_layouts(global_batch: int, per_device: int, world_size: int) -> list[BatchLayout]:
    """Every layout giving exactly ``global_batch`` examples per optimiser step on ``world_size`` devices with a
    per-device batch ``p <= per_device``, largest ``p`` first (``global % (p x world_size) == 0``; ``p = 1`` is
    always among them): e.g. global 8, per-device 2 on 1 GPU: ``2 x 4``, ``1 x 8``. ``derived`` is True for
    each ``p`` other than ``per_device``. The preflight takes the first whose memory fits
    (:func:`mixgap.plan.preflight.train_layout`).

    Raises:
        ConfigError: as :func:`batch_layout`.
    """
    if global_batch <= 0 or per_device <= 0 or world_size <= 0:
        raise ConfigError(
            f"finetune_mode.global_batch_size={global_batch} with per_device_batch_size={per_device} on "
            f"{world_size} GPU(s) is not allowed; all three must be > 0"
        )
    if global_batch % world_size:
        allowed = [w for w in WORLD_SIZES if global_batch % w == 0]
        multiples = ", ".join(str(world_size * k) for k in range(1, 4))
        raise ConfigError(
            f"finetune_mode.global_batch_size={global_batch} is not allowed on {world_size} GPUs: a global batch is "
            f"per-device batch x {world_size} GPUs x accumulation steps (the per-device batch is lowered to fit, "
            f"never the global batch), so on {world_size} GPUs it must be a multiple of {world_size} ({multiples}, "
            f"...); {global_batch} runs on {', '.join(map(str, allowed))} GPU(s)"
        )
    return [BatchLayout(world_size, p, global_batch // (p * world_size), global_batch, p != per_device)
            for p in range(min(per_device, global_batch // world_size), 0, -1) if global_batch % (p * world_size) == 0]
