"""Evaluation: zero-shot greedy generation on a benchmark, graded by ``mixgap.grading`` (paper Section 3.1).

One store artifact per (model, benchmark): ``predictions.jsonl`` (one row per problem) and ``scores.json``
(accuracy in percent with a 95% CI, n, and the fraction of completions stopped by length). The untuned
student is a model like any other, so its evaluation is computed once and shared by every job of a sweep.

Protocol (Li et al. 2025): greedy decoding, ``max_new_tokens`` 16,000, the boxed ``Final Answer:`` prompt
for MATH/MATH500/AIME/AMC/OlympiadBench and the bare question for GSM8K (scored by its last number); both
come from ``conf/benchmark/*.yaml``. Average = plain mean of the per-benchmark accuracies.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from mixgap.config import to_container
from mixgap.data import DataError, Problem, fill_prompt
from mixgap.store import ArtifactSpec, write_json_atomic

log = logging.getLogger(__name__)
PREDICTIONS, SCORES = "predictions.jsonl", "scores.json"


def eval_spec(
    bench: DictConfig, eval_cfg: DictConfig, model_key: str, exclude_key: str | None, data_root: Path | None
) -> ArtifactSpec:
    """Store spec of one (model, benchmark) evaluation.

    Fields: the benchmark (source, prompt, subset), the generation budget, the grader's policy version and
    whether problems come from the kit or the Hub. Inputs: the model's key and, when decontamination drops
    problems, the key of the training problem set. The backend (vLLM/HF), batch size and tensor parallelism
    are recorded in the manifest but do not change the key.
    """
    from mixgap.grading import POLICY_VERSION  # noqa: PLC0415

    fields = {
        "benchmark": to_container(bench),
        "max_new_tokens": eval_cfg.max_new_tokens,
        "limit": eval_cfg.limit,
        "grader": POLICY_VERSION,
        "source": "kit" if data_root is not None else "hub",
        "selection": "decontaminate, then subset",  # data.evaluation_sets
    }
    return ArtifactSpec("eval", fields, (model_key, exclude_key) if exclude_key else (model_key,))


def resolve_backend(setting: str) -> str:
    """``eval.backend``: ``auto`` is vLLM when a CUDA GPU is visible and vLLM is installed, else HF."""
    if setting != "auto":
        return setting
    import importlib.util  # noqa: PLC0415

    import torch  # noqa: PLC0415

    return "vllm" if torch.cuda.is_available() and importlib.util.find_spec("vllm") else "hf"


class Engine:
    """A generation backend for one model, loaded on first use and closed on exit (context manager).

    Lazy loading means a job whose evaluations are all in the store never loads the model.
    """

    def __init__(self, model: str, cfg: DictConfig):
        self.model, self.cfg, self.backend, self.kind = model, cfg, None, resolve_backend(cfg.eval.backend)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.backend is not None:
            self.backend.close()
            self.backend = None

    def generate(self, prompts: Sequence[str], desc: str) -> list[Any]:
        """Greedy completions (one per prompt) within ``eval.max_new_tokens``."""
        from mixgap.backends import load_backend  # noqa: PLC0415

        if self.backend is None:
            template = self.cfg.student.chat_template
            self.backend = load_backend(
                self.kind,
                self.model,
                dtype="auto",
                tensor_parallel_size=self.cfg.eval.tensor_parallel_size,
                batch_size=self.cfg.eval.batch_size,
                chat_template=None if template == "model" else template,
                seed=self.cfg.seed,
            )
        out = self.backend.generate(prompts, max_new_tokens=self.cfg.eval.max_new_tokens, temperature=0.0, desc=desc)
        return [samples[0] for samples in out]


def score(rows: Sequence[dict[str, Any]], benchmark: str, confidence: float = 0.95) -> dict[str, Any]:
    """Scores of one benchmark's predictions.

    Args:
        rows: prediction rows with ``correct`` (bool) and ``finish_reason``.
        benchmark: its name (recorded).
        confidence: level of the accuracy interval (percentile bootstrap over problems, ``mixgap.stats``).

    Returns:
        ``benchmark``, ``n``, ``correct`` (count), ``accuracy`` (pass@1 in percent, 0-100), ``ci_low``,
        ``ci_high`` (percent), ``length_stop_frac`` (0-1: completions stopped by ``max_new_tokens``) and
        ``reasons`` (grader reason counts).
    """
    from mixgap.stats import accuracy_ci  # noqa: PLC0415

    n = len(rows)
    if n == 0:
        raise DataError(f"{benchmark}: no problems to evaluate (all removed by decontamination or limit)")
    correct = [bool(r["correct"]) for r in rows]
    low, high = accuracy_ci(correct, confidence=confidence)
    return {
        "benchmark": benchmark,
        "n": n,
        "correct": sum(correct),
        "accuracy": 100.0 * sum(correct) / n,
        "ci_low": low,
        "ci_high": high,
        "length_stop_frac": sum(r["finish_reason"] == "length" for r in rows) / n,
        "reasons": dict(Counter(r["reason"] for r in rows)),
    }


def build_eval(
    engine: Engine, bench: DictConfig, problems: Sequence[Problem], cfg: DictConfig, out_dir: Path, tracker: Any
) -> dict[str, Any]:
    """Generate, grade and score one benchmark into ``out_dir`` (``predictions.jsonl``, ``scores.json``).

    Returns manifest extras: the problem ids evaluated, the backend and the scores.
    """
    from mixgap.grading import grade  # noqa: PLC0415

    if not problems:
        raise DataError(f"{bench.name}: no problems to evaluate (all removed by decontamination or limit)")
    prompts = [fill_prompt(bench.prompt, p.problem) for p in problems]
    completions = engine.generate(prompts, desc=f"eval {bench.name}")
    rows = []
    for problem, completion in zip(problems, completions, strict=True):
        verdict = grade(completion.text, problem.answer, bench.name)
        rows.append(
            {
                "id": problem.id,
                "gold": problem.answer,
                "completion": completion.text,
                "extracted": verdict.extracted,
                "correct": verdict.correct,
                "reason": verdict.reason,
                "finish_reason": completion.finish_reason,
                "completion_tokens": completion.completion_tokens,
            }
        )
    scores = score(rows, bench.name)
    with open(out_dir / PREDICTIONS, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    write_json_atomic(out_dir / SCORES, scores)
    if scores["length_stop_frac"] > cfg.eval.length_warning:
        log.warning(
            "!!! %s: %.0f%% of completions stopped at max_new_tokens=%d: the budget is too small for this model "
            "(raise eval.max_new_tokens; the paper used 16,000), or, for a fine-tuned student, it never learned "
            "to stop (a training bug, not a result)",
            bench.name, 100 * scores["length_stop_frac"], cfg.eval.max_new_tokens,
        )
    log.info("%s: pass@1 %.1f%% (%d/%d)", bench.name, scores["accuracy"], scores["correct"], scores["n"])
    tracker.log({f"eval/{bench.name}/accuracy": scores["accuracy"], f"eval/{bench.name}/length_stop_frac": scores["length_stop_frac"]})
    return {"backend": engine.kind, "batch_size": cfg.eval.batch_size, "problem_ids": [p.id for p in problems], "scores": scores}


def read_scores(eval_dir: Path) -> dict[str, Any]:
    """``scores.json`` of a finished evaluation artifact."""
    return json.loads((Path(eval_dir) / SCORES).read_text())


def with_average(scores: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per-benchmark scores plus ``average``: the plain mean of the accuracies (the paper's Average)."""
    accuracies = [s["accuracy"] for s in scores.values()]
    return {**scores, "average": {"accuracy": sum(accuracies) / len(accuracies), "benchmarks": list(scores)}}
