"""Generation engines: token budgets, stop handling, batching order, the vLLM/HF arguments they build."""

from __future__ import annotations

import sys

import pytest
from omegaconf import OmegaConf

from mixgap.core.errors import ConfigError
from mixgap.stages.backends.base import (
    BackendUnavailable,
    cut_at_stop,
    length_sorted_batches,
    render_prompts,
    status_of,
    stop_token_ids,
    token_budget,
    too_long,
)
from mixgap.stages.backends.dataset import DatasetImport
from mixgap.stages.backends.hf import HFBackend, hf_generate_kwargs
from mixgap.stages.backends.registry import BACKENDS, backend_class, load_backend, register
from mixgap.stages.backends.vllm import (
    VLLMBackend,
    vllm_engine_kwargs,
    vllm_platform_kwargs,
    vllm_sampling_kwargs,
)


@pytest.mark.parametrize(
    ("prompt", "max_new", "context", "budget"),
    [(100, 50, 8192, 50), (8190, 50, 8192, 2), (8192, 50, 8192, 0), (9000, 50, 8192, -808)],
)
def test_token_budget(prompt, max_new, context, budget):
    assert token_budget(prompt, max_new, context) == budget


@pytest.mark.parametrize(
    ("tokens", "budget", "expected"),
    [
        ([5, 6, 2, 2, 2], 10, ([5, 6], 3, "stop")),  # stop token counted, padding after it ignored
        ([5, 6, 7], 2, ([5, 6], 2, "length")),  # a longer batch-mate generated past this sample's budget
        ([5, 6, 7, 2], 3, ([5, 6, 7], 3, "length")),  # the stop token falls outside the budget
        ([9, 0, 4], 5, ([9], 2, "stop")),  # any of the stop ids
    ],
)
def test_cut_at_stop(tokens, budget, expected):
    assert cut_at_stop(tokens, [2, 0], budget) == expected


def test_status_of_and_too_long():
    assert [status_of(r) for r in ("stop", "length", "prompt_too_long")] == ["ok", "truncated", "prompt_too_long"]
    with pytest.raises(ValueError, match="finish_reason='abort' is not allowed"):
        status_of("abort")
    samples = too_long(9000, 2)
    assert len(samples) == 2 and samples[0].text == "" and samples[0].status == "prompt_too_long"
    assert samples[0].prompt_tokens == 9000 and samples[0].completion_tokens == 0


def test_length_sorted_batches_longest_first_ties_in_input_order():
    assert length_sorted_batches([3, 9, 5, 9, 1], 2) == [[1, 3], [2, 0], [4]]
    assert length_sorted_batches([], 4) == []
    with pytest.raises(ValueError, match="batch_size=0"):
        length_sorted_batches([1], 0)


def test_hf_generate_kwargs_greedy_and_sampling():
    greedy = hf_generate_kwargs(max_new_tokens=64, temperature=0.0, top_p=0.8, n=1, stop_ids=[2, 0], pad_id=2)
    assert greedy == {"max_new_tokens": 64, "num_return_sequences": 1, "eos_token_id": [2, 0], "pad_token_id": 2,
                      "num_beams": 1, "repetition_penalty": 1.0, "do_sample": False, "temperature": None,
                      "top_p": None, "top_k": None}
    sampled = hf_generate_kwargs(max_new_tokens=64, temperature=0.7, top_p=0.8, n=4, stop_ids=[2], pad_id=2)
    assert sampled["do_sample"] is True and sampled["temperature"] == 0.7 and sampled["top_p"] == 0.8
    assert sampled["top_k"] == 0 and sampled["num_return_sequences"] == 4  # no hidden top-k of 50


def test_vllm_engine_kwargs():
    assert vllm_engine_kwargs("Qwen/QwQ-32B-Preview", dtype="bfloat16", max_model_len=32768,
                              tensor_parallel_size=4, seed=7) == {
        "model": "Qwen/QwQ-32B-Preview", "tokenizer": "Qwen/QwQ-32B-Preview", "dtype": "bfloat16",
        "tensor_parallel_size": 4, "seed": 7, "trust_remote_code": False, "max_model_len": 32768}
    assert "max_model_len" not in vllm_engine_kwargs("m")
    with pytest.raises(ValueError, match="tensor_parallel_size=0"):
        vllm_engine_kwargs("m", tensor_parallel_size=0)


def test_vllm_sampling_kwargs():
    sampled = vllm_sampling_kwargs(max_new_tokens=16384, temperature=0.7, top_p=0.8, n=2, seed=11,
                                   stop_token_ids=[151645])
    assert sampled == {"n": 2, "temperature": 0.7, "top_p": 0.8, "top_k": -1, "repetition_penalty": 1.0,
                       "max_tokens": 16384, "seed": 11, "stop_token_ids": [151645], "skip_special_tokens": True}
    greedy = vllm_sampling_kwargs(max_new_tokens=10, temperature=0.0, top_p=0.8, n=1, seed=11, stop_token_ids=[])
    assert greedy["temperature"] == 0.0 and greedy["top_p"] == 1.0 and greedy["seed"] is None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"n": 0}, "n=0"), ({"temperature": -1.0}, "temperature=-1.0"), ({"top_p": 0.0}, "top_p=0.0"),
     ({"max_new_tokens": 0}, "max_new_tokens=0")],
)
def test_sampling_arguments_are_checked(kwargs, match):
    args = {"max_new_tokens": 8, "temperature": 0.7, "top_p": 0.9, "n": 1, "seed": 0, "stop_token_ids": [], **kwargs}
    with pytest.raises(ValueError, match=match):
        vllm_sampling_kwargs(**args)


def test_missing_vllm_gives_one_line_with_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm now raises ImportError
    with pytest.raises(BackendUnavailable) as err:
        load_backend("vllm", "Qwen/Qwen2.5-32B-Instruct")
    assert "pip install 'mixgap[gpu]'" in str(err.value) and "\n" not in str(err.value)
    assert "eval.backend=hf" in str(err.value) and "teacher.backend=hf" in str(err.value)  # the full keys


def test_unknown_backend_kind():
    with pytest.raises(ConfigError, match="^backend kind='tgi' is not allowed; choose one of hf, vllm, dataset$"):
        load_backend("tgi", "m")
    with pytest.raises(ConfigError, match="kind='dataset' is not allowed here: it imports .* choose one of hf, vllm$"):
        load_backend("dataset", "m")  # an importer loads no model


def test_registry_names_classes_and_their_attributes():
    assert BACKENDS == {"hf": HFBackend, "vllm": VLLMBackend, "dataset": DatasetImport}
    assert [backend_class(n).generates for n in ("hf", "vllm", "dataset")] == [True, True, False]
    with pytest.raises(ConfigError) as err:
        backend_class("tgi", "mix.strong.backend")
    assert str(err.value) == "mix.strong.backend='tgi' is not allowed; choose one of hf, vllm, dataset"


def test_needs_problems_always_when_generating_and_for_imports_without_ids_or_answers():
    def teacher(id_field, answer_field):
        return OmegaConf.create({"dataset": {"fields": {"id": id_field, "answer": answer_field}}})

    assert HFBackend.needs_problems(teacher("id", "answer")) and VLLMBackend.needs_problems(teacher("id", "answer"))
    assert not DatasetImport.needs_problems(teacher("id", "answer"))  # the kit's traces carry both
    assert DatasetImport.needs_problems(teacher(None, "answer"))  # ids looked up by problem text
    assert DatasetImport.needs_problems(teacher("id", None))  # gold answers looked up by problem text


def test_register_refuses_a_taken_name_and_an_incomplete_class():
    class NoGenerate:
        generates = True

        @staticmethod
        def needs_problems(teacher):
            return True

    with pytest.raises(ValueError, match="name='hf' is already registered"):
        register("hf")(NoGenerate)
    with pytest.raises(TypeError, match="backend 'half' .* lacks generate, close"):
        register("half")(NoGenerate)
    assert "half" not in BACKENDS and BACKENDS["hf"] is HFBackend


@pytest.mark.slow
def test_stop_tokens_come_from_eos_and_the_templates_end_of_turn(smollm2_tokenizer):
    tok = smollm2_tokenizer
    assert stop_token_ids(tok) == [2]  # <|im_end|> is both eos and ChatML's end of turn
    other = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|endoftext|>{% endfor %}"
    assert stop_token_ids(tok, other, extra=[2, 1]) == [2, 1, 0]  # <|endoftext|> (id 0) ends its turns
    spaced = other.replace("}}<|endoftext|>", "}}\n\n<|endoftext|>")  # text between content and the end token
    assert stop_token_ids(tok, spaced) == [2, 0]


@pytest.mark.slow
def test_render_prompts_uses_the_chat_template_once(smollm2_tokenizer):
    tok = smollm2_tokenizer
    (ids,) = render_prompts(tok, ["What is 1+1?"])
    assert tok.decode(ids) == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nWhat is 1+1?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert ids.count(1) == 3  # one <|im_start|> per turn: no extra BOS from the tokenizer
    (bare,) = render_prompts(tok, ["hi"], chat_template="{{ messages[0]['content'] }}!")
    assert tok.decode(bare) == "hi!"


def test_vllm_platform_kwargs_cpu_float32_and_eager_gpu_unchanged():
    base = vllm_engine_kwargs("m", dtype="auto", max_model_len=512)
    # vLLM's own auto would downcast a float32 checkpoint to bfloat16 on a CPU; the hf backend's auto is float32
    assert vllm_platform_kwargs(base, cuda=False) == {**base, "dtype": "float32", "enforce_eager": True}
    bf16 = vllm_engine_kwargs("m", dtype="bfloat16")
    assert vllm_platform_kwargs(bf16, cuda=False) == {**bf16, "enforce_eager": True}  # an explicit dtype is kept
    assert vllm_platform_kwargs(base, cuda=True) == base
