"""The report's figures: Figures 2/3 (Δ vs student size, CI bars, the paper's Δ beside ours) and 6 (average
accuracy vs mix weight, CI band) as PNG.

matplotlib's object API (``matplotlib.figure.Figure`` on the Agg canvas), so no global pyplot state or
display is touched. Files are written to a temporary name and renamed into place (``mixgap.results.tables.files.atomic_write``).
"""

from __future__ import annotations

import re
import textwrap
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mixgap.core.files import write_atomic as atomic_write
from mixgap.results.tables.names import by_pair
from mixgap.stats.bootstrap import AVERAGE
from mixgap.stats.intervals import Interval


def _slug(*names: str) -> str:
    return "_vs_".join(re.sub(r"[^A-Za-z0-9.-]+", "_", n) for n in names)


def _save(fig: Any, path: Path) -> Path:
    """Save a Figure as PNG atomically."""
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))


def gap_vs_size(gaps: Sequence[dict[str, Any]], path: Path, confidence: float = 0.95) -> Path:
    """Figure 2/3 style: average Δ vs student size (log x) per family, CI bars; the paper's Δ as open squares."""
    from matplotlib.figure import Figure  # heavy: matplotlib, only when a figure is drawn

    rows = [r for r in gaps if r["comparison"]]
    names = rows[0]["names"]
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    modes = len({r["mode"] for r in rows}) > 1
    series: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        series[f"{r['family']} ({r['mode']})" if modes else str(r["family"])].append(r)
    for i, (label, points) in enumerate(sorted(series.items())):
        points.sort(key=lambda r: r["size_b"])
        if len(points) == 1:  # one student: named as in every table and figure, not by its family
            label = student_label(points[0]["student"], points[0]["mode"], modes)
        color = f"C{i}"
        x = [r["size_b"] for r in points]
        d = [r["comparison"][AVERAGE].delta for r in points]
        ax.errorbar(x, [v.estimate for v in d], yerr=[[v.estimate - v.low for v in d], [v.high - v.estimate for v in d]],
                    fmt="o-", color=color, capsize=4, label=f"{label} (ours)", zorder=3)  # caps over the zero line
        paper = [(r["size_b"], r["paper"]["delta"]) for r in points if r["paper"]]
        if paper:
            ax.plot(*zip(*paper, strict=True), "s--", color=color, mfc="none", label=f"{label} (paper)")
    sizes = sorted({r["size_b"] for r in rows})
    ax.axhline(0.0, color="0.5", lw=0.8, zorder=1)  # under the bars: a CI ending at 0 keeps its cap in view
    if len(sizes) > 1:
        ax.set_xscale("log")
        ax.set_xlabel("student size (billion parameters, log scale)")
    else:  # one size: a log axis would span empty decades around a single point
        ax.set_xlim(sizes[0] * 0.5, sizes[0] * 1.5)
        ax.set_xlabel("student size (billion parameters)")
    ax.set_xticks(sizes, [f"{s:g}B" for s in sizes])
    ax.minorticks_off()
    s, w = names["strong"], names["weak"]
    ax.set_ylabel(r"$\Delta_{\rm " + s + r"} = P_{\rm " + s + r"} - P_{\rm " + w + "}$ (percentage points)")
    ax.set_title(textwrap.fill(f"{rows[0]['strong']} vs {rows[0]['weak']}: average-accuracy gap, "
                               f"bars = {100 * confidence:g}% CI", 60))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    return _save(fig, path)


def student_label(student: str, mode: str, with_mode: bool) -> str:
    """How a student is named in every figure: its config name (as in the tables), plus the fine-tune mode
    when the figure holds more than one."""
    return f"{student} ({mode})" if with_mode else str(student)


def accuracy_vs_weight(
    series: dict[str, list[tuple[float, Interval]]], path: Path, strong: str, weak: str, confidence: float = 0.95,
    realised: dict[str, dict[float, float]] | None = None, reference: dict[str, Interval] | None = None,
) -> Path:
    """Figure 6 style: average accuracy vs mix weight w (fraction from ``strong``), one line per student, CI band.

    ``realised``: per series label, nominal w -> the realised strong fraction (``mixgap.results.tables.names.realised_weight``);
    each point whose realised fraction differs from w by more than 0.0005 is annotated with it.
    ``reference``: label -> the untuned student's average, drawn as a dashed horizontal line (no weight).
    """
    from matplotlib.figure import Figure  # heavy: matplotlib, only when a figure is drawn

    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    for i, (label, points) in enumerate(sorted(series.items())):
        points = sorted(points, key=lambda p: p[0])
        x = [w for w, _ in points]
        ax.plot(x, [v.estimate for _, v in points], "o-", color=f"C{i}", label=label)
        ax.fill_between(x, [v.low for _, v in points], [v.high for _, v in points], color=f"C{i}", alpha=0.2)
        for w, v in points:
            real = (realised or {}).get(label, {}).get(w)
            if real is not None and abs(real - w) > 0.0005:
                ax.annotate(f"realised {real:.3f}", (w, v.estimate), textcoords="offset points", xytext=(4, 6),
                            fontsize=7, color=f"C{i}")
        ref = (reference or {}).get(label)
        if ref is not None:
            ax.axhline(ref.estimate, color=f"C{i}", ls="--", lw=1.2, label=f"{label}, untuned ({ref.estimate:.1f})")
    ax.set_xlim(-0.03, 1.03)
    ax.set_xlabel(textwrap.fill(f"nominal mix weight w (fraction of the training examples from {strong}, the rest from "
                                f"{weak}); realised strong fraction annotated where it differs", 70), fontsize=9)
    ax.set_ylabel("average accuracy (%)")
    ax.set_title(textwrap.fill(f"{strong} / {weak}: average accuracy vs mix weight, band = {100 * confidence:g}% CI", 60))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)  # outside the band
    return _save(fig, path)


_STATUS_COLOR = {"best": "tab:green", "within noise": "tab:blue", "worse": "0.6", "better": "tab:red"}


def p_best_vs_weight(row: dict[str, Any], path: Path, confidence: float = 0.95) -> Path:
    """Which mix weight: average accuracy vs w with CI bars (left) beside P(best) per w (right), one colour per
    verdict (recommended, within noise, worse), the recommendation sentence as the title.

    ``row``: one row of :func:`mixgap.results.recommend.build` (``weights``, ``accuracy``, ``p_best``, ``status``,
    ``sentence``, ``student``, ``strong``, ``weak``, ``mode``).
    """
    from matplotlib.figure import Figure  # heavy: matplotlib, only when a figure is drawn
    from matplotlib.patches import Patch  # heavy: matplotlib, only when a figure is drawn

    weights = row["weights"]
    colors = [_STATUS_COLOR[row["status"][w]] for w in weights]
    fig = Figure(figsize=(10.0, 3.9))
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.25, 1.0]})
    known = [(w, row["accuracy"][w]) for w in weights if row["accuracy"][w] is not None]
    left.plot([w for w, _ in known], [v.estimate for _, v in known], "-", color="0.7", zorder=1)
    for (w, v), c in zip(known, [_STATUS_COLOR[row["status"][w]] for w, _ in known], strict=True):
        left.errorbar([w], [v.estimate], yerr=[[v.estimate - v.low], [v.high - v.estimate]], fmt="o", color=c,
                      capsize=4, ms=8 if row["status"][w] == "best" else 6, zorder=2)
    left.set_xlim(-0.05, 1.05)
    left.set_xticks(weights, [f"{w:g}" for w in weights])
    left.set_xlabel(f"mix weight w (fraction from {row['strong']})")
    left.set_ylabel("average accuracy (%)")
    left.set_title(f"accuracy, bars = {100 * confidence:g}% CI", fontsize=10)
    left.grid(alpha=0.3)
    x = range(len(weights))
    bars = right.bar(x, row["p_best"], color=colors)
    for bar, p in zip(bars, row["p_best"], strict=True):
        right.annotate(f"{p:.2f}", (bar.get_x() + bar.get_width() / 2, p), textcoords="offset points",
                       xytext=(0, 3), ha="center", fontsize=9)
    right.set_xticks(list(x), [f"w={w:g}" for w in weights])
    right.set_ylim(0, 1.12)
    right.set_ylabel("P(best) (share of paired resamples)")
    right.set_title("P(best): how often each w wins", fontsize=10)
    right.grid(alpha=0.3, axis="y")
    handles = [Patch(color=c, label=s) for s, c in _STATUS_COLOR.items() if s in row["status"].values()]
    right.legend(handles=handles, fontsize=8, loc="upper right")
    fig.suptitle(f"{row['student']} ({row['mode']}), {row['strong']} / {row['weak']}: {row['sentence']}", fontsize=10, y=1.03)
    return _save(fig, path)


def draw_all(
    gaps: Sequence[dict[str, Any]], table3: dict[str, list[dict[str, Any]]], out: Path, confidence: float = 0.95
) -> list[Path]:
    """Every figure the data allows: one gap-vs-size per pair with a comparison; one accuracy-vs-weight per
    pair where some student has at least two weights."""
    written = []
    for (strong, weak), rows in by_pair(gaps).items():
        if any(r["comparison"] for r in rows):
            written.append(gap_vs_size(rows, out / f"fig_gap_vs_size_{_slug(strong, weak)}.png", confidence))
    weights: dict[tuple[str, str], dict[str, list]] = defaultdict(lambda: defaultdict(list))
    realised: dict[tuple[str, str], dict[str, dict[float, float]]] = defaultdict(lambda: defaultdict(dict))
    modes = len({r["mode"] for rows in table3.values() for r in rows if r["weight"] is not None}) > 1
    untuned: dict[str, Interval] = {}
    for student, rows in table3.items():
        for r in rows:
            if r["weight"] is not None:
                label = student_label(student, r["mode"], modes)
                weights[(r["strong"], r["weak"])][label].append((r["weight"], r["cells"][AVERAGE]))
                if r.get("realised") is not None:
                    realised[(r["strong"], r["weak"])][label][r["weight"]] = r["realised"]
                ref = next((u for u in rows if u["weight"] is None and AVERAGE in (u["cells"] or {})), None)
                if ref is not None:
                    untuned[label] = ref["cells"][AVERAGE]
    for (strong, weak), series in weights.items():
        series = {k: v for k, v in series.items() if len(v) > 1}
        if series:
            path = out / f"fig_average_vs_weight_{_slug(strong, weak)}.png"
            written.append(accuracy_vs_weight(series, path, strong, weak, confidence, realised[(strong, weak)],
                                              reference=untuned))
    return written
