"""Padding-free packing gives the padded batch's loss: position ids reset per example, no cross-example attention."""

from __future__ import annotations

from pathlib import Path

import pytest

from mixgap.stages.mix import read_mixture
from mixgap.stages.train.labels import IGNORE, tokenize_mixture
from mixgap.stages.train.packing import (
    PACKED_SDPA,
    attention_for,
    make_collator,
    register_packed_sdpa,
    segment_bounds,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture(scope="module")
def features(smollm2_tokenizer):
    rows = read_mixture(FIXTURES / "train_mixture")
    examples = tokenize_mixture(rows, smollm2_tokenizer, "{problem}", progress=False)
    chosen = [examples[0], examples[6], examples[1]]  # weak, strong, weak: lengths differ
    return [{"input_ids": e.input_ids, "labels": e.labels} for e in chosen]


def test_collators_shapes(smollm2_tokenizer, features):
    lengths = [len(f["input_ids"]) for f in features]
    padded = make_collator(smollm2_tokenizer, packing=False)(features)
    packed = make_collator(smollm2_tokenizer, packing=True)(features)
    assert tuple(padded["input_ids"].shape) == (3, max(lengths))
    assert padded["attention_mask"].sum(dim=1).tolist() == lengths
    assert (padded["labels"][padded["attention_mask"] == 0] == IGNORE).all()
    assert tuple(packed["input_ids"].shape) == (1, sum(lengths))
    assert "attention_mask" not in packed
    assert segment_bounds(packed["position_ids"]) == [0, lengths[0], lengths[0] + lengths[1], sum(lengths)]
    # every example's first label is -100 (a prompt token), so flattening changes no supervised label
    flat = [label for f in features for label in f["labels"]]
    assert packed["labels"][0].tolist() == flat


def test_segment_bounds_and_attention_choice():
    import torch

    assert segment_bounds(torch.tensor([[0, 1, 2, 0, 1, 0]])) == [0, 3, 5, 6]
    assert segment_bounds(torch.tensor([0, 1, 2, 3])) == [0, 4]
    assert attention_for(packing=False, on_gpu=False) is None
    assert attention_for(packing=True, on_gpu=False) == PACKED_SDPA


def test_packed_attention_refuses_rows_without_positions():
    import torch

    from mixgap.stages.train.packing import packed_sdpa_attention

    q = torch.zeros(1, 2, 5, 4)
    with pytest.raises(ValueError, match="packed attention needs position_ids"):
        packed_sdpa_attention(torch.nn.Module(), q, q, q, None)


@pytest.mark.slow
def test_packed_loss_equals_padded_loss(smollm2_path, smollm2_tokenizer, features):
    import torch
    from transformers import AutoModelForCausalLM

    register_packed_sdpa()
    model = AutoModelForCausalLM.from_pretrained(smollm2_path).eval()
    padded = make_collator(smollm2_tokenizer, packing=False)(features)
    packed = make_collator(smollm2_tokenizer, packing=True)(features)
    with torch.no_grad():
        loss_padded = model(**padded, use_cache=False).loss.item()
        # sdpa/eager: transformers' dense block-diagonal mask from the position resets; sdpa_packed: ours
        for attn in ("sdpa", "eager", PACKED_SDPA):
            model.set_attn_implementation(attn)
            assert model(**packed, use_cache=False).loss.item() == pytest.approx(loss_padded, abs=1e-4), attn
        # control: with a KV cache transformers skips the packed mask, so examples attend to each other and
        # the loss moves; this is why training runs with use_cache=False
        model.set_attn_implementation("sdpa")
        assert abs(model(**packed, use_cache=True).loss.item() - loss_padded) > 1e-2
