"""`make gpu-check` (benchmarks/gpu_check.py) without a GPU: its verdicts on hand-made figures, what it says when a
package is missing (the script itself run with Hydra, OmegaConf and transformers unimportable), its time budget,
and the calibration file it writes read back by the preflight's reader."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import time

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_check_checks as checks  # noqa: E402 (benchmarks/ is not a package)
from gpu_check_parts import compare_greedy  # noqa: E402

from mixgap.plan.calibration import planning_figures, read_calibration, write_calibration  # noqa: E402

LOCK = {"transformers": "5.20.2", "tokenizers": "0.23.3", "safetensors": "0.8.0", "accelerate": "1.16.0",
        "peft": "0.22.0", "datasets": "5.2.0", "deepspeed": "0.19.8", "vllm": "0.33.0", "hydra-core": "1.3.8",
        "omegaconf": "2.3.1", "math-verify": "0.9.0", "torch": "2.14.0", "huggingface-hub": "2.5.0"}
H100 = {"cuda": True, "count": 1, "name": "NVIDIA H100 80GB HBM3", "memory_gb": 85.0}


def test_the_lock_is_read_by_name():
    pins = checks.read_lock()
    assert (pins["transformers"], pins["hydra-core"], pins["deepspeed"]) == ("5.20.2", "1.3.8", "0.19.8")


def test_versions_fail_on_a_stack_package_and_allow_torch_and_the_hub():
    bare = {**LOCK, "torch": "2.11.0+cu130", "huggingface-hub": "1.33.0", "vllm": None}
    check = checks.check_versions(LOCK, bare.get)
    assert check.status == "pass"
    assert check.detail == (
        "10 at the lock's version; torch 2.11.0+cu130 != lock 2.14.0 (allowed: the machine's own CUDA build; the "
        "cluster's is the one vLLM pins); huggingface-hub 1.33.0 != lock 2.5.0 (allowed: it only downloads, and this "
        "check downloads nothing); not installed: vllm (their checks skip)")
    old = checks.check_versions(LOCK, {**bare, "transformers": "5.17.0"}.get)
    assert old.status == "FAIL" and old.detail.startswith("transformers 5.17.0 != lock 5.20.2; 9 at the lock's version")
    assert old.figures["versions"]["transformers"] == "5.17.0"


def test_a_missing_package_skips_the_checks_that_import_it(monkeypatch, tmp_path, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "hydra" else real(name, *a))
    assert checks.missing(checks.NEEDS["train"]) == "hydra-core" and checks.missing(("transformers",)) is None
    runner = checks.Runner(args(dry_run=True), tmp_path, tmp_path / "logs")
    runner.train("tiny")
    runner.train("tiny", "zero3")
    assert [(c.name, c.status, c.detail) for c in runner.checks] == [
        (name, "skipped", "hydra-core not installed")
        for name in ("train tiny", "memory tiny", "speed tiny", "zero3 tiny", "memory zero3", "speed zero3")]
    assert "gpu-check  train tiny           skipped: hydra-core not installed" in capsys.readouterr().out
    assert not (tmp_path / "logs").exists()  # nothing was started


def test_the_script_runs_without_hydra_omegaconf_and_transformers(tmp_path):
    """The whole dry run in a Python where those imports fail: every check that needs them says so, the rest run."""
    out = tmp_path / "calibration.json"
    blocked = ("import runpy, sys\nfor name in ('hydra', 'omegaconf', 'transformers'):\n    sys.modules[name] = None\n"
               f"sys.argv = ['gpu_check.py', '--dry-run', '--out', {str(out)!r}]\n"
               f"runpy.run_path({str(ROOT / 'benchmarks' / 'gpu_check.py')!r}, run_name='__main__')\n")
    done = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [re.match(r"gpu-check  (.{20}) (\w+): (.*)", line) for line in done.stdout.splitlines()]
    verdicts = [(m[1].strip(), m[2], m[3]) for m in lines if m]
    assert verdicts[0][:2] == ("versions", "pass")
    hydra, transformers = ("skipped", "hydra-core not installed"), ("skipped", "transformers not installed")
    assert verdicts[1:] == [("train tiny", *hydra), ("memory tiny", *hydra), ("speed tiny", *hydra),
                            ("vllm-matches-hf", *transformers), ("decode tiny", *transformers),
                            ("zero3 tiny", *hydra), ("memory zero3", *hydra), ("speed zero3", *hydra),
                            ("lora tiny", *hydra), ("memory lora", *hydra), ("speed lora", *hydra)]
    record = json.loads(out.read_text())
    assert record["dry_run"] is True and record["shapes"] == {} and len(record["checks"]) == 12


def test_greedy_completions_match_when_identical_or_split_at_a_near_tie():
    # prompt 0: identical; 1: differs at token 2, each engine's token in the other's top -> near tie;
    # 2: differs at token 0, 9 not in engine a's top there -> mismatch
    a = [[5, 6, 7], [5, 6, 7], [1, 2, 3]]
    b = [[5, 6, 7], [5, 6, 8], [9, 2, 3]]
    top_a = [[[5, 1]] * 3, [[5], [6], [7, 8]], [[1, 4], [2], [3]]]
    top_b = [[[5]] * 3, [[5], [6], [8, 7]], [[9, 1], [2], [3]]]
    assert compare_greedy(a, top_a, b, top_b) == {
        "prompts": 3, "identical": 1, "near_ties": [[1, 2]], "mismatches": [[2, 0]], "matched_tokens": 5, "tokens": 9}


def test_the_budget_skips_what_would_not_end_in_time():
    now = [0.0]
    budget = checks.Budget(100, clock=lambda: now[0])
    now[0] = 70.0
    assert budget.refusal("train", 40) == "time budget (needs ~40 s, 30 s left)"
    assert budget.refusal("train", 30) is None
    budget.record("train", 10, 25)  # a part that took 2.5 x its estimate makes the next estimates 2.5 x
    assert budget.refusal("train", 10) is None and budget.refusal("train", 13) == "time budget (needs ~32 s, 30 s left)"
    assert budget.refusal("decode", 13) is None


def test_time_estimate_of_a_training_part():
    # qwen3b, 8 steps x global 8 x 4,096 tokens = 262,144; 6 x 3.09e9 x 262,144 / (989e12 x 0.2) x 4/3 = 32.76 s
    # + start 20 s + build 12 x 3.09 = 37.08 s: 89.84 s
    assert checks.train_estimate(3.09, 262144, False, 1, 989.0) == pytest.approx(89.84, abs=0.01)


@pytest.mark.parametrize(("name", "expected"), [
    ("NVIDIA H100 80GB HBM3", (989.0, 3350.0, "H100 datasheet")),
    ("NVIDIA H100 PCIe", (756.0, 2000.0, "H100 PCIe datasheet")),
    ("NVIDIA H200", (989.0, 4800.0, "H200 datasheet")),
    ("NVIDIA L4", (989.0, 3350.0, "unknown GPU: cluster.gpu_bf16_tflops default")),
])
def test_the_peak_comes_from_the_device_name(name, expected):
    assert checks.gpu_peak(name, None) == expected
    assert checks.gpu_peak(name, 790.0)[::2] == (790.0, "--peak-tflops")


def args(**given):
    defaults = {"dry_run": False, "budget_s": 480.0, "steps": 8, "peak_tflops": None, "students": "qwen0.5b,qwen3b",
                "extra": "", "multi_gpu_shape": "qwen3b", "seq_len": 4096, "per_device": 2, "global_batch": 8,
                "cpu_ranks": 0, "decode_sequences": 256, "decode_new_tokens": 512}
    return argparse.Namespace(**{**defaults, **given})


def run_result(**given):
    return {"parameters": 494032768, "world_size": 1, "precision": "bf16", "deepspeed": None, "launch": "local",
            "mode": "full", "per_device": 2, "global_batch": 8, "accumulation": 4, "seq_len": 4096, "steps": 8,
            "losses": [11.95, 11.93], "final_loss": 11.93, "tokens_per_s": 40000.0, "peak_memory_gb": 20.0,
            "wall_s": 30.0, **given}


@pytest.mark.parametrize(("peak", "predicted", "status"), [(20.0, 25.0, "pass"), (20.0, 35.0, "FAIL"), (26.0, 25.0, "FAIL")])
def test_memory_passes_when_the_prediction_covers_the_peak_within_the_bound(tmp_path, peak, predicted, status):
    runner = checks.Runner(args(), tmp_path, tmp_path / "logs", facts=H100)
    arch, _ = checks.load_arch("qwen0.5b")
    names = ["train qwen0.5b", "memory qwen0.5b", "speed qwen0.5b"]
    runner.judge_train(names, "qwen0.5b", "train", arch, run_result(peak_memory_gb=peak), predicted, 0, 0.35)
    train, memory, speed = runner.checks
    assert train.status == "pass" and memory.status == status
    assert memory.detail.startswith(f"peak {peak:.2f} GB measured, {predicted:.2f} GB predicted (ZeRO-off): "
                                    f"predicted/measured {predicted / peak:.2f}")
    # 6 x 0.49e9 x 40,000 / 989e12 = 0.1189: the preflight's hours x 0.35 / 0.1189 = 2.94
    assert speed.detail == ("40,000 tokens/s = MFU 0.119 measured vs 0.35 assumed (cluster.mfu): the preflight's "
                            "hours x 2.94 with the calibration")


def test_a_run_whose_first_loss_is_not_uniform_fails(tmp_path):
    runner = checks.Runner(args(), tmp_path, tmp_path / "logs", facts=H100)
    arch, _ = checks.load_arch("qwen0.5b")  # ln 151,936 = 11.93
    runner.judge_train(["t", "m", "s"], "qwen0.5b", "train", arch, run_result(losses=[3.1, 3.0]), 25.0, 0, 0.35)
    assert runner.checks[0].status == "FAIL" and "loss 3.100 -> 3.000 (ln V = 11.931)" in runner.checks[0].detail


def test_the_calibration_written_is_what_the_preflight_reads(tmp_path):
    runner = checks.Runner(args(), tmp_path, tmp_path / "logs", facts=H100)
    runner.emit(checks.check_versions(LOCK, LOCK.get))
    arch, _ = checks.load_arch("qwen3b")
    runner.judge_train(["train qwen3b", "memory qwen3b", "speed qwen3b"], "qwen3b", "train", arch,
                       run_result(tokens_per_s=5000.0, losses=[11.9]), 68.0, 0, 0.35)
    path = write_calibration(tmp_path / "calibration.json", runner.calibration("2026-12-07"))
    record = read_calibration(path)
    assert record["gpu"]["peak_bf16_tflops"] == 989.0 and record["versions"]["transformers"] == "5.20.2"
    assert record["shapes"]["qwen3b"]["train"] == record["shapes"]["qwen3b"]["runs"]["one_gpu"]
    # 6 x 3.09e9 x 5,000 / 989e12 = 0.0937; memory ratio 68 / 20 = 3.4
    values, note = planning_figures(record, "qwen3b", 3.09)
    assert values == {"mfu": pytest.approx(0.093731, abs=1e-6)}
    assert record["shapes"]["qwen3b"]["train"]["memory_ratio"] == pytest.approx(3.4)
    assert note == ("MFU 0.094 measured at qwen3b's shape; decode_mfu assumed (no decode rate measured) "
                    "(gpu-check 2026-12-07, NVIDIA H100 80GB HBM3)")


def test_a_decode_rate_is_measured_against_the_preflights_and_calibrates_decode_mfu(tmp_path):
    runner = checks.Runner(args(), tmp_path, tmp_path / "logs", facts=H100)
    arch, _ = checks.load_arch("qwen0.5b")
    d = {"tokens_per_s": 20000.0, "generated": 131072, "wall_s": 6.55, "sequences": 256, "prompt_tokens": 512,
         "new_tokens": 512}
    runner.judge_decode("decode qwen0.5b", "qwen0.5b", arch, d)
    # compute bound 989e12 x 0.1 / (2 x 0.49e9) = 100,918 tok/s; bandwidth bound: 256 sequences of 512 + 256 mean
    # context x 12,288 KV bytes/token + 0.98e9 weight bytes a step at 3,350 GB/s = 252,540: compute-bound.
    # Measured: 20,000 x 2 x 0.49e9 / 989e12 = 0.0198
    assert runner.checks[0].detail == ("20,000 tokens/s (256 sequences of 512 + 512 tokens) vs 100,918 assumed "
                                       "(compute-bound at decode_mfu 0.1): decode_mfu 0.0198 measured")
    record = read_calibration(write_calibration(tmp_path / "c.json", runner.calibration("2026-12-07")))
    values, note = planning_figures(record, "qwen3b", 3.09)
    assert values == {"decode_mfu": pytest.approx(0.019818, abs=1e-6)}
    assert note.startswith("MFU assumed (no training rate measured); decode_mfu 0.02 measured at qwen0.5b's shape")


def test_on_one_gpu_the_shapes_run_in_order_until_memory_or_time_runs_out(tmp_path):
    """The GPU flow with the parts faked: each takes exactly its estimate on the budget's clock."""
    runner = checks.Runner(args(budget_s=150.0, extra="qwen1.5b,qwen7b,llama8b"), tmp_path, tmp_path / "logs", facts=H100)
    now, specs = [0.0], {}
    runner.budget = checks.Budget(150.0, clock=lambda: now[0])
    peaks = {"qwen0.5b": 21.0, "qwen3b": 60.0}

    def part(name, spec, label, kind, estimate, env=None):
        now[0] += estimate
        specs[label] = spec
        return run_result(peak_memory_gb=peaks[label.split()[1]]), None

    runner.part = part
    runner.run_all()
    got = [(c.name, c.status, c.detail if c.status == "skipped" else "") for c in runner.checks]
    vllm, two = ("skipped", "vllm not installed"), ("skipped", "needs 2 GPUs")  # vllm: not in .venv
    # estimates: qwen0.5b 20 + 12 x 0.49 + 6 x 0.49e9 x 262,144 / (989e12 x 0.2) x 4/3 = 31.08 s; qwen3b 89.84 s;
    # 29.08 s left for qwen1.5b's 54.81 s. Predicted memory per GPU (plain Trainer, 2 x 4,096 tokens): qwen7b
    # 16 x 7.62e9 + 28 x 2 x 8192 x 3584 + 34 x 8192 x 3584 + 12 x 8192 x 152,064 + 2 GB = 141.5 GB; llama8b 146.4 GB
    assert got == [
        ("train qwen0.5b", "pass", ""), ("memory qwen0.5b", "pass", ""), ("speed qwen0.5b", "measured", ""),
        ("train qwen3b", "pass", ""), ("memory qwen3b", "pass", ""), ("speed qwen3b", "measured", ""),
        ("vllm-matches-hf", *vllm), ("decode qwen0.5b", *vllm), ("decode qwen3b", *vllm),
        ("zero3 qwen3b", *two), ("memory zero3", *two), ("speed zero3", *two),
        ("lora qwen3b", *two), ("memory lora", *two), ("speed lora", *two),
        *[(f"{w} qwen1.5b", "skipped", "time budget (needs ~55 s, 29 s left)") for w in ("train", "memory", "speed")],
        *[(f"{w} qwen7b", "skipped", "memory (predicted 141.5 GB per GPU > 76.5 GB usable here)")
          for w in ("train", "memory", "speed")],
        *[(f"{w} llama8b", "skipped", "memory (predicted 146.4 GB per GPU > 76.5 GB usable here)")
          for w in ("train", "memory", "speed")],
    ]
    assert "predicted/measured 1.21" in runner.checks[1].detail  # 25.38 GB predicted / 21 measured
    ft = specs["train qwen0.5b"]["finetune"]
    assert (ft["launch"], ft["max_seq_len"], ft["per_device_batch_size"], ft["global_batch_size"], ft["max_steps"],
            ft["mode"], ft["gradient_checkpointing"]) == ("local", 4096, 2, 8, 8, "full", True)


def test_a_part_past_its_time_is_stopped_with_the_workers_it_started_in_their_own_sessions(tmp_path):
    """As torchrun does with its ranks: the part starts a worker in a session of its own and stops it on SIGTERM;
    a SIGKILL to the part's group alone would leave that worker running."""
    launcher = tmp_path / "launcher.py"
    launcher.write_text(
        "import signal, subprocess, sys, time\n"
        "worker = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'], start_new_session=True)\n"
        f"open({str(tmp_path / 'worker.pid')!r}, 'w').write(str(worker.pid))\n"
        "signal.signal(signal.SIGTERM, lambda *a: (worker.terminate(), worker.wait(), sys.exit(143)))\n"
        "time.sleep(120)\n")
    start = time.monotonic()
    assert checks.run_process([sys.executable, str(launcher)], tmp_path / "part.log", timeout=3) is None
    assert time.monotonic() - start < 30
    pid = int((tmp_path / "worker.pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
