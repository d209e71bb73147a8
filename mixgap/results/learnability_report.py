"""The report's "Learnability before training" section: the ``predict`` stage's figures beside the measured gap.

Per student x teacher pair: both pools' surprisal, clipped mean rank and RSR (``result.json`` ``learnability``,
:mod:`mixgap.stages.predict`), the predicted better pool (lower RSR), and where the sweep trained both arms (w = 1 and
w = 0) the measured average Δ = P_strong − P_weak (``report.gap_rows``) and whether its sign agrees with the
prediction's (RSR advantage = RSR_weak − RSR_strong, > 0 predicts the strong pool): ``yes``/``no`` only when Δ's CI
excludes 0, else ``untested`` (:func:`agreement_cell`). With three or more points
per pair: Spearman's ρ between the RSR advantage and Δ, with a percentile bootstrap CI over points (students).
Files: ``learnability.csv`` and ``fig_learnability_<pair>.png`` (x = RSR advantage, y = Δ, both with CIs).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mixgap.core.files import write_atomic as atomic_write
from mixgap.results.figures import NO_NAMES, pair_title
from mixgap.results.sweep import DisplayNames, read_result
from mixgap.results.tables.files import write_csv
from mixgap.stats.bootstrap import AVERAGE
from mixgap.stats.intervals import percentile_interval

MIN_POINTS = 3  # students needed for a rank correlation


def rankdata(values: Sequence[float]) -> np.ndarray:
    """1-based ranks with ties given their average rank (``scipy.stats.rankdata(method="average")``)."""
    x = np.asarray(values, dtype=float)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    for value in np.unique(x):
        tied = x == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's ρ: Pearson's correlation of the average ranks (Spearman 1904); NaN when either side is constant.

    Raises:
        ValueError: fewer than two points or unequal lengths.
    """
    if len(x) != len(y) or len(x) < 2:
        raise ValueError(f"spearman needs two equal-length samples of >= 2 points; got {len(x)} and {len(y)}")
    rx, ry = rankdata(x) - (len(x) + 1) / 2, rankdata(y) - (len(y) + 1) / 2
    denom = float(np.sqrt((rx**2).sum() * (ry**2).sum()))
    return float((rx * ry).sum() / denom) if denom else float("nan")


def spearman_ci(x: Sequence[float], y: Sequence[float], *, n_boot: int, seed: int, confidence: float):
    """``(ρ, low, high)``: ρ and its percentile bootstrap interval over points (resamples with a constant side,
    where ρ is undefined, are left out; ``(ρ, nan, nan)`` when all are)."""
    rng = np.random.default_rng(seed)
    x, y = np.asarray(x, float), np.asarray(y, float)
    draws = rng.integers(0, len(x), size=(n_boot, len(x)))
    boot = np.array([spearman(x[d], y[d]) for d in draws])
    boot = boot[~np.isnan(boot)]
    low, high = percentile_interval(boot, confidence) if len(boot) else (float("nan"), float("nan"))
    return spearman(x, y), low, high


def read_predictions(jobs: Sequence[Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """``{(student, strong, weak): learnability}`` from the finished jobs' ``result.json`` (first job of each)."""
    found: dict[tuple[str, str, str], dict[str, Any]] = {}
    for job in jobs:
        if job.status != "done":
            continue
        i = job.identity
        key = (i.get("student"), i.get("strong"), i.get("weak"))
        if key not in found:
            learn = (read_result(job.folder) or {}).get("learnability")
            if learn:
                found[key] = learn
    return found


def rows(jobs: Sequence[Any], gaps: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per student x pair (x fine-tune mode where the sweep trained both arms): prediction and Δ."""
    by_cell = defaultdict(list)
    for gap in gaps:
        if gap["comparison"]:
            by_cell[(gap["student"], gap["strong"], gap["weak"])].append(gap)
    out = []
    for (student, strong, weak), learn in sorted(read_predictions(jobs).items()):
        base = {"student": student, "strong": strong, "weak": weak, "n": learn["prediction"]["n"],
                "better": learn["prediction"]["better"], "verdict": learn["prediction"]["verdict"],
                "advantage": learn["prediction"]["rsr_advantage"]}
        for role in ("strong", "weak"):
            base.update({f"{f}_{role}": learn[role][f] for f in ("surprisal", "mean_rank", "rsr", "length")})
        measured = by_cell.get((student, strong, weak)) or [None]
        for gap in measured:
            delta = gap["comparison"][AVERAGE].delta if gap else None
            agreed = None
            if delta is not None and delta.estimate != 0 and base["advantage"]["estimate"] != 0:
                agreed = (delta.estimate > 0) == (base["advantage"]["estimate"] > 0)
            out.append({**base, "mode": gap["mode"] if gap else None, "size_b": gap["size_b"] if gap else None,
                        "delta": delta, "agreed": agreed})
    return out


def correlations(table: Sequence[dict[str, Any]], boot: dict[str, Any]) -> dict[tuple[str, str], tuple | None]:
    """Per pair with >= :data:`MIN_POINTS` measured rows: ``(ρ, low, high, points)``; None with fewer."""
    pairs = defaultdict(list)
    for r in table:
        pairs[(r["strong"], r["weak"])].append(r)
    out = {}
    for pair, members in pairs.items():
        points = [r for r in members if r["delta"] is not None]
        if len(points) >= MIN_POINTS:
            rho = spearman_ci([r["advantage"]["estimate"] for r in points], [r["delta"].estimate for r in points], **boot)
            out[pair] = (*rho, len(points))
        else:
            out[pair] = None
    return out


def _fmt(cell: dict[str, float], digits: int = 2) -> str:
    return f"{cell['estimate']:.{digits}f} [{cell['low']:.{digits}f}, {cell['high']:.{digits}f}]"


def predicted_cell(better: str, verdict: str) -> str:
    """The "Predicted better" cell: the pool with the lower RSR and whether the RSR advantage's CI excludes 0
    (``verdict``: ``mixgap.stats.intervals.verdict`` of it, Strong / Weak / n.s.), e.g. ``weak pool (CI excludes 0)``."""
    if better == "tie":
        return "tie (equal RSR)"
    return f"{better} pool ({'RSR adv. n.s.' if verdict == 'n.s.' else 'CI excludes 0'})"


def agreement_cell(row: dict[str, Any]) -> str:
    """The "Sign agreed?" cell: ``yes``/``no`` only when the measured Δ's CI excludes 0; else ``untested (Δ n.s.;
    point signs agree|differ)`` -- a gap too small to see neither confirms nor refutes the prediction."""
    if row["agreed"] is None:
        return "—"
    if row["delta"].low <= 0 <= row["delta"].high:
        return f"untested (Δ n.s.; point signs {'agree' if row['agreed'] else 'differ'})"
    return "yes" if row["agreed"] else "no"


def markdown(table: Sequence[dict[str, Any]], corr: dict, confidence: float) -> str:
    """The section's Markdown (heading included); a note when no job ran the predict stage."""
    head = ["## Learnability before training", "",
            "The untuned student teacher-forces the same seeded problems of both pools, rendered and masked as "
            "training renders them (`stage=predict`, `mixgap.stages.predict`). Surprisal: mean negative log-likelihood per "
            "supervised token (nats). Rank: mean rank of the teacher's token under the student, clipped at 100. RSR: "
            "Rank-Surprisal Ratio (Yang et al. 2026, arXiv 2601.14249, Eq. 7; pool = mean rank / mean surprisal); "
            "**lower RSR predicts the better arm**. RSR adv. = RSR_weak − RSR_strong (> 0 predicts strong). "
            f"[{100 * confidence:g}% bootstrap CI over traces; Δ: the gap table's average Δ and CI.]", ""]
    if not table:
        return "\n".join([*head, "No finished job carries a learnability prediction (run `stage=predict`, or "
                          "`stage=all` with `predict.enabled=true`).", ""])
    header = ["Student", "Teachers", "n", "Surprisal strong", "Surprisal weak", "Rank strong", "Rank weak",
              "RSR strong", "RSR weak", "RSR adv.", "Predicted better", "Measured Δ", "Sign agreed?"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in table:
        delta = r["delta"].fmt() if r["delta"] is not None else "not trained (w=1 and w=0)"
        student = r["student"] + (f" ({r['mode']})" if r["mode"] else "")
        lines.append("| " + " | ".join(str(c) for c in [
            student, f"{r['strong']} / {r['weak']}", r["n"], _fmt(r["surprisal_strong"]), _fmt(r["surprisal_weak"]),
            _fmt(r["mean_rank_strong"]), _fmt(r["mean_rank_weak"]), _fmt(r["rsr_strong"]), _fmt(r["rsr_weak"]),
            _fmt(r["advantage"]), predicted_cell(r["better"], r["verdict"]), delta, agreement_cell(r)]) + " |")
    notes = []
    for (strong, weak), value in corr.items():
        if value is None:
            notes.append(f"{strong} / {weak}: fewer than {MIN_POINTS} students with both arms trained; no rank "
                         "correlation.")
        else:
            rho, low, high, n = value
            notes.append(f"{strong} / {weak}: Spearman ρ(RSR adv., Δ) = {rho:.2f} [{low:.2f}, {high:.2f}] over {n} "
                         "points (bootstrap over students).")
    return "\n".join([*head, *lines, "", *notes, ""])


def figure(table: Sequence[dict[str, Any]], path: Path, confidence: float, names: DisplayNames = NO_NAMES) -> Path:
    """Predicted difference (x: RSR advantage) vs measured Δ (y), CI bars both ways, one point per student labelled
    with its display name; the teacher pair's display names head the title (``names``,
    :func:`mixgap.results.sweep.display_names`)."""
    from matplotlib.figure import Figure  # heavy: matplotlib, imported only when used

    points = [r for r in table if r["delta"] is not None]
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.add_subplot()
    for i, r in enumerate(points):
        a, d = r["advantage"], r["delta"]
        ax.errorbar([a["estimate"]], [d.estimate], xerr=[[a["estimate"] - a["low"]], [a["high"] - a["estimate"]]],
                    yerr=[[d.estimate - d.low], [d.high - d.estimate]], fmt="o", color=f"C{i % 10}", capsize=4)
        ax.annotate(names.student(r["student"]) + (f" ({r['mode']})" if r["mode"] else ""), (a["estimate"], d.estimate),
                    textcoords="offset points", xytext=(6, 6), fontsize=8)
    ax.axhline(0.0, color="0.5", lw=0.8)
    ax.axvline(0.0, color="0.5", lw=0.8)
    ax.set_xlabel(r"predicted: RSR$_{\rm weak}$ − RSR$_{\rm strong}$ (> 0: strong pool predicted better)")
    ax.set_ylabel(r"measured $\Delta = P_{\rm strong} - P_{\rm weak}$ (points, average)")
    ax.set_title(pair_title(names.teacher(points[0]["strong"]), names.teacher(points[0]["weak"]),
                            "learnability before training", f"error bars = {100 * confidence:g}% CI"), fontsize=10)
    ax.grid(alpha=0.3)
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))


def csv_rows(table: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``learnability.csv``: one row per table row, every interval as estimate/low/high columns."""
    out = []
    for r in table:
        row = {k: r[k] for k in ("student", "strong", "weak", "mode", "size_b", "n", "better", "verdict", "agreed")}
        for key in ("surprisal_strong", "surprisal_weak", "mean_rank_strong", "mean_rank_weak", "rsr_strong",
                    "rsr_weak", "length_strong", "length_weak", "advantage"):
            row.update({key: r[key]["estimate"], f"{key}_low": r[key]["low"], f"{key}_high": r[key]["high"]})
        d = r["delta"]
        row.update(delta=d.estimate if d else None, delta_low=d.low if d else None, delta_high=d.high if d else None)
        out.append(row)
    return out


def build(jobs: Sequence[Any], gaps: Sequence[dict[str, Any]], boot: dict[str, Any], out: Path,
          names: DisplayNames = NO_NAMES) -> dict[str, Any]:
    """The section for the report: ``{"rows", "markdown", "csv" (path or None), "figures": [paths]}``; ``names``:
    the display names the figures print."""
    table = rows(jobs, gaps)
    corr = correlations(table, boot)
    result: dict[str, Any] = {"rows": table, "markdown": markdown(table, corr, boot["confidence"]), "csv": None,
                              "figures": [], "correlations": corr}
    if table:
        result["csv"] = str(write_csv(csv_rows(table), Path(out) / "learnability.csv"))
    pairs = defaultdict(list)
    for r in table:
        pairs[(r["strong"], r["weak"])].append(r)
    for (strong, weak), members in pairs.items():
        if any(r["delta"] is not None for r in members):
            slug = "_vs_".join(re.sub(r"[^A-Za-z0-9.-]+", "_", n) for n in (strong, weak))
            result["figures"].append(str(figure(members, Path(out) / f"fig_learnability_{slug}.png", boot["confidence"], names)))
    return result


def track(tracker: Any, section: dict[str, Any]) -> None:
    """The W&B summary run: the ``learnability`` table and its figures."""
    table = csv_rows(section["rows"])
    if table:
        columns = list(dict.fromkeys(k for r in table for k in r))
        tracker.log_table("learnability", columns, [[r.get(c) for c in columns] for r in table])
    for fig in section["figures"]:
        tracker.log_image(Path(fig).stem, fig)
