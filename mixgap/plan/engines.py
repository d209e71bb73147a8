"""What each evaluation arm's engine will be, for the plan: the model it serves (the untuned student, the checkpoint,
or the student with the checkpoint's LoRA adapter: :mod:`mixgap.stages.serving`), the backend, and the context it
runs at, with the field that sets it. :func:`arm_engine` describes one arm (the preflight's ``evaluation``);
:func:`engine_line` is the plan line that says it."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from mixgap.stages import serving
from mixgap.stages.backends.vllm import VLLM_LORA_RANKS, vllm_lora_kwargs


def planned_backend(setting: str, cpu: bool) -> str:
    """``eval.backend`` as the planned machine resolves it: ``auto`` is ``vllm`` on GPUs (the cluster's stack,
    ``pip install -e ".[gpu]"``, has vLLM; :func:`mixgap.stages.backends.registry.resolve_backend` at run time) and
    ``hf`` on the CPU; any other value is itself."""
    return setting if setting != "auto" else ("hf" if cpu else "vllm")


def arm_engine(cfg: DictConfig, arm: str, cpu: bool, arch: Any = None) -> dict[str, Any]:
    """The engine of ``arm`` (``untuned`` / ``tuned``) as planned.

    Returns:
        ``{"student": student.name, "serves": "student" | "checkpoint" | "adapter" (the student with the checkpoint's LoRA adapter),
        "lora_serving": eval.lora_serving for a LoRA checkpoint (else None), "backend": :func:`planned_backend`,
        "context_field": eval.max_model_len | eval.lora_max_model_len, "max_model_len": its value (None: the model's
        own), "engine_context": the tokens the engine runs at (the model's own read from ``arch``'s
        max_position_embeddings; None without an arch), "lora_rank": finetune_mode.lora.r for a LoRA checkpoint,
        "vllm_lora": the vLLM keywords that serve the adapter (:func:`mixgap.stages.backends.vllm.vllm_lora_kwargs`;
        None when no adapter is served on vllm), "refusal": why vLLM cannot serve that rank (else None)}``.
    """
    lora = serving.is_lora(cfg, arm)
    backend, max_len = planned_backend(str(cfg.eval.backend), cpu), serving.arm_context(cfg, arm)
    own = int(arch.max_position_embeddings) if arch is not None else None
    adapter = serving.serves_adapter(cfg, arm)
    rank = int(cfg.finetune_mode.lora.r) if lora else None
    vllm_lora, refusal = None, None
    if adapter and backend == "vllm":
        try:
            vllm_lora = vllm_lora_kwargs(rank)
        except ValueError:
            refusal = (f"finetune_mode.lora.r={rank} is not allowed with eval.lora_serving=adapter on vllm; it must be "
                       f"<= {VLLM_LORA_RANKS[-1]} (vLLM's largest max_lora_rank), or set eval.lora_serving=merged")
    return {"student": str(cfg.student.name), "serves": "adapter" if adapter else "checkpoint" if arm == "tuned" else "student",
            "lora_serving": cfg.eval.get("lora_serving") if lora else None, "backend": backend,
            "context_field": serving.context_field(cfg, arm), "max_model_len": max_len,
            "engine_context": max_len if max_len is not None else own, "lora_rank": rank, "vllm_lora": vllm_lora,
            "refusal": refusal}


def engine_line(arm: str, engine: dict[str, Any]) -> str:
    """One plan line: ``tuned: LoRA adapter (r 8) on student=qwen14b served by vllm (enable_lora=True,
    max_lora_rank=8, max_loras=1; eval.lora_serving=adapter) at the model's own context, 32,768 tokens
    (eval.lora_max_model_len=null)``."""
    student = engine["student"]
    if engine["serves"] == "adapter":
        how = (", ".join(f"{k}={v}" for k, v in engine["vllm_lora"].items()) if engine["vllm_lora"] else
               "peft PeftModel, unmerged" if engine["backend"] == "hf" else "its LoRA support")
        what = (f"LoRA adapter (r {engine['lora_rank']}) on student={student} served by {engine['backend']} "
                f"({how}; eval.lora_serving=adapter)")
    elif engine["serves"] == "checkpoint":
        merged = " (LoRA merged into its weights, eval.lora_serving=merged)" if engine["lora_serving"] else ""
        what = f"the checkpoint of student={student}{merged} on {engine['backend']}"
    else:
        what = f"student={student} on {engine['backend']}"
    ctx, field = engine["engine_context"], engine["context_field"]
    size = f", {ctx:,} tokens" if ctx is not None else ""
    where = (f"the model's own context{size} ({field}=null)" if engine["max_model_len"] is None
             else f"{field}={engine['max_model_len']} tokens (prompt + completion)")
    return f"{arm}: {what} at {where}"
