"""Preflight: will a job run on its allocation, and what will it cost? Pure arithmetic, no model loaded.

:func:`preflight` plans one composed job config for ``gpus`` GPUs of ``cluster.gpu_memory_gb`` each: the
training layout (world size, per-device batch, gradient accumulation giving exactly the configured global
batch), memory per GPU for training and for vLLM generation/evaluation, time, and the refusals (one line
each, naming the field, the value and what is allowed). ``stage=plan`` writes its result into each job's
``result.json``; the multirun sweeper (``hydra_plugins/mixgap_sweeper``) runs it on every sweep point before
the launcher starts anything; the train stage takes its batch layout from :func:`batch_layout`.

It plans what the job itself builds on its allocation: with ``data.missing_pool`` ``wait``/``fail`` (or a
teacher pool already in the store, or an imported pool) the job generates no teacher pool, so the teacher's
memory is not its own; evaluation of a student too large for one GPU is planned with the smallest tensor
parallel size that fits (:func:`eval_tensor_parallel`).

Sources of the formulas (each function's docstring names its own):

- model states: Rajbhandari et al. 2020, "ZeRO: Memory Optimizations Toward Training Trillion Parameter
  Models" (arXiv 1910.02054), Sec. 3.1/5: mixed-precision Adam keeps 2 (bf16 weights) + 2 (bf16 gradients)
  + 12 (fp32 master weights, momentum, variance) bytes per parameter; stage 1 partitions the 12, stage 2
  also the gradients, stage 3 also the weights. DeepSpeed's estimators
  (``deepspeed.runtime.zero.stage_1_and_2.estimate_zero2_model_states_mem_needs``: ``4 N + 16 N / gpus``;
  ``deepspeed.runtime.zero.stage3.estimate_zero3_model_states_mem_needs``: ``4 L + 18 N / gpus`` with ``L``
  the largest layer's parameters) are what we use, without offload.
- activations: Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer Models"
  (arXiv 2205.05198), Sec. 4: a layer stores ``s b h (34 + 5 a s / h)`` bytes in 16-bit; flash/SDPA
  attention removes the ``5 a s / h`` term. With full gradient checkpointing only each layer's input
  (``2 s b h`` bytes) is kept, plus one layer being recomputed.
- vLLM KV cache: ``2 (K and V) x layers x kv_heads x head_dim x bytes`` per token (the PagedAttention
  paper, Kwon et al. 2023, Sec. 2; vLLM's ``CacheEngine.get_cache_block_size``).
- training FLOPs: ``6 N D`` (Kaplan et al. 2020, Sec. 2.1), ``4 N D`` for LoRA (no weight gradients of the
  frozen base: the backward is half weight-, half input-gradients); MFU counts model FLOPs only (Chowdhery
  et al. 2022, PaLM, App. B), so recomputation is not in it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from omegaconf import DictConfig

from mixgap.core.config import ConfigError

GB = 1e9  # memory in decimal gigabytes (GPU datasheets: "80 GB")
BF16 = 2  # bytes per parameter / activation element in bf16
#: Tokens of the prompt an evaluation or generation must fit beside its new tokens: the paper's prompt +
#: the chat template + a MATH/OlympiadBench problem. Assumption: the longest MATH500 prompts are ~400
#: Qwen tokens with the template; 512 leaves room.
PROMPT_TOKENS = 512
#: CUDA context, NCCL buffers and allocator fragmentation per GPU (assumption, ~1.5-3 GB measured on
#: A100/H100 PyTorch jobs; benchmarks/gpu_check.py compares our estimate with a measured peak).
OVERHEAD_GB = 2.0
#: Bytes per logit of the last layer in training: the bf16 logits plus transformers' fp32 upcast in the
#: cross-entropy and its gradient (assumption: 2 + 4 + 4; the logits of a 152k vocabulary dominate the
#: activations of small students at long sequences).
LOGIT_BYTES = 10
#: Released training set size: UWNSL/Mix-Long_long_0.2_short_0.8 has 5,383 rows (PAPER-NOTES, Sec. 2),
#: the problems both teachers solved. Used when no pool manifest is in the store.
PAPER_EXAMPLES = 5383
#: Mean characters per response of the released data (PAPER-NOTES, Sec. 2): long CoT 22.36 MB / 5,383 rows
#: = 4,154; Mix-Long 10.14 MB / 5,383 = 1,884 = 0.2 x 4,154 + 0.8 x short, so short = 1,316.
PAPER_CHARS = {"long": 4154.0, "short": 1316.0}
#: Characters per token for English math text with LaTeX (assumption, Qwen/Llama BPE tokenizers).
CHARS_PER_TOKEN = 3.5
#: Benchmark sizes (PAPER-NOTES, Sec. 4: counted in the authors' eval data / the HF test splits).
BENCHMARK_SIZES = {"math500": 500, "math": 5000, "gsm8k": 1319, "aime24": 30, "amc23": 40, "olympiadbench": 675}
TENSOR_PARALLEL_SIZES = (1, 2, 4, 8)


@dataclass(frozen=True)
class BatchLayout:
    """How a global batch is realised: ``global = per_device x world_size x accumulation``, exactly."""

    world_size: int
    per_device_batch_size: int
    gradient_accumulation_steps: int
    global_batch_size: int
    derived: bool  # True: the per-device batch was lowered from the configured one to divide the global batch


def batch_layout(global_batch: int, per_device: int, world_size: int) -> BatchLayout:
    """The layout giving exactly ``global_batch`` examples per optimiser step on ``world_size`` devices.

    Keeps ``per_device`` when ``per_device x world_size`` divides the global batch; else derives the largest
    per-device batch ``p <= per_device`` with ``global % (p x world_size) == 0`` (e.g. global 8 on 8 GPUs
    with per-device 2: per-device 1, accumulation 1). The global batch is never changed.

    Raises:
        ConfigError: the global batch is not a positive multiple of ``world_size`` (no layout exists), or a
            value is not positive.
    """
    if global_batch <= 0 or per_device <= 0 or world_size <= 0:
        raise ConfigError(
            f"finetune_mode.global_batch_size={global_batch} with per_device_batch_size={per_device} on "
            f"{world_size} GPU(s) is not allowed; all three must be > 0"
        )
    if global_batch % world_size:
        allowed = [w for w in TENSOR_PARALLEL_SIZES if global_batch % w == 0]
        raise ConfigError(
            f"finetune_mode.global_batch_size={global_batch} is not allowed on {world_size} GPUs; it must be a "
            f"multiple of the world size (this batch runs on {', '.join(map(str, allowed))} GPUs)"
        )
    for p in range(min(per_device, global_batch // world_size), 0, -1):
        if global_batch % (p * world_size) == 0:
            return BatchLayout(world_size, p, global_batch // (p * world_size), global_batch, p != per_device)
    raise AssertionError("unreachable: p = 1 always divides")  # pragma: no cover


def head_dim(arch: DictConfig | Any) -> int:
    """Attention head size: ``arch.head_dim`` when given (Gemma-2), else ``hidden / heads``."""
    return int(arch.head_dim) if arch.get("head_dim") else arch.hidden // arch.heads


def layer_params(arch: Any) -> int:
    """Parameters of one decoder layer: q/k/v/o projections + gated MLP (gate, up, down); norms ignored."""
    d = head_dim(arch)
    attention = arch.hidden * arch.heads * d * 2 + arch.hidden * arch.kv_heads * d * 2
    return attention + 3 * arch.hidden * arch.intermediate


def largest_layer_params(arch: Any) -> int:
    """The largest single module's parameters, ``L`` of DeepSpeed's ZeRO-3 estimator: the embedding
    (``vocab x hidden``) or one decoder layer, whichever is larger."""
    return max(arch.vocab * arch.hidden, layer_params(arch))


def memory_remedies(mode: str, world: int, max_seq_len: int) -> list[str]:
    """What can bring a training job under ``cluster.gpu_memory_gb``: only the remedies the job does not
    already use (more GPUs below 8 per node, LoRA instead of full SFT, a shorter sequence)."""
    remedies = []
    if world < 8:
        remedies.append("more GPUs (hydra/launcher=slurm, 8 per node)")
    if mode != "lora":
        remedies.append("finetune_mode=lora")
    remedies.append(f"a shorter finetune_mode.max_seq_len (now {max_seq_len})")
    remedies.append("GPUs with more memory (cluster.gpu_memory_gb)")
    return remedies


def lora_params(arch: Any, r: int, targets: list[str]) -> int:
    """Trainable LoRA parameters: ``r x (in + out)`` per adapted linear layer (Hu et al. 2021, Sec. 4.1),
    over ``arch.layers`` layers and the projections in ``targets`` (q/k/v/o/gate/up/down_proj names)."""
    d = head_dim(arch)
    shapes = {
        "q_proj": (arch.hidden, arch.heads * d), "k_proj": (arch.hidden, arch.kv_heads * d),
        "v_proj": (arch.hidden, arch.kv_heads * d), "o_proj": (arch.heads * d, arch.hidden),
        "gate_proj": (arch.hidden, arch.intermediate), "up_proj": (arch.hidden, arch.intermediate),
        "down_proj": (arch.intermediate, arch.hidden),
    }
    return arch.layers * sum(r * sum(shapes[t]) for t in targets if t in shapes)


def model_states_bytes(params: float, trainable: float, largest_layer: float, zero_stage: int, gpus: int) -> float:
    """Bytes per GPU of weights, gradients and Adam states (mixed precision), by ZeRO stage.

    Full SFT (``trainable == params``), DeepSpeed's estimators without offload: stage 3
    ``4 L + 18 N / gpus``; stage 2 ``4 N + 16 N / gpus``; no DeepSpeed ``16 N`` (fp32 weights and
    gradients under autocast + Adam's two fp32 moments; our plain-Trainer path). LoRA: the frozen base in
    bf16 (``2 N``, ``/ gpus`` under ZeRO-3) + ``16 T`` for the ``T`` trainable fp32 adapter parameters
    (weights, gradients, two moments; partitioned by stage 2/3). Source: the ZeRO paper's 2 + 2 + 12
    bytes/parameter (Rajbhandari et al. 2020, Sec. 3.1) and DeepSpeed's ``estimate_zero{2,3}_model_states_mem_needs``.
    """
    if trainable >= params:  # full fine-tuning
        if zero_stage == 3:
            return 4 * largest_layer + 18 * params / gpus
        if zero_stage == 2:
            return 4 * params + 16 * params / gpus
        return 16.0 * params
    base = BF16 * params / (gpus if zero_stage == 3 else 1)
    adapter = 16 * trainable / (gpus if zero_stage in (2, 3) else 1)
    return base + adapter + (4 * largest_layer if zero_stage == 3 else 0)


def activation_bytes(arch: Any, tokens: int, checkpointing: bool) -> float:
    """Activation bytes of one micro-batch of ``tokens`` (per-device batch x max_seq_len) on one GPU.

    With gradient checkpointing: each layer's input kept in bf16 (``2 t h`` per layer) + one layer
    recomputed (``34 t h``, Korthikanti et al. 2022 Sec. 4.1 with flash/SDPA attention: no ``5 a s / h``
    term; assumption: the gated MLP of width ``intermediate`` costs as their ``4h`` MLP) + the logits
    (``LOGIT_BYTES x t x vocab``). Without: ``34 t h`` for every layer + the logits.
    """
    per_layer = 34 * tokens * arch.hidden
    stored = arch.layers * BF16 * tokens * arch.hidden + per_layer if checkpointing else arch.layers * per_layer
    return stored + LOGIT_BYTES * tokens * arch.vocab


def kv_bytes_per_token(arch: Any, dtype_bytes: int = BF16) -> int:
    """vLLM KV cache per token over all layers: ``2 x layers x kv_heads x head_dim x bytes`` (Kwon et al.
    2023; vLLM ``CacheEngine.get_cache_block_size`` / block size)."""
    return 2 * arch.layers * arch.kv_heads * head_dim(arch) * dtype_bytes


def generation_memory_gb(arch: Any, tensor_parallel: int, tokens_in_flight: int) -> float:
    """GB per GPU for vLLM: bf16 weights / TP + KV cache of ``tokens_in_flight`` tokens / TP + overhead.

    KV heads are split over the TP ranks, or replicated when there are fewer KV heads than ranks
    (vLLM's ``num_kv_heads = max(1, kv_heads // tp)``).
    """
    kv_per_rank = max(1, arch.kv_heads // tensor_parallel) * 2 * arch.layers * head_dim(arch) * BF16
    weights = BF16 * arch.params_b * 1e9 / tensor_parallel
    return (weights + kv_per_rank * tokens_in_flight) / GB + OVERHEAD_GB


def tensor_parallel_refusal(field: str, tp: int, arch: Any, gpus: int) -> str | None:
    """One line when ``tp`` does not divide the attention heads (vLLM's requirement) or exceeds ``gpus``."""
    if tp > gpus:
        return f"{field}={tp} is not allowed on {gpus} GPU(s); it must be <= the node's GPUs (hydra.launcher.gpus_per_node)"
    if arch.heads % tp:
        allowed = [t for t in TENSOR_PARALLEL_SIZES if arch.heads % t == 0 and t <= gpus]
        return (f"{field}={tp} is not allowed: it must divide the {arch.heads} attention heads; allowed: "
                f"{', '.join(map(str, allowed))}")
    return None


def eval_tensor_parallel(arch: Any, configured: int, gpus: int, memory_gb: float, sequence: int, batch: int) -> int:
    """The evaluation's tensor parallel size: the smallest TP in {configured} + 1/2/4/8 (>= configured,
    dividing the heads, <= ``gpus``) whose weights + KV cache of the whole batch (``batch`` sequences of
    ``sequence`` tokens) fit ``memory_gb``; else the smallest where one sequence fits (what vLLM needs to
    start; it then runs fewer sequences at once); else ``configured`` (refused by the caller)."""
    candidates = [configured] + [t for t in TENSOR_PARALLEL_SIZES if configured < t <= gpus and arch.heads % t == 0]
    for tokens in (sequence * batch, sequence):
        for tp in candidates:
            if generation_memory_gb(arch, tp, tokens) <= memory_gb:
                return tp
    return configured


def training_tokens(cfg: DictConfig, store: Any = None) -> tuple[float, str]:
    """Tokens of one epoch of the job's mixture and where the figure comes from.

    From the pool manifests in ``store`` when both are done (kept problems of the smaller pool, mean
    response length in tokens, or characters / ``CHARS_PER_TOKEN``), else the paper's released data
    (``PAPER_EXAMPLES`` rows, ``PAPER_CHARS`` by CoT kind); mixed by ``mix.weight``; plus ``PROMPT_TOKENS``
    per example as an upper bound of the prompt.
    """
    lengths, examples, source = {}, [], "paper"
    if store is not None:
        try:
            from mixgap.pipeline import job_specs  # noqa: PLC0415

            specs = job_specs(cfg)
            for role in ("strong", "weak"):
                key = specs[f"pool.{role}"].key
                if not store.is_done(key):
                    raise KeyError(key)
                counts = store.manifest(key).get("counts", {})
                length = counts["length"]
                per = length["mean"] / (1 if length["unit"] == "tokens" else CHARS_PER_TOKEN)
                lengths[role], _ = per, examples.append(counts["kept"])
            source = "pool manifests"
        except (KeyError, TypeError, ValueError, ConfigError):
            lengths, examples, source = {}, [], "paper"
    if not lengths:
        lengths = {r: PAPER_CHARS[cfg.mix[r].cot] / CHARS_PER_TOKEN for r in ("strong", "weak")}
        examples = [PAPER_EXAMPLES]
    w = float(cfg.mix.weight)
    mean = w * lengths["strong"] + (1 - w) * lengths["weak"] + PROMPT_TOKENS
    n = min(examples)
    return n * mean, f"{source}: {n} examples x {mean:.0f} tokens"


def eval_samples(cfg: DictConfig, bench: DictConfig) -> int:
    """Completions one evaluation arm decodes on ``bench``: problems (the benchmark's size, cut by
    ``benchmark.<key>.limit`` / ``eval.limit``) x samples per problem (:func:`mixgap.stages.evaluate.sampling_fields`)."""
    from mixgap.stages.evaluate import sampling_fields  # noqa: PLC0415

    problems = min(BENCHMARK_SIZES.get(bench.name, 0), bench.limit or math.inf, cfg.eval.limit or math.inf)
    sampling = sampling_fields(cfg.eval, bench)
    return int(problems) * (sampling["n_samples"] if sampling else 1)


def decode_tokens_per_s(params: float, tensor_parallel: int, tflops: float, decode_mfu: float) -> float:
    """Batched decoding throughput of one vLLM engine, tokens/s: ``TP x peak x decode_mfu / (2 N)``.

    A generated token costs ``2 N`` FLOPs of a dense decoder with ``N`` parameters (forward pass only,
    Kaplan et al. 2020, Table 1); ``decode_mfu`` is the fraction of the bf16 peak batched decoding reaches
    (``cluster.decode_mfu``, a planning assumption: set it from a measured run). So throughput falls with
    model size: a 70B model decodes ~140x slower per GPU than a 0.5B one.
    """
    return tensor_parallel * tflops * 1e12 * decode_mfu / (2.0 * params)


def train_hours(params: float, tokens: float, epochs: float, gpus: int, tflops: float, mfu: float, lora: bool) -> float:
    """Wall hours of training: ``k N D epochs / (gpus x peak x MFU)``, k = 6 (full, Kaplan et al. 2020) or
    4 (LoRA: no weight gradients for the frozen base)."""
    flops = (4 if lora else 6) * params * tokens * epochs
    return flops / (gpus * tflops * 1e12 * mfu) / 3600


def launcher_gpus(launcher: DictConfig | None) -> int:
    """GPUs per job of a Hydra launcher config: ``gpus_per_node x nodes`` for submitit launchers, 1 for
    the basic launcher (or a launcher without GPUs, e.g. the CPU test cluster's ``gpus_per_node: null``)."""
    if launcher is None or "gpus_per_node" not in launcher:
        return 1
    return max(1, int(launcher.get("gpus_per_node") or 1)) * max(1, int(launcher.get("nodes") or 1))


def _builds(cfg: DictConfig) -> dict[str, bool]:
    stage = "all" if cfg.stage == "plan" else cfg.stage
    return {
        "train": stage in ("train", "all"),
        "evaluate": stage in ("evaluate", "all"),
        "generate": stage in ("generate", "mix", "train", "evaluate", "all"),
    }


def _generating_teachers(cfg: DictConfig, store: Any) -> list[tuple[str, DictConfig]]:
    """Teachers this job would generate with on its allocation (see the module docstring)."""
    if cfg.stage == "generate":
        roles = {"teacher": cfg.teacher} if cfg.get("teacher") else {r: cfg.mix[r] for r in ("strong", "weak")}
        return [("teacher" if r == "teacher" else f"mix.{r}", t) for r, t in roles.items() if t.backend != "dataset"]
    if not _builds(cfg)["generate"] or cfg.data.missing_pool != "generate":
        return []
    out = []
    for role in ("strong", "weak"):
        teacher = cfg.mix[role]
        if teacher.backend == "dataset":
            continue
        if store is not None:
            from mixgap.pipeline import job_specs  # noqa: PLC0415

            if store.is_done(job_specs(cfg)[f"generation.{role}"].key):
                continue
        out.append((f"mix.{role}", teacher))
    return out


def preflight(cfg: DictConfig, gpus: int, store: Any = None) -> dict[str, Any]:
    """Plan one composed job for ``gpus`` GPUs of ``cfg.cluster.gpu_memory_gb``: layout, memory, time, refusals.

    Args:
        cfg: a composed, validated job config (``MixgapConfig``).
        gpus: GPUs of the job's allocation (:func:`launcher_gpus`).
        store: the artifact store (``mixgap.core.store.Store``) or None; read for pool manifests and finished pools.

    Returns:
        ``world_size``, ``per_device_batch_size``, ``gradient_accumulation_steps``, ``global_batch_size``
        (None when the layout is refused), ``train_memory_gb_per_gpu``, ``generation_memory_gb_per_gpu``
        (the largest of evaluation and the teachers it generates with; None when nothing), ``eval_tensor_parallel_size``,
        ``train_hours_estimate``, ``eval_hours_estimate`` (upper bound: every completion runs to
        ``eval.max_new_tokens``), ``gpu_hours_estimate`` (the allocation's GPUs x both), ``tokens_source``,
        ``gpus``, ``gpu_memory_gb``, ``refusals`` (one-line reasons; empty: the job fits).
    """
    cl = cfg.cluster
    memory = float(cl.gpu_memory_gb)
    builds = _builds(cfg)
    student, arch = cfg.student, cfg.student.get("arch")
    refusals: list[str] = []
    out: dict[str, Any] = {
        "gpus": gpus, "gpu_memory_gb": memory, "world_size": None, "per_device_batch_size": None,
        "gradient_accumulation_steps": None, "global_batch_size": None, "train_memory_gb_per_gpu": None,
        "generation_memory_gb_per_gpu": None, "eval_tensor_parallel_size": None, "train_hours_estimate": 0.0,
        "eval_hours_estimate": 0.0, "eval_untuned_hours_estimate": 0.0, "gpu_hours_estimate": 0.0, "tokens_source": None, "refusals": refusals,
    }
    ft = cfg.finetune_mode
    if builds["train"]:
        world = gpus if ft.launch != "local" else 1
        try:
            layout = batch_layout(ft.global_batch_size, ft.per_device_batch_size, world)
            out.update({k: v for k, v in asdict(layout).items() if k != "derived"})
        except ConfigError as err:
            refusals.append(str(err))
            layout = None
        if arch is not None:
            if ft.max_seq_len > arch.max_position_embeddings:
                refusals.append(
                    f"finetune_mode.max_seq_len={ft.max_seq_len} is not allowed for student={student.name}; it must be "
                    f"<= its context, max_position_embeddings={arch.max_position_embeddings}"
                )
            if layout is not None:
                lora = ft.mode == "lora"
                params = arch.params_b * 1e9
                trainable = lora_params(arch, ft.lora.r, list(ft.lora.target_modules)) if lora else params
                # on GPUs, launch=auto starts torchrun with DeepSpeed (mixgap.stages.train.launch); local: a plain Trainer
                zero = {"zero2": 2, "zero3": 3}.get(ft.deepspeed, 0) if ft.launch != "local" else 0
                states = model_states_bytes(params, trainable, largest_layer_params(arch), zero, world)
                acts = activation_bytes(arch, layout.per_device_batch_size * ft.max_seq_len, ft.gradient_checkpointing)
                gb = (states + acts) / GB + OVERHEAD_GB
                out["train_memory_gb_per_gpu"] = round(gb, 1)
                if gb > memory:
                    refusals.append(
                        f"finetune_mode.mode={ft.mode} for student={student.name} needs {gb:.1f} GB per GPU on {world} "
                        f"GPU(s) (ZeRO-{zero or 'off'}, per-device batch {layout.per_device_batch_size} x "
                        f"{ft.max_seq_len} tokens) > cluster.gpu_memory_gb={memory:g}; allowed: "
                        + ", ".join(memory_remedies(ft.mode, world, ft.max_seq_len))
                    )
                tokens, out["tokens_source"] = training_tokens(cfg, store)
                out["train_hours_estimate"] = round(
                    train_hours(params, tokens, ft.epochs, world, cl.gpu_bf16_tflops, cl.mfu, lora), 3
                )
    generation: list[float] = []
    if builds["evaluate"] and arch is not None:
        context = cfg.eval.max_new_tokens + PROMPT_TOKENS
        if context > arch.max_position_embeddings:
            refusals.append(
                f"eval.max_new_tokens={cfg.eval.max_new_tokens} is not allowed for student={student.name}: with a "
                f"{PROMPT_TOKENS}-token prompt it exceeds max_position_embeddings={arch.max_position_embeddings}; "
                f"allowed: <= {arch.max_position_embeddings - PROMPT_TOKENS}"
            )
        bad_tp = tensor_parallel_refusal("eval.tensor_parallel_size", cfg.eval.tensor_parallel_size, arch, gpus)
        if bad_tp:
            refusals.append(bad_tp)
        else:
            one_sequence = min(context, arch.max_position_embeddings)
            tp = eval_tensor_parallel(arch, cfg.eval.tensor_parallel_size, gpus, memory, one_sequence, cfg.eval.batch_size)
            out["eval_tensor_parallel_size"] = tp
            # vLLM fills what the GPU has: the batch's KV cache, capped at the GPU's memory
            generation.append(min(generation_memory_gb(arch, tp, one_sequence * cfg.eval.batch_size), memory))
            if generation_memory_gb(arch, tp, one_sequence) > memory:
                refusals.append(
                    f"evaluation of student={student.name} needs {generation_memory_gb(arch, tp, one_sequence):.1f} GB "
                    f"per GPU at eval.tensor_parallel_size={tp} > cluster.gpu_memory_gb={memory:g}; allowed: a larger "
                    f"eval.tensor_parallel_size dividing {arch.heads} heads, <= {gpus} GPUs"
                )
            samples = sum(eval_samples(cfg, b) for b in cfg.benchmark.values())
            rate = decode_tokens_per_s(arch.params_b * 1e9, tp, cl.gpu_bf16_tflops, cl.decode_mfu)
            one_arm = round(samples * cfg.eval.max_new_tokens / rate / 3600, 3)
            tuned = builds["train"]  # stage=all (and plan): the fine-tuned student is evaluated; stage=evaluate: not
            out["eval_untuned_hours_estimate"] = one_arm if cfg.eval.untuned or not tuned else 0.0
            out["eval_hours_estimate"] = round(one_arm * tuned + out["eval_untuned_hours_estimate"], 3)
    for field, teacher in _generating_teachers(cfg, store):
        t_arch = teacher.get("arch")
        context = teacher.sampling.max_new_tokens + PROMPT_TOKENS
        if context > teacher.max_model_len:
            refusals.append(
                f"{field}.sampling.max_new_tokens={teacher.sampling.max_new_tokens} is not allowed: with a "
                f"{PROMPT_TOKENS}-token prompt it exceeds {field}.max_model_len={teacher.max_model_len}"
            )
        if t_arch is None:
            continue
        if teacher.max_model_len > t_arch.max_position_embeddings:
            refusals.append(
                f"{field}.max_model_len={teacher.max_model_len} is not allowed for {teacher.name}; it must be <= "
                f"max_position_embeddings={t_arch.max_position_embeddings}"
            )
        bad_tp = tensor_parallel_refusal(f"{field}.tensor_parallel_size", teacher.tensor_parallel_size, t_arch, gpus)
        if bad_tp:
            refusals.append(bad_tp)
            continue
        need = generation_memory_gb(t_arch, teacher.tensor_parallel_size, min(context, teacher.max_model_len))
        generation.append(need)
        if need > memory:
            refusals.append(
                f"{field}.tensor_parallel_size={teacher.tensor_parallel_size} is too small for {teacher.name}: "
                f"{need:.1f} GB per GPU > cluster.gpu_memory_gb={memory:g}"
            )
    if generation:
        out["generation_memory_gb_per_gpu"] = round(max(generation), 1)
    out["gpu_hours_estimate"] = round(gpus * (out["train_hours_estimate"] + out["eval_hours_estimate"]), 3)
    return out


def log_preflight(report: dict[str, Any]) -> None:
    """Log one line of the plan (layout, memory per GPU, hours) and one per refusal."""
    import logging  # noqa: PLC0415

    log = logging.getLogger(__name__)
    log.info("preflight: %s", describe(report))
    for reason in report["refusals"]:
        log.error("preflight refused: %s", reason)


def _gb(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} GB"


def describe(report: dict[str, Any]) -> str:
    """One line: GPUs, batch layout, train/generation memory per GPU, hours and GPU-hours."""
    layout = (f"world {report['world_size']} x per-device {report['per_device_batch_size']} x accumulation "
              f"{report['gradient_accumulation_steps']} = global {report['global_batch_size']}"
              if report["world_size"] else "no training")
    return (f"{report['gpus']} GPU(s) of {report['gpu_memory_gb']:g} GB; {layout}; train {_gb(report['train_memory_gb_per_gpu'])}"
            f"/GPU, generation {_gb(report['generation_memory_gb_per_gpu'])}/GPU (eval TP "
            f"{report['eval_tensor_parallel_size'] or '-'}); train {report['train_hours_estimate']:.2f} h + eval <= "
            f"{report['eval_hours_estimate']:.2f} h = {report['gpu_hours_estimate']:.1f} GPU-h")


def summary_lines(results: list[dict[str, Any]]) -> tuple[list[str], bool]:
    """Lines for the sweep summary: one per job with a preflight (memory per GPU, hours), its refusals, and
    the sweep's total GPU-hours; and whether any job was refused."""
    planned = [r for r in results if r.get("preflight")]
    if not planned:
        return [], False
    lines = ["preflight per job (memory per GPU; hours on the job's allocation):"]
    total, refused = 0.0, False
    seen_untuned: set[tuple] = set()
    for result in planned:
        pf, job = result["preflight"], result.get("job", {})
        name = f"{job.get('student')} w={job.get('weight')} {job.get('finetune_mode')}"
        lines.append(f"  {name:<28} {describe(pf)}")
        for reason in pf["refusals"]:
            lines.append(f"    REFUSED: {reason}")
            refused = True
        total += pf["gpu_hours_estimate"]
        untuned = job.get("student"), tuple(job.get("benchmarks") or ())
        if untuned in seen_untuned:  # the untuned evaluation is one shared artifact per student: count it once
            total -= pf["gpus"] * pf.get("eval_untuned_hours_estimate", 0.0)
        seen_untuned.add(untuned)
    bad = sum(bool(r["preflight"]["refusals"]) for r in planned)
    lines.append(f"sweep total: {total:.1f} GPU-hours (train at cluster.mfu, evaluation at cluster.decode_mfu with "
                 f"every completion at eval.max_new_tokens: an upper bound; each untuned evaluation counted once; "
                 f"teacher generation and the LLM judge not included); {bad} of {len(planned)} jobs refused")
    return lines, refused


def job_gpus(stage: str, launcher: DictConfig | None) -> int | None:
    """GPUs to plan and enforce a job for: the launcher's (:func:`launcher_gpus`) for ``stage=plan`` and for
    submitit launchers; for the basic launcher 1 when a CUDA GPU is visible, else None (a CPU run: GPU memory
    does not apply, the preflight is recorded for 1 GPU but not enforced)."""
    if stage == "plan" or (launcher is not None and "gpus_per_node" in launcher):
        return launcher_gpus(launcher)
    import torch  # noqa: PLC0415

    return 1 if torch.cuda.is_available() else None
