"""Case study (Li et al. 2025, Figure 7): the completions of every arm of a sweep on chosen problems, side by side.

Per problem: the problem text and gold answer, then one Markdown table with a column per arm (the untuned
student and each fine-tuned student of the sweep) giving the verdict, extracted answer, length and the
counts of branching words, and the completions themselves in the last row. The default problems are those
where the fine-tuned arms disagree (some right, some wrong), which is where a style difference may matter.

Branching words are the self-reflection markers Li et al. (2025, Section 5 and Figure 7) point to in long
CoT: ``Wait``, ``Alternatively``, ``But``, ``Let me``, counted case-sensitively as whole words (``But`` at a
clause start, not ``but`` inside one; ``Butter`` never).
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

BRANCHING_WORDS = ("Wait", "Alternatively", "But", "Let me")
_PATTERNS = {w: re.compile(rf"\b{re.escape(w)}\b") for w in BRANCHING_WORDS}


def branching_counts(text: str) -> dict[str, int]:
    """Occurrences of each of :data:`BRANCHING_WORDS` in ``text`` (case-sensitive, whole words)."""
    return {w: len(p.findall(text)) for w, p in _PATTERNS.items()}


def disagreements(verdicts: Sequence[Mapping[str, bool]]) -> list[str]:
    """Problem ids that every arm answered and on which the arms' verdicts differ, in the first arm's order.

    Args:
        verdicts: one ``{problem id: correct}`` per arm (at least one).

    Raises:
        ValueError: no arms.
    """
    if not verdicts:
        raise ValueError("verdicts is empty; give one {id: correct} mapping per arm")
    shared = [i for i in verdicts[0] if all(i in v for v in verdicts[1:])]
    return [i for i in shared if len({bool(v[i]) for v in verdicts}) > 1]


@dataclass
class Case:
    """One problem of the case study and each arm's prediction row (``predictions.jsonl``; None if missing)."""

    benchmark: str
    id: str
    problem: str
    gold: str
    rows: dict[str, dict[str, Any] | None] = field(default_factory=dict)


def cell(text: Any) -> str:
    """``text`` as one Markdown table cell: HTML-escaped, ``|`` escaped, line breaks as ``<br>``."""
    value = html.escape("" if text is None else str(text), quote=False).replace("|", "\\|")
    return value.replace("\r\n", "\n").replace("\n", "<br>")


def verdict(row: Mapping[str, Any] | None) -> str:
    """``correct`` / ``wrong (<grader reason>)`` / ``missing``."""
    if row is None:
        return "missing"
    if row.get("correct"):
        return "correct"
    return f"wrong ({row['reason']})" if row.get("reason") else "wrong"


def summary_rows(rows: Sequence[Mapping[str, Any] | None]) -> list[tuple[str, list[str]]]:
    """The per-arm facts of one problem as ``(row label, [one value per arm])``."""
    texts = [r.get("completion", "") if r else "" for r in rows]
    counts = [branching_counts(t) for t in texts]
    out = [
        ("verdict", [verdict(r) for r in rows]),
        ("extracted", ["" if not r or r.get("extracted") is None else str(r["extracted"]) for r in rows]),
        ("completion tokens", [f"{r.get('completion_tokens')} ({r.get('finish_reason')})" if r else "" for r in rows]),
        ("characters", [str(len(t)) if r else "" for t, r in zip(texts, rows, strict=True)]),
    ]
    out += [(f"“{w}”", [str(c[w]) if r else "" for c, r in zip(counts, rows, strict=True)]) for w in BRANCHING_WORDS]
    return out


def case_markdown(case: Case, arms: Sequence[str]) -> str:
    """One problem as Markdown: heading, problem, gold, and a table with one column per arm (in ``arms`` order)."""
    rows = [case.rows.get(a) for a in arms]
    lines = [f"### {case.benchmark} · `{case.id}`", "", "**Problem.** " + cell(case.problem), "",
             f"**Gold answer:** `{case.gold}`", "",
             "| | " + " | ".join(cell(a) for a in arms) + " |", "|---|" + "---|" * len(arms)]
    for label, values in summary_rows(rows):
        lines.append(f"| {label} | " + " | ".join(cell(v) for v in values) + " |")
    lines.append("| completion | " + " | ".join(cell(r.get("completion", "")) if r else "" for r in rows) + " |")
    return "\n".join(lines) + "\n"


def totals_markdown(cases: Sequence[Case], arms: Sequence[str]) -> str:
    """A table of each arm's totals over ``cases``: correct count, mean length and branching-word counts."""
    head = ["arm", "correct", "mean completion tokens", *(f"“{w}”" for w in BRANCHING_WORDS)]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for arm in arms:
        rows = [c.rows[arm] for c in cases if c.rows.get(arm)]
        counts = [branching_counts(r.get("completion", "")) for r in rows]
        tokens = [r.get("completion_tokens") or 0 for r in rows]
        mean = f"{sum(tokens) / len(tokens):.0f}" if tokens else ""
        values = [cell(arm), f"{sum(bool(r.get('correct')) for r in rows)}/{len(rows)}", mean,
                  *(str(sum(c[w] for c in counts)) for w in BRANCHING_WORDS)]
        lines.append("| " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"


def study_markdown(title: str, note: str, cases: Sequence[Case], arms: Sequence[str]) -> str:
    """A cell's whole case study: title, how the problems were chosen, the totals, then every problem."""
    parts = [f"## {title}", "", note, ""]
    if cases:
        parts += [totals_markdown(cases, arms), *(case_markdown(c, arms) for c in cases)]
    return "\n".join(parts)
