"""The preflight's arithmetic: memory per GPU, tensor parallelism, throughput and hours, from public model
shapes (``ModelArch``) and cluster facts; pure functions of plain numbers, no model loaded.

Sources of the formulas (each function's docstring names its own):

- model states: Rajbhandari et al. 2020, "ZeRO: Memory Optimizations Toward Training Trillion Parameter
  Models" (arXiv 1910.02054), Sec. 3.1/5: mixed-precision Adam keeps 2 (bf16 weights) + 2 (bf16 gradients)
  + 12 (fp32 master weights, momentum, variance) bytes per parameter; stage 1 partitions the 12, stage 2
  also the gradients, stage 3 also the weights. DeepSpeed 0.19's estimators without offload are what we use:
  ``deepspeed.runtime.zero.stage_1_and_2.estimate_zero2_model_states_mem_needs``:
  ``gpu_mem = 2 * total_params + int(18 * total_params / total_gpus)`` ("2 = params_16bit, 18 = 2_grads_16bit
  + 4_grads_32bit + 4_params_32bit + 8_optimizer_states_32bit"), and
  ``deepspeed.runtime.zero.stage3.estimate_zero3_model_states_mem_needs``: ``4 L + 18 N / gpus`` with ``L``
  the largest layer's parameters.
- activations: Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer Models"
  (arXiv 2205.05198), Sec. 4: a layer stores ``s b h (34 + 5 a s / h)`` bytes in 16-bit; flash/SDPA
  attention removes the ``5 a s / h`` term. With full gradient checkpointing only each layer's input
  (``2 s b h`` bytes) is kept, plus one layer being recomputed.
- vLLM KV cache: ``2 (K and V) x layers x kv_heads x head_dim x bytes`` per token (the PagedAttention
  paper, Kwon et al. 2023, Sec. 2; vLLM's ``CacheEngine.get_cache_block_size``).
- training FLOPs: ``6 N D`` (Kaplan et al. 2020, Sec. 2.1), ``4 N D`` for LoRA (no weight gradients of the
  frozen base: the backward is half weight-, half input-gradients); MFU counts model FLOPs only (Chowdhery
  et al. 2022, PaLM, App. B), so recomputation is not in it.
- teacher-forced scoring (a student-aware ``mix.strategy`` scores every problem): ``2 N`` FLOPs per token, the
  forward pass alone (Kaplan et al. 2020, Table 1), at ``cluster.mfu``; memory = weights + the activations of one
  batch without gradients + one LM-head call's fp32 logits (:func:`scoring_memory_gb`).
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

GB = 1e9  # memory in decimal gigabytes (GPU datasheets: "80 GB")
BF16 = 2  # bytes per parameter / activation element in bf16
#: Tokens of the prompt an evaluation or generation must fit beside its new tokens: the paper's prompt +
#: the chat template + a MATH/OlympiadBench problem. Assumption: the longest MATH500 prompts are ~400
#: Qwen tokens with the template; 512 leaves room.
PROMPT_TOKENS = 512
#: CUDA context, NCCL buffers and allocator fragmentation per GPU (assumption, ~1.5-3 GB measured on
#: A100/H100 PyTorch jobs; benchmarks/gpu_check.py compares our estimate with a measured peak).
OVERHEAD_GB = 2.0
#: Bytes per logit (token x vocabulary entry) alive at the backward pass's peak, with transformers' loss
#: (``transformers.loss.loss_utils.ForCausalLMLoss``: ``logits = logits.float()``, then ``nn.functional.cross_entropy``)
#: and PyTorch's autograd (``tools/autograd/derivatives.yaml``: log_softmax saves its output; nll_loss's backward
#: writes a dense gradient): the fp32 log-probabilities saved for the backward (4) + their fp32 gradient (4) + the
#: logits' fp32 gradient (4) = 12. The logits themselves are freed after the forward (the Trainer keeps only the
#: loss); the forward's own peak, bf16 logits 2 + their fp32 copy 4 + log-probabilities 4 = 10, is lower. The same
#: 12 in fp32 (``.float()`` is then no copy). Over the whole micro-batch the logits of a 152k vocabulary dominate a
#: small student's activations at long sequences. benchmarks/bench_train_memory.py measures 12 on this CPU.
LOGIT_BYTES = 12
#: Released training set size: UWNSL/Mix-Long_long_0.2_short_0.8 has 5,383 rows (docs/paper-protocol.md),
#: the problems both teachers solved. Used when no pool manifest is in the store.
PAPER_EXAMPLES = 5383
#: Mean characters per response of the released data (docs/paper-protocol.md): long CoT 22.36 MB / 5,383 rows
#: = 4,154; Mix-Long 10.14 MB / 5,383 = 1,884 = 0.2 x 4,154 + 0.8 x short, so short = 1,316.
PAPER_CHARS = {"long": 4154.0, "short": 1316.0}
#: Characters per token for English math text with LaTeX (assumption, Qwen/Llama BPE tokenizers).
CHARS_PER_TOKEN = 3.5
TENSOR_PARALLEL_SIZES = (1, 2, 4, 8)
#: HBM bandwidth, GB/s: H100 SXM5 80GB 3,350 (NVIDIA H100 Tensor Core GPU datasheet, "GPU memory bandwidth
#: 3.35TB/s"); H200 SXM 141GB 4,800 (NVIDIA H200 datasheet, "4.8TB/s"). ``cluster.gpu_memory_bandwidth_gbs``.
H100_SXM_BANDWIDTH_GBS = 3350.0
H200_SXM_BANDWIDTH_GBS = 4800.0
#: vLLM's defaults: ``gpu_memory_utilization`` 0.9 (the fraction of a GPU an engine takes) and ``max_num_seqs``
#: 256 (sequences decoded at once; vLLM ``SchedulerConfig``/``EngineArgs``): the batch in flight is the KV cache
#: that fits, at most that many sequences.
VLLM_MEMORY_UTILIZATION = 0.9
VLLM_MAX_NUM_SEQS = 256


def head_dim(arch: DictConfig | Any) -> int:
    """Attention head size: ``arch.head_dim`` when given (Gemma-2), else ``hidden / heads``."""
    return int(arch.head_dim) if arch.get("head_dim") else arch.hidden // arch.heads


def layer_params(arch: Any) -> int:
    """Parameters of one decoder layer: q/k/v/o projections + gated MLP (gate, up, down); norms ignored."""
    d = head_dim(arch)
    attention = arch.hidden * arch.heads * d * 2 + arch.hidden * arch.kv_heads * d * 2
    return attention + 3 * arch.hidden * arch.intermediate


def model_params(arch: Any) -> int:
    """Parameters of a dense decoder from its shape: ``layers x (`` :func:`layer_params` ``+ 2 hidden)`` (two RMSNorm
    weight vectors a layer) ``+ hidden`` (the final norm) ``+ vocab x hidden`` (the embedding) ``+ vocab x hidden``
    again unless ``tie_embeddings`` (the LM head). Biases (Qwen2's q/k/v) and Qwen3's per-head q/k norms are left
    out: under 0.1% of the count. Checked against the model-card ``params_b`` of every ``arch:`` block in ``conf/``
    (``tests/unit/test_shapes.py``: within 2%)."""
    embedding = arch.vocab * arch.hidden
    return arch.layers * (layer_params(arch) + 2 * arch.hidden) + arch.hidden + embedding * (1 if arch.tie_embeddings else 2)


def largest_layer_params(arch: Any) -> int:
    """The largest single module's parameters, ``L`` of DeepSpeed's ZeRO-3 estimator: the embedding
    (``vocab x hidden``) or one decoder layer, whichever is larger."""
    return max(arch.vocab * arch.hidden, layer_params(arch))


def memory_remedies(mode: str, world: int, max_seq_len: int, elsewhere: str | None = None) -> list[str]:
    """What can bring a training job under its usable GPU memory: only the remedies the job does not already
    use: ``elsewhere`` (the launcher whose GPUs fit it, with its figures) or, below 8 GPUs, more GPUs; LoRA
    instead of full SFT; a shorter sequence; GPUs with more memory."""
    remedies = [elsewhere] if elsewhere else (["more GPUs (hydra/launcher=slurm, 8 per node)"] if world < 8 else [])
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
    ``4 L + 18 N / gpus``; stage 2 ``2 N + 18 N / gpus`` (``estimate_zero2_model_states_mem_needs``:
    ``2 * total_params + int(18 * total_params / total_gpus)``); no DeepSpeed ``16 N`` (fp32 weights and
    gradients under autocast + Adam's two fp32 moments; our plain-Trainer path). LoRA: the frozen base in
    bf16 (``2 N``, ``/ gpus`` under ZeRO-3) + ``16 T`` for the ``T`` trainable fp32 adapter parameters
    (weights, gradients, two moments; partitioned by stage 2/3). Source: the ZeRO paper's 2 + 2 + 12
    bytes/parameter (Rajbhandari et al. 2020, Sec. 3.1) and DeepSpeed's ``estimate_zero{2,3}_model_states_mem_needs``.
    """
    if trainable >= params:  # full fine-tuning
        if zero_stage == 3:
            return 4 * largest_layer + 18 * params / gpus
        if zero_stage == 2:
            return 2 * params + 18 * params / gpus
        return 16.0 * params
    base = BF16 * params / (gpus if zero_stage == 3 else 1)
    adapter = 16 * trainable / (gpus if zero_stage in (2, 3) else 1)
    return base + adapter + (4 * largest_layer if zero_stage == 3 else 0)


def logit_bytes(tokens: int, vocab: int) -> float:
    """Bytes of the loss's logit buffers at the backward pass's peak: ``LOGIT_BYTES x tokens x vocab`` for the
    whole micro-batch (``tokens`` = per-device batch x max_seq_len; :data:`LOGIT_BYTES` gives the derivation and
    its source)."""
    return LOGIT_BYTES * tokens * vocab


def activation_bytes(arch: Any, tokens: int, checkpointing: bool, element_bytes: int = BF16) -> float:
    """Activation bytes of one micro-batch of ``tokens`` (per-device batch x max_seq_len) on one GPU.

    With gradient checkpointing: each layer's input kept (``2 t h`` bytes per layer in bf16) + one layer
    recomputed (``34 t h``, Korthikanti et al. 2022 Sec. 4.1 with flash/SDPA attention: no ``5 a s / h``
    term; assumption: the gated MLP of width ``intermediate`` costs as their ``4h`` MLP) + the logit buffers
    (:func:`logit_bytes`). Without: ``34 t h`` for every layer + the logit buffers. Korthikanti's 34 counts
    16-bit elements (and 1-byte dropout masks); ``element_bytes=4`` (fp32, a CPU run) scales both terms by 2.
    """
    scale = element_bytes / BF16
    per_layer = 34 * tokens * arch.hidden * scale
    kept = arch.layers * element_bytes * tokens * arch.hidden
    stored = kept + per_layer if checkpointing else arch.layers * per_layer
    return stored + logit_bytes(tokens, arch.vocab)


def usable_memory_gb(memory_gb: float, headroom: float) -> float:
    """GB per GPU a job is planned to use: ``memory_gb x (1 - headroom)`` (``cluster.memory_headroom``: the
    fraction left for the allocator's fragmentation and what the formulas do not count)."""
    return memory_gb * (1.0 - headroom)


def train_memory_gb(cfg: DictConfig, world: int, per_device: int) -> tuple[float, int]:
    """Training memory per GPU in GB and the ZeRO stage it assumes, for ``world`` ranks of ``per_device``
    examples of ``finetune_mode.max_seq_len`` tokens: model states (:func:`model_states_bytes`)
    + activations with the logit buffers (:func:`activation_bytes`) + ``OVERHEAD_GB``."""
    ft, arch = cfg.finetune_mode, cfg.student.arch
    params = arch.params_b * 1e9
    trainable = lora_params(arch, ft.lora.r, list(ft.lora.target_modules)) if ft.mode == "lora" else params
    # on GPUs, launch=auto starts torchrun with DeepSpeed (mixgap.stages.train.launch); local: a plain Trainer
    zero = {"zero2": 2, "zero3": 3}.get(ft.deepspeed, 0) if ft.launch != "local" else 0
    states = model_states_bytes(params, trainable, largest_layer_params(arch), zero, world)
    acts = activation_bytes(arch, per_device * ft.max_seq_len, ft.gradient_checkpointing)
    return (states + acts) / GB + OVERHEAD_GB, zero


def kv_bytes_per_token(arch: Any, dtype_bytes: int = BF16) -> int:
    """vLLM KV cache per token over all layers: ``2 x layers x kv_heads x head_dim x bytes`` (Kwon et al.
    2023; vLLM ``CacheEngine.get_cache_block_size`` / block size)."""
    return 2 * arch.layers * arch.kv_heads * head_dim(arch) * dtype_bytes


def generation_memory_gb(arch: Any, tensor_parallel: int, tokens_in_flight: int) -> float:
    """GB per GPU for vLLM: bf16 weights / TP + KV cache of ``tokens_in_flight`` tokens / TP + overhead.

    KV heads are split over the TP ranks, or replicated when there are fewer KV heads than ranks
    (vLLM's ``num_kv_heads = max(1, kv_heads // tp)``).
    """
    kv_per_rank = kv_bytes_per_rank_token(arch, tensor_parallel)
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


def decode_tokens_per_s(params: float, tensor_parallel: int, tflops: float, decode_mfu: float) -> float:
    """Batched decoding throughput of one vLLM engine, tokens/s: ``TP x peak x decode_mfu / (2 N)``.

    A generated token costs ``2 N`` FLOPs of a dense decoder with ``N`` parameters (forward pass only,
    Kaplan et al. 2020, Table 1); ``decode_mfu`` is the fraction of the bf16 peak batched decoding reaches
    (``cluster.decode_mfu``, a planning assumption: set it from a measured run). So throughput falls with
    model size: a 70B model decodes ~140x slower per GPU than a 0.5B one.
    """
    return tensor_parallel * tflops * 1e12 * decode_mfu / (2.0 * params)


def kv_bytes_per_rank_token(arch: Any, tensor_parallel: int) -> int:
    """KV cache bytes per token on one TP rank: the KV heads split over the ranks, or replicated when fewer
    than the ranks (vLLM ``num_kv_heads = max(1, kv_heads // tp)``)."""
    return max(1, arch.kv_heads // tensor_parallel) * 2 * arch.layers * head_dim(arch) * BF16


def sequences_in_flight(arch: Any, tensor_parallel: int, memory_gb: float, mean_context: float) -> int:
    """Sequences one engine decodes at once: the KV cache that fits beside the weights,
    ``(0.9 x memory - overhead - weights / TP) / (mean_context x KV bytes per rank token)``, capped at
    ``VLLM_MAX_NUM_SEQS`` and at least 1 (vLLM admits a sequence while its blocks fit, and runs full)."""
    free = VLLM_MEMORY_UTILIZATION * memory_gb * GB - OVERHEAD_GB * GB - BF16 * arch.params_b * 1e9 / tensor_parallel
    fit = int(free // (mean_context * kv_bytes_per_rank_token(arch, tensor_parallel)))
    return max(1, min(VLLM_MAX_NUM_SEQS, fit))


def decode_bandwidth_tokens_per_s(arch: Any, tensor_parallel: int, bandwidth_gbs: float, batch: int,
                                  mean_context: float) -> float:
    """Batched decoding throughput of one engine bounded by memory bandwidth, tokens/s.

    Each decoding step every TP rank reads its share of the weights (``2 N / TP`` bytes) and the KV cache of the
    ``batch`` sequences in flight (``batch x mean_context`` tokens x :func:`kv_bytes_per_rank_token`) and emits
    one token per sequence: ``rate = batch x bandwidth / bytes per rank per step`` (the roofline of decoding:
    Kwon et al. 2023, Sec. 2.2, "memory-bound"; Pope et al. 2022, "Efficiently Scaling Transformer
    Inference", Sec. 2). ``mean_context``: the prompt plus half the new tokens (a sequence's KV grows linearly).
    """
    per_step = (BF16 * arch.params_b * 1e9 / tensor_parallel
                + batch * mean_context * kv_bytes_per_rank_token(arch, tensor_parallel))
    return batch * bandwidth_gbs * GB / per_step


def decode_rate(arch: Any, tensor_parallel: int, cluster: Any, prompt: int, new_tokens: int) -> tuple[float, str]:
    """One engine replica's decode rate (tokens/s) and the bound that held: the smaller of the compute bound
    (:func:`decode_tokens_per_s` at ``cluster.decode_mfu``) and the bandwidth bound
    (:func:`decode_bandwidth_tokens_per_s` at ``cluster.gpu_memory_bandwidth_gbs``, the batch from
    :func:`sequences_in_flight`); ``"compute"`` or ``"bandwidth"``."""
    mean_context = prompt + new_tokens / 2
    compute = decode_tokens_per_s(arch.params_b * 1e9, tensor_parallel, cluster.gpu_bf16_tflops, cluster.decode_mfu)
    bandwidth_gbs = float(cluster.get("gpu_memory_bandwidth_gbs") or H100_SXM_BANDWIDTH_GBS)
    batch = sequences_in_flight(arch, tensor_parallel, float(cluster.gpu_memory_gb), mean_context)
    memory = decode_bandwidth_tokens_per_s(arch, tensor_parallel, bandwidth_gbs, batch, mean_context)
    return (compute, "compute") if compute <= memory else (memory, "bandwidth")


def one_node_hours(jobs: list[tuple[float, int]], node_gpus: int = 8) -> float:
    """Wall hours of jobs run one after another on one node of ``node_gpus`` GPUs, each job with its GPUs busy:
    ``sum(hours x gpus) / node_gpus`` over ``(hours, gpus)``: a job on the whole node takes its own hours; jobs
    of fewer GPUs share the node; a job planned for more GPUs than the node has is assumed to run on the node
    with the same GPU-hours (longer)."""
    return sum(hours * gpus for hours, gpus in jobs) / node_gpus


def train_hours(params: float, tokens: float, epochs: float, gpus: int, tflops: float, mfu: float, lora: bool) -> float:
    """Wall hours of training: ``k N D epochs / (gpus x peak x MFU)``, k = 6 (full, Kaplan et al. 2020) or
    4 (LoRA: no weight gradients for the frozen base)."""
    flops = (4 if lora else 6) * params * tokens * epochs
    return flops / (gpus * tflops * 1e12 * mfu) / 3600




#: Positions per LM-head call of the teacher-forced scoring (``mixgap.stages.scoring.score_sequences``, ``chunk``).
SCORING_CHUNK = 1024


def scoring_batch_tokens(max_seq_len: int, batch_size: int, batch_tokens: int) -> int:
    """Padded tokens of the largest scoring batch (``mixgap.stages.scoring.token_batches``): ``batch_size``
    sequences of ``max_seq_len``, at most ``batch_tokens``, or one sequence when it alone is longer."""
    return min(batch_size * max_seq_len, max(batch_tokens, max_seq_len))


def scoring_memory_gb(arch: Any, batch_tokens: int, chunk: int = SCORING_CHUNK) -> float:
    """GB on the one GPU that scores (``mixgap.stages.scoring``: the student on one device, no gradients):
    weights + activations of one batch + logits + ``OVERHEAD_GB``.

    - weights: bf16, ``2 N``, plus the fp32 copy of the LM head the scoring multiplies in (``4 V h``,
      ``scoring_head``);
    - activations of the batch of ``batch_tokens`` tokens (:func:`scoring_batch_tokens`), under
      ``torch.inference_mode`` (nothing kept for a backward): one layer's tensors alive at a time, bounded by
      Korthikanti et al. (2022, Sec. 4.1)'s ``34 t h`` bytes per layer, plus the body's output hidden states
      (``2 t h``);
    - logits of one LM-head call: ``chunk`` positions x ``V`` at :data:`LOGIT_BYTES` (fp32 logits 4, the
      log-sum-exp's exponentials 4, the rank comparison's mask and the gather's copies within the other 4).
    """
    t = batch_tokens
    weights = BF16 * arch.params_b * 1e9 + 4 * arch.vocab * arch.hidden
    activations = 34 * t * arch.hidden + BF16 * t * arch.hidden
    return (weights + activations + LOGIT_BYTES * min(chunk, t) * arch.vocab) / GB + OVERHEAD_GB


def scoring_hours(params: float, tokens: float, tflops: float, mfu: float) -> float:
    """Wall hours of teacher-forced scoring on one GPU: ``2 N`` FLOPs per token of a forward pass (Kaplan et al.
    2020, Table 1: forward ``2 N``; no backward, against training's ``6 N``) over ``tokens`` (prompts and traces
    of both pools), at ``mfu`` of the bf16 peak ``tflops``, the training's ``cluster.mfu`` (an assumption: the
    fp32 LM head the ranks need runs below the bf16 peak, but its FLOPs are within ``N``)."""
    return 2.0 * params * tokens / (tflops * 1e12 * mfu) / 3600
