"""Exact label masks from the chat template (SmolLM2's own, Qwen2.5's and Llama-3.1's) and the over-length policy."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from mixgap.core.schema_models import PAPER_PROMPT
from mixgap.stages.data import Problem
from mixgap.stages.train.labels import (
    IGNORE,
    TokenizedExample,
    apply_overlength,
    end_of_turn_id,
    render_training_turn,
    set_chat_template,
    tokenize_conversation,
    tokenize_mixture,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SMOL_SYSTEM = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
QWEN_SYSTEM = "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
LLAMA_SYSTEM = (
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
    "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>"
)


def ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def expected(tokenizer, prompt_text: str, content: str, end: str, after: str) -> tuple[list[int], list[int]]:
    """Hand-rendered prompt / content / end-of-turn / trailing text -> (input_ids, labels)."""
    p, c, e, a = ids(tokenizer, prompt_text), ids(tokenizer, content), ids(tokenizer, end), ids(tokenizer, after)
    assert len(e) == 1, "the end-of-turn marker must be one token"
    return p + c + e + a, [IGNORE] * len(p) + c + e + [IGNORE] * len(a)


@pytest.fixture(scope="module")
def qwen_tokenizer(smollm2_tokenizer):
    tok = copy.deepcopy(smollm2_tokenizer)  # ChatML special tokens already in SmolLM2's vocabulary
    return set_chat_template(tok, (FIXTURES / "train_qwen2.5_chat_template.jinja").read_text())


@pytest.fixture(scope="module")
def llama_tokenizer(smollm2_tokenizer):
    tok = copy.deepcopy(smollm2_tokenizer)
    # Llama-3's header and end-of-turn markers are single special tokens in its vocabulary: add them here.
    tok.add_special_tokens({
        "bos_token": "<|begin_of_text|>",
        "additional_special_tokens": ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
    })
    return set_chat_template(tok, (FIXTURES / "train_llama3.1_chat_template.jinja").read_text())


def test_smollm2_own_template_supervises_response_and_im_end(smollm2_tokenizer):
    tok = smollm2_tokenizer
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert tok.pad_token_id == im_end == tok.eos_token_id  # the trap: pad == eos == end of turn
    ex = tokenize_conversation(tok, "What is 1+1?", "The answer is \\boxed{2}.")
    prompt = SMOL_SYSTEM + "<|im_start|>user\nWhat is 1+1?<|im_end|>\n<|im_start|>assistant\n"
    want_ids, want_labels = expected(tok, prompt, "The answer is \\boxed{2}.", "<|im_end|>", "\n")
    assert ex.input_ids == want_ids
    assert ex.labels == want_labels
    # <|im_end|> occurs three times: closing the system and user turns (masked) and the answer (supervised)
    positions = [i for i, t in enumerate(ex.input_ids) if t == im_end]
    assert len(positions) == 3
    assert [ex.labels[i] for i in positions] == [IGNORE, IGNORE, im_end]
    assert ex.labels[-1] == IGNORE and ex.input_ids[-1] == ids(tok, "\n")[0]


def test_explicit_system_turn_is_masked(smollm2_tokenizer):
    tok = smollm2_tokenizer
    ex = tokenize_conversation(tok, "Add 2 and 2.", "4", system="Be brief.")
    prompt = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nAdd 2 and 2.<|im_end|>\n<|im_start|>assistant\n"
    assert (ex.input_ids, ex.labels) == expected(tok, prompt, "4", "<|im_end|>", "\n")


def test_qwen25_template(qwen_tokenizer):
    ex = tokenize_conversation(qwen_tokenizer, "What is 1+1?", "It is 2.\n\nFinal Answer: \\boxed{2}")
    prompt = QWEN_SYSTEM + "<|im_start|>user\nWhat is 1+1?<|im_end|>\n<|im_start|>assistant\n"
    want = expected(qwen_tokenizer, prompt, "It is 2.\n\nFinal Answer: \\boxed{2}", "<|im_end|>", "\n")
    assert (ex.input_ids, ex.labels) == want


def test_llama31_template_trims_content_and_ends_on_eot(llama_tokenizer):
    ex = tokenize_conversation(llama_tokenizer, "What is 1+1?", "  The answer is 2.\n")
    prompt = LLAMA_SYSTEM + "<|start_header_id|>user<|end_header_id|>\n\nWhat is 1+1?<|eot_id|>"
    prompt += "<|start_header_id|>assistant<|end_header_id|>\n\n"
    assert (ex.input_ids, ex.labels) == expected(llama_tokenizer, prompt, "The answer is 2.", "<|eot_id|>", "")
    assert ex.labels[-1] == llama_tokenizer.convert_tokens_to_ids("<|eot_id|>")


PROBLEM = "What is $2+3$?"
SOLUTION = "$2+3=5$.\n\nFinal Answer: $\\boxed{5}$"


def test_paper_training_turn_qwen(qwen_tokenizer):
    """The paper's Qwen training example: bare problem, LLaMA-Factory's qwen system turn, exact mask."""
    text = render_training_turn(qwen_tokenizer, PROBLEM, SOLUTION, "{problem}", "You are a helpful assistant.")
    # LLaMA-Factory 0.9.2's `qwen` template writes exactly this (format_system + format_user + format_assistant)
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nWhat is $2+3$?<|im_end|>\n"
        "<|im_start|>assistant\n$2+3=5$.\n\nFinal Answer: $\\boxed{5}$<|im_end|>\n"
    )
    ex = tokenize_conversation(qwen_tokenizer, PROBLEM, SOLUTION, system="You are a helpful assistant.")
    assert qwen_tokenizer.decode(ex.input_ids) == text and len(ex.input_ids) == 48
    # 28 tokens of system + user + "<|im_start|>assistant\n", 18 of the solution, <|im_end|>, then "\n"
    assert [i for i, t in enumerate(ex.labels) if t != IGNORE] == list(range(28, 47))
    assert qwen_tokenizer.convert_ids_to_tokens(ex.input_ids[27:29]) == ["Ċ", "$"]
    assert qwen_tokenizer.convert_ids_to_tokens(ex.input_ids[46:]) == ["<|im_end|>", "Ċ"]
    assert qwen_tokenizer.decode(ex.input_ids[28:47]) == SOLUTION + "<|im_end|>"


def test_paper_training_turn_llama(llama_tokenizer):
    """The paper's Llama training example: LLaMA-Factory's llama3 system is empty; the Llama-3.1 template still
    writes its dated system header (LLaMA-Factory itself writes none: <|begin_of_text|><|start_header_id|>user...)."""
    text = render_training_turn(llama_tokenizer, PROBLEM, SOLUTION, "{problem}", "")
    assert text == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nWhat is $2+3$?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n$2+3=5$.\n\nFinal Answer: $\\boxed{5}$<|eot_id|>"
    )
    assert render_training_turn(llama_tokenizer, PROBLEM, SOLUTION, "{problem}", None) == text  # same as no system
    ex = tokenize_conversation(llama_tokenizer, PROBLEM, SOLUTION, system="")
    assert llama_tokenizer.decode(ex.input_ids) == text and len(ex.input_ids) == 70
    # 51 prompt tokens (through the assistant header's "\n\n"), 18 of the solution, <|eot_id|> last
    assert [i for i, t in enumerate(ex.labels) if t != IGNORE] == list(range(51, 70))
    assert llama_tokenizer.convert_ids_to_tokens(ex.input_ids[49:52]) == ["<|end_header_id|>", "ĊĊ", "$"]
    assert llama_tokenizer.convert_ids_to_tokens(ex.input_ids[-1]) == "<|eot_id|>"


def test_render_training_turn_fills_the_prompt(qwen_tokenizer):
    text = render_training_turn(qwen_tokenizer, "2+2?", "4", "Problem: {problem}\nAnswer:", None)
    assert text == QWEN_SYSTEM + "<|im_start|>user\nProblem: 2+2?\nAnswer:<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n"
    with pytest.raises(ValueError, match="has no {problem} placeholder"):
        render_training_turn(qwen_tokenizer, "2+2?", "4", "Solve it.", None)


def test_end_of_turn_id(smollm2_tokenizer, llama_tokenizer):
    assert end_of_turn_id(smollm2_tokenizer) == smollm2_tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert end_of_turn_id(llama_tokenizer) == llama_tokenizer.convert_tokens_to_ids("<|eot_id|>")


@pytest.mark.parametrize(
    ("template", "response", "message"),
    [
        # no special token after the assistant text: nothing teaches the student to stop
        ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
         "{% if add_generation_prompt %}assistant: {% endif %}", "4", "end-of-turn"),
        # the template rewrites the content
        ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] | upper }}<|im_end|>\n{% endfor %}"
         "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}", "four", "changes the response"),
        ("{{ bos_token }}{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>{% endfor %}"
         "{% if add_generation_prompt %}<|im_start|>assistant{% endif %}", "   ", "empty"),
    ],
)
def test_bad_templates_and_responses_raise(smollm2_tokenizer, template, response, message):
    tok = set_chat_template(copy.deepcopy(smollm2_tokenizer), template)
    with pytest.raises(ValueError, match=message):
        tokenize_conversation(tok, "2+2?", response)


def _ex(n: int, source: str, first_supervised: int = 1, id_: str = "x") -> TokenizedExample:
    return TokenizedExample(list(range(n)), [IGNORE] * first_supervised + list(range(first_supervised, n)), id_, source)


def test_overlength_drop_counts_per_source():
    examples = [_ex(10, "strong", id_="a"), _ex(4, "weak", id_="b"), _ex(6, "strong", id_="c"),
                _ex(9, "weak", id_="d"), _ex(12, "strong", id_="e")]
    kept, counts = apply_overlength(examples, 8, "drop")
    assert [e.id for e in kept] == ["b", "c"]
    assert counts["dropped"] == {"strong": 2, "weak": 1}
    assert counts["truncated"] == {"strong": 0, "weak": 0}
    assert counts["kept"] == {"strong": 1, "weak": 1}
    assert (counts["examples"], counts["tokens"], counts["supervised_tokens"], counts["max_len"]) == (2, 10, 8, 6)


def test_overlength_truncate_warns_and_counts(caplog):
    examples = [_ex(10, "strong", id_="a"), _ex(4, "weak", id_="b"), _ex(9, "weak", id_="d")]
    kept, counts = apply_overlength(examples, 8, "truncate")
    assert [len(e.input_ids) for e in kept] == [8, 4, 8]
    assert [len(e.labels) for e in kept] == [8, 4, 8]
    assert counts["truncated"] == {"strong": 1, "weak": 1} and counts["dropped"] == {"strong": 0, "weak": 0}
    assert "overlength=truncate cut 2 of 3" in caplog.text


def test_overlength_errors():
    with pytest.raises(ValueError, match="example late: no supervised token"):
        apply_overlength([_ex(10, "strong", first_supervised=9, id_="late")], 8, "truncate")
    with pytest.raises(ValueError, match="all 1 examples are longer"):
        apply_overlength([_ex(10, "weak")], 8, "drop")
    with pytest.raises(ValueError, match="overlength='cut' is not allowed; choose one of drop, truncate"):
        apply_overlength([], 8, "cut")
    with pytest.raises(ValueError, match="source='medium' is not allowed"):
        apply_overlength([_ex(4, "medium")], 8, "drop")


def test_tokenize_mixture_fixture(smollm2_tokenizer):
    from mixgap.stages.mix import read_mixture

    rows = read_mixture(FIXTURES / "train_mixture")
    examples = tokenize_mixture(rows, smollm2_tokenizer, PAPER_PROMPT, progress=False)
    assert [e.id for e in examples] == [f"t-{i:02d}" for i in range(1, 11)]
    assert [e.source for e in examples] == ["weak"] * 6 + ["strong"] * 4
    first = examples[0]
    supervised = [t for t in first.labels if t != IGNORE]
    assert smollm2_tokenizer.decode(supervised) == rows[0].meta["response"] + "<|im_end|>"
    assert "Problem: What is $2+3$?\nAnswer:" in smollm2_tokenizer.decode(first.input_ids)
    with_system = tokenize_mixture(rows[:1], smollm2_tokenizer, "{problem}", system="Be brief.", progress=False)[0]
    text = smollm2_tokenizer.decode(with_system.input_ids)
    assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n" + rows[0].problem + "<|im_end|>")
    assert [t for t in with_system.labels if t != IGNORE] == supervised  # same response, same supervised tokens
    bad = [Problem("no-response", "1+1?", "2", meta={"source": "weak"})]
    with pytest.raises(ValueError, match="mixture row no-response: meta lacks response"):
        tokenize_mixture(bad, smollm2_tokenizer, PAPER_PROMPT, progress=False)
