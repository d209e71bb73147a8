"""What serves an evaluation arm's completions: which model, which LoRA adapter on it, and the engine's context.

The untuned student and a full-SFT checkpoint are served as they are, at ``eval.max_model_len`` (the paper presets:
16,000, as the authors' ``lm-evaluation-harness/test.sh`` runs vLLM with ``max_model_len=16000``). A LoRA
checkpoint's tuned arm is served as ``eval.lora_serving`` says, at ``eval.lora_max_model_len`` (None: the model's
own context, ``max_position_embeddings``):

- ``adapter`` (the paper presets): the base student with the trained adapter (the checkpoint's ``adapter/`` folder,
  :data:`mixgap.stages.train.stage.ADAPTER_DIR`), as the authors' ``test_lora.sh`` serves theirs (repository
  Small-Model-Gap/Small-Model-Learnability-Gap, commit 814cf97): ``lm_eval --model vllm --model_args
  pretrained=$model,lora_local_path=$lora_path,enable_lora=True,...`` with no ``max_model_len``; their
  ``lm_eval/models/vllm_causallms.py`` passes ``LoRARequest("finetuned", 1, lora_local_path)`` to every
  ``generate``. The vllm backend does the same (:func:`mixgap.stages.backends.vllm.vllm_lora_kwargs`), the hf
  backend wraps the base in peft's ``PeftModel`` (the adapter applied unmerged, as vLLM applies it).
- ``merged``: the checkpoint's own weights, the adapter merged into them at training (peft ``merge_and_unload``).

:func:`key_fields` is what a completions key holds of this (:func:`mixgap.stages.completions.completions_spec`): the
context, and ``lora_serving: adapter`` only when an adapter is served, so every other key (the untuned arm, a
full-SFT checkpoint, a merged LoRA checkpoint at the same context) is the key it was before adapters were served.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from mixgap.stages.train.stage import ADAPTER_DIR


@dataclass(frozen=True)
class Serving:
    """What one arm's engine loads: ``model`` (a folder or Hub id), the LoRA ``adapter`` folder served on it (None:
    the model alone) and ``max_model_len``, the engine's context in tokens, prompt + completion (None: the model's
    own, ``max_position_embeddings``)."""

    model: str
    adapter: str | None = None
    max_model_len: int | None = None


def is_lora(cfg: DictConfig, arm: str) -> bool:
    """The arm is a LoRA checkpoint's: ``tuned`` with ``finetune_mode.mode=lora``."""
    return arm == "tuned" and cfg.finetune_mode.mode == "lora"


def serves_adapter(cfg: DictConfig, arm: str) -> bool:
    """The arm serves the base student with the trained adapter (a LoRA checkpoint, ``eval.lora_serving=adapter``)."""
    return is_lora(cfg, arm) and cfg.eval.get("lora_serving", "adapter") == "adapter"


def context_field(cfg: DictConfig, arm: str) -> str:
    """The field that sets the arm's engine context: ``eval.lora_max_model_len`` (a LoRA checkpoint) or
    ``eval.max_model_len``."""
    return "eval.lora_max_model_len" if is_lora(cfg, arm) else "eval.max_model_len"


def arm_context(cfg: DictConfig, arm: str) -> int | None:
    """The arm's engine context (:func:`context_field`'s value), tokens; None: the model's own."""
    value = cfg.eval.get(context_field(cfg, arm).split(".", 1)[1])
    return None if value is None else int(value)


def key_fields(cfg: DictConfig, arm: str) -> dict[str, Any]:
    """The engine fields of the arm's completions key: ``max_model_len`` (:func:`arm_context`) and, when an adapter is
    served (:func:`serves_adapter`), ``lora_serving: adapter`` (vLLM's LoRA computes ``x W + s (x A) B`` on the base
    weights, a merged model ``x (W + s A B)``: other floating-point results)."""
    return {"max_model_len": arm_context(cfg, arm), **({"lora_serving": "adapter"} if serves_adapter(cfg, arm) else {})}


def arm_serving(cfg: DictConfig, arm: str, student: str, checkpoint: str | Path | None) -> Serving:
    """What serves ``arm``: the untuned ``student``; the ``checkpoint`` folder (full SFT, or a LoRA checkpoint served
    merged); or the ``student`` with the checkpoint's ``adapter/`` (:func:`serves_adapter`).

    Raises:
        ValueError: the tuned arm without a checkpoint folder. FileNotFoundError: an adapter is to be served and the
            checkpoint has no ``adapter/adapter_config.json`` (one line naming the folder).
    """
    if arm == "untuned":
        return Serving(str(student), None, arm_context(cfg, arm))
    if checkpoint is None:
        raise ValueError(f"arm={arm!r} needs a checkpoint folder; none was given")
    if not serves_adapter(cfg, arm):
        return Serving(str(checkpoint), None, arm_context(cfg, arm))
    adapter = Path(checkpoint) / ADAPTER_DIR
    if not (adapter / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{adapter}: no adapter_config.json, so eval.lora_serving=adapter cannot serve it; "
                                "rebuild the checkpoint or set eval.lora_serving=merged")
    return Serving(str(student), str(adapter), arm_context(cfg, arm))
