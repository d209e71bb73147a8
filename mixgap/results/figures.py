"""The report's figures: Figures 2/3 (Δ per student size, bars with CI error bars, one panel per student family,
the paper's Δ beside ours) and 6 (average accuracy vs mix weight, CI error bars at the measured weights) as PNG.

Models are named by their display names (``display_name`` of ``conf/teacher``, ``conf/student``, carried from each
job's config snapshot by :func:`mixgap.results.sweep.display_names`); titles break only between phrases
(:func:`wrap_phrases`). matplotlib's object API (``matplotlib.figure.Figure`` on the Agg canvas), so no global
pyplot state or display is touched. Files are written to a temporary name and renamed into place
(``mixgap.core.files.write_atomic``).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mixgap.core.files import write_atomic as atomic_write
from mixgap.results.sweep import DisplayNames
from mixgap.results.tables.names import arm_title, by_pair, student_aware
from mixgap.stats.bootstrap import AVERAGE
from mixgap.stats.intervals import Interval

#: Panel titles of the student families (conf/student ``family``), in the paper's order (Figure 2: Qwen, Llama).
FAMILIES = {"qwen": "Qwen", "llama": "Llama", "smollm": "SmolLM", "gemma": "Gemma", "deepseek": "DeepSeek"}
TITLE_WIDTH = 60  # characters per title line
NO_NAMES = DisplayNames()  # every model printed by its config name
DODGE = 0.012  # Figure 6: x shift between the series (mix-weight units), so error bars at one weight do not overlap


def _slug(*names: str) -> str:
    return "_vs_".join(re.sub(r"[^A-Za-z0-9.-]+", "_", n) for n in names)


def _save(fig: Any, path: Path) -> Path:
    """Save a Figure as PNG atomically."""
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))


def text_width(text: str) -> int:
    """Characters ``text`` shows: mathtext (``$\\Delta_{\\rm Long}$``) counted as the glyphs it renders (``ΔLong``)."""
    text = re.sub(r"\\rm ?", "", text)
    return len(re.sub(r"[{}$_^]", "", re.sub(r"\\[A-Za-z]+", "x", text)))


def wrap_phrases(phrases: Sequence[str], width: int = TITLE_WIDTH, sep: str = ", ") -> str:
    """``phrases`` joined by ``sep`` into lines of at most ``width`` characters, broken only between phrases (never
    inside one); a phrase longer than ``width`` breaks after its `` vs `` (``"A vs\nB"``), else stands whole on its
    line (widths by :func:`text_width`). ``wrap_phrases(["QwQ-32B-Preview vs Qwen2.5-32B-Instruct", "average accuracy"], 30)`` is
    ``"QwQ-32B-Preview vs\nQwen2.5-32B-Instruct,\naverage accuracy"``."""
    lines: list[str] = []
    for i, phrase in enumerate(phrases):
        text = phrase + (sep.rstrip() if i < len(phrases) - 1 else "")
        if lines and text_width(lines[-1]) + 1 + text_width(text) <= width:
            lines[-1] += " " + text
        elif text_width(text) > width and " vs " in text:
            head, tail = text.split(" vs ", 1)
            lines += [head + " vs", tail]
        else:
            lines.append(text)
    return "\n".join(lines)


def pair_title(strong: str, weak: str, *phrases: str, width: int = TITLE_WIDTH) -> str:
    """A figure title: the teacher pair ``"<strong> vs <weak>"`` on its own line(s), then ``phrases`` packed by
    :func:`wrap_phrases`."""
    return wrap_phrases([f"{strong} vs {weak}"], width) + "\n" + wrap_phrases(phrases, width)


def family_title(family: Any) -> str:
    """A student family's panel title (:data:`FAMILIES`; an unknown family as written)."""
    return FAMILIES.get(str(family), str(family))


def _size_labels(students: Sequence[tuple[float, str]], names: DisplayNames) -> tuple[list[str], bool]:
    """Tick labels of a panel's students ``(size_b, name)`` and whether to slant them: the size (``3.09B``); where
    two students share a size (a base or math model beside the instruct one), each of them as ``3.09B
    Qwen2.5-3B`` (size and display name), slanted so that neighbours do not overlap."""
    sizes = [s for s, _ in students]
    shared = [sizes.count(s) > 1 for s in sizes]
    return [f"{s:g}B {names.student(n)}" if dup else f"{s:g}B" for (s, n), dup in zip(students, shared, strict=True)], any(shared)


def _families(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The student families of ``rows``, in :data:`FAMILIES` order (the paper's: Qwen, then Llama), others after."""
    order = list(FAMILIES)
    return sorted({str(r["family"]) for r in rows}, key=lambda f: (order.index(f) if f in order else len(order), f))


def gap_vs_size(gaps: Sequence[dict[str, Any]], path: Path, confidence: float = 0.95,
                names: DisplayNames = NO_NAMES) -> Path:
    """Figures 2/3: the average Δ (Δ_Long or Δ_Large, points) as one bar per student size, one panel per student
    family (Qwen first, then Llama, as the paper; panel widths follow their number of students, so every bar is
    equally wide), the CI as black error bars, the zero line; the paper's Δ (Li et al. 2025, Tables 1/2 via
    ``mixgap.results.tables.paper_gap``) as an open square over its student where published.

    ``gaps``: rows of one teacher pair (``mixgap.results.report.gap_rows``); a row without a comparison (a student
    not trained at both w = 1 and w = 0) draws nothing: no bar, no tick. Several fine-tune modes draw side-by-side
    bars per student, one colour per mode.

    Raises:
        ValueError: no row has a comparison.
    """
    from matplotlib.figure import Figure  # heavy: matplotlib, only when a figure is drawn

    rows = [r for r in gaps if r["comparison"]]
    if not rows:
        raise ValueError("gap_vs_size needs a row with a comparison (w = 1 and w = 0 both finished)")
    families = _families(rows)
    modes = sorted({r["mode"] for r in rows})
    panels = {f: sorted({(float(r["size_b"]), str(r["student"])) for r in rows if str(r["family"]) == f}) for f in families}
    slots = sum(len(p) for p in panels.values())
    fig = Figure(figsize=(max(6.4, 1.0 * slots + 1.2 * len(families) + 2.0), 4.4), layout="constrained")
    axes = fig.subplots(1, len(families), sharey=True, squeeze=False,
                        gridspec_kw={"width_ratios": [len(panels[f]) + 0.5 for f in families]})[0]
    width = 0.8 / len(modes)
    handles: dict[str, Any] = {}
    for ax, family in zip(axes, families, strict=True):
        students = panels[family]
        members = [r for r in rows if str(r["family"]) == family]
        slot = {(r["student"], r["mode"]): students.index((float(r["size_b"]), str(r["student"]))) for r in members}
        present = {s: sorted(m for t, m in slot if t == s) for _, s in students}  # each student's modes, centred
        for j, mode in enumerate(modes):
            points = [r for r in members if r["mode"] == mode]
            if not points:
                continue
            x = [slot[(r["student"], mode)] + (present[r["student"]].index(mode) - (len(present[r["student"]]) - 1) / 2)
                 * width for r in points]
            d = [r["comparison"][AVERAGE].delta for r in points]
            handles[f"ours, {mode}" if len(modes) > 1 else "ours"] = ax.bar(
                x, [v.estimate for v in d], width * 0.9, color=f"C{j}", alpha=0.85, zorder=2)
            ax.errorbar(x, [v.estimate for v in d], yerr=[[v.estimate - v.low for v in d], [v.high - v.estimate for v in d]],
                        fmt="none", ecolor="black", elinewidth=1.0, capsize=4, zorder=3)  # caps over the zero line
        paper = {i: r["paper"]["delta"] for i, (_, student) in enumerate(students) for r in rows
                 if r["student"] == student and r["paper"]}
        if paper:
            (handles["paper (Li et al. 2025)"],) = ax.plot(list(paper), list(paper.values()), "s", color="black",
                                                           mfc="none", ms=7, zorder=4)
        ax.axhline(0.0, color="0.3", lw=0.8, zorder=1)  # under the bars: a CI ending at 0 keeps its cap in view
        labels, slant = _size_labels(students, names)
        ax.set_xticks(range(len(students)), labels, fontsize=9, rotation=25 if slant else 0, ha="right" if slant else "center")
        ax.set_xlim(-0.6, len(students) - 0.4)
        ax.set_xlabel("student size (billion parameters)")
        ax.set_title(family_title(family), fontsize=10)
        ax.grid(alpha=0.3, axis="y")
    n = rows[0]["names"]
    delta = r"$\Delta_{\rm " + n["strong"] + "}$"
    axes[0].set_ylabel(delta + r" $= P_{\rm " + n["strong"] + r"} - P_{\rm " + n["weak"] + "}$ (percentage points)")
    fig.suptitle(pair_title(names.teacher(rows[0]["strong"]), names.teacher(rows[0]["weak"]),
                            f"average-accuracy gap {delta}", f"error bars = {100 * confidence:g}% CI"), fontsize=10)
    if len(handles) > 1:
        axes[-1].legend(list(handles.values()), list(handles), fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                        borderaxespad=0.0)
    return _save(fig, path)


def student_label(student: str, mode: str, with_mode: bool, names: DisplayNames = NO_NAMES) -> str:
    """How a student is named in Figure 6's legend: its display name, plus the fine-tune mode when the figure holds
    more than one."""
    shown = names.student(student)
    return f"{shown} ({mode})" if with_mode else shown


def weight_ticks(weights: Sequence[float], min_gap: float = 0.05) -> list[float] | None:
    """The x ticks of a mix-weight axis: the measured weights when no two lie closer than ``min_gap`` (their
    labels would overlap), else None (matplotlib's own ticks)."""
    ws = sorted(set(weights))
    return ws if all(b - a >= min_gap for a, b in zip(ws, ws[1:], strict=False)) else None


#: Figure 6's marker of a student-aware arm (mix.strategy), drawn apart from the w curve at its realised w.
AWARE_MARKERS = {"rsr": "D", "rsr_budget": "^"}


def _aware_points(ax: Any, points: Sequence[tuple[str, float, Interval]], color: str, shift: float) -> list[Any]:
    """Student-aware arms ``(arm, realised w, interval)`` as lone markers with CI error bars (never joined to the
    curve: they have no one weight), each labelled with its arm; returns their legend handles."""
    handles = []
    for arm, x, p in points:
        marker = AWARE_MARKERS.get(arm.split(" ")[0], "s")
        handles.append(ax.errorbar([x + shift], [p.estimate], yerr=[[p.estimate - p.low], [p.high - p.estimate]],
                                   fmt=marker, mfc="white", color=color, capsize=4, ms=8, zorder=4,
                                   label=f"{arm} (at its realised w)"))
        ax.annotate(arm, (x + shift, p.estimate), textcoords="offset points", xytext=(7, -11), fontsize=7, color=color)
    return handles


def accuracy_vs_weight(
    series: dict[str, list[tuple[float, Interval]]], path: Path, strong: str, weak: str, confidence: float = 0.95,
    realised: dict[str, dict[float, float]] | None = None, reference: dict[str, Interval] | None = None,
    aware: dict[str, list[tuple[str, float, Interval]]] | None = None,
) -> Path:
    """Figure 6: average accuracy vs mix weight w (fraction from ``strong``), one series per student: a marker with
    its CI as an error bar at each measured weight, consecutive markers joined by a thin dotted line (a guide to the
    eye, not an estimate: nothing is drawn as measured between weights). With several series each is shifted by
    :data:`DODGE` x its offset from the middle series, so error bars at one weight stand side by side.

    ``strong``/``weak``: the teachers' display names. ``realised``: per series label, nominal w -> the realised
    strong fraction (``mixgap.results.tables.names.realised_weight``); each point whose realised fraction differs from w by
    more than 0.0005 is annotated with it. ``reference``: label -> the untuned student's average, drawn as a dashed
    horizontal line (no weight). ``aware``: label -> the student-aware arms ``(arm, realised w, interval)``
    (``mix.strategy``), open markers of :data:`AWARE_MARKERS` at their realised w, not joined to the curve.
    """
    from matplotlib.figure import Figure  # heavy: matplotlib, only when a figure is drawn

    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    handles = []  # each student, then its untuned reference (matplotlib would list the lines first)
    for i, (label, points) in enumerate(sorted(series.items())):
        points = sorted(points, key=lambda p: p[0])
        shift = (i - (len(series) - 1) / 2) * DODGE
        x, v = [w + shift for w, _ in points], [iv for _, iv in points]
        ax.plot(x, [p.estimate for p in v], ":", lw=0.8, color=f"C{i}", zorder=2)
        handles.append(ax.errorbar(x, [p.estimate for p in v], yerr=[[p.estimate - p.low for p in v], [p.high - p.estimate for p in v]],
                    fmt="o", color=f"C{i}", capsize=4, label=label, zorder=3))
        for w, p in points:
            real = (realised or {}).get(label, {}).get(w)
            if real is not None and abs(real - w) > 0.0005:
                ax.annotate(f"realised {real:.3f}", (w + shift, p.estimate), textcoords="offset points", xytext=(6, 6),
                            fontsize=7, color=f"C{i}")
        handles += _aware_points(ax, (aware or {}).get(label, []), f"C{i}", shift)
        ref = (reference or {}).get(label)
        if ref is not None:
            handles.append(ax.axhline(ref.estimate, color=f"C{i}", ls="--", lw=1.2,
                                      label=f"{label}, untuned ({ref.estimate:.1f})"))
    ax.set_xlim(-0.05, 1.05)
    ticks = weight_ticks([w for points in series.values() for w, _ in points])
    if ticks is not None:
        ax.set_xticks(ticks, [f"{w:g}" for w in ticks])
    ax.set_xlabel(wrap_phrases([f"mix weight w = share of training examples from {strong}", f"the rest from {weak}",
                                "realised share annotated where it differs"], 70, sep=";"), fontsize=9)
    ax.set_ylabel("average accuracy (%)")
    ax.set_title(pair_title(strong, weak, "average accuracy vs mix weight", f"error bars = {100 * confidence:g}% CI"),
                 fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)  # outside
    return _save(fig, path)


_STATUS_COLOR = {"best": "tab:green", "within noise": "tab:blue", "worse": "0.6", "better": "tab:red"}


def p_best_vs_weight(row: dict[str, Any], path: Path, confidence: float = 0.95, names: DisplayNames = NO_NAMES) -> Path:
    """Which mix weight: average accuracy vs w with CI error bars at the measured weights (joined by a thin dotted
    guide, left) beside P(best) per w (right), one colour per verdict (recommended, within noise, worse); the title
    names student and teacher pair (display names), then the recommendation sentence, broken at its ``;``.

    ``row``: one row of :func:`mixgap.results.recommend.build` (``weights``, ``accuracy``, ``p_best``, ``status``,
    ``sentence``, ``student``, ``strong``, ``weak``, ``mode``).
    """
    from matplotlib.figure import Figure  # heavy: matplotlib, only when a figure is drawn
    from matplotlib.patches import Patch  # heavy: matplotlib, only when a figure is drawn

    weights = row["weights"]
    colors = [_STATUS_COLOR[row["status"][w]] for w in weights]
    fig = Figure(figsize=(10.0, 3.9))
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.25, 1.0]})
    known = [(w, row["accuracy"][w]) for w in weights if row["accuracy"][w] is not None and not student_aware(w)]
    left.plot([w for w, _ in known], [v.estimate for _, v in known], ":", lw=0.8, color="0.5", zorder=1)
    for (w, v), c in zip(known, [_STATUS_COLOR[row["status"][w]] for w, _ in known], strict=True):
        left.errorbar([w], [v.estimate], yerr=[[v.estimate - v.low], [v.high - v.estimate]], fmt="o", color=c,
                      capsize=4, ms=8 if row["status"][w] == "best" else 6, zorder=2)
    for w in weights:  # a student-aware arm: its own marker at its realised w, not on the dotted guide
        v, x = row["accuracy"][w], (row.get("realised") or {}).get(w)
        if student_aware(w) and v is not None and x is not None:
            _aware_points(left, [(w, x, v)], _STATUS_COLOR[row["status"][w]], 0.0)
    left.set_xlim(-0.05, 1.05)
    ticks = [w for w in weights if not student_aware(w)]
    left.set_xticks(ticks, [f"{w:g}" for w in ticks])
    left.set_xlabel(f"mix weight w = share of training examples from {names.teacher(row['strong'])}", fontsize=9)
    left.set_ylabel("average accuracy (%)")
    left.set_title(f"average accuracy, error bars = {100 * confidence:g}% CI", fontsize=10)
    left.grid(alpha=0.3)
    x = range(len(weights))
    bars = right.bar(x, row["p_best"], color=colors)
    for bar, p in zip(bars, row["p_best"], strict=True):
        right.annotate(f"{p:.2f}", (bar.get_x() + bar.get_width() / 2, p), textcoords="offset points",
                       xytext=(0, 3), ha="center", fontsize=9)
    right.set_xticks(list(x), [arm_title(w) for w in weights])
    right.set_ylim(0, 1.12)
    right.set_ylabel("P(best) (share of paired resamples)")
    right.set_title("P(best): how often each w wins", fontsize=10)
    right.grid(alpha=0.3, axis="y")
    handles = [Patch(color=c, label=s) for s, c in _STATUS_COLOR.items() if s in row["status"].values()]
    right.legend(handles=handles, fontsize=8, loc="upper right")
    head = wrap_phrases([f"{names.student(row['student'])} ({row['mode']})",
                         f"{names.teacher(row['strong'])} vs {names.teacher(row['weak'])}"], 100, sep=":")
    fig.suptitle(head + "\n" + wrap_phrases(row["sentence"].split("; "), 100, sep=";"), fontsize=10, y=1.06)
    return _save(fig, path)


def draw_all(
    gaps: Sequence[dict[str, Any]], table3: dict[str, list[dict[str, Any]]], out: Path, confidence: float = 0.95,
    names: DisplayNames = NO_NAMES,
) -> list[Path]:
    """Every figure the data allows: one gap-vs-size per pair with a comparison; one accuracy-vs-weight per
    pair where some student has at least two weights. Files are named by config names; ``names`` (display names,
    :func:`mixgap.results.sweep.display_names`) is what the figures print."""
    written = []
    for (strong, weak), rows in by_pair(gaps).items():
        if any(r["comparison"] for r in rows):
            written.append(gap_vs_size(rows, out / f"fig_gap_vs_size_{_slug(strong, weak)}.png", confidence, names))
    weights: dict[tuple[str, str], dict[str, list]] = defaultdict(lambda: defaultdict(list))
    aware: dict[tuple[str, str], dict[str, list]] = defaultdict(lambda: defaultdict(list))
    realised: dict[tuple[str, str], dict[str, dict[float, float]]] = defaultdict(lambda: defaultdict(dict))
    modes = len({r["mode"] for rows in table3.values() for r in rows if r["weight"] is not None}) > 1
    untuned: dict[str, Interval] = {}
    for student, rows in table3.items():
        for r in rows:
            if student_aware(r["weight"]):  # drawn at its realised w when known, apart from the curve
                if r.get("realised") is not None:
                    label = student_label(student, r["mode"], modes, names)
                    aware[(r["strong"], r["weak"])][label].append((r["weight"], r["realised"], r["cells"][AVERAGE]))
            elif r["weight"] is not None:
                label = student_label(student, r["mode"], modes, names)
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
            written.append(accuracy_vs_weight(series, path, names.teacher(strong), names.teacher(weak), confidence,
                                              realised[(strong, weak)], reference=untuned, aware=aware[(strong, weak)]))
    return written
