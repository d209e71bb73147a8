"""The evaluation sets (role ``benchmarks``, an in-process value): the job's benchmarks, decontaminated against the
mixture's problems, then subset.

Built whenever the job builds its mixture (``stage=mix``, ``train``, ``evaluate``, ``all``), so a mixture that
contains evaluation problems is refused (``data.decontamination=error``) before any model is trained or evaluated;
the evaluate and judge steps read it. Decontamination runs on the whole benchmark, then ``eval.limit`` /
``benchmark.<name>.limit`` take the seeded subset (:func:`mixgap.stages.data.evaluation_sets`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mixgap.core.config import data_root
from mixgap.stages import data
from mixgap.stages.mix import read_mixture


def run(ctx: Any, roles: Sequence[str]) -> None:
    """The benchmarks step (stage contract, :mod:`mixgap.core.stage`): ``ctx.values["benchmarks"]`` (benchmark name ->
    problems) and, in ``result.json``, ``counts.decontamination`` (the policy and the overlap per benchmark).

    Raises:
        DataError: ``data.decontamination=error`` and a benchmark shares problems with the mixture (it names them).
    """
    cfg = ctx.cfg
    ctx.values["benchmarks"], overlap = data.evaluation_sets(
        cfg.benchmark, data_root(cfg), read_mixture(ctx.path("mixture")), cfg.data.decontamination, cfg.eval.limit
    )
    ctx.result["counts"]["decontamination"] = {"policy": cfg.data.decontamination, "overlap": overlap}
