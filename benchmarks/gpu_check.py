"""`make gpu-check`: the first command on a GPU node. Nothing downloaded, no weights, one line per check.

    python benchmarks/gpu_check.py                 # a GPU node: ~8 min on one GPU (--budget-s), every check
    python benchmarks/gpu_check.py --dry-run       # a CPU: a tiny shape, fp32, 2 steps; what needs CUDA is skipped

Each check prints ``gpu-check  <name>  pass|FAIL|skipped|measured: <figures>``:

- ``versions``: the installed training and generation stack against ``requirements/cluster.lock.txt`` (torch and
  huggingface-hub may differ, said; a package that is missing is named and its checks skip);
- ``train <shape>``: a bf16 training run of each student shape (``conf/student/<name>.yaml``'s ``arch``, random
  weights) through our trainer on one GPU (plain Trainer, ``finetune_mode.launch=local``), every micro-batch the
  full ``per-device x --seq-len`` tokens; ``memory <shape>``: its peak (``torch.cuda.max_memory_allocated``) against
  the preflight's prediction for the same layout (:func:`mixgap.plan.estimates.train_memory_gb`); ``speed <shape>``:
  its tokens/s as an MFU against ``cluster.mfu`` (MFU = 6 N tokens/s / the GPU's dense bf16 datasheet peak, 4 N for
  LoRA: :func:`mixgap.plan.estimates.train_hours`' FLOPs, recomputation not counted as in PaLM's definition,
  Chowdhery et al. 2022 App. B; N = the YAML's ``params_b``, the preflight's N). qwen0.5b and qwen3b always,
  ``--extra`` shapes where the prediction fits this GPU and the time budget allows;
- ``vllm-matches-hf``: vLLM's greedy completions (16 prompts, 32 tokens) against HF ``generate``'s;
  ``decode <shape>``: vLLM's batched decode rate against the preflight's (:func:`mixgap.plan.estimates.decode_rate`);
- ``zero3`` and ``lora`` (2 GPUs or more): the paper presets' torchrun + DeepSpeed ZeRO-3 run, full and LoRA, over
  every GPU, with their memory and speed lines.

It writes the figures to a calibration file (``--out``, :mod:`mixgap.plan.calibration`); with
``cluster.calibration=<file>`` the preflight plans with the measured MFU and decode rate. A check whose package is
missing says ``skipped: <package> not installed`` and the others run; one that would not fit the time left says
``skipped: time budget``. Exit status 1 when a check failed, 2 without CUDA (and no ``--dry-run``).
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]  # its parts, mixgap

from gpu_check_checks import Runner, check_versions, read_lock  # noqa: E402 (after sys.path holds benchmarks/)
from gpu_check_parts import run_part  # noqa: E402

from mixgap.plan.calibration import write_calibration  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dry-run", action="store_true", help="CPU: a tiny shape in fp32, 2 steps; CUDA checks skipped")
    p.add_argument("--budget-s", type=float, default=480.0, help="skip what would not end within this many seconds")
    p.add_argument("--students", default="qwen0.5b,qwen3b", help="shapes always tried (conf/student names)")
    p.add_argument("--extra", default="qwen1.5b,qwen7b,llama8b", help="shapes tried where they fit, in order")
    p.add_argument("--multi-gpu-shape", default="qwen3b", help="the shape of the zero3 and lora runs")
    p.add_argument("--steps", type=int, default=8, help="optimiser steps per run (the first is warm-up)")
    p.add_argument("--seq-len", type=int, default=4096, help="finetune_mode.max_seq_len: every example's length")
    p.add_argument("--per-device", type=int, default=2, help="finetune_mode.per_device_batch_size")
    p.add_argument("--global-batch", type=int, default=8, help="finetune_mode.global_batch_size (the paper's 8)")
    p.add_argument("--peak-tflops", type=float, default=None, help="the GPU's dense bf16 peak (default: by name)")
    p.add_argument("--cpu-ranks", type=int, default=0, help="dry run: run zero3/lora on this many gloo CPU ranks")
    p.add_argument("--decode-sequences", type=int, default=256, help="sequences of the decode rate (vLLM's 256)")
    p.add_argument("--decode-new-tokens", type=int, default=512, help="tokens generated per sequence")
    p.add_argument("--out", default="gpu-check/calibration.json", help="the calibration file; logs beside it")
    p.add_argument("--part", help=argparse.SUPPRESS)
    p.add_argument("part_args", nargs="*", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.dry_run:
        args.steps, args.seq_len, args.per_device, args.global_batch = 2, 128, 2, 4
        args.decode_sequences, args.decode_new_tokens = 4, 8
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.part:
        return run_part(args.part, args.part_args)
    out = Path(args.out)
    with tempfile.TemporaryDirectory(prefix="mixgap-gpu-check-") as tmp:
        runner = Runner(args, Path(tmp), out.parent / "logs")
        if not args.dry_run and not runner.facts["count"]:
            print("gpu-check: no CUDA GPU visible; run it on a GPU node, or --dry-run for the CPU path"
                  + (f" ({runner.facts_error})" if runner.facts_error else ""), file=sys.stderr)
            return 2
        runner.emit(check_versions(read_lock()))
        runner.run_all()
    record = runner.calibration(datetime.date.today().isoformat())
    write_calibration(out, record)
    counts = {s: sum(c.status == s for c in runner.checks) for s in ("pass", "FAIL", "skipped", "measured")}
    print(f"gpu-check: {counts['pass']} pass, {counts['FAIL']} FAIL, {counts['skipped']} skipped, {counts['measured']} "
          f"measured in {args.budget_s - runner.budget.left():.0f} s; calibration: {out}"
          + ("" if args.dry_run else f" (use it: python launch.py ... cluster.calibration={out.resolve()})"), flush=True)
    return 1 if counts["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
