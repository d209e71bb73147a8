"""Per-benchmark tables: Table 3 style accuracies per student and method (the paper's rows beside ours),
and the LLM re-judge's pass@1 beside the rule-based grader's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mixgap.results.sweep import DisplayNames
from mixgap.results.tables.markdown import NO_LABELS, bench_label, md_table, with_n
from mixgap.results.tables.names import named
from mixgap.results.tables.published import paper_math_label
from mixgap.stats.bootstrap import AVERAGE


def _paper_row(r: dict[str, Any], benches: Sequence[str], labels: Mapping[str, str]) -> list[Any]:
    """The paper's Table 3 row under ours; its MATH (5k) value also fills our ``math500`` column, labelled."""
    paper = {**r["paper"], **{b: r["paper"]["math"] for b in ("math500",) if "math" in r["paper"]}}
    return [f"{r['method']} (paper; its MATH is {paper_math_label(labels)})", r["teachers"], "", "", "",
            *(f"{paper[b]:.1f}" if b in paper else "—" for b in benches)]


def table3_markdown(table3: dict[str, list[dict[str, Any]]], labels: Mapping[str, str] = NO_LABELS,
                    names: DisplayNames | None = None) -> str:
    """Per student, accuracy per benchmark and on average for each method (Table 3 style); paper rows beside.

    ``table3``: ``mixgap.results.report.table3_rows``; ``labels``: benchmark name -> column label; ``names``: the
    students' display names, for each table's heading (:func:`mixgap.results.sweep.display_names`).
    """
    names = names or DisplayNames()
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
        parts.append(f"### {named(student, names.student(student))}\n\n" + md_table(header, body) + note)
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
    return ("The rule-based grader (mixgap.grading, under `eval.extract` and `eval.rule`) beside the LLM judge for every judged "
            "evaluation. The paper's published accuracies are the judged ones (every rule miss with an extracted "
            "answer re-graded by Qwen2.5-32B-Instruct), so the tables above count the **judged** verdicts of these "
            "evaluations; the rule column is the grader alone. Unparsed = replies with neither True nor False "
            "(counted as not correct).\n\n" + md_table(
                ["Evaluation", "Benchmark", "Judge", "Rule pass@1", "Judged pass@1", "Sent", "Flips", "Unparsed"], rows))


def extract_markdown(jobs: Sequence[Any], labels: Mapping[str, str] = NO_LABELS) -> str:
    """Each evaluation's pass@1 under every scoring of the same completions (``scores.json``
    ``accuracy_by_scoring``, ``mixgap.grading.SCORINGS``: ``policy`` = mixgap's grading policy, ``boxed`` = the
    paper's extraction (last ``\\boxed{}`` only) under our rule, ``paper`` = the paper's extraction and rule), the
    judged pass@1 when the job ran the judge (its ``scores.json`` ``judge_accuracy``), the scoring in force, and
    boxed − policy in points; each evaluation once. Empty when no evaluation recorded both policy and boxed."""
    rows, seen = [], set()
    for job in jobs:
        for arm, benches in getattr(job, "graded", {}).items():
            for bench, ev in benches.items():
                modes = ev.scores.get("accuracy_by_scoring") or {}
                if ev.key in seen or not {"policy", "boxed"} <= set(modes):
                    continue
                seen.add(ev.key)
                where = f"untuned {job.identity.get('student')}" if arm == "untuned" else job.label()
                judged = getattr(job, "judge", {}).get(arm, {}).get(bench, {}).get("judge_accuracy")
                rows.append([where, bench_label(bench, labels), ev.scores.get("scoring") or ev.scores.get("extract", "—"),
                             f"{modes['policy']:.1f}", f"{modes['boxed']:.1f}", f"{modes['boxed'] - modes['policy']:+.1f}",
                             f"{modes['paper']:.1f}" if "paper" in modes else "—",
                             f"{judged:.1f}" if judged is not None else "—"])
    if not rows:
        return ""
    return ("The same completions under each scoring: **policy** (mixgap's grading policy, `mixgap.grading`: the last "
            "answer, boxed or after `Final Answer:`, decided by math-verify and our rules), **boxed** (the paper's "
            "extraction, only the last `\\boxed{}` as `last_boxed_only_string`, decided by our rules; GSM8K by its task's "
            "`flexible-extract`), **paper** (the paper's extraction and rule: their `is_equiv`, equal strings after "
            "`strip_string`) and **judged** (the LLM judge over the misses of the scoring in force, when `eval.judge` "
            "ran). In force = `eval.extract` + `eval.rule`, the rule behind every other table (before the judge); "
            "— = not recorded (an evaluation from before the paper's rule, or no judge). pass@1 in percent.\n\n"
            + md_table(["Evaluation", "Benchmark", "In force", "policy", "boxed", "boxed − policy", "paper", "judged"], rows))
