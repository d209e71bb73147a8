"""One SFT run with the transformers ``Trainer``: full or LoRA, padded or padding-free packed batches, resume.

The run is described by a :class:`TrainJob` (plain JSON, so the same run can execute in this process on a
CPU or in every rank of a ``torchrun`` launch, ``python -m mixgap.stages.train <job.json>``). Optimiser and
schedule are the paper's (Li et al., 2025, Table 5: AdamW, lr 1e-5, cosine, 2 epochs; warmup is
LLaMA-Factory's ratio), through ``TrainingArguments``. TRL's ``SFTTrainer`` is not used: our labels are
built by :mod:`mixgap.stages.train.labels`, and its ``assistant_only_loss`` needs ``{% generation %}`` markers that
stock templates lack (an all-zero mask here); a plain ``Trainer`` keeps the labels untouched.

Packing (``finetune_mode.packing``) is padding-free, see :mod:`mixgap.stages.train.packing`; the model runs with
``use_cache=False`` (the Trainer's default too): with a KV cache transformers skips the packed mask.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mixgap.core.fields import check_field
from mixgap.core.files import write_json_atomic
from mixgap.core.schema import FinetuneConfig
from mixgap.stages.train.labels import set_chat_template
from mixgap.stages.train.loss import apply_loss_normalization, average_tokens_across_devices
from mixgap.stages.train.packing import attention_for, make_collator
from mixgap.stages.train.step_losses import StepLosses, read_losses

log = logging.getLogger(__name__)
Sink = Callable[[Mapping[str, float], int], None]
_TRACKED = {"loss": "train/loss", "learning_rate": "train/learning_rate", "grad_norm": "train/grad_norm",
            "epoch": "train/epoch"}


@dataclass
class TrainJob:
    """Everything one training run needs, as plain values (written to ``<work_dir>/job.json``).

    ``finetune`` is the plain ``finetune_mode`` subtree; ``precision`` is resolved (``bf16``/``fp32``);
    ``deepspeed_config`` is a JSON path or None; ``save_dir`` receives the final weights (the adapter for
    LoRA); ``trainer_dir`` holds the periodic checkpoints (resume); ``log_path``/``result_path`` are JSONL
    metrics and the JSON result written by rank 0.
    """
    student_path: str
    chat_template: str | None
    finetune: dict[str, Any]
    examples_path: str
    trainer_dir: str
    save_dir: str
    log_path: str
    result_path: str
    precision: str = "fp32"
    deepspeed_config: str | None = None
    world_size: int = 1

    def write(self, path: Path) -> None:

        write_json_atomic(path, asdict(self))

    @classmethod
    def read(cls, path: str | os.PathLike) -> TrainJob:
        return cls(**json.loads(Path(path).read_text()))


def gradient_accumulation(global_batch: int, per_device: int, world_size: int) -> int:
    """Optimiser steps accumulate ``global / (per_device x world_size)`` micro-batches (paper: 8 = 4 x 2).

    Raises:
        ValueError: the global batch is not a positive multiple of ``per_device x world_size``.
    """
    micro = per_device * world_size
    if global_batch <= 0 or per_device <= 0 or global_batch % micro:
        raise ValueError(
            f"finetune_mode.global_batch_size={global_batch} is not allowed with per_device_batch_size={per_device} "
            f"on {world_size} device(s); it must be a positive multiple of {micro}"
        )
    return global_batch // micro


def training_arguments(job: TrainJob, *, use_cpu: bool):
    """``TrainingArguments`` for ``job`` (created before the model so ZeRO-3 can partition it at load).

    Raises:
        ValueError: ``warmup_ratio`` outside [0, 1) or a global batch not divisible (see
            :func:`gradient_accumulation`).
    """
    from transformers import TrainingArguments  # heavy: transformers, imported only when used

    ft = job.finetune
    check_field(FinetuneConfig, "warmup_ratio", ft["warmup_ratio"], "finetune_mode.warmup_ratio")
    return TrainingArguments(
        output_dir=job.trainer_dir,
        per_device_train_batch_size=ft["per_device_batch_size"],
        gradient_accumulation_steps=gradient_accumulation(
            ft["global_batch_size"], ft["per_device_batch_size"], job.world_size
        ),
        learning_rate=ft["learning_rate"],
        num_train_epochs=ft["epochs"],
        max_steps=ft["max_steps"],
        lr_scheduler_type=ft["lr_scheduler"],
        warmup_steps=ft["warmup_ratio"],  # a float < 1 is a ratio of the total steps (transformers 5)
        weight_decay=ft["weight_decay"],
        optim="adamw_torch",
        bf16=job.precision == "bf16",
        # the pinned transformers (5.20) knows these names; 5.23 adds activation_checkpointing* as their new names
        gradient_checkpointing=ft["gradient_checkpointing"],
        gradient_checkpointing_kwargs={"use_reentrant": False},
        save_strategy="steps",
        save_steps=ft["save_steps"],
        save_total_limit=2,  # the latest and one before it, in case the latest was cut by a kill
        logging_steps=ft["logging_steps"],
        seed=ft["seed"],
        data_seed=ft["seed"],
        deepspeed=job.deepspeed_config,
        use_cpu=use_cpu,
        report_to=[],
        remove_unused_columns=False,
        dataloader_num_workers=0,
        include_num_input_tokens_seen="all" if ft["packing"] else "non_padding",
        ddp_find_unused_parameters=False,
        average_tokens_across_devices=average_tokens_across_devices(ft.get("loss_normalization", "global_tokens")),
    )


def attach_deepspeed_comm(backend: str = "gloo") -> None:
    """Give DeepSpeed's communication layer the process group accelerate already opened (CPU ranks).

    On GPUs accelerate starts the world through ``deepspeed.comm.init_distributed``; with ``use_cpu`` it
    opens a plain ``torch.distributed`` gloo group instead and DeepSpeed's own layer stays empty, so
    ``zero.Init`` (ZeRO-3 partitioning at model load) reads a world of 1 and refuses the batch
    (``train_batch_size 4 != 1 * 2 * 1``). ``init_distributed`` wraps an initialised torch group without
    opening a new one (deepspeed 0.19 ``deepspeed/comm/comm.py``); a no-op when already attached.
    """
    import deepspeed.comm as ds_dist  # heavy: DeepSpeed, imported only when used

    if not ds_dist.is_initialized():
        ds_dist.init_distributed(dist_backend=backend, auto_mpi_discovery=False)


def last_complete_checkpoint(trainer_dir: str | os.PathLike) -> str | None:
    """The newest ``checkpoint-N`` whose ``trainer_state.json`` (written last by the Trainer) parses.

    Newer folders without it were cut by a kill mid-save; they are removed so the Trainer's rotation
    never keeps a broken checkpoint. Returns None when there is nothing to resume from.
    """
    root = Path(trainer_dir)
    if not root.is_dir():
        return None
    steps = sorted(
        (int(p.name.split("-")[1]), p) for p in root.glob("checkpoint-*") if p.name.split("-")[1].isdigit()
    )
    for _step, path in reversed(steps):
        try:
            json.loads((path / "trainer_state.json").read_text())
            return str(path)
        except (OSError, json.JSONDecodeError):
            log.warning("removing incomplete checkpoint %s (no readable trainer_state.json)", path)
            shutil.rmtree(path, ignore_errors=True)
    return None


def _callbacks(sinks: list[Sink]):
    from transformers import TrainerCallback  # heavy: transformers, imported only when used

    class MetricsCallback(TrainerCallback):
        """Forward loss, lr, grad norm and tokens/s to the sinks (rank 0); log the final step too."""
        def __init__(self):
            self.last: tuple[float, int] | None = None

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= state.max_steps:
                control.should_log = True  # the final loss is always logged, whatever logging_steps is
            return control

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs or "loss" not in logs:
                return
            now, seen = time.perf_counter(), int(state.num_input_tokens_seen)
            metrics = {_TRACKED[k]: float(v) for k, v in logs.items() if k in _TRACKED and v is not None}
            if self.last is not None and now > self.last[0] and seen >= self.last[1]:
                metrics["train/tokens_per_s"] = (seen - self.last[1]) / (now - self.last[0])
            self.last = (now, seen)
            for sink in sinks:
                sink(metrics, state.global_step)

        def on_train_begin(self, args, state, control, **kwargs):
            self.last = (time.perf_counter(), int(state.num_input_tokens_seen))

    return [MetricsCallback()]


def _recording_trainer():
    """A ``Trainer`` that records, per optimiser step, what this rank fed it (the per-rank record of the result).

    ``micro_batches[step] = [micro-batches, examples, supervised tokens, num_items_in_batch]``: the first
    three counted on this rank; the last is the loss denominator the Trainer passed (supervised tokens of the
    whole accumulation window, summed over the ranks: transformers' ``average_tokens_across_devices``; None under
    ``loss_normalization=per_device``, :mod:`mixgap.stages.train.loss`). Each step's loss:
    :class:`mixgap.stages.train.step_losses.StepLosses`.
    """
    from transformers import Trainer  # heavy: transformers, imported only when used

    class RecordingTrainer(StepLosses, Trainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.micro_batches, self.pending_losses, self.losses = {}, {}, {}  # run_training sets losses on a resume

        def training_step(self, model, inputs, num_items_in_batch=None):
            row = self.micro_batches.setdefault(str(self.state.global_step + 1), [0, 0, 0, None])
            row[0] += 1
            ids = inputs["input_ids"]  # a packed row holds several examples, each starting at position 0
            row[1] += int((inputs["position_ids"] == 0).sum()) if "position_ids" in inputs else int(ids.shape[0])
            row[2] += int((inputs["labels"][..., 1:] != -100).sum())
            row[3] = None if num_items_in_batch is None else int(num_items_in_batch)
            loss = super().training_step(model, inputs, num_items_in_batch)
            self.record(self.state.global_step + 1, loss)
            return loss

    return RecordingTrainer


def jsonl_sink(path: str | os.PathLike) -> Sink:
    """A sink appending ``{"step": n, **metrics}`` lines to ``path`` (the parent tails it into the tracker)."""
    def sink(metrics: Mapping[str, float], step: int) -> None:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"step": step, **metrics}) + "\n")

    return sink


def load_dtype(job: TrainJob) -> str:
    """``bfloat16`` where something else keeps fp32 copies of what trains, else ``float32``.

    With bf16: LoRA freezes the base (peft keeps the adapter in fp32) and DeepSpeed keeps fp32 master
    weights in its optimizer, so the module loads in bf16 (a 70B LoRA base would not fit in fp32). A plain
    Trainer run keeps fp32 weights under bf16 autocast: pure-bf16 AdamW loses lr-1e-5 updates to rounding.
    """
    bf16 = job.precision == "bf16" and (job.finetune["mode"] == "lora" or job.deepspeed_config is not None)
    return "bfloat16" if bf16 else "float32"


def load_student(job: TrainJob):
    """The student to train, in :func:`load_dtype`; wrapped with a peft LoRA adapter when ``mode=lora``."""
    import torch  # heavy: torch, imported only when used
    from transformers import AutoModelForCausalLM  # heavy: transformers, imported only when used


    attention = attention_for(job.finetune["packing"], torch.cuda.is_available())
    model = AutoModelForCausalLM.from_pretrained(
        job.student_path, dtype=getattr(torch, load_dtype(job)), **({"attn_implementation": attention} if attention else {})
    )
    model.config.use_cache = False  # a KV cache disables the packed (block-diagonal) mask; useless in training
    if job.finetune["mode"] == "lora":
        from peft import get_peft_model  # heavy: peft, imported only when used

        model = get_peft_model(model, lora_config(job.finetune["lora"]))
    return model


def lora_config(lora: Mapping[str, Any]):
    """peft's ``LoraConfig`` of ``finetune_mode.lora`` (``r``, ``alpha``, ``dropout``, ``target_modules``) for a
    causal LM."""
    from peft import LoraConfig  # heavy: peft, imported only when used

    return LoraConfig(r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                      target_modules=list(lora["target_modules"]), task_type="CAUSAL_LM")


def run_training(job: TrainJob, sinks: list[Sink] | None = None) -> dict[str, Any]:
    """Train (resuming from the last complete checkpoint in ``job.trainer_dir``) and save to ``job.save_dir``.

    Returns (and rank 0 writes to ``job.result_path``): ``steps``, ``final_loss`` (the mean training loss of the
    last ``logging_steps`` optimiser steps by absolute step number, the steps before a resume read from its
    checkpoint: the same with or without a resume; :func:`mixgap.stages.train.step_losses.final_loss`), ``resumed_from``
    (checkpoint or None),
    ``tokens_seen`` (input tokens, padding excluded), ``train_runtime_s`` and ``tokens_per_s`` of this
    session, ``world_size``.

    Raises:
        ValueError: see :func:`training_arguments`; whatever the Trainer raises.
    """
    import datasets  # heavy: datasets (pyarrow), imported only when used
    import torch  # heavy: torch, imported only when used
    from transformers import AutoTokenizer, set_seed  # heavy: transformers, imported only when used


    args = training_arguments(job, use_cpu=not torch.cuda.is_available())
    if args.world_size != job.world_size:  # the accumulation was computed for job.world_size
        raise ValueError(
            f"training runs on {args.world_size} processes but was planned for {job.world_size}; "
            "the global batch would be wrong (check SLURM_GPUS_ON_NODE / CUDA_VISIBLE_DEVICES)"
        )
    if job.deepspeed_config and args.world_size > 1 and not torch.cuda.is_available():
        attach_deepspeed_comm()
    set_seed(job.finetune["seed"])  # LoRA's initialisation is random
    tokenizer = set_chat_template(AutoTokenizer.from_pretrained(job.student_path), job.chat_template)
    model = load_student(job)
    dataset = datasets.load_from_disk(job.examples_path).select_columns(["input_ids", "labels"])
    trainer = _recording_trainer()(
        model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
        data_collator=make_collator(tokenizer, job.finetune["packing"]), callbacks=_callbacks(sinks or []),
    )
    apply_loss_normalization(trainer, job.finetune.get("loss_normalization", "global_tokens"))
    resume = last_complete_checkpoint(job.trainer_dir) if trainer.is_world_process_zero() else None
    if args.world_size > 1:  # every rank resumes from the checkpoint rank 0 chose (and cleaned)
        import torch.distributed as dist  # heavy: torch, imported only when used

        holder = [resume]
        dist.broadcast_object_list(holder, src=0)
        resume = holder[0]
    if resume:
        log.info("resuming from %s", resume)
    trainer.losses = read_losses(resume)  # the steps before the resume
    output = trainer.train(resume_from_checkpoint=resume)
    final_loss = trainer.final_loss()  # gathers over ranks: before any rank-0-only work
    unwrapped = trainer.accelerator.unwrap_model(trainer.model)
    unwrapped.config.use_cache = True  # the saved model generates with a KV cache
    trainer.save_model(job.save_dir)
    runtime = float(output.metrics.get("train_runtime", 0.0))
    session_tokens = int(trainer.state.num_input_tokens_seen - getattr(trainer, "_initial_num_input_tokens_seen", 0))
    result = {
        "steps": int(trainer.state.global_step),
        "final_loss": final_loss,
        "resumed_from": resume,
        "tokens_seen": int(trainer.state.num_input_tokens_seen),
        "train_runtime_s": runtime,
        "tokens_per_s": session_tokens / runtime if runtime > 0 else None,
        "world_size": int(args.world_size),
        "ranks": _rank_records(trainer, args, resume),
    }
    if trainer.is_world_process_zero():
        write_json_atomic(Path(job.result_path), result)
    return result



def _rank_records(trainer, args, resume: str | None) -> list[dict[str, Any]]:
    """Every rank's record of this session, gathered on all ranks (``all_gather_object``; gloo or NCCL).

    One dict per rank, in rank order: ``rank``, ``resumed_from`` (what that rank loaded), ``global_step``,
    ``micro_batches`` (see :func:`_recording_trainer`) and ``train_batch_size`` /
    ``gradient_accumulation_steps`` as the DeepSpeed engine holds them (None without DeepSpeed).
    """
    engine = getattr(trainer, "deepspeed", None)
    record = {
        "rank": int(args.process_index), "resumed_from": resume, "global_step": int(trainer.state.global_step),
        "micro_batches": trainer.micro_batches,
        "train_batch_size": int(engine.train_batch_size()) if engine is not None else None,
        "gradient_accumulation_steps": int(engine.gradient_accumulation_steps()) if engine is not None else None,
    }
    if args.world_size == 1:
        return [record]
    import torch.distributed as dist  # heavy: torch, imported only when used

    records: list[Any] = [None] * args.world_size
    dist.all_gather_object(records, record)
    return records
