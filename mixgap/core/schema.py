"""The job's typed config schema (``MixgapConfig``, registered in Hydra's ConfigStore) and the conf tree it shapes.

The YAML files under ``conf/`` only set values; the shapes live here and in :mod:`mixgap.core.schema_models`.
``conf/config.yaml`` extends the ``mixgap_schema`` node registered by :func:`register_configs`, so a wrong type
fails at composition time; :mod:`mixgap.core.overrides` refuses a bad command line before that and
:func:`mixgap.core.config.validate` checks what types cannot, both raising :class:`ConfigError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from mixgap.core.fields import one_of, ranged
from mixgap.core.schema_models import PAPER_PROMPT, FieldMap, JudgeConfig, StudentConfig, TeacherConfig

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


@dataclass
class SourceConfig:
    """Where a problem set lives (:func:`mixgap.stages.data.source_kind`): a local file (``path``), else with
    ``MIXGAP_DATA`` set the offline kit's copy (``kit_path``), else a Hub dataset (id, config, split); at least one."""

    name: str = MISSING
    hub_id: str | None = None  # a Hugging Face dataset; optional with path or kit_path
    hub_config: str | None = None
    split: str = "test"
    kit_path: str | None = None  # relative to paths.data (MIXGAP_DATA)
    # a local JSONL or Parquet file: absolute, or relative to the folder launch.py runs in; read through fields
    path: str | None = None
    fields: FieldMap = field(default_factory=FieldMap)
    # how the gold answer is written on the Hub
    answer_format: str = one_of("plain", "boxed_in_solution", "after_hashes", "list_join", default="plain")
    limit: int | None = ranged("> 0", default=None)  # first problems of a seeded shuffle; None = all
    subset_seed: int = 0

@dataclass
class BenchmarkConfig(SourceConfig):
    """One evaluation benchmark, all of it in its YAML (``conf/benchmark/<name>.yaml``): where its problems are,
    how it is labelled in the report, how many problems it has (the preflight's hours), its prompt, its stop
    strings and how its answer is read (``extraction``: ``boxed``, the last ``\\boxed{}``; ``last_number``,
    GSM8K's last number)."""

    label: str = ""  # the report's column name, e.g. AIME24; empty = the name
    # problems in the whole benchmark (counted in the paper's data); the preflight's work
    size: int = ranged("> 0", default=MISSING)
    extraction: str = one_of("boxed", "last_number", default="boxed")  # mixgap.grading.extract.extract_answer
    prompt: str = PAPER_PROMPT
    # strings that end a completion (cut off): the paper's harness stops at "Problem:" (GSM8K: "Q:");
    # eval.stop, when set, replaces this for every benchmark
    stop: list[str] = field(default_factory=lambda: ["Problem:"])
    n_samples: int | None = ranged("> 0", default=None)  # samples per problem when eval samples; None = eval.n_samples

@dataclass
class MixConfig:
    strong: TeacherConfig = MISSING
    weak: TeacherConfig = MISSING
    weight: float = ranged("[0, 1]", note="fraction from the strong source", default=0.2)  # of training examples
    problems: str = one_of("intersection", "union", default="intersection")  # of the problems both pools kept
    seed: int = 0
    # which problems take the strong trace (mixgap.stages.mix): fixed = the k = floor(w N + 0.5) lowest seeded ranks;
    # rsr = each problem the trace of lower RSR under this student (w unused); rsr_budget = the k problems whose RSR
    # favours the strong trace most. Both student-aware strategies read the untuned student's scores of every problem
    strategy: str = one_of("fixed", "rsr", "rsr_budget", default="fixed")

@dataclass
class LoraConfig:
    # The paper's LoRA values (its Table 6) are unknown; these are LLaMA-Factory's LoRA defaults (the paper's
    # trainer): lora_rank 8, lora_alpha = 2 x rank, lora_dropout 0, lora_target all (conf/finetune_mode/lora.yaml).
    r: int = ranged("> 0", default=8)
    alpha: int = ranged("> 0", default=16)
    dropout: float = ranged("[0, 1)", default=0.0)
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )

@dataclass
class FinetuneConfig:
    mode: str = one_of("full", "lora", default="full")
    learning_rate: float = ranged("> 0", default=1e-5)
    epochs: float = ranged("> 0", default=2.0)
    max_steps: int = ranged("> 0", also=(-1, "train finetune_mode.epochs"), default=-1)  # > 0 overrides epochs
    lr_scheduler: str = "cosine"
    warmup_ratio: float = ranged("[0, 1)", default=0.1)
    weight_decay: float = 0.0
    per_device_batch_size: int = ranged("> 0", default=2)
    # examples per optimiser step over all devices; gradient accumulation = global / (per-device x world size)
    global_batch_size: int = ranged("> 0", default=8)
    max_seq_len: int = ranged("> 0", default=16384)
    # truncate: LLaMA-Factory's infer_seqlen cut (warns and counts); drop_pair: see mixgap.stages.train.pairs
    overlength: str = one_of("drop", "truncate", "drop_pair", default="drop")
    # how token losses are averaged: global_tokens (every supervised token of the optimiser step weighs the same) |
    # per_device (each micro-batch's mean token loss, averaged over micro-batches: the authors' transformers<=4.49)
    loss_normalization: str = one_of("global_tokens", "per_device", default="global_tokens")
    packing: bool = False
    gradient_checkpointing: bool = True
    precision: str = one_of("auto", "bf16", "fp32", default="auto")  # auto: bf16 on GPU, fp32 on CPU
    deepspeed: str | None = one_of(None, "zero2", "zero3", default="zero3")  # a file name under conf/deepspeed/
    # auto: torchrun over every GPU when there are GPUs, this process on a CPU
    launch: str = one_of("auto", "local", "torchrun", default="auto")
    save_steps: int = ranged("> 0", default=200)
    logging_steps: int = ranged("> 0", default=10)
    seed: int = 42
    prompt: str = PAPER_PROMPT  # the user turn of every training example; the response is the teacher's CoT
    system: str | None = None  # the system turn of every training example; None = the chat template's default
    lora: LoraConfig = field(default_factory=LoraConfig)  # read only when mode=lora
    # what global_batch_size counts: examples | packed_sequences (of up to pack_len tokens, LLaMA-Factory
    # neat_packing: the released Mix configs' global batch of 80; see mixgap.stages.train.batching)
    batch_unit: str = one_of("examples", "packed_sequences", default="examples")
    pack_len: int = ranged("> 0", default=4096)  # read only with batch_unit=packed_sequences
    settings_source: str = ""  # where these values come from (shown in the report's settings table)

@dataclass
class EvalConfig:
    backend: str = one_of("auto", "vllm", "hf", default="auto")  # auto: vllm when a GPU is visible, else hf
    max_new_tokens: int = ranged("> 0", default=16000)  # the paper's evaluation budget
    batch_size: int = ranged("> 0", default=16)
    limit: int | None = ranged("> 0", default=None)  # cap on problems per benchmark (smoke runs)
    untuned: bool = True  # also evaluate the untuned student (cached once per student)
    length_warning: float = ranged("[0, 1]", default=0.2)  # warn when more than this fraction stops by length
    tensor_parallel_size: int = ranged("> 0", default=1)
    # sampled evaluation: 1 sample at temperature 0 = greedy, the paper's protocol
    n_samples: int = ranged("> 0", default=1)  # samples per problem (needs temperature > 0 when > 1)
    temperature: float = ranged(">= 0", default=0.0)
    top_p: float = ranged("(0, 1]", default=1.0)
    seed: int = 0  # sample j of a problem is seeded from (seed, benchmark, problem id) + j
    stop: list[str] | None = None  # None: each benchmark's own stop (the paper's); [] = no stop string
    judge: JudgeConfig | None = None  # the paper's LLM re-judge of rule-based misses (conf/judge/)
    # samples per problem by benchmark name (e.g. {aime24: 16}); benchmark.<key>.n_samples wins; else eval.n_samples
    n_samples_by_benchmark: dict[str, int] = ranged("> 0", default_factory=dict)
    # how an answer is read: policy (mixgap's grading policy) | boxed (the official scorer: only the last \\boxed{})
    extract: str = one_of("policy", "boxed", default="policy")
    # the rule after extraction: policy (mixgap's grading policy) | paper (the authors' is_equiv; needs extract=boxed)
    rule: str = one_of("policy", "paper", default="policy")
    max_model_len: int | None = ranged("> 0", default=None)  # the engine's context (prompt + completion); None = the model's own
    # a LoRA checkpoint's tuned arm (mixgap.stages.serving): adapter = the base student with the trained adapter
    # (vLLM's LoRA, as the authors' test_lora.sh; peft on the hf backend) | merged = the adapter merged into the weights
    lora_serving: str = one_of("adapter", "merged", default="adapter")
    lora_max_model_len: int | None = ranged("> 0", default=None)  # that arm's context; None = the model's own
    # samples per atomic chunk of completions (per replica with data parallelism), written as each finishes: the
    # most a killed evaluation loses; in no key. Each chunk ends with a thinning batch (vLLM keeps up to its
    # max_num_seqs in flight), so a larger chunk keeps the engine fuller
    chunk_size: int = ranged("> 0", default=1024)

@dataclass
class DataConfig:
    decontamination: str = one_of("error", "drop", "allow", default="error")  # drop: evaluate without the overlap
    missing_pool: str = one_of("generate", "wait", "fail", default="generate")  # wait: for another job's lock

@dataclass
class PathsConfig:
    cache: str = "./cache"
    data: str | None = None  # the offline kit (MIXGAP_DATA); None = the Hugging Face Hub

@dataclass
class TrackingConfig:
    backend: str = one_of("wandb", "none", default="wandb")
    project: str = "mixgap"
    entity: str | None = None
    mode: str = one_of("auto", "online", "offline", "disabled", default="auto")  # auto: offline when no WANDB_API_KEY

@dataclass
class ReportConfig:
    sweep: Any = None  # a multirun folder, or a list of them
    out: str | None = None  # default: <first sweep>/report
    n_boot: int = ranged("> 0", default=10000)
    seed: int = 0
    confidence: float = ranged("(0, 1)", default=0.95)

@dataclass
class AnalyzeConfig:
    sweep: Any = None  # a multirun folder, or a list of them
    out: str | None = None  # default: <first sweep>/analysis
    max_completions: int = ranged("> 0", default=64)  # completions per arm fed through the untuned student
    max_cases: int = ranged("> 0", default=10)  # case-study problems when analyze.problems is None
    batch_size: int = ranged("> 0", default=4)
    problems: list[str] | None = None  # case study ids; None = problems where the arms disagree

@dataclass
class StudyConfig:
    """``stage=status`` / ``stage=cancel`` (``mixgap.plan.study``): a study submitted by ``hydra/launcher=slurm``."""

    sweep: str | None = None  # its folder (hydra.sweep.dir), holding dag.json

@dataclass
class PredictConfig:
    """Learnability before training (``stage=predict``, ``mixgap.stages.predict``): the untuned student scores a seeded
    sample of each pool's kept traces (the same problems for both pools), as training would render them. With a
    student-aware ``mix.strategy`` it also scores every problem both pools kept (the mixture's choices): the same
    settings, no sample."""

    enabled: bool = True  # stage=all runs it too (once per student x teacher pool, shared by every weight)
    # problems scored per pool (a seeded sample of the problems both pools kept)
    max_samples: int = ranged("> 0", default=256)
    batch_size: int = ranged("> 0", default=16)  # at most this many sequences per forward pass
    # at most this many padded tokens (sequences x the longest) per forward pass: length-sorted batches within a
    # token budget (mixgap.stages.scoring.token_batches); 65,536 = 4 x 16,384, four of the longest traces
    batch_tokens: int = ranged("> 0", default=65536)
    seed: int = 0  # which problems are sampled (mix.rank_key order)
    # None: finetune_mode.max_seq_len; pairs with a longer trace are skipped
    max_seq_len: int | None = ranged("> 0", default=None)
    rank_clip: int = ranged("> 0", default=100)  # RSR's rank clip r (Yang et al. 2026, rsr_launch.py rank_clip_r=100)
    n_boot: int = ranged("> 0", default=10000)  # bootstrap resamples over traces for the 95% CIs
    confidence: float = ranged("(0, 1)", default=0.95)

@dataclass
class ExportConfig:
    """``stage=export`` (``mixgap.stages.export``): one finished artifact as a Hugging Face dataset folder."""

    artifact: str = "pool.strong"  # pool.strong | pool.weak | mixture | eval.tuned.<benchmark> | eval.untuned.<benchmark>
    out: str | None = None  # the folder to write (Parquet shards under data/, README.md card)
    license: str = "other"  # the card's license field; "other": the teacher's license governs
    repo_id: str | None = None  # push to this Hub dataset repository (needs a token and the Hub)
    private: bool = True  # the pushed repository's visibility

@dataclass
class ClusterConfig:
    """The cluster's GPUs a job is planned for (:mod:`mixgap.plan.preflight`); the GPU count comes from the
    launcher (:mod:`mixgap.plan.machine`; the basic launcher plans for this machine's own CUDA devices).

    ``memory_headroom``: the fraction of each GPU's memory the plan leaves free (the allocator's fragmentation
    and what the formulas do not count; vLLM's own default ``gpu_memory_utilization`` is 0.9). Defaults: an
    80GB A100/H100 (80 GiB = 85.9e9 bytes; we plan 85.0 GB of 1e9 bytes); 989 TFLOP/s is the H100 SXM's dense bf16
    peak and 3,350 GB/s its memory bandwidth (NVIDIA H100 datasheet; H200: 141 GB, 4,800 GB/s, NVIDIA H200
    datasheet); ``mfu`` (training) and ``decode_mfu`` (vLLM batched decoding, :func:`mixgap.plan.preflight.decode_tokens_per_s`)
    are planning assumptions, not measurements
    (benchmarks/gpu_check.py measures the MFU of our trainer on a GPU): set yours.
    """

    # GB = 1e9 bytes: an "80GB" A100/H100 holds 80 GiB, of which torch reports ~85.0e9 bytes (total_memory)
    gpu_memory_gb: float = ranged("> 0", default=85.0)
    memory_headroom: float = ranged("[0, 1)", default=0.1)  # plan to at most (1 - headroom) x the GPU's memory
    gpu_bf16_tflops: float = ranged("> 0", default=989.0)
    mfu: float = ranged("(0, 1]", default=0.35)
    # assumption: fraction of the bf16 peak vLLM's batched decoding reaches
    decode_mfu: float = ranged("(0, 1]", default=0.1)
    # HBM GB/s: bounds decoding (mixgap.plan.estimates.decode_rate)
    gpu_memory_bandwidth_gbs: float = ranged("> 0", default=3350.0)
    # a file `make gpu-check` wrote: its measured mfu/decode_mfu replace the two above (mixgap.plan.calibration)
    calibration: str | None = None

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
    study: StudyConfig = field(default_factory=StudyConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)

def register_configs() -> None:
    """Register the schemas with Hydra's ConfigStore (``conf/config.yaml`` names ``mixgap_schema``)."""
    cs = ConfigStore.instance()
    cs.store(name="mixgap_schema", node=MixgapConfig)

