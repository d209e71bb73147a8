"""Completions and verdicts are separate artifacts: a scoring change (grader version, eval.extract, eval.rule)
regrades the stored completions without loading a model; a killed evaluation keeps its finished chunks and the rerun
generates only the missing samples, giving the same file byte for byte; teacher pools are regraded the same way."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import compose_cfg
from mixgap import grading
from mixgap.core.stage import BuildContext
from mixgap.core.store import Store
from mixgap.core.tracking import NullTracker
from mixgap.plan import jobs
from mixgap.stages import completions, evaluate, generate
from mixgap.stages.backends.base import Completion
from mixgap.stages.backends.replica import run_request
from mixgap.stages.data import DataError, Problem
from mixgap.stages.serving import Serving, key_fields
from mixgap.stages.verdicts import PREDICTIONS

STUDENT = Serving("/weights/student")  # the untuned student at the model's own context (the demo's eval.max_model_len)
#: Two small benchmarks; the fake student answers each prompt with the line of ANSWERS its problem names.
PROBLEMS = {
    "math500": [Problem("a", "What is 2+3?", "5"), Problem("b", "What is 6*7?", "42"), Problem("c", "What is 1+1?", "2"),
                Problem("d", "What is 9-4?", "5"), Problem("e", "What is 3*3?", "9")],
    "gsm8k": [Problem("g1", "Tom has 3 apples and buys 4. How many?", "7"),
              Problem("g2", "5 pens a box, 2 boxes. How many pens?", "10")],
}
ANSWERS = {"2+3": "\\boxed{5}", "6*7": "Final Answer: 42", "1+1": "\\boxed{3}", "9-4": "it is \\boxed{5}.",
           "3*3": "no idea", "apples": "The answer is 7", "pens": "So 10 pens."}


class FakeStudent:
    """A generating backend without a model: the completion of a prompt is its ANSWERS entry (3 + its length in
    tokens); it records every prompt it is asked and raises once ``fail_after`` calls are done."""

    def __init__(self, fail_after: int | None = None):
        self.calls: list[list[str]] = []
        self.fail_after, self.closed = fail_after, False

    def generate(self, prompts, *, max_new_tokens, temperature=0.0, top_p=1.0, n=1, seed=0, desc="", seeds=None,
                 stops=None):
        if self.fail_after is not None and len(self.calls) == self.fail_after:
            raise RuntimeError("killed")
        self.calls.append(list(prompts))
        text = [next(v for k, v in ANSWERS.items() if k in p) for p in prompts]
        return [[Completion(t, "stop", len(p), 3 + len(t), "ok")] for p, t in zip(prompts, text, strict=True)]

    def close(self):
        self.closed = True


@pytest.fixture
def student(monkeypatch):
    """``load`` makes the engines the completions step loads (a FakeStudent each, or what the test sets in
    ``student.next``); ``student.loaded`` lists them."""
    state = type("State", (), {"loaded": [], "next": None})()

    def load(kind, model, **options):
        engine = state.next or FakeStudent()
        state.next = None
        state.loaded.append((kind, model, options, engine))
        return engine

    monkeypatch.setattr(completions.registry, "load_backend", load)
    return state


def _cfg(*overrides: str):
    return compose_cfg("+experiment=demo", "benchmark=[math500,gsm8k]", "eval.backend=hf", *overrides)


def _specs(cfg):
    return {n: completions.completions_spec(cfg.benchmark[n], cfg.eval, "student-x", None, None, "model")
            for n in PROBLEMS}


def _grade(cfg, store, made):
    """The evaluate step on finished completions: its ctx (paths, result)."""
    specs = {f"completions.untuned.{n}": s for n, s in made.items()}
    specs |= {f"eval.untuned.{n}": evaluate.eval_spec(cfg.benchmark[n], cfg.eval, s.key) for n, s in made.items()}
    ctx = BuildContext(cfg, store, NullTracker(), specs, values={"benchmarks": PROBLEMS},
                       paths={f"completions.untuned.{n}": store.path(s.key) for n, s in made.items()})
    evaluate.run(ctx, [f"eval.untuned.{n}" for n in PROBLEMS])
    return ctx


def test_the_completions_key_holds_what_generation_depends_on_and_the_verdicts_key_the_scoring(monkeypatch, kit):
    plan = lambda *o: jobs.make_plan(compose_cfg("stage=evaluate", *o, data=kit))  # noqa: E731 (paper presets)
    base = plan()
    keys = lambda p, kind: {r: p.key(r) for r in p.roles if r.startswith(kind)}  # noqa: E731
    assert len(keys(base, "completions.untuned.")) == len(keys(base, "eval.untuned.")) == 5
    for scoring in (("eval.rule=policy",), ("eval.extract=policy", "eval.rule=policy")):
        other = plan(*scoring)
        assert keys(other, "completions.") == keys(base, "completions.")
        assert not set(keys(other, "eval.").values()) & set(keys(base, "eval.").values())
    monkeypatch.setattr(grading, "POLICY_VERSION", "a grader fix")
    fixed = plan()
    assert keys(fixed, "completions.") == keys(base, "completions.")
    assert not set(keys(fixed, "eval.").values()) & set(keys(base, "eval.").values())
    # with data.decontamination=drop the evaluation set is the benchmark minus the pools' kept problems, and the
    # pools' keys hold the grader's version: there a grader fix may change the problems, so it regenerates
    dropped = plan("data.decontamination=drop")
    monkeypatch.undo()
    assert keys(dropped, "completions.") != keys(plan("data.decontamination=drop"), "completions.")
    for runtime in ("eval.chunk_size=7", "eval.batch_size=3", "eval.tensor_parallel_size=2", "eval.backend=vllm"):
        assert {r: plan(runtime).key(r) for r in base.roles} == {r: base.key(r) for r in base.roles}, runtime
    for generation in ("eval.max_new_tokens=99", "eval.stop=[]", "eval.temperature=0.6", "eval.limit=3",
                       "eval.max_model_len=8000", "student.chat_template=x"):
        assert keys(plan(generation), "completions.") != keys(base, "completions."), generation
    spec = base.specs["eval.untuned.gsm8k"]
    assert spec.inputs == (base.key("completions.untuned.gsm8k"),) and spec.fields == {
        "grader": grading.POLICY_VERSION, "extract": "boxed", "rule": "paper", "extraction": "last_number"}


def test_another_scoring_regrades_the_stored_completions_without_loading_a_model(tmp_path, student):
    cfg, store = _cfg("eval.chunk_size=3"), Store(tmp_path / "cache")
    made = _specs(cfg)
    counts = completions.generate_model(cfg, store, STUDENT, made, PROBLEMS)
    assert counts == {"math500": {"samples": 5, "generated": 5, "resumed": 0},
                      "gsm8k": {"samples": 2, "generated": 2, "resumed": 0}}
    engine = student.loaded[0][3]
    assert len(student.loaded) == 1 and engine.closed  # one engine for both benchmarks
    assert [len(c) for c in engine.calls] == [3, 3, 1]  # 7 samples, chunks of 3, across the two benchmarks
    rows = [json.loads(line) for line in open(store.path(made["math500"].key) / completions.COMPLETIONS)]
    assert rows[1] == {"id": "b", "sample": 0, "completion": "Final Answer: 42", "finish_reason": "stop",
                       "prompt_tokens": len(engine.calls[0][1]), "completion_tokens": 19, "status": "ok"}
    graded = _grade(cfg, store, made)
    policy = graded.result["untuned"]
    # policy: a, b (Final Answer), d right; c (3 vs 2), e (no answer) wrong -> 60; gsm8k last number 7, 10 -> 100
    assert (policy["math500"]["accuracy"], policy["gsm8k"]["accuracy"]) == (60.0, 100.0)

    cfg.eval.extract = "boxed"  # the official scorer: b has no box
    student.loaded.clear()
    again = completions.generate_model(cfg, store, STUDENT, _specs(cfg), PROBLEMS)
    assert again["math500"] == {"samples": 5, "generated": 0, "resumed": 0} and student.loaded == []
    assert _specs(cfg) == made  # the same completions
    boxed = _grade(cfg, store, made)
    assert boxed.result["untuned"]["math500"]["accuracy"] == 40.0 and student.loaded == []
    assert boxed.paths["eval.untuned.math500"] != graded.paths["eval.untuned.math500"]  # both kept, apart
    predictions = [json.loads(line) for line in open(boxed.paths["eval.untuned.math500"] / PREDICTIONS)]
    assert [(r["correct"], r["correct_policy"]) for r in predictions] == [
        (True, True), (False, True), (False, False), (True, True), (False, False)]


def test_a_killed_evaluation_keeps_its_chunks_and_the_rerun_generates_only_the_rest(tmp_path, student):
    cfg = _cfg("eval.chunk_size=2")
    whole, killed = Store(tmp_path / "whole"), Store(tmp_path / "killed")
    made = _specs(cfg)
    completions.generate_model(cfg, whole, STUDENT, made, PROBLEMS)
    student.next = FakeStudent(fail_after=2)  # two chunks of 2 samples, then the engine dies
    with pytest.raises(RuntimeError, match="killed"):
        completions.generate_model(cfg, killed, STUDENT, made, PROBLEMS)
    assert not killed.is_done(made["math500"].key)
    kept = completions.finished_rows(killed.root / ".work" / made["math500"].key)
    assert sorted(kept) == [("a", 0), ("b", 0), ("c", 0), ("d", 0)]
    student.next = rerun = FakeStudent()
    counts = completions.generate_model(cfg, killed, STUDENT, made, PROBLEMS)
    assert counts == {"math500": {"samples": 5, "generated": 1, "resumed": 4},
                      "gsm8k": {"samples": 2, "generated": 2, "resumed": 0}}
    assert [p for call in rerun.calls for p in call] == [
        "Solve the following math problem. Present the final answer in the format: Final Answer: "
        "\\boxed{your_answer}.\nProblem: What is 3*3?\nAnswer:", "Tom has 3 apples and buys 4. How many?",
        "5 pens a box, 2 boxes. How many pens?"]  # the 3 samples no chunk held, in one chunk of 2 and one of 1
    for spec in made.values():
        assert (killed.path(spec.key) / completions.COMPLETIONS).read_bytes() == \
            (whole.path(spec.key) / completions.COMPLETIONS).read_bytes()
    assert killed.manifest(made["math500"].key)["counts"] == {
        "problems": 5, "samples": 5, "generated": 1, "resumed": 4, "finish_reason": {"stop": 5}}
    assert not (killed.root / ".work" / made["math500"].key).exists()  # finished: its chunks go


def test_sampled_samples_are_rows_of_their_own_seeds_whatever_the_chunk(tmp_path, student):
    cfg = _cfg("eval.temperature=0.6", "eval.top_p=0.95", "eval.n_samples=3", "eval.chunk_size=4")
    seen = []

    class Seeded(FakeStudent):
        def generate(self, prompts, **kwargs):
            seen.extend(zip(prompts, kwargs["seeds"], strict=True))
            assert kwargs["temperature"] == 0.6 and kwargs["top_p"] == 0.95 and kwargs["n"] == 1
            return super().generate(prompts, **kwargs)

    student.next = Seeded()
    made = _specs(cfg)
    completions.generate_model(cfg, Store(tmp_path), STUDENT, made, PROBLEMS)
    first = completions.problem_seed(0, "math500", "a")
    assert len(seen) == 21 and seen[:3] == [(seen[0][0], first), (seen[0][0], first + 1), (seen[0][0], first + 2)]
    rows = [json.loads(line) for line in open(Store(tmp_path).path(made["gsm8k"].key) / completions.COMPLETIONS)]
    assert [(r["id"], r["sample"]) for r in rows] == [("g1", 0), ("g1", 1), ("g1", 2), ("g2", 0), ("g2", 1), ("g2", 2)]


def test_the_verdicts_refuse_completions_of_other_problems(tmp_path, student):
    cfg, store = _cfg(), Store(tmp_path)
    made = _specs(cfg)
    completions.generate_model(cfg, store, STUDENT, made, PROBLEMS)
    with pytest.raises(DataError, match="its problems differ from the evaluation set's .5 vs 4 problems; first "
                                        "difference: e"):
        completions.read_completions(store.path(made["math500"].key), PROBLEMS["math500"][:4])


def test_each_benchmark_gets_its_token_share_of_the_pass(tmp_path, student, monkeypatch):
    clock = iter([0.0, 100.0])  # one chunk of 7 samples, 100 s
    monkeypatch.setattr(completions.time, "monotonic", lambda: next(clock, 100.0))
    cfg, store = _cfg(), Store(tmp_path)
    made = _specs(cfg)
    completions.generate_model(cfg, store, STUDENT, made, PROBLEMS)
    tokens = {n: sum(3 + len(ANSWERS[k]) for k in keys) for n, keys in
              (("math500", ("2+3", "6*7", "1+1", "9-4", "3*3")), ("gsm8k", ("apples", "pens")))}
    assert tokens == {"math500": 12 + 19 + 12 + 19 + 10, "gsm8k": 18 + 14}  # 3 + the answer's characters each
    assert store.manifest(made["math500"].key)["generation_s"] == round(100 * 72 / 104, 3) == 69.231
    assert store.manifest(made["gsm8k"].key)["generation_s"] == round(100 * 32 / 104, 3) == 30.769


def test_a_killed_replica_resumes_from_its_chunks(tmp_path, monkeypatch):
    """The replica program itself (run_request): chunks of 2 prompts, killed after 1 chunk, rerun generates the
    other 3 prompts only; the shard is that of an uninterrupted run."""
    engines = []

    def load(kind, model, **options):
        engines.append(FakeStudent(fail_after=1 if len(engines) == 0 else None))
        return engines[-1]

    monkeypatch.setattr("mixgap.stages.backends.replica.load_backend", load)
    prompts = ["2+3", "6*7", "1+1", "9-4", "3*3"]
    request = {"kind": "hf", "model": "m", "load": {}, "generate": {"max_new_tokens": 4}, "prompts": prompts,
               "seeds": None, "stops": None, "indices": [0, 2, 4, 6, 8], "desc": "d", "chunk_size": 2}
    for name in ("killed", "whole"):
        (tmp_path / name).mkdir()
        path = tmp_path / name / "shard-0-of-2.request.json"
        path.write_text(json.dumps({**request, "output": str(tmp_path / name / "shard-0-of-2.jsonl"),
                                    "chunk_size": 2 if name == "killed" else None}))
    with pytest.raises(RuntimeError, match="killed"):
        run_request(tmp_path / "killed" / "shard-0-of-2.request.json")
    assert [p.name for p in sorted((tmp_path / "killed").glob("*.chunk-*"))] == ["shard-0-of-2.chunk-00000.jsonl"]
    assert run_request(tmp_path / "killed" / "shard-0-of-2.request.json") == 3
    assert engines[1].calls == [["1+1", "9-4"], ["3*3"]]
    assert run_request(tmp_path / "whole" / "shard-0-of-2.request.json") == 5 and engines[2].calls == [prompts]
    assert (tmp_path / "killed" / "shard-0-of-2.jsonl").read_bytes() == (tmp_path / "whole" / "shard-0-of-2.jsonl").read_bytes()
    assert run_request(tmp_path / "killed" / "shard-0-of-2.request.json") == 0 and len(engines) == 3  # no load


def test_a_grader_change_regrades_the_stored_teacher_generation_and_never_reruns_the_teacher(tmp_path, monkeypatch,
                                                                                              kit):
    """The pool key holds the grader's version, the generation key does not: after a grader fix, building the pool
    reads the stored samples (no backend is loaded)."""
    cfg = compose_cfg("teacher=qwq32b", data=kit)
    gen = generate.generation_spec(cfg.teacher, cfg.problems, kit)
    pool = generate.pool_spec(cfg.teacher, gen.key)
    monkeypatch.setattr(grading, "POLICY_VERSION", "a grader fix")
    assert generate.generation_spec(cfg.teacher, cfg.problems, kit).key == gen.key
    fixed = generate.pool_spec(cfg.teacher, gen.key)
    assert fixed.key != pool.key and fixed.fields["grader"] == "a grader fix"
    store = Store(tmp_path)
    rows = [{"id": "p1", "problem": "1+1?", "answer": "2", "sample_index": 0, "response": "\\boxed{2}",
             "finish_reason": "stop", "prompt_tokens": 5, "completion_tokens": 4, "status": "ok", "teacher": "t"},
            {"id": "p2", "problem": "2+2?", "answer": "4", "sample_index": 0, "response": "\\boxed{5}",
             "finish_reason": "stop", "prompt_tokens": 5, "completion_tokens": 4, "status": "ok", "teacher": "t"}]
    store.get_or_build(gen, lambda out, _w: (out / generate.SAMPLES).write_text(
        "".join(json.dumps(r) + "\n" for r in rows)) and None)
    monkeypatch.setattr(generate.registry, "load_backend", lambda *a, **k: pytest.fail("a backend was loaded"))
    ctx = BuildContext(compose_cfg("stage=generate", "teacher=qwq32b", data=kit), store, NullTracker(),
                       {"generation.teacher": gen, "pool.teacher": fixed})
    generate.run(ctx, ("generation.teacher", "pool.teacher"))
    assert ctx.result["counts"]["pool.teacher"]["kept"] == 1 and store.is_done(fixed.key)
    assert Path(ctx.paths["generation.teacher"]) == store.path(gen.key)


def test_a_lora_checkpoint_is_served_as_the_student_with_its_adapter_at_the_models_own_context(tmp_path, student):
    """``finetune_mode=lora`` with the paper presets' eval.lora_serving=adapter: the tuned arm's engine loads the
    untuned student with the checkpoint's ``adapter/`` at the model's own context (max_model_len None, as the authors'
    test_lora.sh); with eval.lora_serving=merged it loads the checkpoint at eval.lora_max_model_len. The untuned arm
    loads the student at eval.max_model_len either way."""
    checkpoint = tmp_path / "checkpoint"
    (checkpoint / "adapter").mkdir(parents=True)
    (checkpoint / "adapter" / "adapter_config.json").write_text(json.dumps({"r": 8, "peft_type": "LORA"}))

    def loaded(*overrides, arm="tuned"):
        cfg = _cfg("finetune_mode=lora", "eval.max_model_len=400", *overrides)
        specs = {f"completions.{arm}.{n}": completions.completions_spec(
            cfg.benchmark[n], cfg.eval, "checkpoint-x", None, None, "model", key_fields(cfg, arm)) for n in PROBLEMS}
        ctx = BuildContext(cfg, Store(tmp_path / "cache"), NullTracker(), specs,
                           values={"benchmarks": PROBLEMS, "student": "/weights/student"},
                           paths={"checkpoint": checkpoint})
        completions.run(ctx, list(specs))
        kind, model, options, _ = student.loaded[-1]
        return model, options.get("adapter"), options["max_model_len"]

    assert loaded() == ("/weights/student", str(checkpoint / "adapter"), None)
    assert loaded("eval.lora_serving=merged", "eval.lora_max_model_len=300") == (str(checkpoint), None, 300)
    assert loaded(arm="untuned") == ("/weights/student", None, 400)
    (checkpoint / "adapter" / "adapter_config.json").unlink()
    with pytest.raises(FileNotFoundError, match="no adapter_config.json, so eval.lora_serving=adapter cannot serve it"):
        loaded("eval.lora_max_model_len=200")
