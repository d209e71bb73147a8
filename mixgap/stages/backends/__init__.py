"""Teacher backends, one registered class each (:mod:`.registry`): ``hf`` (batched transformers ``generate``,
CPU/GPU, :mod:`.hf`), ``vllm`` (offline vLLM, GPU, :mod:`.vllm`) and ``dataset`` (an import of existing
responses, no model, :mod:`.dataset`). The engines share :mod:`.base` (the :class:`Completion` record, the
token budget and stop rules). A new backend is one module defining a class decorated with
:func:`register` (:mod:`.registry`), imported below so that it registers; import each name from the module
that defines it. :mod:`.parallel` runs any generating backend as data-parallel replicas
(one process each, :mod:`.replica`).

torch/transformers are imported inside the engines; vLLM (extra ``gpu``) only when ``kind="vllm"``.
"""

from mixgap.stages.backends import dataset, hf, vllm  # noqa: F401 (importing a backend's module registers it)
