"""The gap between strong and weak teacher data: the Tables 1/2 style Markdown (one table per teacher pair,
the paper's numbers beside ours) and the CSV rows of ``results.csv`` and ``gaps.csv``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mixgap.results.sweep import DisplayNames
from mixgap.results.tables.markdown import NO_LABELS, math_variant, md_table, with_n
from mixgap.results.tables.names import by_pair, named, realised_weight
from mixgap.results.tables.published import paper_math_label
from mixgap.stats.bootstrap import AVERAGE, accuracy
from mixgap.stats.intervals import Interval

#: identity fields kept out of the tidy CSV's columns (lists and mappings, not one value per job)
_NOT_COLUMNS = ("benchmarks", "benchmark_labels")


def result_rows(jobs: Sequence[Any], boot: dict[str, Any]) -> list[dict[str, Any]]:
    """The tidy table: one row per job x arm x benchmark (missing ones too), plus each complete arm's average;
    ``scoring`` says whose verdicts each accuracy counts (``judged``: ``eval.judge``'s; ``rule``: the grader's).

    ``boot``: ``stats.accuracy`` keywords (``n_boot``, ``seed``, ``confidence``); accuracies in percent.
    """
    rows, ci_cache = [], {}
    for job in jobs:
        base = {"job": str(job.folder), "status": job.status,
                **{k: v for k, v in job.identity.items() if k not in _NOT_COLUMNS}, "variant": job.variant,
                "realised_weight": realised_weight(job.counts.get("train"))}
        for arm in job.expected:
            evals = job.evals.get(arm, {})
            for bench in job.identity.get("benchmarks", []):
                row = {**base, "arm": arm, "benchmark": bench}
                ev = evals.get(bench)
                if ev is None:
                    rows.append({**row, "eval_status": "missing"})
                    continue
                if ev.key not in ci_cache:
                    ci_cache[ev.key] = accuracy({ev.key: list(ev.correct.values())}, **boot)[ev.key]
                ci = ci_cache[ev.key]
                rows.append({**row, "eval_status": "done", "eval_key": ev.key, "scoring": ev.scoring, "n": len(ev.correct),
                             "correct": sum(ev.correct.values()), "accuracy": ci.estimate, "ci_low": ci.low,
                             "ci_high": ci.high, "length_stop_frac": ev.scores.get("length_stop_frac")})
            if arm in job.complete:
                avg = accuracy({b: list(e.correct.values()) for b, e in evals.items()}, **boot)[AVERAGE]
                rows.append({**base, "arm": arm, "benchmark": AVERAGE, "eval_status": "done",
                             "n": sum(len(e.correct) for e in evals.values()), "accuracy": avg.estimate,
                             "ci_low": avg.low, "ci_high": avg.high})
    return rows


def _interval_cells(prefix: str, value: Interval) -> dict[str, float]:
    return {prefix: value.estimate, f"{prefix}_low": value.low, f"{prefix}_high": value.high}


def gap_csv_rows(gaps: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``gaps.csv``: one row per teacher pair x student x mode x benchmark (and ``average``)."""
    rows = []
    for gap in gaps:
        base = {"strong": gap["strong"], "weak": gap["weak"], "kind": gap["names"]["kind"], "student": gap["student"],
                "student_family": gap["family"], "student_size_b": gap["size_b"], "finetune_mode": gap["mode"],
                "scoring": gap.get("scoring", "")}
        if gap["comparison"] is None:
            rows.append({**base, "benchmark": AVERAGE, "better": f"missing {gap['missing']}"})
            continue
        for bench, comp in gap["comparison"].items():
            row = {**base, "benchmark": bench, "n": comp.n, "seeds_strong": comp.seeds[0], "seeds_weak": comp.seeds[1],
                   **_interval_cells("p_strong", comp.strong), **_interval_cells("p_weak", comp.weak),
                   **_interval_cells("delta", comp.delta), "better": comp.verdict, "delta_se": comp.delta_se,
                   "detectable_delta": comp.detectable}
            if bench == AVERAGE and gap["paper"]:
                row.update({f"paper_{k}": v for k, v in (("p_strong", gap["paper"]["strong"]),
                            ("p_weak", gap["paper"]["weak"]), ("delta", gap["paper"]["delta"]))})
            rows.append(row)
    return rows


def _gap_cells(r: dict[str, Any]) -> list[Any]:
    """Seeds, P_strong, P_weak, Δ, verdict and detectable |Δ| of one gap row (or why it is missing)."""
    comp = r["comparison"].get(AVERAGE) if r["comparison"] else None
    cells = ([with_n(comp.strong), with_n(comp.weak), comp.delta.fmt(), comp.verdict, f"{comp.detectable:.1f}"]
             if comp else [f"missing: no finished {r['missing']} job", "", "", "", ""])
    if r["length_stop"]:
        cells[3] += " ⚠ length stops"
    return [f"{comp.seeds[0]}/{comp.seeds[1]}" if comp else "", *cells]


def _paper_cells(r: dict[str, Any], labels: Mapping[str, str]) -> list[str]:
    """The paper's P_strong, P_weak, Δ and which MATH test each side used (ours / paper); empty when none."""
    p = r["paper"]
    if not p:
        return ["", "", "", ""]
    ours = math_variant(list(r["comparison"]), labels) if r["comparison"] else ""
    return [f"{p['strong']:.1f}", f"{p['weak']:.1f}", f"{p['delta']:+.1f}", f"{ours} / {paper_math_label(labels)}"]


def gap_markdown(gaps: Sequence[dict[str, Any]], labels: Mapping[str, str] = NO_LABELS,
                 names: DisplayNames | None = None) -> str:
    """The Table 1/2 style gap tables (one per teacher pair) as Markdown; also what stage=report prints.

    ``gaps``: ``mixgap.results.report.gap_rows``; ``labels``: benchmark name -> label (the MATH column); ``names``:
    the teachers' display names for each table's heading (:func:`mixgap.results.sweep.display_names`; the rows keep
    config names, what the command line takes).
    """
    names = names or DisplayNames()
    if not gaps:
        return "No teacher pair has finished jobs at both w=1 and w=0: no gap to report."
    parts = []
    for (strong, weak), rows in by_pair(gaps).items():
        n = rows[0]["names"]
        s, w, d = f"P_{n['strong']}", f"P_{n['weak']}", f"Δ_{n['strong']}"
        paper = any(r["paper"] for r in rows)
        header = ["Student", "Size (B)", "Mode", "Seeds", f"{s} (w=1)", f"{w} (w=0)", d, "Better?", "Detectable |Δ|"]
        header += [f"Paper {s}", f"Paper {w}", f"Paper {d}", "MATH (ours / paper)"] if paper else []
        body = [[r["student"], f"{r['size_b']:g}", r["mode"], *_gap_cells(r),
                 *(_paper_cells(r, labels) if paper else [])] for r in rows]
        scored = list(dict.fromkeys(r.get("scoring") or "" for r in rows if r["comparison"]))
        note = ("\n\nΔ and Better? from " + " | ".join(f"**{x}**" for x in scored if x) + " verdicts") if any(scored) else ""
        pair = f"{named(strong, names.teacher(strong))} (strong) vs {named(weak, names.teacher(weak))} (weak)"
        parts.append(f"### {d} = {s} − {w}: {pair}\n\n" + md_table(header, body) + note)
    return "\n\n".join(parts)
