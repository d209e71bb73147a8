"""One Hydra job: compute the artifact keys it needs (the plan), then build what is missing, stage by stage.

Stages (``stage=``), each making everything before it as needed through the store:

- ``plan``: print the artifacts the job needs and which already exist; loads no model.
- ``prepare``: the student's weights (a GGUF file is converted once into the store).
- ``generate``: teacher pools: ``teacher=<name>`` alone, else the job's strong and weak teachers.
- ``mix``: the mixture at ``mix.weight``; the decontamination check against the job's benchmarks.
- ``train``: the fine-tuned student (checkpoint).
- ``evaluate``: the untuned student on the job's benchmarks (the reference row; once per student).
- ``all``: train, then evaluate the untuned and the fine-tuned student (with ``predict.enabled``, the
  learnability prediction first).
- ``predict``: learnability before training: the untuned student's surprisal, rank and RSR on both pools
  (``mixgap.stages.predict``; one artifact per student x pool, shared by every mix weight).
- ``report`` / ``analyze``: read finished sweeps (``mixgap.results.report``, ``mixgap.results.analysis``).

Keys come from :func:`job_specs` only, so the plan and the run can never disagree. A job writes
``result.json`` (atomically) into its Hydra output folder; the report reads that and the store.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from mixgap.stages import data, models

from mixgap.core import runrecord
from mixgap.core.config import data_root, validate
from mixgap.core.store import ArtifactSpec, Store, write_json_atomic

log = logging.getLogger(__name__)
RESULT = "result.json"


class PoolMissing(RuntimeError):
    """A teacher pool this job needs is not in the store and ``data.missing_pool`` forbids building it here."""


def student_spec(student: DictConfig) -> ArtifactSpec:
    """Identity of an untuned student (never built): its weights and the chat template it is used with."""
    weights = models.model_spec(student)
    fields = {"hf_id": student.hf_id, "chat_template": student.chat_template}
    return ArtifactSpec("student", fields, (weights.key,) if weights else ())


def job_specs(cfg: DictConfig) -> dict[str, ArtifactSpec]:
    """Every artifact a job may need, by role, in build order (the plan).

    Roles: ``model`` (converted GGUF weights, when the student has them), ``generation.<r>`` and
    ``pool.<r>`` for r in strong/weak (or ``teacher`` with stage=generate teacher=...), ``mixture``,
    ``checkpoint``, ``eval.untuned.<benchmark>`` and ``eval.tuned.<benchmark>``.
    """
    from mixgap.stages import evaluate, generate, mix, train  # noqa: PLC0415 (stage modules import torch lazily)

    root = data_root(cfg)
    specs: dict[str, ArtifactSpec] = {}
    weights = models.model_spec(cfg.student)
    if weights is not None:
        specs["model"] = weights
    roles = {"teacher": cfg.teacher} if cfg.stage == "generate" and cfg.get("teacher") else cfg.mix
    for role in ("teacher", "strong", "weak"):
        if role in roles:
            gen = generate.generation_spec(roles[role], cfg.problems, root)
            specs[f"generation.{role}"] = gen
            specs[f"pool.{role}"] = generate.pool_spec(roles[role], gen.key)
    if "pool.strong" not in specs:
        return specs
    strong, weak = specs["pool.strong"].key, specs["pool.weak"].key
    specs["mixture"] = mix.mixture_spec(cfg.mix, strong, weak)
    student = student_spec(cfg.student).key
    specs["checkpoint"] = train.checkpoint_spec(cfg.finetune_mode, student, specs["mixture"].key)
    exclude = mix.problem_set_key(cfg.mix, strong, weak) if cfg.data.decontamination == "drop" else None
    for arm, model_key in (("untuned", student), ("tuned", specs["checkpoint"].key)):
        for name, bench in cfg.benchmark.items():
            specs[f"eval.{arm}.{name}"] = evaluate.eval_spec(bench, cfg.eval, model_key, exclude, root)
    if cfg.stage == "predict" or cfg.predict.enabled:  # learnability before training (mixgap.stages.predict)
        from mixgap.stages.predict import predict_specs  # noqa: PLC0415

        specs.update(predict_specs(cfg, student, strong, weak))
    return specs


def needed_roles(cfg: DictConfig, specs: dict[str, ArtifactSpec]) -> list[str]:
    """The roles of ``specs`` that ``cfg.stage`` builds."""
    upto = {
        "plan": (),
        "prepare": ("model",),
        "generate": ("generation", "pool"),
        "mix": ("generation", "pool", "mixture"),
        "train": ("model", "generation", "pool", "mixture", "checkpoint"),
        "evaluate": ("model", "generation", "pool", "mixture", "eval.untuned"),
        "all": ("model", "generation", "pool", "mixture", "checkpoint", "eval.untuned", "eval.tuned", "predict"),
        "predict": ("model", "generation", "pool", "predict"),
    }[cfg.stage if cfg.stage != "plan" else "all"]
    if cfg.stage == "all" and not cfg.eval.untuned:
        upto = tuple(u for u in upto if u != "eval.untuned")
    return [role for role in specs if role.startswith(upto)]


def job_identity(cfg: DictConfig) -> dict[str, Any]:
    """The coordinates of a job in the study: what the report groups and compares by."""
    return {
        "stage": cfg.stage,
        "student": cfg.student.name,
        "student_family": cfg.student.family,
        "student_size_b": cfg.student.size_b,
        "strong": cfg.mix.strong.name,
        "weak": cfg.mix.weak.name,
        "strong_cot": cfg.mix.strong.cot,
        "weight": cfg.mix.weight,
        "mix_seed": cfg.mix.seed,
        "finetune_mode": cfg.finetune_mode.mode,
        "seed": cfg.seed,
        "benchmarks": list(cfg.benchmark),
    }


def plan(cfg: DictConfig, store: Store) -> list[dict[str, Any]]:
    """Rows ``{role, key, done}`` for every artifact the job's stage needs; touches no model."""
    specs = job_specs(cfg)
    return [{"role": r, "key": specs[r].key, "done": store.is_done(specs[r].key)} for r in needed_roles(cfg, specs)]


def _log_plan(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        log.info("  %-28s %-30s %s", row["role"], row["key"], "done" if row["done"] else "to build")


def run_job(
    cfg: DictConfig, job_dir: str | Path, *, group: str | None = None, overrides: Sequence[str] = (),
    gpus: int | None = None,
) -> dict[str, Any]:
    """Validate, then run ``cfg.stage`` for one job and write ``<job_dir>/result.json``.

    Returns:
        The result dict (also written): ``status``, ``job`` (identity), ``artifacts`` (role -> key),
        ``scores``/``untuned`` (benchmark -> scores), ``timings`` (seconds per stage), ``plan``.

    Raises:
        ConfigError: before any work, for a bad config value, or (``gpus`` given, stage other than plan) the
            first preflight refusal (:mod:`mixgap.plan.preflight`): the job cannot fit its ``gpus`` GPUs.
        PoolMissing, DataError, ModelSourceError: a one-line reason the job cannot run here.
    """
    from mixgap.core.tracking import make_tracker  # noqa: PLC0415

    validate(cfg, overrides)
    job_dir = Path(job_dir)
    if cfg.stage in ("report", "analyze"):
        from mixgap.results import analysis, report  # noqa: PLC0415

        return (report if cfg.stage == "report" else analysis).run(cfg, Store(cfg.paths.cache))
    store = Store(cfg.paths.cache)
    runrecord.check_store(job_dir, group, store.root)
    result: dict[str, Any] = {
        "status": "running", "job": job_identity(cfg), "store": str(store.root), "timings": {}
    }
    if cfg.stage != "plan":
        runrecord.start(job_dir, result)  # status running before any work
    try:
        rows = plan(cfg, store)
        result["plan"] = rows
        log.info("job %s: stage=%s, %d artifacts", job_dir.name, cfg.stage, len(rows))
        _log_plan(rows)
        result["preflight"] = _preflight_hook(cfg, store, gpus)
    except Exception as err:  # a refused or unplannable job: never left "running"
        if cfg.stage != "plan":
            result.update(status="failed", error=f"{type(err).__name__}: {err}"[:500])
            write_json_atomic(job_dir / RESULT, result)
        raise
    if cfg.stage == "plan":
        result["status"] = "planned"
        write_json_atomic(job_dir / RESULT, result)
        return result
    tracker = make_tracker(cfg, group=group or str(job_dir.parent), job_type=cfg.stage, name=job_dir.name, run_dir=job_dir)
    exit_code = 1
    try:
        with runrecord.interruptible(result):
            result.update(build(cfg, store, tracker, result["timings"]))
        result["reused_build_s"] = runrecord.reused_build_times(store, rows)
        result["status"] = "done"
        result["wandb_run_id"] = tracker.run_id
        exit_code = 0
    except Exception as err:
        result["error"] = f"{type(err).__name__}: {err}"[:500]
        raise
    finally:
        if result["status"] == "running":
            result["status"] = "failed"
        write_json_atomic(job_dir / RESULT, result)
        tracker.finish(exit_code=exit_code)
    return result


def _preflight_hook(cfg: DictConfig, store: Store, gpus: int | None) -> dict[str, Any]:
    """The job's preflight (planned for ``gpus``, 1 when unknown); refuses a non-plan job that cannot fit."""
    from mixgap.core.config import ConfigError  # noqa: PLC0415
    from mixgap.plan.preflight import log_preflight, preflight  # noqa: PLC0415

    report = preflight(cfg, gpus or 1, store)
    log_preflight(report)
    if gpus is not None and cfg.stage != "plan" and report["refusals"]:
        raise ConfigError(report["refusals"][0])
    if gpus is not None and (report["eval_tensor_parallel_size"] or 1) > cfg.eval.tensor_parallel_size:
        cfg.eval.tensor_parallel_size = report["eval_tensor_parallel_size"]  # not in the eval key
    return report


def _build_pool(cfg: DictConfig, store: Store, role: str, specs: dict[str, ArtifactSpec], tracker: Any) -> Path:
    """The finished pool of ``role``, generating it first when ``data.missing_pool`` allows."""
    from mixgap.stages import generate  # noqa: PLC0415

    teacher = cfg.teacher if role == "teacher" else cfg.mix[role]
    gen_spec, pool_spec = specs[f"generation.{role}"], specs[f"pool.{role}"]
    # stage=generate is what makes pools; dataset imports are cheap
    policy = "generate" if cfg.stage == "generate" or teacher.backend == "dataset" else cfg.data.missing_pool
    if not store.is_done(gen_spec.key) and policy != "generate":
        if policy == "wait":  # wait for a job generating it right now, if any
            with store.holding(gen_spec.key):
                pass
        if not store.is_done(gen_spec.key):
            raise PoolMissing(
                f"the {teacher.name} pool ({gen_spec.key}) is not in {store.root}; make it first with: "
                f"python launch.py stage=generate teacher={teacher.name}"
            )
    gen_dir = store.get_or_build(
        gen_spec, lambda out, work: generate.build_generation(teacher, cfg, store, out, work, tracker)
    )
    return store.get_or_build(pool_spec, lambda out, work: generate.build_pool(gen_dir, teacher, out))


def build(cfg: DictConfig, store: Store, tracker: Any, timings: dict[str, float]) -> dict[str, Any]:
    """Build every artifact ``cfg.stage`` needs, in order; returns ``artifacts``, ``scores``, ``untuned``, ``counts``."""
    from mixgap.stages import evaluate, mix, train  # noqa: PLC0415

    specs = job_specs(cfg)
    roles = needed_roles(cfg, specs)
    out: dict[str, Any] = {"artifacts": {r: specs[r].key for r in roles}, "counts": {}}
    pools = {}
    for role in ("teacher", "strong", "weak"):
        if f"pool.{role}" in roles:
            with timed(timings, f"generate.{role}", store):
                pools[role] = _build_pool(cfg, store, role, specs, tracker)
                out["counts"][f"pool.{role}"] = store.manifest(specs[f"pool.{role}"].key).get("counts", {})
    if cfg.stage == "prepare":
        with timed(timings, "prepare"):
            models.resolve_model(cfg.student, store)
    if cfg.stage == "predict":
        from mixgap.stages.predict import build_learnability  # noqa: PLC0415

        with timed(timings, "predict"):
            out["learnability"] = build_learnability(cfg, store, specs, pools, tracker)
    if "mixture" not in roles:
        return out
    with timed(timings, "mix", store):
        mixture = store.get_or_build(
            specs["mixture"], lambda o, _w: mix.build_mixture(pools["strong"], pools["weak"], cfg.mix, o)
        )
        counts = store.manifest(specs["mixture"].key).get("counts", {})  # the id lists stay in the manifest
        out["counts"]["mixture"] = {k: v for k, v in counts.items() if not k.endswith("_ids")}
        benchmarks, overlap = data.evaluation_sets(
            cfg.benchmark, data_root(cfg), mix.read_mixture(mixture), cfg.data.decontamination, cfg.eval.limit
        )
        out["counts"]["decontamination"] = {"policy": cfg.data.decontamination, "overlap": overlap}
    if cfg.stage == "mix":
        return out
    with timed(timings, "prepare"):  # after the data checks: a data error never waits for a model
        student_path = models.resolve_model(cfg.student, store)
    if cfg.stage == "all" and "predict.strong" in roles:
        from mixgap.stages.predict import build_learnability  # noqa: PLC0415

        with timed(timings, "predict"):
            out["learnability"] = build_learnability(cfg, store, specs, pools, tracker, student_path)
    checkpoint = None
    if "checkpoint" in roles:
        with timed(timings, "train", store):
            checkpoint = store.get_or_build(
                specs["checkpoint"],
                lambda o, w: train.build_checkpoint(cfg, mixture, student_path, o, w, tracker, pools=pools),
            )
            out["counts"]["train"] = store.manifest(specs["checkpoint"].key).get("counts", {})
    for arm, model_path in (("untuned", student_path), ("tuned", checkpoint)):
        if not any(r.startswith(f"eval.{arm}.") for r in roles):
            continue
        with timed(timings, f"evaluate.{arm}", store):  # one engine pass over every benchmark (evaluate.evaluate_model)
            arm_specs = {name: specs[f"eval.{arm}.{name}"] for name in cfg.benchmark}
            scores = evaluate.evaluate_model(cfg, store, str(model_path), arm_specs, benchmarks, tracker)
            out["scores" if arm == "tuned" else "untuned"] = evaluate.with_average(scores)
    if cfg.eval.get("judge") is not None and any(r.startswith("eval.") for r in roles):
        from mixgap.stages import judge  # noqa: PLC0415

        with timed(timings, "judge", store):  # its own pass: one judge load for every evaluation of the job
            judge.judge_job(cfg, store, specs, roles, benchmarks, out)
    return out


@contextmanager
def timed(timings: dict[str, float], name: str, store: Store | None = None) -> Iterator[None]:
    """Add the wall seconds of the block to ``timings[name]`` (also when it raises); with ``store``, the
    seconds it waited for other processes' locks go to ``timings["wait.<name>"]`` instead."""
    start, waited = time.perf_counter(), store.wait_s if store is not None else 0.0
    log.info("stage %s ...", name)
    try:
        yield
    finally:
        wait = (store.wait_s - waited) if store is not None else 0.0
        log.info("stage %s: %.0f s", name, time.perf_counter() - start)
        timings[name] = round(timings.get(name, 0.0) + time.perf_counter() - start - wait, 3)
        if wait:
            timings[f"wait.{name}"] = round(timings.get(f"wait.{name}", 0.0) + wait, 3)
