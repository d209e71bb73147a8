"""Grading and scoring one evaluation's completions (paper Section 3.1): ``predictions.jsonl`` rows graded by
:func:`mixgap.grading.grade` under every scoring (:data:`mixgap.grading.SCORINGS`: our policy, the paper's extraction
under our rule, the paper's rule), and ``scores.json`` (pass@1 with its Wilson or bootstrap interval, pass@k, maj@n
over equivalent answers, the length-stop fraction, every scoring's accuracy).
:mod:`mixgap.stages.completions` generates the completions; :mod:`mixgap.stages.evaluate` writes each artifact of
verdicts through :func:`write_eval`."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from mixgap.core.files import write_json_atomic, write_jsonl_atomic
from mixgap.grading import SCORINGS, grade, scoring_name
from mixgap.grading.equivalence import is_equivalent
from mixgap.stages.data import DataError, Problem, fill_prompt
from mixgap.stats.bootstrap import mean_ci
from mixgap.stats.sampled import graded_same, majority_correct, pass_at_k_scores, per_problem_mean

log = logging.getLogger(__name__)
PREDICTIONS, SCORES = "predictions.jsonl", "scores.json"


def score(rows: Sequence[dict[str, Any]], benchmark: str, confidence: float = 0.95) -> dict[str, Any]:
    """Scores of one benchmark's predictions: one row per sample (``sample`` 0..n-1; rows without it are one
    greedy sample each).

    Args:
        rows: prediction rows with ``id``, ``correct`` (bool), ``extracted``, ``finish_reason``, ``reason``.
        benchmark: its name (recorded).
        confidence: level of the interval (``mixgap.stats.bootstrap.mean_ci``: Wilson for one sample per problem, else
            the percentile bootstrap over problems, each carrying its mean correctness over samples).

    Returns:
        ``benchmark``, ``n`` (problems), ``n_samples`` (per problem), ``correct`` (correct samples),
        ``accuracy`` = ``pass@1`` (percent, 0-100: mean over samples and problems), ``ci_low``, ``ci_high``,
        ``se`` (standard error, points: ``mean_ci``), ``pass@k`` for k = 1, 2, 4, ... <= n_samples (unbiased,
        Chen et al. 2021), ``maj@<n_samples>`` (majority vote over classes of equivalent extracted answers,
        ``mixgap.stats.sampled.graded_same`` with ``mixgap.grading.equivalence.is_equivalent`` (1 s per pair); percent; with one
        sample it equals pass@1), ``length_stop_frac`` (0-1, over samples) and ``reasons`` (grader reasons).

    Raises:
        DataError: no rows. ValueError: problems with different numbers of samples.
    """
    if not rows:
        raise DataError(f"{benchmark}: no problems to evaluate (all removed by decontamination or limit)")
    by_id: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_id.setdefault(str(r["id"]), []).append(r)
    groups = list(by_id.values())
    counts = [(len(g), sum(bool(r["correct"]) for r in g)) for g in groups]
    n_samples = counts[0][0]
    passes = pass_at_k_scores(counts)
    low, high, se = mean_ci([c / k for k, c in counts], confidence=confidence)
    votes = [([r.get("extracted") for r in g], [bool(r["correct"]) for r in g]) for g in groups]
    maj = sum(majority_correct(a, c, graded_same(a, c, lambda x, y: is_equivalent(x, y, timeout_s=1.0))) for a, c in votes)
    return {
        "benchmark": benchmark,
        "n": len(groups),
        "n_samples": n_samples,
        "correct": sum(c for _, c in counts),
        "accuracy": passes["pass@1"],
        "ci_low": low,
        "ci_high": high,
        "se": se,
        **passes,
        f"maj@{n_samples}": 100.0 * maj / len(groups),
        "length_stop_frac": sum(r["finish_reason"] == "length" for r in rows) / len(rows),
        "reasons": dict(Counter(r["reason"] for r in rows)),
    }


def grade_rows(bench: DictConfig, problems: Sequence[Problem], completions: Sequence[Sequence[Any]],
               extract: str = "policy", rule: str = "policy") -> list[dict[str, Any]]:
    """``predictions.jsonl`` rows: one per (problem, sample), graded by ``mixgap.grading.grade`` with the
    benchmark's extraction style under every scoring (:data:`mixgap.grading.SCORINGS`: ``policy``, ``boxed``,
    ``paper``).

    ``correct``, ``extracted``, ``reason``: the verdict under the scoring in force (``eval.extract`` and
    ``eval.rule``), the one every score, Δ and the judge's sent set use; ``correct_<name>``, ``extracted_<name>``,
    ``reason_<name>``: the same completion under each other scoring. Raises ValueError (from
    ``mixgap.grading.scoring_name``) when (``extract``, ``rule``) is not a scoring.
    """
    in_force = scoring_name(extract, rule)
    order = [in_force, *(n for n in SCORINGS if n != in_force)]
    rows = []
    for problem, samples in zip(problems, completions, strict=True):
        for j, completion in enumerate(samples):
            row: dict[str, Any] = {"id": problem.id, "sample": j, "gold": problem.answer, "completion": completion.text}
            for name in order:
                m, r = SCORINGS[name]
                v = grade(completion.text, problem.answer, bench.name, extract=m, rule=r, style=bench.extraction)
                suffix = "" if name == in_force else f"_{name}"
                row.update({f"extracted{suffix}": v.extracted, f"correct{suffix}": v.correct, f"reason{suffix}": v.reason})
            rows.append({**row, "finish_reason": completion.finish_reason, "completion_tokens": completion.completion_tokens})
    return rows


def scoring_accuracies(rows: Sequence[dict[str, Any]], in_force: str) -> dict[str, float]:
    """``{scoring: pass@1 in percent}`` of the same rows: ``correct`` under ``in_force`` and ``correct_<name>`` for
    each other scoring the rows carry (:func:`grade_rows`); each the mean over problems of their sample means."""
    out = {}
    for name in [in_force, *(n for n in SCORINGS if n != in_force)]:
        column = "correct" if name == in_force else f"correct_{name}"
        if rows and all(column in r for r in rows):
            values = list(per_problem_mean(rows, column).values())
            out[name] = 100.0 * sum(values) / len(values)
    return out


def write_eval(
    bench: DictConfig, problems: Sequence[Problem], completions: Sequence[Sequence[Any]], cfg: DictConfig,
    out_dir: Path, tracker: Any, backend: str,
) -> dict[str, Any]:
    """Grade and score one benchmark's completions into ``out_dir`` (``predictions.jsonl``, ``scores.json``).

    ``scores.json`` is :func:`score` under the scoring in force plus ``extract`` and ``rule`` (``eval.extract``,
    ``eval.rule``), ``scoring`` (their :data:`mixgap.grading.SCORINGS` name), ``extraction`` (the benchmark's style)
    and ``accuracy_by_scoring`` (``{policy | boxed | paper: pass@1 in percent}`` of the same completions).

    Returns:
        Manifest extras: the problem ids evaluated, the backend, the scores, ``first_turn`` -- the first
        problem's ``id``, its filled ``user`` turn and the ``chat_template`` that renders it (``model``: the
        tokenizer's own; the backend renders it as ``mixgap.stages.backends.base.render_prompts`` does). The
        generation's seconds are the completions artifact's (``generation_s`` in its manifest); this artifact's
        ``wall_s`` counts the grading only.
    """
    extract, rule = cfg.eval.get("extract", "policy"), cfg.eval.get("rule", "policy")
    rows = grade_rows(bench, problems, completions, extract, rule)
    scores = score(rows, bench.name)
    in_force = scoring_name(extract, rule)
    scores.update(extract=extract, rule=rule, scoring=in_force, extraction=bench.get("extraction"),
                  accuracy_by_scoring=scoring_accuracies(rows, in_force))
    write_jsonl_atomic(out_dir / PREDICTIONS, rows)
    write_json_atomic(out_dir / SCORES, scores)
    if scores["length_stop_frac"] > cfg.eval.length_warning:
        log.warning("!!! %s: %.0f%% of completions stopped at max_new_tokens=%d: the budget is too small for this "
                    "model (raise eval.max_new_tokens; the paper used 16,000), or, for a fine-tuned student, it never "
                    "learned to stop (a training bug, not a result)", bench.name, 100 * scores["length_stop_frac"],
                    cfg.eval.max_new_tokens)
    log.info("%s: pass@1 %.1f%% (%d/%d samples, %d problems x %d; %s)", bench.name, scores["accuracy"],
             scores["correct"], scores["n"] * scores["n_samples"], scores["n"], scores["n_samples"],
             ", ".join(f"{m} {a:.1f}%" for m, a in scores["accuracy_by_scoring"].items()))
    tracker.log({f"eval/{bench.name}/accuracy": scores["accuracy"], f"eval/{bench.name}/length_stop_frac": scores["length_stop_frac"]})
    first = {"id": problems[0].id, "user": fill_prompt(bench.prompt, problems[0].problem),
             "chat_template": str(cfg.student.get("chat_template", "model"))}
    return {"backend": backend, "batch_size": cfg.eval.batch_size, "problem_ids": [p.id for p in problems],
            "scores": scores, "first_turn": first}


def read_scores(eval_dir: Path) -> dict[str, Any]:
    """``scores.json`` of a finished evaluation artifact."""
    return json.loads((Path(eval_dir) / SCORES).read_text())


def with_average(scores: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per-benchmark scores plus ``average``: the plain mean of the accuracies (the paper's Average)."""
    accuracies = [s["accuracy"] for s in scores.values()]
    return {**scores, "average": {"accuracy": sum(accuracies) / len(accuracies), "benchmarks": list(scores)}}
