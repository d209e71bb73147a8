"""The parts of ``make gpu-check`` that load torch, transformers and vLLM, each in its own process.

``benchmarks/gpu_check.py`` starts every part as ``python benchmarks/gpu_check.py --part <name> <spec.json>
<out.json>`` (a part's peak memory is then its own, an out-of-memory kills one part, and vLLM gets a GPU no other
engine holds) and reads the JSON it writes. Nothing here downloads anything: a student shape is a randomly
initialised model built from its ``conf/student/<name>.yaml`` ``arch`` (bf16 on a GPU, fp32 on the CPU) with a
throwaway word-level tokenizer, saved to a temporary folder.

- ``facts``: the visible CUDA devices (count, name, memory).
- ``train``: one training run of a shape through our trainer (:func:`mixgap.stages.train.stage.run_settings`,
  :func:`~mixgap.stages.train.stage.train_job`, then :func:`~mixgap.stages.train.trainer.run_training` in this
  process, or ``torchrun`` over every GPU with DeepSpeed as :func:`~mixgap.stages.train.stage.build_checkpoint`
  launches it); its steps, losses, tokens/s per optimiser step and peak memory
  (``torch.cuda.max_memory_allocated``, the largest rank's).
- ``rank``: one ``torchrun`` rank: the trainer's own rank entry (``python -m mixgap.stages.train``), then its peak.
- ``decode``: greedy completions of HF ``generate`` against vLLM's (or, on the CPU, HF one prompt at a time), and
  vLLM's batched decode rate.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).resolve().with_name("gpu_check.py")
#: transformers' model type for a student family (``conf/student/*.yaml`` ``family``).
MODEL_TYPES = {"qwen": "qwen2", "llama": "llama", "smollm": "llama"}
#: Words of the throwaway tokenizer; the training examples and prompts are token ids over the whole vocabulary.
TOKENIZER_WORDS = 64
#: Prompt tokens masked out of the loss in each training example (the rest is "response").
PROMPT_TOKENS = 32
GB = 1e9


def model_config(arch: Mapping[str, Any], family: str):
    """The transformers config of a student shape: ``arch`` (``layers``, ``hidden``, ``heads``, ``kv_heads``,
    ``vocab``, ``intermediate``, ``max_position_embeddings``, ``tie_embeddings``, optional ``head_dim``) for
    ``family`` (:data:`MODEL_TYPES`); no eos token, so greedy decoding always runs to its budget."""
    from transformers import AutoConfig  # heavy: transformers

    extra = {"head_dim": int(arch["head_dim"])} if arch.get("head_dim") else {}
    return AutoConfig.for_model(
        MODEL_TYPES[family], vocab_size=int(arch["vocab"]), hidden_size=int(arch["hidden"]),
        intermediate_size=int(arch["intermediate"]), num_hidden_layers=int(arch["layers"]),
        num_attention_heads=int(arch["heads"]), num_key_value_heads=int(arch["kv_heads"]),
        max_position_embeddings=int(arch["max_position_embeddings"]), tie_word_embeddings=bool(arch["tie_embeddings"]),
        bos_token_id=None, eos_token_id=None, pad_token_id=0, **extra)


def ensure_model_dir(arch: Mapping[str, Any], family: str, folder: Path, *, cuda: bool) -> int:
    """Save a randomly initialised model of ``arch`` (bf16, built on the GPU, when ``cuda``; fp32 on the CPU) and a
    :data:`TOKENIZER_WORDS`-word tokenizer with a chat template into ``folder``, unless a part already did; returns
    its parameter count (tied weights counted once)."""
    marker = folder / "gpu-check.json"
    if marker.is_file():
        return int(json.loads(marker.read_text())["parameters"])
    import torch  # heavy: torch
    from tokenizers import (  # heavy: the tokenizers library transformers uses
        Tokenizer,
        models,
        pre_tokenizers,
    )
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast  # heavy: transformers

    torch.manual_seed(0)
    with torch.device("cuda" if cuda else "cpu"):
        model = AutoModelForCausalLM.from_config(model_config(arch, family))
    model = model.to(torch.bfloat16 if cuda else torch.float32)
    parameters = sum(p.numel() for p in model.parameters())
    model.generation_config.eos_token_id = None
    model.save_pretrained(folder)
    del model
    if cuda:
        torch.cuda.empty_cache()  # the training that follows in this process starts from an empty cache
    vocab = {"<pad>": 0, "<unk>": 1, **{f"w{i}": i for i in range(2, TOKENIZER_WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>")  # no eos, as the model
    fast.chat_template = "{% for m in messages %}{{ m['content'] }} {% endfor %}"
    fast.save_pretrained(folder)
    marker.write_text(json.dumps({"parameters": parameters}))
    return parameters


def random_ids(count: int, length: int, vocab: int, seed: int) -> list[list[int]]:
    """``count`` sequences of ``length`` token ids drawn uniformly from ``[2, vocab)`` (0 and 1: pad and unknown)."""
    rng = random.Random(seed)
    return [[rng.randrange(2, vocab) for _ in range(length)] for _ in range(count)]


def write_training_examples(path: Path, vocab: int, count: int, seq_len: int) -> None:
    """``count`` examples of exactly ``seq_len`` random tokens, the first :data:`PROMPT_TOKENS` unsupervised, saved
    as the train stage saves a mixture's examples (:func:`mixgap.stages.train.stage.write_examples`): every
    micro-batch is the planned ``per-device x max_seq_len`` tokens the memory estimate assumes."""
    from mixgap.stages.train.labels import TokenizedExample
    from mixgap.stages.train.stage import write_examples

    examples = [TokenizedExample(ids, [-100] * PROMPT_TOKENS + ids[PROMPT_TOKENS:], f"gpu-check-{i}", "strong")
                for i, ids in enumerate(random_ids(count, seq_len, vocab, seed=1))]
    write_examples(examples, path)


def part_facts(spec: Mapping[str, Any]) -> dict[str, Any]:
    """``{"cuda", "count", "name", "memory_gb"}`` of the visible CUDA devices (the smallest's memory, 1e9 bytes)."""
    import torch  # heavy: torch

    if not torch.cuda.is_available():
        return {"cuda": False, "count": 0, "name": "no CUDA device", "memory_gb": 0.0}
    count = torch.cuda.device_count()
    props = [torch.cuda.get_device_properties(i) for i in range(count)]
    return {"cuda": True, "count": count, "name": props[0].name, "memory_gb": min(p.total_memory for p in props) / GB}


def part_train(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Train one shape as the train stage would on this machine, for ``spec["finetune"]["max_steps"]`` steps.

    ``spec``: ``arch``, ``family``, ``model_dir``, ``work`` (a folder), ``finetune`` (the composed
    ``finetune_mode``), ``chat_template``, ``ranks`` (CPU ranks of a dry run's torchrun; GPUs: every visible one).
    Returns the layout the run used, its losses, ``tokens_per_s`` (median over optimiser steps after the first:
    the first holds CUDA/NCCL start-up), ``peak_memory_gb`` (None on the CPU) and the trainer's result fields.
    """
    import torch  # heavy: torch

    from mixgap.stages.train import launch, trainer
    from mixgap.stages.train.stage import run_settings, train_job

    cuda = torch.cuda.is_available()
    parameters = ensure_model_dir(spec["arch"], spec["family"], Path(spec["model_dir"]), cuda=cuda)
    env = dict(os.environ)
    if not cuda and spec.get("ranks", 1) > 1:
        env[launch.CPU_PROCESSES_ENV] = str(spec["ranks"])
    run = run_settings(dict(spec["finetune"]), torch.cuda.device_count() if cuda else 0, env)
    work = Path(spec["work"])
    job = train_job(run, spec["model_dir"], spec["chat_template"], work, work / "saved")
    ft = run.finetune
    write_training_examples(Path(job.examples_path), int(spec["arch"]["vocab"]), ft["max_steps"] * ft["global_batch_size"],
                            ft["max_seq_len"])
    windows: list[dict[str, float]] = []

    def collect(metrics: Mapping[str, float], step: int) -> None:
        windows.append({"step": step, **metrics})

    start = time.perf_counter()
    if run.subprocess:
        job_file = work / "job.json"
        job.write(job_file)
        command = launch.torchrun_command(run.world, job_file)
        if command[-3:-1] != ["-m", "mixgap.stages.train"]:
            raise RuntimeError(f"unexpected torchrun command {command}: cannot swap in the gpu-check rank")
        ranks_dir = work / "ranks"
        launch.run_launch([*command[:-3], str(SCRIPT), "--part", "rank", str(job_file), str(ranks_dir)],
                          Path(job.log_path), collect, env=env)
        result = json.loads(Path(job.result_path).read_text())
        peaks = [json.loads(p.read_text())["peak_memory_gb"] for p in sorted(ranks_dir.glob("rank*.json"))]
        peak = max(peaks) if peaks and None not in peaks else None
    else:
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        result = trainer.run_training(job, sinks=[collect])
        peak = torch.cuda.max_memory_allocated() / GB if cuda else None
    shutil.rmtree(work / "saved", ignore_errors=True)  # the trained weights (a 7B model's are 30 GB): not needed
    rates = [w["train/tokens_per_s"] for w in windows if "train/tokens_per_s" in w]
    losses = [w["train/loss"] for w in windows if "train/loss" in w]
    return {
        "parameters": parameters, "world_size": run.world.world_size, "precision": run.precision,
        "deepspeed": Path(run.deepspeed_config).stem if run.deepspeed_config else None, "launch": ft["launch"],
        "mode": ft["mode"], "per_device": ft["per_device_batch_size"], "global_batch": ft["global_batch_size"],
        "accumulation": ft["global_batch_size"] // (ft["per_device_batch_size"] * run.world.world_size),
        "seq_len": ft["max_seq_len"], "steps": result["steps"], "losses": losses, "final_loss": result["final_loss"],
        "tokens_per_s": statistics.median(rates[1:] or rates) if rates else result["tokens_per_s"],
        "step_rates": rates, "session_tokens_per_s": result["tokens_per_s"], "peak_memory_gb": peak,
        "wall_s": time.perf_counter() - start,
    }


def part_rank(job_file: str, ranks_dir: str) -> int:
    """One torchrun rank: the trainer's rank entry (``mixgap.stages.train.__main__``), then this rank's peak CUDA
    memory in GB (None on the CPU) to ``<ranks_dir>/rank<RANK>.json``; returns the entry's exit status."""
    import torch  # heavy: torch

    from mixgap.stages.train.__main__ import main as train_rank

    status = train_rank([job_file])
    peak = torch.cuda.max_memory_allocated() / GB if torch.cuda.is_available() else None
    Path(ranks_dir).mkdir(parents=True, exist_ok=True)
    (Path(ranks_dir) / f"rank{os.environ.get('RANK', '0')}.json").write_text(json.dumps({"peak_memory_gb": peak}))
    return status


def compare_greedy(ids_a: Sequence[Sequence[int]], top_a: Sequence[Sequence[Sequence[int]]],
                   ids_b: Sequence[Sequence[int]], top_b: Sequence[Sequence[Sequence[int]]]) -> dict[str, Any]:
    """Compare two engines' greedy completions of the same prompts, as vLLM's own test suite compares vLLM with HF
    (``tests/models/utils.py`` ``check_logprobs_close``): completions match when their token ids are identical, or
    when at the first token where they differ each engine's token is among the other's top tokens there (a near
    tie that bf16 arithmetic may decide either way; after it the two completions continue from different text).

    Args:
        ids_a, ids_b: per prompt, the completion's token ids.
        top_a, top_b: per prompt and generated position, that engine's top token ids (e.g. its 5 most likely).

    Returns:
        ``prompts``, ``identical`` (count), ``near_ties`` and ``mismatches`` (lists of ``[prompt, position]``),
        ``matched_tokens`` (tokens equal before the first difference, summed over prompts), ``tokens`` (compared).
    """
    out: dict[str, Any] = {"prompts": len(ids_a), "identical": 0, "near_ties": [], "mismatches": [],
                           "matched_tokens": 0, "tokens": 0}
    for p, (a, b) in enumerate(zip(ids_a, ids_b, strict=True)):
        out["tokens"] += max(len(a), len(b))
        first = next((j for j, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), None)
        if first is None and len(a) == len(b):
            out["identical"] += 1
            out["matched_tokens"] += len(a)
            continue
        first = min(len(a), len(b)) if first is None else first
        out["matched_tokens"] += first
        tie = first < min(len(a), len(b)) and a[first] in top_b[p][first] and b[first] in top_a[p][first]
        out["near_ties" if tie else "mismatches"].append([p, first])
    return out


def greedy_hf(model: Any, prompts: list[list[int]], new_tokens: int, top: int, one_by_one: bool = False):
    """HF ``generate`` greedy completions of equal-length ``prompts`` (one batch, no padding; or one prompt at a
    time): ``(ids, top ids per position)`` from the logits each step (``output_logits``)."""
    import torch  # heavy: torch

    ids, tops = [], []
    for batch in ([[p] for p in prompts] if one_by_one else [prompts]):
        x = torch.tensor(batch, device=model.device)
        out = model.generate(x, attention_mask=torch.ones_like(x), do_sample=False, max_new_tokens=new_tokens,
                             output_logits=True, return_dict_in_generate=True, pad_token_id=0)
        ids += out.sequences[:, x.shape[1]:].tolist()
        tops += torch.stack(out.logits, dim=1).topk(top, dim=-1).indices.tolist()
    return ids, tops


def vllm_engine(model_dir: str, cuda: bool):
    """vLLM's offline engine on ``model_dir`` with vLLM's defaults (what an evaluation runs: CUDA graphs, its own
    batch sizes), token ids in and out (no tokenizer). Without CUDA (vLLM's CPU build, a rehearsal) fp32 and eager,
    as :func:`mixgap.stages.backends.vllm.vllm_platform_kwargs` runs it there."""
    from vllm import LLM  # heavy: vLLM, only where it is installed

    platform = {"dtype": "bfloat16"} if cuda else {"dtype": "float32", "enforce_eager": True}
    return LLM(model=model_dir, seed=0, skip_tokenizer_init=True, trust_remote_code=False, **platform)


def greedy_vllm(llm: Any, prompts: list[list[int]], new_tokens: int, top: int):
    """vLLM greedy completions of ``prompts`` (token ids in, token ids out) with each position's top ``top``
    token ids (``SamplingParams.logprobs``: the chosen token and the ``top`` most likely)."""
    from vllm import SamplingParams  # heavy: vLLM

    params = SamplingParams(temperature=0.0, max_tokens=new_tokens, ignore_eos=True, logprobs=top, detokenize=False)
    outs = llm.generate([{"prompt_token_ids": p} for p in prompts], sampling_params=params, use_tqdm=False)
    ids = [list(o.outputs[0].token_ids) for o in outs]
    tops = [[sorted(step.keys()) for step in o.outputs[0].logprobs] for o in outs]
    return ids, tops


def decode_rate(llm: Any, vocab: int, sequences: int, prompt_tokens: int, new_tokens: int) -> dict[str, Any]:
    """vLLM's batched greedy decode rate: ``sequences`` random prompts of ``prompt_tokens`` submitted at once, each
    run to ``new_tokens`` (``ignore_eos``); generated tokens / wall seconds (prefill included, as in an evaluation)."""
    from vllm import SamplingParams  # heavy: vLLM

    params = SamplingParams(temperature=0.0, max_tokens=new_tokens, ignore_eos=True, detokenize=False)
    prompts = [{"prompt_token_ids": p} for p in random_ids(sequences, prompt_tokens, vocab, seed=2)]
    start = time.perf_counter()
    outs = llm.generate(prompts, sampling_params=params, use_tqdm=False)
    wall = time.perf_counter() - start
    generated = sum(len(o.outputs[0].token_ids) for o in outs)
    return {"tokens_per_s": generated / wall, "generated": generated, "wall_s": wall, "sequences": sequences,
            "prompt_tokens": prompt_tokens, "new_tokens": new_tokens}


def part_decode(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Greedy agreement and decode rate of one shape. ``spec``: ``arch``, ``family``, ``model_dir``, ``compare``
    (run the agreement check), ``vllm`` (use vLLM; else, on the CPU, HF one prompt at a time is the other side),
    ``prompts``/``prompt_tokens``/``new_tokens``/``top`` of the check, ``decode`` (None, or ``sequences``,
    ``prompt_tokens``, ``new_tokens`` of the rate)."""
    import torch  # heavy: torch
    from transformers import AutoModelForCausalLM  # heavy: transformers

    cuda = torch.cuda.is_available()
    ensure_model_dir(spec["arch"], spec["family"], Path(spec["model_dir"]), cuda=cuda)
    vocab, out = int(spec["arch"]["vocab"]), {}
    prompts = random_ids(spec["prompts"], spec["prompt_tokens"], vocab, seed=3)
    if spec["compare"]:
        model = AutoModelForCausalLM.from_pretrained(spec["model_dir"], dtype=torch.bfloat16 if cuda else torch.float32)
        model = model.to("cuda" if cuda else "cpu").eval()
        model.generation_config.eos_token_id = None
        hf = greedy_hf(model, prompts, spec["new_tokens"], spec["top"])
        other = None if spec["vllm"] else greedy_hf(model, prompts, spec["new_tokens"], spec["top"], one_by_one=True)
        del model
        if cuda:
            torch.cuda.empty_cache()
    llm = vllm_engine(spec["model_dir"], cuda) if spec["vllm"] else None
    if spec["compare"]:
        if llm is not None:
            other = greedy_vllm(llm, prompts, spec["new_tokens"], spec["top"])
        out["compare"] = compare_greedy(hf[0], hf[1], other[0], other[1])
        out["compare"]["other"] = "vLLM" if llm is not None else "HF generate one prompt at a time"
    if llm is not None and spec.get("decode"):
        d = spec["decode"]
        out["decode"] = decode_rate(llm, vocab, d["sequences"], d["prompt_tokens"], d["new_tokens"])
    return out


def run_part(name: str, args: Sequence[str]) -> int:
    """Run part ``name``: ``rank <job.json> <ranks dir>``, else ``<spec.json> <out.json>`` (the result as JSON)."""
    sys.path.insert(0, str(ROOT))
    if name == "rank":
        return part_rank(*args)
    spec = json.loads(Path(args[0]).read_text())
    parts = {"facts": part_facts, "train": part_train, "decode": part_decode}
    result = parts[name](spec)
    Path(args[1]).write_text(json.dumps(result))
    return 0
