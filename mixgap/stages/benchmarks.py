"""The evaluation sets (role ``benchmarks``, an in-process value): the job's benchmarks, decontaminated against the
mixture's problems, then subset. Decontamination compares training and evaluation problems by normalised text
(:func:`mixgap.stages.data.normalize_text`).

Built whenever the job builds its mixture (``stage=mix``, ``train``, ``evaluate``, ``all``), so a mixture that
contains evaluation problems is refused (``data.decontamination=error``) before any model is trained or evaluated;
the evaluate and judge steps read it. Decontamination runs on the whole benchmark, then ``eval.limit`` /
``benchmark.<name>.limit`` take the seeded subset (:func:`evaluation_sets`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mixgap.core.config import data_root
from mixgap.stages.data import DataError, Problem, cap, load_all, normalize_text, subset
from mixgap.stages.mix import read_mixture


def run(ctx: Any, roles: Sequence[str]) -> None:
    """The benchmarks step (stage contract, :mod:`mixgap.core.stage`): ``ctx.values["benchmarks"]`` (benchmark name ->
    problems) and, in ``result.json``, ``counts.decontamination`` (the policy and the overlap per benchmark).

    Raises:
        DataError: ``data.decontamination=error`` and a benchmark shares problems with the mixture (it names them).
    """
    cfg = ctx.cfg
    ctx.values["benchmarks"], overlap = evaluation_sets(
        cfg.benchmark, data_root(cfg), read_mixture(ctx.path("mixture")), cfg.data.decontamination, cfg.eval.limit
    )
    ctx.result["counts"]["decontamination"] = {"policy": cfg.data.decontamination, "overlap": overlap}
    made = ", ".join(f"{name} {len(problems):,}" for name, problems in ctx.values["benchmarks"].items())
    hits = ", ".join(f"{k:,} {name}" for name, k in overlap.items() if k)
    fate = "left out" if cfg.data.decontamination == "drop" else "kept"
    ctx.receipt("benchmarks", f"{made} problems to evaluate" + (
        f"; {hits} problems are in the mixture ({fate}: data.decontamination={cfg.data.decontamination})" if hits else ""))


def evaluation_sets(
    benchmarks: Mapping[str, Any], data_root: Path | None, train: Sequence[Problem], policy: str,
    limit: int | None = None,
) -> tuple[dict[str, list[Problem]], dict[str, int]]:
    """The problems each benchmark is evaluated on: decontaminated first, then subset.

    Decontamination (:func:`decontaminate`) runs on the whole benchmark, so a ``limit`` subset always has
    ``limit`` problems and none of them is a training problem (``drop``).

    Returns:
        (benchmark name -> problems, benchmark name -> overlap count over the whole benchmark).
    """
    full = {name: load_all(bench, data_root) for name, bench in benchmarks.items()}
    kept, counts = decontaminate(train, full, policy)
    return {
        name: subset(kept[name], cap(bench.limit, limit), bench.subset_seed) for name, bench in benchmarks.items()
    }, counts


def overlap(train: Iterable[Problem], bench: Iterable[Problem]) -> list[str]:
    """Ids of benchmark problems whose normalised text equals a training problem's."""
    seen = {normalize_text(p.problem) for p in train}
    return [p.id for p in bench if normalize_text(p.problem) in seen]


def decontaminate(
    train: Sequence[Problem], benchmarks: Mapping[str, Sequence[Problem]], policy: str
) -> tuple[dict[str, list[Problem]], dict[str, int]]:
    """Check evaluation benchmarks against the training problems (normalised text).

    Args:
        train: the problems a mixture trains on.
        benchmarks: benchmark name -> its evaluation problems.
        policy: ``error`` (overlap raises), ``drop`` (overlapping problems are removed from evaluation),
            or ``allow`` (kept, counted).

    Returns:
        (benchmarks to evaluate, overlap count per benchmark).

    Raises:
        DataError: policy ``error`` and a benchmark overlaps; the message names it and the count.
    """
    kept, counts = {}, {}
    for name, problems in benchmarks.items():
        hits = set(overlap(train, problems))
        counts[name] = len(hits)
        if hits and policy == "error":
            raise DataError(
                f"{len(hits)} of {len(problems)} {name} problems are in the training mixture; evaluate without "
                "them with data.decontamination=drop, or allow it with data.decontamination=allow"
            )
        kept[name] = [p for p in problems if p.id not in hits] if policy == "drop" else list(problems)
    return kept, counts
