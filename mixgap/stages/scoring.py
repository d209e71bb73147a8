"""Teacher-forced scoring: how an untuned student rates each token of a given text.

A sequence of token ids is fed through the student in one forward pass (teacher forcing); at a scored
position t the student's next-token logits at t-1 rate the token ``ids[t]`` by

- its *surprisal* (negative log-likelihood, nats): ``logsumexp(logits) - logits[target]``, in fp32 as
  ``rsr_cal.py`` (Yang et al. 2026, code ``UmeanNever/RankSurprisalRatio``);
- its *rank*: 1 + the number of vocabulary entries with a strictly larger logit (ties in the token's favour),
  as URIAL's token-distribution-shift analysis (Lin et al. 2023, Section 2.2). Ranks over raw logits equal
  ranks over probabilities; monotone transforms (temperature, soft-capping) do not change them.

Two stages use it: ``predict`` (surprisal, rank and the Rank-Surprisal Ratio of the supervised tokens of each
teacher trace, :func:`trace_record`) and the rank shift of the results layer (ranks of a tuned student's
completion under the untuned student, Li et al. 2025, Figure 8). Both go through :func:`score_sequences`.
torch/transformers are imported inside the functions that need them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from tqdm.auto import tqdm

EPS = 1e-12  # rsr_cal.py: ratio = sum_rank / max(sum_nll, 1e-12)


def token_batches(lengths: Sequence[int], max_sequences: int, max_tokens: int | None = None) -> list[list[int]]:
    """Indices grouped into length-sorted batches, longest first (least padding; an out-of-memory batch shows up at
    once), each of at most ``max_sequences`` sequences and at most ``max_tokens`` padded tokens (rows x the batch's
    longest, its first); a sequence longer than ``max_tokens`` is a batch of its own. ``max_tokens=None``: count only.
    ``token_batches([5, 9, 3, 9], 3, 20)`` is ``[[1, 3], [0, 2]]`` (9 + 9, then 5 + 5 padded tokens).

    Raises:
        ValueError: ``max_sequences`` or ``max_tokens`` < 1.
    """
    if max_sequences < 1 or (max_tokens is not None and max_tokens < 1):
        raise ValueError(f"max_sequences={max_sequences}, max_tokens={max_tokens}: both must be >= 1")
    batches: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        last = batches[-1] if batches else None
        if last and len(last) < max_sequences and (max_tokens is None or (len(last) + 1) * lengths[last[0]] <= max_tokens):
            last.append(i)
        else:
            batches.append([i])
    return batches


def token_ranks(logits: Any, targets: Any) -> Any:
    """1-based rank of each target token among its row of logits.

    Args:
        logits: float tensor ``(N, V)``: next-token logits at N positions over a vocabulary of V.
        targets: integer tensor ``(N,)`` of token ids in ``[0, V)``.

    Returns:
        Long tensor ``(N,)``: ``1 + #{v : logits[n, v] > logits[n, targets[n]]}`` (ties in the target's favour).

    Raises:
        ValueError: the shapes do not match or a target is outside the vocabulary.
    """
    if logits.dim() != 2 or targets.dim() != 1 or logits.shape[0] != targets.shape[0]:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)}: expected (N, V) and (N,)")
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= logits.shape[1]):
        raise ValueError(f"targets must be token ids in [0, {logits.shape[1]}); got {targets.min()}..{targets.max()}")
    chosen = logits.gather(1, targets.long().unsqueeze(1))
    return (logits > chosen).sum(dim=1) + 1


def token_scores(logits: Any, targets: Any) -> tuple[Any, Any]:
    """Surprisal and rank of each target token under its row of logits.

    Args:
        logits: float tensor ``(N, V)``: next-token logits at N positions.
        targets: integer tensor ``(N,)`` of token ids in ``[0, V)``.

    Returns:
        ``(nll, rank)``: float32 ``(N,)`` surprisal in nats, ``logsumexp(logits[n]) - logits[n, target]``
        (computed in fp32, as ``rsr_cal.py``), and long ``(N,)`` 1-based unclipped rank (:func:`token_ranks`).

    Raises:
        ValueError: the shapes do not match or a target is outside the vocabulary.
    """
    import torch  # heavy: torch, only when scoring

    ranks = token_ranks(logits, targets)  # validates the shapes and ids
    logits = logits.float()
    nll = torch.logsumexp(logits, dim=-1) - logits.gather(1, targets.long().unsqueeze(1)).squeeze(1)
    return nll, ranks


def trace_record(nlls: Sequence[float], ranks: Sequence[int], rank_clip: int = 100) -> dict[str, float | int]:
    """The per-trace figures from its token surprisals and ranks.

    RSR (Yang et al. 2026, arXiv 2601.14249, Eq. 7; ``rsr_cal.py`` ``compute_sample_metrics``):
    ``sum_t min(rank_t, r) / sum_t surprisal_t``.

    Args:
        nlls: surprisal (nats) of each scored token; ranks: its 1-based rank; same length, >= 1 token.
        rank_clip: RSR's r (Yang et al. 2026, Eq. 7: ``min(rank, r)``; 100 in ``rsr_launch.py``).

    Returns:
        ``tokens``, ``surprisal`` (mean nll), ``mean_rank`` (mean of ``min(rank, r)``), ``mean_rank_raw``,
        ``median_rank`` (unclipped, numpy's median: the mean of the two middle ranks for even T),
        ``top1_share`` (share of rank 1), ``rsr`` = ``sum(min(rank, r)) / max(sum(nll), 1e-12)``.

    Raises:
        ValueError: empty or unequal lists, a rank < 1, or ``rank_clip`` < 1.
    """
    if not nlls or len(nlls) != len(ranks):
        raise ValueError(f"a trace needs >= 1 scored token with one rank each; got {len(nlls)} nlls, {len(ranks)} ranks")
    if rank_clip < 1:
        raise ValueError(f"predict.rank_clip={rank_clip} is not allowed; it must be >= 1")
    r = np.asarray(ranks, dtype=np.int64)
    if r.min() < 1:
        raise ValueError(f"ranks are 1-based; got {int(r.min())}")
    s = np.asarray(nlls, dtype=np.float64)
    clipped = np.minimum(r, rank_clip)
    return {
        "tokens": len(r), "surprisal": float(s.mean()), "mean_rank": float(clipped.mean()),
        "mean_rank_raw": float(r.mean()), "median_rank": float(np.median(r)), "top1_share": float((r == 1).mean()),
        "rsr": float(clipped.sum() / max(float(s.sum()), EPS)),
    }


def load_student(path: str) -> tuple[Any, Any]:
    """The untuned student (model in eval mode on CUDA when visible, else CPU float32) and its tokenizer."""
    import torch  # heavy: torch, only when scoring
    from transformers import AutoModelForCausalLM, AutoTokenizer  # heavy: transformers, only when scoring

    cuda = torch.cuda.is_available()
    model = AutoModelForCausalLM.from_pretrained(path, dtype="auto" if cuda else torch.float32)
    return model.to("cuda" if cuda else "cpu").eval(), AutoTokenizer.from_pretrained(path)


def _decoder_and_head(model: Any) -> tuple[Any, Any]:
    """The decoder stack (``model.base_model``) and the LM head of a transformers causal LM."""
    body, head = getattr(model, "base_model", None), model.get_output_embeddings()
    if body is None or body is model or head is None or not hasattr(head, "weight"):
        raise ValueError(f"{type(model).__name__} has no separate decoder (base_model) and LM head; need a causal LM")
    return body, head


def scoring_head(model: Any) -> tuple[Any, Any, Any, Any]:
    """``(decoder body, fp32 LM-head weight, fp32 bias or None, device)`` for teacher-forced scoring: logits are
    computed in fp32 from the body's hidden states (bf16 would tie many near-equal logits and blur ranks).

    Raises:
        ValueError: ``model`` has no separate decoder (``base_model``) and LM head (``get_output_embeddings``).
    """
    body, head = _decoder_and_head(model)
    bias = None if getattr(head, "bias", None) is None else head.bias.float()
    return body, head.weight.float(), bias, next(model.parameters()).device


def padded_hidden_states(body: Any, rows: Sequence[Sequence[int]], pad_id: int, device: Any) -> Any:
    """Last hidden states of right-padded token rows, shape ``(len(rows), max_len, hidden)``.

    Rows are right-padded with ``pad_id`` under an attention mask, so position ``t`` of a row sees exactly
    its own tokens ``0..t`` (causal attention); padded positions are never read by :func:`score_sequences`.
    """
    import torch  # heavy: torch, only when scoring

    width = max(len(ids) for ids in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for row, ids in enumerate(rows):
        input_ids[row, : len(ids)] = torch.tensor(list(ids), dtype=torch.long)
        mask[row, : len(ids)] = 1
    return body(input_ids=input_ids.to(device), attention_mask=mask.to(device)).last_hidden_state


def score_sequences(
    model: Any, sequences: Sequence[tuple[Sequence[int], Sequence[int]]], batch_size: int, *, chunk: int = 1024,
    pad_id: int = 0, desc: str = "scoring", max_tokens: int | None = None,
) -> list[tuple[list[float], list[int]]]:
    """Surprisal and rank of the tokens at ``positions`` of each sequence, teacher-forced, batched, no gradients.

    Args:
        model: a transformers causal LM (``base_model`` returns ``last_hidden_state``; ``get_output_embeddings``
            is the LM head); it stays on its device.
        sequences: ``(input_ids, positions)``; each position t in ``[1, len)`` is scored from the logits at t-1;
            an empty ``positions`` gives ``([], [])``.
        batch_size: at most this many sequences per forward pass (longest first, right padding, attention mask).
        max_tokens: at most this many padded tokens per forward pass (:func:`token_batches`); None: no limit.
        chunk: positions per LM-head call (at most ``chunk x V`` fp32 logits at once).
        pad_id: id written into padding (masked, never scored).
        desc: tqdm label.

    Returns:
        Per sequence, in input order, ``(nlls, ranks)`` in position order (:func:`token_scores`).

    Raises:
        ValueError: ``batch_size``, ``max_tokens`` or ``chunk`` < 1, or a position outside ``[1, len(input_ids))``.
    """
    import torch  # heavy: torch, only when scoring

    if chunk < 1:
        raise ValueError(f"chunk={chunk} is not allowed; it must be >= 1")
    for ids, positions in sequences:
        if positions and not (1 <= min(positions) and max(positions) < len(ids)):
            raise ValueError(f"positions {min(positions)}..{max(positions)} are not in [1, {len(ids)}): the first token "
                             "has no logits before it")
    batches = token_batches([len(ids) for ids, _ in sequences], batch_size, max_tokens)
    body, weight, bias, device = scoring_head(model)
    results: list[tuple[list[float], list[int]]] = [([], []) for _ in sequences]
    with torch.inference_mode(), tqdm(total=len(sequences), desc=desc, unit="sequence") as bar:
        for batch in batches:
            hidden = padded_hidden_states(body, [sequences[i][0] for i in batch], pad_id, device)
            for row, i in enumerate(batch):
                ids, positions = sequences[i]
                pos = torch.tensor(list(positions), dtype=torch.long, device=device)
                targets = torch.tensor([ids[t] for t in positions], dtype=torch.long, device=device)
                nlls: list[float] = []
                ranks: list[int] = []
                for s in range(0, len(pos), chunk):
                    states = hidden[row, pos[s : s + chunk] - 1].float()
                    nll, rank = token_scores(torch.nn.functional.linear(states, weight, bias), targets[s : s + chunk])
                    nlls += nll.tolist()
                    ranks += rank.tolist()
                results[i] = (nlls, ranks)
            bar.update(len(batch))
    return results
