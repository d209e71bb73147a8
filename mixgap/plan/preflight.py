"""Preflight: will a job run on its allocation, and what will it cost? Pure arithmetic, no model loaded.

:func:`preflight` plans one composed job config for ``gpus`` GPUs of ``cluster.gpu_memory_gb`` each: the
training layout (world size, per-device batch, gradient accumulation giving exactly the configured global
batch), memory per GPU for training and for vLLM generation/evaluation, time, and the refusals (one line
each, naming the field, the value and what is allowed). ``stage=plan`` writes its result into each job's
``result.json``; the multirun sweeper (``hydra_plugins/mixgap_sweeper``) runs it on every sweep point before
the launcher starts anything; the train stage takes its batch layout from :func:`mixgap.stages.train.batching.batch_layout`.

It plans what the job itself builds on its allocation: with ``data.missing_pool`` ``wait``/``fail`` (or a
teacher pool already in the store, or an imported pool) the job generates no teacher pool, so the teacher's
memory is not its own; evaluation of a student too large for one GPU is planned with the smallest tensor
parallel size that fits (:func:`eval_tensor_parallel`).

The formulas and their sources are in :mod:`mixgap.plan.estimates`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict
from typing import Any

from omegaconf import DictConfig

from mixgap.core.config import ConfigError
from mixgap.plan.estimates import (
    CHARS_PER_TOKEN,
    GB,
    OVERHEAD_GB,
    PAPER_CHARS,
    PAPER_EXAMPLES,
    PROMPT_TOKENS,
    activation_bytes,
    decode_rate,
    eval_tensor_parallel,
    generation_memory_gb,
    largest_layer_params,
    lora_params,
    memory_remedies,
    model_states_bytes,
    one_node_hours,
    tensor_parallel_refusal,
    train_hours,
)
from mixgap.plan.jobs import JobPlan, generating_teachers
from mixgap.stages.backends import data_parallel_size
from mixgap.stages.evaluate import sampling_fields
from mixgap.stages.train.batching import batch_layout

log = logging.getLogger(__name__)
NODE_GPUS = 8  # the one-node schedule of summary_lines: one node of 8 GPUs (hydra/launcher=slurm's allocation)


def training_tokens(cfg: DictConfig, plan: JobPlan, store: Any = None) -> tuple[float, str]:
    """Tokens of one epoch of the job's mixture and where the figure comes from.

    From the pool manifests in ``store`` when both are done (kept problems of the smaller pool, mean
    response length in tokens, or characters / ``CHARS_PER_TOKEN``), else the paper's released data
    (``PAPER_EXAMPLES`` rows, ``PAPER_CHARS`` by CoT kind); mixed by ``mix.weight``; plus ``PROMPT_TOKENS``
    per example as an upper bound of the prompt.
    """
    lengths, examples, source = {}, [], "paper"
    if store is not None:
        try:
            for role in ("strong", "weak"):
                key = plan.key(f"pool.{role}")
                if not store.is_done(key):
                    raise KeyError(key)
                counts = store.manifest(key).get("counts", {})
                length = counts["length"]
                per = length["mean"] / (1 if length["unit"] == "tokens" else CHARS_PER_TOKEN)
                lengths[role], _ = per, examples.append(counts["kept"])
            source = "pool manifests"
        except (KeyError, TypeError, ValueError, ConfigError):
            lengths, examples, source = {}, [], "paper"
    if not lengths:
        lengths = {r: PAPER_CHARS[cfg.mix[r].cot] / CHARS_PER_TOKEN for r in ("strong", "weak")}
        examples = [PAPER_EXAMPLES]
    w = float(cfg.mix.weight)
    mean = w * lengths["strong"] + (1 - w) * lengths["weak"] + PROMPT_TOKENS
    n = min(examples)
    return n * mean, f"{source}: {n} examples x {mean:.0f} tokens"


def eval_samples(cfg: DictConfig, bench: DictConfig) -> int:
    """Completions one evaluation arm decodes on ``bench``: problems (the benchmark's size, cut by
    ``benchmark.<key>.limit`` / ``eval.limit``; its ``size`` is in its YAML) x samples per problem (:func:`mixgap.stages.evaluate.sampling_fields`)."""
    problems = min(bench.size, bench.limit or math.inf, cfg.eval.limit or math.inf)
    sampling = sampling_fields(cfg.eval, bench)
    return int(problems) * (sampling["n_samples"] if sampling else 1)


def launcher_gpus(launcher: DictConfig | None) -> int:
    """GPUs per job of a Hydra launcher config: ``gpus_per_node x nodes`` for submitit launchers, 1 for
    the basic launcher (or a launcher without GPUs, e.g. the CPU test cluster's ``gpus_per_node: null``)."""
    if launcher is None or "gpus_per_node" not in launcher:
        return 1
    return max(1, int(launcher.get("gpus_per_node") or 1)) * max(1, int(launcher.get("nodes") or 1))


def preflight(cfg: DictConfig, plan: JobPlan, gpus: int, store: Any = None) -> dict[str, Any]:
    """Plan one composed job for ``gpus`` GPUs of ``cfg.cluster.gpu_memory_gb``: layout, memory, time, refusals.

    Only what the job's plan builds is checked: training when it builds the checkpoint, evaluation when it builds
    an evaluation, and the teachers it would generate with (:func:`mixgap.plan.jobs.generating_teachers`).

    Args:
        cfg: a composed, validated job config (``MixgapConfig``).
        plan: its plan (:func:`mixgap.plan.jobs.make_plan`).
        gpus: GPUs of the job's allocation (:func:`launcher_gpus`).
        store: the artifact store (``mixgap.core.store.Store``) or None; read for pool manifests and finished pools.

    Returns:
        ``world_size``, ``per_device_batch_size``, ``gradient_accumulation_steps``, ``global_batch_size``
        (None when the layout is refused), ``train_memory_gb_per_gpu``, ``generation_memory_gb_per_gpu``
        (the largest of evaluation and the teachers it generates with; None when nothing), ``eval_tensor_parallel_size``,
        ``train_hours_estimate``, ``eval_hours_estimate`` (upper bound: every completion runs to
        ``eval.max_new_tokens``; on ``data_parallel_size["evaluation"]`` replicas of ``eval_tokens_per_s`` each, the
        smaller of the compute and bandwidth bounds, which one in ``eval_rate_bound``), ``gpu_hours_estimate``
        (the allocation's GPUs x both), ``data_parallel_size`` (engine replicas ``gpus // TP`` per stage:
        ``evaluation``, ``judge``, ``generation``; None where the job has no such stage), ``tokens_source``,
        ``gpus``, ``gpu_memory_gb``, ``refusals`` (one-line reasons; empty: the job fits) and ``decisions``
        (what the run takes from the plan: ``eval_tensor_parallel_size``, ``eval_data_parallel_size``,
        ``judge_data_parallel_size``, ``generation_data_parallel_size`` = ``{teacher field: replicas}``).
    """
    memory = float(cfg.cluster.gpu_memory_gb)
    refusals: list[str] = []
    out: dict[str, Any] = {
        "gpus": gpus, "gpu_memory_gb": memory, "world_size": None, "per_device_batch_size": None,
        "gradient_accumulation_steps": None, "global_batch_size": None, "train_memory_gb_per_gpu": None,
        "generation_memory_gb_per_gpu": None, "eval_tensor_parallel_size": None, "train_hours_estimate": 0.0,
        "eval_hours_estimate": 0.0, "eval_untuned_hours_estimate": 0.0, "gpu_hours_estimate": 0.0,
        "eval_tokens_per_s": None, "eval_rate_bound": None, "tokens_source": None, "refusals": refusals,
        "data_parallel_size": {"evaluation": None, "judge": None, "generation": None},
    }
    generating: dict[str, int] = {}
    generation: list[float] = []
    if plan.builds("checkpoint"):
        _train(cfg, plan, gpus, store, out)
    if plan.builds("eval.") and cfg.student.get("arch") is not None:
        generation += _evaluation(cfg, plan, gpus, out)
    for field, teacher in generating_teachers(cfg, plan, store):
        generation += _teacher(field, teacher, gpus, memory, refusals)
        generating[field] = data_parallel_size(gpus, min(gpus, int(teacher.tensor_parallel_size)))
    judge = cfg.eval.get("judge")
    dp = out["data_parallel_size"]
    dp["generation"] = min(generating.values()) if generating else None
    dp["judge"] = (data_parallel_size(gpus, min(gpus, int(judge.tensor_parallel_size)))
                   if judge is not None and plan.builds("judge.") else None)
    if generation:
        out["generation_memory_gb_per_gpu"] = round(max(generation), 1)
    out["gpu_hours_estimate"] = round(gpus * (out["train_hours_estimate"] + out["eval_hours_estimate"]), 3)
    out["decisions"] = {"eval_tensor_parallel_size": out["eval_tensor_parallel_size"],
                        "eval_data_parallel_size": dp["evaluation"], "judge_data_parallel_size": dp["judge"],
                        "generation_data_parallel_size": generating}
    return out


def _train(cfg: DictConfig, plan: JobPlan, gpus: int, store: Any, out: dict[str, Any]) -> None:
    """The training part of :func:`preflight`: layout, memory per GPU and hours (into ``out``)."""
    cl, ft, student, arch, refusals = cfg.cluster, cfg.finetune_mode, cfg.student, cfg.student.get("arch"), out["refusals"]
    memory = float(cl.gpu_memory_gb)
    world = gpus if ft.launch != "local" else 1
    try:
        layout = batch_layout(ft.global_batch_size, ft.per_device_batch_size, world)
        out.update({k: v for k, v in asdict(layout).items() if k != "derived"})
    except ConfigError as err:
        refusals.append(str(err))
        layout = None
    if arch is None:
        return
    if ft.max_seq_len > arch.max_position_embeddings:
        refusals.append(
            f"finetune_mode.max_seq_len={ft.max_seq_len} is not allowed for student={student.name}; it must be "
            f"<= its context, max_position_embeddings={arch.max_position_embeddings}"
        )
    if layout is None:
        return
    lora = ft.mode == "lora"
    params = arch.params_b * 1e9
    trainable = lora_params(arch, ft.lora.r, list(ft.lora.target_modules)) if lora else params
    # on GPUs, launch=auto starts torchrun with DeepSpeed (mixgap.stages.train.launch); local: a plain Trainer
    zero = {"zero2": 2, "zero3": 3}.get(ft.deepspeed, 0) if ft.launch != "local" else 0
    states = model_states_bytes(params, trainable, largest_layer_params(arch), zero, world)
    acts = activation_bytes(arch, layout.per_device_batch_size * ft.max_seq_len, ft.gradient_checkpointing)
    gb = (states + acts) / GB + OVERHEAD_GB
    out["train_memory_gb_per_gpu"] = round(gb, 1)
    if gb > memory:
        refusals.append(
            f"finetune_mode.mode={ft.mode} for student={student.name} needs {gb:.1f} GB per GPU on {world} "
            f"GPU(s) (ZeRO-{zero or 'off'}, per-device batch {layout.per_device_batch_size} x "
            f"{ft.max_seq_len} tokens) > cluster.gpu_memory_gb={memory:g}; allowed: "
            + ", ".join(memory_remedies(ft.mode, world, ft.max_seq_len))
        )
    tokens, out["tokens_source"] = training_tokens(cfg, plan, store)
    out["train_hours_estimate"] = round(train_hours(params, tokens, ft.epochs, world, cl.gpu_bf16_tflops, cl.mfu, lora), 3)


def _evaluation(cfg: DictConfig, plan: JobPlan, gpus: int, out: dict[str, Any]) -> list[float]:
    """The evaluation part of :func:`preflight`: context, tensor parallel size, memory and hours (into ``out``);
    returns the generation memory per GPU it needs (empty when refused)."""
    cl, student, arch, refusals = cfg.cluster, cfg.student, cfg.student.arch, out["refusals"]
    memory = float(cl.gpu_memory_gb)
    context = cfg.eval.max_new_tokens + PROMPT_TOKENS
    max_len = cfg.eval.get("max_model_len")
    if max_len is not None and max_len > arch.max_position_embeddings:
        refusals.append(
            f"eval.max_model_len={max_len} is not allowed for student={student.name}; it must be <= its context, "
            f"max_position_embeddings={arch.max_position_embeddings}"
        )
    elif max_len is None and context > arch.max_position_embeddings:
        refusals.append(
            f"eval.max_new_tokens={cfg.eval.max_new_tokens} is not allowed for student={student.name}: with a "
            f"{PROMPT_TOKENS}-token prompt it exceeds max_position_embeddings={arch.max_position_embeddings}; "
            f"allowed: <= {arch.max_position_embeddings - PROMPT_TOKENS}"
        )
    bad_tp = tensor_parallel_refusal("eval.tensor_parallel_size", cfg.eval.tensor_parallel_size, arch, gpus)
    if bad_tp:
        refusals.append(bad_tp)
        return []
    # the engine's sequence: prompt + budget, cut at eval.max_model_len (vLLM ends a completion there)
    one_sequence = min(context, max_len or context, arch.max_position_embeddings)
    new_tokens = one_sequence - PROMPT_TOKENS if max_len is not None else cfg.eval.max_new_tokens
    tp = eval_tensor_parallel(arch, cfg.eval.tensor_parallel_size, gpus, memory, one_sequence, cfg.eval.batch_size)
    out["eval_tensor_parallel_size"] = tp
    if generation_memory_gb(arch, tp, one_sequence) > memory:
        refusals.append(
            f"evaluation of student={student.name} needs {generation_memory_gb(arch, tp, one_sequence):.1f} GB "
            f"per GPU at eval.tensor_parallel_size={tp} > cluster.gpu_memory_gb={memory:g}; allowed: a larger "
            f"eval.tensor_parallel_size dividing {arch.heads} heads, <= {gpus} GPUs"
        )
    samples = sum(eval_samples(cfg, cfg.benchmark[name]) for name in cfg.benchmark)
    rate, out["eval_rate_bound"] = decode_rate(arch, tp, cl, PROMPT_TOKENS, new_tokens)
    replicas = out["data_parallel_size"]["evaluation"] = data_parallel_size(gpus, tp)
    out["eval_tokens_per_s"] = round(rate, 1)
    one_arm = round(samples * new_tokens / (replicas * rate) / 3600, 3)
    tuned, untuned = plan.builds("eval.tuned."), plan.builds("eval.untuned.")
    out["eval_untuned_hours_estimate"] = one_arm if untuned else 0.0
    out["eval_hours_estimate"] = round(one_arm * tuned + out["eval_untuned_hours_estimate"], 3)
    # vLLM fills what the GPU has: the batch's KV cache, capped at the GPU's memory
    return [min(generation_memory_gb(arch, tp, one_sequence * cfg.eval.batch_size), memory)]


def _teacher(field: str, teacher: DictConfig, gpus: int, memory: float, refusals: list[str]) -> list[float]:
    """The generation part of :func:`preflight` for one teacher; returns its memory per GPU (empty when refused)."""
    t_arch = teacher.get("arch")
    context = teacher.sampling.max_new_tokens + PROMPT_TOKENS
    if context > teacher.max_model_len:
        refusals.append(
            f"{field}.sampling.max_new_tokens={teacher.sampling.max_new_tokens} is not allowed: with a "
            f"{PROMPT_TOKENS}-token prompt it exceeds {field}.max_model_len={teacher.max_model_len}"
        )
    if t_arch is None:
        return []
    if teacher.max_model_len > t_arch.max_position_embeddings:
        refusals.append(
            f"{field}.max_model_len={teacher.max_model_len} is not allowed for {teacher.name}; it must be <= "
            f"max_position_embeddings={t_arch.max_position_embeddings}"
        )
    bad_tp = tensor_parallel_refusal(f"{field}.tensor_parallel_size", teacher.tensor_parallel_size, t_arch, gpus)
    if bad_tp:
        refusals.append(bad_tp)
        return []
    need = generation_memory_gb(t_arch, teacher.tensor_parallel_size, min(context, teacher.max_model_len))
    if need > memory:
        refusals.append(
            f"{field}.tensor_parallel_size={teacher.tensor_parallel_size} is too small for {teacher.name}: "
            f"{need:.1f} GB per GPU > cluster.gpu_memory_gb={memory:g}"
        )
    return [need]


def log_preflight(report: dict[str, Any]) -> None:
    """Log one line of the plan (layout, memory per GPU, hours) and one per refusal."""
    log.info("preflight: %s", describe(report))
    for reason in report["refusals"]:
        log.error("preflight refused: %s", reason)


def _gb(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} GB"


def _replicas(report: dict[str, Any]) -> str:
    dp, bound = (report.get("data_parallel_size") or {}).get("evaluation"), report.get("eval_rate_bound")
    return (f" x data_parallel_size {dp}" if dp else "") + (f", {bound}-bound" if bound else "")


def describe(report: dict[str, Any]) -> str:
    """One line: GPUs, batch layout, train/generation memory per GPU, the evaluation's TP x replicas and its
    decode bound, hours and GPU-hours."""
    layout = (f"world {report['world_size']} x per-device {report['per_device_batch_size']} x accumulation "
              f"{report['gradient_accumulation_steps']} = global {report['global_batch_size']}"
              if report["world_size"] else "no training")
    return (f"{report['gpus']} GPU(s) of {report['gpu_memory_gb']:g} GB; {layout}; train {_gb(report['train_memory_gb_per_gpu'])}"
            f"/GPU, generation {_gb(report['generation_memory_gb_per_gpu'])}/GPU (eval TP "
            f"{report['eval_tensor_parallel_size'] or '-'}{_replicas(report)}); train {report['train_hours_estimate']:.2f} h + eval <= "
            f"{report['eval_hours_estimate']:.2f} h = {report['gpu_hours_estimate']:.1f} GPU-h")


def summary_lines(results: list[dict[str, Any]]) -> tuple[list[str], bool]:
    """Lines for the sweep summary: one per job with a preflight (memory per GPU, hours), its refusals, the
    sweep's total GPU-hours and its wall time on one 8-GPU node (:func:`mixgap.plan.estimates.one_node_hours`);
    and whether any job was refused."""
    planned = [r for r in results if r.get("preflight")]
    if not planned:
        return [], False
    lines = ["preflight per job (memory per GPU; hours on the job's allocation):"]
    total, refused, node = 0.0, False, []
    seen_untuned: set[tuple] = set()
    for result in planned:
        pf, job = result["preflight"], result.get("job", {})
        name = f"{job.get('student')} w={job.get('weight')} {job.get('finetune_mode')}"
        lines.append(f"  {name:<28} {describe(pf)}")
        for reason in pf["refusals"]:
            lines.append(f"    REFUSED: {reason}")
            refused = True
        total += pf["gpu_hours_estimate"]
        hours = pf["train_hours_estimate"] + pf["eval_hours_estimate"]
        untuned = job.get("student"), tuple(job.get("benchmarks") or ())
        if untuned in seen_untuned:  # the untuned evaluation is one shared artifact per student: count it once
            total -= pf["gpus"] * pf.get("eval_untuned_hours_estimate", 0.0)
            hours -= pf.get("eval_untuned_hours_estimate", 0.0)
        seen_untuned.add(untuned)
        node.append((hours, pf["gpus"]))
    bad = sum(bool(r["preflight"]["refusals"]) for r in planned)
    lines.append(f"sweep total: {total:.1f} GPU-hours (train at cluster.mfu, evaluation on every replica at the "
                 f"smaller of cluster.decode_mfu and cluster.gpu_memory_bandwidth_gbs with every completion at "
                 f"eval.max_new_tokens: an upper bound; each untuned evaluation counted once; "
                 f"teacher generation and the LLM judge not included); {bad} of {len(planned)} jobs refused")
    wall = one_node_hours(node, NODE_GPUS)
    lines.append(f"one {NODE_GPUS}-GPU node: the sweep takes {wall:.1f} h ({wall / 24:.1f} days) with its jobs in "
                 f"sequence, each with its GPUs busy (a job of fewer GPUs shares the node with others)")
    return lines, refused


def job_gpus(stage: str, launcher: DictConfig | None) -> int | None:
    """GPUs to plan and enforce a job for: the launcher's (:func:`launcher_gpus`) for ``stage=plan`` and for
    submitit launchers; for the basic launcher 1 when a CUDA GPU is visible, else None (a CPU run: GPU memory
    does not apply, the preflight is recorded for 1 GPU but not enforced)."""
    if stage == "plan" or (launcher is not None and "gpus_per_node" in launcher):
        return launcher_gpus(launcher)
    import torch  # heavy: torch, only for a job about to run on the basic launcher

    return 1 if torch.cuda.is_available() else None
