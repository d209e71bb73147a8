"""Token rank shift: where a fine-tuned student's tokens sit in the *untuned* student's next-token distribution.

Method: the token-distribution-shift analysis of URIAL (Lin et al. 2023, "The Unlocking Spell on Base LLMs:
Rethinking Alignment via In-Context Learning", Section 2.2): feed a completion of the tuned model through
the untuned model by teacher forcing and record, at every completion position t, the rank of the token the
tuned model produced among the untuned model's next-token logits at t. URIAL's bins: rank 1 is
*unshifted*, rank 2-3 *marginal*, rank > 3 *shifted*. Li et al. (2025, Section 5, Figure 8, Takeaway 5)
apply it to long-CoT and large-teacher SFT and find the shifted tokens are mostly style tokens ("wait",
"But", "Let").

Ranks are taken over raw logits, so they are the same as over probabilities, and monotone logit transforms
(temperature, Gemma's soft-capping, which sits outside the decoder) do not change them. A tie counts in the
token's favour: rank = 1 + the number of vocabulary entries with a strictly larger logit.

The teacher-forced scoring (fp32 LM head, batching, the untuned student's loading) is
:mod:`mixgap.stages.scoring`, shared with the ``predict`` stage; this module adds URIAL's bins and the
per-token counts of Figure 8.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mixgap.stages.backends.base import render_prompts
from mixgap.stages.scoring import score_sequences

UNSHIFTED, MARGINAL, SHIFTED = "unshifted", "marginal", "shifted"
CATEGORIES = (UNSHIFTED, MARGINAL, SHIFTED)
MARGINAL_MAX_RANK = 3  # URIAL (Lin et al. 2023, Section 2.2): ranks 2-3 are "marginal", above 3 "shifted"


def shift_category(rank: int) -> str:
    """URIAL's bin of a 1-based rank: 1 -> ``unshifted``, 2-3 -> ``marginal``, > 3 -> ``shifted``.

    Raises:
        ValueError: ``rank`` < 1.
    """
    if rank < 1:
        raise ValueError(f"rank={rank} is not allowed; ranks are 1-based (1 = the untuned model's top token)")
    return UNSHIFTED if rank == 1 else MARGINAL if rank <= MARGINAL_MAX_RANK else SHIFTED


def teacher_forcing_ids(
    tokenizer: Any, prompt: str, completion: str, chat_template: str | None = None
) -> tuple[list[int], int]:
    """Token ids that reproduce a generation: the rendered prompt, then the completion.

    The prompt is rendered exactly as generation rendered it (``mixgap.stages.backends.base.render_prompts``: one user
    turn under the chat template, with the generation prompt); the completion text is tokenised on its own
    (no special tokens) and appended. The generated ids were decoded into text and are re-tokenised here,
    which can differ from the generated ids at rare token boundaries; the end-of-turn token is not included
    (the saved text does not say which stop token ended it).

    Returns:
        ``(ids, n_prompt)``: the full sequence and the number of prompt tokens (completion = ``ids[n_prompt:]``).
    """
    (prompt_ids,) = render_prompts(tokenizer, [prompt], chat_template)
    completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
    return list(prompt_ids) + list(completion_ids), len(prompt_ids)


def completion_ranks(
    model: Any, sequences: Sequence[tuple[Sequence[int], int]], batch_size: int, *, chunk: int = 1024,
    pad_id: int = 0, desc: str = "rank shift",
) -> list[list[int]]:
    """Ranks of every completion token under ``model`` (teacher forcing), batched, without gradients.

    Args:
        model: a transformers causal LM (``base_model`` returns ``last_hidden_state``; ``get_output_embeddings``
            is the LM head); it stays on its device.
        sequences: ``(ids, n_prompt)`` pairs (:func:`teacher_forcing_ids`); ``n_prompt`` >= 1.
        batch_size: sequences per forward pass (longest first, right padding, attention mask).
        chunk: completion positions per LM-head call, so at most ``chunk x V`` logits exist at once.
        pad_id: id written into padding (masked out, never ranked).
        desc: progress bar label.

    Returns:
        One list per sequence: the 1-based rank (:func:`mixgap.stages.scoring.token_ranks`) of ``ids[t]`` for every completion position
        ``t >= n_prompt``, from the logits at ``t - 1``; an empty completion gives ``[]``.

    Raises:
        ValueError: ``batch_size`` or ``chunk`` < 1, or a sequence with ``n_prompt`` outside ``[1, len(ids)]``.
    """
    for ids, n_prompt in sequences:
        if not 1 <= n_prompt <= len(ids):
            raise ValueError(f"n_prompt={n_prompt} is not allowed for a sequence of {len(ids)} tokens; it must be in [1, len]")
    scored = [(ids, range(n_prompt, len(ids))) for ids, n_prompt in sequences]
    return [ranks for _, ranks in score_sequences(model, scored, batch_size, chunk=chunk, pad_id=pad_id, desc=desc)]


def shift_shares(ranks: Sequence[Sequence[int]]) -> dict[str, float]:
    """Share of completion positions per URIAL bin over many completions.

    Returns:
        ``positions`` (count) and ``unshifted``, ``marginal``, ``shifted`` (fractions in [0, 1] summing to 1;
        all 0.0 when there are no positions).
    """
    counts = dict.fromkeys(CATEGORIES, 0)
    for completion in ranks:
        for rank in completion:
            counts[shift_category(rank)] += 1
    total = sum(counts.values())
    return {"positions": total, **{c: (n / total if total else 0.0) for c, n in counts.items()}}


@dataclass
class TokenStat:
    """One vocabulary entry over many completions: how often it occurs, is shifted, and its shifted ranks."""

    occurrences: int = 0
    shifted: int = 0
    shifted_rank_sum: int = 0

    @property
    def mean_shifted_rank(self) -> float | None:
        """Mean untuned rank over the positions where the token is shifted (rank > 3); None if never."""
        return self.shifted_rank_sum / self.shifted if self.shifted else None


def token_stats(tokens: Sequence[Sequence[int]], ranks: Sequence[Sequence[int]]) -> dict[int, TokenStat]:
    """Per token id: occurrences, shifted count and rank sum, over aligned ``tokens``/``ranks`` lists.

    Raises:
        ValueError: a completion's token and rank lists differ in length.
    """
    stats: dict[int, TokenStat] = {}
    for n, (ids, rs) in enumerate(zip(tokens, ranks, strict=True)):
        if len(ids) != len(rs):
            raise ValueError(f"completion {n}: {len(ids)} tokens but {len(rs)} ranks")
        for tid, rank in zip(ids, rs, strict=True):
            stat = stats.setdefault(int(tid), TokenStat())
            stat.occurrences += 1
            if shift_category(rank) == SHIFTED:
                stat.shifted += 1
                stat.shifted_rank_sum += rank
    return stats


def top_shifted(stats: dict[int, TokenStat], top: int = 30) -> list[int]:
    """The ``top`` token ids shifted most often (ties: more occurrences, then lower id); never-shifted ones left out."""
    ranked = sorted((t for t, s in stats.items() if s.shifted), key=lambda t: (-stats[t].shifted, -stats[t].occurrences, t))
    return ranked[:top]
