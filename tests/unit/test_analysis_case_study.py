"""mixgap.results.analysis.case_study: branching-word counts, disagreement selection and the side-by-side Markdown."""

from __future__ import annotations

import pytest

from mixgap.results.analysis import case_study as cs


@pytest.mark.parametrize(("text", "expected"), [
    ("Wait, but Butter. But wait! Let me see. Let mexico. Alternatively, Let me try. WAIT",
     {"Wait": 1, "Alternatively": 1, "But": 1, "Let me": 2}),
    ("Hmm... Wait.\nWait\nBut\n\\boxed{But}", {"Wait": 2, "Alternatively": 0, "But": 2, "Let me": 0}),
    ("", {"Wait": 0, "Alternatively": 0, "But": 0, "Let me": 0}),
])
def test_branching_counts_whole_words_case_sensitive(text, expected):
    assert cs.branching_counts(text) == expected


def test_disagreements_only_shared_ids_in_first_arm_order():
    arms = [{"p3": True, "p1": True, "p2": False, "p4": True},
            {"p1": True, "p2": True, "p3": False},
            {"p1": True, "p2": True, "p3": True, "p5": False}]
    assert cs.disagreements(arms) == ["p3", "p2"]  # p1 agrees; p4/p5 are not answered by every arm
    assert cs.disagreements([{"p1": True}]) == []
    with pytest.raises(ValueError, match="verdicts is empty"):
        cs.disagreements([])


def test_cell_escapes_markdown_and_html():
    assert cs.cell("a|b\n<c> & d\r\ne") == "a\\|b<br>&lt;c&gt; &amp; d<br>e"
    assert cs.cell(None) == ""


def test_case_markdown_side_by_side_table():
    rows = {
        "w=0": {"completion": "Let me add.\n|x| = 2", "correct": False, "reason": "wrong_answer", "extracted": "2",
                "finish_reason": "stop", "completion_tokens": 9},
        "w=1": {"completion": "Wait, Wait. But 3", "correct": True, "reason": "equivalent", "extracted": "3",
                "finish_reason": "length", "completion_tokens": 7},
    }
    text = cs.case_markdown(cs.Case("math500", "test/x/1.json", "Find $x<1$.", "3", rows), ["w=0", "w=1", "untuned"])
    lines = text.splitlines()
    assert lines[0] == "### math500 · `test/x/1.json`"
    assert "**Problem.** Find $x&lt;1$." in lines
    assert "**Gold answer:** `3`" in lines
    table = lines[lines.index("| | w=0 | w=1 | untuned |"):]
    assert table[1] == "|---|---|---|---|"
    assert table[2] == "| verdict | wrong (wrong_answer) | correct | missing |"
    assert table[3] == "| extracted | 2 | 3 |  |"
    assert table[4] == "| completion tokens | 9 (stop) | 7 (length) |  |"
    assert table[5] == "| characters | 19 | 17 |  |"
    assert table[6:10] == ["| “Wait” | 0 | 2 |  |", "| “Alternatively” | 0 | 0 |  |", "| “But” | 0 | 1 |  |",
                           "| “Let me” | 1 | 0 |  |"]
    assert table[10] == "| completion | Let me add.<br>\\|x\\| = 2 | Wait, Wait. But 3 |  |"


def test_totals_markdown_sums_over_cases():
    a = {"completion": "Wait. Wait.", "correct": True, "completion_tokens": 10}
    b = {"completion": "But Let me", "correct": False, "completion_tokens": 30}
    cases = [cs.Case("gsm8k", "1", "q", "1", {"arm": a}), cs.Case("gsm8k", "2", "q", "2", {"arm": b, "other": a})]
    lines = cs.totals_markdown(cases, ["arm", "other"]).splitlines()
    assert lines[2] == "| arm | 1/2 | 20 | 2 | 0 | 1 | 1 |"
    assert lines[3] == "| other | 1/1 | 10 | 2 | 0 | 0 | 0 |"
