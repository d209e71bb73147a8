"""Generation stage: artifact keys, resumable shards, response import, rejection sampling into a pool."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import compose_cfg
from mixgap.core.errors import ConfigError
from mixgap.core.files import write_jsonl_atomic
from mixgap.core.store import Store, canonical_json
from mixgap.core.tracking import NullTracker
from mixgap.grading import grade
from mixgap.stages import models
from mixgap.stages.backends.base import Completion
from mixgap.stages.backends.dataset import import_responses, read_rows
from mixgap.stages.backends.registry import BACKENDS, register
from mixgap.stages.data import DataError, Problem, read_jsonl
from mixgap.stages.generate import (
    build_generation,
    build_pool,
    filter_samples,
    generate_samples,
    generation_spec,
    length_stats,
    pool_spec,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def gen_key(*overrides: str, data: Path | None = Path("/some/kit")) -> str:
    cfg = compose_cfg("teacher=qwq32b", *overrides)
    return generation_spec(cfg.teacher, cfg.problems, data).key


def test_generation_key_ignores_cosmetic_fields_and_follows_sampling():
    base = gen_key()
    assert gen_key("teacher.name=renamed", "teacher.batch_size=3") == base
    assert gen_key("teacher.sampling.temperature=0.5") != base
    assert gen_key("teacher.prompt='Q: {problem}'") != base
    assert gen_key("problems.limit=10") != base
    assert gen_key(data=Path("/another/kit/folder")) == base  # the kit's location is not identity
    assert gen_key(data=None) != base  # kit vs Hub


def test_generation_spec_fields_of_a_dataset_teacher():
    cfg = compose_cfg("teacher=kit_short_cot")
    spec = generation_spec(cfg.teacher, cfg.problems, Path("/abs/kit"))
    assert spec.fields["source"] == "kit"
    assert "sampling" not in spec.fields and "prompt" not in spec.fields and "problems" not in spec.fields
    assert "/abs/kit" not in canonical_json(spec.fields)
    tweaked = compose_cfg("teacher=kit_short_cot", "teacher.sampling.temperature=0.1", "teacher.name=x")
    assert generation_spec(tweaked.teacher, cfg.problems, Path("/abs/kit")).key == spec.key
    uwnsl = compose_cfg("teacher=uwnsl_long")  # ids and answers looked up in the problems by text
    fields = generation_spec(uwnsl.teacher, uwnsl.problems, None).fields
    assert fields["source"] == "hub" and fields["problems"]["name"] == "math_train"


def test_gguf_teacher_key_names_the_converted_weights():
    cfg = compose_cfg("teacher=smollm2_135m")
    fields = generation_spec(cfg.teacher, cfg.problems, None).fields
    assert fields["weights"].startswith("model-")


def test_pool_spec_depends_on_the_generation_only():
    a, b = compose_cfg("teacher=qwq32b").teacher, compose_cfg("teacher=qwen32b").teacher
    assert pool_spec(a, "generation-1").key == pool_spec(b, "generation-1").key
    assert pool_spec(a, "generation-1").key != pool_spec(a, "generation-2").key
    assert pool_spec(a, "generation-1").inputs == ("generation-1",)


class FakeBackend:
    """Answers every prompt with its number boxed; fails after ``fail_after`` calls (a killed job)."""

    def __init__(self, fail_after: int | None = None):
        self.calls: list[dict] = []
        self.fail_after = fail_after
        self.closed = False

    def generate(self, prompts, *, max_new_tokens, temperature=0.0, top_p=1.0, n=1, seed=0, desc=""):
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise RuntimeError("killed")
        self.calls.append({"prompts": list(prompts), "seed": seed, "n": n, "max_new_tokens": max_new_tokens})
        return [[Completion(f"\\boxed{{{p.split()[-1]}}}", "stop", 5, 3 + k, "ok") for k in range(n)] for p in prompts]

    def close(self):
        self.closed = True


TEACHER = OmegaConf.create({"name": "fake", "prompt": "Problem {problem}",
                            "sampling": {"temperature": 0.7, "top_p": 0.9, "max_new_tokens": 64, "n": 2, "seed": 10}})
PROBLEMS = [Problem(f"id{i}", f"number {i}", str(i)) for i in range(5)]


def test_generation_resumes_from_shards_and_skips_done_problems(tmp_path):
    killed = FakeBackend(fail_after=2)
    with pytest.raises(RuntimeError, match="killed"):
        generate_samples(PROBLEMS, killed, TEACHER, tmp_path, shard_size=2)
    assert len(list(tmp_path.glob("shard-*.jsonl"))) == 2  # id0-id3 done, id4 lost with the job
    fresh = FakeBackend()
    result = generate_samples(PROBLEMS, lambda: fresh, TEACHER, tmp_path, shard_size=2)
    assert result["resumed"] == 4
    assert [c["prompts"] for c in fresh.calls] == [["Problem number 4"]]
    assert fresh.calls[0]["seed"] == 14  # sampling.seed + the source index of the shard's first problem
    assert [c["seed"] for c in killed.calls] == [10, 12]
    rows = result["rows"]
    assert [(r["id"], r["sample_index"]) for r in rows] == [(f"id{i}", k) for i in range(5) for k in (0, 1)]
    assert rows[3] == {"id": "id1", "problem": "number 1", "answer": "1", "sample_index": 1,
                       "response": "\\boxed{1}", "finish_reason": "stop", "prompt_tokens": 5,
                       "completion_tokens": 4, "status": "ok", "teacher": "fake"}
    assert fresh.closed

    def no_model():
        raise AssertionError("a finished generation must not load the model")

    again = generate_samples(PROBLEMS, no_model, TEACHER, tmp_path, shard_size=2)
    assert again["resumed"] == 5 and again["rows"] == rows


IMPORT_TEACHER = OmegaConf.create({"name": "imported", "dataset": {"fields": {
    "id": None, "problem": "question", "answer": None, "solution": None, "response": "output"}}})


def fixture_problems() -> list[Problem]:
    return [Problem(r["id"], r["problem"], r["answer"]) for r in read_jsonl(FIXTURES / "generate_problems.jsonl")]


def test_import_matches_problem_text_and_counts_what_it_leaves_out():
    rows, counts = import_responses(IMPORT_TEACHER, read_jsonl(FIXTURES / "generate_import.jsonl"), fixture_problems())
    assert counts == {"rows": 7, "unmatched": 1, "missing_response": 1, "samples": 5, "problems": 4}
    assert [(r["id"], r["sample_index"], r["answer"]) for r in rows] == [
        ("train/algebra/1.json", 0, "2"),
        ("train/algebra/2.json", 0, "2"),  # case and spacing differ
        ("train/algebra/3.json", 0, "42"),  # two problems share a normalised text: taken in order
        ("train/algebra/4.json", 0, "42"),
        ("train/algebra/4.json", 1, "42"),
    ]
    assert rows[0]["completion_tokens"] is None and rows[0]["status"] == "ok"


def test_import_names_a_missing_mapped_field():
    with pytest.raises(Exception, match="row 0 has no field 'output'"):
        import_responses(IMPORT_TEACHER, [{"question": "What is $1+1$?"}], fixture_problems())


def test_build_generation_imports_a_jsonl_with_answers_from_the_problem_source(tmp_path, kit):
    cfg = compose_cfg(
        "teacher@mix.strong=kit_short_cot", f"mix.strong.dataset.path={FIXTURES / 'generate_import.jsonl'}",
        "mix.strong.dataset.fields.id=null", "mix.strong.dataset.fields.answer=null",
        "mix.strong.dataset.fields.problem=question", "mix.strong.dataset.fields.response=output",
        f"problems.kit_path={FIXTURES / 'generate_problems.jsonl'}", data=kit,
    )
    out = tmp_path / "gen"
    out.mkdir()
    counts = build_generation(cfg.mix.strong, cfg, Store(tmp_path / "store"), out, tmp_path, NullTracker())["counts"]
    assert counts["samples"] == 5 and counts["unmatched"] == 1 and counts["status"] == {"ok": 5}
    assert len(read_jsonl(out / "samples.jsonl")) == 5


def test_an_import_of_an_empty_file_is_an_error_naming_the_file(tmp_path, kit):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    cfg = compose_cfg("teacher@mix.strong=kit_long_cot", f"mix.strong.dataset.path={empty}", data=kit)
    with pytest.raises(DataError) as err:
        read_rows(cfg.mix.strong, kit)
    assert str(err.value) == f"teacher kit_long_cot: {empty} holds no rows; give the teacher's responses"


@pytest.fixture
def registry():
    """The backend registry, restored after the test (a test may register its own backend class)."""
    before = dict(BACKENDS)
    yield BACKENDS
    BACKENDS.clear()
    BACKENDS.update(before)


def test_a_backend_is_one_registered_class_that_generation_and_pool_use(tmp_path, kit, monkeypatch, registry):
    loaded, closed = [], []

    @register("scripted")
    class ScriptedBackend:
        """A complete teacher backend: sample k of a problem answers the k-th entry of its row of ANSWERS."""

        generates = True
        ANSWERS = {"What is $1+1$?": ["2", "3"], "Solve $x+3=5$ for $x$.": ["7", "2"],
                   "Compute $6\\cdot 7$.": ["41", "40"], "Compute $6 \\cdot 7$.": ["42", "42"]}

        @staticmethod
        def needs_problems(teacher):
            return True

        def __init__(self, model, **options):
            loaded.append({"model": model, **options})

        def generate(self, prompts, *, max_new_tokens, temperature=0.0, top_p=1.0, n=1, seed=0, desc=""):
            return [[Completion(f"Final Answer: \\boxed{{{self.ANSWERS[p.removeprefix('Q: ')][k]}}}", "stop",
                                len(p), 3 + k, "ok") for k in range(n)] for p in prompts]

        def close(self):
            closed.append(True)

    cfg = compose_cfg("teacher=qwq32b", f"problems.kit_path={FIXTURES / 'generate_problems.jsonl'}", data=kit)
    teacher = cfg.teacher
    teacher.backend, teacher.name, teacher.prompt, teacher.sampling.n = "scripted", "scripted_t", "Q: {problem}", 2
    monkeypatch.setattr(models, "resolve_model", lambda source, store: f"/weights/{source.name}")
    gen = tmp_path / "gen"
    counts = build_generation(teacher, cfg, Store(tmp_path / "store"), gen, tmp_path / "work", NullTracker())["counts"]
    assert loaded == [{"model": "/weights/scripted_t", "dtype": "bfloat16", "max_model_len": 32768,
                       "tensor_parallel_size": 4, "batch_size": 16, "chat_template": None, "seed": 0}]
    assert closed == [True]
    assert counts == {"problems": 4, "samples": 8, "resumed": 0, "finish_reason": {"stop": 8}, "status": {"ok": 8},
                      "skipped_no_gold_answer": 0}
    teacher.revision = "c" * 40  # a pinned commit: the Hub id at that commit is the teacher's weights
    assert generation_spec(teacher, cfg.problems, kit).fields["weights"] == {"hub": "Qwen/QwQ-32B-Preview",
                                                                             "revision": "c" * 40}
    pool_counts = build_pool(gen, teacher, tmp_path / "pool")["counts"]
    pool = read_jsonl(tmp_path / "pool" / "pool.jsonl")
    assert [(r["id"], r["response"], r["completion_tokens"]) for r in pool] == [
        ("train/algebra/1.json", "Final Answer: \\boxed{2}", 3),  # sample 0 right
        ("train/algebra/2.json", "Final Answer: \\boxed{2}", 4),  # sample 0 wrong (7), sample 1 right
        ("train/algebra/4.json", "Final Answer: \\boxed{42}", 3),  # train/algebra/3.json: 41 and 40, dropped
    ]
    assert (pool_counts["tried"], pool_counts["kept"], pool_counts["keep_rate"]) == (4, 3, 0.75)
    assert pool_counts["dropped"] == {"mismatch": 1} and pool_counts["rejected_samples"] == {"mismatch": 3}
    # kept lengths 3, 4, 3 tokens: mean 3.3, median 3, p95 the ceil(0.95 * 3) = 3rd smallest
    assert {k: pool_counts["length"][k] for k in ("unit", "n", "mean", "median", "p95")} == {
        "unit": "tokens", "n": 3, "mean": 3.3, "median": 3, "p95": 4}


def test_an_unregistered_backend_is_one_line_naming_the_field():
    cfg = compose_cfg("teacher=qwq32b")
    cfg.teacher.backend = "tgi"
    with pytest.raises(ConfigError, match="^teacher.backend='tgi' is not allowed; choose one of hf, vllm, dataset$"):
        generation_spec(cfg.teacher, cfg.problems, None)


def test_write_jsonl_atomic_replaces_the_whole_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "rows.jsonl"
    write_jsonl_atomic(path, [{"a": 1}])
    write_jsonl_atomic(path, ({"x": "Δ_Long"} for _ in range(2)))
    assert path.read_text(encoding="utf-8") == '{"x": "Δ_Long"}\n{"x": "Δ_Long"}\n'

    def killed():
        yield {"y": 1}
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        write_jsonl_atomic(path, killed())
    assert path.read_text(encoding="utf-8") == '{"x": "Δ_Long"}\n{"x": "Δ_Long"}\n'  # the old file, whole
    assert [p.name for p in path.parent.iterdir()] == ["rows.jsonl"]


def test_rejection_sampling_keeps_the_first_correct_untruncated_sample():
    samples = read_jsonl(FIXTURES / "generate_samples" / "samples.jsonl")
    kept, counts = filter_samples(samples, grade)
    assert [(r["id"], r["sample_index"]) for r in kept] == [("g1", 1), ("g2", 0), ("g6", 0)]
    assert counts["tried"] == 6 and counts["kept"] == 3 and counts["keep_rate"] == 0.5
    assert counts["dropped"] == {"truncated": 1, "prompt_too_long": 1, "no_answer": 1}
    assert counts["rejected_samples"] == {"mismatch": 1, "truncated": 2, "prompt_too_long": 1, "no_answer": 1}
    assert counts["samples_graded"] == 8  # g2's second sample is never graded
    assert counts["length"] == {"unit": "tokens", "n": 3, "mean": 20.7, "median": 20, "p95": 30,
                                "chars": counts["length"]["chars"]}
    # first samples without the prompt_too_long one: 11, 20, 64, 8, 30
    assert {k: counts["length_tried"][k] for k in ("n", "mean", "median", "p95")} == {
        "n": 5, "mean": 26.6, "median": 20, "p95": 64}


def test_build_pool_rows_and_character_lengths_for_imports(tmp_path):
    gen = tmp_path / "gen"
    gen.mkdir()
    rows = read_jsonl(FIXTURES / "generate_samples" / "samples.jsonl")
    (gen / "samples.jsonl").write_text("".join(json.dumps({**r, "completion_tokens": None}) + "\n" for r in rows))
    teacher = OmegaConf.create({"name": "t_long", "cot": "long"})
    counts = build_pool(gen, teacher, tmp_path)["counts"]
    pool = read_jsonl(tmp_path / "pool.jsonl")
    assert pool[0] == {"id": "g1", "problem": "Compute $2\\cdot 3$.", "answer": "6",
                       "response": "2 times 3 is 6. Final Answer: \\boxed{6}", "teacher": "t_long", "cot": "long",
                       "completion_tokens": None}
    assert counts["teacher"] == "t_long" and counts["kept"] == 3
    assert counts["length"]["unit"] == "chars" and "no token counts" in counts["length"]["note"]
    assert counts["length"]["median"] == len("2 times 3 is 6. Final Answer: \\boxed{6}")  # of 39, 43, 36 chars


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (list(range(1, 21)), {"n": 20, "mean": 10.5, "median": 10.5, "p95": 19}),
        ([7], {"n": 1, "mean": 7, "median": 7, "p95": 7}),
        ([], {"n": 0, "mean": None, "median": None, "p95": None}),
    ],
)
def test_length_stats_nearest_rank_p95(values, expected):
    assert length_stats(values) == expected


def test_hub_problems_without_a_gold_answer_are_skipped_and_counted_in_the_generation(tmp_path, monkeypatch, registry):
    """MATH train from the Hub: a solution with an empty box has no gold answer; the teacher never sees it and the
    generation's manifest counts it. ``\\boxed 9`` (no braces) is the authors' extraction's 9."""
    import datasets

    hub = datasets.Dataset.from_dict({
        "problem": ["P one", "P two", "P three"], "level": ["Level 1"] * 3, "type": ["Algebra"] * 3,
        "solution": ["So $\\boxed{4}$.", "There are $\\boxed{}$ primes.", "It is $\\boxed 9$."]})
    monkeypatch.setattr(datasets, "load_dataset", lambda hub_id, config, split: hub)
    monkeypatch.delenv("MIXGAP_DATA", raising=False)
    prompts = []

    @register("echo")
    class EchoBackend:
        generates = True

        @staticmethod
        def needs_problems(teacher):
            return True

        def __init__(self, model, **options):
            pass

        def generate(self, prompts_, *, max_new_tokens, temperature=0.0, top_p=1.0, n=1, seed=0, desc=""):
            prompts.extend(prompts_)
            return [[Completion("\\boxed{4}", "stop", 1, 1, "ok")] for _ in prompts_]

        def close(self):
            pass

    cfg = compose_cfg("teacher=qwq32b", "paths.data=null")
    teacher = cfg.teacher
    teacher.backend, teacher.prompt, teacher.sampling.n = "echo", "{problem}", 1
    monkeypatch.setattr(models, "resolve_model", lambda source, store: "/weights")
    counts = build_generation(teacher, cfg, Store(tmp_path / "store"), tmp_path / "gen", tmp_path / "work", NullTracker())["counts"]
    assert prompts == ["P one", "P three"]
    assert (counts["problems"], counts["samples"], counts["skipped_no_gold_answer"]) == (2, 2, 1)
    rows = read_jsonl(tmp_path / "gen" / "samples.jsonl")
    assert [(r["id"], r["answer"]) for r in rows] == [("math_train-0", "4"), ("math_train-2", "9")]
