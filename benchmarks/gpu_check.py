"""GPU check: our trainer (mixgap.stages.train, packing) on randomly initialised Qwen2.5-0.5B- and 3B-shaped models.

One GPU, nothing downloaded, well under 8 minutes: for each shape (from ``conf/student/<name>.yaml``'s
``arch``, the public config.json facts) it builds a random-init ``Qwen2ForCausalLM``, a throwaway word-level
tokenizer and random token sequences, runs ``mixgap.stages.train.trainer.run_training`` for ``--steps`` optimiser
steps in bf16 with padding-free packing, and prints tokens/s, MFU and peak memory, then compares the
measured peak with :mod:`mixgap.plan.preflight`'s estimate for the same layout (1 GPU, ``launch=local``: a plain
Trainer, fp32 weights under bf16 autocast, 16 bytes/parameter + activations + overhead).

MFU = 6 x N x tokens/s / peak (Kaplan et al. 2020's 6ND model FLOPs; recomputation not counted, as in PaLM's
definition). ``--peak-tflops`` defaults to 790, the bf16 matmul rate measured on the lent H200 (see
docs/machines.md); pass your GPU's dense bf16 peak instead (H100 SXM datasheet: 989).

    python benchmarks/gpu_check.py                      # on a GPU machine: 0.5B and 3B, 20 steps each
    python benchmarks/gpu_check.py --dry-run            # CPU: a tiny model, 2 steps, checks the path runs
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--students", default="qwen0.5b,qwen3b", help="conf/student names whose arch to build")
    p.add_argument("--steps", type=int, default=20, help="optimiser steps per model")
    p.add_argument("--seq-len", type=int, default=4096, help="finetune_mode.max_seq_len (longest example)")
    p.add_argument("--per-device", type=int, default=2, help="examples packed per micro-batch")
    p.add_argument("--global-batch", type=int, default=4, help="examples per optimiser step")
    p.add_argument("--peak-tflops", type=float, default=790.0, help="the GPU's bf16 peak, TFLOP/s")
    p.add_argument("--no-checkpointing", action="store_true", help="disable gradient checkpointing")
    p.add_argument("--dry-run", action="store_true", help="CPU: a tiny model, 2 steps, fp32")
    p.add_argument("--out", default=None, help="write the figures as JSON here")
    return p.parse_args(argv)


def load_arch(name: str):
    from omegaconf import OmegaConf  # imported only when used (the device machine may lack it)

    return OmegaConf.load(ROOT / "conf" / "student" / f"{name}.yaml").arch


def tiny_arch():
    from omegaconf import OmegaConf  # imported only when used (the device machine may lack it)

    return OmegaConf.create({"params_b": 0.0, "layers": 2, "hidden": 64, "heads": 4, "kv_heads": 2, "vocab": 512,
                             "max_position_embeddings": 1024, "intermediate": 128, "tie_embeddings": True,
                             "head_dim": None})


def build_model_dir(arch, folder: Path) -> int:
    """Save a random-init Qwen2 model of ``arch`` and a word-level tokenizer into ``folder``; returns N."""
    import torch  # heavy: imported only when used
    from tokenizers import Tokenizer, models, pre_tokenizers  # heavy: imported only when used
    from transformers import (  # heavy: imported only when used
        PreTrainedTokenizerFast,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    config = Qwen2Config(
        vocab_size=arch.vocab, hidden_size=arch.hidden, intermediate_size=arch.intermediate,
        num_hidden_layers=arch.layers, num_attention_heads=arch.heads, num_key_value_heads=arch.kv_heads,
        max_position_embeddings=arch.max_position_embeddings, tie_word_embeddings=bool(arch.tie_embeddings),
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config)
    model.save_pretrained(folder)
    vocab = {"<pad>": 0, "<eos>": 1, **{f"w{i}": i for i in range(2, 64)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>")
    fast.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    fast.save_pretrained(folder)
    return sum(p.numel() for p in model.parameters())


def write_examples(folder: Path, vocab: int, count: int, seq_len: int) -> int:
    """Random sequences of seq_len/4..seq_len tokens (labels: all but the first 32); returns total tokens."""
    import datasets  # heavy: imported only when used

    rng = random.Random(0)
    ids, labels = [], []
    for _ in range(count):
        n = rng.randint(max(2, seq_len // 4), seq_len)
        row = [rng.randrange(2, vocab) for _ in range(n)]
        ids.append(row)
        labels.append([-100] * min(32, n - 1) + row[min(32, n - 1):])
    datasets.Dataset.from_dict({"input_ids": ids, "labels": labels}).save_to_disk(str(folder))
    return sum(map(len, ids))


def estimate_gb(arch, params: int, per_device: int, seq_len: int, checkpointing: bool) -> float:
    """mixgap.plan.estimates' estimate for one GPU, launch=local (no DeepSpeed): 16 N + activations + overhead."""
    from mixgap.plan import estimates  # after sys.path holds the checkout

    states = estimates.model_states_bytes(params, params, estimates.largest_layer_params(arch), 0, 1)
    acts = estimates.activation_bytes(arch, per_device * seq_len, checkpointing)
    return (states + acts) / estimates.GB + estimates.OVERHEAD_GB


def run_one(name: str, arch, args: argparse.Namespace, work: Path) -> dict:
    import torch  # heavy: imported only when used
    from omegaconf import OmegaConf  # imported only when used (the device machine may lack it)

    from mixgap.stages.train.trainer import TrainJob, run_training  # after sys.path holds the checkout

    on_gpu = torch.cuda.is_available() and not args.dry_run
    folder = work / name
    params = build_model_dir(arch, folder / "model")
    steps, seq_len = args.steps, args.seq_len
    examples = steps * args.global_batch
    write_examples(folder / "examples", arch.vocab, examples, seq_len)
    ft = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "finetune_mode" / "full.yaml"))
    ft.update(per_device_batch_size=args.per_device, global_batch_size=args.global_batch, max_steps=steps,
              epochs=1, max_seq_len=seq_len, packing=True, gradient_checkpointing=not args.no_checkpointing,
              save_steps=10 ** 6, logging_steps=max(1, steps // 4), warmup_ratio=0.0, deepspeed=None, launch="local")
    ft["lora"] = {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": []}
    job = TrainJob(
        student_path=str(folder / "model"), chat_template=None, finetune=ft, examples_path=str(folder / "examples"),
        trainer_dir=str(folder / "trainer"), save_dir=str(folder / "saved"), log_path=str(folder / "metrics.jsonl"),
        result_path=str(folder / "result.json"), precision="bf16" if on_gpu else "fp32",
    )
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    result = run_training(job)
    wall = time.perf_counter() - start
    tokens_per_s = result["tokens_per_s"] or 0.0
    figures = {
        "student_shape": name, "parameters": params, "steps": result["steps"], "final_loss": result["final_loss"],
        "tokens_seen": result["tokens_seen"], "tokens_per_s": round(tokens_per_s, 1), "wall_s": round(wall, 1),
        "mfu": round(6 * params * tokens_per_s / (args.peak_tflops * 1e12), 4) if on_gpu else None,
        "estimate_gb": round(estimate_gb(arch, params, args.per_device, seq_len, not args.no_checkpointing), 2),
    }
    if on_gpu:
        figures["peak_allocated_gb"] = round(torch.cuda.max_memory_allocated() / 1e9, 2)
        figures["peak_reserved_gb"] = round(torch.cuda.max_memory_reserved() / 1e9, 2)
        figures["estimate_over_measured"] = round(figures["estimate_gb"] / figures["peak_reserved_gb"], 2)
    return figures


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch  # heavy: imported only when used

    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU visible; run it on a GPU machine, or --dry-run for the CPU path", file=sys.stderr)
        return 2
    if args.dry_run:
        args.steps, args.seq_len, args.global_batch = min(args.steps, 2), min(args.seq_len, 256), args.per_device
    else:
        print(f"gpu_check: {torch.cuda.get_device_name(0)}, peak {args.peak_tflops:g} bf16 TFLOP/s")
    shapes = [("tiny", tiny_arch())] if args.dry_run else [(n, load_arch(n)) for n in args.students.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="mixgap-gpu-check-") as tmp:
        for name, arch in shapes:
            row = run_one(name, arch, args, Path(tmp))
            rows.append(row)
            print("gpu_check: " + json.dumps(row), flush=True)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
