"""How much work a job is: the tokens of one training epoch, of scoring every problem (a student-aware mixture)
and the completions of one evaluation arm.

Read by :mod:`mixgap.plan.preflight` for its hours; the figures come from the pool manifests in the store when
they exist, else from the paper's released data (:mod:`mixgap.plan.estimates`).
"""

from __future__ import annotations

import math
from typing import Any

from omegaconf import DictConfig

from mixgap.core.errors import ConfigError
from mixgap.plan.estimates import CHARS_PER_TOKEN, PAPER_CHARS, PAPER_EXAMPLES, PROMPT_TOKENS
from mixgap.plan.jobs import JobPlan
from mixgap.stages.completions import sampling_fields


def pool_lengths(cfg: DictConfig, plan: JobPlan, store: Any = None) -> tuple[dict[str, float], int, str]:
    """``({strong, weak: mean response tokens}, problems, source)``: from the pool manifests in ``store`` when both
    are done (mean response length in tokens, or characters / ``CHARS_PER_TOKEN``; the kept problems of the smaller
    pool, an upper bound of those both kept), else the paper's released data (``PAPER_EXAMPLES`` rows,
    ``PAPER_CHARS`` by CoT kind)."""
    lengths, examples, source = {}, [], "paper"
    if store is not None:
        try:
            for role in ("strong", "weak"):
                key = plan.key(f"pool.{role}")
                if not store.is_done(key):
                    raise KeyError(key)
                counts = store.manifest(key).get("counts", {})
                length = counts["length"]
                per = length["mean"] / (1 if length["unit"] == "tokens" else CHARS_PER_TOKEN)
                lengths[role], _ = per, examples.append(counts["kept"])
            source = "pool manifests"
        except (KeyError, TypeError, ValueError, ConfigError):
            lengths, examples, source = {}, [], "paper"
    if not lengths:
        lengths = {r: PAPER_CHARS[cfg.mix[r].cot] / CHARS_PER_TOKEN for r in ("strong", "weak")}
        examples = [PAPER_EXAMPLES]
    return lengths, min(examples), source


def training_tokens(cfg: DictConfig, plan: JobPlan, store: Any = None) -> tuple[float, str]:
    """Tokens of one epoch of the job's mixture and where the figure comes from: :func:`pool_lengths` mixed by
    ``mix.weight``, plus ``PROMPT_TOKENS`` per example as an upper bound of the prompt."""
    lengths, n, source = pool_lengths(cfg, plan, store)
    w = float(cfg.mix.weight)
    mean = w * lengths["strong"] + (1 - w) * lengths["weak"] + PROMPT_TOKENS
    return n * mean, f"{source}: {n} examples x {mean:.0f} tokens"


def scoring_tokens(cfg: DictConfig, plan: JobPlan, store: Any = None) -> tuple[float, int, str]:
    """``(tokens, traces, source)`` of scoring every problem in both pools (a student-aware ``mix.strategy``): per
    problem of :func:`pool_lengths` both traces with a ``PROMPT_TOKENS`` prompt each (an upper bound)."""
    lengths, n, source = pool_lengths(cfg, plan, store)
    per_problem = lengths["strong"] + lengths["weak"] + 2 * PROMPT_TOKENS
    return n * per_problem, 2 * n, f"{source}: {n} problems x 2 traces, {per_problem:.0f} tokens a problem"


def eval_samples(cfg: DictConfig, bench: DictConfig) -> int:
    """Completions one evaluation arm decodes on ``bench``: problems (the benchmark's size, cut by
    ``benchmark.<key>.limit`` / ``eval.limit``; its ``size`` is in its YAML) x samples per problem (:func:`mixgap.stages.completions.sampling_fields`)."""
    problems = min(bench.size, bench.limit or math.inf, cfg.eval.limit or math.inf)
    sampling = sampling_fields(cfg.eval, bench)
    return int(problems) * (sampling["n_samples"] if sampling else 1)
