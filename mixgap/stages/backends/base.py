"""What every generation engine shares: the :class:`Completion` record, the :class:`Backend` protocol and
the pure helpers both engines (``hf``, ``vllm``) use.

An engine takes user-turn texts, renders them with the model's chat template (plus the generation
prompt), stops on the tokenizer's eos and the template's end-of-turn token, and returns one
:class:`Completion` per sample with its ``finish_reason``, prompt/completion token counts and a
``status``. A prompt that leaves no room under ``max_model_len`` is ``prompt_too_long`` (never generated,
never an empty "solution"); a sample stopped by its token budget is ``truncated``.

The token budget of a prompt is ``min(max_new_tokens, max_model_len - prompt_tokens)``, as vLLM's
scheduler enforces it; the HF engine applies the same rule per sample, so a prompt's output does not
depend on the other prompts of its batch. Completion token counts include the stop token, as vLLM's
``CompletionOutput.token_ids`` does. torch/transformers are imported only inside the functions that run a model.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from mixgap.core.errors import MixgapError

FINISH_REASONS = ("stop", "length", "prompt_too_long")
_STATUS = {"stop": "ok", "length": "truncated", "prompt_too_long": "prompt_too_long"}
_MARK = "\u2063MIXGAP\u2063"  # a string no tokenizer merges with its neighbours' special tokens


class BackendUnavailable(MixgapError, RuntimeError):
    """An engine whose package is not installed; the message is one line with the install command."""


@dataclass
class Completion:
    """One sample. ``finish_reason``: stop | length | prompt_too_long; ``status``: ok | truncated | prompt_too_long."""

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    status: str


class Backend(Protocol):
    """A loaded generation engine (see the module docstring for the shared semantics).

    A registered engine class (:func:`mixgap.stages.backends.registry.register`) is built as
    ``cls(model, *, dtype, max_model_len, tensor_parallel_size, batch_size, chat_template, seed)`` (and ``adapter=``,
    a LoRA adapter folder to serve on ``model``, when there is one) by
    :func:`mixgap.stages.backends.registry.load_backend` and carries the class attributes ``generates = True`` and
    ``needs_problems(teacher) -> bool``.
    """

    def generate(
        self, prompts: Sequence[str], *, max_new_tokens: int, temperature: float = 0.0, top_p: float = 1.0,
        n: int = 1, seed: int = 0, desc: str = "generate", seeds: Sequence[int] | None = None,
        stops: Sequence[Sequence[str]] | None = None,
    ) -> list[list[Completion]]: ...

    def close(self) -> None: ...


def status_of(finish_reason: str) -> str:
    """The sample status of a finish reason: stop -> ok, length -> truncated, prompt_too_long -> itself."""
    if finish_reason not in _STATUS:
        raise ValueError(f"finish_reason={finish_reason!r} is not allowed; choose one of {', '.join(FINISH_REASONS)}")
    return _STATUS[finish_reason]


def token_budget(prompt_tokens: int, max_new_tokens: int, max_model_len: int) -> int:
    """New tokens a prompt may generate: ``min(max_new_tokens, max_model_len - prompt_tokens)``; <= 0: too long."""
    return min(max_new_tokens, max_model_len - prompt_tokens)


def too_long(prompt_tokens: int, n: int) -> list[Completion]:
    """The ``n`` samples of a prompt that does not fit the context: empty text, status ``prompt_too_long``."""
    return [Completion("", "prompt_too_long", prompt_tokens, 0, "prompt_too_long") for _ in range(n)]


def check_sampling(max_new_tokens: int, temperature: float, top_p: float, n: int) -> None:
    """ValueError naming the argument when a sampling setting is out of range."""
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens} is not allowed; it must be >= 1")
    if temperature < 0:
        raise ValueError(f"temperature={temperature} is not allowed; it must be >= 0 (0 = greedy)")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p={top_p} is not allowed; it must be in (0, 1]")
    if n < 1:
        raise ValueError(f"n={n} is not allowed; it must be >= 1")


def adapter_rank(adapter_dir: str | Path) -> int:
    """The largest LoRA rank of a peft adapter folder: its ``adapter_config.json`` ``r``, or a larger one of its
    ``rank_pattern`` (peft's per-module ranks, ``peft.LoraConfig``).

    Raises:
        FileNotFoundError: no ``adapter_config.json`` there. ValueError: it has no integer ``r``.
    """
    path = Path(adapter_dir) / "adapter_config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; a LoRA adapter folder holds peft's adapter_config.json")
    config = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(config.get("r"), int):
        raise ValueError(f"{path}: r={config.get('r')!r} is not allowed; a LoRA adapter has an integer rank")
    return max([config["r"], *(config.get("rank_pattern") or {}).values()])


def render_prompts(tokenizer: Any, prompts: Sequence[str], chat_template: str | None = None) -> list[list[int]]:
    """Token ids of each prompt as one user turn under the chat template, with the generation prompt.

    The rendered text is tokenized without adding special tokens again (the template writes them).
    """
    ids = []
    for prompt in prompts:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True,
            chat_template=chat_template,
        )
        ids.append(tokenizer(text, add_special_tokens=False)["input_ids"])
    return ids


def stop_token_ids(tokenizer: Any, chat_template: str | None = None, extra: Any = None) -> list[int]:
    """The tokens that end a turn: the tokenizer's eos, ``extra`` (e.g. a generation config's eos ids) and
    the first special token the chat template writes after an assistant message (``<|im_end|>``,
    ``<|eot_id|>``, ``<end_of_turn>``), found by rendering a marked assistant turn."""
    ids: list[int] = []
    for value in (tokenizer.eos_token_id, extra):
        for tid in value if isinstance(value, (list, tuple)) else [value]:
            if tid is not None and tid not in ids:
                ids.append(int(tid))
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "x"}, {"role": "assistant", "content": _MARK}], tokenize=False,
        chat_template=chat_template,
    )
    after = text.split(_MARK, 1)[1] if _MARK in text else ""
    special = set(tokenizer.all_special_ids) | {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    end = next((t for t in tokenizer(after, add_special_tokens=False)["input_ids"] if t in special), None)
    if end is not None and end not in ids:
        ids.append(end)
    return ids


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of at most ``batch_size``, longest prompts first (least padding, and an
    out-of-memory batch shows up at once)."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} is not allowed; it must be >= 1")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def cut_at_stop(tokens: Sequence[int], stop_ids: Sequence[int], budget: int) -> tuple[list[int], int, str]:
    """Split generated ``tokens`` at the first stop token within ``budget``.

    Returns:
        (content tokens without the stop token, completion token count including it, finish reason
        ``stop`` or ``length``).
    """
    stops = set(stop_ids)
    for j, tid in enumerate(tokens[:budget]):
        if tid in stops:
            return list(tokens[:j]), j + 1, "stop"
    kept = list(tokens[:budget])
    return kept, len(kept), "length"


def free_memory() -> None:
    """Collect garbage and return cached CUDA memory (after an engine is dropped)."""
    gc.collect()
    import torch  # heavy: torch, only once an engine has run

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def cut_at_stop_string(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """``text`` up to (not including) the earliest occurrence of any of ``stops``, and whether one occurred.

    The semantics of lm-evaluation-harness ``until`` and vLLM ``SamplingParams(stop=...)``: generation ends
    at the stop string, which is not part of the output.
    """
    hits = [pos for pos in (text.find(s) for s in stops if s) if pos >= 0]
    return (text[: min(hits)], True) if hits else (text, False)


def first_prefix(n: int, holds: Any) -> int:
    """The smallest ``j`` in 1..n with ``holds(j)`` true, for a monotone predicate with ``holds(n)`` true
    (binary search: O(log n) calls)."""
    low, high = 1, n
    while low < high:
        mid = (low + high) // 2
        if holds(mid):
            high = mid
        else:
            low = mid + 1
    return low


class SeededSampler:
    """A ``transformers`` logits processor that samples each row from its own ``torch.Generator``.

    Row r's next token is drawn by inverse-CDF from the temperature-scaled, nucleus-filtered distribution
    (transformers' own ``TemperatureLogitsWarper`` and ``TopPLogitsWarper``, Holtzman et al. 2020) with one
    uniform draw from generator r (seeded ``seeds[r]``) per step; the returned scores put every other token
    at -inf, so ``generate`` with greedy decoding emits exactly that token. Row r's tokens thus depend only
    on its prompt and its seed, not on the rows beside it (batched ``torch.multinomial`` shares one RNG).

    Args:
        seeds: one seed per row of the batch (prompts x ``num_return_sequences``, in HF's row order).
        temperature: > 0.
        top_p: in (0, 1].
    """

    def __init__(self, seeds: Sequence[int], temperature: float, top_p: float):
        import torch  # heavy: torch, only when the hf engine samples
        from transformers import TemperatureLogitsWarper, TopPLogitsWarper  # heavy: transformers, as above

        self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.warpers = [TemperatureLogitsWarper(temperature)] + ([TopPLogitsWarper(top_p)] if top_p < 1 else [])

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch  # heavy: torch, only when the hf engine samples

        scores = scores.float()
        for warp in self.warpers:
            scores = warp(input_ids, scores)
        probs = torch.softmax(scores, dim=-1).cpu()
        cdf = probs.cumsum(dim=-1)
        u = torch.stack([torch.rand(1, generator=g, dtype=torch.float64) for g in self.generators]).to(cdf.dtype)
        picks = torch.searchsorted(cdf, u * cdf[:, -1:]).clamp(max=cdf.shape[1] - 1).squeeze(1)
        out = torch.full_like(scores, float("-inf"))
        out[torch.arange(out.shape[0]), picks.to(out.device)] = 0.0
        return out


class RowStopStrings:
    """A ``transformers`` stopping criterion: row r is done once its generated text contains one of its own
    stop strings ``stops[r]`` (rows of one batch may come from benchmarks with different stops). Only the
    last tokens are decoded each step (enough to hold the longest stop string)."""

    def __init__(self, tokenizer: Any, stops: Sequence[Sequence[str]], prompt_width: int):
        self.tokenizer, self.stops, self.width = tokenizer, [list(s) for s in stops], prompt_width
        self.tail = 8 + max((len(s) for row in self.stops for s in row), default=0)

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch  # heavy: torch, only when the hf engine generates

        done = []
        for r, row in enumerate(input_ids[:, self.width :].tolist()):
            text = self.tokenizer.decode(row[-self.tail :], skip_special_tokens=True) if self.stops[r] else ""
            done.append(any(s in text for s in self.stops[r] if s))
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)
