"""Row and column names of the report's tables: the teacher pair's kind (long vs short CoT, large vs small
teacher), the paper's method name of a mix weight, and the realised strong fraction beside the nominal w."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any


def pair_kind(strong_cot: str | None) -> dict[str, str]:
    """Column names for a teacher pair: long vs short CoT (Table 1), else large vs small teacher (Table 2)."""
    if strong_cot == "long":
        return {"kind": "long", "strong": "Long", "weak": "Short"}
    return {"kind": "large", "strong": "Large", "weak": "Small"}


def named(name: Any, shown: str) -> str:
    """A model in a report heading: its display name with the config name after it (``QwQ-32B-Preview (`qwq32b`)``),
    or the config name alone when it has no other display name."""
    return f"{shown} (`{name}`)" if shown != str(name) else str(name)


def method_name(weight: float, names: dict[str, str]) -> str:
    """The paper's row name for a mix weight: Long/Short (w = 1/0), Mix-Long (w = 0.2), else Mix-Long (w=...)."""
    if weight == 1:
        return names["strong"]
    if weight == 0:
        return names["weak"]
    mix = f"Mix-{names['strong']}"
    return mix if weight == 0.2 else f"{mix} (w={weight:g})"


def by_pair(rows: Sequence[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """``rows`` grouped by teacher pair ``(row["strong"], row["weak"])``, in first-seen order."""
    pairs: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        pairs[(row["strong"], row["weak"])].append(row)
    return pairs


def realised_weight(train_counts: dict[str, Any] | None) -> float | None:
    """The strong fraction a job really trained on: kept strong / (kept strong + kept weak) examples.

    ``train_counts`` is the training stage's counts (``result.json`` ``counts.train``, from
    ``mixgap.stages.train.labels.apply_overlength``). Over-length drops fall mostly on the strong (long CoT) side, so
    at w = 0.2 this is below 0.2 under ``finetune_mode.overlength=drop``; ``drop_pair`` makes it exact (up to
    the rounding of ``mixgap.stages.mix.strong_count``). None when the counts are absent (the job did not train).
    """
    kept = (train_counts or {}).get("kept") or {}
    total = kept.get("strong", 0) + kept.get("weak", 0)
    return kept.get("strong", 0) / total if total else None


def weight_label(weight: float | None, realised: Sequence[float | None]) -> str:
    """``"0.2 (0.171)"``: the nominal mix weight and, in brackets, the realised strong fraction of its jobs
    (a range ``0.168–0.175`` when seeds differ; ``—`` when no job has training counts)."""
    if weight is None:
        return "—"
    values = sorted({round(r, 3) for r in realised if r is not None})
    if not values:
        return f"{weight:g} (—)"
    inner = f"{values[0]:.3f}" if len(values) == 1 else f"{values[0]:.3f}–{values[-1]:.3f}"
    return f"{weight:g} ({inner})"
