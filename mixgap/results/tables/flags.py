"""The report's loud warnings: evaluations stopped by length too often, and the one warnings table of
``report.md`` (length stops one row each, any other warning a row of its own)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from mixgap.results.tables.markdown import NO_LABELS, bench_label, md_table

LENGTH_BUG = "a student that never learned to stop is a training bug, not a result"
LENGTH_UNTUNED = "the untuned model needs more than eval.max_new_tokens: its accuracy is a lower bound"

_LENGTH = re.compile(r"^LENGTH STOP: (?P<where>.+) (?P<bench>\S+): (?P<pct>\d+)% of the answers stopped by length "
                     r"\(> (?P<limit>\d+)%\); (?P<why>.+)$")


def length_flags(jobs: Sequence[Any], threshold: float) -> tuple[list[str], set[str]]:
    """Loud warnings for evaluations where more than ``threshold`` of the problems stopped by length.

    One warning per evaluation artifact: the untuned student's evaluation, shared by every job of a sweep,
    is reported once. ``threshold`` is a fraction (``eval.length_warning``, 0–1); the warning names the
    benchmark by its name (:func:`warnings_markdown` prints its label).

    Returns:
        ``(warnings, flagged evaluation keys)``.
    """
    warnings, flagged = [], set()
    for job in jobs:
        for arm, evals in job.evals.items():
            for bench, ev in evals.items():
                frac = float(ev.scores.get("length_stop_frac") or 0.0)
                if frac > threshold and ev.key not in flagged:
                    flagged.add(ev.key)
                    where = f"untuned {job.identity.get('student')}" if arm == "untuned" else job.label()
                    warnings.append(
                        f"LENGTH STOP: {where} {bench}: {100 * frac:.0f}% of the answers stopped by "
                        f"length (> {100 * threshold:.0f}%); {LENGTH_UNTUNED if arm == 'untuned' else LENGTH_BUG}"
                    )
    return warnings, flagged


def flagged_any(jobs: Sequence[Any], arm: str, flagged: set[str]) -> bool:
    """Whether any of ``jobs`` has an ``arm`` evaluation among the ``flagged`` keys (:func:`length_flags`)."""
    return any(e.key in flagged for j in jobs for e in j.evals.get(arm, {}).values())


def warnings_markdown(warnings: Sequence[str], labels: Mapping[str, str] = NO_LABELS) -> str:
    """All warnings as one table: length stops one row each (evaluation, benchmark label, share), their shared
    explanation said once below the table; any other warning a row of its own. Repeats are dropped."""
    rows, reasons = [], {}
    for text in dict.fromkeys(warnings):
        match = _LENGTH.match(text)
        if match:
            reasons.setdefault(match["why"], f"{match['limit']}%")
            rows.append(["length stop", match["where"], bench_label(match["bench"], labels), f"{match['pct']}%"])
        else:
            rows.append(["other", text, "", ""])
    notes = [f"Length stop (more than {limit} of the answers stopped at eval.max_new_tokens): {why}."
             for why, limit in reasons.items()]
    return md_table(["Kind", "Where", "Benchmark", "Stopped by length"], rows) + ("\n\n" + "\n".join(notes) if notes else "")
