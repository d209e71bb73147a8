"""The stage contract: what every stage offers and what it is handed.

A stage is one module under :mod:`mixgap.stages` offering

- its **spec**: a pure function from the config fields that determine an artifact and the keys of its inputs to
  an :class:`~mixgap.core.store.ArtifactSpec` (``generation_spec``, ``pool_spec``, ``mixture_spec``,
  ``checkpoint_spec``, ``eval_spec``, ``predict_specs``, ``judge_spec``); a row of the table of stages
  (:data:`mixgap.plan.table.TABLE`) composes it into the job's plan;
- its **build**: ``run(ctx, roles)``, which builds the planned ``roles``: a store artifact through the store
  (written into a fresh output folder and finished with its manifest, :meth:`mixgap.core.store.Store.get_or_build`)
  recorded in ``ctx.paths``; an in-process value (the resolved student, the evaluation sets) in ``ctx.values``;
  what ``result.json`` reports goes into ``ctx.result``; and it ends with its **receipt**
  (:meth:`BuildContext.receipt`): one log line saying what it made (``generate.strong: qwq32b pool: 6,212 of 7,500
  problems kept (82.8%)``), or ``reused: ...`` when the store already held it.

:mod:`mixgap.pipeline` is then a loop over the plan's steps, calling each step's stage with its roles.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from mixgap.core.store import ArtifactSpec, Store

log = logging.getLogger(__name__)


def share(part: int, whole: int, unit: str = "") -> str:
    """``"26 of 30 problems (86.7%)"``: a count of a whole (thousands separated), ``unit`` and the percentage with
    one decimal (none of a whole of 0)."""
    return f"{part:,} of {whole:,}" + (f" {unit}" if unit else "") + (f" ({100 * part / whole:.1f}%)" if whole else "")


@dataclass
class BuildContext:
    """Everything a stage's ``run`` reads and writes while one job builds.

    Attributes:
        cfg: the composed, validated job config.
        store: the artifact store.
        tracker: the job's experiment tracker (:class:`mixgap.core.tracking.Tracker`).
        specs: the plan's artifact specs by role (:attr:`mixgap.plan.jobs.JobPlan.specs`).
        decisions: the preflight's decisions for this allocation, e.g. ``eval_tensor_parallel_size`` (never
            written into ``cfg``: they do not change what is computed, only how).
        paths: finished artifacts by role (their folders), filled as the steps run.
        values: in-process values by role, filled as the steps run: ``student`` (the untuned student's weights, a
            folder or a Hub id), ``benchmarks`` (benchmark name -> its evaluation problems, decontaminated and
            subset), ``export`` (the exported folder).
        result: what the job reports in ``result.json``: ``counts``, ``scores``, ``untuned``, ``learnability``,
            ``receipts`` (step -> its receipt line, :meth:`receipt`).
    """

    cfg: DictConfig
    store: Store
    tracker: Any
    specs: Mapping[str, ArtifactSpec]
    decisions: Mapping[str, Any] = field(default_factory=dict)
    paths: dict[str, Any] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=lambda: {"counts": {}})

    def path(self, role: str) -> Path:
        """The finished folder of ``role``; KeyError names the role when an earlier step did not build it."""
        if role not in self.paths:
            raise KeyError(f"{role} is not built yet; the plan's steps run in build order")
        return Path(self.paths[role])

    def value(self, role: str) -> Any:
        """The in-process value of ``role``; KeyError names the role when no earlier step built it."""
        if role not in self.values:
            raise KeyError(f"{role} is not built yet; the plan's steps run in build order")
        return self.values[role]

    def receipt(self, step: str, made: str, roles: Sequence[str] = ()) -> str:
        """Log (INFO: Hydra prints it on screen and in the job's log) and keep in ``result.json`` the one line that
        says what ``step`` made: ``<step>: <made>``, or ``<step>: reused: <made>`` when the store artifacts of
        ``roles`` were all finished before and this job built none of them (:attr:`mixgap.core.store.Store.built`).

        Returns:
            The line.
        """
        keys = [self.specs[role].key for role in roles if role in self.specs]
        reused = bool(keys) and not any(key in self.store.built for key in keys)
        line = f"{step}: {'reused: ' if reused else ''}{made}"
        log.info("%s", line)
        self.result.setdefault("receipts", {})[step] = line
        return line

    def counts(self, role: str) -> dict[str, Any]:
        """The ``counts`` of the finished artifact of ``role`` (its manifest)."""
        return self.store.manifest(self.specs[role].key).get("counts", {})
