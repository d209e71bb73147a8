"""The paper's judge runs at its model's own context, as the authors' script runs it (vLLM's default: 32,768 for
Qwen2.5-32B-Instruct), so a judge prompt longer than the students' 16,000-token engine is judged, not returned as
``prompt_too_long`` (wrong). Memory figures by hand from conf/judge/qwen32b.yaml's arch; GB = 1e9 bytes."""

from __future__ import annotations

from conftest import compose_cfg
from mixgap.plan.estimates import kv_bytes_per_rank_token
from mixgap.plan.jobs import make_plan
from mixgap.plan.preflight import preflight
from mixgap.stages import judge as judge_stage
from mixgap.stages.backends.base import Completion, token_budget
from mixgap.stages.backends.vllm import vllm_engine_kwargs


def test_the_paper_judge_plans_and_answers_a_prompt_longer_than_16000_tokens(monkeypatch, smollm2_tokenizer):
    cfg = compose_cfg("+experiment=long_vs_short", "student=qwen0.5b", "mix.weight=1.0")
    judge = cfg.eval.judge
    assert judge.max_model_len is None and judge.arch.max_position_embeddings == 32768
    assert judge.tensor_parallel_size == 4 and judge.max_new_tokens == 20

    # the preflight plans the judge for one sequence of its whole context (what vLLM must hold to start):
    # bf16 weights 2 x 32.5e9 / TP 4 = 16.25 GB + KV 2 (K, V) x 64 layers x (8 KV heads / 4) x 128 x 2 bytes
    # = 65,536 B a token x 32,768 = 2.147 GB + 2 GB overhead = 20.4 GB per GPU (a 0.5B student's evaluation needs less)
    assert kv_bytes_per_rank_token(judge.arch, 4) == 65536
    out = preflight(cfg, make_plan(cfg), 8)
    assert out["generation_memory_gb_per_gpu"] == round(16.25 + 65536 * 32768 / 1e9 + 2.0, 1) == 20.4
    assert out["data_parallel_size"]["judge"] == 2 and not out["refusals"]

    # a judge prompt of more than 16,000 tokens (a long boxed answer), counted with SmolLM2's BPE as a stand-in
    # for Qwen's (no Hub here)
    answer = " + ".join(f"x_{{{i}}}" for i in range(3000))
    prompt = judge_stage.fill_judge_prompt(judge.prompt, "Simplify the sum.", "0", answer)
    tokens = len(smollm2_tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert 16000 < tokens < 32768 - 20
    # under the students' 16,000 it would be prompt_too_long (no budget); at the model's own context, judged
    assert token_budget(tokens, judge.max_new_tokens, 16000) <= 0
    assert token_budget(tokens, judge.max_new_tokens, judge.arch.max_position_embeddings) == 20

    # the engine is built with no max_model_len, so vLLM takes the model's own (its config's 32,768)
    seen: dict = {}

    class Engine:
        def generate(self, prompts, **kwargs):
            seen["prompts"] = list(prompts)
            return [[Completion("True", "stop", tokens, 1, "ok")] for _ in prompts]

        def close(self):
            pass

    monkeypatch.setattr(judge_stage, "resolve_model", lambda source, store: str(source.hf_id))
    monkeypatch.setattr(judge_stage.registry, "load_backend",
                        lambda kind, model, **kwargs: seen.update(kind=kind, model=model, **kwargs) or Engine())
    assert judge_stage.JudgeEngine(judge, store=None).ask([prompt]) == ["True"]
    assert (seen["kind"], seen["model"], seen["max_model_len"]) == ("vllm", "Qwen/Qwen2.5-32B-Instruct", None)
    assert seen["prompts"] == [prompt]
    engine = vllm_engine_kwargs(seen["model"], dtype=seen["dtype"], max_model_len=seen["max_model_len"],
                                tensor_parallel_size=seen["tensor_parallel_size"])
    assert "max_model_len" not in engine and engine["tensor_parallel_size"] == 4 and engine["dtype"] == "float16"
