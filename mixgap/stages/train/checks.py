"""What a finished checkpoint must satisfy before it is published: real weights, a stop token, its tokenizer.

- ZeRO-3 saves partition placeholders (tensors of shape ``[0]``) when the 16-bit gather on save is off or
  misconfigured; :func:`check_saved_weights` refuses zero-size tensors and a total far below the model's
  parameter count (read from the safetensors headers, no tensor loaded).
- A base model trained on ChatML keeps ``eos = <|endoftext|>`` and never stops at ``<|im_end|>``;
  :func:`write_generation_config` makes the saved ``generation_config.json`` stop on the chat template's
  end-of-turn token (vLLM and HF ``generate`` both read it).
- A LoRA adapter saved from ZeRO-3 ranks without gathering holds the same ``[0]`` placeholders;
  :func:`check_saved_adapter` compares every saved tensor with the shape peft gives the adapter on this base
  (:func:`expected_adapter`: ``lora_A`` r x in, ``lora_B`` out x r for every target module).
- LoRA adapters are merged into the base weights (:func:`merge_lora`, peft ``merge_and_unload``) so the
  evaluator loads an ordinary model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MIN_FRACTION = 0.5  # a checkpoint holding under half of the model's parameters is broken, not pruned
_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


class CheckpointError(RuntimeError):
    """A saved checkpoint that must not be published; the message says what is wrong and where."""


def expected_parameters(model_dir: str | Path) -> int:
    """Parameters of the model described by ``<model_dir>/config.json`` (built on the meta device, no memory)."""
    import torch  # heavy: torch, imported only when used
    from transformers import AutoConfig, AutoModelForCausalLM  # heavy: transformers, imported only when used

    config = AutoConfig.from_pretrained(model_dir)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())  # tied weights counted once, as they are saved


def saved_tensors(model_dir: str | Path) -> dict[str, tuple[list[int], str]]:
    """Name -> (shape, safetensors dtype) of every tensor in the folder's ``*.safetensors`` files (headers only)."""
    tensors = {}
    for path in sorted(Path(model_dir).glob("*.safetensors")):
        with open(path, "rb") as fh:
            size = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(size))
        for name, info in header.items():
            if name != "__metadata__":
                tensors[name] = (info["shape"], info["dtype"])
    return tensors


def check_saved_weights(model_dir: str | Path, n_parameters: int, min_fraction: float = MIN_FRACTION) -> dict[str, Any]:
    """Refuse a saved model with zero-size tensors or far fewer elements/bytes than ``n_parameters``.

    Args:
        model_dir: folder with ``*.safetensors`` weights.
        n_parameters: parameters the architecture has (:func:`expected_parameters`).
        min_fraction: the smallest acceptable saved/expected ratio, for elements and for bytes at the
            saved dtype's width.

    Returns:
        ``{"tensors", "elements", "bytes", "dtype"}`` of the saved weights.

    Raises:
        CheckpointError: no safetensors file, any zero-size tensor (names up to 5), or a total below
            ``min_fraction`` of the expected elements or bytes.
    """
    tensors = _saved_nonempty(model_dir, "", "set stage3_gather_16bit_weights_on_model_save=true in the DeepSpeed config")
    elements = sum(_numel(shape) for shape, _dtype in tensors.values())
    nbytes = sum(_numel(shape) * _BYTES.get(dtype, 4) for shape, dtype in tensors.values())
    dtypes = {dtype for _shape, dtype in tensors.values()}
    width = min(_BYTES.get(d, 4) for d in dtypes)
    if elements < min_fraction * n_parameters or nbytes < min_fraction * n_parameters * width:
        raise CheckpointError(
            f"{model_dir}: saved {elements:,} elements ({nbytes:,} bytes) for a model of {n_parameters:,} "
            f"parameters (expected at least {min_fraction:.0%}); the checkpoint is incomplete"
        )
    return {"tensors": len(tensors), "elements": elements, "bytes": nbytes, "dtype": sorted(dtypes)}


def expected_adapter(model_dir: str | Path, lora_config: Any) -> dict[str, list[int]]:
    """Name -> shape of every tensor a LoRA adapter of the model in ``model_dir`` saves (peft's own naming).

    Built on the meta device (no memory): peft ``get_peft_model`` with ``lora_config`` (a peft ``LoraConfig``)
    wraps the architecture of ``<model_dir>/config.json``, and ``get_peft_model_state_dict`` names the saved
    tensors (``base_model.model.<module>.lora_A.weight`` of shape ``[r, in_features]``, ``lora_B`` of
    ``[out_features, r]``; peft 0.22 ``peft/utils/save_and_load.py``).
    """
    import torch  # heavy: torch, imported only when used
    from peft import get_peft_model, get_peft_model_state_dict  # heavy: peft, imported only when used
    from transformers import AutoConfig, AutoModelForCausalLM  # heavy: transformers, imported only when used

    with torch.device("meta"):
        model = get_peft_model(AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir)), lora_config)
    return {name: list(t.shape) for name, t in get_peft_model_state_dict(model).items()}


def check_saved_adapter(adapter_dir: str | Path, expected: dict[str, list[int]]) -> dict[str, Any]:
    """Refuse a LoRA adapter folder that is not exactly the ``expected`` tensors (:func:`expected_adapter`).

    Args:
        adapter_dir: what peft's ``save_pretrained`` wrote (``adapter_config.json``, ``*.safetensors``).
        expected: name -> shape of every adapter tensor.

    Returns:
        ``{"tensors", "elements", "dtype"}`` of the saved adapter.

    Raises:
        CheckpointError: no ``adapter_config.json`` or no safetensors file; zero-size tensors (ZeRO-3
            partition placeholders); missing, unexpected or misshapen tensors (names up to 5 each).
    """
    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise CheckpointError(f"{adapter_dir}: no adapter_config.json was saved")
    tensors = _saved_nonempty(adapter_dir, "adapter ", "saved without gathering the parameters")
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    wrong = sorted(f"{n} {tensors[n][0]} (expected {expected[n]})" for n in set(tensors) & set(expected)
                   if list(tensors[n][0]) != list(expected[n]))
    for what, names in (("missing", missing), ("unexpected", extra), ("misshapen", wrong)):
        if names:
            raise CheckpointError(f"{adapter_dir}: {len(names)} {what} adapter tensors (e.g. {', '.join(names[:5])})")
    return {"tensors": len(tensors), "elements": sum(_numel(shape) for shape, _dtype in tensors.values()),
            "dtype": sorted({dtype for _shape, dtype in tensors.values()})}


def _saved_nonempty(folder: Path | str, what: str, hint: str) -> dict[str, tuple[list[int], str]]:
    """:func:`saved_tensors` of ``folder``; CheckpointError when there are none or any has zero size."""
    tensors = saved_tensors(folder)
    if not tensors:
        raise CheckpointError(f"{folder}: no *.safetensors {what}weights were saved")
    empty = [name for name, (shape, _dtype) in tensors.items() if _numel(shape) == 0]
    if empty:
        raise CheckpointError(
            f"{folder}: {len(empty)} zero-size {what}tensors (e.g. {', '.join(empty[:5])}): ZeRO-3 partition "
            f"placeholders; {hint}"
        )
    return tensors


def _numel(shape: list[int]) -> int:
    n = 1
    for dim in shape:
        n *= dim
    return n


def write_generation_config(model_dir: str | Path, end_of_turn_id: int, pad_id: int | None) -> list[int]:
    """Make ``<model_dir>/generation_config.json`` stop on ``end_of_turn_id`` (first), keeping other eos ids.

    Returns:
        The saved ``eos_token_id`` list.
    """
    from transformers import GenerationConfig  # heavy: transformers, imported only when used

    try:
        config = GenerationConfig.from_pretrained(model_dir)
    except OSError:
        config = GenerationConfig.from_model_config(_model_config(model_dir))
    old = config.eos_token_id
    old = [] if old is None else [old] if isinstance(old, int) else list(old)
    config.eos_token_id = [end_of_turn_id, *[i for i in old if i != end_of_turn_id]]
    if config.pad_token_id is None:
        config.pad_token_id = pad_id if pad_id is not None else end_of_turn_id
    config.save_pretrained(model_dir)
    return list(config.eos_token_id)


def _model_config(model_dir: str | Path):
    from transformers import AutoConfig  # heavy: transformers, imported only when used

    return AutoConfig.from_pretrained(model_dir)


def merge_lora(base_path: str, adapter_dir: str | Path, out_dir: str | Path, dtype: str = "fp32") -> None:
    """Merge a LoRA adapter into its base model (peft ``merge_and_unload``) and save the plain model.

    ``dtype`` (``fp32``/``bf16``) is the dtype the base is loaded and merged in, and saved with.
    """
    import torch  # heavy: torch, imported only when used
    from peft import PeftModel  # heavy: peft, imported only when used
    from transformers import AutoModelForCausalLM  # heavy: transformers, imported only when used

    torch_dtype = torch.bfloat16 if dtype == "bf16" else torch.float32
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch_dtype)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged.config.use_cache = True
    merged.save_pretrained(out_dir)
