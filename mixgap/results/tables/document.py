"""``report.md`` put together from the tables, and the W&B summary run of the same tables."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mixgap.results.sweep import DisplayNames
from mixgap.results.tables.flags import warnings_markdown
from mixgap.results.tables.gaps import gap_csv_rows
from mixgap.results.tables.markdown import NO_LABELS
from mixgap.results.tables.settings import SEEDS_NOTE, data_markdown, seeds_varied, settings_markdown
from mixgap.results.tables.table3 import extract_markdown, judge_markdown, table3_markdown
from mixgap.stats.bootstrap import AVERAGE
from mixgap.stats.intervals import verdict


def method_note(boot: dict[str, Any]) -> str:
    """The Method section's paragraph: n, the intervals (Wilson, Newcombe, bootstrap) and detectable |Δ|.

    ``boot``: ``n_boot`` and ``seed`` of the bootstrap, as the report ran it.
    """
    return ("n = problems behind each accuracy (summed over benchmarks for the average). One run on one benchmark: "
            "Wilson score interval (Wilson 1927), right at 0/n and n/n. A gap whose arms are both 0/n or n/n "
            "(the bootstrap is a constant) gets Newcombe's paired score interval (Newcombe 1998, method 10), "
            "never [0, 0]. Other intervals: "
            f"percentile bootstrap (Efron & Tibshirani 1993), {boot['n_boot']:,} resamples, seed "
            f"{boot['seed']}. Δ is paired: both arms are scored on the same resampled problems (Koehn 2004; "
            "Dror et al. 2018). The average is the plain mean of per-benchmark accuracies; its resamples draw "
            "each benchmark's problems independently (stratified). With several seeds, each resample also "
            "draws the arm's seeds with replacement (two-level bootstrap, Owen 2007); Seeds = distinct runs "
            "per arm (strong/weak). Detectable |Δ| = 2.8 × the bootstrap standard error of Δ: the smallest gap this "
            "design (these problems, samples and seeds) detects with 80% power at α = 0.05, (z_0.975 + z_0.80) × SE "
            "(Cohen 1988, ch. 2; Bloom 1995); an n.s. row with a true gap below it was too small to see, not shown "
            "absent. With several samples per problem (eval.n_samples), each problem carries its mean correctness "
            "into the resamples, so the intervals hold both the problem and the sample noise; pass@1 is the mean "
            "over samples and problems.")


def _head(sweeps: Sequence[str], jobs: Sequence[Any], missing: Sequence[str], warnings: Sequence[str]) -> list[str]:
    """Title, sweeps, job counts by status, the warnings pointer and the missing jobs."""
    counts: dict[str, int] = defaultdict(int)
    for job in jobs:
        counts[job.status] += 1
    lines = ["# mixgap report", "", "Sweeps: " + ", ".join(f"`{s}`" for s in sweeps),
             f"Jobs: {len(jobs)} (" + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + ")", ""]
    if warnings:  # one line here; the table after the results (they would push the results down the page)
        lines += [f"> **{len(dict.fromkeys(warnings))} warnings**: see [Warnings](#warnings) after the results.", ""]
    if missing:
        lines += ["## Missing or unfinished jobs (left out of every table)", ""] + [f"- {m}" for m in missing] + [""]
    return lines


def report_markdown(
    sweeps: Sequence[str], jobs: Sequence[Any], gap_text: str, table3: dict[str, list[dict[str, Any]]],
    figures: Sequence[str], missing: Sequence[str], warnings: Sequence[str], boot: dict[str, Any],
    labels: Mapping[str, str] = NO_LABELS, names: DisplayNames | None = None,
) -> str:
    """``report.md``: summary line, warnings (loud), missing jobs, gap tables, Table 3, figures, method.

    ``gap_text``: :func:`~mixgap.results.tables.gaps.gap_markdown`'s text; ``boot``: ``confidence`` (0–1),
    ``n_boot`` and ``seed``; ``labels``: benchmark name -> label, for every table that names a benchmark; ``names``:
    the models' display names, for Table 3's headings.
    """
    level = f"{100 * boot['confidence']:g}"
    lines = _head(sweeps, jobs, missing, warnings)
    lines += ["## Gap between strong and weak teacher data (Tables 1–2 style, average over benchmarks)", "",
              f"Values: accuracy in percent, [{level}% CI]. Better? = Strong / Weak when the Δ interval excludes 0, "
              "else n.s. Paper columns: Li et al. (2025), same student and teacher pair, averaged over the paper's five "
              "benchmarks; shown beside ours, never mixed in. At w = 1 and w = 0 the realised strong fraction is exactly 1 "
              "and 0 (over-length drops change N, not the fraction); see Training data. Scoring: when the jobs ran the LLM "
              "judge (`eval.judge`), Δ, Better? and Table 3 count its verdicts, as the paper's published numbers do; the "
              "grader's own figures are in LLM re-judge and Scoring rules. Each table says whose verdicts it counts.",
              "", gap_text, "",
              "## Per benchmark (Table 3 style)", "", "Rows marked (paper): Li et al. (2025) Table 3 for the same "
              "student, teacher pair and weight; their Average is over the paper's five benchmarks.", "",
              table3_markdown(table3, labels, names), ""]
    sections = (("LLM re-judge (the paper's protocol)", judge_markdown(jobs, labels)),
                ("Scoring rules (the same completions)", extract_markdown(jobs, labels)),
                ("Training data", data_markdown(jobs)), ("Settings", settings_markdown(jobs, labels)))
    for title, body in sections:
        if body:
            lines += [f"## {title}", "", body, ""]
    if figures:
        lines += ["## Figures", ""] + [f"![{Path(f).stem}]({Path(f).name})" for f in figures] + [""]
    if warnings:
        lines += ["## Warnings", "", warnings_markdown(warnings, labels), ""]
    lines += ["## Method", "", method_note(boot), "", SEEDS_NOTE + " " + seeds_varied(jobs), ""]
    return "\n".join(lines)


def track(tracker: Any, gaps: Sequence[dict[str, Any]], table3: dict[str, list[dict[str, Any]]], figures: Sequence[str]) -> None:
    """The W&B summary run: gap rows and Table 3 rows as tables, figures as images, average Δs as summary.

    Columns name benchmarks by their names, as ``gaps.csv`` does (machine keys, not labels).
    """
    rows = gap_csv_rows(gaps)
    if rows:
        columns = list(dict.fromkeys(k for r in rows for k in r))
        tracker.log_table("gaps", columns, [[r.get(c) for c in columns] for r in rows])
    for student, t_rows in table3.items():
        benches = list(dict.fromkeys(b for r in t_rows for b in r["cells"]))
        columns = ["method", "teachers", "mode", "seeds", *benches]
        tracker.log_table(f"table3/{student}", columns, [
            [r["method"], r["teachers"], r["mode"], r["seeds"], *(r["cells"][b].estimate if b in r["cells"] else None
                                                                  for b in benches)] for r in t_rows])
    for fig in figures:
        tracker.log_image(Path(fig).stem, fig)
    for g in gaps:
        if g["comparison"]:
            delta = g["comparison"][AVERAGE].delta
            key = f"{g['strong']}_vs_{g['weak']}/{g['student']}/{g['mode']}"
            tracker.summary({f"delta/{key}": delta.estimate, f"delta_low/{key}": delta.low,
                             f"delta_high/{key}": delta.high, f"better/{key}": verdict(delta)})
