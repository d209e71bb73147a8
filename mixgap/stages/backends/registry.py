"""The teacher backends by name: each is one class, registered with :func:`register`.

Every registered class carries two class attributes the rest of the project asks instead of testing names:

- ``generates`` (bool): True for an engine that loads a model and generates (``hf``, ``vllm``; built by
  :func:`load_backend`, see :class:`mixgap.stages.backends.base.Backend`); False for an importer of existing
  responses (``dataset``: loads no model, needs no GPU; it provides ``import_samples(teacher, root, problems)``).
- ``needs_problems(teacher) -> bool``: whether the teacher's samples need the problem source (always when
  generating; for an import, when its rows lack ids or gold answers and are matched to problems by text).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mixgap.core.errors import ConfigError
from mixgap.stages.backends.parallel import ReplicaPool

#: name -> registered class, in registration order.
BACKENDS: dict[str, type] = {}
_REQUIRED = ("generates", "needs_problems")


def register(name: str) -> Callable[[type], type]:
    """Class decorator: register the class as backend ``name`` (the value of ``teacher.backend``).

    Raises:
        ValueError: ``name`` is already registered. TypeError: the class lacks ``generates`` or
            ``needs_problems``, or a generating class lacks ``generate``/``close``, an importer ``import_samples``.
    """
    def add(cls: type) -> type:
        if name in BACKENDS:
            raise ValueError(f"backend name={name!r} is already registered (by {BACKENDS[name].__qualname__})")
        missing = [a for a in _REQUIRED if not hasattr(cls, a)]
        missing += [a for a in (("generate", "close") if getattr(cls, "generates", True) else ("import_samples",))
                    if not hasattr(cls, a)]
        if missing:
            raise TypeError(f"backend {name!r} ({cls.__qualname__}) lacks {', '.join(missing)}")
        BACKENDS[name] = cls
        return cls

    return add


def backend_class(name: str, field: str = "teacher.backend") -> type:
    """The class registered as ``name``.

    Raises:
        ConfigError: ``name`` is not registered; one line naming ``field``, the value and the registered names.
    """
    if name not in BACKENDS:
        raise ConfigError(f"{field}={name!r} is not allowed; choose one of {', '.join(names())}")
    return BACKENDS[name]


def names() -> list[str]:
    """The registered names, the generating backends first, then the importers, each in registration order
    (``hf, vllm, dataset``)."""
    return generating() + [name for name, cls in BACKENDS.items() if not cls.generates]


def generating() -> list[str]:
    """The names of the registered backends that generate (load a model), in registration order."""
    return [name for name, cls in BACKENDS.items() if cls.generates]


def load_backend(kind: str, model: str, *, dtype: str = "auto", max_model_len: int | None = None,
                 tensor_parallel_size: int = 1, batch_size: int = 16, chat_template: str | None = None,
                 seed: int = 0, data_parallel_size: int = 1, work_dir: Path | None = None,
                 chunk_size: int | None = None, adapter: str | None = None) -> Any:
    """Load a generation engine (a :class:`mixgap.stages.backends.base.Backend`), or, with
    ``data_parallel_size > 1``, a :class:`mixgap.stages.backends.parallel.ReplicaPool` of that many engine
    processes (each on ``tensor_parallel_size`` GPUs) that loads nothing here.

    Args:
        kind: a generating backend: ``hf`` (transformers ``generate``, batched, left padding) or ``vllm``
            (offline ``vllm.LLM``), or any other registered class with ``generates = True``.
        model: a local folder or Hub id.
        dtype: ``auto`` (hf: float32 on CPU, the checkpoint's dtype on GPU), ``float32``, ``bfloat16``, ``float16``.
        max_model_len: the context limit (prompt + completion); None = the model's ``max_position_embeddings``.
        tensor_parallel_size: GPUs per vLLM engine (ignored by hf).
        batch_size: prompts per HF ``generate`` call (vLLM schedules its own batches).
        chat_template: a Jinja template overriding the tokenizer's; None = the tokenizer's own.
        seed: engine seed (vLLM) / base of the per-batch sampling seeds (hf).
        data_parallel_size: engine replicas, the prompts sharded across them (1: this process, as before).
        work_dir: where the replicas keep finished shards (needed when ``data_parallel_size > 1``).
        chunk_size: with replicas, prompts per atomic chunk each replica writes as it finishes it (a killed
            replica's rerun generates only its missing chunks); None: one shard a replica, written at its end.
        adapter: a peft LoRA adapter folder served on ``model`` (vllm: ``enable_lora`` and a ``LoRARequest``; hf:
            peft's ``PeftModel``), or None: the model alone (:mod:`mixgap.stages.serving`).

    Raises:
        ConfigError (a ValueError): ``kind`` is not registered, or names an importer (``dataset``), which
            loads no model; ``data_parallel_size > 1`` without ``work_dir``. BackendUnavailable: vLLM is not installed.
    """
    cls = backend_class(kind, "backend kind")
    if not cls.generates:
        raise ConfigError(f"backend kind={kind!r} is not allowed here: it imports existing responses and loads "
                          f"no model; choose one of {', '.join(generating())}")
    load = {"dtype": dtype, "max_model_len": max_model_len, "tensor_parallel_size": tensor_parallel_size,
            "batch_size": batch_size, "chat_template": chat_template, "seed": seed,
            **({"adapter": adapter} if adapter is not None else {})}
    if data_parallel_size > 1:
        if work_dir is None:
            raise ConfigError(f"data_parallel_size={data_parallel_size} needs a work_dir for the replicas' shards")
        return ReplicaPool(kind, model, replicas=data_parallel_size, work_dir=work_dir, load=load,
                           chunk_size=chunk_size)
    return cls(model, **load)


def resolve_backend(setting: str) -> str:
    """``eval.backend``: ``auto`` is vLLM when a CUDA GPU is visible and vLLM is installed, else HF."""
    if setting != "auto":
        return setting
    import torch  # heavy: torch, only when a model is evaluated

    return "vllm" if torch.cuda.is_available() and importlib.util.find_spec("vllm") else "hf"
