"""Sampled evaluation: several samples per problem -> per-problem mean correctness, pass@k and maj@n.

A run may hold each problem's *mean correctness* over its samples (a value in [0, 1]) instead of a 0/1
verdict; the bootstrap (:mod:`mixgap.stats.bootstrap`) resamples problems and carries each problem's mean
along, so an interval covers both the problem noise and the sample noise that the means keep.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from mixgap.stats.intervals import clean


def per_problem_mean(rows: Iterable[Mapping[str, Any]], key: str = "correct") -> dict[str, float | bool]:
    """``{problem id: correctness}`` from rows with ``id`` and a verdict under ``key`` (one row per sample).

    A problem with one row keeps its verdict as a bool; with several, the mean of ``bool(row[key])`` over
    them (a float in [0, 1]). Ids are compared as strings; the order is that of first appearance.

    Raises:
        KeyError: a row without ``id`` or ``key``.
    """
    groups: dict[str, list[bool]] = {}
    for r in rows:
        groups.setdefault(str(r["id"]), []).append(bool(r[key]))
    return {i: (sum(g) / len(g) if len(g) > 1 else g[0]) for i, g in groups.items()}


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem (a fraction, 0-1): P(at least one of k samples drawn without replacement
    from the n generated is correct), with c of the n correct.

    Chen et al. (2021), "Evaluating Large Language Models Trained on Code", arXiv 2107.03374, Sec. 2.1 and
    Fig. 3: ``1 - C(n-c, k) / C(n, k)``, computed in the numerically stable product form
    ``1 - prod_{i=n-c+1}^{n} (1 - k / i)`` (1 when ``n - c < k``).

    Raises:
        ValueError: unless ``0 <= c <= n`` and ``1 <= k <= n``.
    """
    if not (0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"pass_at_k(n={n}, c={c}, k={k}) is not allowed; it needs 0 <= c <= n and 1 <= k <= n")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def pass_ks(n: int) -> list[int]:
    """The k reported for n samples: 1, 2, 4, ... (powers of two) up to n, and n itself."""
    ks, k = [], 1
    while k <= n:
        ks.append(k)
        k *= 2
    return ks + ([n] if ks[-1] != n else [])


def pass_at_k_scores(counts: Sequence[tuple[int, int]], ks: Sequence[int] | None = None) -> dict[str, float]:
    """Benchmark pass@k in percent: the mean over problems of :func:`pass_at_k`.

    Args:
        counts: per problem ``(n samples, c correct)``; every problem needs the same n.
        ks: the k to report; None = :func:`pass_ks` of n.

    Returns:
        ``{"pass@1": ..., "pass@2": ..., ...}`` (percent, 0-100). pass@1 is the mean correctness over samples
        and problems.

    Raises:
        ValueError: for no problems or unequal n.
    """
    if not counts:
        raise ValueError("counts is empty; give (n, c) per problem")
    sizes = {n for n, _ in counts}
    if len(sizes) != 1:
        raise ValueError(f"every problem needs the same number of samples; got {sorted(sizes)}")
    n = sizes.pop()
    return {f"pass@{k}": clean(100.0 * np.mean([pass_at_k(n, c, k) for _, c in counts])) for k in (ks or pass_ks(n))}


def answer_classes(answers: Sequence[str | None], same: Callable[[str, str], bool] | None = None) -> list[list[int]]:
    """Indices of the extracted answers grouped into classes: each answer joins the first class whose first
    member ``same(member, answer)`` holds, else opens a new one; None (no answer) joins none.

    Classes are in order of first appearance; ``same`` defaults to string equality. Cost: one ``same`` call
    per (answer, class) pair at most.
    """
    same = same or (lambda a, b: a == b)
    firsts: list[str] = []  # each class's first answer
    classes: list[list[int]] = []
    for i, answer in enumerate(answers):
        if answer is None:
            continue
        home = next((k for k, first in enumerate(firsts) if same(first, answer)), None)
        if home is None:
            firsts.append(answer)
            classes.append([i])
        else:
            classes[home].append(i)
    return classes


def graded_same(
    answers: Sequence[str | None], correct: Sequence[bool], equivalent: Callable[[str, str], bool] | None = None
) -> Callable[[str, str], bool]:
    """``same(a, b)`` for :func:`majority_correct` from one problem's graded samples.

    The answers graded correct are one class (each was judged equal to the gold, so they are equal to each
    other); two wrong answers are one when equal as strings or ``equivalent(a, b)`` (e.g.
    ``mixgap.grading.equivalence.is_equivalent``: ``3`` and ``3.0``); a correct and a wrong answer never are.

    Raises:
        ValueError: when the two sequences differ in length.
    """
    if len(answers) != len(correct):
        raise ValueError(f"answers ({len(answers)}) and correct ({len(correct)}) must have one entry per sample")
    right = {a for a, c in zip(answers, correct, strict=True) if c and a is not None}

    def same(a: str, b: str) -> bool:
        if (a in right) != (b in right):
            return False
        return a in right or a == b or (equivalent is not None and bool(equivalent(a, b)))

    return same


def majority_correct(
    answers: Sequence[str | None], correct: Sequence[bool], same: Callable[[str, str], bool] | None = None
) -> bool:
    """maj@n of one problem: whether the largest class of equivalent extracted answers is graded correct.

    Args:
        answers: the samples' extracted answers; None (no answer) does not vote.
        correct: the samples' verdicts, one per answer.
        same: ``same(a, b) -> bool``, when two answers are one vote (:func:`answer_classes`); default string
            equality. The grader's equivalence makes ``\\frac{1}{2}``, ``\\dfrac{1}{2}`` and ``0.5`` one answer.

    Returns:
        The verdict of the winning class's first sample; False when no sample has an answer. A tie goes to
        the class that appeared first. Majority voting ("self-consistency"): Wang et al. (2023), arXiv
        2203.11171; the maj@n metric as in lighteval.

    Raises:
        ValueError: when the two sequences differ in length.
    """
    if len(answers) != len(correct):
        raise ValueError(f"answers ({len(answers)}) and correct ({len(correct)}) must have one entry per sample")
    classes = answer_classes(answers, same)
    if not classes:
        return False
    winner = max(classes, key=len)  # max keeps the first of equal sizes
    return bool(correct[winner[0]])
