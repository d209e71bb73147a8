"""The checks of ``make gpu-check`` (``benchmarks/gpu_check.py``): what each needs, the budget, the predictions,
the verdicts, and the calibration record. The work itself runs in parts (``benchmarks/gpu_check_parts.py``), one
process each; this process imports neither torch nor transformers, and Hydra only for the checks that use it.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml  # PyYAML: a transformers dependency, on every machine this runs on
from gpu_check_parts import ROOT, SCRIPT

LOCK = ROOT / "requirements" / "cluster.lock.txt"
#: The training and generation stack: installed, each must be at the lock's version.
MUST_MATCH = ("transformers", "tokenizers", "safetensors", "accelerate", "peft", "datasets", "deepspeed", "vllm",
              "hydra-core", "omegaconf", "math-verify")
#: Installed at another version than the lock's, these are said, not failed.
MAY_DIFFER = {"torch": "the machine's own CUDA build; the cluster's is the one vLLM pins",
              "huggingface-hub": "it only downloads, and this check downloads nothing"}
#: Import name of a distribution, where it is not the name with ``-`` as ``_``.
MODULES = {"hydra-core": "hydra", "math-verify": "math_verify"}
#: What each check imports (distribution names).
TRAIN_NEEDS = ("hydra-core", "omegaconf", "transformers", "accelerate", "datasets")
NEEDS = {"train": TRAIN_NEEDS, "vllm": ("transformers", "vllm"), "decode": ("vllm", "hydra-core", "omegaconf"),
         "zero3": (*TRAIN_NEEDS, "deepspeed"), "lora": (*TRAIN_NEEDS, "deepspeed", "peft")}
#: Dense bf16 peak (TFLOP/s, without sparsity) and memory bandwidth (GB/s) by device name, first match: NVIDIA's
#: H200, H100 (SXM, NVL, PCIe) and A100 80GB SXM datasheets (their bf16 figures "with sparsity" halved). An unknown
#: GPU is measured against the preflight's default, ``cluster.gpu_bf16_tflops`` 989 (pass ``--peak-tflops``).
GPU_PEAKS = (("H200", 989.0, 4800.0), ("H100 NVL", 835.0, 3900.0), ("H100 PCIe", 756.0, 2000.0),
             ("H100", 989.0, 3350.0), ("A100", 312.0, 2039.0))
#: A prediction over this many times the measured peak fails: the preflight would then refuse, or shrink the batch
#: of, jobs that use under 0.9 / 1.5 = 60% of a GPU (cluster.memory_headroom 0.1). Some excess is intended: the
#: formula counts every logit buffer at once, a whole recomputed layer and 2 GB (OVERHEAD_GB) of CUDA context,
#: NCCL and fragmentation that max_memory_allocated does not see.
MAX_OVERESTIMATE = 1.5
#: A random model's first loss is within this many nats of ln V: its logits have a std of about 0.02 x sqrt(hidden)
#: (transformers' initializer_range 0.02, a unit-RMS final norm), and random labels cost ln V + std^2 / 2: +0.18 at
#: qwen0.5b's 896 (12.17 measured on the CPU against ln 151,936 = 11.93), +0.84 at llama8b's 4,096. A broken label
#: mask or loss (0, NaN, far off) fails.
UNIFORM_NATS = 2.0
#: Time estimates, seconds (assumptions until a GPU run measures them; each part's wall time is in the
#: calibration, and a part that took longer than estimated scales the next estimate of its kind): a part's start
#: (Python, torch, transformers, Hydra imports), random init + bf16 save + fp32 load + trained save per billion
#: parameters (~12 bytes a parameter at ~1 GB/s), vLLM's start (weights, torch.compile, CUDA graphs), the MFU the
#: budget assumes (pessimistic), and the decode MFU it assumes.
START_S, BUILD_S_PER_B, VLLM_START_S, BUDGET_MFU, BUDGET_DECODE_MFU = 20.0, 12.0, 120.0, 0.2, 0.02
#: The dry run's shape: qwen0.5b's config at 2 layers x 128 (2 heads of 64, as qwen0.5b's: vLLM's CPU attention has
#: no kernel for heads of 16; 1 KV head, MLP 256, 512 tokens). Parameters: embedding 512 x 128 = 65,536 (tied); a
#: layer: q 128x128 + 128, k and v 128x64 + 64 each, o 128x128, MLP 3 x 128 x 256, two norms of 128 = 147,968;
#: 2 layers + the final norm 128: 361,600.
TINY = {"params_b": 361600e-9, "layers": 2, "hidden": 128, "heads": 2, "kv_heads": 1, "vocab": 512,
        "max_position_embeddings": 1024, "intermediate": 256}


@dataclass
class Check:
    """One printed line: ``status`` is ``pass``, ``FAIL``, ``skipped`` or ``measured`` (a figure, no verdict)."""

    name: str
    status: str
    detail: str
    figures: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        return f"gpu-check  {self.name:<20} {self.status}: {self.detail}"


def read_lock(path: Path = LOCK) -> dict[str, str]:
    """``{name: version}`` of a pip constraints file (``name==version`` lines; comments skipped)."""
    pins = {}
    for line in path.read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[name.strip().lower().replace("_", "-")] = version.strip()
    return pins


def installed_version(name: str) -> str | None:
    """The installed version of distribution ``name``, or None."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def check_versions(lock: Mapping[str, str], installed: Callable[[str], str | None] = installed_version) -> Check:
    """``versions``: FAIL when a :data:`MUST_MATCH` package is installed at another version than ``lock``; the
    :data:`MAY_DIFFER` differences and the missing packages are said."""
    same, wrong, missing, allowed = [], [], [], []
    for name in MUST_MATCH:
        have = installed(name)
        if have is None:
            missing.append(name)
        elif have != lock.get(name):
            wrong.append(f"{name} {have} != lock {lock.get(name)}")
        else:
            same.append(name)
    for name, why in MAY_DIFFER.items():
        have = installed(name)
        if have is not None and have.split("+")[0] != lock.get(name):
            allowed.append(f"{name} {have} != lock {lock.get(name)} (allowed: {why})")
    parts = wrong + [f"{len(same)} at the lock's version"] + allowed
    if missing:
        parts.append(f"not installed: {', '.join(missing)} (their checks skip)")
    versions = {n: installed(n) for n in (*MUST_MATCH, *MAY_DIFFER)}
    return Check("versions", "FAIL" if wrong else "pass", "; ".join(parts), {"versions": versions})


def missing(needs: tuple[str, ...]) -> str | None:
    """The first distribution of ``needs`` whose module cannot be found (``importlib.util.find_spec``), or None."""
    for name in needs:
        if importlib.util.find_spec(MODULES.get(name, name.replace("-", "_"))) is None:
            return name
    return None


def gpu_peak(name: str, given: float | None) -> tuple[float, float, str]:
    """``(bf16 TFLOP/s, GB/s, source)`` for a device name (:data:`GPU_PEAKS`), ``given`` overriding the peak."""
    for key, tflops, bandwidth in GPU_PEAKS:
        if key in name:
            return (given, bandwidth, "--peak-tflops") if given else (tflops, bandwidth, f"{key} datasheet")
    return (given or 989.0, 3350.0, "--peak-tflops" if given else "unknown GPU: cluster.gpu_bf16_tflops default")


class Budget:
    """Seconds left of ``--budget-s``, and each kind of part's slowness (measured / estimated, at least 1)."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic):
        self.seconds, self.clock, self.start, self.scale = seconds, clock, clock(), {}

    def left(self) -> float:
        return self.seconds - (self.clock() - self.start)

    def refusal(self, kind: str, estimate: float) -> str | None:
        """``time budget (...)`` when ``estimate`` (scaled by the kind's slowness so far) exceeds the time left."""
        need = estimate * self.scale.get(kind, 1.0)
        return None if need <= self.left() else f"time budget (needs ~{need:.0f} s, {max(0, self.left()):.0f} s left)"

    def record(self, kind: str, estimate: float, wall: float) -> None:
        self.scale[kind] = max(1.0, wall / max(estimate, 1e-9))


def train_estimate(params_b: float, tokens: float, lora: bool, world: int, peak: float) -> float:
    """Seconds of a train part: start + build + ``k N D / (world x peak x BUDGET_MFU)`` x 4/3 (recomputation)."""
    compute = (4 if lora else 6) * params_b * 1e9 * tokens / (world * peak * 1e12 * BUDGET_MFU) * 4 / 3
    return START_S * (2 if world > 1 else 1) + BUILD_S_PER_B * params_b + compute


def decode_estimate(params_b: float, tokens: float, peak: float) -> float:
    """Seconds of a decode part: start + build + vLLM's start + ``2 N tokens / (peak x BUDGET_DECODE_MFU)``."""
    return START_S + BUILD_S_PER_B * params_b + VLLM_START_S + 2 * params_b * 1e9 * tokens / (peak * 1e12 * BUDGET_DECODE_MFU)


def compose_job(shape: str, mode: str, args: argparse.Namespace, launch: str):
    """The composed job config of ``shape`` (``student=``) and ``mode`` (``finetune_mode=``) with gpu-check's layout
    (``--seq-len``, ``--per-device``, ``--global-batch``, ``--steps``, no warm-up, no checkpoint); the dry run's
    ``tiny`` is qwen0.5b at :data:`TINY`'s shape."""
    from hydra import compose, initialize_config_dir  # only when the train checks run (Hydra may be missing)

    from mixgap.core.schema import CONF_DIR, register_configs

    student = "qwen0.5b" if shape == "tiny" else shape
    overrides = [f"student={student}", f"finetune_mode={mode}", f"finetune_mode.max_seq_len={args.seq_len}",
                 f"finetune_mode.per_device_batch_size={args.per_device}",
                 f"finetune_mode.global_batch_size={args.global_batch}", f"finetune_mode.max_steps={args.steps}",
                 "finetune_mode.logging_steps=1", "finetune_mode.save_steps=1000000", "finetune_mode.warmup_ratio=0.0",
                 f"finetune_mode.launch={launch}"]
    if shape == "tiny":
        overrides += [f"student.arch.{k}={v}" for k, v in TINY.items()]
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=overrides)




def load_arch(shape: str) -> tuple[dict[str, Any], str]:
    """``(arch, family)`` of a student shape from ``conf/student/<shape>.yaml`` (plain YAML: no Hydra needed);
    ``tiny``: qwen0.5b's with :data:`TINY`'s sizes."""
    student = yaml.safe_load((ROOT / "conf" / "student" / f"{'qwen0.5b' if shape == 'tiny' else shape}.yaml").read_text())
    return {**student["arch"], **(TINY if shape == "tiny" else {})}, student["family"]


def log_tail(path: Path, lines: int = 2) -> str:
    """The last ``lines`` non-empty lines of a part's log, joined with `` | ``."""
    text = [t.strip() for t in path.read_text(errors="replace").splitlines() if t.strip()] if path.is_file() else []
    return " | ".join(text[-lines:])[-400:]


def run_process(command: list[str], log: Path, timeout: float, env: Mapping[str, str] | None = None) -> int | None:
    """Run ``command`` in its own process group with its output in ``log``; after ``timeout`` seconds (or when this
    process is interrupted) stop the group (:func:`stop_group`) and return None, else the exit status."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as fh:
        proc = subprocess.Popen(command, stdout=fh, stderr=subprocess.STDOUT, env=dict(env) if env else None,
                                cwd=ROOT, start_new_session=True)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_group(proc)
            return None
        finally:
            if proc.poll() is None:
                stop_group(proc)


def stop_group(proc: subprocess.Popen, grace_s: float = 30.0) -> None:
    """SIGTERM to ``proc``'s process group, SIGKILL after ``grace_s``: torchrun starts each rank in a session of its
    own (torch.distributed.elastic's ``SubprocessHandler``) and stops them on SIGTERM, never on SIGKILL."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


class Runner:
    """Runs the checks in order, prints each line as it ends, and keeps the figures for the calibration file."""

    def __init__(self, args: argparse.Namespace, tmp: Path, logs: Path, facts: dict[str, Any] | None = None):
        self.args, self.tmp, self.logs = args, tmp, logs
        self.budget, self.checks, self.shapes = Budget(args.budget_s), [], {}
        self.facts_error = None
        if facts is None and args.dry_run:
            facts = {"cuda": False, "count": 0, "name": "CPU (dry run)", "memory_gb": 0.0}
        if facts is None:
            facts, self.facts_error = self.part("facts", {}, "facts", "facts", START_S)
        self.facts = facts or {"cuda": False, "count": 0, "name": "no CUDA device", "memory_gb": 0.0}
        self.peak, self.bandwidth, self.peak_source = gpu_peak(self.facts["name"], args.peak_tflops)
        where = (f"{self.facts['count']} x {self.facts['name']} of {self.facts['memory_gb']:.1f} GB; bf16 peak "
                 f"{self.peak:g} TFLOP/s ({self.peak_source}), {self.bandwidth:g} GB/s" if self.facts["count"]
                 else f"{self.facts['name']}: a tiny shape in fp32, {args.steps} steps; no GPU figures")
        if self.facts["count"] or args.dry_run:  # else main refuses: no CUDA device
            print(f"gpu-check: {where}; budget {args.budget_s:g} s", flush=True)

    def emit(self, check: Check) -> Check:
        self.checks.append(check)
        print(check.line(), flush=True)
        return check

    def one_gpu_env(self) -> dict[str, str]:
        """The environment of a one-GPU part: only the first visible GPU (a plain Trainer on several would wrap
        the model in DataParallel)."""
        env = dict(os.environ)
        if self.facts["count"] > 1:
            env["CUDA_VISIBLE_DEVICES"] = (os.environ.get("CUDA_VISIBLE_DEVICES") or "0").split(",")[0]
        return env

    def part(self, name: str, spec: dict[str, Any], label: str, kind: str, estimate: float,
             env: Mapping[str, str] | None = None) -> tuple[dict[str, Any] | None, str | None]:
        """Run part ``name`` on ``spec`` in its own process (log ``<logs>/<label>.log``); ``(result, None)`` or
        ``(None, why it failed)``. Its wall time against ``estimate`` scales the next estimate of ``kind``."""
        slug = label.replace(" ", "-")
        spec_file, out_file, log = self.tmp / f"{slug}.spec.json", self.tmp / f"{slug}.out.json", self.logs / f"{slug}.log"
        spec_file.write_text(json.dumps(spec))
        timeout, start = max(60.0, self.budget.left() + 60.0), time.monotonic()
        status = run_process([sys.executable, str(SCRIPT), "--part", name, str(spec_file), str(out_file)], log, timeout, env)
        self.budget.record(kind, estimate, time.monotonic() - start)
        if status is None:
            return None, f"timed out after {timeout:.0f} s (log {log})"
        if status != 0 or not out_file.is_file():
            return None, f"the {name} part failed (exit {status}): {log_tail(log)} (log {log})"
        return json.loads(out_file.read_text()), None

    def skip(self, names: list[str], reason: str) -> None:
        for name in names:
            self.emit(Check(name, "skipped", reason))

    def run_all(self) -> None:
        """Every check after ``versions``, in the order that matters most when the budget runs out."""
        dry = self.args.dry_run
        shapes = ["tiny"] if dry else [s for s in self.args.students.split(",") if s]
        for shape in shapes:
            self.train(shape)
        self.vllm(shapes[0], compare=True)
        for shape in shapes[1:]:
            self.vllm(shape, compare=False)
        for mode in ("zero3", "lora"):
            self.train("tiny" if dry else self.args.multi_gpu_shape, mode)
        for shape in [] if dry else [s for s in self.args.extra.split(",") if s and s not in shapes]:
            self.train(shape)

    def train(self, shape: str, mode: str = "train") -> None:
        """``train``/``memory``/``speed`` of one shape on one GPU (``mode="train"``), or the ``zero3``/``lora`` run
        of the paper presets over every GPU."""
        multi, dry = mode != "train", self.args.dry_run
        names = [f"{mode} {shape}", f"memory {mode if multi else shape}", f"speed {mode if multi else shape}"]
        world = (self.args.cpu_ranks if dry else self.facts["count"]) if multi else 1
        lacking = missing(NEEDS[mode])
        if lacking:
            return self.skip(names, f"{lacking} not installed")
        if multi and dry and world < 2:
            return self.skip(names, "no CUDA (--dry-run --cpu-ranks 2 runs it on 2 gloo CPU ranks)")
        if multi and world < 2:
            return self.skip(names, "needs 2 GPUs")
        from mixgap.core.config import to_container  # Hydra's config: only where it is installed
        from mixgap.plan.estimates import train_memory_gb, usable_memory_gb
        from mixgap.stages.train.batching import batch_layout

        cfg = compose_job(shape, "lora" if mode == "lora" else "full", self.args, "auto" if multi else "local")
        per_device = batch_layout(self.args.global_batch, self.args.per_device, world).per_device_batch_size
        predicted, zero = train_memory_gb(cfg, world, per_device)
        usable = usable_memory_gb(self.facts["memory_gb"], float(cfg.cluster.memory_headroom))
        if not dry and predicted > usable:
            return self.skip(names, f"memory (predicted {predicted:.1f} GB per GPU > {usable:.1f} GB usable here)")
        arch, family = load_arch(shape)
        tokens = self.args.steps * self.args.global_batch * self.args.seq_len
        estimate = train_estimate(arch["params_b"], tokens, mode == "lora", world, self.peak)
        late = self.budget.refusal("train", estimate)
        if late:
            return self.skip(names, late)
        spec = {"arch": arch, "family": family, "model_dir": str(self.tmp / shape / "model"),
                "work": str(self.tmp / shape / mode), "finetune": to_container(cfg.finetune_mode),
                "chat_template": cfg.student.chat_template, "ranks": world}
        result, error = self.part("train", spec, names[0], "train", estimate, None if multi else self.one_gpu_env())
        if error:
            self.emit(Check(names[0], "FAIL", error))
            return self.skip(names[1:], f"{names[0]} failed")
        self.judge_train(names, shape, mode, arch, result, predicted, zero, float(cfg.cluster.mfu))

    def judge_train(self, names: list[str], shape: str, mode: str, arch: Mapping[str, Any], r: Mapping[str, Any],
                    predicted: float, zero: int, assumed_mfu: float) -> None:
        """The three lines of a training run: it ran (every step, finite losses, the first within
        :data:`UNIFORM_NATS` of ``ln V``), its peak against the prediction, its MFU against ``cluster.mfu``."""
        layout = (f"{r['precision']}, {'DeepSpeed ' + r['deepspeed'] if r['deepspeed'] else 'plain Trainer'} on "
                  f"{r['world_size']} {'GPU(s)' if self.facts['count'] else 'CPU process(es)'}, per-device {r['per_device']} "
                  f"x {r['seq_len']} tokens x accumulation {r['accumulation']}")
        uniform, losses = math.log(arch["vocab"]), r["losses"]
        ok = (r["steps"] == self.args.steps and losses and all(map(math.isfinite, losses))
              and abs(losses[0] - uniform) < UNIFORM_NATS)
        loss = f"loss {losses[0]:.3f} -> {losses[-1]:.3f} (ln V = {uniform:.3f})" if losses else "no loss logged"
        self.emit(Check(names[0], "pass" if ok else "FAIL", f"{r['steps']}/{self.args.steps} steps, {layout}; {loss}; "
                        f"{r['parameters']:,} parameters"))
        figures = {"layout": layout, "steps": r["steps"], "tokens_per_s": r["tokens_per_s"], "wall_s": r["wall_s"],
                   "predicted_memory_gb": predicted, "zero_stage": zero, "parameters": r["parameters"]}
        measured = r["peak_memory_gb"]
        if measured is None:
            self.emit(Check(names[1], "skipped", f"no CUDA (predicted {predicted:.2f} GB for this layout, ZeRO-{zero or 'off'})"))
        else:
            ratio = predicted / measured
            fits = measured <= predicted and ratio < MAX_OVERESTIMATE
            figures.update(peak_memory_gb=measured, memory_ratio=ratio)
            self.emit(Check(names[1], "pass" if fits else "FAIL", f"peak {measured:.2f} GB measured, {predicted:.2f} GB "
                            f"predicted (ZeRO-{zero or 'off'}): predicted/measured {ratio:.2f} (pass: measured <= "
                            f"predicted and the ratio < {MAX_OVERESTIMATE})"))
        k = 4 if r["mode"] == "lora" else 6
        if measured is None:
            self.emit(Check(names[2], "skipped", f"no CUDA (CPU fp32: {r['tokens_per_s']:,.0f} tokens/s; an MFU needs a GPU)"))
        else:
            mfu = k * arch["params_b"] * 1e9 * r["tokens_per_s"] / (r["world_size"] * self.peak * 1e12)
            figures["mfu"] = mfu
            self.emit(Check(names[2], "measured", f"{r['tokens_per_s']:,.0f} tokens/s = MFU {mfu:.3f} measured vs "
                            f"{assumed_mfu:g} assumed (cluster.mfu): the preflight's hours x {assumed_mfu / mfu:.2f} "
                            f"with the calibration"))
        self.shapes.setdefault(shape, {"params_b": arch["params_b"], "runs": {}})["runs"][
            "one_gpu" if mode == "train" else mode] = figures

    def vllm(self, shape: str, compare: bool) -> None:
        """``vllm-matches-hf`` (``compare``) and ``decode <shape>``: one part, one engine."""
        dry, name, decode = self.args.dry_run, "vllm-matches-hf", f"decode {shape}"
        lacking = missing(("transformers",) if dry else NEEDS["vllm"])  # the dry run compares HF with itself
        if lacking:
            return self.skip([name] * compare + [decode], f"{lacking} not installed")
        decode_lacking = "no CUDA" if dry else missing(NEEDS["decode"])
        decode_lacking = f"{decode_lacking} not installed" if decode_lacking not in (None, "no CUDA") else decode_lacking
        arch, family = load_arch(shape)
        d = {"sequences": self.args.decode_sequences, "prompt_tokens": 512, "new_tokens": self.args.decode_new_tokens}
        estimate = decode_estimate(arch["params_b"], d["sequences"] * d["new_tokens"], self.peak)
        late = self.budget.refusal("decode", estimate)
        if late:
            return self.skip([name] * compare + [decode], late)
        spec = {"arch": arch, "family": family, "model_dir": str(self.tmp / shape / "model"), "compare": compare,
                "vllm": not dry, "prompts": 16, "prompt_tokens": 24, "new_tokens": 32, "top": 5,
                "decode": None if decode_lacking else d}
        if not compare and decode_lacking:
            return self.skip([decode], decode_lacking)
        result, error = self.part("decode", spec, f"decode {shape}", "decode", estimate, self.one_gpu_env())
        if error:
            self.emit(Check(name if compare else decode, "FAIL", error))
            return self.skip([decode] * compare, f"{name} failed")
        if compare:
            self.judge_compare(name, result["compare"])
        if decode_lacking:
            return self.skip([decode], decode_lacking)
        self.judge_decode(decode, shape, arch, result["decode"])

    def judge_compare(self, name: str, c: Mapping[str, Any]) -> None:
        ties = ", ".join(f"#{p} at token {j}" for p, j in c["near_ties"][:4])
        text = (f"{c['identical']}/{c['prompts']} prompts identical over 32 greedy tokens, {len(c['near_ties'])} diverge "
                f"at a near tie ({ties or 'none'}), {len(c['mismatches'])} mismatch; {c['matched_tokens']}/{c['tokens']} "
                f"tokens equal (HF generate in one batch vs {c['other']})")
        if c["mismatches"]:
            self.emit(Check(name, "FAIL", text + f"; first mismatch: prompt {c['mismatches'][0][0]} at token "
                                                 f"{c['mismatches'][0][1]}, neither token in the other's top 5"))
        elif self.args.dry_run:
            self.emit(Check(name, "skipped", f"no CUDA; the comparison ran on the CPU: {text}"))
        else:
            self.emit(Check(name, "pass", text))

    def judge_decode(self, name: str, shape: str, arch: Mapping[str, Any], d: Mapping[str, Any]) -> None:
        from omegaconf import OmegaConf  # the preflight's config type: only where the decode check runs

        from mixgap.plan.estimates import decode_rate

        cluster = compose_job(shape, "full", self.args, "local").cluster
        here = OmegaConf.merge(cluster, {"gpu_bf16_tflops": self.peak, "gpu_memory_bandwidth_gbs": self.bandwidth,
                                         "gpu_memory_gb": self.facts["memory_gb"]})
        assumed, bound = decode_rate(OmegaConf.create(dict(arch)), 1, here, d["prompt_tokens"], d["new_tokens"])
        measured_mfu = d["tokens_per_s"] * 2 * arch["params_b"] * 1e9 / (self.peak * 1e12)
        self.shapes.setdefault(shape, {"params_b": arch["params_b"], "runs": {}})["decode"] = {
            **d, "decode_mfu": measured_mfu, "assumed_tokens_per_s": assumed, "bound": bound}
        self.emit(Check(name, "measured", f"{d['tokens_per_s']:,.0f} tokens/s ({d['sequences']} sequences of "
                        f"{d['prompt_tokens']} + {d['new_tokens']} tokens) vs {assumed:,.0f} assumed ({bound}-bound at "
                        f"decode_mfu {cluster.decode_mfu:g}): decode_mfu {measured_mfu:.4f} measured"))

    def calibration(self, date: str) -> dict[str, Any]:
        """The calibration record (:func:`mixgap.plan.calibration.read_calibration` reads it): per shape its
        ``runs`` (``one_gpu``, ``zero3``, ``lora``) and ``decode``; ``train``, what the preflight plans with, is the
        ZeRO-3 run where it ran at that shape (the presets' layout on a node), else the one-GPU run."""
        shapes = {name: {**entry, "train": entry["runs"].get("zero3") or entry["runs"].get("one_gpu")}
                  for name, entry in self.shapes.items()}
        versions = next((c.figures["versions"] for c in self.checks if c.name == "versions"), {})
        return {"date": date, "dry_run": self.args.dry_run, "python": sys.version.split()[0],
                "gpu": {**self.facts, "peak_bf16_tflops": self.peak, "peak_source": self.peak_source,
                        "memory_bandwidth_gbs": self.bandwidth},
                "versions": versions, "budget_s": self.args.budget_s, "shapes": shapes,
                "checks": [{"name": c.name, "status": c.status, "detail": c.detail} for c in self.checks]}
