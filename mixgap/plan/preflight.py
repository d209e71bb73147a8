"""Preflight: will a job run on its allocation, and what will it cost? Arithmetic on the models' shapes (their YAML's
``arch:`` or their ``config.json``: :mod:`mixgap.plan.shapes`), no model loaded.

:func:`preflight` plans one composed job config for ``gpus`` GPUs of ``cluster.gpu_memory_gb`` each (or of
``memory_gb``, this machine's measured devices; :mod:`mixgap.plan.machine` says which): the training layout
(world size, the largest per-device batch whose memory fits, gradient accumulation giving exactly the configured
global batch: :func:`train_layout`), memory per GPU for training and for vLLM generation/evaluation/the LLM judge, time, and the refusals (one line each,
naming the field, the value and what is allowed). Memory is planned to at most ``1 - cluster.memory_headroom``
of each GPU. A job on the CPU (``cpu=True``) is refused only for what is wrong there too (contexts, the batch
layout): GPU memory and tensor parallelism do not apply. ``stage=plan`` writes its result into each job's
``result.json``; the multirun sweeper (``hydra_plugins/mixgap_sweeper``) runs it on every sweep point before
the launcher starts anything; the train stage runs the preflight's per-device batch (its ``decisions``) in the layout of
:func:`mixgap.stages.train.batching.batch_layout`.

It plans what the job itself builds on its allocation: with ``data.missing_pool`` ``wait``/``fail`` (or a
teacher pool already in the store, or an imported pool) the job generates no teacher pool, so the teacher's
memory is not its own; evaluation of a student too large for one GPU is planned with the smallest tensor
parallel size that fits (:func:`eval_tensor_parallel`).

The formulas and their sources are in :mod:`mixgap.plan.estimates`.
"""

from __future__ import annotations

import copy
import os
from dataclasses import asdict
from typing import Any

from omegaconf import DictConfig, open_dict

from mixgap.core.errors import ConfigError
from mixgap.plan.calibration import CalibrationError, planning_figures, read_calibration
from mixgap.plan.engines import arm_engine
from mixgap.plan.estimates import (
    PROMPT_TOKENS,
    decode_rate,
    eval_tensor_parallel,
    generation_memory_gb,
    memory_remedies,
    scoring_batch_tokens,
    scoring_hours,
    scoring_memory_gb,
    tensor_parallel_refusal,
    train_hours,
    train_memory_gb,
    usable_memory_gb,
)
from mixgap.plan.jobs import JobPlan, generating_teachers
from mixgap.plan.shapes import with_shapes
from mixgap.plan.table import ARMS
from mixgap.plan.workload import eval_samples, scoring_tokens, training_tokens
from mixgap.stages.backends.parallel import data_parallel_size
from mixgap.stages.predict import effective_max_seq_len
from mixgap.stages.train.batching import BatchLayout, exact_layouts

#: The cluster launcher a refusal names when a job does not fit where it is (conf/hydra/launcher/slurm.yaml).
CLUSTER_LAUNCHER = "slurm"


def cluster_gpus() -> int:
    """GPUs of a ``hydra/launcher=slurm`` job: ``MIXGAP_SLURM_GPUS_PER_NODE`` (its ``gpus_per_node``), default 8."""
    value = os.environ.get("MIXGAP_SLURM_GPUS_PER_NODE") or "8"
    try:
        return max(1, int(value))
    except ValueError:
        raise ConfigError(f"environment MIXGAP_SLURM_GPUS_PER_NODE={value!r} is not allowed; it must be an integer") from None


def launcher_gpus(launcher: DictConfig | None) -> int:
    """GPUs per job of a Hydra launcher config: ``gpus_per_node x nodes`` for submitit launchers, 1 for
    the basic launcher (or a launcher without GPUs, e.g. the CPU test cluster's ``gpus_per_node: null``)."""
    if launcher is None or "gpus_per_node" not in launcher:
        return 1
    return max(1, int(launcher.get("gpus_per_node") or 1)) * max(1, int(launcher.get("nodes") or 1))


def preflight(cfg: DictConfig, plan: JobPlan, gpus: int, store: Any = None, *, memory_gb: float | None = None,
              cpu: bool = False, launcher: str | None = None) -> dict[str, Any]:
    """Plan one composed job for ``gpus`` GPUs of ``memory_gb`` (default ``cfg.cluster.gpu_memory_gb``): layout,
    memory, time, refusals.

    Only what the job's plan builds is checked: training when it builds the checkpoint, evaluation when it builds
    an evaluation, the LLM judge when it judges, and the teachers it would generate with
    (:func:`mixgap.plan.jobs.generating_teachers`).

    Args:
        cfg: a composed, validated job config (``MixgapConfig``).
        plan: its plan (:func:`mixgap.plan.jobs.make_plan`).
        gpus: GPUs of the job's allocation (:func:`launcher_gpus`; ignored with ``cpu``: one process).
        store: the artifact store (``mixgap.core.store.Store``) or None; read for pool manifests and finished pools.
        memory_gb: memory per GPU in GB when it is measured (this machine's devices), else None.
        cpu: the job runs on the CPU: no GPU memory or tensor parallel refusal (its figures are still computed).
        launcher: the ``hydra/launcher`` the job runs under, named in its refusals (None: not named).

    Returns:
        ``world_size``, ``per_device_batch_size``, ``gradient_accumulation_steps``, ``global_batch_size``
        (None when the layout is refused; :func:`train_layout`), ``layout_reason`` (why the per-device batch is not
        the configured one; None when it is), ``train_memory_gb_per_gpu``, ``generation_memory_gb_per_gpu``
        (the largest of evaluation, the judge and the teachers it generates with; None when nothing),
        ``eval_tensor_parallel_size``, ``train_hours_estimate``, ``eval_hours_estimate`` (upper bound: every
        completion runs to ``eval.max_new_tokens``; on ``data_parallel_size["evaluation"]`` replicas of
        ``eval_tokens_per_s`` each, the smaller of the compute and bandwidth bounds, which one in ``eval_rate_bound``),
        ``gpu_hours_estimate`` (the allocation's GPUs x both), ``data_parallel_size`` (engine replicas ``gpus // TP``
        per stage: ``evaluation``, ``judge``, ``generation``; None where the job has no such stage),
        ``tokens_source``, ``gpus``, ``gpu_memory_gb``, ``usable_memory_gb``, ``cpu``, ``launcher``, ``refusals``
        (one-line reasons; empty: the job fits), ``gpu_refusals`` (those about GPU memory or tensor parallelism),
        ``calibration`` (with ``cluster.calibration``: which figures were measured, :func:`_calibrated`; else None),
        ``shapes`` (where a model's shape came from when not its YAML's ``arch:``, :func:`mixgap.plan.shapes.with_shapes`;
        a model whose shape is unknown or contradicts its ``config.json`` is a refusal), ``student_params_b`` (the
        student's planned parameters, billions; None without a shape) and ``decisions`` (what the run takes from the plan: ``train_per_device_batch_size``, ``eval_tensor_parallel_size``,
        ``eval_data_parallel_size``, ``judge_data_parallel_size``, ``generation_data_parallel_size`` =
        ``{teacher field: replicas}``).
    """
    memory = float(memory_gb or cfg.cluster.gpu_memory_gb)
    headroom = float(cfg.cluster.get("memory_headroom", 0.0))
    refusals: list[str] = []
    cfg, shapes = with_shapes(cfg, plan, store, refusals)
    cfg, calibration = _calibrated(cfg, refusals)
    out: dict[str, Any] = {
        "gpus": 0 if cpu else gpus, "gpu_memory_gb": round(memory, 1), "world_size": None,
        "per_device_batch_size": None, "gradient_accumulation_steps": None, "global_batch_size": None, "layout_reason": None,
        "train_memory_gb_per_gpu": None, "generation_memory_gb_per_gpu": None, "eval_tensor_parallel_size": None,
        "train_hours_estimate": 0.0, "eval_hours_estimate": 0.0, "eval_untuned_hours_estimate": 0.0,
        "score_hours_estimate": 0.0, "score_memory_gb_per_gpu": None, "score_traces": None,
        "gpu_hours_estimate": 0.0, "eval_tokens_per_s": None, "eval_rate_bound": None, "tokens_source": None,
        "trains": plan.builds("checkpoint"),
        "refusals": refusals, "gpu_refusals": [], "cpu": cpu, "launcher": launcher, "memory_headroom": headroom,
        "usable_memory_gb": usable_memory_gb(memory, headroom),
        "data_parallel_size": {"evaluation": None, "judge": None, "generation": None},
        "decisions": {}, "calibration": calibration, "shapes": shapes,
        "student_params_b": (cfg.student.arch or {}).get("params_b"),
    }
    gpus, generation = (1 if cpu else gpus), []
    generating: dict[str, int] = {}
    if plan.builds("scores.") and cfg.student.get("arch") is not None:
        _scoring(cfg, plan, store, out)
    if plan.builds("checkpoint"):
        _train(cfg, plan, gpus, store, out)
    out["evaluation"] = {arm: arm_engine(cfg, arm, cpu, cfg.student.get("arch")) for arm in ARMS
                         if plan.builds(f"completions.{arm}.")}
    if out["evaluation"] and cfg.student.get("arch") is not None:  # the verdicts load no model
        generation += _evaluation(cfg, plan, gpus, out)
    if plan.builds("judge.") and cfg.eval.get("judge") is not None:
        generation += _judge(cfg.eval.judge, gpus, out)
    for field, teacher in generating_teachers(cfg, plan, store):
        generation += _teacher(field, teacher, gpus, out)
        generating[field] = data_parallel_size(gpus, min(gpus, int(teacher.tensor_parallel_size)))
    judge = cfg.eval.get("judge")
    dp = out["data_parallel_size"]
    dp["generation"] = min(generating.values()) if generating else None
    dp["judge"] = (data_parallel_size(gpus, min(gpus, int(judge.tensor_parallel_size)))
                   if judge is not None and plan.builds("judge.") else None)
    if generation:
        out["generation_memory_gb_per_gpu"] = round(max(generation), 1)
    hours = out["train_hours_estimate"] + out["eval_hours_estimate"] + out["score_hours_estimate"]
    out["gpu_hours_estimate"] = round(gpus * hours, 3)  # the scoring's one GPU holds the whole allocation
    out["decisions"] = {"train_per_device_batch_size": out["per_device_batch_size"],
                        "eval_tensor_parallel_size": out["eval_tensor_parallel_size"],
                        "eval_data_parallel_size": dp["evaluation"], "judge_data_parallel_size": dp["judge"],
                        "generation_data_parallel_size": generating}
    return out


def _calibrated(cfg: DictConfig, refusals: list[str]) -> tuple[DictConfig, str | None]:
    """``cfg`` with ``cluster.mfu``/``cluster.decode_mfu`` measured by gpu-check when ``cluster.calibration`` names its
    file (:func:`mixgap.plan.calibration.planning_figures` for the job's student), and the note for the plan line;
    ``(cfg, None)`` without one. A file that cannot be used is a refusal; the assumed figures stay."""
    path, arch = cfg.cluster.get("calibration"), cfg.student.get("arch")
    if not path or arch is None:
        return cfg, None
    try:
        values, note = planning_figures(read_calibration(path), cfg.student.get("name"), float(arch.params_b))
    except CalibrationError as err:
        refusals.append(str(err))
        return cfg, None
    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        cfg.cluster.update(values)
    return cfg, note


def _gpu_refusal(out: dict[str, Any], reason: str) -> None:
    """Refuse for GPU memory or tensor parallelism, unless the job runs on the CPU (neither applies there)."""
    if not out["cpu"]:
        out["refusals"].append(reason)
        out["gpu_refusals"].append(reason)


def _where(out: dict[str, Any], gpus: int) -> str:
    """``<n> GPU(s) of hydra/launcher=<name>`` (or ``<n> GPU(s)``): where the job is planned, for refusals."""
    return f"{gpus} GPU(s)" + (f" of hydra/launcher={out['launcher']}" if out["launcher"] else "")


def _over(out: dict[str, Any]) -> str:
    """``> <usable> GB usable (<share> of <memory> GB, <source>; cluster.memory_headroom=<h>)`` for refusals."""
    head = out["memory_headroom"]
    source = "this machine's GPUs" if out["launcher"] == "basic" else f"cluster.gpu_memory_gb={out['gpu_memory_gb']:g}"
    return (f"> {out['usable_memory_gb']:.1f} GB usable ({1 - head:.0%} of {out['gpu_memory_gb']:g} GB, {source}; "
            f"cluster.memory_headroom={head:g})")


def train_layout(cfg: DictConfig, layouts: list[BatchLayout], usable_gb: float | None) -> tuple[BatchLayout, float, int, str | None]:
    """The training layout: the first of ``layouts`` (:func:`mixgap.stages.train.batching.exact_layouts`, largest
    per-device batch first, each giving exactly the global batch) whose memory per GPU
    (:func:`mixgap.plan.estimates.train_memory_gb`) is at most ``usable_gb`` (None: memory does not apply, the CPU:
    the first); when none fits, the last (per-device 1), which the caller refuses.

    Returns:
        (layout, its training memory in GB per GPU, the ZeRO stage assumed, why its per-device batch is not
        ``finetune_mode.per_device_batch_size`` or None: ``per-device 2 x 8 GPU(s) does not divide global 8``,
        ``per-device 2 would need 73.5 GB > 72.0 GB usable``).
    """
    configured, first = cfg.finetune_mode.per_device_batch_size, layouts[0]
    reasons = ([f"per-device {configured} x {first.world_size} GPU(s) does not divide global {first.global_batch_size}"]
               if first.derived else [])
    over = None
    for layout in layouts:
        gb, zero = train_memory_gb(cfg, layout.world_size, layout.per_device_batch_size)
        if usable_gb is None or gb <= usable_gb:
            if over is not None:
                reasons.append(f"per-device {over[0]} would need {over[1]:.1f} GB > {usable_gb:.1f} GB usable")
            break
        over = (layout.per_device_batch_size, gb)
    return layout, gb, zero, "; ".join(reasons) or None


def _cluster_fit(cfg: DictConfig, world: int) -> str | None:
    """``hydra/launcher=slurm (<n> GPUs of <m> GB: <x> GB per GPU)`` when training fits there (at the layout of
    :func:`train_layout`) and it has more GPUs than ``world``; else None."""
    gpus = cluster_gpus()
    if gpus <= world:
        return None
    try:
        layouts = exact_layouts(cfg.finetune_mode.global_batch_size, cfg.finetune_mode.per_device_batch_size, gpus)
    except ConfigError:
        return None
    memory = float(cfg.cluster.gpu_memory_gb)
    usable = usable_memory_gb(memory, float(cfg.cluster.get("memory_headroom", 0.0)))
    _, gb, _, _ = train_layout(cfg, layouts, usable)
    if gb > usable:
        return None
    return f"hydra/launcher={CLUSTER_LAUNCHER} ({gpus} GPUs of {memory:g} GB: {gb:.1f} GB per GPU)"


def _train(cfg: DictConfig, plan: JobPlan, gpus: int, store: Any, out: dict[str, Any]) -> None:
    """The training part of :func:`preflight`: layout (:func:`train_layout`), memory per GPU and hours (into ``out``)."""
    cl, ft, student, arch, refusals = cfg.cluster, cfg.finetune_mode, cfg.student, cfg.student.get("arch"), out["refusals"]
    world = gpus if ft.launch != "local" else 1
    try:
        layouts = exact_layouts(ft.global_batch_size, ft.per_device_batch_size, world)
        out.update({k: v for k, v in asdict(layouts[0]).items() if k != "derived"})
    except ConfigError as err:
        named = out["launcher"] and out["launcher"] != "basic"
        where = f"on {world} GPUs of hydra/launcher={out['launcher']}" if named else f"on {world} GPUs"
        refusals.append(str(err).replace(f"on {world} GPUs", where, 1))
        layouts = []
    if arch is None:
        return
    if ft.max_seq_len > arch.max_position_embeddings:
        refusals.append(
            f"finetune_mode.max_seq_len={ft.max_seq_len} is not allowed for student={student.name}; it must be "
            f"<= its context, max_position_embeddings={arch.max_position_embeddings}"
        )
    if not layouts:
        return
    layout, gb, zero, out["layout_reason"] = train_layout(cfg, layouts, None if out["cpu"] else out["usable_memory_gb"])
    out.update({k: v for k, v in asdict(layout).items() if k != "derived"})
    out["train_memory_gb_per_gpu"] = round(gb, 1)
    if gb > out["usable_memory_gb"]:
        lowered = f", lowered from {ft.per_device_batch_size}" if layout.derived else ""
        _gpu_refusal(out,
            f"finetune_mode.mode={ft.mode} for student={student.name} needs {gb:.1f} GB per GPU on {_where(out, world)} "
            f"(ZeRO-{zero or 'off'}, per-device batch {layout.per_device_batch_size} x {ft.max_seq_len} tokens{lowered}) "
            f"{_over(out)}; allowed: " + ", ".join(memory_remedies(ft.mode, world, ft.max_seq_len, _cluster_fit(cfg, world)))
        )
    tokens, out["tokens_source"] = training_tokens(cfg, plan, store)
    hours = train_hours(arch.params_b * 1e9, tokens, ft.epochs, world, cl.gpu_bf16_tflops, cl.mfu, ft.mode == "lora")
    out["train_hours_estimate"] = round(hours, 3)


def _scoring(cfg: DictConfig, plan: JobPlan, store: Any, out: dict[str, Any]) -> None:
    """The scoring of every problem a student-aware ``mix.strategy`` mixes by (``scores.<pool>``): its traces,
    hours (:func:`mixgap.plan.estimates.scoring_hours`) and memory on the one GPU it runs on
    (:func:`mixgap.plan.estimates.scoring_memory_gb`, the largest batch of ``predict.batch_size`` /
    ``predict.batch_tokens``), into ``out``; refused when that exceeds the usable memory."""
    arch, p, cl = cfg.student.arch, cfg.predict, cfg.cluster
    tokens, out["score_traces"], out["score_tokens_source"] = scoring_tokens(cfg, plan, store)
    out["score_hours_estimate"] = round(scoring_hours(arch.params_b * 1e9, tokens, cl.gpu_bf16_tflops, cl.mfu), 3)
    batch = scoring_batch_tokens(effective_max_seq_len(cfg), int(p.batch_size), int(p.batch_tokens))
    gb = out["score_memory_gb_per_gpu"] = round(scoring_memory_gb(arch, batch), 1)
    if gb > out["usable_memory_gb"]:
        _gpu_refusal(out, f"mix.strategy={cfg.mix.strategy} scores every problem with student={cfg.student.name} on one "
                          f"GPU: {gb:.1f} GB for batches of {batch} tokens {_over(out)}; allowed: a smaller "
                          f"predict.batch_tokens (now {p.batch_tokens}), GPUs with more memory, or mix.strategy=fixed")


def _evaluation(cfg: DictConfig, plan: JobPlan, gpus: int, out: dict[str, Any]) -> list[float]:
    """The evaluation part of :func:`preflight`: each arm's engine (``out["evaluation"]``,
    :func:`mixgap.plan.engines.arm_engine`: the served model or LoRA adapter, at ``eval.max_model_len`` or, a LoRA
    checkpoint's, ``eval.lora_max_model_len``), its context, one tensor parallel size for both arms (for the longer
    sequence), memory and hours (into ``out``); returns the generation memory per GPU it needs (empty when refused)."""
    cl, student, arch, refusals = cfg.cluster, cfg.student, cfg.student.arch, out["refusals"]
    memory = out["usable_memory_gb"]
    context = cfg.eval.max_new_tokens + PROMPT_TOKENS
    engines = {arm: out["evaluation"][arm] for arm in ARMS if arm in out["evaluation"]}
    for field, max_len in dict.fromkeys((e["context_field"], e["max_model_len"]) for e in engines.values()):
        if max_len is not None and max_len > arch.max_position_embeddings:
            refusals.append(f"{field}={max_len} is not allowed for student={student.name}; it must be <= its context, "
                            f"max_position_embeddings={arch.max_position_embeddings}")
        elif max_len is None and context > arch.max_position_embeddings:
            refusals.append(
                f"eval.max_new_tokens={cfg.eval.max_new_tokens} is not allowed for student={student.name}: with a "
                f"{PROMPT_TOKENS}-token prompt it exceeds max_position_embeddings={arch.max_position_embeddings}; "
                f"allowed: <= {arch.max_position_embeddings - PROMPT_TOKENS}")
    refusals += [e["refusal"] for e in engines.values() if e["refusal"]]
    bad_tp = tensor_parallel_refusal("eval.tensor_parallel_size", cfg.eval.tensor_parallel_size, arch, gpus)
    if bad_tp:
        _gpu_refusal(out, bad_tp)
        return []
    # each arm's engine sequence: prompt + budget, cut at its context (vLLM ends a completion there)
    sequence = {arm: min(context, e["max_model_len"] or context, arch.max_position_embeddings) for arm, e in engines.items()}
    new_tokens = {arm: sequence[arm] - PROMPT_TOKENS if e["max_model_len"] is not None else cfg.eval.max_new_tokens
                  for arm, e in engines.items()}
    longest = max(sequence.values())
    tp = eval_tensor_parallel(arch, cfg.eval.tensor_parallel_size, gpus, memory, longest, cfg.eval.batch_size)
    out["eval_tensor_parallel_size"] = tp
    need = generation_memory_gb(arch, tp, longest)
    if need > memory:
        _gpu_refusal(out,
            f"evaluation of student={student.name} needs {need:.1f} GB per GPU at eval.tensor_parallel_size={tp} "
            f"on {_where(out, gpus)} {_over(out)}; allowed: a larger eval.tensor_parallel_size dividing "
            f"{arch.heads} heads, <= {gpus} GPUs"
        )
    samples = sum(eval_samples(cfg, cfg.benchmark[name]) for name in cfg.benchmark)
    replicas = out["data_parallel_size"]["evaluation"] = data_parallel_size(gpus, tp)
    hours = {}
    for arm in engines:  # the untuned arm's rate is the one printed when it is built
        rate, bound = decode_rate(arch, tp, cl, PROMPT_TOKENS, new_tokens[arm])
        hours[arm] = round(samples * new_tokens[arm] / (replicas * rate) / 3600, 3)
        if out["eval_rate_bound"] is None:
            out["eval_tokens_per_s"], out["eval_rate_bound"] = round(rate, 1), bound
    out["eval_untuned_hours_estimate"] = hours.get("untuned", 0.0)
    out["eval_hours_estimate"] = round(sum(hours.values()), 3)
    # vLLM fills what the GPU has: the batch's KV cache, capped at the GPU's usable memory
    return [min(generation_memory_gb(arch, tp, longest * cfg.eval.batch_size), memory)]


def _engine(field: str, name: str, engine: DictConfig, context: int, gpus: int, out: dict[str, Any]) -> list[float]:
    """One vLLM engine of ``engine.tensor_parallel_size`` on ``engine.arch`` (a teacher's or the judge's): its
    context, tensor parallel size and memory per GPU for ``context`` tokens (prompt + new tokens, cut at
    ``engine.max_model_len``); returns the memory per GPU it needs (empty when refused or without an arch)."""
    arch, max_len, refusals = engine.get("arch"), engine.get("max_model_len"), out["refusals"]
    if max_len is not None and context > max_len:
        refusals.append(f"{field}.max_new_tokens={context - PROMPT_TOKENS} is not allowed: with a {PROMPT_TOKENS}-token "
                        f"prompt it exceeds {field}.max_model_len={max_len}")
    if arch is None:
        return []
    if max_len is not None and max_len > arch.max_position_embeddings:
        refusals.append(f"{field}.max_model_len={max_len} is not allowed for {name}; it must be <= "
                        f"max_position_embeddings={arch.max_position_embeddings}")
    bad_tp = tensor_parallel_refusal(f"{field}.tensor_parallel_size", engine.tensor_parallel_size, arch, gpus)
    if bad_tp:
        _gpu_refusal(out, bad_tp)
        return []
    need = generation_memory_gb(arch, engine.tensor_parallel_size, min(context, max_len or context))
    if need > out["usable_memory_gb"]:
        _gpu_refusal(out, f"{field}.tensor_parallel_size={engine.tensor_parallel_size} is too small for {name}: "
                          f"{need:.1f} GB per GPU on {_where(out, gpus)} {_over(out)}")
    return [need]


def _teacher(field: str, teacher: DictConfig, gpus: int, out: dict[str, Any]) -> list[float]:
    """The generation part of :func:`preflight` for one teacher (:func:`_engine`, its sampling budget)."""
    context = teacher.sampling.max_new_tokens + PROMPT_TOKENS
    if context > teacher.max_model_len:  # named by its sampling field
        out["refusals"].append(f"{field}.sampling.max_new_tokens={teacher.sampling.max_new_tokens} is not allowed: with "
                               f"a {PROMPT_TOKENS}-token prompt it exceeds {field}.max_model_len={teacher.max_model_len}")
        context = teacher.max_model_len
    return _engine(field, teacher.name, teacher, context, gpus, out)


def _judge(judge: DictConfig, gpus: int, out: dict[str, Any]) -> list[float]:
    """The LLM judge's part of :func:`preflight` (:func:`_engine`): a vLLM judge's tensor parallel size and
    memory for one sequence of its engine's context, ``judge.max_model_len`` or, when null, the judge model's own
    ``arch.max_position_embeddings`` (vLLM's default, and what it must fit in its KV cache to start), so any
    judge prompt up to that context is answered; without an arch, a judge prompt (``PROMPT_TOKENS``) +
    ``max_new_tokens``. An hf judge (the CPU stand-in) is not a vLLM engine: not planned."""
    if judge.backend != "vllm":
        return []
    arch = judge.get("arch")
    context = judge.max_model_len or (arch.max_position_embeddings if arch is not None else
                                      judge.max_new_tokens + PROMPT_TOKENS)
    return _engine("eval.judge", judge.name, judge, context, gpus, out)
