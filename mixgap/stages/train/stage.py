"""The ``train`` stage: a mixture + a student + ``finetune_mode`` -> a fine-tuned checkpoint in the store.

:func:`checkpoint_spec` names the artifact (:mod:`mixgap.plan.jobs`); :func:`build_checkpoint` builds it:
tokenise the mixture with the student's chat template (over-long rows dropped and counted per source),
train in this process (CPU) or under ``torchrun`` over every GPU (DeepSpeed ZeRO as configured), resume
from the last checkpoint in the store's ``work_dir``, check a LoRA adapter (kept in ``adapter/``) and merge
it, save model + tokenizer + a ``generation_config.json`` that stops on the end-of-turn token, and check the
saved weights.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from mixgap.core.config import to_container
from mixgap.core.fields import check_field
from mixgap.core.schema import FinetuneConfig
from mixgap.core.store import ArtifactSpec
from mixgap.stages.data import Problem
from mixgap.stages.mix import read_mixture
from mixgap.stages.train import batching, checks, labels, launch, trainer

log = logging.getLogger(__name__)
#: where a LoRA checkpoint keeps its trained adapter (peft's folder), beside the merged model (the evaluation serves
#: one or the other: eval.lora_serving, mixgap.stages.serving)
ADAPTER_DIR = "adapter"
#: finetune_mode fields that do not change the trained weights: logging/checkpoint cadence, the memory
#: trade of activation recomputation, the ZeRO partitioning of the same computation, where it runs.
NOT_IN_KEY = ("logging_steps", "save_steps", "gradient_checkpointing", "deepspeed", "launch", "settings_source")


def checkpoint_spec(finetune_cfg: DictConfig, student_key: str, mixture_key: str) -> ArtifactSpec:
    """Store identity of a fine-tuned student: the weight-determining ``finetune_mode`` fields + inputs.

    The ``lora`` block counts only with ``mode=lora``. The student key already carries its chat template.
    """
    fields = {k: v for k, v in to_container(finetune_cfg).items() if k not in NOT_IN_KEY}
    if fields.get("mode") != "lora":
        fields.pop("lora", None)
    if fields.get("batch_unit", "examples") == "examples":  # pack_len is read only for packed batches
        fields.pop("pack_len", None)
    return ArtifactSpec("checkpoint", fields, (student_key, mixture_key))


def read_mixture_rows(mixture_dir: Path) -> list[Problem]:
    """The mixture's rows (``mix.read_mixture``): problems with meta ``response``/``source``/``teacher``."""
    return read_mixture(Path(mixture_dir))


def resolve_precision(precision: str, on_gpu: bool) -> str:
    """``auto`` -> ``bf16`` on GPU, ``fp32`` on CPU (the paper trains in bf16); else as given.

    Raises:
        ValueError: ``precision`` not one of ``finetune_mode.precision``'s choices.
    """
    check_field(FinetuneConfig, "precision", precision, "finetune_mode.precision")
    if precision == "auto":
        return "bf16" if on_gpu else "fp32"
    return precision


@dataclass(frozen=True)
class RunSettings:
    """How one training run executes on this machine: ``finetune`` (the ``finetune_mode`` subtree with the
    per-device batch the ranks run), ``world`` (its process layout), ``precision`` (``bf16``/``fp32``),
    ``deepspeed_config`` (a JSON path, or None when training runs in this process) and ``subprocess`` (a
    ``torchrun`` launch)."""

    finetune: dict[str, Any]
    world: launch.WorldPlan
    precision: str
    deepspeed_config: str | None
    subprocess: bool


def run_settings(ft: dict[str, Any], gpus: int, env: Mapping[str, str], per_device: int | None = None) -> RunSettings:
    """The settings of a run of ``ft`` (the plain ``finetune_mode``) with ``gpus`` visible CUDA devices and the
    process environment ``env`` (SLURM's and ``MIXGAP_CPU_PROCESSES``): pure, so every preset's run on a GPU
    node can be built on this CPU (``tests/unit/test_train_presets.py``).

    ``per_device``: the preflight's per-device batch (its decision ``train_per_device_batch_size``: the largest
    whose memory fits, :func:`mixgap.plan.preflight.train_layout`), or None; the ranks run at most it (and at most
    ``ft["per_device_batch_size"]``). With examples as the batch unit, the per-device batch is then the largest
    that divides the global batch on the world (:func:`mixgap.stages.train.batching.batch_layout`; accumulation
    keeps the global batch exactly); a packed-sequence batch is turned into examples once the lengths are known
    (:func:`build_checkpoint`).

    Raises:
        ValueError: a bad ``launch``, ``precision`` or ``MIXGAP_CPU_PROCESSES`` (named); ConfigError: a global
            batch no layout realises on the world.
    """
    ft = dict(ft)
    if per_device is not None and per_device < ft["per_device_batch_size"]:  # the configured batch does not fit memory
        log.info("finetune_mode.per_device_batch_size=%d -> %d: the preflight's largest that fits GPU memory",
                 ft["per_device_batch_size"], per_device)
        ft["per_device_batch_size"] = per_device
    subprocess_launch = launch.use_subprocess(ft["launch"], gpus, launch.cpu_processes(env))
    world = launch.world_plan(env, gpus) if subprocess_launch else launch.WorldPlan()
    if ft.get("batch_unit") != "packed_sequences":
        layout = batching.batch_layout(ft["global_batch_size"], ft["per_device_batch_size"], world.world_size)
        if layout.derived:  # e.g. global 8 on 8 GPUs at per-device 2: per-device 1, accumulation 1 (global kept)
            log.info("finetune_mode.per_device_batch_size=%d -> %d on %d GPUs (global batch %d, accumulation %d)",
                     ft["per_device_batch_size"], layout.per_device_batch_size, world.world_size,
                     layout.global_batch_size, layout.gradient_accumulation_steps)
        ft["per_device_batch_size"] = layout.per_device_batch_size  # what the ranks run (the key keeps the configured one)
        trainer.gradient_accumulation(ft["global_batch_size"], ft["per_device_batch_size"], world.world_size)
    return RunSettings(ft, world, resolve_precision(ft["precision"], gpus > 0),
                       launch.deepspeed_config(ft["deepspeed"]) if subprocess_launch else None, subprocess_launch)


def train_job(run: RunSettings, student_path: str, chat_template: str, work_dir: Path, out_dir: Path) -> trainer.TrainJob:
    """The :class:`~mixgap.stages.train.trainer.TrainJob` of ``run`` with its files in the key's ``work_dir``
    (a LoRA run saves its adapter to ``out_dir/adapter``, merged into the model at ``out_dir``)."""
    work_dir = Path(work_dir)
    return trainer.TrainJob(
        student_path=str(student_path), chat_template=None if chat_template == "model" else chat_template,
        finetune=run.finetune, examples_path=str(work_dir / "examples"), trainer_dir=str(work_dir / "trainer"),
        save_dir=str(Path(out_dir) / ADAPTER_DIR if run.finetune["mode"] == "lora" else out_dir),
        log_path=str(work_dir / "metrics.jsonl"), result_path=str(work_dir / "result.json"),
        precision=run.precision, deepspeed_config=run.deepspeed_config, world_size=run.world.world_size,
    )


def write_examples(examples: list, path: Path) -> None:
    """Save tokenised examples as a ``datasets`` folder (memory-mapped by every rank), atomically."""
    import datasets  # heavy: datasets (pyarrow), only when training

    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    datasets.Dataset.from_dict({
        "input_ids": [e.input_ids for e in examples],
        "labels": [e.labels for e in examples],
        "id": [e.id for e in examples],
        "source": [e.source for e in examples],
    }).save_to_disk(str(tmp))
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)


def _counts_metrics(counts: dict[str, Any]) -> dict[str, float]:
    metrics = {"train/examples": counts["examples"], "train/tokens": counts["tokens"]}
    for kind in ("dropped", "truncated"):
        for source, n in counts[kind].items():
            metrics[f"train/{kind}_{source}"] = n
    return metrics


def build_checkpoint(
    cfg: DictConfig, mixture_dir: Path, student_path: str, out_dir: Path, work_dir: Path, tracker: Any,
    per_device: int | None = None,
) -> dict[str, Any]:
    """Fine-tune the student on the mixture and write the checkpoint into ``out_dir``.

    Args:
        cfg: the job config (``finetune_mode``, ``student.chat_template``).
        mixture_dir: the finished mixture artifact.
        student_path: a local model folder or Hub id.
        out_dir: the artifact folder being built (model, tokenizer, generation config; LoRA: ``adapter/``).
        work_dir: the key's persistent scratch: tokenised examples, ``trainer/checkpoint-N`` (resume).
        tracker: ``Tracker``; gets loss, learning rate, tokens/s and the dropped/truncated counts.
        per_device: the preflight's per-device batch (:func:`run_settings`), or None: the configured one.

    Where it trains: ``finetune_mode.launch`` (``auto``: a ``torchrun`` subprocess over every GPU when
    there are GPUs, DeepSpeed as configured; this process on a CPU, DeepSpeed ignored; ``local`` /
    ``torchrun`` force one).

    Returns:
        Manifest extras ``{"counts": {examples, kept, dropped, truncated (per source), batch (unit,
        examples_per_step; packs with batch_unit=packed_sequences), tokens, training_turn (the first mixture
        row's ``id`` and its ``text`` as tokenised, ``labels.render_training_turn``),
        supervised_tokens, max_len, steps, final_loss, world_size, tokens_per_s, resumed_from, precision,
        deepspeed, launch, end_of_turn_token, eos_token_id, weights; LoRA: adapter (tensors, elements,
        dtype, :func:`mixgap.stages.train.checks.check_saved_adapter`)}}``.

    Raises:
        ValueError: a bad finetune field (named), a global batch not divisible by the world (ConfigError:
            no per-device batch realises it, :func:`mixgap.stages.train.batching.batch_layout`), a mixture
            row that cannot be tokenised (named by id), every row over ``max_seq_len``.
        RuntimeError: the training subprocess failed. CheckpointError: the saved weights or adapter are broken.
    """
    import torch  # heavy: torch, only when training
    from transformers import AutoTokenizer  # heavy: transformers, only when training


    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    run = run_settings(to_container(cfg.finetune_mode), gpus, os.environ, per_device)
    ft, plan, precision, ds_config = run.finetune, run.world, run.precision, run.deepspeed_config
    if cfg.finetune_mode.deepspeed and not run.subprocess:
        log.info("finetune_mode.deepspeed=%s ignored: training runs in this process (no GPU)", cfg.finetune_mode.deepspeed)

    tokenizer = labels.set_chat_template(AutoTokenizer.from_pretrained(student_path), cfg.student.chat_template)
    rows = read_mixture_rows(Path(mixture_dir))  # with drop_pair, already without the over-length problems
    examples, counts = labels.apply_overlength(
        labels.tokenize_mixture(rows, tokenizer, ft["prompt"], system=ft.get("system")), ft["max_seq_len"], ft["overlength"]
    )
    first = rows[0]  # apply_overlength refused a mixture with no example; tokenize_mixture one without a response
    counts["training_turn"] = {"id": first.id, "text": labels.render_training_turn(
        tokenizer, first.problem, first.meta["response"], ft["prompt"], ft.get("system"))}
    micro = ft["per_device_batch_size"] * plan.world_size
    if ft.get("batch_unit") == "packed_sequences":  # the global batch counts packs: turned into examples here
        counts["batch"] = batching.packed_batch([len(e.input_ids) for e in examples], ft["pack_len"],
                                                ft["global_batch_size"], micro)
        ft["global_batch_size"] = counts["batch"]["examples_per_step"]
        trainer.gradient_accumulation(ft["global_batch_size"], ft["per_device_batch_size"], plan.world_size)
    else:
        counts["batch"] = {"unit": "examples", "examples_per_step": ft["global_batch_size"]}
    tracker.log(_counts_metrics(counts), step=0)
    work_dir = Path(work_dir)
    write_examples(examples, work_dir / "examples")
    lora = ft["mode"] == "lora"
    job = train_job(run, student_path, cfg.student.chat_template, work_dir, out_dir)
    job_file = work_dir / "job.json"
    job.write(job_file)
    Path(job.result_path).unlink(missing_ok=True)
    if run.subprocess:
        launch.run_launch(launch.torchrun_command(plan, job_file), Path(job.log_path), tracker.log)
        result = _read_json(Path(job.result_path))
    else:
        result = trainer.run_training(job, sinks=[tracker.log])

    if lora:  # the adapter ZeRO-3 gathered on rank 0, checked before it is merged into the base
        (Path(job.save_dir) / "training_args.bin").unlink(missing_ok=True)
        counts["adapter"] = checks.check_saved_adapter(
            job.save_dir, checks.expected_adapter(student_path, trainer.lora_config(ft["lora"])))
        checks.merge_lora(str(student_path), job.save_dir, out_dir, precision)
    tokenizer.save_pretrained(out_dir)
    eot = labels.end_of_turn_id(tokenizer)
    eos = checks.write_generation_config(out_dir, eot, tokenizer.pad_token_id)
    weights = checks.check_saved_weights(out_dir, checks.expected_parameters(out_dir))
    (Path(out_dir) / "training_args.bin").unlink(missing_ok=True)
    counts.update(
        steps=result["steps"], final_loss=result["final_loss"], world_size=result["world_size"],
        tokens_per_s=result["tokens_per_s"], train_runtime_s=result["train_runtime_s"],
        resumed_from=result["resumed_from"], precision=precision, deepspeed=ft["deepspeed"] if ds_config else None,
        launch="torchrun" if run.subprocess else "local", end_of_turn_token=tokenizer.convert_ids_to_tokens(eot),
        eos_token_id=eos, weights=weights, ranks=result.get("ranks"),
    )
    tracker.summary({"train/final_loss": result["final_loss"], "train/steps": result["steps"],
                     **_counts_metrics(counts)})
    return {"counts": counts}


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise RuntimeError(f"training finished without writing {path}")
    return json.loads(path.read_text())


def run(ctx: Any, roles: Any) -> None:
    """The train step (stage contract, :mod:`mixgap.core.stage`): the checkpoint of the job's mixture and student,
    trained at the preflight's per-device batch (``ctx.decisions["train_per_device_batch_size"]``; the checkpoint's
    key keeps the configured one: the per-device batch changes how a step is computed, not the global batch)."""
    per_device = ctx.decisions.get("train_per_device_batch_size")
    student = dict(ctx.specs["student"].fields)  # the manifest records what the student was: revision or file digests
    ctx.paths["checkpoint"] = ctx.store.get_or_build(
        ctx.specs["checkpoint"],
        lambda out, work: {**build_checkpoint(ctx.cfg, ctx.path("mixture"), ctx.value("student"), out, work,
                                              ctx.tracker, per_device), "student": student},
    )
    counts = ctx.counts("checkpoint")
    mixture = ctx.counts("mixture")
    if "drop_pair" in mixture:  # the mixture left these problems out (finetune_mode.overlength=drop_pair)
        counts = {**counts, "drop_pair": mixture["drop_pair"]}
    ctx.result["counts"]["train"] = counts
    loss = counts.get("final_loss")
    ctx.receipt("train", f"{counts['examples']:,} examples ({sum(counts['dropped'].values()):,} dropped, "
                f"{sum(counts['truncated'].values()):,} truncated for length), {counts['steps']:,} optimiser step(s), final loss "
                + (f"{loss:.4f}" if loss is not None else "none"), ("checkpoint",))
