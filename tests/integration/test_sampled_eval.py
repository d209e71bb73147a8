"""Sampled evaluation and the LLM re-judge with the real SmolLM2-135M-Instruct on the CPU (mechanics only)."""

from __future__ import annotations

import json

import pytest

from conftest import compose_cfg
from mixgap.core.store import ArtifactSpec, Store
from mixgap.stages import judge
from mixgap.stages.backends.registry import load_backend
from mixgap.stages.data import Problem

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]
PROMPTS = ["What is 2+3?", "Name a prime number."]



def test_seeded_samples_reproduce_and_do_not_depend_on_their_batch(smollm2_path):
    backend = load_backend("hf", smollm2_path, dtype="float32", batch_size=4)
    try:
        kwargs = {"max_new_tokens": 6, "temperature": 1.0, "top_p": 0.95, "n": 1}
        seeds = [101, 102, 201, 202]  # prompt 0 samples 0/1, prompt 1 samples 0/1 (evaluate's rows)
        rows = [PROMPTS[0], PROMPTS[0], PROMPTS[1], PROMPTS[1]]
        first = backend.generate(rows, seeds=seeds, **kwargs)
        again = backend.generate(rows, seeds=seeds, **kwargs)
        alone = backend.generate(rows[2:3], seeds=seeds[2:3], **kwargs)
        texts = [s[0].text for s in first]
        assert texts == [s[0].text for s in again]  # same seed, same samples
        assert alone[0][0].text == texts[2]  # a sample does not depend on the rows beside it
        assert texts[0] != texts[1] or texts[2] != texts[3]  # different seeds, different samples
        stopped = backend.generate([PROMPTS[0]], max_new_tokens=12, stops=[["5"]])[0][0]
        assert "5" not in stopped.text and stopped.finish_reason == "stop"  # greedy "2 + 3 = 5" cut at "5"
    finally:
        backend.close()


def test_judge_sends_only_rule_misses_with_an_answer_and_caches(tmp_path, smollm2_path, monkeypatch):
    store = Store(tmp_path / "cache")
    # a finished evaluation: p1 right, p2 wrong with an answer (sent), p3 wrong without one (not sent)
    rows = [{"id": "p1", "sample": 0, "gold": "5", "completion": "\\boxed{5}", "extracted": "5", "correct": True},
            {"id": "p2", "sample": 0, "gold": "5", "completion": "\\boxed{6}", "extracted": "6", "correct": False},
            {"id": "p3", "sample": 0, "gold": "7", "completion": "no idea", "extracted": None, "correct": False}]

    def write(out, _work):
        (out / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    spec = ArtifactSpec("eval", {"test": 1})
    store.get_or_build(spec, write)
    problems = [Problem(id=i, problem=f"question {i}", answer=g, solution="") for i, g in (("p1", "5"), ("p2", "5"), ("p3", "7"))]
    cfg = compose_cfg("+judge@eval.judge=smollm2_135m", "eval.judge.max_new_tokens=4")
    asked = []
    real_ask = judge.JudgeEngine.ask
    monkeypatch.setattr(judge.JudgeEngine, "ask", lambda self, prompts: asked.append(list(prompts)) or real_ask(self, prompts))
    # the stand-in judge's GGUF weights are converted into the test cache once, like the student fixture's
    monkeypatch.setattr("mixgap.stages.models.resolve_model", lambda source, _store: smollm2_path)
    scores = judge.judge_evaluations(cfg.eval.judge, store, {"x": (spec.key, "math500", problems)})["x"]
    assert len(asked[0]) == 1 and "question p2" in asked[0][0] and "Model's Generated Answer: 6" in asked[0][0]
    judged = [json.loads(line) for line in open(store.path(judge.judge_spec(cfg.eval.judge, spec.key).key) / judge.JUDGMENTS)]
    assert [r["sent"] for r in judged] == [False, True, False]
    assert [r["rule"] for r in judged] == [True, False, False]  # the rule verdict is kept beside the judge's
    verdict = judged[1]["verdict"]
    assert verdict == judge.parse_verdict(judged[1]["reply"])
    assert scores["sent"] == 1 and scores["flips"] == int(verdict is True) and scores["unparsed"] == int(verdict is None)
    assert scores["rule_accuracy"] == pytest.approx(100 / 3)
    assert scores["judge_accuracy"] == pytest.approx(100 * (1 + (verdict is True)) / 3)
    again = judge.judge_evaluations(cfg.eval.judge, store, {"x": (spec.key, "math500", problems)})["x"]
    assert again == scores and asked[1] == []  # cached: nothing sent, no engine loaded


def test_parse_verdict_and_prompt():
    assert judge.parse_verdict("True.") is True and judge.parse_verdict("False") is False
    assert judge.parse_verdict("I think so") is None
    assert judge.fill_judge_prompt("P: {problem} G: {gold} A: {answer}", "x^{2}", "\\frac{1}{2}", "0.5") == \
        "P: x^{2} G: \\frac{1}{2} A: 0.5"
