"""``finetune_mode.overlength=drop_pair``: drop an over-length problem from the mixture in every arm of a sweep.

Why: under ``overlength=drop`` an example longer than ``max_seq_len`` is dropped after the mixture is drawn.
Long-CoT (strong) responses are the long ones, so a job labelled w = 0.2 trains on fewer than 0.2 x N strong
examples, and each weight trains on a different problem set. ``drop_pair`` removes, before the mix is drawn,
every problem whose response is over-length in *either* pool, then redraws the mixture at the same weight and
seed (``mixgap.stages.mix.select``) on the problems left. Every weight of a sweep then trains on the same problems
and the realised weight is exact (``floor(w N' + 0.5) / N'``).

Where it happens (design): the over-length test depends on the student's tokenizer, chat template, training
prompt and ``max_seq_len``, while the mixture artifact is shared by every student. So the mixture stays the
nominal draw (student-independent, keyed by weight and seed), and the train stage, which knows the student,
applies ``drop_pair``: it reads both pools of the mixture (the problem set and each problem's two responses),
finds the over-length problems for this student and redraws. The excluded set is a function of the pools, the
tokenizer, the prompt and ``max_seq_len`` only, never of w, which is what makes it the same in every arm. The
choice is recorded in the checkpoint's counts (``drop_pair``) and, since ``overlength`` is part of the
checkpoint key, a ``drop_pair`` checkpoint never replaces a ``drop`` one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mixgap.stages.data import Problem, fill_prompt


def overlong_ids(pool_rows: dict[str, dict[str, Any]], ids: set[str], tokenizer: Any, prompt: str,
                 max_seq_len: int) -> set[str]:
    """The ids among ``ids`` whose response in this pool tokenises (with the prompt, chat template and
    end-of-turn token, as in training: ``labels.tokenize_conversation``) to more than ``max_seq_len`` tokens."""
    from mixgap.stages.train.labels import tokenize_conversation  # noqa: PLC0415

    out = set()
    for pid in ids & set(pool_rows):
        row = pool_rows[pid]
        example = tokenize_conversation(tokenizer, fill_prompt(prompt, row["problem"]), row["response"])
        if len(example.input_ids) > max_seq_len:
            out.add(pid)
    return out


def drop_pair_rows(pools: dict[str, Path], tokenizer: Any, prompt: str, max_seq_len: int,
                   mix_cfg: Any) -> tuple[list[Problem], dict[str, Any]]:
    """The mixture redrawn without the problems that are over-length in either pool.

    Args:
        pools: ``{"strong": dir, "weak": dir}``, the finished pools the mixture was drawn from.
        tokenizer: the student's tokenizer with its chat template set.
        prompt: ``finetune_mode.prompt``.
        max_seq_len: ``finetune_mode.max_seq_len``.
        mix_cfg: ``mix`` (weight, seed, problems), as for the mixture.

    Returns:
        ``(rows, counts)``: rows as ``mix.read_mixture`` gives them (meta ``response``/``source``/``teacher``/
        ``completion_tokens``), sorted by id; counts ``{"problems": N before, "excluded": n,
        "overlong": {"strong": a, "weak": b} (a problem may be over-length in both), "N", "strong", "weak"}``.

    Raises:
        ValueError: every problem is over-length (nothing to train on), or a pool repeats an id.
        ConfigError: as ``mix.select`` (e.g. a ``union`` weight that cannot be met).
    """
    from mixgap.stages.generate import read_pool  # noqa: PLC0415
    from mixgap.stages.mix import select  # noqa: PLC0415

    rows = {role: {r["id"]: r for r in read_pool(pools[role])} for role in ("strong", "weak")}
    candidates = set(rows["strong"]) | set(rows["weak"])
    if mix_cfg.problems == "intersection":
        candidates = set(rows["strong"]) & set(rows["weak"])
    overlong = {role: overlong_ids(rows[role], candidates, tokenizer, prompt, max_seq_len) for role in rows}
    excluded = overlong["strong"] | overlong["weak"]
    keep = {role: set(rows[role]) - excluded for role in rows}
    if not (keep["strong"] | keep["weak"]) or (mix_cfg.problems == "intersection" and not keep["strong"] & keep["weak"]):
        raise ValueError(f"finetune_mode.overlength=drop_pair leaves no problem: all {len(candidates)} have a response "
                         f"over finetune_mode.max_seq_len={max_seq_len} tokens; raise it")
    ids, strong = select(keep["strong"], keep["weak"], float(mix_cfg.weight), int(mix_cfg.seed), mix_cfg.problems)
    out = []
    for pid in ids:
        source = "strong" if pid in strong else "weak"
        row = rows[source][pid]
        out.append(Problem(id=pid, problem=row["problem"], answer=row["answer"], solution=None,
                           meta={"response": row["response"], "source": source, "teacher": row["teacher"],
                                 "completion_tokens": row.get("completion_tokens")}))
    counts = {"problems": len(candidates), "excluded": len(excluded),
              "overlong": {role: len(v) for role, v in overlong.items()}, "N": len(ids), "strong": len(strong),
              "weak": len(ids) - len(strong)}
    return out, counts
