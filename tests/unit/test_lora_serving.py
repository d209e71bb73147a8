"""A LoRA student's fine-tuned arm served as the authors' lm-evaluation-harness/test_lora.sh serves it (the base
model with the adapter, through vLLM's LoRA, at the model's own context; mixgap.stages.serving), or merged: what each
arm's engine loads, its key fields, the plan's evaluation lines and refusals (mixgap.plan.engines), and the adapter's
rank as the backends read it."""

from __future__ import annotations

import json

import pytest

from conftest import compose_cfg
from mixgap.plan.engines import engine_line
from mixgap.plan.jobs import make_plan
from mixgap.plan.preflight import preflight as plan_preflight
from mixgap.stages import serving
from mixgap.stages.backends.base import adapter_rank
from mixgap.stages.backends.vllm import vllm_lora_kwargs

LORA = ("student=qwen14b", "data.missing_pool=wait")


def preflight(cfg, gpus, cpu=False):
    return plan_preflight(cfg, make_plan(cfg), gpus, None, cpu=cpu)


def test_each_arm_is_served_at_its_own_context_and_only_an_adapter_enters_the_key(tmp_path):
    """The paper presets: the untuned student at eval.max_model_len (16,000, test.sh), a LoRA checkpoint as the
    student + its adapter/ at the model's own context (None); full SFT and merged LoRA: the checkpoint folder."""
    checkpoint = tmp_path / "ck"
    (checkpoint / "adapter").mkdir(parents=True)
    (checkpoint / "adapter" / "adapter_config.json").write_text('{"r": 8}')
    lora, full = compose_cfg(*LORA), compose_cfg("student=qwen14b", "finetune_mode=full")
    assert serving.arm_serving(lora, "untuned", "/s", None) == serving.Serving("/s", None, 16000)
    assert serving.arm_serving(lora, "tuned", "/s", checkpoint) == serving.Serving("/s", str(checkpoint / "adapter"), None)
    assert serving.arm_serving(full, "tuned", "/s", checkpoint) == serving.Serving(str(checkpoint), None, 16000)
    merged = compose_cfg(*LORA, "eval.lora_serving=merged", "eval.lora_max_model_len=12000")
    assert serving.arm_serving(merged, "tuned", "/s", checkpoint) == serving.Serving(str(checkpoint), None, 12000)
    assert serving.key_fields(lora, "tuned") == {"max_model_len": None, "lora_serving": "adapter"}
    assert serving.key_fields(lora, "untuned") == serving.key_fields(full, "tuned") == {"max_model_len": 16000}
    assert serving.key_fields(merged, "tuned") == {"max_model_len": 12000}
    with pytest.raises(ValueError, match="arm='tuned' needs a checkpoint folder"):
        serving.arm_serving(lora, "tuned", "/s", None)


def test_the_adapter_rank_is_the_largest_of_r_and_its_rank_pattern(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 8, "rank_pattern": {"q_proj": 4, "v_proj": 12}}))
    assert adapter_rank(tmp_path) == 12
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 8, "rank_pattern": {}}))
    assert adapter_rank(tmp_path) == 8
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": "8"}))
    with pytest.raises(ValueError, match="r='8' is not allowed; a LoRA adapter has an integer rank"):
        adapter_rank(tmp_path)
    with pytest.raises(FileNotFoundError, match="adapter_config.json: not found"):
        adapter_rank(tmp_path / "nothing")
    # vLLM's max_lora_rank: the smallest allowed rank >= the adapter's (vllm/config/lora.py MaxLoRARanks)
    assert [vllm_lora_kwargs(r)["max_lora_rank"] for r in (1, 2, 8, 9, 64, 300, 512)] == [1, 8, 8, 16, 64, 320, 512]
    with pytest.raises(ValueError, match="LoRA rank r=0 is not allowed"):
        vllm_lora_kwargs(0)


def test_a_lora_students_tuned_arm_is_planned_as_the_authors_serve_it():
    """qwen14b (LoRA, the paper presets): the untuned arm on vLLM at eval.max_model_len 16,000; the tuned arm the
    base with the adapter on vLLM (enable_lora, max_lora_rank 8 = LLaMA-Factory's rank, one adapter) at the model's
    own context, 32,768 (test_lora.sh sets no max_model_len): its completions get their full 16,000 new tokens, the
    untuned ones 16,000 - 512 = 15,488, so at the compute bound the tuned arm takes 16,000 / 15,488 of the untuned
    hours. Merged at 16,000 both arms are planned alike; a context over the model's or a rank vLLM cannot reserve is
    refused in one line."""
    compute = "cluster.gpu_memory_bandwidth_gbs=1000000000"
    report = preflight(compose_cfg(*LORA, compute), 8)
    untuned, tuned = report["evaluation"]["untuned"], report["evaluation"]["tuned"]
    assert (untuned["serves"], untuned["backend"], untuned["context_field"], untuned["engine_context"]) == (
        "student", "vllm", "eval.max_model_len", 16000)
    assert tuned == {"student": "qwen14b", "serves": "adapter", "lora_serving": "adapter", "backend": "vllm",
                     "context_field": "eval.lora_max_model_len", "max_model_len": None, "engine_context": 32768,
                     "lora_rank": 8, "vllm_lora": {"enable_lora": True, "max_lora_rank": 8, "max_loras": 1},
                     "refusal": None}
    assert engine_line("tuned", tuned) == (
        "tuned: LoRA adapter (r 8) on student=qwen14b served by vllm (enable_lora=True, max_lora_rank=8, max_loras=1; "
        "eval.lora_serving=adapter) at the model's own context, 32,768 tokens (eval.lora_max_model_len=null)")
    assert engine_line("untuned", untuned) == (
        "untuned: student=qwen14b on vllm at eval.max_model_len=16000 tokens (prompt + completion)")
    hours = report["eval_untuned_hours_estimate"]
    assert report["eval_hours_estimate"] == pytest.approx(hours * (1 + 16000 / 15488), abs=0.002)
    merged = preflight(compose_cfg(*LORA, compute, "eval.lora_serving=merged", "eval.lora_max_model_len=16000"), 8)
    assert engine_line("tuned", merged["evaluation"]["tuned"]) == (
        "tuned: the checkpoint of student=qwen14b (LoRA merged into its weights, eval.lora_serving=merged) on vllm at "
        "eval.lora_max_model_len=16000 tokens (prompt + completion)")
    assert merged["eval_hours_estimate"] == pytest.approx(2 * merged["eval_untuned_hours_estimate"], abs=0.002)
    cpu = preflight(compose_cfg(*LORA), 1, cpu=True)["evaluation"]["tuned"]
    assert (cpu["backend"], cpu["vllm_lora"]) == ("hf", None)
    assert "served by hf (peft PeftModel, unmerged; eval.lora_serving=adapter)" in engine_line("tuned", cpu)
    llama = preflight(compose_cfg("student=llama70b", "data.missing_pool=wait"), 8)["evaluation"]["tuned"]
    assert llama["engine_context"] == 131072 and llama["serves"] == "adapter"
    long = preflight(compose_cfg(*LORA, "eval.lora_max_model_len=40000"), 8)
    assert long["refusals"] == ["eval.lora_max_model_len=40000 is not allowed for student=qwen14b; it must be <= its "
                                "context, max_position_embeddings=32768"]
    big = preflight(compose_cfg(*LORA, "finetune_mode.lora.r=1024"), 8)
    assert big["refusals"] == ["finetune_mode.lora.r=1024 is not allowed with eval.lora_serving=adapter on vllm; it "
                               "must be <= 512 (vLLM's largest max_lora_rank), or set eval.lora_serving=merged"]


def test_the_hf_backend_serves_an_adapter_unmerged_with_the_merged_models_greedy_tokens(tmp_path, smollm2_path):
    """hf + ``adapter=``: a tiny random Llama (SmolLM2's tokenizer) with a random rank-4 LoRA adapter (peft, B not
    zero) served unmerged by peft gives the greedy completions of the same adapter merged by the train stage's
    :func:`mixgap.stages.train.checks.merge_lora`, and not the base model's."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from mixgap.stages.backends.registry import load_backend
    from mixgap.stages.train.checks import merge_lora

    torch.manual_seed(0)
    base, adapter, merged = tmp_path / "base", tmp_path / "adapter", tmp_path / "merged"
    config = LlamaConfig(vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=2)
    LlamaForCausalLM(config).save_pretrained(base)
    tokenizer = AutoTokenizer.from_pretrained(smollm2_path)
    tokenizer.save_pretrained(base)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False,
                      task_type="CAUSAL_LM")  # as our trainer's (mixgap.stages.train.trainer.lora_config)
    get_peft_model(LlamaForCausalLM.from_pretrained(base), lora).save_pretrained(adapter)
    merge_lora(str(base), adapter, merged)
    tokenizer.save_pretrained(merged)
    prompts = ["What is 2 + 3?", "Compute 7 * 6.", "Name a prime.", "Count to five."]
    texts = {}
    for name, model, kw in (("adapter", base, {"adapter": str(adapter)}), ("merged", merged, {}), ("base", base, {})):
        engine = load_backend("hf", str(model), dtype="float32", batch_size=4, **kw)
        assert type(engine.model).__name__ == ("PeftModelForCausalLM" if kw else "LlamaForCausalLM")
        assert engine.max_model_len == 256  # the base model's own context, through peft's wrapper
        texts[name] = [(c[0].text, c[0].completion_tokens) for c in engine.generate(prompts, max_new_tokens=16)]
        engine.close()
    assert texts["adapter"] == texts["merged"]
    assert sum(a != b for a, b in zip(texts["adapter"], texts["base"], strict=True)) >= 3


def test_the_plan_log_names_each_arms_engine_here_and_on_the_cluster(caplog):
    """``stage=plan`` on a CPU machine for a LoRA student: each arm's engine here (hf, the adapter through peft), then
    on ``hydra/launcher=slurm`` (vLLM, the adapter through its LoRA) at the model's own context."""
    from mixgap.plan.printout import log_preflight

    cfg = compose_cfg(*LORA)
    here = plan_preflight(cfg, make_plan(cfg), 1, None, cpu=True)
    here["elsewhere"] = plan_preflight(cfg, make_plan(cfg), 8, None, launcher="slurm")
    with caplog.at_level("INFO", logger="mixgap.plan.preflight"):
        log_preflight(here)
    assert [r.getMessage() for r in caplog.records if "evaluation" in r.getMessage()] == [
        "preflight evaluation untuned: student=qwen14b on hf at eval.max_model_len=16000 tokens (prompt + completion)",
        "preflight evaluation tuned: LoRA adapter (r 8) on student=qwen14b served by hf (peft PeftModel, unmerged; "
        "eval.lora_serving=adapter) at the model's own context, 32,768 tokens (eval.lora_max_model_len=null)",
        "preflight on hydra/launcher=slurm: evaluation untuned: student=qwen14b on vllm at eval.max_model_len=16000 "
        "tokens (prompt + completion)",
        "preflight on hydra/launcher=slurm: evaluation tuned: LoRA adapter (r 8) on student=qwen14b served by vllm "
        "(enable_lora=True, max_lora_rank=8, max_loras=1; eval.lora_serving=adapter) at the model's own context, "
        "32,768 tokens (eval.lora_max_model_len=null)"]
