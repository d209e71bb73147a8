"""The report's tables: CSV and Markdown (``report.md``) with the published numbers beside ours, the loud
warnings, and the W&B summary tables. ``mixgap.results.report`` computes, this module renders. Published numbers:
Li et al. (2025), Tables 1-3, shipped as ``mixgap/published/li2025.json``. Every file is written to a
temporary name in its folder and renamed into place.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import tempfile
from collections import defaultdict
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from mixgap.stats import AVERAGE, Interval, accuracy, verdict

PUBLISHED = Path(__file__).resolve().parents[1] / "published" / "li2025.json"
LENGTH_BUG = "a student that never learned to stop is a training bug, not a result"
LENGTH_UNTUNED = "the untuned model needs more than eval.max_new_tokens: its accuracy is a lower bound"
BENCH_LABELS = {"math500": "MATH-500", "math": "MATH 5k", "gsm8k": "GSM8K", "aime24": "AIME24", "amc23": "AMC23",
                "olympiadbench": "OlympiadBench", AVERAGE: "Average"}


@lru_cache(maxsize=1)
def published() -> dict[str, Any]:
    """The paper's Tables 1–3 (package data ``mixgap/published/li2025.json``)."""
    return json.loads(PUBLISHED.read_text())


def paper_gap(strong: str, weak: str, student: str) -> dict[str, float] | None:
    """Published P_strong, P_weak, Δ for this teacher pair and student, or None when the paper has no such cell.

    Δ is the paper's printed Δ (Tables 1–2 of arXiv:2502.12143v1), not P_strong − P_weak of the rounded
    accuracies: the two differ by 0.1 in three cells (Table 1 Qwen2.5-1.5B −7.1, Llama-3.3-70B 3.8; Table 2
    Llama-3.2-1B −1.9).
    """
    for table in published()["gap_tables"].values():
        if (table["strong"], table["weak"]) == (strong, weak) and student in table["rows"]:
            row = table["rows"][student]
            return {"strong": row["strong"], "weak": row["weak"], "delta": row["delta"]}  # the printed Δ
    return None


def paper_table3(student: str, strong: str, weak: str, weight: float) -> dict[str, float] | None:
    """Published Table 3 cells ``{benchmark: accuracy, "average": ...}`` for this configuration, or None."""
    table = published()["table3"]
    for method, where in table["methods"].items():
        if (where["strong"], where["weak"], where["weight"]) == (strong, weak, weight):
            values = table["rows"].get(student, {}).get(method)
            return dict(zip(table["benchmarks"], values, strict=True)) if values else None
    return None


def paper_method(strong: str, weak: str, weight: float) -> str | None:
    """The paper's Table 3 name of a (teacher pair, weight) method, e.g. ``DeepSeek-R1-32B (Long CoT)`` for
    r1_qwen32b / qwen32b at w = 1; None when Table 3 has no such method."""
    for method, where in published()["table3"]["methods"].items():
        if (where["strong"], where["weak"], where["weight"]) == (strong, weak, weight):
            return method
    return None


def math_variant(benchmarks: Sequence[str]) -> str:
    """Which MATH test a run used, for labels beside published numbers: ``MATH-500``, ``MATH 5k``, both or none.

    The paper's MATH column is read as the full 5,000-problem test (``published()["math_variant_note"]``).
    """
    names = [BENCH_LABELS[b] for b in ("math500", "math") if b in benchmarks]
    return " + ".join(names) or "no MATH"


def paper_math_label() -> str:
    """The label of the paper's MATH column (``MATH 5k``; see ``published()["math_variant_note"]``)."""
    return BENCH_LABELS[published()["math_variant"]]


def pair_kind(strong_cot: str | None) -> dict[str, str]:
    """Column names for a teacher pair: long vs short CoT (Table 1), else large vs small teacher (Table 2)."""
    if strong_cot == "long":
        return {"kind": "long", "strong": "Long", "weak": "Short"}
    return {"kind": "large", "strong": "Large", "weak": "Small"}


def method_name(weight: float, names: dict[str, str]) -> str:
    """The paper's row name for a mix weight: Long/Short (w = 1/0), Mix-Long (w = 0.2), else Mix-Long (w=...)."""
    if weight == 1:
        return names["strong"]
    if weight == 0:
        return names["weak"]
    mix = f"Mix-{names['strong']}"
    return mix if weight == 0.2 else f"{mix} (w={weight:g})"


def length_flags(jobs: Sequence[Any], threshold: float) -> tuple[list[str], set[str]]:
    """Loud warnings for evaluations where more than ``threshold`` of the problems stopped by length.

    One warning per evaluation artifact: the untuned student's evaluation, shared by every job of a sweep,
    is reported once.

    Returns:
        ``(warnings, flagged evaluation keys)``.
    """
    warnings, flagged = [], set()
    for job in jobs:
        for arm, evals in job.evals.items():
            for bench, ev in evals.items():
                frac = float(ev.scores.get("length_stop_frac") or 0.0)
                if frac > threshold and ev.key not in flagged:
                    flagged.add(ev.key)
                    where = f"untuned {job.identity.get('student')}" if arm == "untuned" else job.label()
                    warnings.append(
                        f"LENGTH STOP: {where} {bench}: {100 * frac:.0f}% of the answers stopped by "
                        f"length (> {100 * threshold:.0f}%); {LENGTH_UNTUNED if arm == 'untuned' else LENGTH_BUG}"
                    )
    return warnings, flagged


def flagged_any(jobs: Sequence[Any], arm: str, flagged: set[str]) -> bool:
    """Whether any of ``jobs`` has an ``arm`` evaluation among the ``flagged`` keys (:func:`length_flags`)."""
    return any(e.key in flagged for j in jobs for e in j.evals.get(arm, {}).values())


def atomic_write(path: Path, write: Callable[[str], Any]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place (``os.replace``)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; reports are for the whole team
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_csv(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """A CSV with the union of the rows' keys as columns (first-seen order); missing cells are empty."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return write_text_atomic(path, buffer.getvalue())


def result_rows(jobs: Sequence[Any], boot: dict[str, Any]) -> list[dict[str, Any]]:
    """The tidy table: one row per job x arm x benchmark (missing ones too), plus each complete arm's average."""
    rows, ci_cache = [], {}
    for job in jobs:
        base = {"job": str(job.folder), "status": job.status,
                **{k: v for k, v in job.identity.items() if k != "benchmarks"}, "variant": job.variant,
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
                rows.append({**row, "eval_status": "done", "eval_key": ev.key, "n": len(ev.correct),
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
                "student_family": gap["family"], "student_size_b": gap["size_b"], "finetune_mode": gap["mode"]}
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


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def by_pair(rows: Sequence[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    pairs: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        pairs[(row["strong"], row["weak"])].append(row)
    return pairs


def gap_markdown(gaps: Sequence[dict[str, Any]]) -> str:
    """The Table 1/2 style gap tables (one per teacher pair) as Markdown; also what stage=report prints."""
    if not gaps:
        return "No teacher pair has finished jobs at both w=1 and w=0: no gap to report."
    parts = []
    for (strong, weak), rows in by_pair(gaps).items():
        n = rows[0]["names"]
        s, w, d = f"P_{n['strong']}", f"P_{n['weak']}", f"Δ_{n['strong']}"
        paper = any(r["paper"] for r in rows)
        header = ["Student", "Size (B)", "Mode", "Seeds", f"{s} (w=1)", f"{w} (w=0)", d, "Better?", "Detectable |Δ|"]
        header += [f"Paper {s}", f"Paper {w}", f"Paper {d}", "MATH (ours / paper)"] if paper else []
        body = []
        for r in rows:
            comp = r["comparison"].get(AVERAGE) if r["comparison"] else None
            cells = ([with_n(comp.strong), with_n(comp.weak), comp.delta.fmt(), comp.verdict, f"{comp.detectable:.1f}"]
                     if comp else [f"missing: no finished {r['missing']} job", "", "", "", ""])
            if r["length_stop"]:
                cells[3] += " ⚠ length stops"
            seeds = f"{comp.seeds[0]}/{comp.seeds[1]}" if comp else ""
            row = [r["student"], f"{r['size_b']:g}", r["mode"], seeds, *cells]
            if paper:
                p = r["paper"]
                ours = math_variant(list(r["comparison"])) if r["comparison"] else ""
                row += ([f"{p['strong']:.1f}", f"{p['weak']:.1f}", f"{p['delta']:+.1f}",
                         f"{ours} / {paper_math_label()}"] if p else ["", "", "", ""])
            body.append(row)
        parts.append(f"### {d} = {s} − {w}: {strong} (strong) vs {weak} (weak)\n\n" + _table(header, body))
    return "\n\n".join(parts)


def table3_markdown(table3: dict[str, list[dict[str, Any]]]) -> str:
    """Per student, accuracy per benchmark and on average for each method (Table 3 style); paper rows beside."""
    parts = []
    for student, rows in table3.items():
        benches = list(dict.fromkeys(b for r in rows for b in r["cells"] if b != AVERAGE)) + [AVERAGE]
        header = ["Method", "Teachers", "Mode", "w (realised)", "Seeds", *(BENCH_LABELS.get(b, b) for b in benches)]
        body = []
        for r in rows:
            body.append([r["method"], r["teachers"], r["mode"], r.get("w_label", "—"), r["seeds"],
                         *(with_n(r["cells"][b]) if b in r["cells"] else "—" for b in benches)])
            if r["paper"]:
                paper = {**r["paper"], **{b: r["paper"]["math"] for b in ("math500",) if "math" in r["paper"]}}
                body.append([f"{r['method']} (paper; its MATH is {paper_math_label()})", r["teachers"], "", "", "",
                             *(f"{paper[b]:.1f}" if b in paper else "—" for b in benches)])
        parts.append(f"### {student}\n\n" + _table(header, body))
    return "\n\n".join(parts) or "No finished evaluation."


def data_markdown(jobs: Sequence[Any]) -> str:
    """What each job trained on: the teacher pools after rejection sampling, and per job the mixture and
    the examples dropped over ``max_seq_len`` per source (the drops are part of the result)."""
    pools: dict[str, dict[str, Any]] = {}
    rows = []
    for job in jobs:
        for role in ("strong", "weak"):
            pool = job.counts.get(f"pool.{role}")
            if pool:
                pools.setdefault(pool["teacher"], pool)
        train, mixture = job.counts.get("train"), job.counts.get("mixture", {})
        if train:
            i = job.identity
            kept, dropped, cut = train.get("kept", {}), train.get("dropped", {}), train.get("truncated", {})
            loss = train.get("final_loss")
            rows.append([i.get("student"), f"{i.get('strong')} / {i.get('weak')}",
                         weight_label(i.get("weight"), [realised_weight(train)]),
                         f"{mixture.get('N', '—')} ({mixture.get('strong', '—')} / {mixture.get('weak', '—')})",
                         f"{dropped.get('strong', 0)} / {dropped.get('weak', 0)}",
                         f"{cut.get('strong', 0)} / {cut.get('weak', 0)}",
                         f"{kept.get('strong', 0)} / {kept.get('weak', 0)}", train.get("steps"),
                         "—" if loss is None else f"{loss:.3f}"])
    pool_rows = [[t, p.get("cot"), p.get("tried"), p.get("kept"), p.get("keep_rate"),
                  ", ".join(f"{k} {v}" for k, v in sorted(p.get("dropped", {}).items())) or "—"]
                 for t, p in pools.items()]
    parts = []
    if pool_rows:
        parts.append("Teacher pools (rejection sampling: kept = graded correct and not truncated):\n\n" + _table(
            ["Teacher", "CoT", "Problems", "Kept", "Keep rate", "Dropped (reason n)"], pool_rows))
    if rows:
        parts.append("Mixtures and SFT examples (strong / weak); over-long examples are dropped, never silently "
                     "cut; w (realised) = nominal mix weight (strong fraction of the examples trained on):\n\n"
                     + _table(["Student", "Teachers", "w (realised)", "Mixture N", "Dropped > max_seq_len",
                                           "Truncated", "After drops", "Steps", "Final loss"], rows))
    return "\n\n".join(parts)


def report_markdown(sweeps, jobs, gap_text, table3, figures, missing, warnings, boot) -> str:
    """``report.md``: summary line, warnings (loud), missing jobs, gap tables, Table 3, figures, method."""
    counts = defaultdict(int)
    for job in jobs:
        counts[job.status] += 1
    level = f"{100 * boot['confidence']:g}"
    lines = ["# mixgap report", "", "Sweeps: " + ", ".join(f"`{s}`" for s in sweeps),
             f"Jobs: {len(jobs)} (" + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + ")", ""]
    if warnings:  # one line here; the table after the results (they would push the results down the page)
        lines += [f"> **{len(dict.fromkeys(warnings))} warnings**: see [Warnings](#warnings) after the results.", ""]
    if missing:
        lines += ["## Missing or unfinished jobs (left out of every table)", ""] + [f"- {m}" for m in missing] + [""]
    lines += ["## Gap between strong and weak teacher data (Tables 1–2 style, average over benchmarks)", "",
              f"Values: accuracy in percent, [{level}% CI]. Better? = Strong / Weak when the Δ interval excludes 0, "
              "else n.s. Paper columns: Li et al. (2025), same student and teacher pair, averaged over the paper's five "
              "benchmarks; shown beside ours, never mixed in. At w = 1 and w = 0 the realised strong fraction is exactly 1 "
              "and 0 (over-length drops change N, not the fraction); see Training data.", "", gap_text, "",
              "## Per benchmark (Table 3 style)", "", "Rows marked (paper): Li et al. (2025) Table 3 for the same "
              "student, teacher pair and weight; their Average is over the paper's five benchmarks.", "",
              table3_markdown(table3), ""]
    judged = judge_markdown(jobs)
    if judged:
        lines += ["## LLM re-judge (the paper's protocol)", "", judged, ""]
    training = data_markdown(jobs)
    if training:
        lines += ["## Training data", "", training, ""]
    settings = settings_markdown(jobs)
    if settings:
        lines += ["## Settings", "", settings, ""]
    if figures:
        lines += ["## Figures", ""] + [f"![{Path(f).stem}]({Path(f).name})" for f in figures] + [""]
    if warnings:
        lines += ["## Warnings", "", warnings_markdown(warnings), ""]
    lines += ["## Method", "",
              "n = problems behind each accuracy (summed over benchmarks for the average). One run on one benchmark: "
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
              "over samples and problems.", "", SEEDS_NOTE + " " + seeds_varied(jobs), ""]
    return "\n".join(lines)


def track(tracker: Any, gaps: Sequence[dict[str, Any]], table3: dict[str, list[dict[str, Any]]], figures: Sequence[str]) -> None:
    """The W&B summary run: gap rows and Table 3 rows as tables, figures as images, average Δs as summary."""
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


def realised_weight(train_counts: dict[str, Any] | None) -> float | None:
    """The strong fraction a job really trained on: kept strong / (kept strong + kept weak) examples.

    ``train_counts`` is the training stage's counts (``result.json`` ``counts.train``, from
    ``mixgap.stages.train.labels.apply_overlength``). Over-length drops fall mostly on the strong (long CoT) side, so
    at w = 0.2 this is below 0.2 under ``finetune_mode.overlength=drop``; ``drop_pair`` makes it exact (up to
    the rounding of ``mixgap.stages.mix.strong_count``). None when the counts are absent (the job did not train).
    """
    kept = (train_counts or {}).get("kept") or {}
    total = kept.get("strong", 0) + kept.get("weak", 0)
    return kept.get("strong", 0) / total if total else None


def weight_label(weight: float | None, realised: Sequence[float | None]) -> str:
    """``"0.2 (0.171)"``: the nominal mix weight and, in brackets, the realised strong fraction of its jobs
    (a range ``0.168–0.175`` when seeds differ; ``—`` when no job has training counts)."""
    if weight is None:
        return "—"
    values = sorted({round(r, 3) for r in realised if r is not None})
    if not values:
        return f"{weight:g} (—)"
    inner = f"{values[0]:.3f}" if len(values) == 1 else f"{values[0]:.3f}–{values[-1]:.3f}"
    return f"{weight:g} ({inner})"


SEEDS_NOTE = ("What the seeds vary: `finetune_mode.seed` sets the training data order (and LoRA's initialisation); "
              "`mix.seed` sets which problems take the strong response, so it varies the data only at 0 < w < 1 (at "
              "w = 0 or 1 every problem takes the one source); the global `seed` seeds only the evaluation backend, "
              "and decoding is greedy. Jobs of one condition equal in `finetune_mode.seed` (and, at 0 < w < 1, in "
              "`mix.seed`) count as one run and never narrow an interval (`Job.independent_seeds`).")

#: finetune_mode fields of the settings table, in order (header, dotted key)
SETTINGS = (("Mode", "finetune_mode.mode"), ("LR", "finetune_mode.learning_rate"), ("Epochs", "finetune_mode.epochs"),
            ("Max steps", "finetune_mode.max_steps"), ("Schedule", "finetune_mode.lr_scheduler"),
            ("Warmup", "finetune_mode.warmup_ratio"), ("Global batch", "finetune_mode.global_batch_size"),
            ("Batch unit", "finetune_mode.batch_unit"), ("Max len", "finetune_mode.max_seq_len"),
            ("Over-length", "finetune_mode.overlength"), ("LoRA r / alpha / dropout", None),
            ("LoRA targets", "finetune_mode.lora.target_modules"), ("Eval MATH", None),
            ("Source", "finetune_mode.settings_source"))


def seeds_varied(jobs: Sequence[Any]) -> str:
    """One sentence: which seed fields differ between counted jobs of the same condition in these sweeps."""
    by_cond: dict[tuple, list[Any]] = defaultdict(list)
    for job in jobs:
        if "tuned" in job.complete and job.seeds:
            by_cond[job.condition()].append(job)
    varied: dict[str, int] = defaultdict(int)
    for (*_, weight), members in by_cond.items():
        for key in ("finetune_mode.seed", "mix.seed", "seed"):
            if len({j.seeds.get(key) for j in members}) > 1:
                varied[key if key != "mix.seed" or weight not in (0, 1) else "mix.seed (at w = 0 or 1: no effect)"] += 1
    if not varied:
        return "In these sweeps no condition has jobs that differ in a seed."
    return "In these sweeps: " + ", ".join(f"`{k}` varies in {n} condition(s)" for k, n in varied.items()) + "."


def settings_markdown(jobs: Sequence[Any]) -> str:
    """The fine-tuning settings the jobs used (one row per distinct setting, with its students) and where the
    values come from (``finetune_mode.settings_source``: the paper's Table 5, LLaMA-Factory's LoRA recipe where
    the paper's are unknown, or the released Mix config), plus the MATH variant evaluated."""
    rows: dict[tuple, set[str]] = defaultdict(set)
    for job in jobs:
        f = job.fields
        if "finetune_mode.mode" not in f:
            continue
        cells = []
        for _, key in SETTINGS:
            if key is None:
                continue
            value = json.loads(f[key]) if key in f else "—"
            if key == "finetune_mode.lora.target_modules" and json.loads(f["finetune_mode.mode"]) != "lora":
                value = "—"
            cells.append(", ".join(value) if isinstance(value, list) else value if value != "" else "—")
        lora = "—"
        if json.loads(f["finetune_mode.mode"]) == "lora":
            lora = " / ".join(str(json.loads(f.get(f"finetune_mode.lora.{k}", "null"))) for k in ("r", "alpha", "dropout"))
        cells.insert(10, lora)
        cells.insert(12, math_variant(job.identity.get("benchmarks", [])))
        rows[tuple(str(c) for c in cells)].add(str(job.identity.get("student")))
    if not rows:
        return ""
    header = ["Students", *(h for h, _ in SETTINGS)]
    body = [[", ".join(sorted(students)), *cells] for cells, students in rows.items()]
    return ("Fine-tuning settings as run (the paper's LoRA values, its Table 6, are unknown: the LoRA row's "
            "source says whose they are). Paper comparisons use the paper's MATH column, read as "
            f"{paper_math_label()}.\n\n" + _table(header, body))

def with_n(value: Interval) -> str:
    """``"12.5 [2.2, 47.1] n=8"``: an accuracy with its interval and the problems behind it."""
    return value.fmt() + (f" n={value.n}" if value.n is not None else "")


def status_line(jobs: Sequence[Any]) -> str:
    """``"5 jobs: 3 done (counted), not counted: 1 interrupted, 1 running"``: every status apart from done
    (``running``, ``interrupted``, ``failed``, ``planned``, ``missing``); only done jobs enter a table."""
    counts: dict[str, int] = defaultdict(int)
    for job in jobs:
        counts[job.status] += 1
    others = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()) if s != "done")
    return f"{len(jobs)} jobs: {counts.get('done', 0)} done (counted)" + (f", not counted: {others}" if others else "")


_LENGTH = re.compile(r"^LENGTH STOP: (?P<where>.+) (?P<bench>\S+): (?P<pct>\d+)% of the answers stopped by length "
                     r"\(> (?P<limit>\d+)%\); (?P<why>.+)$")


def warnings_markdown(warnings: Sequence[str]) -> str:
    """All warnings as one table: length stops one row each (evaluation, benchmark, share), their shared
    explanation said once below the table; any other warning a row of its own. Repeats are dropped."""
    rows, reasons = [], {}
    for text in dict.fromkeys(warnings):
        match = _LENGTH.match(text)
        if match:
            reasons.setdefault(match["why"], f"{match['limit']}%")
            rows.append(["length stop", match["where"], BENCH_LABELS.get(match["bench"], match["bench"]), f"{match['pct']}%"])
        else:
            rows.append(["other", text, "", ""])
    notes = [f"Length stop (more than {limit} of the answers stopped at eval.max_new_tokens): {why}."
             for why, limit in reasons.items()]
    return _table(["Kind", "Where", "Benchmark", "Stopped by length"], rows) + ("\n\n" + "\n".join(notes) if notes else "")



def judge_markdown(jobs: Sequence[Any]) -> str:
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
                rows.append([where, BENCH_LABELS.get(bench, bench), j.get("judge"),
                             f"{j['rule_accuracy']:.1f} [{j['rule_ci_low']:.1f}, {j['rule_ci_high']:.1f}]",
                             f"{j['judge_accuracy']:.1f} [{j['judge_ci_low']:.1f}, {j['judge_ci_high']:.1f}]",
                             j["sent"], j["flips"], j["unparsed"]])
    if not rows:
        return ""
    return ("The tables above use the rule-based grader (mixgap.grading). The paper's published accuracies are "
            "the LLM-judged ones (every rule miss with an extracted answer re-graded by Qwen2.5-32B-Instruct): "
            "the **judged** column is the one that sits beside the published numbers. Unparsed = replies with "
            "neither True nor False (counted as not correct).\n\n" + _table(
                ["Evaluation", "Benchmark", "Judge", "Rule pass@1", "Judged pass@1", "Sent", "Flips", "Unparsed"], rows))
