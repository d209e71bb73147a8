"""A LoRA checkpoint's fine-tuned arm on vLLM's CPU build, both ways (run by tests/integration/test_vllm.py): the
student with the trained adapter served through vLLM's LoRA (``eval.lora_serving=adapter``, as the authors'
test_lora.sh), then the checkpoint's merged weights (``eval.lora_serving=merged``), each through the completions
stage's own path (:func:`mixgap.stages.serving.arm_serving` -> :func:`mixgap.stages.completions.generate_model` ->
``load_backend``), at the model's own context (``eval.lora_max_model_len=null``); one JSON with both arms' rows,
what each engine was started with, and their seconds.

Runs in the vLLM virtualenv (``make vllm-venv``) with ``PYTHONPATH=<checkout>``:

    VLLM_CPU_KVCACHE_SPACE=1 PYTHONPATH=$PWD .venv-vllm/bin/python tests/integration/vllm_lora_checks.py \\
        --cache ~/.cache/mixgap-tests --data ../shared/data --checkpoint <a LoRA checkpoint folder> --tmp T --out O

Settings (shared with the HF reference in the test): SmolLM2-135M-Instruct, greedy, 64 new tokens, 16 GSM8K test
problems.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_NEW_TOKENS, PROMPTS = 64, 16


def overrides(backend: str, data: str) -> list[str]:
    """Hydra overrides of the LoRA student's evaluation on ``backend`` (vllm here, hf in the reference)."""
    return ["student=smollm2_135m", "finetune_mode=lora", f"eval.backend={backend}", f"eval.max_new_tokens={MAX_NEW_TOKENS}",
            f"eval.limit={PROMPTS}", "eval.max_model_len=2048", "eval.lora_max_model_len=null", "benchmark=[gsm8k]",
            f"paths.data={data}"]


def arm_rows(cfg, student: str, checkpoint: str | None, problems, arm: str, tmp: Path) -> list[dict]:
    """The completions rows of ``arm`` (``untuned``, or ``tuned`` served as ``cfg.eval.lora_serving`` says), built
    through the completions stage's path in a store of its own under ``tmp``."""
    from mixgap.core.store import Store
    from mixgap.core.tracking import NullTracker
    from mixgap.stages import completions, data, serving

    bench = cfg.benchmark.gsm8k
    spec = completions.completions_spec(bench, cfg.eval, f"lora-check-{arm}", None, None, "model",
                                        serving.key_fields(cfg, arm))
    local = Store(tmp / f"{arm}-{cfg.eval.lora_serving}")
    served = serving.arm_serving(cfg, arm, student, checkpoint)
    completions.generate_model(cfg, local, served, {"gsm8k": spec}, {"gsm8k": problems}, NullTracker())
    return data.read_jsonl(local.path(spec.key) / completions.COMPLETIONS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", required=True, help="the store holding the converted SmolLM2")
    parser.add_argument("--data", required=True, help="the offline data kit (MIXGAP_DATA)")
    parser.add_argument("--checkpoint", required=True, help="a LoRA checkpoint folder (merged weights + adapter/)")
    parser.add_argument("--tmp", required=True, help="an empty folder for the completions")
    parser.add_argument("--out", required=True, help="where to write the result JSON")
    args = parser.parse_args()

    import vllm
    from vllm_checks import compose_cfg

    from mixgap.core.store import Store
    from mixgap.stages import data, models
    from mixgap.stages.backends import registry

    engines: list[dict] = []
    real_load = registry.load_backend

    def recorded(kind, model, **kwargs):  # the real engine; what it was asked for and what vLLM made of it
        start = time.perf_counter()
        engine = real_load(kind, model, **kwargs)
        lora = engine.llm.llm_engine.vllm_config.lora_config
        engines.append({"kind": kind, "model": model, "adapter": kwargs.get("adapter"),
                        "max_model_len": engine.max_model_len, "load_s": time.perf_counter() - start,
                        "lora_config": None if lora is None else {"max_lora_rank": lora.max_lora_rank,
                                                                  "max_loras": lora.max_loras},
                        "lora_request": None if engine.lora_request is None else {
                            "name": engine.lora_request.lora_name, "id": engine.lora_request.lora_int_id,
                            "path": engine.lora_request.lora_path}})
        return engine

    registry.load_backend = recorded
    cfg = compose_cfg(overrides("vllm", args.data))
    student = models.resolve_model(cfg.student, Store(Path(args.cache)))
    problems = data.load_source(cfg.benchmark.gsm8k, Path(args.data), limit=cfg.eval.limit)
    result = {"vllm": vllm.__version__, "student": student, "engines": engines, "seconds": {}}
    for serving_as in ("adapter", "merged"):
        start = time.perf_counter()
        cfg.eval.lora_serving = serving_as
        result[serving_as] = arm_rows(cfg, student, args.checkpoint, problems, "tuned", Path(args.tmp))
        result["seconds"][serving_as] = time.perf_counter() - start
    Path(args.out).write_text(json.dumps(result, indent=1, ensure_ascii=False, default=str))


if __name__ == "__main__":  # vLLM's engine core starts worker processes (spawn): the guard is required
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(Path(__file__).parent))
    main()
