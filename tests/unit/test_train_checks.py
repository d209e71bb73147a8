"""Save checks: zero-size / missing weights and adapters refused, generation config stops on end-of-turn, LoRA
merge exact."""

from __future__ import annotations

import json

import pytest

from mixgap.stages.train.checks import (
    CheckpointError,
    check_saved_adapter,
    check_saved_weights,
    expected_adapter,
    expected_parameters,
    merge_lora,
    write_generation_config,
)


def save(path, tensors):
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path / "model.safetensors"))


def test_weights_ok_zero_size_and_too_small(tmp_path):
    import torch

    save(tmp_path / "ok", {"a": torch.zeros(10, 10), "b": torch.zeros(20, dtype=torch.bfloat16)})
    assert check_saved_weights(tmp_path / "ok", 120) == {"tensors": 2, "elements": 120, "bytes": 440,
                                                          "dtype": ["BF16", "F32"]}
    save(tmp_path / "zero3", {"a": torch.zeros(0), "b": torch.zeros(20)})  # ZeRO-3 placeholders
    with pytest.raises(CheckpointError, match="1 zero-size tensors \\(e.g. a\\).*stage3_gather_16bit"):
        check_saved_weights(tmp_path / "zero3", 20)
    with pytest.raises(CheckpointError, match="saved 120 elements \\(440 bytes\\) for a model of 1,000 parameters"):
        check_saved_weights(tmp_path / "ok", 1000)  # 120 of 1000 < 50%
    with pytest.raises(CheckpointError, match="no \\*.safetensors"):
        check_saved_weights(tmp_path / "missing", 10)


def test_weights_bytes_far_below(tmp_path):
    import torch

    # enough elements but saved as 1-byte ints: 100 bytes for 100 fp32 parameters (400 bytes expected) is fine
    # at the saved width; 30 fp16 elements for 100 parameters is not
    save(tmp_path / "half", {"a": torch.zeros(30, dtype=torch.float16)})
    with pytest.raises(CheckpointError, match="saved 30 elements \\(60 bytes\\)"):
        check_saved_weights(tmp_path / "half", 100)


def test_expected_parameters_hand_count(tmp_path):
    from transformers import LlamaConfig

    v, h, i, layers, heads, kv = 100, 16, 32, 2, 4, 2
    LlamaConfig(vocab_size=v, hidden_size=h, intermediate_size=i, num_hidden_layers=layers,
                num_attention_heads=heads, num_key_value_heads=kv, tie_word_embeddings=True).save_pretrained(tmp_path)
    head_dim = h // heads
    per_layer = 2 * h * h + 2 * h * kv * head_dim + 3 * h * i + 2 * h  # q,o + k,v + mlp + 2 norms
    assert expected_parameters(tmp_path) == v * h + layers * per_layer + h  # tied head counted once


def test_generation_config_stops_on_end_of_turn(tmp_path):
    from transformers import GenerationConfig

    # a base model trained on ChatML: eos <|endoftext|> (0), end of turn <|im_end|> (2)
    GenerationConfig(bos_token_id=1, eos_token_id=0).save_pretrained(tmp_path)
    assert write_generation_config(tmp_path, end_of_turn_id=2, pad_id=2) == [2, 0]
    saved = json.loads((tmp_path / "generation_config.json").read_text())
    assert saved["eos_token_id"] == [2, 0] and saved["pad_token_id"] == 2
    assert write_generation_config(tmp_path, end_of_turn_id=2, pad_id=5) == [2, 0]  # idempotent; pad kept
    assert json.loads((tmp_path / "generation_config.json").read_text())["pad_token_id"] == 2


def test_lora_merge_matches_unmerged_logits(tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2)
    LlamaForCausalLM(config).save_pretrained(tmp_path / "base")
    base = LlamaForCausalLM.from_pretrained(tmp_path / "base").eval()
    ids = torch.randint(0, 256, (2, 24))
    with torch.no_grad():
        base_logits = base(ids).logits
    # init_lora_weights=False: B is random, not zero, so the adapter really changes the outputs
    peft_model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"],
                                                 init_lora_weights=False)).eval()
    with torch.no_grad():
        adapted = peft_model(ids).logits
    peft_model.save_pretrained(tmp_path / "adapter")
    merge_lora(str(tmp_path / "base"), tmp_path / "adapter", tmp_path / "merged")
    assert not (tmp_path / "merged" / "adapter_config.json").exists()
    merged = LlamaForCausalLM.from_pretrained(tmp_path / "merged").eval()
    with torch.no_grad():
        merged_logits = merged(ids).logits
    assert (adapted - base_logits).abs().max().item() > 1e-2
    assert torch.allclose(merged_logits, adapted, atol=1e-4, rtol=0)


def test_expected_adapter_is_r_by_in_and_out_by_r(tmp_path):
    from peft import LoraConfig
    from transformers import LlamaConfig

    # hidden 16, 4 heads of 4, 2 kv heads: q/o 16 -> 16, k/v 16 -> 8; mlp 16 -> 32 -> 16
    LlamaConfig(vocab_size=100, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2).save_pretrained(tmp_path)
    shapes = expected_adapter(tmp_path, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "down_proj"]))
    layer = "base_model.model.model.layers.{}.{}.lora_{}.weight"
    assert shapes == {
        **{layer.format(i, "self_attn.q_proj", "A"): [4, 16] for i in (0, 1)},
        **{layer.format(i, "self_attn.q_proj", "B"): [16, 4] for i in (0, 1)},
        **{layer.format(i, "self_attn.k_proj", "A"): [4, 16] for i in (0, 1)},
        **{layer.format(i, "self_attn.k_proj", "B"): [8, 4] for i in (0, 1)},
        **{layer.format(i, "mlp.down_proj", "A"): [4, 32] for i in (0, 1)},
        **{layer.format(i, "mlp.down_proj", "B"): [16, 4] for i in (0, 1)},
    }


def test_adapter_ok_placeholders_missing_and_misshapen(tmp_path):
    import torch
    from safetensors.torch import save_file

    expected = {"m.q.lora_A.weight": [4, 16], "m.q.lora_B.weight": [8, 4]}

    def adapter(name, tensors, config=True):
        path = tmp_path / name
        path.mkdir()
        save_file(tensors, str(path / "adapter_model.safetensors"))
        if config:
            (path / "adapter_config.json").write_text("{}")
        return path

    ok = adapter("ok", {"m.q.lora_A.weight": torch.ones(4, 16), "m.q.lora_B.weight": torch.ones(8, 4)})
    assert check_saved_adapter(ok, expected) == {"tensors": 2, "elements": 96, "dtype": ["F32"]}
    zero3 = adapter("zero3", {"m.q.lora_A.weight": torch.zeros(0), "m.q.lora_B.weight": torch.ones(8, 4)})
    with pytest.raises(CheckpointError, match="1 zero-size adapter tensors \\(e.g. m.q.lora_A.weight\\): ZeRO-3"):
        check_saved_adapter(zero3, expected)
    half = adapter("half", {"m.q.lora_A.weight": torch.ones(4, 16)})
    with pytest.raises(CheckpointError, match="1 missing adapter tensors \\(e.g. m.q.lora_B.weight\\)"):
        check_saved_adapter(half, expected)
    wrong = adapter("wrong", {"m.q.lora_A.weight": torch.ones(4, 16), "m.q.lora_B.weight": torch.ones(4, 8)})
    with pytest.raises(CheckpointError, match="1 misshapen adapter tensors \\(e.g. m.q.lora_B.weight \\[4, 8\\] \\(expected \\[8, 4\\]\\)"):
        check_saved_adapter(wrong, expected)
    extra = adapter("extra", {"m.q.lora_A.weight": torch.ones(4, 16), "m.q.lora_B.weight": torch.ones(8, 4),
                              "m.k.lora_A.weight": torch.ones(4, 16)})
    with pytest.raises(CheckpointError, match="1 unexpected adapter tensors \\(e.g. m.k.lora_A.weight\\)"):
        check_saved_adapter(extra, expected)
    bare = adapter("bare", {"m.q.lora_A.weight": torch.ones(4, 16)}, config=False)
    with pytest.raises(CheckpointError, match="no adapter_config.json"):
        check_saved_adapter(bare, expected)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "adapter_config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="no \\*.safetensors adapter weights"):
        check_saved_adapter(tmp_path / "empty", expected)
