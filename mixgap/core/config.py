"""The checks run on a composed config before any work, and small helpers every stage uses to read a config.

:func:`validate` catches what types cannot (ranges, allowed names, fields that contradict each other), raising
:class:`ConfigError` with one line that names the field, the bad value and what is allowed. The schema lives in
:mod:`mixgap.core.schema` and :mod:`mixgap.core.schema_models`, the command-line checks in
:mod:`mixgap.core.overrides`; their public names are importable from here too (``from mixgap.core.config import
ConfigError, PAPER_PROMPT, validate``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mixgap.core.errors import ConfigError
from mixgap.core.overrides import check_keys, check_override_keys, unknown_key_message
from mixgap.core.schema import (
    CONF_DIR,
    AnalyzeConfig,
    BenchmarkConfig,
    ClusterConfig,
    DataConfig,
    EvalConfig,
    FinetuneConfig,
    LoraConfig,
    MixConfig,
    MixgapConfig,
    PathsConfig,
    PredictConfig,
    ReportConfig,
    SourceConfig,
    TrackingConfig,
    group_options,
    register_configs,
)
from mixgap.core.schema_models import (
    BARE_PROMPT,
    PAPER_PROMPT,
    DatasetResponses,
    FieldMap,
    GgufSource,
    JudgeConfig,
    ModelArch,
    SamplingConfig,
    StudentConfig,
    TeacherConfig,
)

__all__ = [
    "ANSWER_FORMATS", "BARE_PROMPT", "CONF_DIR", "EVAL_BACKENDS", "EXTRACTIONS", "EXTRACT_MODES", "FINETUNE_MODES",
    "MISSING_POOL_POLICIES", "PAPER_PROMPT", "AnalyzeConfig", "BenchmarkConfig",
    "ClusterConfig", "ConfigError", "DataConfig", "DatasetResponses", "EvalConfig", "FieldMap", "FinetuneConfig",
    "GgufSource", "JudgeConfig", "LoraConfig", "MixConfig", "MixgapConfig", "ModelArch", "PathsConfig",
    "PredictConfig", "ReportConfig", "SamplingConfig", "SourceConfig", "StudentConfig", "TeacherConfig",
    "TrackingConfig", "check_keys", "check_override_keys", "data_root", "group_options", "register_configs",
    "to_container", "unknown_key_message", "validate",
]

EXTRACTIONS = ("boxed", "last_number")  # how a benchmark's answer is read (mixgap.grading.extract_answer)
EXTRACT_MODES = ("policy", "boxed")  # eval.extract: mixgap's grading policy | the official scorer's last box only
EVAL_BACKENDS = ("auto", "vllm", "hf")
FINETUNE_MODES = ("full", "lora")
ANSWER_FORMATS = ("plain", "boxed_in_solution", "after_hashes", "list_join")
MISSING_POOL_POLICIES = ("generate", "wait", "fail")


def _one_of(path: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        shown = ", ".join("null" if a is None else str(a) for a in allowed)  # as typed on the command line
        raise ConfigError(f"{path}={value!r} is not allowed; choose one of {shown}")


def _fraction(path: str, value: float, low_open: bool, high_open: bool) -> None:
    """``value`` in the interval from 0 to 1, each end open or closed as given; one line otherwise."""
    if value is None or value < 0 or value > 1 or (low_open and value == 0) or (high_open and value == 1):
        rule = f"{'(' if low_open else '['}0, 1{')' if high_open else ']'}"
        raise ConfigError(f"{path}={value!r} is not allowed; it must be in {rule}")


def _no_file(path: str, value: Any) -> None:
    """A folder to write or read may be new or a folder, never an existing file or an empty string."""
    if value is not None and (str(value).strip() == "" or Path(str(value)).expanduser().is_file()):
        what = "empty" if str(value).strip() == "" else "a file"
        raise ConfigError(f"{path}={str(value)!r} is not allowed; it is {what}: give a folder (new or existing)")

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
    # how global_batch_size splits over devices (per-device batch x accumulation) is the preflight's batch layout
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
    _fraction("finetune_mode.lora.dropout", ft.lora.dropout, low_open=False, high_open=True)
    _positive("finetune_mode.logging_steps", ft.logging_steps)
    _positive("finetune_mode.save_steps", ft.save_steps)
    if ft.max_steps != -1 and ft.max_steps <= 0:
        raise ConfigError(f"finetune_mode.max_steps={ft.max_steps!r} is not allowed; it must be -1 (train "
                          "finetune_mode.epochs) or > 0")

    for name in ("gpu_memory_gb", "gpu_bf16_tflops", "gpu_memory_bandwidth_gbs"):
        _positive(f"cluster.{name}", cfg.cluster[name])
    headroom = cfg.cluster.get("memory_headroom", 0.0)
    if not 0.0 <= headroom < 1.0:
        raise ConfigError(f"cluster.memory_headroom={headroom!r} is not allowed; it must be in [0, 1)")
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
    _positive("eval.tensor_parallel_size", cfg.eval.tensor_parallel_size)
    _fraction("eval.length_warning", cfg.eval.length_warning, low_open=False, high_open=False)
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
        _positive("eval.judge.tensor_parallel_size", cfg.eval.judge.tensor_parallel_size)
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
    _positive("report.n_boot", cfg.report.n_boot)
    _fraction("report.confidence", cfg.report.confidence, low_open=True, high_open=True)
    _no_file("paths.cache", cfg.paths.cache)
    for stage in ("report", "analyze"):
        _no_file(f"{stage}.out", cfg[stage].out)
    _one_of("data.decontamination", cfg.data.decontamination, ("error", "drop", "allow"))
    _one_of("data.missing_pool", cfg.data.missing_pool, MISSING_POOL_POLICIES)
    _one_of("tracking.backend", cfg.tracking.backend, ("wandb", "none"))
    _one_of("tracking.mode", cfg.tracking.mode, ("auto", "online", "offline", "disabled"))
    for role, teacher in (("mix.strong", cfg.mix.strong), ("mix.weak", cfg.mix.weak), ("teacher", cfg.get("teacher"))):
        relative = teacher is not None and teacher.get("dataset") is not None and teacher.dataset.path
        if relative and not cfg.paths.data and not Path(relative).is_absolute():  # MIXGAP_DATA unset or empty
            raise ConfigError(
                f"{role}.dataset.path={relative!r} is a file of the offline data kit, but MIXGAP_DATA (paths.data) "
                "is not set; point it at the kit folder (math/, gsm8k/, eval/, traces/)"
            )
    if cfg.paths.data and not Path(cfg.paths.data).is_dir():
        raise ConfigError(
            f"paths.data={cfg.paths.data!r} (from MIXGAP_DATA or the command line) is not an existing folder; point "
            "it at the offline data kit (math/, gsm8k/, eval/, traces/) or unset it to read the Hugging Face Hub"
        )
    if cfg.stage == "export":
        check_export(cfg.export, list(cfg.benchmark))
    if cfg.stage in ("report", "analyze") and not cfg[cfg.stage].sweep:
        raise ConfigError(f"{cfg.stage}.sweep is empty; give a multirun folder, e.g. {cfg.stage}.sweep=multirun/<date>/<time>")
    if cfg.stage in ("report", "analyze"):
        sweeps = to_container(cfg[cfg.stage].sweep)
        for sweep in [sweeps] if isinstance(sweeps, str) else sweeps:
            if not Path(str(sweep)).is_dir():
                raise ConfigError(f"{cfg.stage}.sweep={str(sweep)!r} is not a folder; give a multirun folder, e.g. "
                                  f"{cfg.stage}.sweep=multirun/<date>/<time>")


def check_export(export: DictConfig, benchmarks: Sequence[str] = ()) -> None:
    """``stage=export``: a folder to write (not a file), an artifact of the allowed forms (an evaluation of one of
    the job's ``benchmarks``) and, with ``export.repo_id``, the Hub reachable (not ``HF_HUB_OFFLINE``) with a
    token; checked before any work.

    Raises:
        ConfigError: one line naming the field, the value and what is allowed.
    """
    if not export.out:
        raise ConfigError("export.out=None is not allowed with stage=export; give the folder to write, e.g. export.out=exports/pool")
    _no_file("export.out", export.out)
    parts = str(export.artifact).split(".")
    if not (export.artifact in ("pool.strong", "pool.weak", "mixture")
            or (len(parts) == 3 and parts[0] == "eval" and parts[1] in ("tuned", "untuned") and parts[2])):
        raise ConfigError(f"export.artifact={export.artifact!r} is not allowed; choose pool.strong, pool.weak, mixture, "
                          "eval.tuned.<benchmark> or eval.untuned.<benchmark>")
    if parts[0] == "eval" and benchmarks and parts[2] not in benchmarks:
        raise ConfigError(f"export.artifact={export.artifact!r} is not allowed: {parts[2]} is not one of the job's "
                          f"benchmarks; choose eval.{parts[1]}.<one of {', '.join(benchmarks)}> (or add it with "
                          f"benchmark=[...])")
    if export.repo_id:
        if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
            raise ConfigError(f"export.repo_id={export.repo_id!r} needs the Hugging Face Hub, but HF_HUB_OFFLINE is set; "
                              "unset it, or drop export.repo_id to write the folder only")
        import huggingface_hub  # heavy: huggingface_hub, only to find a token for a push

        if not huggingface_hub.get_token():
            raise ConfigError(f"export.repo_id={export.repo_id!r} needs a Hugging Face token (HF_TOKEN or `hf auth "
                              "login`); none found: log in, or drop export.repo_id to write the folder only")


def _check_teacher(path: str, teacher: DictConfig) -> None:
    """The teacher fields every backend reads; the backend's own (its name, a model or a dataset) are checked by
    the plan against the registered backend (:func:`mixgap.plan.table.check_teacher`)."""
    _one_of(f"{path}.cot", teacher.cot, ("long", "short"))
    _positive(f"{path}.sampling.n", teacher.sampling.n)
    _positive(f"{path}.sampling.temperature", teacher.sampling.temperature, allow_zero=True)
    _positive(f"{path}.sampling.max_new_tokens", teacher.sampling.max_new_tokens)
    _positive(f"{path}.tensor_parallel_size", teacher.tensor_parallel_size)


def data_root(cfg: DictConfig) -> Path | None:
    """The offline kit folder (``paths.data``, filled from ``MIXGAP_DATA``), or None for the Hub."""
    value = cfg.paths.data if cfg.paths.data is not None else os.environ.get("MIXGAP_DATA")
    return Path(value).expanduser().resolve() if value else None

def to_container(node: Any) -> Any:
    """A resolved plain-Python copy of a config node (dicts, lists, scalars); plain values pass through."""
    if OmegaConf.is_config(node):
        return OmegaConf.to_container(node, resolve=True)
    return node
