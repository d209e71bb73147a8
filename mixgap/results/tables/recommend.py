"""The "Which mix weight?" section rendered: Markdown, ``recommend.csv`` rows and the W&B summary run. The rows come
from :func:`mixgap.results.recommend.build` (one per student x teacher pair x fine-tune mode with >= 2 weights)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mixgap.results.tables.markdown import md_table, with_n
from mixgap.results.tables.names import arm_label, arm_strategy, student_aware

HEADING = "## Which mix weight?"
NOTHING = ("Nothing to recommend: every student and teacher pair of these sweeps was trained at a single mix "
           "weight (sweep mix.weight over two or more values to compare them).")


def _single_line(single: Sequence[tuple]) -> str:
    names = "; ".join(f"{s} ({st} / {wk}, {m})" for s, st, wk, m in sorted(single, key=str))
    return f"Trained at one mix weight only, nothing to compare: {names}."


def _agreement(r: dict[str, Any]) -> str:
    if r["predicted"] is None:
        return "No learnability prediction (the predict stage did not run for this student and pair)."
    where = {"strong": "the strong side (w > 0.5)", "weak": "the weak side (w < 0.5)", None: "neither side (w = 0.5)"}
    verdict = {True: "agrees", False: "disagrees", None: "cannot be compared"}[r["agrees"]]
    return (f"Learnability before training predicted the **{r['predicted']}** pool; the sweep's recommended weight is "
            f"on {where[r['side']]}: the prediction {verdict}.")


def markdown(rows: Sequence[dict[str, Any]], single: Sequence[tuple], confidence: float) -> str:
    """The section (heading included): per cell, a table of weights and the sentence; one line when there is
    nothing to recommend."""
    lines = [HEADING, ""]
    if not rows:
        return "\n".join([*lines, NOTHING, ""])
    lines += [f"P(best): the share of paired bootstrap resamples (problems resampled jointly across all weights of "
              "the student, stratified by benchmark, as the gap CIs) in which the weight has the highest average "
              "accuracy; ties split. Within noise: the paired "
              f"{100 * confidence:g}% CI of Δ = P_w − P_recommended spans 0.", ""]
    if any(student_aware(w) for r in rows for w in r["weights"]):
        lines += ["Student-aware arms (`mix.strategy`): `rsr` gives each problem the trace of lower RSR under the "
                  "untuned student (no weight), `rsr_budget w=...` gives the strong trace to that w's share of the "
                  "problems where the student's RSR favours it most; same problems as the weights, one more arm of "
                  "P(best); their realised w is the strong share they trained on.", ""]
    for r in rows:
        body = []
        for i, w in enumerate(r["weights"]):
            acc, real, delta = r["accuracy"][w], r["realised"][w], r["delta"].get(w)
            body.append([arm_label(w), f"{real:.3f}" if real is not None else "—", with_n(acc) if acc else "—",
                         f"{r['p_best'][i]:.3f}", delta.fmt() if delta else "—", r["status"][w]])
        lines += [f"### {r['student']}: {r['strong']} / {r['weak']} ({r['mode']})", "",
                  md_table(["w", "Realised w", "Average accuracy", "P(best)", "Δ vs recommended", "Verdict"], body), "",
                  f"**{r['sentence']}**", "", _agreement(r), ""]
    if single:
        lines += [_single_line(single), ""]
    return "\n".join(lines)


def csv_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``recommend.csv``: one row per cell x arm (accuracies and Δ in percent / points); ``weight`` is the arm (a mix
    weight, or a student-aware strategy's name, :func:`mixgap.results.tables.names.arm_of`), ``strategy`` its
    ``mix.strategy``, and a student-aware arm's ``vs_best_fixed`` its verdict against the best fixed w."""
    out = []
    for r in rows:
        for i, w in enumerate(r["weights"]):
            acc, delta = r["accuracy"][w], r["delta"].get(w)
            aware = (r.get("aware") or {}).get(w)
            out.append({"student": r["student"], "strong": r["strong"], "weak": r["weak"], "finetune_mode": r["mode"],
                        "weight": w, "strategy": arm_strategy(w), "realised_weight": r["realised"][w],
                        "accuracy": acc.estimate if acc else None, "ci_low": acc.low if acc else None,
                        "ci_high": acc.high if acc else None, "shared_average": r["points"][i],
                        "p_best": r["p_best"][i], "recommended": w == r["best"], "verdict": r["status"][w],
                        "delta_vs_recommended": delta.estimate if delta else None,
                        "delta_low": delta.low if delta else None, "delta_high": delta.high if delta else None,
                        "predicted_better": r["predicted"], "prediction_agrees": r["agrees"],
                        "vs_best_fixed": aware["verdict"] if aware else None,
                        "delta_vs_best_fixed": aware["delta"].estimate if aware else None})
    return out


def track(tracker: Any, section: dict[str, Any]) -> None:
    """The W&B summary run: the ``recommend`` table, the recommended weight and its P(best) per cell, the figures."""
    table = csv_rows(section["rows"])
    if table:
        columns = list(table[0])
        tracker.log_table("recommend", columns, [[r.get(c) for c in columns] for r in table])
    for r in section["rows"]:
        key = f"{r['strong']}_vs_{r['weak']}/{r['student']}/{r['mode']}"
        tracker.summary({f"recommend/{key}": r["best"], f"p_best/{key}": r["p_best"][r["weights"].index(r["best"])],
                         f"recommend_sentence/{key}": r["sentence"]})
    for fig in section["figures"]:
        tracker.log_image(Path(fig).stem, fig)
