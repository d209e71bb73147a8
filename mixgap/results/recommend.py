"""The report's "Which mix weight?" section: per student x teacher pair x fine-tune mode trained at two or more mix
weights, how likely each weight is the best one, which weight to use, and which others the sweep cannot tell apart.

- **P(best)** of weight w: the share of paired bootstrap resamples in which w has the highest average accuracy
  (ties split equally). One resample draws each benchmark's problems with replacement once and scores every arm
  (every weight, every seed) on that draw, stratified by benchmark: :func:`mixgap.stats.bootstrap.bootstrap_arms`, the scheme
  of the gap CIs (:func:`mixgap.stats.bootstrap.compare`).
- The **recommended** w has the highest P(best) (ties: the higher point average). Another weight is **within
  noise** of it when the paired CI of Δ = P_w − P_recommended (:func:`mixgap.stats.bootstrap.compare`, average) spans 0;
  **worse** when the CI lies below 0 (**better** above 0, possible only when P(best) and the point averages disagree).
- Where the learnability stage ran (``result.json`` ``learnability.prediction.better``), whether its predicted pool
  agrees with the winning side of the sweep: w > 0.5 is the strong side, w < 0.5 the weak side.
- A **student-aware** arm (``mix.strategy=rsr`` / ``rsr_budget``: each problem's trace chosen by the student's RSR,
  :mod:`mixgap.stages.mix`) trained on the same problems is one more arm of the cell: P(best) is over the fixed
  weights and the student-aware arms together (one draw, summing to 1), and the sentence says whether it beats the
  best fixed w (the fixed arm of highest P(best)), is within noise of it or is worse: the paired CI of
  Δ = P_arm − P_best fixed w.

Files: ``recommend.csv`` (:func:`mixgap.results.tables.recommend.csv_rows`) and ``fig_p_best_<pair>_<student>.png``
(:func:`mixgap.results.figures.p_best_vs_weight`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mixgap.results import figures
from mixgap.results.learnability_report import read_predictions
from mixgap.results.sweep import DisplayNames
from mixgap.results.tables import recommend as render
from mixgap.results.tables.files import write_csv
from mixgap.results.tables.names import Arm, arm_label, student_aware
from mixgap.stats.bootstrap import AVERAGE, bootstrap_arms, compare

_TIE = 1e-9  # resampled averages closer than this (points) count as tied


def p_best(samples: np.ndarray) -> np.ndarray:
    """P(best) of each arm: the share of resamples in which it has the highest value, ties split equally.

    Args:
        samples: ``(A, B)`` resampled averages (points) of A arms on the same B resamples.

    Returns:
        ``(A,)`` shares in [0, 1] summing to 1.

    Raises:
        ValueError: ``samples`` is not 2-D with at least one arm and one resample.
    """
    samples = np.asarray(samples, dtype=float)
    if samples.ndim != 2 or 0 in samples.shape:
        raise ValueError(f"samples has shape {samples.shape}; give (arms, resamples) with both >= 1")
    top = samples >= samples.max(axis=0) - _TIE  # (A, B): the arms tied for best in each resample
    return (top / top.sum(axis=0)).mean(axis=1)


def arms_p_best(arms: Sequence[Mapping[str, object]], *, n_boot: int = 10_000, seed: int = 0) -> tuple[list[float], np.ndarray]:
    """``(point averages, P(best))`` of arms on the same problems, by the paired stratified bootstrap.

    Args:
        arms: per arm ``{benchmark: 0/1 array (S, n) or (n,)}`` on the same problems (:func:`mixgap.stats.runs.align`).
        n_boot, seed: bootstrap resamples and RNG seed (:func:`mixgap.stats.bootstrap.bootstrap_arms`).
    """
    points, samples = bootstrap_arms(arms, n_boot=n_boot, seed=seed)
    return points[AVERAGE], p_best(np.stack(samples[AVERAGE]))


def side(weight: Arm) -> str | None:
    """The side of the sweep a weight stands on: ``strong`` (w > 0.5), ``weak`` (w < 0.5), None at 0.5 or for a
    student-aware arm (it has no one weight)."""
    if student_aware(weight):
        return None
    return "strong" if weight > 0.5 else "weak" if weight < 0.5 else None


def _verdict(d: Any) -> str:
    return "within noise" if d.low <= 0 <= d.high else "worse" if d.high < 0 else "better"


def recommend(weights: Sequence[Arm], arms: Sequence[Mapping[str, object]], boot: dict[str, Any]) -> dict[str, Any]:
    """The recommendation of one cell: P(best) per arm, the recommended arm, each other arm's paired Δ, and each
    student-aware arm against the best fixed weight.

    Args:
        weights: the arms, one per run set: mix weights and student-aware strategies
            (:func:`mixgap.results.tables.names.arm_of`); arms: as :func:`arms_p_best`.
        boot: ``n_boot``, ``seed``, ``confidence`` (the report's).

    Returns:
        ``{"weights", "points" (average accuracy, percent, on the shared problems), "p_best" (summing to 1),
        "best" (the recommended arm), "delta" ({w: Interval of P_w − P_best}), "status" ({w: best | within noise |
        worse | better}), "aware" ({student-aware arm: {"fixed": the best fixed w (highest P(best) among the
        weights, ties the higher point average), "delta": Interval of P_arm − P_fixed, "verdict": better | within
        noise | worse}}, empty without a fixed weight)}``.

    Raises:
        ValueError: fewer than two arms, or weights and arms of different lengths.
    """
    if len(weights) < 2 or len(weights) != len(arms):
        raise ValueError(f"recommend needs >= 2 weights with one arm each; got {len(weights)} weights, {len(arms)} arms")
    points, shares = arms_p_best(arms, n_boot=boot["n_boot"], seed=boot["seed"])

    def rank(i: int) -> tuple:
        return (round(float(shares[i]), 12), points[i])

    best = max(range(len(weights)), key=rank)
    delta, status = {}, {weights[best]: "best"}
    for i, w in enumerate(weights):
        if i != best:
            delta[w] = compare(arms[i], arms[best], **boot)[AVERAGE].delta
            status[w] = _verdict(delta[w])
    fixed = [i for i, w in enumerate(weights) if not student_aware(w)]
    aware = {}
    if fixed:
        top = max(fixed, key=rank)
        for i in (i for i, w in enumerate(weights) if student_aware(w)):
            d = compare(arms[i], arms[top], **boot)[AVERAGE].delta
            aware[weights[i]] = {"fixed": weights[top], "delta": d, "verdict": _verdict(d)}
    return {"weights": list(weights), "points": list(points), "p_best": [float(p) for p in shares],
            "best": weights[best], "delta": delta, "status": status, "aware": aware}


def _g(values: Sequence[Arm]) -> str:
    items = [arm_label(v) for v in values]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _named(arm: Arm) -> str:
    return arm if student_aware(arm) else f"w = {arm:g}"


def sentence(rec: dict[str, Any]) -> str:
    """One sentence a user can act on, e.g. ``w = 0.2 is best with P = 0.61; 0.1 and 0.3 are within noise; 0 and 1
    are worse.``; with a student-aware arm, then whether it beats the best fixed w: ``rsr is within noise of the best
    fixed w = 0.2 (Δ = -1.3 [-6.0, 3.4] points).``"""
    p = rec["p_best"][rec["weights"].index(rec["best"])]
    shown = f"= {p:.2f}" if p < 0.995 or p == 1 else "> 0.99"  # never a rounded-up certainty
    parts = [f"{_named(rec['best'])} is best with P {shown}"]
    for label in ("within noise", "worse", "better"):
        members = [w for w in rec["weights"] if rec["status"][w] == label]
        if members:
            parts.append(f"{_g(members)} {'is' if len(members) == 1 else 'are'} {label}")
    if not any(rec["status"][w] == "within noise" for w in rec["weights"]):
        parts.insert(1, "no other weight is within noise")
    words = {"better": "beats", "within noise": "is within noise of", "worse": "is worse than"}
    aware = [f"{arm} {words[a['verdict']]} the best fixed w = {a['fixed']:g} (Δ = {a['delta'].estimate:+.1f} "
             f"[{a['delta'].low:+.1f}, {a['delta'].high:+.1f}] points)" for arm, a in (rec.get("aware") or {}).items()]
    return "; ".join(parts) + "." + "".join(f" {a}." for a in aware)


def cell_row(cell: tuple, rec: dict[str, Any], table3: Mapping[str, Sequence[dict[str, Any]]],
             predictions: Mapping[tuple, dict[str, Any]]) -> dict[str, Any]:
    """A cell's section row: its keys, the recommendation, each weight's Table 3 average (CI) and realised weight,
    the sentence, and the learnability prediction's agreement (None where the predict stage did not run)."""
    student, strong, weak, mode = cell
    by_weight = {r["weight"]: r for r in table3.get(student, []) if r["weight"] is not None
                 and (r["strong"], r["weak"], r["mode"]) == (strong, weak, mode)}
    predicted = ((predictions.get((student, strong, weak)) or {}).get("prediction") or {}).get("better")
    aware = rec.get("aware") or {}  # a student-aware best: the side of the best fixed w
    winning = side(next(iter(aware.values()))["fixed"] if student_aware(rec["best"]) and aware else rec["best"])
    agrees = None if predicted not in ("strong", "weak") or winning is None else predicted == winning
    return {"student": student, "strong": strong, "weak": weak, "mode": mode, **rec, "sentence": sentence(rec),
            "accuracy": {w: by_weight[w]["cells"][AVERAGE] if w in by_weight else None for w in rec["weights"]},
            "realised": {w: by_weight.get(w, {}).get("realised") for w in rec["weights"]},
            "predicted": predicted, "side": winning, "agrees": agrees}


def _slug(*names: str) -> str:
    return "_".join(re.sub(r"[^A-Za-z0-9.-]+", "_", str(n)) for n in names)


def build(cells: Mapping[tuple, tuple[list[float], list[dict[str, Any]]]], single: Sequence[tuple],
          table3: Mapping[str, Sequence[dict[str, Any]]], jobs: Sequence[Any], boot: dict[str, Any],
          out: Path, names: DisplayNames = figures.NO_NAMES) -> dict[str, Any]:
    """The section for the report.

    Args:
        cells: ``{(student, strong, weak, mode): (weights, aligned arms)}`` for cells with >= 2 weights.
        single: the cells trained at one weight only (nothing to compare).
        table3: ``mixgap.results.report.table3_rows``; jobs: the sweep's jobs (for the learnability prediction).
        boot: the report's bootstrap settings; out: the report folder.
        names: the models' display names, printed by the figures (:func:`mixgap.results.sweep.display_names`).

    Returns:
        ``{"rows", "markdown", "csv" (path or None), "figures": [paths]}``.
    """
    predictions = read_predictions(jobs)
    rows = [cell_row(cell, recommend(w, arms, boot), table3, predictions) for cell, (w, arms) in sorted(cells.items())]
    result: dict[str, Any] = {"rows": rows, "markdown": render.markdown(rows, single, boot["confidence"]), "csv": None,
                              "figures": []}
    if rows:
        result["csv"] = str(write_csv(render.csv_rows(rows), Path(out) / "recommend.csv"))
    for r in rows:
        path = Path(out) / f"fig_p_best_{_slug(r['strong'], 'vs', r['weak'], r['student'], r['mode'])}.png"
        result["figures"].append(str(figures.p_best_vs_weight(r, path, boot["confidence"], names)))
    return result
