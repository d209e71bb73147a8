"""The job plan: every artifact one job needs, by role, in build order; which of them its stage builds; and the
steps that build them. Computed once per job (:func:`make_plan`) and handed to the preflight, the pipeline and
the sweep's checks, so the plan and the run can never disagree.

Roles: ``model`` (converted GGUF weights, when the student has them), ``generation.<r>`` and ``pool.<r>`` for r in
strong/weak (or ``teacher`` with ``stage=generate teacher=...``), ``mixture``, ``predict.<r>`` (learnability before
training), ``checkpoint``, ``eval.<arm>.<benchmark>`` for arm in untuned/tuned, and ``judge.<arm>.<benchmark>`` (the
LLM re-judge of an evaluation, with ``eval.judge``).

:data:`STEPS` is the one table of stages: each step's name (its timing label), the stage module that builds it
(:mod:`mixgap.pipeline` maps names to modules) and the role prefix it builds; :data:`STAGE_BUILDS` says which role
prefixes each ``stage=`` builds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig

from mixgap.core.config import ConfigError, data_root
from mixgap.core.runrecord import job_identity
from mixgap.core.store import ArtifactSpec, Store
from mixgap.stages import evaluate, export, generate, judge, mix, models, predict
from mixgap.stages.backends import backend_class
from mixgap.stages.train import stage as train_stage

TEACHER_ROLES = ("teacher", "strong", "weak")
ARMS = ("untuned", "tuned")
_EVERYTHING = ("model", "generation", "pool", "mixture", "predict", "checkpoint", "eval.untuned", "eval.tuned", "judge")
#: What each ``stage=`` builds (role prefixes); ``plan`` plans what ``all`` would build and builds nothing.
STAGE_BUILDS: dict[str, tuple[str, ...]] = {
    "plan": _EVERYTHING,
    "prepare": ("model",),
    "generate": ("generation", "pool"),
    "mix": ("generation", "pool", "mixture"),
    "train": ("model", "generation", "pool", "mixture", "checkpoint"),
    "evaluate": ("model", "generation", "pool", "mixture", "eval.untuned", "judge.untuned"),
    "all": _EVERYTHING,
    "predict": ("model", "generation", "pool", "predict"),
    "export": (),  # what ``export.artifact`` needs: :func:`mixgap.stages.export.builds`
}


@dataclass(frozen=True)
class Step:
    """One step of the pipeline: ``name`` (its timing label, e.g. ``generate.strong``), the stage module that
    builds it (``stage``, a key of :data:`mixgap.pipeline.STAGES`) and the roles of the plan it builds."""

    name: str
    stage: str
    roles: tuple[str, ...]


#: The steps in build order: (timing label, stage module, the role prefixes it builds). ``prepare`` comes after
#: ``mix`` so that a data error (decontamination, an empty mixture) never waits for a model.
STEPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    *((f"generate.{r}", "generate", (f"generation.{r}", f"pool.{r}")) for r in TEACHER_ROLES),
    ("mix", "mix", ("mixture",)),
    ("prepare", "models", ("model",)),
    ("predict", "predict", ("predict.",)),
    ("train", "train", ("checkpoint",)),
    ("evaluate.untuned", "evaluate", ("eval.untuned.",)),
    ("evaluate.tuned", "evaluate", ("eval.tuned.",)),
    ("judge", "judge", ("judge.",)),
    ("export", "export", ()),  # builds no role: writes export.out from the artifact the steps before built
)


@dataclass(frozen=True)
class JobPlan:
    """A job's plan: ``specs`` (role -> spec, every artifact the job may need, in build order), ``roles`` (those
    its stage builds), ``steps`` (how the pipeline builds them) and ``identity`` (what the report groups by)."""

    stage: str
    specs: dict[str, ArtifactSpec]
    roles: tuple[str, ...]
    steps: tuple[Step, ...]
    identity: dict[str, Any] = field(default_factory=dict)

    def key(self, role: str) -> str:
        return self.specs[role].key

    def builds(self, prefix: str) -> bool:
        """True when the job's stage builds a role starting with ``prefix`` (``checkpoint``, ``eval.``, ``pool.``)."""
        return any(role.startswith(prefix) for role in self.roles)

    def arms(self) -> list[str]:
        """The evaluation arms (untuned / tuned) the job's stage builds."""
        return [arm for arm in ARMS if self.builds(f"eval.{arm}.")]

    def rows(self, store: Store) -> list[dict[str, Any]]:
        """``{role, key, done}`` for every role the stage builds (``done``: finished in ``store`` now)."""
        return [{"role": r, "key": self.key(r), "done": store.is_done(self.key(r))} for r in self.roles]


def student_spec(student: DictConfig) -> ArtifactSpec:
    """Identity of an untuned student (never built): its weights and the chat template it is used with."""
    weights = models.model_spec(student)
    fields = {"hf_id": student.hf_id, "chat_template": student.chat_template}
    return ArtifactSpec("student", fields, (weights.key,) if weights else ())


def teachers(cfg: DictConfig) -> dict[str, DictConfig]:
    """The job's teachers by role: ``{"teacher": ...}`` for ``stage=generate teacher=<name>``, else strong and weak."""
    if cfg.stage == "generate" and cfg.get("teacher"):
        return {"teacher": cfg.teacher}
    return {"strong": cfg.mix.strong, "weak": cfg.mix.weak}


def check_teacher(field: str, teacher: DictConfig) -> None:
    """The backend fields of a teacher at ``field`` (``mix.strong``, ``teacher``): a registered backend, with a model
    (``hf_id`` or ``gguf``) when it generates, with a ``dataset`` when it imports.

    Raises:
        ConfigError: one line naming the field, the value and what is allowed.
    """
    cls = backend_class(teacher.backend, f"{field}.backend")
    if cls.generates and teacher.hf_id is None and teacher.get("gguf") is None:
        raise ConfigError(f"{field}.hf_id=None is not allowed with {field}.backend={teacher.backend!r}; give a model id")
    if not cls.generates and teacher.get("dataset") is None:
        raise ConfigError(f"{field}.dataset=None is not allowed with {field}.backend={teacher.backend!r}; give hub_id or path")


def job_specs(cfg: DictConfig) -> dict[str, ArtifactSpec]:
    """Every artifact a job may need, by role, in build order (see the module docstring for the roles).

    Raises:
        ConfigError: a teacher's backend fields are wrong (:func:`check_teacher`).
    """
    root = data_root(cfg)
    specs: dict[str, ArtifactSpec] = {}
    weights = models.model_spec(cfg.student)
    if weights is not None:
        specs["model"] = weights
    roles = teachers(cfg)
    for role, teacher in roles.items():
        check_teacher("teacher" if role == "teacher" else f"mix.{role}", teacher)
        gen = generate.generation_spec(teacher, cfg.problems, root)
        specs[f"generation.{role}"] = gen
        specs[f"pool.{role}"] = generate.pool_spec(teacher, gen.key)
    if "strong" not in roles:
        return specs
    strong, weak = specs["pool.strong"].key, specs["pool.weak"].key
    student = student_spec(cfg.student).key
    specs["mixture"] = mix.mixture_spec(cfg.mix, strong, weak, cfg.finetune_mode, student)
    if cfg.stage == "predict" or cfg.predict.enabled:
        specs.update(predict.predict_specs(cfg, student, strong, weak))
    specs["checkpoint"] = train_stage.checkpoint_spec(cfg.finetune_mode, student, specs["mixture"].key)
    exclude = mix.problem_set_key(cfg.mix, strong, weak) if cfg.data.decontamination == "drop" else None
    for arm, model_key in (("untuned", student), ("tuned", specs["checkpoint"].key)):
        for name, bench in cfg.benchmark.items():
            specs[f"eval.{arm}.{name}"] = evaluate.eval_spec(bench, cfg.eval, model_key, exclude, root)
    if cfg.eval.get("judge") is not None:
        for arm in ARMS:
            for name, bench in cfg.benchmark.items():
                if bench.extraction == "boxed":  # GSM8K (last_number) is never judged, as in the paper
                    specs[f"judge.{arm}.{name}"] = judge.judge_spec(cfg.eval.judge, specs[f"eval.{arm}.{name}"].key)
    return specs


def stage_roles(cfg: DictConfig, specs: dict[str, ArtifactSpec]) -> tuple[str, ...]:
    """The roles of ``specs`` that ``cfg.stage`` builds (:data:`STAGE_BUILDS`); without ``eval.untuned``, no untuned arm.

    Raises:
        ConfigError: ``stage`` builds nothing through the plan (``report``, ``analyze``).
    """
    if cfg.stage not in STAGE_BUILDS:
        raise ConfigError(f"stage={cfg.stage!r} has no job plan; it reads finished sweeps")
    upto = export.builds(cfg.export.artifact) if cfg.stage == "export" else STAGE_BUILDS[cfg.stage]
    if cfg.stage in ("all", "plan") and not cfg.eval.untuned:
        upto = tuple(u for u in upto if u != "eval.untuned")
    roles = [role for role in specs if role.startswith(upto)]
    if not cfg.eval.untuned and cfg.stage in ("all", "plan"):
        roles = [r for r in roles if not r.startswith("judge.untuned.")]
    return tuple(roles)


def plan_steps(stage: str, roles: tuple[str, ...]) -> tuple[Step, ...]:
    """The steps of :data:`STEPS` that build at least one of ``roles``, each with the roles it builds; ``prepare``
    whenever the stage needs the student (a Hub student has no ``model`` role, but is checked and resolved)."""
    steps = []
    for name, module, prefixes in STEPS:
        mine = tuple(r for r in roles if r.startswith(prefixes))
        student = "model" in STAGE_BUILDS[stage] or (stage == "export" and any(r.startswith("eval.") for r in roles))
        if mine or (name == "prepare" and stage != "plan" and student) or name == stage == "export":
            steps.append(Step(name, module, mine))
    return tuple(steps)


def make_plan(cfg: DictConfig) -> JobPlan:
    """The plan of one composed, validated job config (pure: reads no store, loads no model).

    Raises:
        ConfigError: the stage has no plan, or a teacher's backend is unknown.
    """
    specs = job_specs(cfg)
    roles = stage_roles(cfg, specs)
    return JobPlan(cfg.stage, specs, roles, plan_steps(cfg.stage, roles), job_identity(cfg))


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
