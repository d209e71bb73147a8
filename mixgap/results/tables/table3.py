"""Per-benchmark tables: Table 3 style accuracies per student and method (the paper's rows beside ours),
and the LLM re-judge's pass@1 beside the rule-based grader's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mixgap.results.tables.markdown import NO_LABELS, bench_label, md_table, with_n
from mixgap.results.tables.published import paper_math_label
from mixgap.stats.bootstrap import AVERAGE


def _paper_row(r: dict[str, Any], benches: Sequence[str], labels: Mapping[str, str]) -> list[Any]:
    """The paper's Table 3 row under ours; its MATH (5k) value also fills our ``math500`` column, labelled."""
    paper = {**r["paper"], **{b: r["paper"]["math"] for b in ("math500",) if "math" in r["paper"]}}
    return [f"{r['method']} (paper; its MATH is {paper_math_label(labels)})", r["teachers"], "", "", "",
            *(f"{paper[b]:.1f}" if b in paper else "—" for b in benches)]


def table3_markdown(table3: dict[str, list[dict[str, Any]]], labels: Mapping[str, str] = NO_LABELS) -> str:
    """Per student, accuracy per benchmark and on average for each method (Table 3 style); paper rows beside.

    ``table3``: ``mixgap.results.report.table3_rows``; ``labels``: benchmark name -> column label.
    """
    parts = []
    for student, rows in table3.items():
        benches = list(dict.fromkeys(b for r in rows for b in r["cells"] if b != AVERAGE)) + [AVERAGE]
        header = ["Method", "Teachers", "Mode", "w (realised)", "Seeds", *(bench_label(b, labels) for b in benches)]
        body = []
        for r in rows:
            body.append([r["method"], r["teachers"], r["mode"], r.get("w_label", "—"), r["seeds"],
                         *(with_n(r["cells"][b]) if b in r["cells"] else "—" for b in benches)])
            if r["paper"]:
                body.append(_paper_row(r, benches, labels))
        scored = list(dict.fromkeys(r.get("scoring") or "" for r in rows))
        note = ("\n\nAccuracies from " + " | ".join(f"**{x}**" for x in scored if x) + " verdicts") if any(scored) else ""
        parts.append(f"### {student}\n\n" + md_table(header, body) + note)
    return "\n\n".join(parts) or "No finished evaluation."


def judge_markdown(jobs: Sequence[Any], labels: Mapping[str, str] = NO_LABELS) -> str:
    """Rule-based and LLM-judged pass@1 per evaluation (``eval.judge``, ``mixgap.stages.judge``), with the judge's
    counts; each evaluation once. Empty when no job ran the judge."""
    rows, seen = [], set()
    for job in jobs:
        for arm, benches in getattr(job, "judge", {}).items():
            for bench, j in benches.items():
                where = f"untuned {job.identity.get('student')}" if arm == "untuned" else job.label()
                ident = (where, bench, j.get("judge"))
                if ident in seen:
                    continue
                seen.add(ident)
                rows.append([where, bench_label(bench, labels), j.get("judge"),
                             f"{j['rule_accuracy']:.1f} [{j['rule_ci_low']:.1f}, {j['rule_ci_high']:.1f}]",
                             f"{j['judge_accuracy']:.1f} [{j['judge_ci_low']:.1f}, {j['judge_ci_high']:.1f}]",
                             j["sent"], j["flips"], j["unparsed"]])
    if not rows:
        return ""
    return ("The rule-based grader (mixgap.grading, under `eval.extract`) beside the LLM judge for every judged "
            "evaluation. The paper's published accuracies are the judged ones (every rule miss with an extracted "
            "answer re-graded by Qwen2.5-32B-Instruct), so the tables above count the **judged** verdicts of these "
            "evaluations; the rule column is the grader alone. Unparsed = replies with neither True nor False "
            "(counted as not correct).\n\n" + md_table(
                ["Evaluation", "Benchmark", "Judge", "Rule pass@1", "Judged pass@1", "Sent", "Flips", "Unparsed"], rows))


def extract_markdown(jobs: Sequence[Any], labels: Mapping[str, str] = NO_LABELS) -> str:
    """Each evaluation's pass@1 under both extraction modes for the same completions (``scores.json``
    ``accuracy_by_extract``: ``policy`` = mixgap's grading policy, ``boxed`` = the paper's scorer, last
    ``\\boxed{}`` only), the mode in force, and boxed − policy in points; each evaluation once. Empty when no
    evaluation recorded both."""
    rows, seen = [], set()
    for job in jobs:
        for arm, benches in getattr(job, "graded", {}).items():
            for bench, ev in benches.items():
                modes = ev.scores.get("accuracy_by_extract") or {}
                if ev.key in seen or not {"policy", "boxed"} <= set(modes):
                    continue
                seen.add(ev.key)
                where = f"untuned {job.identity.get('student')}" if arm == "untuned" else job.label()
                rows.append([where, bench_label(bench, labels), ev.scores.get("extract", "—"), f"{modes['policy']:.1f}",
                             f"{modes['boxed']:.1f}", f"{modes['boxed'] - modes['policy']:+.1f}"])
    if not rows:
        return ""
    return ("The same completions scored under both answer-extraction rules: **policy** (mixgap's grading policy, "
            "`mixgap.grading`: the last answer, boxed or after `Final Answer:`) and **boxed** (the paper's scorer: "
            "only the last `\\boxed{}`, as `last_boxed_only_string`; GSM8K by its task's `flexible-extract`). "
            "In force = `eval.extract`, the rule behind every other table (before the judge). pass@1 in percent.\n\n"
            + md_table(["Evaluation", "Benchmark", "In force", "policy", "boxed", "boxed − policy"], rows))
