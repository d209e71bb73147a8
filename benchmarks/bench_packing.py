"""SFT throughput: padded batches (LLaMA-Factory's way) vs padding-free packing, same mixture, same model, CPU.

Goal: packing >= 1.5x the tokens/s of padded batching. Tokens = real (non-pad) tokens trained on,
so padding is wasted work, not throughput. The mixture is built from the kit's traces on MATH500
(``traces/long_cot_*`` as the strong source, ``traces/short_cot_*`` as the weak one, correct responses only,
a fraction ``--weight`` strong), tokenised with SmolLM2's chat template and the paper prompt; examples over
``--max-seq-len`` are dropped (and counted), as in training. Each mode runs in its own process through
the same ``Trainer`` set-up as ``mixgap.stages.train`` (seeded sampler: identical batches), so peak RSS is per mode.
Packing runs with ``sdpa_packed`` (per-example causal sdpa, ``mixgap.stages.train.packing``); transformers' dense
block-diagonal mask over the packed row was measured no faster than padding on this CPU.

    MIXGAP_DATA=../shared/data .venv/bin/python benchmarks/bench_packing.py \
        --examples 16 --batch 4 --max-seq-len 2048 [--repeats 2] [--dense] [--out bench.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TRACES = {"strong": "traces/long_cot_sky-t1-math-correct-5k-27b_math500.jsonl",
          "weak": "traces/short_cot_qwen2.5-14b-instruct_math500.jsonl"}


def build_examples(kit: Path, tokenizer, n: int, weight: float, max_seq_len: int, seed: int) -> tuple[list, dict]:
    """``n`` tokenised examples, ``round(weight * n)`` strong; rows over ``max_seq_len`` dropped and counted."""
    from mixgap.core.schema_models import PAPER_PROMPT
    from mixgap.stages import data
    from mixgap.stages.train.labels import TokenizedExample, tokenize_conversation

    rng = random.Random(seed)
    want = {"strong": round(weight * n), "weak": n - round(weight * n)}
    out, dropped = [], {"strong": 0, "weak": 0}
    for source, rel in TRACES.items():
        rows = [r for r in data.read_jsonl(kit / rel) if r["correct"]]
        rng.shuffle(rows)
        kept = 0
        for row in rows:
            if kept == want[source]:
                break
            ex = tokenize_conversation(tokenizer, data.fill_prompt(PAPER_PROMPT, row["problem"]), row["response"])
            if len(ex.input_ids) > max_seq_len:
                dropped[source] += 1
                continue
            out.append(TokenizedExample(ex.input_ids, ex.labels, row["id"], source))
            kept += 1
    rng.shuffle(out)
    return out, dropped


def run_mode(args: argparse.Namespace) -> dict:
    """Train ``examples / batch`` steps in one mode; tokens/s over steps 2..N (step 1 warms up), peak RSS."""
    import datasets
    import torch
    from omegaconf import OmegaConf
    from transformers import AutoTokenizer, Trainer, TrainerCallback
    from transformers.trainer_utils import SaveStrategy

    from mixgap.core.schema import FinetuneConfig
    from mixgap.stages.train.packing import make_collator
    from mixgap.stages.train.trainer import TrainJob, load_student, training_arguments

    class StepClock(TrainerCallback):
        def __init__(self):
            self.marks: list[tuple[float, int]] = []

        def on_step_end(self, args, state, control, **kwargs):
            self.marks.append((time.perf_counter(), int(state.num_input_tokens_seen)))

    class Counting:
        """The mode's collator, counting the token positions it hands the model (padding included)."""

        def __init__(self, inner):
            self.inner, self.positions, self.real = inner, 0, 0

        def __call__(self, features):
            batch = self.inner(features)
            self.positions += batch["input_ids"].numel()
            self.real += sum(len(f["input_ids"]) for f in features)
            return batch

    examples = json.loads(Path(args.examples_file).read_text())
    ft = OmegaConf.to_container(OmegaConf.structured(FinetuneConfig))
    ft.update(per_device_batch_size=args.batch, global_batch_size=args.batch, max_steps=len(examples) // args.batch,
              packing=args.mode.startswith("packed"), warmup_ratio=0.0, logging_steps=10**6, save_steps=10**6)
    clock = StepClock()
    with tempfile.TemporaryDirectory() as tmp:
        job = TrainJob(student_path=args.model, chat_template=None, finetune=ft, examples_path="", trainer_dir=tmp,
                       save_dir=tmp, log_path="", result_path="")
        train_args = training_arguments(job, use_cpu=not torch.cuda.is_available())
        train_args.save_strategy = SaveStrategy.NO
        tokenizer = AutoTokenizer.from_pretrained(args.model)
        dataset = datasets.Dataset.from_list([{"input_ids": e[0], "labels": e[1]} for e in examples])
        collator = Counting(make_collator(tokenizer, ft["packing"]))
        model = load_student(job)
        if args.mode == "packed_dense":  # transformers' own: sdpa with a dense block-diagonal mask
            model.set_attn_implementation("sdpa")
        trainer = Trainer(model=model, args=train_args, train_dataset=dataset, processing_class=tokenizer,
                          data_collator=collator, callbacks=[clock])
        trainer.train()
    (t0, n0), (t1, n1) = clock.marks[0], clock.marks[-1]
    return {"mode": args.mode, "steps": len(clock.marks), "measured_steps": len(clock.marks) - 1,
            "real_tokens_measured": n1 - n0, "wall_s_measured": round(t1 - t0, 2),
            "tokens_per_s": round((n1 - n0) / (t1 - t0), 1),
            "padding_fraction": round(1 - collator.real / collator.positions, 3),
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=16)
    parser.add_argument("--batch", type=int, default=4, help="examples per step (paper: 2 per device x 4 GPUs)")
    parser.add_argument("--max-seq-len", type=int, default=2048)
    parser.add_argument("--weight", type=float, default=0.2, help="fraction of long-CoT (strong) examples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=1, help="runs per mode, interleaved; the fastest counts")
    parser.add_argument("--cache", default=os.environ.get("MIXGAP_TEST_CACHE", str(Path.home() / ".cache/mixgap-tests")))
    parser.add_argument("--out", default=None, help="also write the result JSON here")
    parser.add_argument("--dense", action="store_true", help="also time packing with a dense block-diagonal mask")
    parser.add_argument("--mode", choices=["padded", "packed", "packed_dense"], help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--examples-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:  # child: one mode
        print("RESULT " + json.dumps(run_mode(args)))
        return

    from hydra import compose, initialize_config_dir
    from transformers import AutoTokenizer

    from mixgap.core.schema import register_configs
    from mixgap.core.store import Store
    from mixgap.stages.models import resolve_model

    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        student = compose("config", overrides=["student=smollm2_135m"]).student
    model = resolve_model(student, Store(args.cache))
    kit = Path(os.environ.get("MIXGAP_DATA", ROOT.parent / "shared" / "data"))
    examples, dropped = build_examples(kit, AutoTokenizer.from_pretrained(model), args.examples, args.weight,
                                       args.max_seq_len, args.seed)
    lengths = [len(e.input_ids) for e in examples]
    result = {"examples": len(examples), "strong": sum(e.source == "strong" for e in examples), "dropped": dropped,
              "lengths": {"min": min(lengths), "mean": round(sum(lengths) / len(lengths)), "max": max(lengths)}}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump([[e.input_ids, e.labels] for e in examples], fh)
    try:
        for _ in range(args.repeats):  # interleaved, best of: the machine may be shared
            for mode in ("padded", "packed", *(("packed_dense",) if args.dense else ())):
                cmd = [sys.executable, __file__, "--mode", mode, "--model", model, "--examples-file", fh.name,
                       "--batch", str(args.batch)]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
                run = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])
                if mode not in result or run["tokens_per_s"] > result[mode]["tokens_per_s"]:
                    result[mode] = run
    finally:
        os.unlink(fh.name)
    result["speedup"] = round(result["packed"]["tokens_per_s"] / result["padded"]["tokens_per_s"], 2)
    result["goal_met"] = result["speedup"] >= 1.5
    if args.dense:
        result["speedup_dense_mask"] = round(result["packed_dense"]["tokens_per_s"] / result["padded"]["tokens_per_s"], 2)
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
