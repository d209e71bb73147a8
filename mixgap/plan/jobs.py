"""The job plan: every artifact one job needs, by role, in build order; which of them its stage builds; and the
steps that build them, all read from the one table of stages (:data:`mixgap.plan.table.TABLE`). Computed once per
job (:func:`make_plan`) and handed to the preflight, the pipeline and the sweep's checks, so the plan and the run
can never disagree.

Roles: ``model`` (converted GGUF weights, when the student has them) and ``student`` (the untuned student: its
identity, and the value the prepare step resolves), ``generation.<r>`` and ``pool.<r>`` for r in strong/weak (or
``teacher`` with ``stage=generate teacher=...``), ``scores.<r>`` (the untuned student's scores of every problem, which
a student-aware ``mix.strategy`` mixes by), ``mixture``, ``benchmarks`` (the evaluation sets), ``predict.<r>``
(learnability before training), ``checkpoint``, ``completions.<arm>.<benchmark>`` (a model's generations) and
``eval.<arm>.<benchmark>`` (their verdicts) for arm in untuned/tuned, ``judge.<arm>.<benchmark>`` (the LLM re-judge
of an evaluation, with ``eval.judge``) and ``export``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mixgap.core.config import to_container, validate
from mixgap.core.conftree import ConfTree
from mixgap.core.errors import ConfigError
from mixgap.core.runrecord import job_identity
from mixgap.core.store import ArtifactSpec, Store
from mixgap.plan import table
from mixgap.plan.table import ARMS, READERS, Row, check_stage, model_field, teachers
from mixgap.results.sweep import read_sweeps
from mixgap.stages import export, models
from mixgap.stages.backends.registry import backend_class


@dataclass(frozen=True)
class Step:
    """One step of the pipeline: ``name`` (its timing label, e.g. ``generate.strong``), the stage ``module`` that
    builds it (``run(ctx, roles)``) and the roles of the plan it builds (store artifacts and in-process values)."""

    name: str
    module: ModuleType
    roles: tuple[str, ...]


@dataclass(frozen=True)
class JobPlan:
    """A job's plan: ``specs`` (role -> spec, every artifact the job may need and the student's identity, in build
    order), ``roles`` (the store artifacts its stage builds), ``steps`` (how the pipeline builds them, with the
    in-process values) and ``identity`` (what the report groups by); ``unresolved`` (role -> the fields of the Hub
    models whose revision is unresolved in its key: :func:`unresolved_models`) and ``foreign_arch`` (the model fields
    whose YAML ``arch:`` is another model's: :func:`foreign_arch`)."""

    stage: str
    specs: dict[str, ArtifactSpec]
    roles: tuple[str, ...]
    steps: tuple[Step, ...]
    identity: dict[str, Any] = field(default_factory=dict)
    unresolved: dict[str, list[str]] = field(default_factory=dict)
    foreign_arch: tuple[str, ...] = ()

    def key(self, role: str) -> str:
        return self.specs[role].key

    def builds(self, prefix: str) -> bool:
        """True when the job's stage builds a role starting with ``prefix`` (``checkpoint``, ``eval.``, ``pool.``)."""
        return any(role.startswith(prefix) for role in self.roles)

    def arms(self) -> list[str]:
        """The evaluation arms (untuned / tuned) the job's stage builds."""
        return [arm for arm in ARMS if self.builds(f"eval.{arm}.")]

    def rows(self, store: Store) -> list[dict[str, Any]]:
        """``{role, key, done}`` for every role the stage builds (``done``: finished in ``store`` now), with
        ``unresolved`` (the model fields whose revision its key lacks) where there are any."""
        return [{"role": r, "key": self.key(r), "done": store.is_done(self.key(r)),
                 **({"unresolved": self.unresolved[r]} if r in self.unresolved else {})} for r in self.roles]


#: The config paths of the models a job may name (student, teachers, judge), whose hf_id may be overridden.
MODEL_FIELDS = ("student", "mix.strong", "mix.weak", "teacher", "eval.judge")


def unresolved_models(specs: dict[str, ArtifactSpec], roles: Sequence[str]) -> dict[str, list[str]]:
    """``{role: [model field, ...]}`` for each of ``roles`` whose key holds a Hub model whose revision is
    :data:`mixgap.stages.models.UNRESOLVED`: in its own ``weights`` (the student, a teacher's generation, a judge's
    verdicts: :func:`mixgap.plan.table.model_field`) or, through its inputs, in an artifact it is built from."""
    by_key = {spec.key: role for role, spec in specs.items()}
    found: dict[str, set[str]] = {}

    def walk(role: str) -> set[str]:
        if role not in found:
            spec, field_ = specs[role], model_field(role)
            weights = spec.fields.get("weights")
            mine = {field_} if field_ and isinstance(weights, dict) and weights.get("revision") == models.UNRESOLVED else set()
            found[role] = mine.union(*(walk(by_key[key]) for key in spec.inputs if key in by_key))
        return found[role]

    return {role: sorted(walk(role)) for role in roles if role in specs and walk(role)}


def foreign_arch(cfg: DictConfig, overrides: Sequence[str]) -> tuple[str, ...]:
    """The model fields (:data:`MODEL_FIELDS`) whose ``hf_id`` ``overrides`` set while leaving their ``arch`` alone:
    the YAML's ``arch:`` block there describes the YAML's own model, not the one named now, so the plan takes the
    shape from the new model's ``config.json`` (:mod:`mixgap.plan.shapes`)."""
    keys = [o.lstrip("+~").split("=", 1)[0] for o in overrides]
    return tuple(f for f in MODEL_FIELDS if f"{f}.hf_id" in keys and not any(k.startswith(f"{f}.arch") for k in keys)
                 and OmegaConf.select(cfg, f) is not None)


def job_specs(cfg: DictConfig) -> dict[str, ArtifactSpec]:
    """Every artifact a job may need (and the student's identity), by role, in build order: each row's spec
    function in table order, given the specs of the rows above it.

    Raises:
        ConfigError: a teacher's backend fields are wrong (:func:`mixgap.plan.table.check_teacher`).
    """
    specs: dict[str, ArtifactSpec] = {}
    for row in table.TABLE:
        if row.specs is not None:
            specs.update(row.specs(cfg, specs))
    return specs


def row_roles(row: Row, specs: dict[str, ArtifactSpec]) -> list[str]:
    """The roles ``row`` builds in this job: its artifacts that have a spec, then its values."""
    return [role for role in specs if role.startswith(row.artifacts)] + list(row.values)


def value_roles() -> set[str]:
    """The roles of the table that are in-process values (never stored): ``student``, ``benchmarks``, ``export``."""
    return {value for row in table.TABLE for value in row.values}


def stage_roles(cfg: DictConfig, specs: dict[str, ArtifactSpec]) -> list[str]:
    """Every role ``cfg.stage`` builds (store artifacts and in-process values), in table order:

    1. the roles of the rows that list the stage (``plan``: those of ``all``; ``export``: what ``export.artifact``
       needs, :func:`mixgap.stages.export.builds`, and the export); ``all`` with ``eval.untuned=false`` leaves the
       untuned arm out;
    2. a value that a built role takes as input is built too, with its row: the student whenever something is
       trained or evaluated on it, or (``finetune_mode.overlength=drop_pair``) mixed for it;
    3. an artifact that takes as input a planned artifact the stage does not build is left out (at
       ``stage=evaluate``, the judge of the tuned arm).

    Raises:
        ConfigError: ``stage`` builds nothing through the plan (``report``, ``analyze``).
    """
    if cfg.stage in READERS:
        raise ConfigError(f"stage={cfg.stage!r} has no job plan; it reads finished sweeps")
    stage = "all" if cfg.stage == "plan" else cfg.stage
    rows = [(row, row_roles(row, specs)) for row in table.TABLE]
    wanted = export.builds(cfg.export.artifact) if stage == "export" else ()
    built = {role for row, roles in rows for role in roles if stage in row.stages or role.startswith(wanted)}
    if stage == "all" and not cfg.eval.untuned:
        built = {role for role in built if not role.startswith(("completions.untuned.", "eval.untuned."))}
    value_rows = {specs[v].key: roles for row, roles in rows for v in row.values if v in specs}
    for role in [r for r in built if r in specs]:
        for key in specs[role].inputs:
            built.update(value_rows.get(key, ()))
    values = value_roles()
    planned = {spec.key: role for role, spec in specs.items() if role not in values}
    kept: list[str] = []
    for role in [r for _, roles in rows for r in roles if r in built]:
        inputs = specs[role].inputs if role in specs and role not in values else ()
        if all(planned.get(key) in (None, *kept) for key in inputs):
            kept.append(role)
    return kept


def make_plan(cfg: DictConfig, overrides: Sequence[str] = ()) -> JobPlan:
    """The plan of one composed, validated job config (reads no store, loads no model; a Hub model's revision is
    asked of the Hub or the local cache and a local model folder's files are hashed, once per process each);
    ``overrides``: the job's command-line overrides (:func:`foreign_arch`).

    Raises:
        ConfigError: the stage is not allowed (:func:`mixgap.plan.table.check_stage`) or has no plan, or a
            teacher's backend is unknown.
    """
    check_stage(cfg.stage)
    specs = job_specs(cfg)
    built = stage_roles(cfg, specs)
    values = value_roles()
    steps = []
    for row in table.TABLE:
        mine = tuple(role for role in row_roles(row, specs) if role in built)
        if mine:
            steps.append(Step(row.step, row.module, mine))
    roles = tuple(role for role in built if role not in values)
    return JobPlan(cfg.stage, specs, roles, tuple(steps), job_identity(cfg), unresolved_models(specs, built),
                   foreign_arch(cfg, overrides))


def refuse_unresolved(cfg: DictConfig, plan: JobPlan) -> None:
    """Outside ``stage=plan``, a job whose keys would hold an unresolved Hub model revision is refused: what it
    built could not be told apart from what the same id gives at another commit.

    Raises:
        ConfigError: one line naming ``<field>.revision`` (:func:`mixgap.stages.models.unresolved_line`).
    """
    fields = sorted({f for found in plan.unresolved.values() for f in found})
    if cfg.stage != "plan" and fields:
        raise ConfigError(models.unresolved_line(OmegaConf.select(cfg, fields[0]), fields[0]))


#: Plans already checked in this process, by resolved config and overrides (:func:`checked_plan`).
_CHECKED: dict[str, JobPlan | None] = {}


def checked_plan(cfg: DictConfig, overrides: Sequence[str] = (), tree: ConfTree | None = None, *,
                 planning: bool = False) -> JobPlan | None:
    """Every check of one composed job config before any work, and its plan: the stage
    (:func:`mixgap.plan.table.check_stage`), the values (:func:`mixgap.core.config.validate`, ``overrides`` being the
    job's command-line overrides, their group options read from the conf tree ``tree``), then the plan
    (:func:`make_plan`) and its models' revisions (:func:`refuse_unresolved`, skipped with ``planning``: a job that
    is only planned, never run, such as the pool job of a study under ``stage=plan``); a reader (``report``,
    ``analyze``) has no plan (None): its sweep folders must hold job folders
    (:func:`mixgap.results.sweep.read_sweeps`).

    Once per process: ``launch.py``'s check before Hydra, the sweeper's check of every point and
    :func:`mixgap.pipeline.run_job` share one result per resolved config and overrides; a refusal is not kept.

    Raises:
        ConfigError: one line naming the field, the value and what is allowed.
    """
    key = json.dumps([to_container(cfg), sorted(overrides)], sort_keys=True, default=str)
    if key not in _CHECKED:
        check_stage(cfg.stage)
        validate(cfg, overrides, tree)
        reader = READERS.get(cfg.stage)
        if reader is not None and reader.check is not None:
            reader.check(cfg)
        elif reader is not None:
            sweeps = to_container(cfg[reader.node].sweep)
            read_sweeps([sweeps] if isinstance(sweeps, str) else [str(s) for s in sweeps], None, f"{reader.node}.sweep")
        _CHECKED[key] = None if reader is not None else make_plan(cfg, overrides)
    plan = _CHECKED[key]
    if plan is not None and not planning:
        refuse_unresolved(cfg, plan)
    return plan


def generating_teachers(cfg: DictConfig, plan: JobPlan, store: Store | None) -> list[tuple[str, DictConfig]]:
    """``(field, teacher)`` of the teachers this job would generate with on its own allocation: those whose pool
    it builds, with a backend that generates (not an import), whose generation is not already in ``store``, and
    (outside ``stage=generate``) only with ``data.missing_pool=generate``."""
    out = []
    for role, teacher in teachers(cfg).items():
        if f"generation.{role}" not in plan.roles or not backend_class(teacher.backend).generates:
            continue
        if cfg.stage != "generate" and cfg.data.missing_pool != "generate":
            continue
        if store is not None and store.is_done(plan.key(f"generation.{role}")):
            continue
        out.append(("teacher" if role == "teacher" else f"mix.{role}", teacher))
    return out
