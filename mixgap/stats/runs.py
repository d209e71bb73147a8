"""Runs as arrays: 0/1 verdicts or per-problem mean correctness, validated and joined by problem id.

A *run* is one evaluated model on one benchmark: a vector over the benchmark's problems, 0/1 (one sample
per problem) or each problem's mean correctness over its samples in [0, 1]. An arm holds one run per seed:
shape ``(S, n)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def as_runs(correct: object, name: str = "correct") -> np.ndarray:
    """A run matrix of shape ``(S, n)`` (bool) from a 0/1 vector ``(n,)`` or matrix ``(S, n)``.

    Raises:
        ValueError: naming ``name``, for an empty array, more than 2 dimensions, or values other than 0/1.
    """
    array = np.asarray(correct)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty 0/1 array of shape (n,) or (seeds, n); got shape {array.shape}")
    if array.dtype != bool:
        if not np.isin(array, (0, 1)).all():
            raise ValueError(f"{name} must hold only 0/1 (or bool) values; got {np.unique(array)[:5].tolist()}")
        array = array.astype(bool)
    return array


def as_scores(values: object, name: str = "correct") -> np.ndarray:
    """A run matrix ``(S, n)`` of per-problem scores: bool for 0/1 input (as :func:`as_runs`), else float64.

    Args:
        values: ``(n,)`` or ``(S, n)``: 0/1 verdicts, or each problem's mean correctness over its samples.

    Raises:
        ValueError: naming ``name``, for an empty array, more than 2 dimensions, or a value outside [0, 1].
    """
    array = np.asarray(values)
    if array.dtype == bool or (array.size and np.isin(array, (0, 1)).all()):
        return as_runs(array, name)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty array of shape (n,) or (seeds, n); got shape {array.shape}")
    array = array.astype(np.float64)
    if not ((array >= 0) & (array <= 1)).all():
        raise ValueError(f"{name} must hold only 0/1 (or bool) values, or mean correctness values in [0, 1]; "
                         f"got min {array.min()}, max {array.max()}")
    return array


def align(runs: Sequence[Mapping[str, bool]]) -> tuple[list[str], np.ndarray]:
    """Join runs by problem id: the sorted ids every run has, and the ``(len(runs), n)`` bool matrix.

    Args:
        runs: one ``{problem id: correct}`` mapping per run; ``correct`` is a bool, or a problem's mean
            correctness over its samples in [0, 1] (then the matrix is float, :func:`as_scores`).

    Returns:
        ``(ids, matrix)``; ``len(ids)`` is smaller than a run's size when the id sets differ (the caller
        warns with :func:`dropped_ids`).

    Raises:
        ValueError: when no run is given or the runs share no problem id.
    """
    if not runs:
        raise ValueError("runs is empty; give at least one {problem id: correct} mapping")
    ids = sorted(set.intersection(*(set(r) for r in runs)))
    if not ids:
        raise ValueError("the runs share no problem id; they did not evaluate the same benchmark")
    matrix = np.array([[float(r[i]) for i in ids] for r in runs])
    return ids, matrix.astype(bool) if np.isin(matrix, (0.0, 1.0)).all() else as_scores(matrix)


def dropped_ids(runs: Sequence[Mapping[str, bool]]) -> int:
    """How many problem ids appear in some run but not in all (left out by :func:`align`)."""
    sets = [set(r) for r in runs]
    return len(set.union(*sets) - set.intersection(*sets)) if sets else 0
