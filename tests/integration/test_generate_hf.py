"""The hf backend with the real SmolLM2-135M-Instruct as a teacher, on a few MATH train problems, and as a student
whose chunked evaluation is killed and resumed (CPU)."""

from __future__ import annotations

import json
import time

import pytest

from conftest import compose_cfg
from mixgap.core.schema_models import PAPER_PROMPT
from mixgap.core.store import Store
from mixgap.core.tracking import NullTracker
from mixgap.stages import completions, data
from mixgap.stages.backends import registry
from mixgap.stages.backends.base import render_prompts
from mixgap.stages.backends.registry import load_backend
from mixgap.stages.generate import build_generation, build_pool
from mixgap.stages.serving import Serving

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]  # measured: 39 s vs 4 s



@pytest.fixture(scope="module")
def backend(smollm2_path):
    engine = load_backend("hf", smollm2_path, dtype="float32", batch_size=4)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def prompts(kit):
    problems = data.read_jsonl(kit / "math" / "math_train.jsonl")[:40]
    short = sorted(problems, key=lambda r: len(r["problem"]))[:4]  # 4 short problems of different lengths
    return [data.fill_prompt(PAPER_PROMPT, r["problem"]) for r in short]


def test_batched_greedy_equals_one_prompt_at_a_time(backend, prompts):
    batched = backend.generate(prompts, max_new_tokens=24)
    alone = [backend.generate([p], max_new_tokens=24)[0] for p in prompts]
    assert [len(b) for b in batched] == [1, 1, 1, 1]
    for b, a in zip(batched, alone, strict=True):
        assert (b[0].text, b[0].completion_tokens, b[0].finish_reason) == (
            a[0].text, a[0].completion_tokens, a[0].finish_reason)
        assert b[0].prompt_tokens > 30 and 1 <= b[0].completion_tokens <= 24
        assert b[0].status == ("ok" if b[0].finish_reason == "stop" else "truncated")


def test_context_limit_gives_prompt_too_long_and_truncated(backend, prompts):
    lengths = [len(ids) for ids in render_prompts(backend.tokenizer, prompts)]
    shortest = min(lengths)
    saved = backend.max_model_len
    backend.max_model_len = shortest + 3  # the shortest prompt may add 3 tokens; the others do not fit
    try:
        out = backend.generate(prompts, max_new_tokens=24)
    finally:
        backend.max_model_len = saved
    for length, (sample,) in zip(lengths, out, strict=True):
        assert sample.prompt_tokens == length
        if length == shortest:
            assert sample.completion_tokens <= 3 and sample.status in ("truncated", "ok")
        else:
            assert (sample.status, sample.finish_reason, sample.text, sample.completion_tokens) == (
                "prompt_too_long", "prompt_too_long", "", 0)
    assert sorted(lengths)[1] > shortest + 3  # at least one prompt really was too long


def test_generation_stage_end_to_end_and_resume(tmp_path, kit, test_cache):
    cfg = compose_cfg("teacher@mix.strong=smollm2_135m", "mix.strong.sampling.max_new_tokens=32",
                      "problems.limit=3", data=kit)
    teacher, store = cfg.mix.strong, Store(test_cache)  # the converted weights live in the test cache
    work, out = tmp_path / "work", tmp_path / "gen"
    work.mkdir()
    out.mkdir()
    counts = build_generation(teacher, cfg, store, out, work, NullTracker())["counts"]
    rows = data.read_jsonl(out / "samples.jsonl")
    assert counts["problems"] == 3 and counts["samples"] == 3 and counts["resumed"] == 0
    assert sum(counts["status"].values()) == 3
    assert [r["id"] for r in rows] == [p.id for p in data.load_source(cfg.problems, kit)]
    assert all(r["teacher"] == "smollm2_135m" and 1 <= r["completion_tokens"] <= 32 for r in rows)
    assert all((r["finish_reason"] == "length") == (r["status"] == "truncated") for r in rows)
    start = time.perf_counter()
    again = build_generation(teacher, cfg, store, tmp_path, work, NullTracker())["counts"]
    assert again["resumed"] == 3 and time.perf_counter() - start < 5  # no model load, no generation
    pool = build_pool(out, teacher, tmp_path / "pool")["counts"]
    assert pool["tried"] == 3 and pool["kept"] + sum(pool["dropped"].values()) == 3
    assert pool["length_tried"]["unit"] == "tokens"


def test_sampling_n_per_prompt_is_seeded(backend, prompts):
    first = backend.generate(prompts[:2], max_new_tokens=8, temperature=1.0, top_p=0.95, n=3, seed=5)
    again = backend.generate(prompts[:2], max_new_tokens=8, temperature=1.0, top_p=0.95, n=3, seed=5)
    assert [len(samples) for samples in first] == [3, 3]
    assert [[s.text for s in samples] for samples in first] == [[s.text for s in samples] for samples in again]
    assert len({s.text for s in first[0]}) > 1  # three different samples at temperature 1
    assert all(1 <= s.completion_tokens <= 8 for samples in first for s in samples)


def test_a_killed_chunked_evaluation_resumes_to_the_same_completions(tmp_path, kit, smollm2_path, monkeypatch):
    """Greedy completions of 6 MATH500 problems in chunks of 2, the engine killed after 2 chunks: the kept chunks
    hold 4 samples, the rerun generates the other 2 only, and completions.jsonl is byte for byte that of an
    uninterrupted run of one call (length-sorted batches of 4: other batches, other padding)."""
    cfg = compose_cfg("student=smollm2_135m", "benchmark=[math500]", "eval.backend=hf", "eval.batch_size=4",
                      "eval.max_new_tokens=24", "eval.max_model_len=null", "eval.chunk_size=2", data=kit)
    problems = {"math500": data.load_source(cfg.benchmark.math500, kit, limit=6)}
    specs = {"math500": completions.completions_spec(cfg.benchmark.math500, cfg.eval, "smollm2", None, kit, "model")}
    real, engines, asked = registry.load_backend, [], []

    def load(kind, model, **options):  # the real hf engine; the first one dies before its third chunk
        engine = real(kind, model, **options)
        engines.append(engine)
        generate, mine = engine.generate, len(engines)

        def counted(prompts, **kwargs):
            if mine == 1 and len(asked) == 2:
                raise RuntimeError("killed")
            asked.append((mine, len(prompts)))
            return generate(prompts, **kwargs)

        engine.generate = counted
        return engine

    monkeypatch.setattr(completions.registry, "load_backend", load)
    killed, whole = Store(tmp_path / "killed"), Store(tmp_path / "whole")
    with pytest.raises(RuntimeError, match="killed"):
        completions.generate_model(cfg, killed, Serving(smollm2_path), specs, problems)
    assert len(completions.finished_rows(killed.root / ".work" / specs["math500"].key)) == 4
    counts = completions.generate_model(cfg, killed, Serving(smollm2_path), specs, problems)
    assert counts == {"math500": {"samples": 6, "generated": 2, "resumed": 4}}
    cfg.eval.chunk_size = 1024
    completions.generate_model(cfg, whole, Serving(smollm2_path), specs, problems)
    assert asked == [(1, 2), (1, 2), (2, 2), (3, 6)]  # killed: 2 chunks; rerun: the missing chunk; whole: one call
    done = (killed.path(specs["math500"].key) / completions.COMPLETIONS).read_bytes()
    assert done == (whole.path(specs["math500"].key) / completions.COMPLETIONS).read_bytes()
    rows = [json.loads(line) for line in done.decode().splitlines()]
    assert [r["id"] for r in rows] == [p.id for p in problems["math500"]] and all(r["completion"] for r in rows)
