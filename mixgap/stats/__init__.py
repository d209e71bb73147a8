"""Accuracy and gap statistics: the paired bootstrap, Wilson and Newcombe intervals, pass@k and maj@n.

The paper (Li et al., 2025) reports point estimates only; here a gap such as Δ_Long = P_Long − P_Short is
read with a paired percentile bootstrap over problems (and seeds), with closed-form Wilson / Newcombe
intervals where a bootstrap would claim certainty. Accuracies and gaps are in percent / percentage points.

Modules: :mod:`~mixgap.stats.runs` (run arrays, joining by id), :mod:`~mixgap.stats.intervals` (Interval,
verdict, percentile, Wilson, Newcombe, detectable gap), :mod:`~mixgap.stats.bootstrap` (the paired
two-level bootstrap: ``compare``, ``accuracy``, ``mean_ci``), :mod:`~mixgap.stats.sampled` (per-problem mean
correctness, pass@k, maj@n). Import each name from the module that defines it.
"""
