"""Reading finished sweeps: Hydra job folders (``.hydra/config.yaml``, ``result.json``) and the evaluations
their results name in the artifact store. Shared by the report and the analysis stages; reads, never writes.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from mixgap.core.errors import ConfigError
from mixgap.core.runrecord import RESULT, describe, job_identity
from mixgap.core.store import Store
from mixgap.results.tables.names import arm_of
from mixgap.stages import judge
from mixgap.stages.data import read_jsonl
from mixgap.stages.verdicts import scoring_accuracies
from mixgap.stats.sampled import per_problem_mean

log = logging.getLogger(__name__)
CONFIG = Path(".hydra") / "config.yaml"
ARMS = ("tuned", "untuned")
NOT_CONDITION = ("stage", "paths.", "tracking.", "report.", "analyze.", "study.", "teacher", "hydra.", "mix.weight",
                 "mix.strategy", "eval.backend", "eval.batch_size", "eval.chunk_size", "eval.tensor_parallel_size",
                 "data.missing_pool", "finetune_mode.save_steps",
                 "finetune_mode.logging_steps", "predict.", "student.display_name", "mix.strong.display_name",
                 "mix.weak.display_name")
#: The config fields naming a job's models as a reader knows them (``display_name``; "" = the config ``name``).
DISPLAY = {"student": "student", "strong": "mix.strong", "weak": "mix.weak"}


@dataclass(frozen=True)
class Evaluation:
    """One finished evaluation: ``{problem id: correct}`` (a bool; with several samples, the problem's mean
    correctness in [0, 1]), its ``scores.json``, how the verdicts were reached (``scoring``: ``rule`` = the
    grader under ``eval.extract`` and ``eval.rule``; ``judged`` = the LLM judge's ``judgments.jsonl``, ``key`` then being the
    judge artifact's) and the manifest's ``first_turn`` (the first problem's filled user turn), if recorded."""

    key: str
    correct: dict[str, bool]
    scores: dict[str, Any]
    scoring: str = "rule"
    first_turn: dict[str, Any] | None = None


@dataclass
class Job:
    """One Hydra job folder: its identity (:func:`mixgap.core.runrecord.job_identity`), status and evaluations by arm."""

    folder: Path
    status: str  # done | failed | running | planned | missing (no result.json)
    identity: dict[str, Any]
    expected: list[str] = field(default_factory=list)  # arms (tuned / untuned) the job's stage evaluates
    evals: dict[str, dict[str, Evaluation]] = field(default_factory=dict)  # arm -> benchmark -> evaluation
    complete: set[str] = field(default_factory=set)  # arms with every benchmark evaluated
    missing: list[str] = field(default_factory=list)  # why the job (or an arm) does not count

    counts: dict[str, Any] = field(default_factory=dict)  # result.json counts: pools, mixture, train, decontamination
    fields: dict[str, str] = field(default_factory=dict)  # config snapshot minus seeds (:func:`read_config`)
    variant: str = ""  # the fields that set this job apart from others of its cell (:func:`assign_variants`)
    seeds: dict[str, Any] = field(default_factory=dict)  # seed, mix.seed, finetune_mode.seed (:func:`read_seeds`)
    display: dict[str, str] = field(default_factory=dict)  # student/strong/weak -> display name (:func:`read_display`)
    judge: dict[str, dict[str, Any]] = field(default_factory=dict)  # arm -> benchmark -> judge scores (mixgap.stages.judge)
    graded: dict[str, dict[str, Evaluation]] = field(default_factory=dict)  # arm -> benchmark -> the grader's verdicts

    def mode(self) -> str:
        """The fine-tune mode, plus the variant when jobs of one cell differ in more than seeds."""
        return f"{self.identity.get('finetune_mode')}" + (f" ({self.variant})" if self.variant else "")

    def condition(self) -> tuple:
        """What seeds share: (student, strong, weak, mode with variant, arm): the arm is the mix weight, or a
        student-aware strategy's name (:func:`mixgap.results.tables.names.arm_of`), one more arm of the cell."""
        i = self.identity
        return (i.get("student"), i.get("strong"), i.get("weak"), self.mode(), arm_of(i))

    def independent_seeds(self) -> tuple | None:
        """What makes this job's fine-tuned model an independent seed: ``(finetune_mode.seed, mix.seed)``, with
        ``mix.seed`` as None at w = 0 or 1, where it selects nothing (every problem takes the one source).

        The global ``seed`` is left out: it seeds only the evaluation backend, and decoding is greedy. Two jobs
        of one condition with equal tuples trained on the same examples in the same order. None when the job's
        config snapshot is unreadable.
        """
        if "finetune_mode.seed" not in self.seeds:
            return None
        arm = arm_of(self.identity)  # mix.strategy=rsr selects by the student's RSR alone
        return (self.seeds["finetune_mode.seed"], None if arm in (0, 1, "rsr") else self.seeds.get("mix.seed"))

    def label(self) -> str:
        i = self.identity
        arm = "" if (i.get("strategy") or "fixed") == "fixed" else f", mix.strategy={i['strategy']}"
        return (f"{'/'.join(self.folder.parts[-3:])} ({i.get('student')}, {i.get('strong')}/{i.get('weak')}, "
                f"w={i.get('weight')}{arm}, {self.mode()}, seed={i.get('seed')}, mix_seed={i.get('mix_seed')}"
                + (f", finetune_seed={self.seeds['finetune_mode.seed']}" if "finetune_mode.seed" in self.seeds else "")
                + ")")


def read_result(folder: Path) -> dict[str, Any] | None:
    """A job folder's ``result.json`` (None when the job never wrote one); one that is not valid JSON reads as
    ``{"status": "unreadable", "error": ...}`` naming the file, so the report lists the job apart, never a traceback."""
    path = Path(folder) / RESULT
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        log.warning("%s cannot be read (%s); counted as unreadable", path, type(err).__name__)
        return {"status": "unreadable", "error": f"{path} is not valid JSON ({type(err).__name__}: {err})"}


def find_jobs(sweep: str | Path, field: str = "report.sweep") -> list[Path]:
    """Job folders (those holding ``.hydra/``) in ``sweep``: itself, or up to three levels below it (not in
    ``report/``, ``analysis/``, nor ``pools/``, the teacher pool jobs of a study submitted to SLURM).

    Raises:
        ConfigError: ``sweep`` names no folder (the message names ``field``).
    """
    root = Path(sweep)
    if not root.is_dir():
        raise ConfigError(f"{field}={str(sweep)!r} is not a folder; give a multirun folder, e.g. "
                          f"{field}=multirun/<date>/<time>")
    found, frontier = [], [root]
    for _ in range(4):
        below = []
        for folder in frontier:
            if (folder / ".hydra").is_dir():
                found.append(folder)
            else:
                below += [p for p in folder.iterdir() if p.is_dir() and p.name[0] not in "._" and p.name not in ("report", "analysis", "pools")]
        frontier = below
    return sorted(found, key=lambda p: (str(p.parent), p.name.zfill(12)))


def job_results(sweep: str | Path) -> list[tuple[Path, dict[str, Any] | None]]:
    """Each job folder of ``sweep`` (:func:`find_jobs` order) with its ``result.json`` (None if never written)."""
    return [(folder, read_result(folder)) for folder in find_jobs(sweep)]


def read_sweeps(sweeps: list[str], store: Store | None, field: str = "report.sweep") -> list[Job]:
    """Every job of the multirun folders ``sweeps``, read with :func:`read_job` (evaluations shared across jobs).

    Raises:
        ConfigError: a folder does not exist, or none of them holds a Hydra job folder (``.hydra/``).
    """
    folders = [folder for sweep in sweeps for folder in find_jobs(sweep, field)]
    if not folders:
        raise ConfigError(f"{field}={sweeps}: no Hydra job folder (one holding .hydra/) in it; give the folder a "
                          f"`launch.py -m` run wrote (its hydra.sweep.dir)")
    cache: dict[str, Evaluation | None] = {}  # evaluation key -> Evaluation, shared across jobs
    return [read_job(folder, store, cache) for folder in folders]


def load_evaluation(store: Store, key: str) -> Evaluation | None:
    """The finished evaluation ``key`` (predictions by id, scores), or None when it is not finished.

    ``length_stop_frac`` is recomputed from ``finish_reason`` when ``scores.json`` lacks it, and
    ``accuracy_by_scoring`` (``{policy | boxed | paper: pass@1}``) when it lacks that: an older artifact's
    ``accuracy_by_extract`` (``policy`` and ``boxed``, both under our rule), else from the rows
    (``mixgap.stages.verdicts.scoring_accuracies``) when it names its ``scoring`` or ``extract``.

    Raises:
        ValueError: naming the file when ``predictions.jsonl`` repeats a problem id.
    """
    folder = store.path(key)
    if not store.is_done(key) or not (folder / "predictions.jsonl").is_file():
        return None
    rows = read_jsonl(folder / "predictions.jsonl")
    if len({(str(r["id"]), r.get("sample", 0)) for r in rows}) != len(rows):
        raise ValueError(f"{folder / 'predictions.jsonl'}: repeated (problem id, sample) rows")
    correct = per_problem_mean(rows)  # one row per (problem, sample); a problem scores its mean correctness
    scores = json.loads((folder / "scores.json").read_text()) if (folder / "scores.json").is_file() else {}
    if "length_stop_frac" not in scores and rows:
        scores["length_stop_frac"] = sum(r.get("finish_reason") == "length" for r in rows) / len(rows)
    in_force = scores.get("scoring") or scores.get("extract")
    if "accuracy_by_scoring" not in scores and (scores.get("accuracy_by_extract") or (in_force and rows)):
        scores["accuracy_by_scoring"] = scores.get("accuracy_by_extract") or scoring_accuracies(rows, in_force)
    return Evaluation(key, correct, scores, first_turn=store.manifest(key).get("first_turn"))


def load_judgments(store: Store, key: str, graded: Evaluation) -> Evaluation | None:
    """The finished judge artifact ``key`` (``mixgap.stages.judge``) as an :class:`Evaluation` whose ``correct``
    is the judged verdict (rule correct, or judge True; its ``judgments.jsonl`` ``correct``), with the graded
    evaluation's scores; None when it is not finished.

    Raises:
        ValueError: naming the file when its problem ids differ from the graded evaluation's.
    """
    path = store.path(key) / judge.JUDGMENTS
    if not store.is_done(key) or not path.is_file():
        return None
    correct = per_problem_mean(read_jsonl(path))
    if set(correct) != set(graded.correct):
        raise ValueError(f"{path}: its problem ids differ from those of evaluation {graded.key}")
    return Evaluation(key, correct, graded.scores, "judged", graded.first_turn)


def read_config(folder: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """The job's ``.hydra/config.yaml``: its identity (:func:`mixgap.core.runrecord.job_identity`) and its fields as
    ``{dotted key: JSON value}`` without seeds (``seed``, ``*.seed``) and :data:`NOT_CONDITION` bookkeeping."""
    try:
        cfg = OmegaConf.load(folder / CONFIG)
        identity, tree = job_identity(cfg), OmegaConf.to_container(cfg, resolve=False)
    except Exception as err:  # an unreadable snapshot is reported, not fatal
        return {"error": f"unreadable {CONFIG}: {err}"}, {}
    flat: dict[str, str] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            flat[prefix[:-1]] = json.dumps(node, sort_keys=True, default=str)

    walk(tree, "")
    return identity, {k: v for k, v in flat.items() if k.rsplit(".", 1)[-1] != "seed" and not k.startswith(NOT_CONDITION)}


def read_seeds(folder: Path) -> dict[str, Any]:
    """The seeds of a job's ``.hydra/config.yaml``: ``seed`` (evaluation backend only), ``mix.seed`` (which
    problems take the strong response, at 0 < w < 1) and ``finetune_mode.seed`` (data order, LoRA init);
    ``{}`` when the snapshot is unreadable."""
    try:
        cfg = OmegaConf.load(Path(folder) / CONFIG)
        return {k: OmegaConf.select(cfg, k) for k in ("seed", "mix.seed", "finetune_mode.seed")}
    except Exception:  # reported by read_config
        return {}


def read_display(folder: Path) -> dict[str, str]:
    """The display names of a job's models from its ``.hydra/config.yaml``: ``{"student"|"strong"|"weak": name}``
    (each model's ``display_name``, else its config ``name``); ``{}`` when the snapshot is unreadable. A snapshot
    from before ``display_name`` existed gives the config names."""
    try:
        cfg = OmegaConf.load(Path(folder) / CONFIG)
    except Exception:  # reported by read_config
        return {}
    found = {}
    for role, node in DISPLAY.items():
        name = OmegaConf.select(cfg, f"{node}.name")
        if name is not None:
            found[role] = str(OmegaConf.select(cfg, f"{node}.display_name", default="") or name)
    return found


@dataclass(frozen=True)
class DisplayNames:
    """Config name -> the name figures and headings print, per kind (students, teachers), over a sweep's jobs.

    Built by :func:`display_names`; a name no job's snapshot names is printed as itself.
    """

    students: dict[str, str] = field(default_factory=dict)
    teachers: dict[str, str] = field(default_factory=dict)

    def student(self, name: Any) -> str:
        return self.students.get(str(name)) or str(name)

    def teacher(self, name: Any) -> str:
        return self.teachers.get(str(name)) or str(name)


def display_names(jobs: list[Job]) -> DisplayNames:
    """Each student's and teacher's display name from the jobs' config snapshots (:attr:`Job.display`; the first
    job naming a model decides when snapshots disagree)."""
    students: dict[str, str] = {}
    teachers: dict[str, str] = {}
    for job in jobs:
        for role, shown in job.display.items():
            name = str(job.identity.get(role))
            (students if role == "student" else teachers).setdefault(name, shown)
    return DisplayNames(students, teachers)


def assign_variants(jobs: list[Job]) -> None:
    """Set ``job.variant`` to the config fields that differ between jobs of one (student, teacher pair, mode)
    cell, e.g. ``finetune_mode.learning_rate=2e-05``: jobs count as seeds of one condition only when they are
    equal in everything but seeds (and the mix weight, which the tables compare)."""
    cells: dict[tuple, list[Job]] = defaultdict(list)
    for job in jobs:
        i = job.identity
        cells[(i.get("student"), i.get("strong"), i.get("weak"), i.get("finetune_mode"))].append(job)
    for members in cells.values():
        keys = set().union(*(j.fields for j in members))
        varying = sorted(k for k in keys if len({j.fields.get(k) for j in members}) > 1)
        for job in members:
            job.variant = ", ".join(f"{k}={json.loads(job.fields[k]) if k in job.fields else None}" for k in varying)


#: The arm a stage evaluates, for a job that recorded no plan (it never ran, or failed before planning).
STAGE_ARMS = {"all": "tuned", "evaluate": "untuned"}


def expected_arms(result: dict[str, Any], stage: str | None) -> list[str]:
    """The evaluation arms a job should have: those its planned roles (``result.json`` ``plan``, recorded before
    any work) or its ``artifacts`` name, ``eval.<arm>.<benchmark>``; with neither, the arm its ``stage`` evaluates."""
    roles = [row["role"] for row in result.get("plan") or []] or list(result.get("artifacts", {}))
    arms = [a for a in ARMS if any(role.startswith(f"eval.{a}.") for role in roles)]
    return arms or ([STAGE_ARMS[stage]] if stage in STAGE_ARMS else [])


def read_job(folder: Path, default_store: Store | None, cache: dict[str, Evaluation | None]) -> Job:
    """A job folder with the evaluations its ``result.json`` names (``cache`` shares them across jobs).

    ``job.evals`` (what every table, Δ and "Better?" uses) holds, per arm and benchmark, the judged verdicts
    when ``artifacts`` names ``judge.<arm>.<benchmark>`` (``eval.judge`` on: the paper's published numbers are
    judged), else the grader's; ``job.graded`` always holds the grader's."""
    result = read_result(folder) or {}
    from_config, fields = read_config(folder)
    identity = result.get("job") or from_config
    job = Job(folder, result.get("status", "missing"), identity, fields=fields, counts=result.get("counts", {}),
              expected=expected_arms(result, identity.get("stage")), seeds=read_seeds(folder),
              display=read_display(folder))
    if job.status != "done":
        if job.status != "planned":
            job.missing.append(describe(result) if result else f"no {RESULT} (never ran, or still queued)")
        return job
    for arm, table in (("tuned", result.get("scores") or {}), ("untuned", result.get("untuned") or {})):
        verdicts = {b: v["judge"] for b, v in table.items() if isinstance(v, dict) and "judge" in v}
        if verdicts:
            job.judge[arm] = verdicts
    store = Store(result["store"]) if result.get("store") else default_store
    if store is None:
        job.missing.append(f"{RESULT} names no store")
        return job
    benchmarks = identity.get("benchmarks", [])
    for arm in job.expected:
        job.evals[arm] = {}
        for bench in benchmarks:
            key = result.get("artifacts", {}).get(f"eval.{arm}.{bench}")
            if key is not None and key not in cache:
                cache[key] = load_evaluation(store, key)
            if key is None or cache[key] is None:
                job.missing.append(f"{arm} {bench}: evaluation {key or '(no key)'} not finished in {store.root}")
                continue
            job.graded.setdefault(arm, {})[bench] = cache[key]
            judged = result.get("artifacts", {}).get(f"judge.{arm}.{bench}")  # eval.judge on, this benchmark judged
            if judged is not None and judged not in cache:
                cache[judged] = load_judgments(store, judged, cache[key])
            if judged is not None and cache[judged] is None:
                job.missing.append(f"{arm} {bench}: judge verdicts {judged} not finished in {store.root}")
            else:
                job.evals[arm][bench] = cache[judged] if judged is not None else cache[key]
        if benchmarks and len(job.evals[arm]) == len(benchmarks):
            job.complete.add(arm)
    return job
