"""`make gpu-check ARGS=--dry-run` on this CPU: every step that needs no CUDA runs for real (our trainer on a tiny
random qwen0.5b-config model, HF greedy decoding in one batch against one prompt at a time), the rest says
``skipped: no CUDA``, and the calibration file it writes holds the figures (and is refused by the preflight: it is
a dry run's). With vLLM's CPU build (``make vllm-venv``), the vLLM part itself runs against HF."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT
from mixgap.plan.calibration import CalibrationError, read_calibration

pytestmark = pytest.mark.slow


def test_the_dry_run_prints_a_line_per_check_and_writes_the_calibration(tmp_path):
    out = tmp_path / "gpu-check" / "calibration.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--dry-run", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    verdicts = {m[1].strip(): (m[2], m[3]) for m in
                (re.match(r"gpu-check  (.{20}) (\w+): (.*)", line) for line in done.stdout.splitlines()) if m}
    assert list(verdicts) == ["versions", "train tiny", "memory tiny", "speed tiny", "vllm-matches-hf", "decode tiny",
                              "zero3 tiny", "memory zero3", "speed zero3", "lora tiny", "memory lora", "speed lora"]
    assert verdicts["versions"][0] == "pass" and verdicts["train tiny"][0] == "pass"
    assert "2/2 steps, fp32, plain Trainer on 1 CPU process(es), per-device 2 x 128 tokens x accumulation 2" \
        in verdicts["train tiny"][1]
    # 16 x 361,600 (fp32 weights, gradients, Adam) = 5,785,600 B + per-device 2 x 128 = 256 tokens: kept inputs
    # 2 layers x 2 B x 256 x 128 = 131,072 + one recomputed layer 34 x 256 x 128 = 1,114,112 + logits 12 x 256 x
    # 512 = 1,572,864 -> 8,603,648 B = 0.0086 GB + 2 GB overhead
    assert verdicts["memory tiny"] == ("skipped", "no CUDA (predicted 2.01 GB for this layout, ZeRO-off)")
    assert verdicts["vllm-matches-hf"][0] == "skipped" and verdicts["vllm-matches-hf"][1].startswith(
        "no CUDA; the comparison ran on the CPU: 16/16 prompts identical over 32 greedy tokens")
    assert verdicts["decode tiny"] == ("skipped", "no CUDA")
    assert verdicts["zero3 tiny"] == ("skipped", "no CUDA (--dry-run --cpu-ranks 2 runs it on 2 gloo CPU ranks)")

    record = json.loads(out.read_text())
    run = record["shapes"]["tiny"]["runs"]["one_gpu"]
    assert record["format"] == "mixgap-calibration/1" and record["dry_run"] is True
    assert (run["parameters"], run["steps"], run["zero_stage"]) == (361600, 2, 0)  # the hand count in TINY
    assert run["predicted_memory_gb"] == pytest.approx(2.008603648, abs=1e-9) and run["tokens_per_s"] > 0
    assert record["shapes"]["tiny"]["train"] == run and "mfu" not in run
    assert [c["status"] for c in record["checks"]].count("skipped") == 10
    assert (out.parent / "logs" / "train-tiny.log").is_file()
    with pytest.raises(CalibrationError, match="it was written by a --dry-run on a CPU and holds no GPU figure"):
        read_calibration(out)


@pytest.mark.vllm
def test_the_vllm_part_matches_hf_on_vllms_cpu_build(tmp_path):
    """The ``vllm-matches-hf`` and ``decode`` code run for real on vLLM's CPU build (``.venv-vllm``, fp32, eager):
    the tiny shape's greedy completions from vLLM equal HF's on all 16 prompts, and the decode rate is measured."""
    from test_vllm import ensure_vllm_venv  # the vLLM venv, made once (make vllm-venv)

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from gpu_check_checks import load_arch

    arch, family = load_arch("tiny")
    spec, out = tmp_path / "spec.json", tmp_path / "out.json"
    spec.write_text(json.dumps({"arch": arch, "family": family, "model_dir": str(tmp_path / "model"), "compare": True,
                                "vllm": True, "prompts": 16, "prompt_tokens": 24, "new_tokens": 32, "top": 5,
                                "decode": {"sequences": 8, "prompt_tokens": 64, "new_tokens": 16}}))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "VLLM_CPU_KVCACHE_SPACE": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([str(ensure_vllm_venv()), str(ROOT / "benchmarks" / "gpu_check.py"), "--part", "decode",
                           str(spec), str(out)], env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["compare"] == {"prompts": 16, "identical": 16, "near_ties": [], "mismatches": [],
                                 "matched_tokens": 512, "tokens": 512, "other": "vLLM"}
    assert result["decode"]["generated"] == 8 * 16 and result["decode"]["tokens_per_s"] > 0
