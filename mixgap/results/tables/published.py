"""The paper's numbers: Li et al. (2025), arXiv:2502.12143v1, Tables 1-3, shipped as package data
``mixgap/published/li2025.json``, and lookups of the cell that sits beside one of ours.

The JSON names the paper's columns by our benchmark names (``table3.benchmarks``: ``math``, ``amc23``, ...);
that mapping belongs to the published data, not to a run's benchmark labels.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from mixgap.results.tables.markdown import NO_LABELS

PUBLISHED = Path(__file__).resolve().parents[2] / "published" / "li2025.json"
#: the label of the paper's MATH column, read as the full 5,000-problem test (``published()["math_variant_note"]``)
PAPER_MATH_LABEL = "MATH 5k"


@lru_cache(maxsize=1)
def published() -> dict[str, Any]:
    """The paper's Tables 1–3 (package data ``mixgap/published/li2025.json``)."""
    return json.loads(PUBLISHED.read_text())


def paper_teacher(name: str) -> str:
    """The teacher a pool's published numbers are keyed by: an imported release of the authors' pools
    (``uwnsl_long`` ...) is its teacher's output (``li2025.json`` ``released_pools``); any other name is itself."""
    return published()["released_pools"].get(name, name) if name != "note" else name


def paper_gap(strong: str, weak: str, student: str) -> dict[str, float] | None:
    """Published P_strong, P_weak, Δ for this teacher pair and student, or None when the paper has no such cell.

    Δ is the paper's printed Δ (Tables 1–2 of arXiv:2502.12143v1), not P_strong − P_weak of the rounded
    accuracies: the two differ by 0.1 in three cells (Table 1 Qwen2.5-1.5B −7.1, Llama-3.3-70B 3.8; Table 2
    Llama-3.2-1B −1.9).
    """
    strong, weak = paper_teacher(strong), paper_teacher(weak)
    for table in published()["gap_tables"].values():
        if (table["strong"], table["weak"]) == (strong, weak) and student in table["rows"]:
            row = table["rows"][student]
            return {"strong": row["strong"], "weak": row["weak"], "delta": row["delta"]}  # the printed Δ
    return None


def paper_table3(student: str, strong: str, weak: str, weight: float) -> dict[str, float] | None:
    """Published Table 3 cells ``{benchmark: accuracy, "average": ...}`` for this configuration, or None."""
    table = published()["table3"]
    strong, weak = paper_teacher(strong), paper_teacher(weak)
    for method, where in table["methods"].items():
        if (where["strong"], where["weak"], where["weight"]) == (strong, weak, weight):
            values = table["rows"].get(student, {}).get(method)
            return dict(zip(table["benchmarks"], values, strict=True)) if values else None
    return None


def paper_method(strong: str, weak: str, weight: float) -> str | None:
    """The paper's Table 3 name of a (teacher pair, weight) method, e.g. ``DeepSeek-R1-32B (Long CoT)`` for
    r1_qwen32b / qwen32b at w = 1; None when Table 3 has no such method."""
    for method, where in published()["table3"]["methods"].items():
        if (where["strong"], where["weak"], where["weight"]) == (strong, weak, weight):
            return method
    return None


def paper_math_label(labels: Mapping[str, str] = NO_LABELS) -> str:
    """The label of the paper's MATH column: the run's label of that benchmark (``published()["math_variant"]``,
    i.e. ``math``) when ``labels`` has one, else :data:`PAPER_MATH_LABEL` (``MATH 5k``)."""
    return labels.get(published()["math_variant"]) or PAPER_MATH_LABEL
