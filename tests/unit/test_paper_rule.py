r"""The paper's rule (``grade(..., extract="boxed", rule="paper")``) against the authors' own code, run verbatim
(tests/fixtures/paper_math_metric.py: ``is_equiv``/``strip_string`` of their math_metric_llm_eval_general.py).

On the kit's 1,000 MATH500 teacher traces: 580 correct by their rule, 266 without a box, so 154 misses with an
answer go to their judge; under our policy (same extraction) 114 do: the two rules differ on 40 traces, all of
them answers our rule accepts and theirs does not (``\text{(E)}`` = ``E``, ``10,\!080`` = ``10080``, ...).
"""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import ROOT, compose_cfg
from mixgap.core.config import validate
from mixgap.core.errors import ConfigError
from mixgap.core.tracking import NullTracker
from mixgap.grading import grade, scoring_name
from mixgap.grading.official import paper_is_equiv, paper_strip_string
from mixgap.results.tables.table3 import extract_markdown
from mixgap.stages import judge, verdicts
from mixgap.stages.data import Problem
from mixgap.stages.evaluate import eval_spec

_spec = importlib.util.spec_from_file_location("paper_math_metric", ROOT / "tests" / "fixtures" / "paper_math_metric.py")
theirs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(theirs)


def their_verdict(completion: str, gold: object) -> bool:
    """Their script's rule verdict: ``is_equiv(remove_boxed(last_boxed_only_string(resp)), answer)``, the answer
    ``None`` when there is no box (as their loop does). Where their ``remove_boxed`` asserts (a ``\fbox{`` inside a
    ``\boxed{}``) their script stops; the port calls that no answer, so the oracle does too."""
    box = theirs.last_boxed_only_string(completion)
    try:
        answer = theirs.remove_boxed(box) if box is not None else None
    except AssertionError:
        answer = None
    return answer is not None and theirs.is_equiv(answer, gold)


def kit_traces(kit: Path) -> list[dict]:
    return [json.loads(line) for path in sorted((kit / "traces").glob("*.jsonl")) for line in open(path)]


def test_the_port_agrees_with_their_code_on_every_kit_trace(kit):
    rows = kit_traces(kit)
    paper = [grade(r["response"], r["answer"], "math500", extract="boxed", rule="paper") for r in rows]
    assert len(rows) == 1000
    assert [v.correct for v in paper] == [their_verdict(r["response"], r["answer"]) for r in rows]
    assert sum(v.correct for v in paper) == 580
    assert sum(v.reason == "no_answer" for v in paper) == 266
    sent_paper = {i for i, v in enumerate(paper) if not v.correct and v.extracted is not None}
    ours = [grade(r["response"], r["answer"], "math500", extract="boxed", timeout_s=30.0) for r in rows]
    sent_ours = {i for i, v in enumerate(ours) if not v.correct and v.extracted is not None}
    assert (len(sent_paper), len(sent_ours)) == (154, 114)
    differ = [i for i in range(len(rows)) if paper[i].correct != ours[i].correct]
    assert len(differ) == 40 and sent_paper - sent_ours == set(differ) and sent_ours <= sent_paper
    golds = {(rows[i]["answer"], paper[i].extracted) for i in differ}
    assert {("\\text{(E)}", "E"), ("10,\\!080", "10080"), ("\\frac{5}{13}", "\\frac{65}{169}"), ("1,-2", "-2,1"),
            ("4210_{5}", "4210_5")} <= golds


# (completion, gold, the paper rule's verdict), each worked by hand through strip_string
ADVERSARIAL = [
    ("\\boxed{\\boxed{5}}", "5", True),  # nested: the last \boxed is the inner one
    ("\\boxed{5} then \\boxed{7}", "5", False),  # only the last box
    ("\\boxed{\\fbox{5}}", "5", False),  # their remove_boxed asserts (their script stops); no answer here
    ("$\\boxed 5$", "5", True),  # "\boxed " runs to the next $
    ("\\boxed{}", "5", False),  # an empty box is an answer, a wrong one
    ("\\boxed{5 \\text{ cm}}", "5", True),  # "\text{ " and after is a unit
    ("\\boxed{5 \\text{ cm} \\text{ long}}", "5", False),  # two: remove_right_units asserts -> raw compare
    ("\\boxed{5\\text{cm}}", "5", False),  # no space after \text{: not a unit
    ("\\boxed{10,\\!080}", "10080", False),  # \! goes, the comma stays
    ("\\boxed{10,\\!080}", "10,\\!080", True),
    ("\\boxed{10{,}080}", "10080", False),
    ("\\boxed{1, 2}", "1,2", True),  # spaces go
    ("\\boxed{2, 1}", "1,2", False),  # order kept
    ("\\boxed{\\frac12}", "\\frac{1}{2}", True),  # fix_fracs
    ("\\boxed{\\frac1{72}}", "\\frac{1}{72}", True),
    ("\\boxed{\\dfrac{1}{2}}", "\\frac{1}{2}", True),
    ("\\boxed{0.5}", "\\frac{1}{2}", True),  # the whole answer 0.5 only
    ("\\boxed{.5}", "\\frac{1}{2}", True),  # a leading . gets a 0
    ("\\boxed{1/2}", "\\frac{1}{2}", True),  # fix_a_slash_b
    ("\\boxed{a/b}", "\\frac{a}{b}", False),  # int("a") raises ValueError -> raw compare
    ("\\boxed{a/b}", "a/b", True),
    ("\\boxed{\\frac{2}{4}}", "\\frac{1}{2}", False),  # strings, not values
    ("\\boxed{\\sqrt3}", "\\sqrt{3}", True),  # fix_sqrt
    ("\\boxed{2\\sqrt}", "2\\sqrt", True),  # \sqrt at the end: IndexError -> raw compare
    ("\\boxed{x = 5}", "y = 5", True),  # a left side of <= 2 characters goes
    ("\\boxed{x = 5}", "5", True),
    ("\\boxed{xy = 5}", "5", False),  # "xy " is 3 characters
    ("\\boxed{x=1, y=2}", "1, y=2", False),  # two '=': nothing dropped
    ("\\boxed{\\text{(E)}}", "E", False),
    ("\\boxed{\\text{(E)}}", "\\text{(E)}", True),
    ("\\boxed{30^\\circ}", "30", True),
    ("\\boxed{30^{\\circ}}", "30", True),
    ("\\boxed{50\\%}", "50", True),
    ("\\boxed{50\\%}", "0.5", False),
    ("\\boxed{\\$5}", "5", True),
    ("\\boxed{\\$5.00}", "5", False),
    ("\\boxed{\\left(1,2\\right)}", "(1,2)", True),
    ("\\boxed{(1,2)}", "(2,1)", False),
    ("\\boxed{\\tfrac{3}{4}}", "3/4", True),
    ("Final Answer: 5", "5", False),  # no box: no answer
    ("\\boxed{4210_5}", "4210_{5}", False),
    ("\\boxed{5\n}", "5", True),  # line breaks go
]


@pytest.mark.parametrize("completion, gold, expected", ADVERSARIAL)
def test_the_port_agrees_with_their_code_on_adversarial_completions(completion, gold, expected):
    verdict = grade(completion, gold, "math500", extract="boxed", rule="paper")
    assert verdict.correct == their_verdict(completion, gold) == expected
    assert verdict.reason == ("exact" if expected else "no_answer" if verdict.extracted is None else "mismatch")


def test_strip_string_and_is_equiv_match_theirs_on_random_token_strings():
    tokens = ["\\frac", "1", "2", "72", "{", "}", "/", "=", " ", ".", "0.5", "\\sqrt", "\\text{ ", "cm", "\\!", ",",
              "x", "k", "\\%", "\\$", "^\\circ", "^{\\circ}", "\\left(", "\\right)", "\\dfrac", "tfrac", "\n", "\\\\", "-"]
    rng = random.Random(0)
    strings = ["".join(rng.choice(tokens) for _ in range(rng.randint(0, 6))) for _ in range(4000)]
    for s in strings:
        try:
            expected = theirs.strip_string(s)
        except Exception as e:  # the port raises the same error type
            with pytest.raises(type(e)):
                paper_strip_string(s)
        else:
            assert paper_strip_string(s) == expected, s
    for a, b in zip(strings[::2], strings[1::2], strict=True):
        assert paper_is_equiv(a, b) == theirs.is_equiv(a, b), (a, b)
        assert paper_is_equiv(a, a) == theirs.is_equiv(a, a)


def test_a_float_gold_falls_back_to_raw_equality_as_their_amc_golds_do():
    # their AMC23 golds are JSON floats (27.0): strip_string raises on it, so str1 == str2, never True for a str
    assert paper_is_equiv("27", 27.0) is theirs.is_equiv("27", 27.0) is False
    assert paper_is_equiv("27.0", 27.0) is theirs.is_equiv("27.0", 27.0) is False
    # the kit's AMC gold is the string "27" (the Hub's float becomes "27.0"): the string rule then decides
    assert grade("\\boxed{27}", "27", "amc23", extract="boxed", rule="paper").correct
    assert not grade("\\boxed{27}", "27.0", "amc23", extract="boxed", rule="paper").correct
    assert (paper_is_equiv(None, None), paper_is_equiv("5", None)) == (theirs.is_equiv(None, None), False) == (True, False)


def test_the_paper_rule_needs_the_paper_extraction():
    with pytest.raises(ValueError, match="rule must be one of"):
        grade("\\boxed{5}", "5", "math500", extract="policy", rule="paper")
    with pytest.raises(ValueError, match="rule must be one of"):
        grade("\\boxed{5}", "5", "math500", extract="boxed", rule="official")
    # GSM8K keeps its task's exact_match under both rules
    assert grade("so 1,200.", "1200", "gsm8k", extract="boxed", rule="paper") == grade(
        "so 1,200.", "1200", "gsm8k", extract="boxed")
    assert (scoring_name("policy", "policy"), scoring_name("boxed", "policy"), scoring_name("boxed", "paper")) == (
        "policy", "boxed", "paper")


@pytest.mark.parametrize("overrides, message", [
    (["eval.rule=official"], "eval.rule='official' is not allowed; choose one of policy, paper"),
    (["eval.extract=policy"], "eval.rule=paper is not allowed with eval.extract=policy: the paper's rule decides on the "
                              "paper's extracted answer; set eval.extract=boxed, or eval.rule=policy"),
])
def test_eval_rule_is_validated(overrides, message):
    with pytest.raises(ConfigError, match=f"^{message}$"):
        validate(compose_cfg(*overrides))


def test_presets_set_the_rule_and_the_key_holds_it():
    paper, demo = compose_cfg(), compose_cfg("+experiment=demo")
    assert (paper.eval.extract, paper.eval.rule) == ("boxed", "paper")
    assert (demo.eval.extract, demo.eval.rule) == ("policy", "policy")
    validate(compose_cfg("eval.extract=policy", "eval.rule=policy"))
    bench = paper.benchmark.math
    keys = {rule: eval_spec(bench, compose_cfg(f"eval.rule={rule}").eval, "completions-m").key for rule in ("paper", "policy")}
    assert keys["paper"] != keys["policy"]
    assert eval_spec(bench, paper.eval, "completions-m").fields["rule"] == "paper"


# five problems, one sample each; verdicts worked by hand (policy / boxed / paper):
#   a  \boxed{\frac{65}{169}} vs \frac{5}{13}: T / T / F      b  Final Answer: 5 vs 5: T / F (no box) / F
#   c  \boxed{x = 5} vs y = 5:                 F / F / T      d  \boxed{8} vs 7:       F / F / F
#   e  \boxed{10,\!080} vs 10080:              T / T / F
# pass@1: policy 3/5 = 60, boxed 2/5 = 40, paper 1/5 = 20. Under paper the judge gets a, d, e (misses with a box);
# it says True, False, True: judged = c + a + e = 3/5 = 60.
TINY = [("a", "\\boxed{\\frac{65}{169}}", "\\frac{5}{13}"), ("b", "Final Answer: 5", "5"), ("c", "\\boxed{x = 5}", "y = 5"),
        ("d", "\\boxed{8}", "7"), ("e", "\\boxed{10,\\!080}", "10080")]


def test_rows_scores_judge_and_table_carry_the_three_scorings_side_by_side(tmp_path):
    cfg = compose_cfg("benchmark=[math500]")  # the paper preset: eval.extract=boxed, eval.rule=paper
    problems = [Problem(i, "?", gold) for i, _, gold in TINY]
    done = [[SimpleNamespace(text=text, finish_reason="stop", completion_tokens=3)] for _, text, _ in TINY]
    verdicts.write_eval(cfg.benchmark.math500, problems, done, cfg, tmp_path, NullTracker(), "hf")
    rows = [json.loads(line) for line in open(tmp_path / verdicts.PREDICTIONS)]
    assert [(r["correct"], r["correct_policy"], r["correct_boxed"]) for r in rows] == [
        (False, True, True), (False, True, False), (True, False, False), (False, False, False), (False, True, True)]
    assert [r["reason"] for r in rows] == ["mismatch", "no_answer", "exact", "mismatch", "mismatch"]
    scores = json.loads((tmp_path / verdicts.SCORES).read_text())
    assert scores["accuracy_by_scoring"] == pytest.approx({"paper": 20.0, "policy": 60.0, "boxed": 40.0})
    assert (scores["accuracy"], scores["scoring"]) == (pytest.approx(20.0), "paper")

    sent = [i for i, r in enumerate(rows) if judge.needs_judge(r)]
    assert sent == [0, 3, 4]  # the paper's sent set: a, d, e
    judged = judge.judged_rows(rows, {0: "True", 3: "False", 4: "True"}, "paper")
    assert [(r["rule_paper"], r["rule_policy"], r["rule_boxed"], r["correct"]) for r in judged] == [
        (False, True, True, True), (False, True, False, False), (True, False, False, True), (False, False, False, False),
        (False, True, True, True)]
    result = judge.judge_scores(judged, "math500", "j")
    assert result["accuracy_by_scoring"] == pytest.approx({"policy": 60.0, "boxed": 40.0, "paper": 20.0, "judged": 60.0})
    assert (result["rule_accuracy"], result["judge_accuracy"], result["sent"], result["flips"]) == (
        pytest.approx(20.0), pytest.approx(60.0), 3, 2)

    # under our rule (boxed extraction) the sent set is c and d: a and e are correct there, b has no box
    ours = verdicts.grade_rows(cfg.benchmark.math500, problems, done, "boxed", "policy")
    assert [i for i, r in enumerate(ours) if judge.needs_judge(r)] == [2, 3]

    ev = SimpleNamespace(key="eval-x", scores=scores)
    job = SimpleNamespace(graded={"tuned": {"math500": ev}}, judge={"tuned": {"math500": result}},
                          label=lambda: "qwen3b w=1", identity={})
    table = extract_markdown([job])
    assert "| qwen3b w=1 | math500 | paper | 60.0 | 40.0 | -20.0 | 20.0 | 60.0 |" in table
