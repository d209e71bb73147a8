"""Accuracy and gap statistics: the paired bootstrap, Wilson and Newcombe intervals, pass@k and maj@n.

The paper (Li et al., 2025) reports point estimates only; here a gap such as Δ_Long = P_Long − P_Short is
read with a paired percentile bootstrap over problems (and seeds), with closed-form Wilson / Newcombe
intervals where a bootstrap would claim certainty. Accuracies and gaps are in percent / percentage points.

Modules: :mod:`~mixgap.stats.runs` (run arrays, joining by id), :mod:`~mixgap.stats.intervals` (Interval,
verdict, percentile, Wilson, Newcombe, detectable gap), :mod:`~mixgap.stats.bootstrap` (the paired
two-level bootstrap: ``compare``, ``accuracy``, ``mean_ci``), :mod:`~mixgap.stats.sampled` (per-problem mean
correctness, pass@k, maj@n). Every public name is importable from ``mixgap.stats``.
"""

from mixgap.stats.bootstrap import (
    AVERAGE,
    Comparison,
    accuracy,
    accuracy_ci,
    arm_interval,
    bootstrap_arms,
    compare,
    degenerate,
    delta_interval,
    delta_se,
    mean_ci,
    paired_delta,
    paired_phi,
)
from mixgap.stats.intervals import (
    Z_POWER_80_ALPHA_05,
    Interval,
    detectable_gap,
    interval_se,
    newcombe_paired_interval,
    newcombe_phi,
    paired_table,
    percentile_interval,
    verdict,
    wilson_interval,
)
from mixgap.stats.runs import align, as_runs, as_scores, dropped_ids
from mixgap.stats.sampled import (
    answer_classes,
    graded_same,
    majority_correct,
    pass_at_k,
    pass_at_k_scores,
    pass_ks,
    per_problem_mean,
)

__all__ = [
    "AVERAGE", "Comparison", "Interval", "Z_POWER_80_ALPHA_05", "accuracy", "accuracy_ci", "align", "answer_classes",
    "arm_interval", "as_runs", "as_scores", "bootstrap_arms", "compare", "degenerate", "delta_interval", "delta_se",
    "detectable_gap", "dropped_ids", "graded_same", "interval_se", "majority_correct", "mean_ci", "newcombe_paired_interval",
    "newcombe_phi", "paired_delta", "paired_phi", "paired_table", "pass_at_k", "pass_at_k_scores", "pass_ks",
    "per_problem_mean", "percentile_interval", "verdict", "wilson_interval",
]
