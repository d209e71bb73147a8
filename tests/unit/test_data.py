"""Data loading from the offline kit, Hub-row normalisation, subsets and decontamination (mixgap.stages.benchmarks)."""

from __future__ import annotations

import pytest

from conftest import compose_cfg
from mixgap.stages import benchmarks, data
from mixgap.stages.data import DataError, Problem


@pytest.mark.parametrize(
    "name, count, first_id, first_answer",
    [
        ("math500", 500, "test/precalculus/807.json", r"\left( 3, \frac{\pi}{2} \right)"),
        ("math", 5000, "test/algebra/1.json", "2"),
        ("gsm8k", 1319, "gsm8k-test-0000", "18"),
        ("aime24", 30, "aime24-60", "204"),
        ("amc23", 40, "amc23-0", "27"),
        ("olympiadbench", 675, "olympiadbench-1606", "2"),
    ],
)
def test_every_benchmark_loads_from_the_kit(kit, name, count, first_id, first_answer):
    bench = compose_cfg(f"benchmark=[{name}]").benchmark[name]
    problems = data.load_source(bench, kit)
    assert len(problems) == count
    assert problems[0].id == first_id
    assert problems[0].answer == first_answer
    assert all(p.problem and p.answer for p in problems)


def test_math_train_has_the_7500_problems(kit):
    problems = data.load_source(compose_cfg().problems, kit)
    assert len(problems) == 7500 and problems[0].meta["subject"] == "algebra"


def test_limit_is_a_seeded_subset_in_source_order(kit):
    bench = compose_cfg("benchmark=[aime24]").benchmark.aime24
    a = data.load_source(bench, kit, limit=5)
    b = data.load_source(bench, kit, limit=5)
    full = [p.id for p in data.load_source(bench, kit)]
    assert [p.id for p in a] == [p.id for p in b] and len(a) == 5
    assert [full.index(p.id) for p in a] == sorted(full.index(p.id) for p in a)
    bench.subset_seed = 1
    assert [p.id for p in data.load_source(bench, kit, limit=5)] != [p.id for p in a]
    bench.limit = 3  # the smaller cap wins
    assert len(data.load_source(bench, kit, limit=5)) == 3


@pytest.mark.parametrize(
    "row, fmt, expected",
    [
        # GSM8K: text after ####, thousands commas removed
        ({"answer": "He pays 2*5=<<2*5=10>>10\n#### 1,234"}, "after_hashes", "1234"),
        # OlympiadBench: final_answer list joined, outer $ removed
        ({"answer": ["$3$", "$-1$"]}, "list_join", "3, -1"),
        ({"answer": ["$\\frac{1}{2}$"]}, "list_join", "\\frac{1}{2}"),
        # AMC floats stay as written: the grader matches 27.0 to 27
        ({"answer": 27.0}, "plain", "27.0"),
        # MATH on the Hub: the last box of the solution
        ({"solution": "So $x=\\boxed{2}$, then $\\boxed{\\frac{3}{4}}$."}, "boxed_in_solution", "\\frac{3}{4}"),
    ],
)
def test_gold_answers_from_hub_rows(row, fmt, expected):
    assert data.gold_answer(row, "answer", "solution", fmt) == expected


@pytest.mark.parametrize(
    "solution, expected",
    [
        # MATH train train/algebra/24014.json: no braces; the authors' last_boxed_only_string + remove_boxed
        ("Since we want the largest value of $x$, our answer is $\\boxed 2$.", "2"),
        # train/number_theory/7115.json: an empty box is no gold answer
        ("Therefore there are $\\boxed{}$ primes in that range.", None),
        ("No box at all.", None),
        ("An unclosed $\\boxed{3$.", None),
        # a braced box still wins over a spaced one elsewhere in the text (our extraction first)
        ("First $\\boxed 1$, then $\\boxed{5}$.", "5"),
    ],
)
def test_math_gold_answers_without_braces_or_with_an_empty_box(solution, expected):
    assert data.gold_answer({"solution": solution}, None, "solution", "boxed_in_solution") == expected


def test_the_kits_math_train_through_the_hub_path_skips_and_counts_the_rows_without_a_gold_answer(kit, monkeypatch, caplog):
    """The kit's math_train.jsonl as the Hub serves MATH-lighteval (columns problem, level, solution, type), read
    through datasets.load_dataset and the Hub rows' normalisation: 24014 (\\boxed 2) and 25040 (\\boxed 9) load with
    gold 2 and 9; 7115 and 7117 (empty \\boxed{}) are skipped and counted; 7,498 load."""
    import datasets

    kit_rows = data.read_jsonl(kit / "math" / "math_train.jsonl")
    hub = datasets.Dataset.from_dict({"problem": [r["problem"] for r in kit_rows],
                                      "level": [r["level_str"] for r in kit_rows],
                                      "solution": [r["solution"] for r in kit_rows],
                                      "type": [r["type"] for r in kit_rows]})
    asked = []

    def load_dataset(hub_id, config, split):
        asked.append((hub_id, config, split))
        return hub

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    source = compose_cfg().problems
    with caplog.at_level("WARNING", logger="mixgap.stages.data"):
        problems, skipped = data.load_problems(source, None)
    assert asked == [("DigitalLearningGmbH/MATH-lighteval", None, "train")]
    assert (len(kit_rows), len(problems), skipped) == (7500, 7498, 2)
    row = {r["id"]: i for i, r in enumerate(kit_rows)}  # a Hub row is numbered by its index: math_train-<index>
    by_id = {p.id: p for p in problems}
    assert by_id[f"math_train-{row['train/algebra/24014.json']}"].answer == "2"
    assert by_id[f"math_train-{row['train/algebra/25040.json']}"].answer == "9"
    lost = [row["train/number_theory/7115.json"], row["train/number_theory/7117.json"]]
    assert lost == [5529, 5531] and not {f"math_train-{i}" for i in lost} & set(by_id)
    # every other gold answer is the kit's (the kit's whitespace aside)
    assert all(by_id[f"math_train-{i}"].answer == r["answer"].strip() for i, r in enumerate(kit_rows) if i not in lost)
    assert by_id["math_train-0"].meta == {"level": "Level 5", "type": "Algebra"}
    assert [r.getMessage() for r in caplog.records] == [
        "math_train: 2 of 7500 rows of DigitalLearningGmbH/MATH-lighteval (train) have no gold answer "
        "(boxed_in_solution) and are skipped: rows 5529, 5531"]
    assert len(data.load_source(source, None)) == 7498


def test_hub_rows_are_normalised_with_the_configured_fields():
    bench = compose_cfg("benchmark=[gsm8k]").benchmark.gsm8k
    rows = [{"question": "Q1?", "answer": "work\n#### 7"}, {"question": "Q2?", "answer": "#### 1,000"}]
    problems = [data._normalise_row(r, i, bench, "openai/gsm8k (test)") for i, r in enumerate(rows)]
    assert [(p.id, p.problem, p.answer) for p in problems] == [("gsm8k-0", "Q1?", "7"), ("gsm8k-1", "Q2?", "1000")]


def test_the_hub_unreachable_is_one_line_naming_mixgap_data(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match=r"^cannot load openai/gsm8k .*set MIXGAP_DATA") as err:
        data.load_source(compose_cfg("benchmark=[gsm8k]").benchmark.gsm8k, None)
    assert "\n" not in str(err.value)
    # a teacher's released responses have no copy in the kit: the advice says so instead of naming MIXGAP_DATA
    with pytest.raises(DataError, match=r"^cannot load UWNSL/x \(train\) .*it is on the Hub only") as err:
        data.load_hub_rows("UWNSL/x", None, "train", in_kit=False)
    assert "MIXGAP_DATA" not in str(err.value)


def test_a_missing_kit_file_names_mixgap_data_and_the_layout(tmp_path):
    with pytest.raises(DataError, match="MIXGAP_DATA .* must hold the offline kit .*math/math_train.jsonl"):
        data.load_source(compose_cfg().problems, tmp_path)


def _p(id_: str, text: str) -> Problem:
    return Problem(id=id_, problem=text, answer="1")


TRAIN = [_p("t1", "What is $1+1$?"), _p("t2", "Find  x.\n")]
BENCH = {"math": [_p("m1", "what is $1+1$?"), _p("m2", "Another one"), _p("m3", "FIND X.")], "aime24": [_p("a1", "Hard")]}


def test_overlap_is_by_normalised_text():
    assert data.normalize_text("Find  x.\n") == data.normalize_text("find x.") == "findx."
    assert benchmarks.overlap(TRAIN, BENCH["math"]) == ["m1", "m3"]


def test_decontamination_error_names_the_benchmark_and_count():
    with pytest.raises(DataError, match=r"^2 of 3 math problems are in the training mixture"):
        benchmarks.decontaminate(TRAIN, BENCH, "error")


def test_decontamination_drop_and_allow():
    kept, counts = benchmarks.decontaminate(TRAIN, BENCH, "drop")
    assert [p.id for p in kept["math"]] == ["m2"] and [p.id for p in kept["aime24"]] == ["a1"]
    assert counts == {"math": 2, "aime24": 0}
    kept, counts = benchmarks.decontaminate(TRAIN, BENCH, "allow")
    assert len(kept["math"]) == 3 and counts["math"] == 2


def test_kit_traces_overlap_math500_entirely(kit):
    """The kit's teacher traces are MATH500 test problems: training on them must not meet MATH500."""
    traces = [data._normalise_kit_row(r) for r in data.read_jsonl(kit / "traces/short_cot_qwen2.5-14b-instruct_math500.jsonl")]
    math_test = data.load_source(compose_cfg("benchmark=[math]").benchmark.math, kit)
    assert len(benchmarks.overlap(traces, math_test)) == 500


def test_fill_prompt_replaces_only_the_problem():
    assert data.fill_prompt("P: {problem} {x}", "a {b}") == "P: a {b} {x}"
    with pytest.raises(ValueError, match="no {problem} placeholder"):
        data.fill_prompt("no placeholder", "x")


def test_evaluation_sets_decontaminate_the_whole_benchmark_before_the_subset(kit):
    """Training on the kit's MATH500 traces: MATH is evaluated on the full test minus those 500, then subset."""
    traces = [data._normalise_kit_row(r) for r in data.read_jsonl(kit / "traces/short_cot_qwen2.5-14b-instruct_math500.jsonl")]
    chosen = compose_cfg("benchmark=[math,aime24]").benchmark
    sets, counts = benchmarks.evaluation_sets(chosen, kit, traces, "drop", limit=8)
    assert counts == {"math": 500, "aime24": 0}
    assert len(sets["math"]) == 8 and len(sets["aime24"]) == 8
    math500 = {p.id for p in traces}
    assert not math500 & {p.id for p in sets["math"]}
    full, _ = benchmarks.evaluation_sets(chosen, kit, traces, "drop")
    assert len(full["math"]) == 4500 and len(full["aime24"]) == 30
    with pytest.raises(DataError, match="^500 of 5000 math problems are in the training mixture"):
        benchmarks.evaluation_sets(chosen, kit, traces, "error", limit=8)
