"""Padding-free packing: batches flattened into one row, attention kept inside each example.

``DataCollatorWithFlattening`` (transformers) concatenates a batch into one row whose ``position_ids``
restart at 0 for every example. What keeps examples apart is the attention:

- ``flash_attention_2`` (GPU, ``flash-attn`` installed): transformers turns the position resets into
  ``cu_seqlens`` and runs the varlen kernel, O(sum of L_i^2);
- ``sdpa``/``eager``: transformers 5 builds a dense block-diagonal causal mask over the whole row
  (``masking_utils.find_packed_sequence_indices``; only without a KV cache). Correct, but the attention
  then costs O((sum of L_i)^2) and materialises the mask: on a CPU that is slower than padding;
- ``sdpa_packed`` (:func:`packed_sdpa_attention`, registered through transformers' ``AttentionInterface``):
  PyTorch sdpa with ``is_causal=True`` on each example's slice of the row, O(sum of L_i^2) with no mask,
  the varlen semantics without the flash-attn package. The default for packing where flash-attn is absent.

All three give the padded batch's loss (tests/unit/test_train_packing.py).
"""

from __future__ import annotations

import copy
import importlib.util
from typing import Any

PACKED_SDPA = "sdpa_packed"


def segment_bounds(position_ids: Any) -> list[int]:
    """Start offsets of the packed examples in a 1-D ``position_ids`` row, plus its length at the end.

    ``[0, 1, 2, 0, 1, 0]`` -> ``[0, 3, 5, 6]``. A row is split wherever the position does not grow by 1.
    """
    import torch  # heavy: torch, imported only when used

    pos = position_ids.reshape(-1)
    steps = torch.diff(pos) != 1
    starts = [0, *(torch.nonzero(steps).flatten() + 1).tolist()]
    return [*starts, int(pos.numel())]


def packed_sdpa_attention(
    module: Any, query: Any, key: Any, value: Any, attention_mask: Any, dropout: float = 0.0,
    scaling: float | None = None, is_causal: bool | None = None, **kwargs: Any,
) -> tuple[Any, None]:
    """Causal sdpa run separately on each packed example (an ``AttentionInterface`` function).

    Args:
        module: the attention module (``num_key_value_groups`` for GQA).
        query, key, value: ``(batch, heads, seq, head_dim)``; packed rows have batch 1.
        attention_mask: None for a packed row (no padding); anything else falls back to plain sdpa.
        kwargs: must hold ``position_ids`` ``(1, seq)`` for a packed row (the decoder layers pass them).

    Returns:
        ``(attn_output (batch, seq, heads, head_dim), None)`` like transformers' ``sdpa_attention_forward``.

    Raises:
        ValueError: a multi-token row without mask and without ``position_ids`` (the example boundaries
            would be unknown and examples would attend to each other).
    """
    import torch  # heavy: torch, imported only when used
    from transformers.integrations.sdpa_attention import (
        sdpa_attention_forward,  # heavy: transformers, imported only when used
    )

    position_ids = kwargs.pop("position_ids", None)
    plain = attention_mask is not None or query.shape[0] != 1 or query.shape[2] != key.shape[2] or query.shape[2] == 1
    if plain:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, is_causal, **kwargs)
    if position_ids is None:
        raise ValueError(
            "packed attention needs position_ids in the attention call, and this model does not pass them; "
            "set finetune_mode.packing=false"
        )
    bounds = segment_bounds(position_ids)
    outputs = [
        sdpa_attention_forward(module, query[:, :, a:b], key[:, :, a:b], value[:, :, a:b], None, dropout, scaling,
                               True, **kwargs)[0]
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    return torch.cat(outputs, dim=1), None


def register_packed_sdpa() -> str:
    """Register :func:`packed_sdpa_attention` as ``sdpa_packed`` (idempotent); its mask function is
    transformers' flash-attention one (None without padding: no dense mask is ever built)."""
    from transformers import AttentionInterface  # heavy: transformers, imported only when used
    from transformers.masking_utils import (  # heavy: transformers, imported only when used
        AttentionMaskInterface,
        flash_attention_mask,
    )

    AttentionInterface.register(PACKED_SDPA, packed_sdpa_attention)
    AttentionMaskInterface.register(PACKED_SDPA, flash_attention_mask)
    return PACKED_SDPA


def attention_for(packing: bool, on_gpu: bool) -> str | None:
    """The attention implementation a training run loads the student with (None: transformers' default).

    Packing uses ``flash_attention_2`` on a GPU with ``flash-attn`` installed, else ``sdpa_packed``.
    """
    if not packing:
        return None
    if on_gpu and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return register_packed_sdpa()


def make_collator(tokenizer: Any, packing: bool):
    """Padding-free flattening (``packing``) or right padding to the longest example (LLaMA-Factory's way).

    Padded batches pad ``input_ids`` with the pad id (or eos when the tokenizer has none: masked out by
    the attention mask and by label -100, so its value is irrelevant) and ``labels`` with -100.
    """
    from transformers import (  # heavy: transformers, imported only when used
        DataCollatorForSeq2Seq,
        DataCollatorWithFlattening,
    )

    if packing:
        return DataCollatorWithFlattening()
    padder = copy.copy(tokenizer)
    padder.padding_side = "right"
    if padder.pad_token_id is None:
        padder.pad_token = padder.eos_token
    return DataCollatorForSeq2Seq(padder, padding="longest", label_pad_token_id=-100)
