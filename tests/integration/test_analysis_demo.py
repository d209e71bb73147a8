"""Stage ``analyze``'s method with the real SmolLM2-135M-Instruct.

The untuned student's own greedy completions, fed back through it, are unshifted (rank 1) nearly
everywhere, while the kit's QwQ-style long-CoT traces of the same problems are not: what the rank-shift
method must show before it can say anything about fine-tuned students. (``stage=analyze`` on a real demo
sweep runs in tests/integration/test_demo.py.)
"""

from __future__ import annotations

import pytest

from mixgap.core.schema_models import PAPER_PROMPT
from mixgap.results.analysis import rank_shift as rs
from mixgap.stages.backends.base import render_prompts
from mixgap.stages.backends.registry import load_backend
from mixgap.stages.data import fill_prompt, read_jsonl

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]
LONG_COT = "traces/long_cot_sky-t1-math-correct-5k-27b_math500.jsonl"



def test_own_greedy_completions_are_unshifted_long_cot_is_not(smollm2_path, kit):
    backend = load_backend("hf", smollm2_path, dtype="float32", batch_size=3)
    try:
        rows = sorted(read_jsonl(kit / "math" / "math500_test.jsonl")[:40], key=lambda r: len(r["problem"]))[:3]
        prompts = [fill_prompt(PAPER_PROMPT, r["problem"]) for r in rows]
        texts = [samples[0].text for samples in backend.generate(prompts, max_new_tokens=48)]
        tok, model = backend.tokenizer, backend.model
        own = [rs.teacher_forcing_ids(tok, p, t) for p, t in zip(prompts, texts, strict=True)]
        for (ids, n), prompt, text in zip(own, prompts, texts, strict=True):
            assert ids[:n] == render_prompts(tok, [prompt])[0]
            assert tok.decode(ids[n:]) == text
        own_shares = rs.shift_shares(rs.completion_ranks(model, own, batch_size=2))
        traces = {r["id"]: r["response"] for r in read_jsonl(kit / LONG_COT)}
        long = [rs.teacher_forcing_ids(tok, p, traces[r["id"]][:400]) for p, r in zip(prompts, rows, strict=True)]
        long_ranks = rs.completion_ranks(model, long, batch_size=2)
    finally:
        backend.close()
    assert own_shares["positions"] > 50  # 66 measured: 3 greedy completions of up to 48 tokens
    assert own_shares["unshifted"] >= 0.97, own_shares  # greedy = the top token, up to re-tokenisation
    long_shares = rs.shift_shares(long_ranks)
    assert long_shares["unshifted"] < 0.8 and long_shares["shifted"] > 0.1, long_shares
