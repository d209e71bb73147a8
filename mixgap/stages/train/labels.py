"""Tokenisation of one SFT example and its label mask, and the over-length policy of a whole mixture.

The student's own chat template renders the conversation (system = ``finetune_mode.system``, or the
template's default when None; user = ``finetune_mode.prompt`` filled with the problem; assistant = the
teacher's CoT; :func:`render_training_turn` gives that text). The paper's presets reproduce the authors'
LLaMA-Factory 0.9.2 data (official repo, ``LLaMA-Factory/data/dataset_info.json``: ``prompt: problem,
response: solution``): the user turn is the bare problem, the system turn the LLaMA-Factory template's
(``qwen``: "You are a helpful assistant."); the evaluation's turn differs (instruction prompt, the tokenizer's
own default system: ``mixgap.stages.backends.base.render_prompts``). Which tokens are supervised is decided from
the rendering, by character offsets:

- the prompt text is ``apply_chat_template(messages, add_generation_prompt=True)``; every one of its tokens
  (system, user, generation prompt) gets label -100;
- the rest of the full rendering is the assistant turn; its tokens that overlap the response text, and the
  first token after it (the template's end-of-turn token, ``<|im_end|>`` for ChatML/Qwen/SmolLM2,
  ``<|eot_id|>`` for Llama-3) are supervised; anything the template writes after the end-of-turn token
  (ChatML's trailing newline) is kept as input with label -100.

Pad ids play no part (SmolLM2's pad == eos == ``<|im_end|>``, so a pad-based mask would unsupervise the
end-of-turn token and the student would never learn to stop). The prompt and the assistant turn are
tokenised separately, exactly as the evaluator tokenises the prompt before generating (no BPE merge
across the boundary); they are LLaMA-Factory's ``source`` and ``target`` token lists.

Over-length samples (``finetune_mode.overlength``) are dropped and counted per source (``drop``, the paper's text:
max length 16,384), or cut as the authors' released configs cut them (``truncate``: LLaMA-Factory's
``infer_seqlen``, :func:`infer_seqlen`, at ``cutoff_len`` 8,192 for long/short CoT and 4,096 for the Mix recipe;
a cut long trace loses its final answer and end-of-turn token), counted and warned.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from mixgap.core.fields import check_field
from mixgap.core.schema import FinetuneConfig
from mixgap.stages.data import Problem, fill_prompt

log = logging.getLogger(__name__)
IGNORE = -100  # the label torch.nn.CrossEntropyLoss (and transformers' ForCausalLMLoss) ignores
SOURCES = ("strong", "weak")


@dataclass
class TokenizedExample:
    """One training example: ``input_ids`` and ``labels`` of equal length (-100 = not supervised)."""

    input_ids: list[int]
    labels: list[int]
    id: str | None = None
    source: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    prompt_len: int | None = None  # tokens of the prompt rendering (LLaMA-Factory's source); None: up to the 1st label

    @property
    def n_supervised(self) -> int:
        """Number of supervised tokens (labels != -100)."""
        return sum(label != IGNORE for label in self.labels)


def set_chat_template(tokenizer: Any, chat_template: str | None) -> Any:
    """Use ``chat_template`` (a Jinja string) for ``tokenizer``; ``None``/``"model"`` keeps the tokenizer's own.

    Raises:
        ValueError: the tokenizer has no chat template and none is given (``student.chat_template``).
    """
    if chat_template not in (None, "", "model"):
        tokenizer.chat_template = chat_template
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            "student.chat_template='model' but the student's tokenizer has no chat template; "
            "give a Jinja template string in student.chat_template"
        )
    return tokenizer


def _special_ids(tokenizer: Any) -> set[int]:
    ids = set(tokenizer.all_special_ids)
    ids.update(tokenizer.get_added_vocab().values())
    return ids


def _content_span(turn: str, response: str) -> tuple[int, int]:
    """Character span of the response inside the rendered assistant turn (templates may ``trim`` it)."""
    for content in (response, response.strip()):
        start = turn.find(content)
        if start >= 0:
            return start, start + len(content)
    raise ValueError(
        "the chat template changes the response text (it is not found in the rendered assistant turn); "
        "use a template that writes the assistant content verbatim (student.chat_template)"
    )


def conversation(prompt: str, system: str | None = None) -> list[dict[str, str]]:
    """The messages before the assistant turn: ``[system?, user]``; ``system=None`` writes no system message
    (the chat template then writes its default, if it has one); ``""`` is an empty system message."""
    messages = [{"role": "system", "content": system}] if system is not None else []
    messages.append({"role": "user", "content": prompt})
    return messages


def render_training_turn(tokenizer: Any, problem: str, response: str, prompt: str, system: str | None) -> str:
    """The full text of one training example under the student's chat template, as it is tokenised.

    Args:
        tokenizer: a Hugging Face tokenizer with the chat template in use (:func:`set_chat_template`).
        problem: the problem text (fills ``{problem}`` of ``prompt``).
        response: the assistant turn (the teacher's CoT).
        prompt: ``finetune_mode.prompt``, with ``{problem}`` (``'{problem}'``: the bare problem, as the paper).
        system: ``finetune_mode.system``; None = the chat template's default system turn.

    Returns:
        ``apply_chat_template([system?, user, assistant], tokenize=False)``, e.g. for Qwen2.5 with
        system "You are a helpful assistant." and prompt ``'{problem}'``:
        ``<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n{problem}<|im_end|>\n``
        ``<|im_start|>assistant\n{response}<|im_end|>\n`` (LLaMA-Factory 0.9.2's ``qwen`` template, character
        for character).

    Raises:
        ValueError: ``prompt`` without ``{problem}`` (``data.fill_prompt``).
    """
    messages = [*conversation(fill_prompt(prompt, problem), system), {"role": "assistant", "content": response}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)


def tokenize_conversation(tokenizer: Any, prompt: str, response: str, system: str | None = None) -> TokenizedExample:
    """Tokenise a single-turn conversation with the tokenizer's chat template and build its label mask.

    Args:
        tokenizer: a fast (offset-capable) Hugging Face tokenizer with a chat template.
        prompt: the user turn (already filled, e.g. ``data.fill_prompt(finetune_mode.prompt, problem)``).
        response: the assistant turn (the teacher's CoT solution), non-empty.
        system: an explicit system turn, or None to let the template write its default (if any).

    Returns:
        ``TokenizedExample`` with ``input_ids`` = tokens(prompt rendering with generation prompt) +
        tokens(rest of the full rendering), and ``labels`` = -100 on every prompt token, the token id on
        each token overlapping the response text and on the end-of-turn token right after it, -100 after.

    Raises:
        ValueError: empty response; a template whose full rendering does not start with its prompt
            rendering, or that alters the response text; no special end-of-turn token right after the
            response (nothing would teach the student to stop); a tokenizer without offsets.
    """
    if not response or not response.strip():
        raise ValueError("response is empty: nothing to supervise")
    messages = conversation(prompt, system)
    prompt_text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    full_text = tokenizer.apply_chat_template(
        [*messages, {"role": "assistant", "content": response}], tokenize=False, add_generation_prompt=False
    )
    if not full_text.startswith(prompt_text):
        raise ValueError(
            "the chat template renders the prompt differently with and without the assistant turn; "
            "cannot tell prompt tokens from response tokens (student.chat_template)"
        )
    turn = full_text[len(prompt_text):]
    start, end = _content_span(turn, response)
    prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    encoded = tokenizer(turn, add_special_tokens=False, return_offsets_mapping=True)
    if "offset_mapping" not in encoded:
        raise ValueError("the tokenizer gives no offsets; use a fast tokenizer (use_fast=True)")
    turn_ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
    labels = [tid if (a < end and b > start) else IGNORE for tid, (a, b) in zip(turn_ids, offsets, strict=True)]
    after = next((i for i, (a, _b) in enumerate(offsets) if a >= end), None)
    if after is None or turn_ids[after] not in _special_ids(tokenizer):
        found = "nothing" if after is None else repr(tokenizer.convert_ids_to_tokens(turn_ids[after]))
        raise ValueError(
            f"the chat template writes {found} after the assistant content, not a special end-of-turn token "
            "(e.g. <|im_end|>, <|eot_id|>); the student would never learn to stop"
        )
    labels[after] = turn_ids[after]
    return TokenizedExample(input_ids=[*prompt_ids, *turn_ids], labels=[IGNORE] * len(prompt_ids) + labels,
                            prompt_len=len(prompt_ids))


def end_of_turn_id(tokenizer: Any) -> int:
    """The id of the token the chat template closes an assistant turn with (the last supervised token)."""
    example = tokenize_conversation(tokenizer, "1+1?", "2")
    return next(label for label in reversed(example.labels) if label != IGNORE)


def infer_seqlen(source_len: int, target_len: int, cutoff_len: int) -> tuple[int, int]:
    """How many prompt (source) and response (target) tokens LLaMA-Factory keeps under ``cutoff_len``.

    Ported line by line from LLaMA-Factory 0.9.2 as vendored by the authors (official repo
    ``Small-Model-Gap/Small-Model-Learnability-Gap`` at 814cf97, ``LLaMA-Factory/src/llamafactory/data/processor/
    processor_utils.py``, ``infer_seqlen``; called by ``supervised.py`` ``_encode_data_example`` with the whole
    budget, since the ``qwen`` template has no ``efficient_eos``): a target shorter than half the budget is kept
    whole and the source is cut; else a source shorter than half is kept whole and the target gets the rest;
    else the budget is split in proportion to the two lengths (``int`` rounds down). Both are cut from the
    right: the caller keeps ``source[:s]`` and ``target[:t]``.

    Args:
        source_len: tokens of the prompt rendering (system, user turn, generation prompt), >= 0.
        target_len: tokens of the assistant turn (response, end-of-turn token, trailing newline), >= 0.
        cutoff_len: the budget (``finetune_mode.max_seq_len``; the released configs' ``cutoff_len``), > 0.

    Returns:
        ``(s, t)``, the kept source and target lengths; ``s + t <= cutoff_len``, and ``(source_len, target_len)``
        when the example fits (for a budget that is a power of two, as 4,096 and 8,192 are; their float
        arithmetic, kept, can cut one token of an example that fits another budget).

    Example: source 30, target 50, cutoff 64 -> (30, 34); cutoff 40 -> (15, 25) (40 x 50/80 = 25).
    """
    if target_len * 2 < cutoff_len:  # truncate source
        max_target_len = cutoff_len
    elif source_len * 2 < cutoff_len:  # truncate target
        max_target_len = cutoff_len - source_len
    else:  # truncate both
        max_target_len = int(cutoff_len * (target_len / (source_len + target_len)))

    new_target_len = min(max_target_len, target_len)
    max_source_len = max(cutoff_len - new_target_len, 0)
    new_source_len = min(max_source_len, source_len)
    return new_source_len, new_target_len


def truncate_example(ex: TokenizedExample, cutoff_len: int) -> TokenizedExample:
    """``ex`` cut as LLaMA-Factory cuts it (:func:`infer_seqlen`): its first ``s`` prompt tokens followed by the
    first ``t`` tokens of its assistant turn, labels alike. The prompt is ``ex.prompt_len`` tokens (else the
    tokens before its first supervised label). ``ex`` itself when nothing is cut."""
    prompt = ex.prompt_len if ex.prompt_len is not None else next(
        (i for i, label in enumerate(ex.labels) if label != IGNORE), len(ex.labels))
    s, t = infer_seqlen(prompt, len(ex.input_ids) - prompt, cutoff_len)
    if s + t == len(ex.input_ids):
        return ex
    keep = [*range(s), *range(prompt, prompt + t)]
    return TokenizedExample([ex.input_ids[i] for i in keep], [ex.labels[i] for i in keep], ex.id, ex.source,
                            ex.meta, s)


def _empty_counts() -> dict[str, Any]:
    return {
        "examples": 0,
        "kept": dict.fromkeys(SOURCES, 0),
        "dropped": dict.fromkeys(SOURCES, 0),
        "truncated": dict.fromkeys(SOURCES, 0),
        "tokens": 0,
        "supervised_tokens": 0,
        "max_len": 0,
    }


def apply_overlength(
    examples: Iterable[TokenizedExample], max_seq_len: int, overlength: str
) -> tuple[list[TokenizedExample], dict[str, Any]]:
    """Drop (or cut, with a warning) the examples longer than ``max_seq_len`` tokens, counting per source.

    Args:
        examples: tokenised examples whose ``source`` is ``strong`` or ``weak``.
        max_seq_len: the longest allowed example, in tokens (``finetune_mode.max_seq_len``), > 0.
        overlength: ``drop`` (the paper's text: an over-length example is left out), ``truncate`` (every example
            goes through LLaMA-Factory's cut, :func:`truncate_example`, as in the authors' released configs; a cut
            trace usually loses its final answer and end-of-turn token), or ``drop_pair`` (rows already chosen by
            :func:`mixgap.stages.train.pairs.drop_pair_rows`; drops like ``drop``).

    Returns:
        (kept examples, counts) with counts = ``examples`` (kept), ``kept``/``dropped``/``truncated`` per
        source, ``tokens`` and ``supervised_tokens`` (kept), ``max_len``.

    Raises:
        ValueError: bad ``overlength``/``max_seq_len``/``source``; an example left without a supervised
            token (named by id); every example dropped.
    """
    check_field(FinetuneConfig, "overlength", overlength, "finetune_mode.overlength")
    check_field(FinetuneConfig, "max_seq_len", max_seq_len, "finetune_mode.max_seq_len")
    kept, counts, seen = [], _empty_counts(), 0
    for ex in examples:
        seen += 1
        if ex.source not in SOURCES:
            raise ValueError(f"example {ex.id}: source={ex.source!r} is not allowed; choose one of {', '.join(SOURCES)}")
        if overlength == "truncate":  # LLaMA-Factory cuts every example it encodes (a fitting one is unchanged)
            cut = truncate_example(ex, max_seq_len)
            counts["truncated"][ex.source] += cut is not ex
            ex = cut
        elif len(ex.input_ids) > max_seq_len:  # drop_pair removed its pairs before: nothing left here
            counts["dropped"][ex.source] += 1
            continue
        if ex.n_supervised == 0:
            raise ValueError(f"example {ex.id}: no supervised token (all labels are -100) after max_seq_len={max_seq_len}")
        kept.append(ex)
        counts["kept"][ex.source] += 1
        counts["tokens"] += len(ex.input_ids)
        counts["supervised_tokens"] += ex.n_supervised
        counts["max_len"] = max(counts["max_len"], len(ex.input_ids))
    counts["examples"] = len(kept)
    if seen and not kept:
        raise ValueError(
            f"all {seen} examples are longer than finetune_mode.max_seq_len={max_seq_len} tokens; raise it"
        )
    cut = sum(counts["truncated"].values())
    if cut:
        log.warning(
            "overlength=truncate cut %d of %d examples at %d tokens (strong %d, weak %d); cut traces lose "
            "their final answer and end-of-turn token", cut, seen, max_seq_len,
            counts["truncated"]["strong"], counts["truncated"]["weak"],
        )
    dropped = sum(counts["dropped"].values())
    if dropped:
        log.info("dropped %d of %d examples over %d tokens (strong %d, weak %d)", dropped, seen, max_seq_len,
                 counts["dropped"]["strong"], counts["dropped"]["weak"])
    return kept, counts


def tokenize_mixture(
    problems: Sequence[Problem], tokenizer: Any, prompt_template: str, *, system: str | None = None,
    progress: bool = True,
) -> list[TokenizedExample]:
    """Tokenise every mixture row: user turn = ``fill_prompt(prompt_template, problem)``, assistant = its response.

    Args:
        problems: mixture rows (``mix.read_mixture``) with ``meta["response"]`` and ``meta["source"]``.
        tokenizer: the student's tokenizer with the chat template in use.
        prompt_template: ``finetune_mode.prompt`` (has ``{problem}``).
        system: ``finetune_mode.system``, the system turn of every example; None = the template's default.

    Raises:
        ValueError: a row without ``response``/``source`` in its meta, or one ``tokenize_conversation``
            refuses; the message names the row id.
    """
    out = []
    for p in tqdm(problems, desc="tokenize", disable=not progress, mininterval=5):
        missing = [k for k in ("response", "source") if k not in p.meta]
        if missing:
            raise ValueError(f"mixture row {p.id}: meta lacks {', '.join(missing)}")
        try:
            ex = tokenize_conversation(tokenizer, fill_prompt(prompt_template, p.problem), p.meta["response"], system)
        except ValueError as err:
            raise ValueError(f"mixture row {p.id}: {err}") from err
        out.append(TokenizedExample(ex.input_ids, ex.labels, p.id, p.meta["source"], {"teacher": p.meta.get("teacher")},
                                    ex.prompt_len))
    return out
