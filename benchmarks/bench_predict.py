"""Learnability scoring speed (``mixgap.stages.scoring.score_sequences``): seconds per 1,000 scored tokens, SmolLM2-135M on CPU.

Scores the first ``--traces`` problems (the predict stage's seeded order) of the kit's long- and short-CoT pools,
rendered and masked as training does, at each ``--batch-sizes`` value, and prints one JSON line per run.

    MIXGAP_DATA=../shared/data PYTHONPATH=. .venv/bin/python benchmarks/bench_predict.py \
        --traces 4 --max-seq-len 1024 --batch-sizes 1,4 [--out bench.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _pool(cfg, store, role, specs):
    from mixgap.core.stage import BuildContext
    from mixgap.core.tracking import NullTracker
    from mixgap.stages import generate

    ctx = BuildContext(cfg, store, NullTracker(), specs)
    generate.run(ctx, (f"generation.{role}", f"pool.{role}"))
    return ctx.paths[f"pool.{role}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=4, help="problems per pool")
    parser.add_argument("--max-seq-len", type=int, default=1024)
    parser.add_argument("--batch-sizes", default="1,4")
    parser.add_argument("--cache", default=os.environ.get("MIXGAP_TEST_CACHE", str(Path.home() / ".cache/mixgap-tests")))
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    from hydra import compose, initialize_config_dir
    from transformers import AutoTokenizer

    from mixgap.core.schema import register_configs
    from mixgap.core.store import Store
    from mixgap.plan import jobs
    from mixgap.stages import generate, models, predict
    from mixgap.stages.scoring import load_student, score_sequences
    from mixgap.stages.train.labels import set_chat_template

    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["+experiment=demo", f"paths.cache={args.cache}"])
    store = Store(args.cache)
    path = models.resolve_model(cfg.student, store)
    model, _ = load_student(path)
    tokenizer = set_chat_template(AutoTokenizer.from_pretrained(path), cfg.student.chat_template)
    specs = jobs.job_specs(cfg)
    rows = {role: {r["id"]: r for r in generate.read_pool(_pool(cfg, store, role, specs))}
            for role in predict.ROLES}  # the kit's pools, imported and graded into the store once
    ids, examples, _ = predict.select_problems(rows["strong"], rows["weak"], predict.encoder(tokenizer, cfg.finetune_mode.prompt),
                                               args.traces, 0, args.max_seq_len)
    results = []
    for batch_size in [int(b) for b in args.batch_sizes.split(",")]:
        for role in predict.ROLES:
            seqs = [(examples[i][role].input_ids, predict.scored_positions(examples[i][role].labels)) for i in ids]
            tokens = sum(len(p) for _, p in seqs)
            start, cpu = time.perf_counter(), time.process_time()
            score_sequences(model, seqs, batch_size, desc=f"{role} bs={batch_size}")
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu
            row = {"pool": cfg.mix[role].name, "batch_size": batch_size, "traces": len(seqs), "tokens": tokens,
                   "max_len": max(len(s) for s, _ in seqs), "wall_s": round(wall, 2),
                   "s_per_1k_tokens": round(1000 * wall / tokens, 2), "cpu_s_per_1k_tokens": round(1000 * cpu / tokens, 2)}
            print(json.dumps(row), flush=True)
            results.append(row)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
