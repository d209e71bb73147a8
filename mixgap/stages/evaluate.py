"""Evaluation verdicts: a model's finished completions (:mod:`mixgap.stages.completions`) graded by
``mixgap.grading`` and scored (paper Section 3.1). Loads no model.

One store artifact per (model, benchmark), stage ``eval``: ``predictions.jsonl`` (one row per problem and sample:
the completion, its verdict under the scoring in force and under every other) and ``scores.json`` (pass@1 in
percent with a 95% CI, pass@k, maj@n, n, every scoring's accuracy, and the fraction of completions stopped by
length) (:func:`mixgap.stages.verdicts.write_eval`). Keyed by the completions' key plus the grader's version
(``mixgap.grading.POLICY_VERSION``), ``eval.extract``, ``eval.rule`` and the benchmark's ``extraction``: a grader
fix or another scoring regrades the stored completions in seconds and never generates again. The untuned
student is a model like any other, so its evaluation is computed once and shared by every job of a sweep.
Average = plain mean of the per-benchmark accuracies.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from mixgap import grading
from mixgap.core.stage import share
from mixgap.core.store import ArtifactSpec
from mixgap.stages.completions import read_completions
from mixgap.stages.data import Problem
from mixgap.stages.verdicts import read_scores, with_average, write_eval


def eval_spec(bench: DictConfig, eval_cfg: DictConfig, completions_key: str) -> ArtifactSpec:
    """Store spec of one (model, benchmark) evaluation's verdicts: fields ``grader``
    (``mixgap.grading.POLICY_VERSION``),
    ``extract`` and ``rule`` (``eval.extract``, ``eval.rule``: the scoring in force; the rows carry every scoring,
    but ``correct`` is the one in force) and ``extraction`` (the benchmark's answer style); input: the completions'
    key (:func:`mixgap.stages.completions.completions_spec`), which holds the model, the benchmark and everything
    else generation depends on."""
    fields = {
        "grader": grading.POLICY_VERSION,
        "extract": eval_cfg.get("extract", "policy"),
        "rule": eval_cfg.get("rule", "policy"),
        "extraction": bench.get("extraction"),
    }
    return ArtifactSpec("eval", fields, (completions_key,))


def grade_completions(bench: DictConfig, problems: Sequence[Problem], completions_dir: Path, backend: str | None,
                      cfg: DictConfig, out_dir: Path, tracker: Any) -> dict[str, Any]:
    """Grade and score the finished completions in ``completions_dir`` into ``out_dir``
    (:func:`mixgap.stages.verdicts.write_eval`); returns its manifest extras.

    Raises:
        DataError: the completions' problems are not ``problems`` (:func:`mixgap.stages.completions.read_completions`).
    """
    completions = read_completions(completions_dir, problems)
    return write_eval(bench, problems, completions, cfg, out_dir, tracker, backend or "unknown")


def run(ctx: Any, roles: Sequence[str]) -> None:
    """An evaluate step (stage contract, :mod:`mixgap.core.stage`): the verdicts of one model's finished completions
    on every planned benchmark (no model is loaded); the scores (with the average) go to ``result.json`` as
    ``untuned`` or ``scores``."""
    arm = roles[0].split(".")[1]
    scores = {}
    for role in roles:
        name = role.split(".", 2)[2]

        def build(out: Path, _work: Path, n: str = name) -> dict[str, Any]:
            source = f"completions.{arm}.{n}"
            backend = ctx.store.manifest(ctx.specs[source].key).get("backend")
            return grade_completions(ctx.cfg.benchmark[n], ctx.value("benchmarks")[n], ctx.path(source), backend,
                                     ctx.cfg, out, ctx.tracker)

        ctx.paths[role] = ctx.store.get_or_build(ctx.specs[role], build)
        scores[name] = read_scores(ctx.paths[role])
    ctx.result["scores" if arm == "tuned" else "untuned"] = with_average(scores)
    ctx.receipt(f"evaluate.{arm}", "; ".join(accuracy_line(name, s) for name, s in scores.items()), roles)


def accuracy_line(name: str, scores: dict[str, Any]) -> str:
    """``"math500 3 of 8 correct (37.5%)"``, or with several samples a problem ``"aime24 pass@1 12.5% (4 of 32 samples,
    8 problems x 4)"`` (``scores.json``: ``n`` problems, ``n_samples``, ``correct`` samples, ``accuracy``)."""
    n, k = int(scores["n"]), int(scores.get("n_samples") or 1)
    if k == 1:
        return f"{name} {share(int(scores['correct']), n, 'correct')}"
    return f"{name} pass@1 {scores['accuracy']:.1f}% ({scores['correct']:,} of {n * k:,} samples, {n:,} problems x {k})"
