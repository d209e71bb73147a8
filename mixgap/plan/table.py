"""The one table of stages: every step a job can build, in build order, and the ``stage=`` values that build it.

A row of :data:`TABLE` gives

- ``step``: the step's name, its timing label in ``result.json``;
- ``module``: the stage module whose ``run(ctx, roles)`` builds the row's roles (the stage contract,
  :mod:`mixgap.core.stage`);
- ``stages``: the ``stage=`` values that build it (``plan`` plans what ``all`` builds);
- ``artifacts``: the role prefixes of the store artifacts it builds (``eval.untuned.`` covers one per benchmark:
  the verdicts; ``completions.untuned.`` the generations they grade);
- ``values``: the in-process values it builds, never stored: ``student`` (the untuned student's weights: a folder,
  or a checked Hub id), ``benchmarks`` (the evaluation problem sets, decontaminated against the mixture and
  subset), ``export`` (the exported folder);
- ``specs``: its spec function, ``(cfg, specs of the rows above) -> {role: ArtifactSpec}``, built on the stage
  module's own spec (``mixgap.stages.mix.mixture_spec``, ...); None for a row of values only.

Validation (the allowed ``stage=`` values, :func:`check_stage`), planning (:func:`mixgap.plan.jobs.make_plan`), the
preflight and the pipeline all read it: a new stage is its module plus one row. :data:`READERS` is the small table
of the stages that read finished sweeps instead (``report``, ``analyze``) or a study submitted to SLURM
(``status``, ``cancel``): another contract (``run(cfg, store, tracker_for)``), no role, no plan.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from types import ModuleType

from omegaconf import DictConfig

from mixgap.core.config import data_root
from mixgap.core.errors import ConfigError
from mixgap.core.store import ArtifactSpec
from mixgap.plan import study
from mixgap.results import analysis, report
from mixgap.stages import benchmarks, completions, evaluate, export, generate, judge, mix, models, predict
from mixgap.stages.backends.registry import backend_class
from mixgap.stages.serving import key_fields
from mixgap.stages.train import stage as train

ARMS = ("untuned", "tuned")
Specs = Mapping[str, ArtifactSpec]


@dataclass(frozen=True)
class Row:
    """One row of :data:`TABLE` (the module docstring says what each field is)."""

    step: str
    module: ModuleType
    stages: tuple[str, ...]
    artifacts: tuple[str, ...]
    values: tuple[str, ...]
    specs: Callable[[DictConfig, Specs], dict[str, ArtifactSpec]] | None


def teachers(cfg: DictConfig) -> dict[str, DictConfig]:
    """The job's teachers by role: ``{"teacher": ...}`` for ``stage=generate teacher=<name>``, else strong and weak."""
    if cfg.stage == "generate" and cfg.get("teacher"):
        return {"teacher": cfg.teacher}
    return {"strong": cfg.mix.strong, "weak": cfg.mix.weak}


def teacher_field(role: str) -> str:
    """The config path of the teacher of ``role``: ``teacher`` (``stage=generate teacher=...``) or ``mix.<role>``."""
    return "teacher" if role == "teacher" else f"mix.{role}"


def model_field(role: str) -> str | None:
    """The config path of the model whose weights a role's spec names in its ``weights`` field: ``student``, a
    teacher's (``generation.<r>``: :func:`teacher_field`), ``eval.judge`` (``judge.<arm>.<benchmark>``); None for
    the other roles."""
    if role == "student" or role.startswith("judge."):
        return "student" if role == "student" else "eval.judge"
    return teacher_field(role.split(".", 1)[1]) if role.startswith("generation.") else None


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


def student_specs(cfg: DictConfig, specs: Specs) -> dict[str, ArtifactSpec]:
    """``model`` (a GGUF student's converted weights; a Hub student has none) and ``student``, its identity."""
    weights = models.model_spec(cfg.student)
    return {**({"model": weights} if weights is not None else {}), "student": models.student_spec(cfg.student)}


def teacher_specs(role: str, cfg: DictConfig, specs: Specs) -> dict[str, ArtifactSpec]:
    """``generation.<role>`` and ``pool.<role>`` when the job has that teacher (:func:`teachers`).

    Raises:
        ConfigError: the teacher's backend fields are wrong (:func:`check_teacher`).
    """
    teacher = teachers(cfg).get(role)
    if teacher is None:
        return {}
    check_teacher(teacher_field(role), teacher)
    gen = generate.generation_spec(teacher, cfg.problems, data_root(cfg), teacher_field(role))
    return {f"generation.{role}": gen, f"pool.{role}": generate.pool_spec(teacher, gen.key)}


def score_specs(cfg: DictConfig, specs: Specs) -> dict[str, ArtifactSpec]:
    """``scores.strong`` / ``scores.weak``: the untuned student's scores of every problem both pools kept, when a
    student-aware ``mix.strategy`` chooses the mixture's traces by them (its inputs, so the row above the mix row)."""
    if "pool.strong" not in specs or cfg.mix.strategy == "fixed":
        return {}
    return predict.full_specs(cfg, specs["student"].key, specs["pool.strong"].key, specs["pool.weak"].key)


def mixture_specs(cfg: DictConfig, specs: Specs) -> dict[str, ArtifactSpec]:
    """``mixture``, of the strong and weak pools (none in a one-teacher job); a student-aware one also of the
    student's scores (:func:`score_specs`)."""
    if "pool.strong" not in specs:
        return {}
    scores = [specs[f"scores.{r}"].key for r in ("strong", "weak") if f"scores.{r}" in specs]
    return {"mixture": mix.mixture_spec(cfg.mix, specs["pool.strong"].key, specs["pool.weak"].key, cfg.finetune_mode,
                                        specs["student"].key, scores)}


def predict_specs(cfg: DictConfig, specs: Specs) -> dict[str, ArtifactSpec]:
    """``predict.strong`` / ``predict.weak`` with ``predict.enabled`` (always at ``stage=predict``)."""
    if "pool.strong" not in specs or not (cfg.stage == "predict" or cfg.predict.enabled):
        return {}
    return predict.predict_specs(cfg, specs["student"].key, specs["pool.strong"].key, specs["pool.weak"].key)


def checkpoint_specs(cfg: DictConfig, specs: Specs) -> dict[str, ArtifactSpec]:
    """``checkpoint``: the student fine-tuned on the mixture."""
    if "mixture" not in specs:
        return {}
    return {"checkpoint": train.checkpoint_spec(cfg.finetune_mode, specs["student"].key, specs["mixture"].key)}


def completion_specs(arm: str, cfg: DictConfig, specs: Specs) -> dict[str, ArtifactSpec]:
    """``completions.<arm>.<benchmark>`` for every benchmark: the untuned student's or the checkpoint's
    generations, keyed by how that arm is served (:func:`mixgap.stages.serving.key_fields`); with
    ``data.decontamination=drop`` keyed by the training problem set too."""
    if "mixture" not in specs:
        return {}
    model = specs["student" if arm == "untuned" else "checkpoint"].key
    strong, weak = specs["pool.strong"].key, specs["pool.weak"].key
    exclude = mix.problem_set_key(cfg.mix, strong, weak) if cfg.data.decontamination == "drop" else None
    root = data_root(cfg)
    engine = key_fields(cfg, arm)
    return {f"completions.{arm}.{name}": completions.completions_spec(bench, cfg.eval, model, exclude, root,
                                                                      str(cfg.student.chat_template), engine)
            for name, bench in cfg.benchmark.items()}


def eval_specs(arm: str, cfg: DictConfig, specs: Specs) -> dict[str, ArtifactSpec]:
    """``eval.<arm>.<benchmark>`` for every benchmark with completions: the verdicts on them under the grader's
    version, ``eval.extract`` and ``eval.rule``."""
    return {f"eval.{arm}.{name}": evaluate.eval_spec(bench, cfg.eval, specs[f"completions.{arm}.{name}"].key)
            for name, bench in cfg.benchmark.items() if f"completions.{arm}.{name}" in specs}


def judge_specs(cfg: DictConfig, specs: Specs) -> dict[str, ArtifactSpec]:
    """``judge.<arm>.<benchmark>`` with ``eval.judge``, for every ``boxed`` benchmark (GSM8K, ``last_number``, is
    never judged, as in the paper)."""
    if cfg.eval.get("judge") is None:
        return {}
    return {f"judge.{arm}.{name}": judge.judge_spec(cfg.eval.judge, specs[f"eval.{arm}.{name}"].key)
            for arm in ARMS for name, bench in cfg.benchmark.items()
            if bench.extraction == "boxed" and f"eval.{arm}.{name}" in specs}


_TEACHERS = ("generate", "mix", "train", "evaluate", "all", "predict")  # every stage= that reads the strong/weak pools
_MIXED = ("mix", "train", "evaluate", "all")  # every stage= that builds the mixture
_SCORED = (*_MIXED, "predict")  # ... and stage=predict: a student-aware mixture's scores of every problem

#: The stages, in build order. The student row comes first (a student that cannot be loaded fails before any
#: generation) and names no stage= but its own: a row that takes the student as input pulls it in
#: (:func:`mixgap.plan.jobs.stage_roles`).
TABLE: tuple[Row, ...] = (
    #   step                   module       stages               artifacts                               values            specs
    Row("prepare",             models,      ("prepare",),        ("model",),                             ("student",),     student_specs),
    Row("generate.teacher",    generate,    ("generate",),       ("generation.teacher", "pool.teacher"), (),               partial(teacher_specs, "teacher")),
    Row("generate.strong",     generate,    _TEACHERS,           ("generation.strong", "pool.strong"),   (),               partial(teacher_specs, "strong")),
    Row("generate.weak",       generate,    _TEACHERS,           ("generation.weak", "pool.weak"),       (),               partial(teacher_specs, "weak")),
    Row("score",               predict,     _SCORED,             ("scores.",),                           (),               score_specs),
    Row("mix",                 mix,         _MIXED,              ("mixture",),                           (),               mixture_specs),
    Row("benchmarks",          benchmarks,  _MIXED,              (),                                     ("benchmarks",),  None),
    Row("predict",             predict,     ("predict", "all"),  ("predict.",),                          (),               predict_specs),
    Row("train",               train,       ("train", "all"),    ("checkpoint",),                        (),               checkpoint_specs),
    Row("completions.untuned", completions, ("evaluate", "all"), ("completions.untuned.",),              (),               partial(completion_specs, "untuned")),
    Row("evaluate.untuned",    evaluate,    ("evaluate", "all"), ("eval.untuned.",),                     (),               partial(eval_specs, "untuned")),
    Row("completions.tuned",   completions, ("all",),            ("completions.tuned.",),                (),               partial(completion_specs, "tuned")),
    Row("evaluate.tuned",      evaluate,    ("all",),            ("eval.tuned.",),                       (),               partial(eval_specs, "tuned")),
    Row("judge",               judge,       ("evaluate", "all"), ("judge.",),                            (),               judge_specs),
    Row("export",              export,      ("export",),         (),                                     ("export",),      None),
)  # fmt: skip

@dataclass(frozen=True)
class Reader:
    """A stage that reads sweeps instead of building (``run(cfg, store, tracker_for)``): its ``module``, the name of
    its tracker run, the config node whose ``sweep`` names the folders it reads, and its own ``check`` of them
    before any work (None: they must hold Hydra job folders, :func:`mixgap.results.sweep.read_sweeps`)."""

    module: ModuleType
    name: str
    node: str
    check: Callable[[DictConfig], None] | None = None


#: The stages that read finished sweeps (report, analyze) or a submitted study (status, cancel).
READERS: dict[str, Reader] = {
    "report": Reader(report, "report", "report"),
    "analyze": Reader(analysis, "analysis", "analyze"),
    "status": Reader(study, "status", "study", study.check),
    "cancel": Reader(study, "cancel", "study", study.check),
}


def stage_values() -> tuple[str, ...]:
    """Every allowed ``stage=``: ``plan``, those the rows list (in order of first appearance), the readers."""
    seen = ["plan"]
    for row in TABLE:
        seen += [stage for stage in row.stages if stage not in seen]
    return (*seen, *READERS)


def check_stage(stage: str) -> None:
    """Raises ConfigError (one line: the value and every allowed one) for a ``stage=`` no row or reader has."""
    allowed = stage_values()
    if stage not in allowed:
        raise ConfigError(f"stage={stage!r} is not allowed; choose one of {', '.join(allowed)}")
