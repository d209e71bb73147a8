"""HF backend throughput: length-sorted batches vs one prompt at a time, same prompts, SmolLM2-135M on CPU.

Goal: batched >= 3x the useful tokens/s of one-at-a-time. Useful tokens = completion tokens up to
and including the stop token (padding and tokens past a sample's stop are not counted). Greedy decoding,
so both runs must also produce the same completions; the script reports how many match.

    MIXGAP_DATA=../shared/data .venv/bin/python benchmarks/bench_generation.py \
        --prompts 16 --max-new-tokens 256 --batch-size 16 [--threads 1] [--out bench.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def timed_run(backend, prompts, max_new_tokens: int, one_at_a_time: bool) -> tuple[list, float, float]:
    """(completions, wall seconds, process CPU seconds) of greedy generation, batched or one prompt per call.

    CPU seconds are the steadier figure on a machine shared with other jobs (with --threads 1 they are the
    compute this process did, whoever else held the cores)."""
    start, cpu = time.perf_counter(), time.process_time()
    if one_at_a_time:
        out = [backend.generate([p], max_new_tokens=max_new_tokens, desc="single")[0] for p in prompts]
    else:
        out = backend.generate(prompts, max_new_tokens=max_new_tokens, desc="batched")
    return out, time.perf_counter() - start, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--cache", default=os.environ.get("MIXGAP_TEST_CACHE", str(Path.home() / ".cache/mixgap-tests")))
    parser.add_argument("--out", default=None, help="also write the result JSON here")
    args = parser.parse_args()

    import torch
    from hydra import compose, initialize_config_dir

    from mixgap.core.schema import register_configs
    from mixgap.core.schema_models import PAPER_PROMPT
    from mixgap.core.store import Store
    from mixgap.stages import data
    from mixgap.stages.backends.registry import load_backend
    from mixgap.stages.models import resolve_model

    if args.threads:
        torch.set_num_threads(args.threads)
    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        teacher = compose("config", overrides=["teacher=smollm2_135m"]).teacher
    model = resolve_model(teacher, Store(args.cache))
    kit = Path(os.environ.get("MIXGAP_DATA", ROOT.parent / "shared" / "data"))
    problems = data.read_jsonl(kit / "math" / "math_train.jsonl")[: args.prompts]
    prompts = [data.fill_prompt(PAPER_PROMPT, r["problem"]) for r in problems]
    backend = load_backend("hf", model, dtype="float32", batch_size=args.batch_size)

    load_before = os.getloadavg()[0]
    batched, t_batched, cpu_batched = timed_run(backend, prompts, args.max_new_tokens, one_at_a_time=False)
    single, t_single, cpu_single = timed_run(backend, prompts, args.max_new_tokens, one_at_a_time=True)
    tokens = sum(c[0].completion_tokens for c in batched)
    tokens_single = sum(c[0].completion_tokens for c in single)
    result = {
        "prompts": len(prompts), "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size,
        "torch_threads": torch.get_num_threads(), "load_avg_1min": [load_before, os.getloadavg()[0]],
        "batched": {"seconds": round(t_batched, 2), "cpu_seconds": round(cpu_batched, 2), "tokens": tokens,
                    "tok_per_s": round(tokens / t_batched, 1), "tok_per_cpu_s": round(tokens / cpu_batched, 1)},
        "single": {"seconds": round(t_single, 2), "cpu_seconds": round(cpu_single, 2), "tokens": tokens_single,
                   "tok_per_s": round(tokens_single / t_single, 1),
                   "tok_per_cpu_s": round(tokens_single / cpu_single, 1)},
        "speedup": round((tokens / t_batched) / (tokens_single / t_single), 2),
        "speedup_cpu_time": round((tokens / cpu_batched) / (tokens_single / cpu_single), 2),
        "identical_completions": sum(b[0].text == s[0].text for b, s in zip(batched, single, strict=True)),
        "finish_reasons": [c[0].finish_reason for c in batched],
    }
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
