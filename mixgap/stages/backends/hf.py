"""The ``hf`` backend: batched transformers ``generate`` on a CPU or a GPU (semantics: :mod:`.base`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tqdm.auto import tqdm

from mixgap.stages.backends.base import (
    Completion,
    RowStopStrings,
    SeededSampler,
    check_sampling,
    cut_at_stop,
    cut_at_stop_string,
    first_prefix,
    free_memory,
    length_sorted_batches,
    render_prompts,
    status_of,
    stop_token_ids,
    token_budget,
    too_long,
)
from mixgap.stages.backends.registry import register


def hf_generate_kwargs(*, max_new_tokens: int, temperature: float, top_p: float, n: int,
                       stop_ids: Sequence[int], pad_id: int) -> dict[str, Any]:
    """Keyword arguments for ``transformers`` ``model.generate``: greedy at temperature 0, else nucleus
    sampling with no top-k and no repetition penalty (every default a model's generation config may carry
    is overridden, so the teacher config alone decides the sampling)."""
    kwargs: dict[str, Any] = {
        "max_new_tokens": max_new_tokens, "num_return_sequences": n, "eos_token_id": list(stop_ids),
        "pad_token_id": pad_id, "num_beams": 1, "repetition_penalty": 1.0,
    }
    if temperature == 0:
        return {**kwargs, "do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    return {**kwargs, "do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 0}



@register("hf")
class HFBackend:
    """transformers ``generate``: length-sorted batches, left padding, per-sample token budgets, tqdm progress.

    Greedy output is the same token for token whether a prompt runs alone or in a batch (left padding
    with the attention mask; checked in ``tests/integration/test_generate_hf.py``).
    """

    generates = True

    @staticmethod
    def needs_problems(teacher: Any) -> bool:
        """Always: the prompts are the problems."""
        return True

    def __init__(self, model: str, *, dtype: str = "auto", max_model_len: int | None = None,
                 batch_size: int = 16, chat_template: str | None = None, tensor_parallel_size: int = 1,
                 seed: int = 0, adapter: str | None = None):
        """Load ``model`` on the GPU when one is visible, else the CPU (arguments: :func:`load_backend`;
        ``tensor_parallel_size`` and ``seed`` are not used: one device, seeds given per call); with ``adapter``, that
        LoRA adapter folder on it, unmerged (peft ``PeftModel.from_pretrained``: every adapted layer adds
        ``scale x B(A(x))`` to the base layer's output, as vLLM's LoRA does)."""
        import torch  # heavy: torch, only when the hf engine loads
        from transformers import AutoModelForCausalLM, AutoTokenizer  # heavy: transformers, as above

        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        if dtype == "auto":
            torch_dtype: Any = torch.float32 if self.device == "cpu" else "auto"
        elif dtype in ("float32", "bfloat16", "float16"):
            torch_dtype = getattr(torch, dtype)
        else:
            raise ValueError(f"dtype={dtype!r} is not allowed; choose one of auto, float32, bfloat16, float16")
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.model = AutoModelForCausalLM.from_pretrained(model, dtype=torch_dtype).to(self.device).eval()
        if adapter is not None:
            from peft import PeftModel  # heavy: peft, only when an adapter is served

            self.model = PeftModel.from_pretrained(self.model, adapter).to(self.device).eval()
        self.max_model_len = max_model_len or int(self.model.config.max_position_embeddings)
        self.batch_size = batch_size
        self.chat_template = chat_template
        self.stop_ids = stop_token_ids(self.tokenizer, chat_template, self.model.generation_config.eos_token_id)
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else self.stop_ids[0])

    def generate(self, prompts: Sequence[str], *, max_new_tokens: int, temperature: float = 0.0,
                 top_p: float = 1.0, n: int = 1, seed: int = 0, desc: str = "generate",
                 seeds: Sequence[int] | None = None,
                 stops: Sequence[Sequence[str]] | None = None) -> list[list[Completion]]:
        """See :class:`Backend`; batch ``b`` (in length order) samples with ``torch.manual_seed(seed + b)``, or,
        with ``seeds``, sample j of prompt i draws from its own generator seeded ``seeds[i] + j``
        (:class:`SeededSampler`: the same tokens whatever else is in its batch). ``stops[i]``: strings that
        end prompt i's completions (:func:`cut_at_stop_string`)."""
        check_sampling(max_new_tokens, temperature, top_p, n)
        ids = render_prompts(self.tokenizer, prompts, self.chat_template)
        budgets = [token_budget(len(p), max_new_tokens, self.max_model_len) for p in ids]
        results: list[list[Completion]] = [too_long(len(p), n) for p in ids]
        fits = [i for i, b in enumerate(budgets) if b >= 1]
        batches = length_sorted_batches([len(ids[i]) for i in fits], self.batch_size)
        with tqdm(total=len(prompts), desc=desc, unit="prompt") as bar:
            bar.update(len(prompts) - len(fits))
            for b, batch in enumerate(batches):
                members = [fits[j] for j in batch]
                row_seeds = None if seeds is None or temperature == 0 else [seeds[i] + j for i in members for j in range(n)]
                row_stops = [list(stops[i]) for i in members for _ in range(n)] if stops is not None else None
                outputs = self._generate_batch([ids[i] for i in members], max(budgets[i] for i in members),
                                               temperature, top_p, n, seed + b, row_seeds, row_stops)
                for k, i in enumerate(members):
                    results[i] = [self._completion(len(ids[i]), out, budgets[i], stops[i] if stops is not None else ())
                                  for out in outputs[k * n : (k + 1) * n]]
                bar.update(len(members))
        return results

    def _generate_batch(self, batch: list[list[int]], max_new: int, temperature: float, top_p: float, n: int,
                        seed: int, row_seeds: list[int] | None = None,
                        row_stops: list[list[str]] | None = None) -> list[list[int]]:
        import torch  # heavy: torch, only when the hf engine generates
        from transformers import LogitsProcessorList, StoppingCriteriaList  # heavy: transformers, as above

        if row_seeds:  # repeated prompts (rows k*n + j), each with its own generator
            batch, n = [p for p in batch for _ in range(n)], 1
        width = max(len(p) for p in batch)
        input_ids = torch.tensor([[self.pad_id] * (width - len(p)) + p for p in batch], device=self.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch], device=self.device)
        torch.manual_seed(seed)
        kwargs = hf_generate_kwargs(max_new_tokens=max_new, temperature=0.0 if row_seeds else temperature,
                                    top_p=top_p, n=n, stop_ids=self.stop_ids, pad_id=self.pad_id)
        if row_seeds:  # greedy over a processor that has already drawn each row's token from its own generator
            kwargs["logits_processor"] = LogitsProcessorList([SeededSampler(row_seeds, temperature, top_p)])
        if row_stops and any(row_stops):
            kwargs["stopping_criteria"] = StoppingCriteriaList([RowStopStrings(self.tokenizer, row_stops, width)])
        with torch.inference_mode():
            out = self.model.generate(input_ids=input_ids, attention_mask=mask, **kwargs)
        return out[:, width:].tolist()

    def _completion(self, prompt_tokens: int, tokens: list[int], budget: int, stops: Sequence[str] = ()) -> Completion:
        content, count, reason = cut_at_stop(tokens, self.stop_ids, budget)
        text = self.tokenizer.decode(content, skip_special_tokens=True)
        if stops:
            cut, hit = cut_at_stop_string(text, stops)
            if hit:  # count the tokens up to the one that completes the stop string (as vLLM does)
                text, reason = cut, "stop"
                count = first_prefix(len(content), lambda j: cut_at_stop_string(
                    self.tokenizer.decode(content[:j], skip_special_tokens=True), stops)[1])
        return Completion(text, reason, prompt_tokens, count, status_of(reason))

    def close(self) -> None:
        """Free the model (and GPU memory when on CUDA)."""
        del self.model
        free_memory()
