"""Stage ``report``: finished sweep folders -> tidy CSV, the paper's tables with CIs, figures, ``report.md``.

``python launch.py stage=report report.sweep=<folder>`` (or ``report.sweep=[a,b]``). Reads only job folders
(``.hydra/config.yaml``, ``result.json``) and the artifact store their results name; never W&B. Writes into
``report.out`` (default ``<first sweep>/report``):

- ``results.csv``: tidy, one row per job x arm (tuned / untuned) x benchmark, plus each complete arm's average;
- ``gaps.csv``: per teacher pair x student x fine-tune mode x benchmark (and average): P_strong (w=1),
  P_weak (w=0), Δ with paired-bootstrap CIs (:mod:`mixgap.stats`), the verdict, the paper's numbers and the
  scoring (:func:`scoring`: the LLM judge's verdicts when the jobs ran ``eval.judge``, as the paper's, else the grader's);
- ``fig_gap_vs_size_*.png`` (Figures 2/3) and ``fig_average_vs_weight_*.png`` (Figure 6), via :mod:`mixgap.results.figures`;
- ``recommend.csv`` and ``fig_p_best_*.png``: which mix weight to use per student (:mod:`mixgap.results.recommend`);
- ``report.md`` tying it together, with every warning (missing jobs, length stops, problem-id mismatches).

A job counts only when it is ``done`` and every benchmark it names has a finished evaluation; anything else
is listed as missing, never averaged over. Seeds: jobs equal in all but ``seed``/``mix_seed``.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mixgap.core.config import to_container
from mixgap.core.errors import ConfigError
from mixgap.core.files import write_text_atomic
from mixgap.core.store import Store
from mixgap.results import figures, learnability_report, recommend
from mixgap.results.sweep import Job, assign_variants, display_names, read_sweeps
from mixgap.results.tables import recommend as recommend_tables
from mixgap.results.tables.document import report_markdown, track
from mixgap.results.tables.files import write_csv
from mixgap.results.tables.flags import flagged_any, length_flags
from mixgap.results.tables.gaps import gap_csv_rows, gap_markdown, result_rows
from mixgap.results.tables.markdown import benchmark_labels, status_line
from mixgap.results.tables.names import (
    Arm,
    arm_label,
    arm_order,
    method_name,
    pair_kind,
    realised_weight,
    student_aware,
    weight_label,
)
from mixgap.results.tables.published import paper_gap, paper_method, paper_table3
from mixgap.stats.bootstrap import accuracy, accuracy_ci, compare
from mixgap.stats.runs import align, dropped_ids


def runs_of(jobs: list[Job], arm: str, warnings: list[str] | None = None) -> list[dict[str, dict[str, bool]]]:
    """One ``{benchmark: {id: correct}}`` per distinct run: jobs with identical evaluation keys count once, and
    so do tuned jobs whose seeds select the same data and training (:meth:`Job.independent_seeds`: ``mix.seed``
    selects nothing at w = 0 or 1, the global ``seed`` changes no weight); such a collapse is warned about."""
    seen, runs, seeds_seen = set(), [], {}
    for job in jobs:
        if arm in job.complete:
            keys = tuple(sorted(e.key for e in job.evals[arm].values()))
            seeds = job.independent_seeds() if arm == "tuned" else None
            if keys in seen:
                continue
            if seeds is not None and seeds in seeds_seen:
                if warnings is not None:
                    warnings.append(f"{job.label()}: not an independent seed of {seeds_seen[seeds]} (same "
                                    f"finetune_mode.seed, and mix.seed selects nothing at w={job.identity.get('weight')}"
                                    "); counted once, it does not narrow the interval")
                continue
            seen.add(keys)
            if seeds is not None:
                seeds_seen[seeds] = job.label()
            runs.append({b: e.correct for b, e in job.evals[arm].items()})
    return runs


def aligned(arms: list[list[dict[str, dict[str, bool]]]], label: str, warnings: list[str]) -> list[dict[str, Any]]:
    """Each arm as ``{benchmark: (S, n) matrix}`` on the benchmarks and problem ids all runs share."""
    runs = [r for arm in arms for r in arm]
    benches = [b for b in runs[0] if all(b in r for r in runs)]
    if len(benches) < len(set().union(*runs)):
        warnings.append(f"{label}: only benchmarks {benches} are common to all runs; the others are left out")
    out: list[dict[str, Any]] = [{} for _ in arms]
    for bench in benches:
        preds = [r[bench] for r in runs]
        if dropped := dropped_ids(preds):
            warnings.append(f"{label} {bench}: {dropped} problem ids not in every run; compared on the intersection")
        _, matrix = align(preds)
        start = 0
        for a, arm in enumerate(arms):
            out[a][bench] = matrix[start : start + len(arm)]
            start += len(arm)
    return out


def _field(job: Job, key: str, default: Any) -> Any:
    """A config field of the job's snapshot (``Job.fields``: JSON values), else ``default``."""
    return json.loads(job.fields[key]) if key in job.fields else default


def scoring(jobs: list[Job], arm: str, label: str, warnings: list[str]) -> str:
    """How the verdicts behind an accuracy or Δ were reached, over the ``arm`` evaluations of ``jobs``:
    ``judged (<judge>)`` (``eval.judge``'s verdicts, as the paper's published numbers), ``rule (eval.extract=...)``
    (the grader; ``, eval.rule=...`` added when a job's rule is not ``policy``), per benchmark when they differ
    (``judged (qwen32b) on math500; rule (...) on gsm8k``); a benchmark whose runs mix both is named ``mixed`` and
    warned about. ``""`` when no job has the arm."""
    by_bench: dict[str, set[str]] = defaultdict(set)
    for job in jobs:
        for bench, ev in (job.evals.get(arm, {}) if arm in job.complete else {}).items():
            by_bench[bench].add(ev.scoring)
    if not by_bench:
        return ""
    mixed = [b for b, kinds in by_bench.items() if len(kinds) > 1]
    if mixed:
        warnings.append(f"{label}: {', '.join(mixed)} mix judged and rule-graded runs (eval.judge differs between "
                        "jobs); the accuracy and Δ average over both")
    judges = sorted({str(_field(j, "eval.judge.name", "")) for j in jobs} - {""})
    extracts, rules = ("/".join(sorted({str(_field(j, f"eval.{k}", "policy")) for j in jobs})) for k in ("extract", "rule"))
    rule = f"rule (eval.extract={extracts}" + (f", eval.rule={rules})" if rules != "policy" else ")")
    names = {"judged": f"judged ({'/'.join(judges) or 'eval.judge'})", "mixed": "mixed judged/rule", "rule": rule}
    kind = {b: "mixed" if len(k) > 1 else next(iter(k)) for b, k in by_bench.items()}
    if len(set(kind.values())) == 1:
        return names[next(iter(kind.values()))]
    return "; ".join(f"{names[k]} on {', '.join(b for b in kind if kind[b] == k)}" for k in names if k in kind.values())


def gap_rows(
    groups: dict[tuple, list[Job]], boot: dict[str, Any], warnings: list[str], flagged: set[str],
    planned: set[tuple] | None = None,
) -> list[dict[str, Any]]:
    """Table 1/2 rows: per teacher pair x student x mode, the w=1 vs w=0 comparison (or what is missing).

    ``planned``: the conditions (``Job.condition()``) of every job of the sweeps, finished or not. A cell gets
    a row only when the sweeps hold a job at both w = 1 and w = 0 (else it is a one-armed baseline such as
    Table 3's DeepSeek-R1-32B long CoT, shown in Table 3 only); None = every cell with a finished weight.

    Each row: ``strong``, ``weak``, ``kind``/``strong``/``weak`` column names (:func:`pair_kind`, under
    ``names``), ``student``, ``family``, ``size_b``, ``mode``, ``comparison`` (``stats.compare`` result or
    None), ``missing`` (which weight has no finished job), ``paper`` (``tables.paper_gap``), ``length_stop``,
    ``scoring`` (:func:`scoring` of both arms' tuned evaluations: judged when the jobs ran ``eval.judge``).
    """
    rows = []
    cells = {(s, st, wk, m) for (s, st, wk, m, w) in groups if w in (0, 1)}
    if planned is not None:
        cells = {c for c in cells if all((*c, w) in planned for w in (1, 0))}
    for student, strong, weak, mode in cells:
        arms = [groups.get((student, strong, weak, mode, w), []) for w in (1, 0)]
        ident = next(j for arm in arms for j in arm).identity
        row = {
            "strong": strong, "weak": weak, "names": pair_kind(ident.get("strong_cot")), "student": student,
            "family": ident.get("student_family"), "size_b": ident.get("student_size_b"), "mode": mode,
            "paper": paper_gap(strong, weak, student), "comparison": None, "missing": None,
            "length_stop": any(flagged_any(arm, "tuned", flagged) for arm in arms),
            "scoring": scoring([j for arm in arms for j in arm], "tuned", f"{student} {strong}/{weak} {mode}", warnings),
        }
        runs = [runs_of(arm, "tuned", warnings) for arm in arms]
        if all(runs):
            s_arm, w_arm = aligned(runs, f"{student} {strong}/{weak} {mode}", warnings)
            row["comparison"] = compare(s_arm, w_arm, **boot)
        else:
            row["missing"] = " and ".join(f"w={w}" for w, r in zip((1, 0), runs, strict=True) if not r)
        rows.append(row)
    return sorted(rows, key=lambda r: (r["strong"], r["weak"], str(r["family"]), r["size_b"] or 0, r["mode"]))


def condition_accuracy(jobs: list[Job], arm: str, label: str, boot: dict[str, Any], warnings: list[str]):
    """``(stats.accuracy(...), distinct runs)`` of a condition's seeds on their shared problems; None if none."""
    runs = runs_of(jobs, arm, warnings)
    return (accuracy(aligned([runs], label, warnings)[0], **boot), len(runs)) if runs else (None, 0)


def _weight_order(weight: Arm) -> tuple:
    """Table 3's order of a cell's arms: w = 1, w = 0, the other weights, then the student-aware arms."""
    return (3, 0.0, weight) if student_aware(weight) else (0,) if weight == 1 else (1,) if weight == 0 else (2, weight)


def table3_rows(
    jobs: list[Job], groups: dict[tuple, list[Job]], boot: dict[str, Any], warnings: list[str]
) -> dict[str, list[dict[str, Any]]]:
    """Table 3 per student: the untuned student, then every (teacher pair, mode, weight) condition.

    Returns:
        ``{student: [row, ...]}``; a row has ``method``, ``teachers``, ``strong``, ``weak``, ``mode``,
        ``weight`` (None for the untuned student; the arm, :func:`mixgap.results.tables.names.arm_of`: a
        student-aware strategy's row has its name), ``seeds`` (distinct runs), ``scoring`` (:func:`scoring`),
        ``cells`` (``stats.accuracy``:
        benchmark -> Interval, plus ``average``) and ``paper`` (``tables.paper_table3`` or None); tuned rows
        also ``realised`` (mean realised strong fraction, ``tables.realised_weight``, or None) and ``w_label``.
        The method is the paper's Table 3 name when the (teacher pair, weight) is one of its methods.
    """
    by_student: dict[str, list[dict[str, Any]]] = defaultdict(list)
    untuned: dict[tuple, list[Job]] = defaultdict(list)
    for job in jobs:
        if "untuned" in job.complete:
            keys = tuple(sorted(e.key for e in job.evals["untuned"].values()))
            untuned[(job.identity["student"], keys)].append(job)
    per_student = defaultdict(list)
    for (student, _), members in untuned.items():
        per_student[student].append(members)
    for student, sets in sorted(per_student.items()):
        for members in sets:
            pairs = sorted({f"{j.identity['strong']} / {j.identity['weak']}" for j in members})
            acc, seeds = condition_accuracy(members, "untuned", f"{student} untuned", boot, warnings)
            by_student[student].append({
                "method": "Untuned", "teachers": ", ".join(pairs) if len(sets) > 1 else "—", "strong": None,
                "weak": None, "mode": "—", "weight": None, "seeds": seeds, "cells": acc, "paper": None,
                "scoring": scoring(members, "untuned", f"{student} untuned", warnings),
            })
    def kind(cond: tuple) -> dict[str, str]:
        return pair_kind(groups[cond][0].identity.get("strong_cot"))

    for cond in sorted(groups, key=lambda c: (c[0], kind(c)["kind"] != "long", *c[1:4], _weight_order(c[4]))):
        student, strong, weak, mode, weight = cond
        names = kind(cond)
        acc, seeds = condition_accuracy(groups[cond], "tuned", f"{student} {strong}/{weak} w={weight}", boot, warnings)
        realised = [realised_weight(j.counts.get("train")) for j in groups[cond]]
        known = [r for r in realised if r is not None]
        fixed = not student_aware(weight)
        by_student[student].append({
            "method": (fixed and paper_method(strong, weak, weight)) or method_name(weight, names),
            "teachers": f"{strong} / {weak}", "strong": strong, "weak": weak,
            "mode": mode, "weight": weight, "seeds": seeds, "cells": acc,
            "paper": paper_table3(student, strong, weak, weight) if fixed else None,
            "realised": sum(known) / len(known) if known else None, "w_label": weight_label(weight, realised),
            "scoring": scoring(groups[cond], "tuned", f"{student} {strong}/{weak} w={weight}", warnings),
        })
    return dict(by_student)


def weight_cells(
    groups: dict[tuple, list[Job]], warnings: list[str]
) -> tuple[dict[tuple, tuple[list[float], list[dict[str, Any]]]], list[tuple]]:
    """Per (student, strong, weak, mode): its finished arms (the weights, then the student-aware strategies,
    :func:`mixgap.results.tables.names.arm_of`) and their tuned runs aligned on the problems all share
    (``(arms, runs)``, for :func:`mixgap.results.recommend.build`), and the cells with one arm only."""
    by_cell: dict[tuple, dict[float, list[Job]]] = defaultdict(dict)
    for (student, strong, weak, mode, weight), members in groups.items():
        by_cell[(student, strong, weak, mode)][weight] = members
    cells, single = {}, []
    for cell, by_weight in by_cell.items():
        weights = sorted((w for w in by_weight if runs_of(by_weight[w], "tuned")), key=arm_order)
        if len(weights) < 2:
            single.append(cell)
            continue
        runs = [runs_of(by_weight[w], "tuned") for w in weights]  # seed collapses are warned about by Table 3
        label = f"{cell[0]} {cell[1]}/{cell[2]} {cell[3]} (weights {', '.join(arm_label(w) for w in weights)})"
        cells[cell] = (weights, aligned(runs, label, warnings))
    return cells, single


def run(cfg: Any, store: Store, tracker_for: Callable[[Path], Any]) -> dict[str, Any]:
    """Stage ``report``: read ``cfg.report.sweep`` (one folder or a list), write the report, print the gap table.

    Args:
        cfg: the composed config; reads ``report.*`` and ``eval.length_warning``.
        store: fallback store for jobs whose ``result.json`` names none.
        tracker_for: ``tracker_for(out_dir) -> Tracker``, the report's tracker run (made once the report is written).

    Returns:
        ``{"out", "markdown", "results_csv", "gaps_csv", "figures": [...], "missing": [...], "warnings": [...]}``
        (paths as strings; ``missing``/``warnings`` as listed in ``report.md``).

    Raises:
        ConfigError: a sweep folder does not exist, holds no job folder, or no job with a readable result.
        ValueError: ``report.sweep`` is empty, or ``report.n_boot``/``report.confidence`` are out of range.
    """
    sweeps = to_container(cfg.report.sweep)
    sweeps = [sweeps] if isinstance(sweeps, str) else [str(s) for s in sweeps or []]
    if not sweeps:
        raise ValueError("report.sweep is empty; give a multirun folder or a list of them")
    boot = {"n_boot": int(cfg.report.n_boot), "seed": int(cfg.report.seed), "confidence": float(cfg.report.confidence)}
    accuracy_ci([1], **boot)  # validates n_boot and confidence before any reading
    jobs = read_sweeps(sweeps, store)
    if all(job.status in ("missing", "unreadable") for job in jobs):  # nothing any table could say
        statuses = Counter(job.status for job in jobs)
        raise ConfigError(f"report.sweep={', '.join(sweeps)}: none of its {len(jobs)} job folder(s) has a readable "
                          f"result.json ({', '.join(f'{n} {s}' for s, n in sorted(statuses.items()))}); run the "
                          "sweep, or point report.sweep at another")
    assign_variants(jobs)
    labels = benchmark_labels(jobs)  # each benchmark's label, from the jobs' result.json
    names = display_names(jobs)  # each model's display_name, from the jobs' config snapshots
    warnings, flagged = length_flags(jobs, float(cfg.eval.length_warning))
    groups: dict[tuple, list[Job]] = defaultdict(list)
    for job in jobs:
        if "tuned" in job.complete:
            groups[job.condition()].append(job)
    gaps = gap_rows(groups, boot, warnings, flagged, {job.condition() for job in jobs})
    table3 = table3_rows(jobs, groups, boot, warnings)
    cells, single = weight_cells(groups, warnings)  # the weights of each student, for the recommendation
    missing = [f"{job.label()}: {'; '.join(job.missing)}" for job in jobs if job.missing]

    out = Path(cfg.report.out or Path(sweeps[0]) / "report")
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Any] = {"out": str(out)}
    paths["results_csv"] = str(write_csv(result_rows(jobs, boot), out / "results.csv"))
    paths["gaps_csv"] = str(write_csv(gap_csv_rows(gaps), out / "gaps.csv"))
    paths["figures"] = [str(p) for p in figures.draw_all(gaps, table3, out, boot["confidence"], names)]
    gap_text = gap_markdown(gaps, labels, names)
    text = report_markdown(sweeps, jobs, gap_text, table3, paths["figures"], missing, warnings, boot, labels,
                                  names)
    learn = learnability_report.build(jobs, gaps, boot, out, names)  # the predict stage beside the measured gap
    rec = recommend.build(cells, single, table3, jobs, boot, out, names)  # which mix weight, with P(best)
    text += "\n" + rec["markdown"] + "".join(f"\n![{Path(f).stem}]({Path(f).name})\n" for f in rec["figures"])
    paths["recommend_csv"], paths["recommend_figures"] = rec["csv"], rec["figures"]
    text += "\n" + learn["markdown"] + "".join(f"\n![{Path(f).stem}]({Path(f).name})\n" for f in learn["figures"])
    paths["learnability_csv"], paths["learnability_figures"] = learn["csv"], learn["figures"]
    paths["markdown"] = str(write_text_atomic(out / "report.md", text))
    tracker = tracker_for(out)
    exit_code = 1
    try:
        track(tracker, gaps, table3, paths["figures"])
        learnability_report.track(tracker, learn)
        recommend_tables.track(tracker, rec)
        exit_code = 0
    finally:
        tracker.finish(exit_code=exit_code)
    warnings = list(dict.fromkeys(warnings))  # the same id mismatch is met by several tables
    print(gap_text)
    planned = sum(job.status == "planned" for job in jobs)  # stage=plan jobs: nothing to score, by design
    print(f"\n{len(warnings)} warnings, {len(missing)} missing or unfinished jobs"
          + (f", {planned} planned only (stage=plan)" if planned else "") + f"; full report: {paths['markdown']}")
    print(status_line(jobs))
    return {**paths, "missing": missing, "warnings": warnings}
