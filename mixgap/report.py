"""Stage ``report``: finished sweep folders -> tidy CSV, the paper's tables with CIs, figures, ``report.md``.

``python launch.py stage=report report.sweep=<folder>`` (or ``report.sweep=[a,b]``). Reads only job folders
(``.hydra/config.yaml``, ``result.json``) and the artifact store their results name; never W&B. Writes into
``report.out`` (default ``<first sweep>/report``):

- ``results.csv``: tidy, one row per job x arm (tuned / untuned) x benchmark, plus each complete arm's average;
- ``gaps.csv``: per teacher pair x student x fine-tune mode x benchmark (and average): P_strong (w=1),
  P_weak (w=0), Δ with paired-bootstrap CIs (:mod:`mixgap.stats`), the verdict and the paper's numbers;
- ``fig_gap_vs_size_*.png`` (Figures 2/3) and ``fig_average_vs_weight_*.png`` (Figure 6), via :mod:`mixgap.figures`;
- ``report.md`` tying it together, with every warning (missing jobs, length stops, problem-id mismatches).

A job counts only when it is ``done`` and every benchmark it names has a finished evaluation; anything else
is listed as missing, never averaged over. Seeds: jobs equal in all but ``seed``/``mix_seed``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mixgap import figures, stats
from mixgap.data import read_jsonl
from mixgap.store import Store

RESULT, CONFIG = "result.json", Path(".hydra") / "config.yaml"
ARMS = ("tuned", "untuned")
NOT_CONDITION = ("stage", "paths.", "tracking.", "report.", "analyze.", "teacher", "hydra.", "mix.weight", "eval.backend",
                 "eval.batch_size", "eval.tensor_parallel_size", "data.missing_pool", "finetune_mode.save_steps",
                 "finetune_mode.logging_steps")


@dataclass(frozen=True)
class Evaluation:
    """One finished evaluation artifact: ``{problem id: correct}`` and its ``scores.json``."""

    key: str
    correct: dict[str, bool]
    scores: dict[str, Any]


@dataclass
class Job:
    """One Hydra job folder: its identity (``pipeline.job_identity``), status and evaluations by arm."""

    folder: Path
    status: str  # done | failed | running | planned | missing (no result.json)
    identity: dict[str, Any]
    expected: list[str] = field(default_factory=list)  # arms (tuned / untuned) the job's stage evaluates
    evals: dict[str, dict[str, Evaluation]] = field(default_factory=dict)  # arm -> benchmark -> evaluation
    complete: set[str] = field(default_factory=set)  # arms with every benchmark evaluated
    missing: list[str] = field(default_factory=list)  # why the job (or an arm) does not count

    counts: dict[str, Any] = field(default_factory=dict)  # result.json counts: pools, mixture, train, decontamination
    fields: dict[str, str] = field(default_factory=dict)  # config snapshot minus seeds (:func:`read_config`)
    variant: str = ""  # the fields that set this job apart from others of its cell (:func:`assign_variants`)

    def mode(self) -> str:
        """The fine-tune mode, plus the variant when jobs of one cell differ in more than seeds."""
        return f"{self.identity.get('finetune_mode')}" + (f" ({self.variant})" if self.variant else "")

    def condition(self) -> tuple:
        """What seeds share: (student, strong, weak, mode with variant, weight)."""
        i = self.identity
        return (i.get("student"), i.get("strong"), i.get("weak"), self.mode(), i.get("weight"))

    def label(self) -> str:
        i = self.identity
        return (f"{'/'.join(self.folder.parts[-3:])} ({i.get('student')}, {i.get('strong')}/{i.get('weak')}, "
                f"w={i.get('weight')}, {self.mode()}, seed={i.get('seed')}, mix_seed={i.get('mix_seed')})")


def find_jobs(sweep: str | Path) -> list[Path]:
    """Job folders (those holding ``.hydra/``) in ``sweep``: itself, or up to three levels below it.

    Raises:
        FileNotFoundError: ``report.sweep`` names no folder.
    """
    root = Path(sweep)
    if not root.is_dir():
        raise FileNotFoundError(f"report.sweep={str(sweep)!r} is not a folder; give a multirun folder")
    found, frontier = [], [root]
    for _ in range(4):
        below = []
        for folder in frontier:
            if (folder / ".hydra").is_dir():
                found.append(folder)
            else:
                below += [p for p in folder.iterdir() if p.is_dir() and p.name[0] not in "._" and p.name not in ("report", "analysis")]
        frontier = below
    return sorted(found, key=lambda p: (str(p.parent), p.name.zfill(12)))


def load_evaluation(store: Store, key: str) -> Evaluation | None:
    """The finished evaluation ``key`` (predictions by id, scores), or None when it is not finished.

    ``length_stop_frac`` is recomputed from ``finish_reason`` when ``scores.json`` lacks it.

    Raises:
        ValueError: naming the file when ``predictions.jsonl`` repeats a problem id.
    """
    folder = store.path(key)
    if not store.is_done(key) or not (folder / "predictions.jsonl").is_file():
        return None
    rows = read_jsonl(folder / "predictions.jsonl")
    correct = {str(r["id"]): bool(r["correct"]) for r in rows}
    if len(correct) != len(rows):
        raise ValueError(f"{folder / 'predictions.jsonl'}: {len(rows) - len(correct)} repeated problem ids")
    scores = json.loads((folder / "scores.json").read_text()) if (folder / "scores.json").is_file() else {}
    if "length_stop_frac" not in scores and rows:
        scores["length_stop_frac"] = sum(r.get("finish_reason") == "length" for r in rows) / len(rows)
    return Evaluation(key, correct, scores)


def read_config(folder: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """The job's ``.hydra/config.yaml``: its identity (``pipeline.job_identity``) and its fields as
    ``{dotted key: JSON value}`` without seeds (``seed``, ``*.seed``) and :data:`NOT_CONDITION` bookkeeping."""
    from omegaconf import OmegaConf  # noqa: PLC0415

    from mixgap.pipeline import job_identity  # noqa: PLC0415

    try:
        cfg = OmegaConf.load(folder / CONFIG)
        identity, tree = job_identity(cfg), OmegaConf.to_container(cfg, resolve=False)
    except Exception as err:  # an unreadable snapshot is reported, not fatal
        return {"error": f"unreadable {CONFIG}: {err}"}, {}
    flat: dict[str, str] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            flat[prefix[:-1]] = json.dumps(node, sort_keys=True, default=str)

    walk(tree, "")
    return identity, {k: v for k, v in flat.items() if k.rsplit(".", 1)[-1] != "seed" and not k.startswith(NOT_CONDITION)}


def assign_variants(jobs: list[Job]) -> None:
    """Set ``job.variant`` to the config fields that differ between jobs of one (student, teacher pair, mode)
    cell, e.g. ``finetune_mode.learning_rate=2e-05``: jobs count as seeds of one condition only when they are
    equal in everything but seeds (and the mix weight, which the tables compare)."""
    cells: dict[tuple, list[Job]] = defaultdict(list)
    for job in jobs:
        i = job.identity
        cells[(i.get("student"), i.get("strong"), i.get("weak"), i.get("finetune_mode"))].append(job)
    for members in cells.values():
        keys = set().union(*(j.fields for j in members))
        varying = sorted(k for k in keys if len({j.fields.get(k) for j in members}) > 1)
        for job in members:
            job.variant = ", ".join(f"{k}={json.loads(job.fields[k]) if k in job.fields else None}" for k in varying)


def expected_arms(stage: str | None, artifacts: dict[str, str]) -> list[str]:
    """The evaluations a job should have: those its artifacts name, tuned for stage=all, untuned for evaluate."""
    arms = [a for a in ARMS if any(role.startswith(f"eval.{a}.") for role in artifacts)]
    for arm, stage_needing in (("tuned", "all"), ("untuned", "evaluate")):
        if stage == stage_needing and arm not in arms:
            arms.append(arm)
    return arms


def read_job(folder: Path, default_store: Store | None, cache: dict[str, Evaluation | None]) -> Job:
    """A job folder with the evaluations its ``result.json`` names (``cache`` shares them across jobs)."""
    path = folder / RESULT
    result = json.loads(path.read_text()) if path.is_file() else {}
    from_config, fields = read_config(folder)
    identity = result.get("job") or from_config
    job = Job(folder, result.get("status", "missing"), identity, fields=fields, counts=result.get("counts", {}),
              expected=expected_arms(identity.get("stage"), result.get("artifacts", {})))
    if job.status != "done":
        if job.status != "planned":
            job.missing.append(f"status {job.status!r}" if result else f"no {RESULT} (never ran, or still queued)")
        return job
    store = Store(result["store"]) if result.get("store") else default_store
    if store is None:
        job.missing.append(f"{RESULT} names no store")
        return job
    benchmarks = identity.get("benchmarks", [])
    for arm in job.expected:
        job.evals[arm] = {}
        for bench in benchmarks:
            key = result.get("artifacts", {}).get(f"eval.{arm}.{bench}")
            if key is not None and key not in cache:
                cache[key] = load_evaluation(store, key)
            if key is None or cache[key] is None:
                job.missing.append(f"{arm} {bench}: evaluation {key or '(no key)'} not finished in {store.root}")
            else:
                job.evals[arm][bench] = cache[key]
        if benchmarks and len(job.evals[arm]) == len(benchmarks):
            job.complete.add(arm)
    return job


def runs_of(jobs: list[Job], arm: str) -> list[dict[str, dict[str, bool]]]:
    """One ``{benchmark: {id: correct}}`` per distinct run (jobs with identical evaluation keys count once)."""
    seen, runs = set(), []
    for job in jobs:
        if arm in job.complete:
            keys = tuple(sorted(e.key for e in job.evals[arm].values()))
            if keys not in seen:
                seen.add(keys)
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
        if dropped := stats.dropped_ids(preds):
            warnings.append(f"{label} {bench}: {dropped} problem ids not in every run; compared on the intersection")
        _, matrix = stats.align(preds)
        start = 0
        for a, arm in enumerate(arms):
            out[a][bench] = matrix[start : start + len(arm)]
            start += len(arm)
    return out


def gap_rows(
    groups: dict[tuple, list[Job]], boot: dict[str, Any], warnings: list[str], flagged: set[str]
) -> list[dict[str, Any]]:
    """Table 1/2 rows: per teacher pair x student x mode, the w=1 vs w=0 comparison (or what is missing).

    Each row: ``strong``, ``weak``, ``kind``/``strong``/``weak`` column names (:func:`pair_kind`, under
    ``names``), ``student``, ``family``, ``size_b``, ``mode``, ``comparison`` (``stats.compare`` result or
    None), ``missing`` (which weight has no finished job), ``paper`` (``figures.paper_gap``), ``length_stop``.
    """
    rows = []
    cells = {(s, st, wk, m) for (s, st, wk, m, w) in groups if w in (0, 1)}
    for student, strong, weak, mode in cells:
        arms = [groups.get((student, strong, weak, mode, w), []) for w in (1, 0)]
        ident = next(j for arm in arms for j in arm).identity
        row = {
            "strong": strong, "weak": weak, "names": figures.pair_kind(ident.get("strong_cot")), "student": student,
            "family": ident.get("student_family"), "size_b": ident.get("student_size_b"), "mode": mode,
            "paper": figures.paper_gap(strong, weak, student), "comparison": None, "missing": None,
            "length_stop": any(figures.flagged_any(arm, "tuned", flagged) for arm in arms),
        }
        runs = [runs_of(arm, "tuned") for arm in arms]
        if all(runs):
            s_arm, w_arm = aligned(runs, f"{student} {strong}/{weak} {mode}", warnings)
            row["comparison"] = stats.compare(s_arm, w_arm, **boot)
        else:
            row["missing"] = " and ".join(f"w={w}" for w, r in zip((1, 0), runs, strict=True) if not r)
        rows.append(row)
    return sorted(rows, key=lambda r: (r["strong"], r["weak"], str(r["family"]), r["size_b"] or 0, r["mode"]))


def condition_accuracy(jobs: list[Job], arm: str, label: str, boot: dict[str, Any], warnings: list[str]):
    """``(stats.accuracy(...), distinct runs)`` of a condition's seeds on their shared problems; None if none."""
    runs = runs_of(jobs, arm)
    return (stats.accuracy(aligned([runs], label, warnings)[0], **boot), len(runs)) if runs else (None, 0)


def _weight_order(weight: float) -> tuple:
    return (0,) if weight == 1 else (1,) if weight == 0 else (2, weight)


def table3_rows(
    jobs: list[Job], groups: dict[tuple, list[Job]], boot: dict[str, Any], warnings: list[str]
) -> dict[str, list[dict[str, Any]]]:
    """Table 3 per student: the untuned student, then every (teacher pair, mode, weight) condition.

    Returns:
        ``{student: [row, ...]}``; a row has ``method``, ``teachers``, ``strong``, ``weak``, ``mode``,
        ``weight`` (None for the untuned student), ``seeds`` (distinct runs), ``cells`` (``stats.accuracy``:
        benchmark -> Interval, plus ``average``) and ``paper`` (``figures.paper_table3`` or None).
    """
    tables: dict[str, list[dict[str, Any]]] = defaultdict(list)
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
            tables[student].append({
                "method": "Untuned", "teachers": ", ".join(pairs) if len(sets) > 1 else "—", "strong": None,
                "weak": None, "mode": "—", "weight": None, "seeds": seeds, "cells": acc, "paper": None,
            })
    def kind(cond: tuple) -> dict[str, str]:
        return figures.pair_kind(groups[cond][0].identity.get("strong_cot"))

    for cond in sorted(groups, key=lambda c: (c[0], kind(c)["kind"] != "long", *c[1:4], _weight_order(c[4]))):
        student, strong, weak, mode, weight = cond
        names = kind(cond)
        acc, seeds = condition_accuracy(groups[cond], "tuned", f"{student} {strong}/{weak} w={weight}", boot, warnings)
        tables[student].append({
            "method": figures.method_name(weight, names), "teachers": f"{strong} / {weak}", "strong": strong, "weak": weak,
            "mode": mode, "weight": weight, "seeds": seeds, "cells": acc,
            "paper": figures.paper_table3(student, strong, weak, weight),
        })
    return dict(tables)


def run(cfg: Any, store: Store) -> dict[str, Any]:
    """Stage ``report``: read ``cfg.report.sweep`` (one folder or a list), write the report, print the gap table.

    Args:
        cfg: the composed config; reads ``report.*``, ``eval.length_warning`` and ``tracking.*``.
        store: fallback store for jobs whose ``result.json`` names none.

    Returns:
        ``{"out", "markdown", "results_csv", "gaps_csv", "figures": [...], "missing": [...], "warnings": [...]}``
        (paths as strings; ``missing``/``warnings`` as listed in ``report.md``).

    Raises:
        FileNotFoundError: a sweep folder does not exist.
        ValueError: ``report.sweep`` is empty, or ``report.n_boot``/``report.confidence`` are out of range.
    """
    from mixgap.config import to_container  # noqa: PLC0415
    from mixgap.tracking import make_tracker  # noqa: PLC0415

    sweeps = to_container(cfg.report.sweep)
    sweeps = [sweeps] if isinstance(sweeps, str) else [str(s) for s in sweeps or []]
    if not sweeps:
        raise ValueError("report.sweep is empty; give a multirun folder or a list of them")
    boot = {"n_boot": int(cfg.report.n_boot), "seed": int(cfg.report.seed), "confidence": float(cfg.report.confidence)}
    stats.accuracy_ci([1], **boot)  # validates n_boot and confidence before any reading
    cache: dict[str, Evaluation | None] = {}
    jobs = [read_job(folder, store, cache) for sweep in sweeps for folder in find_jobs(sweep)]
    assign_variants(jobs)
    warnings, flagged = figures.length_flags(jobs, float(cfg.eval.length_warning))
    groups: dict[tuple, list[Job]] = defaultdict(list)
    for job in jobs:
        if "tuned" in job.complete:
            groups[job.condition()].append(job)
    gaps = gap_rows(groups, boot, warnings, flagged)
    table3 = table3_rows(jobs, groups, boot, warnings)
    missing = [f"{job.label()}: {'; '.join(job.missing)}" for job in jobs if job.missing]

    out = Path(cfg.report.out or Path(sweeps[0]) / "report")
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Any] = {"out": str(out)}
    paths["results_csv"] = str(figures.write_csv(figures.result_rows(jobs, boot), out / "results.csv"))
    paths["gaps_csv"] = str(figures.write_csv(figures.gap_csv_rows(gaps), out / "gaps.csv"))
    paths["figures"] = [str(p) for p in figures.draw_all(gaps, table3, out, boot["confidence"])]
    gap_text = figures.gap_markdown(gaps)
    text = figures.report_markdown(sweeps, jobs, gap_text, table3, paths["figures"], missing, warnings, boot)
    paths["markdown"] = str(figures.write_text_atomic(out / "report.md", text))
    tracker = make_tracker(cfg, group=str(sweeps[0]), job_type="report", name="report", run_dir=out)
    exit_code = 1
    try:
        figures.track(tracker, gaps, table3, paths["figures"])
        exit_code = 0
    finally:
        tracker.finish(exit_code=exit_code)
    warnings = list(dict.fromkeys(warnings))  # the same id mismatch is met by several tables
    print(gap_text)
    print(f"\n{len(warnings)} warnings, {len(missing)} missing or unfinished jobs; full report: {paths['markdown']}")
    return {**paths, "missing": missing, "warnings": warnings}
