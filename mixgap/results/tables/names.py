"""Row and column names of the report's tables: the teacher pair's kind (long vs short CoT, large vs small
teacher), the paper's method name of a mix weight, the realised strong fraction beside the nominal w, and the arm
of a job (:func:`arm_of`): its mix weight, or a student-aware strategy's name."""

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


#: Arm = a fixed mix weight (a float) or a student-aware strategy (a str, :func:`arm_of`).
Arm = float | str


def arm_of(identity: dict[str, Any]) -> Arm | None:
    """The arm of a job (``result.json`` ``job``, :func:`mixgap.core.runrecord.job_identity`): its mix weight for
    ``mix.strategy=fixed`` (a job recorded before the strategy existed is fixed), else ``"rsr"`` (no weight: it
    selects nothing) or ``"rsr_budget w=0.2"``: what the report compares as one more arm beside the weights."""
    strategy, weight = identity.get("strategy") or "fixed", identity.get("weight")
    if strategy == "fixed" or weight is None:
        return weight
    return strategy if strategy == "rsr" else f"{strategy} w={float(weight):g}"


def student_aware(arm: Arm | None) -> bool:
    """True for a student-aware strategy's arm (:func:`arm_of`), False for a fixed weight."""
    return isinstance(arm, str)


def arm_strategy(arm: Arm) -> str:
    """The ``mix.strategy`` of an arm: ``fixed`` for a weight, else the strategy its name starts with."""
    return arm.split(" ")[0] if student_aware(arm) else "fixed"


def arm_label(arm: Arm) -> str:
    """How an arm is printed: ``0.2`` for a weight, the strategy (``rsr``, ``rsr_budget w=0.2``) otherwise."""
    return arm if student_aware(arm) else f"{arm:g}"


def arm_title(arm: Arm) -> str:
    """An arm as a column or legend names it: ``w=0.2`` for a weight, the strategy otherwise (``rsr``,
    ``rsr_budget w=0.2``), never the weight a student-aware ``rsr`` job carries but does not use."""
    return arm if student_aware(arm) else f"w={arm:g}"


def arm_order(arm: Arm) -> tuple:
    """Sort key of arms: the weights in order, then the student-aware strategies by name."""
    return (1, 0.0, arm) if student_aware(arm) else (0, float(arm), "")


def method_name(weight: Arm, names: dict[str, str]) -> str:
    """The paper's row name for a mix weight: Long/Short (w = 1/0), Mix-Long (w = 0.2), else Mix-Long (w=...); a
    student-aware arm as Mix-Long (rsr)."""
    if student_aware(weight):
        return f"Mix-{names['strong']} ({weight})"
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


def weight_label(weight: Arm | None, realised: Sequence[float | None]) -> str:
    """``"0.2 (0.171)"``: the nominal mix weight (or a student-aware arm, ``rsr (0.412)``) and, in brackets, the
    realised strong fraction of its jobs (a range ``0.168–0.175`` when seeds differ; ``—`` when no job has training
    counts)."""
    if weight is None:
        return "—"
    values = sorted({round(r, 3) for r in realised if r is not None})
    if not values:
        return f"{arm_label(weight)} (—)"
    inner = f"{values[0]:.3f}" if len(values) == 1 else f"{values[0]:.3f}–{values[-1]:.3f}"
    return f"{arm_label(weight)} ({inner})"
