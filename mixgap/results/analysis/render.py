"""Writing the rank-shift results (``mixgap.results.analysis`` computes, this module writes): CSV, the PNG bar chart,
``analysis.md`` and the W&B tables. Files go through ``mixgap.core.files.write_atomic`` (temp file + rename);
the figure uses matplotlib's object API on the Agg canvas, as ``mixgap.results.figures`` does.

``results`` everywhere is ``[(cell name, [arm dict, ...]), ...]`` as returned by ``analysis.rank_cell``:
an arm dict has ``arm``, ``kind``, ``weight``, ``completions``, ``shares``, ``stats`` and ``decode``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mixgap.core.files import write_atomic as atomic_write
from mixgap.core.files import write_text_atomic
from mixgap.results.analysis.rank_shift import CATEGORIES, top_shifted
from mixgap.results.tables.files import write_csv

CHART_TOKENS = 15  # tokens in the chart and in analysis.md
Results = Sequence[tuple[str, Sequence[dict[str, Any]]]]


def shown(text: str) -> str:
    """A token's text made visible: spaces as ``␣``, newlines and tabs as ``\\n`` / ``\\t``."""
    return text.replace(" ", "␣").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


def per_1k(count: int, positions: int) -> float:
    """``count`` per 1,000 completion positions (0.0 when there are none)."""
    return 1000.0 * count / positions if positions else 0.0


def share_rows(results: Results) -> list[dict[str, Any]]:
    """One row per cell x arm: completions, positions and the unshifted / marginal / shifted fractions."""
    return [{"cell": cell, "arm": r["arm"], "kind": r["kind"], "weight": r["weight"], "completions": r["completions"],
             **{k: (round(v, 6) if isinstance(v, float) else v) for k, v in r["shares"].items()}}
            for cell, arms in results for r in arms]


def top_rows(results: Results, top: int) -> list[dict[str, Any]]:
    """Each arm's ``top`` most shifted tokens (``rank_shift.top_shifted``) with counts, rate and mean rank."""
    rows = []
    for cell, arms in results:
        for r in arms:
            for place, tid in enumerate(top_shifted(r["stats"], top), 1):
                s = r["stats"][tid]
                rows.append({"cell": cell, "arm": r["arm"], "weight": r["weight"], "place": place, "token_id": tid,
                             "token": r["decode"][tid], "shown": shown(r["decode"][tid]), "shifted": s.shifted,
                             "occurrences": s.occurrences,
                             "shifted_per_1k": round(per_1k(s.shifted, r["shares"]["positions"]), 3),
                             "mean_shifted_rank": round(s.mean_shifted_rank, 2)})
    return rows


def union_tokens(arms: Sequence[dict[str, Any]], top: int) -> list[int]:
    """Token ids in any arm's top ``top``, by their highest shifted rate over the arms (descending)."""
    ids = {t for r in arms for t in top_shifted(r["stats"], top)}

    def best(t: int) -> float:
        return max(per_1k(r["stats"][t].shifted, r["shares"]["positions"]) for r in arms if t in r["stats"])

    return sorted(ids, key=lambda t: (-best(t), t))


def side_by_side_rows(results: Results, top: int) -> list[dict[str, Any]]:
    """The arms side by side (e.g. w=0 vs 0.2 vs 1): per token of :func:`union_tokens`, each arm's counts."""
    rows = []
    for cell, arms in results:
        decode = {t: text for r in arms for t, text in r["decode"].items()}
        tops = [top_shifted(r["stats"], top) for r in arms]
        for tid in union_tokens(arms, top):
            row: dict[str, Any] = {"cell": cell, "token_id": tid, "token": decode[tid], "shown": shown(decode[tid])}
            for r, places in zip(arms, tops, strict=True):
                s = r["stats"].get(tid)
                row[f"{r['arm']} shifted"] = s.shifted if s else 0
                row[f"{r['arm']} occurrences"] = s.occurrences if s else 0
                row[f"{r['arm']} shifted per 1k"] = round(per_1k(s.shifted if s else 0, r["shares"]["positions"]), 3)
                row[f"{r['arm']} mean shifted rank"] = round(s.mean_shifted_rank, 2) if s and s.shifted else None
                row[f"{r['arm']} place"] = places.index(tid) + 1 if tid in places else None
            rows.append(row)
    return rows


def chart(cell: str, arms: Sequence[dict[str, Any]], path: Path) -> Path:
    """PNG: left, each arm's unshifted / marginal / shifted shares (stacked); right, the most shifted tokens'
    rates per 1,000 completion tokens, one bar per arm (Figure 8 style)."""
    import matplotlib  # heavy: matplotlib, imported only when used
    from matplotlib.figure import Figure  # heavy: matplotlib, imported only when used

    fig = Figure(figsize=(12, 5.2))
    left, right = fig.add_subplot(1, 3, 1), fig.add_subplot(1, 3, (2, 3))
    labels = [r["arm"] for r in arms]
    bottom = [0.0] * len(arms)
    for cat, color in zip(CATEGORIES, ("0.78", "#f0b429", "#c0392b"), strict=True):
        values = [100 * r["shares"][cat] for r in arms]
        left.bar(labels, values, bottom=bottom, color=color, label={"marginal": "marginal (rank 2-3)",
                 "shifted": "shifted (rank > 3)"}.get(cat, "unshifted (rank 1)"))
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    # rotated labels anchored at their right end, so each ends under its own bar (not half a label to the right)
    left.set_xticks(range(len(labels)), labels, rotation=35, ha="right", rotation_mode="anchor")
    left.set_ylabel("share of completion tokens (%)")
    left.set_ylim(0, 100)
    left.legend(fontsize=8, loc="lower left")
    left.set_title("rank in the untuned student", fontsize=10)
    tokens = union_tokens(arms, CHART_TOKENS)[:CHART_TOKENS]
    decode = {t: text for r in arms for t, text in r["decode"].items()}
    height = 0.8 / max(len(arms), 1)
    colors = matplotlib.colormaps["viridis"]
    for k, r in enumerate(arms):
        rates = [per_1k(r["stats"][t].shifted if t in r["stats"] else 0, r["shares"]["positions"]) for t in tokens]
        right.barh([i + k * height for i in range(len(tokens))], rates, height=height,
                   color=colors(k / max(len(arms) - 1, 1)), label=r["arm"])
    right.set_yticks([i + (len(arms) - 1) * height / 2 for i in range(len(tokens))], [shown(decode[t]) for t in tokens])
    right.invert_yaxis()
    right.set_xlabel("shifted occurrences per 1,000 completion tokens")
    right.set_title(f"most shifted tokens (top {len(tokens)})", fontsize=10)
    right.legend(fontsize=8, loc="lower right")
    fig.suptitle(f"Token rank shift vs the untuned student: {cell}")
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))


def slug(name: str) -> str:
    """A file-name-safe form of a cell name."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", name).strip("_")


def write_text(path: Path, text: str) -> Path:
    """Write UTF-8 ``text`` atomically (``mixgap.core.files.write_text_atomic``)."""
    return write_text_atomic(path, text)


def write_all(results: Results, out: Path, top: int) -> dict[str, Any]:
    """The three CSVs and one chart per cell in ``out``; returns their paths (strings)."""
    return {
        "shares_csv": str(write_csv(share_rows(results), out / "rank_shift_shares.csv")),
        "top_tokens_csv": str(write_csv(top_rows(results, top), out / "rank_shift_top_tokens.csv")),
        "side_by_side_csv": str(write_csv(side_by_side_rows(results, top), out / "rank_shift_side_by_side.csv")),
        "figures": [str(chart(cell, arms, out / f"fig_rank_shift_{slug(cell)}.png")) for cell, arms in results],
    }


def shares_text(results: Results) -> str:
    """The shares as a Markdown table (also printed at the end of the stage)."""
    lines = ["| cell | arm | completions | positions | unshifted % | marginal % | shifted % |", "|---" * 7 + "|"]
    for row in share_rows(results):
        lines.append(f"| {row['cell']} | {row['arm']} | {row['completions']} | {row['positions']} | "
                     + " | ".join(f"{100 * row[c]:.1f}" for c in CATEGORIES) + " |")
    return "\n".join(lines)


def summary_markdown(sweeps: Sequence[str], results: Results, skipped: Sequence[str]) -> str:
    """``analysis.md``: the method, the shares, each cell's most shifted tokens side by side, what was left out."""
    parts = ["# Speaking-style analysis", "", f"Sweeps: {', '.join(f'`{s}`' for s in sweeps)}.", "",
             "Token rank shift (URIAL, Lin et al. 2023; Li et al. 2025 Figure 8): every completion of a fine-tuned "
             "student is fed through the untuned student; a token is unshifted (rank 1), marginal (rank 2-3) or "
             "shifted (rank > 3) in the untuned student's next-token distribution. The untuned row ranks the untuned "
             "student's own greedy completions (close to 100% unshifted: a check of the method).", "",
             shares_text(results), ""]
    for cell, arms in results:
        tokens = union_tokens(arms, CHART_TOKENS)[:CHART_TOKENS]
        decode = {t: text for r in arms for t, text in r["decode"].items()}
        parts += [f"## {cell}", "", f"![rank shift](fig_rank_shift_{slug(cell)}.png)", "",
                  "Shifted occurrences (per 1,000 completion tokens; mean rank when shifted):", "",
                  "| token | " + " | ".join(r["arm"] for r in arms) + " |", "|---" * (len(arms) + 1) + "|"]
        for t in tokens:
            cells = []
            for r in arms:
                s = r["stats"].get(t)
                cells.append(f"{s.shifted} ({per_1k(s.shifted, r['shares']['positions']):.1f}; {s.mean_shifted_rank:.0f})"
                             if s and s.shifted else "0")
            parts.append(f"| `{shown(decode[t])}` | " + " | ".join(cells) + " |")
        parts.append("")
    parts += ["Full lists: `rank_shift_top_tokens.csv`, `rank_shift_side_by_side.csv`; case study: `case_study.md`.", ""]
    if skipped:
        parts += ["## Jobs left out", "", *(f"- {s}" for s in skipped), ""]
    return "\n".join(parts)


def track(tracker: Any, results: Results, figures: Sequence[str], top: int) -> None:
    """The W&B run: the three CSV tables, the charts, and each arm's bin shares as summary values."""
    for name, rows in (("rank_shift/shares", share_rows(results)), ("rank_shift/top_tokens", top_rows(results, top)),
                       ("rank_shift/side_by_side", side_by_side_rows(results, top))):
        if rows:
            columns = list(dict.fromkeys(k for r in rows for k in r))
            tracker.log_table(name, columns, [[r.get(c) for c in columns] for r in rows])
    for fig in figures:
        tracker.log_image(Path(fig).stem, fig)
    for row in share_rows(results):
        tracker.summary({f"{c}/{row['cell']}/{row['arm']}": row[c] for c in CATEGORIES})
