"""Teacher backends, one registered class each (:mod:`.registry`): ``hf`` (batched transformers ``generate``,
CPU/GPU, :mod:`.hf`), ``vllm`` (offline vLLM, GPU, :mod:`.vllm`) and ``dataset`` (an import of existing
responses, no model, :mod:`.dataset`). The engines share :mod:`.base` (the :class:`Completion` record, the
token budget and stop rules). A new backend is one module defining a class decorated with
:func:`register`, imported below. :mod:`.parallel` runs any generating backend as data-parallel replicas
(one process each, :mod:`.replica`).

torch/transformers are imported inside the engines; vLLM (extra ``gpu``) only when ``kind="vllm"``.
"""

from __future__ import annotations

from mixgap.stages.backends.base import (
    FINISH_REASONS,
    Backend,
    BackendUnavailable,
    Completion,
    RowStopStrings,
    SeededSampler,
    check_sampling,
    cut_at_stop,
    cut_at_stop_string,
    first_prefix,
    free_memory,
    length_sorted_batches,
    render_prompts,
    status_of,
    stop_token_ids,
    token_budget,
    too_long,
)
from mixgap.stages.backends.dataset import DatasetImport, import_responses, read_rows
from mixgap.stages.backends.hf import HFBackend, hf_generate_kwargs
from mixgap.stages.backends.parallel import (
    ReplicaPool,
    data_parallel_size,
    merge_shards,
    replica_devices,
    shard_indices,
)
from mixgap.stages.backends.registry import BACKENDS, backend_class, generating, load_backend, names, register
from mixgap.stages.backends.vllm import (
    VLLMBackend,
    import_vllm,
    vllm_engine_kwargs,
    vllm_platform_kwargs,
    vllm_sampling_kwargs,
)

__all__ = [
    "BACKENDS", "FINISH_REASONS", "Backend", "BackendUnavailable", "Completion", "DatasetImport", "HFBackend",
    "ReplicaPool", "RowStopStrings", "SeededSampler", "VLLMBackend", "backend_class", "check_sampling", "cut_at_stop",
    "cut_at_stop_string", "data_parallel_size", "first_prefix", "free_memory", "generating", "hf_generate_kwargs", "import_responses",
    "import_vllm", "length_sorted_batches", "load_backend", "merge_shards", "names", "read_rows", "register", "render_prompts", "replica_devices", "shard_indices", "status_of",
    "stop_token_ids", "token_budget", "too_long", "vllm_engine_kwargs", "vllm_platform_kwargs",
    "vllm_sampling_kwargs",
]
