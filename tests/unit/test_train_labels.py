"""Exact label masks from the chat template (SmolLM2's own, Qwen2.5's and Llama-3.1's) and the over-length policy."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import pytest

from mixgap.core.schema_models import PAPER_PROMPT
from mixgap.stages.data import Problem
from mixgap.stages.train.labels import (
    IGNORE,
    TokenizedExample,
    apply_overlength,
    end_of_turn_id,
    infer_seqlen,
    render_training_turn,
    set_chat_template,
    tokenize_conversation,
    tokenize_mixture,
    truncate_example,
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


def test_infer_seqlen_is_llamafactorys():
    """The port against their function verbatim (tests/fixtures/llamafactory_infer_seqlen.py), every length to 40
    under every cutoff to 48, and each branch by hand."""
    spec = importlib.util.spec_from_file_location("llamafactory_infer_seqlen", FIXTURES / "llamafactory_infer_seqlen.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    theirs = module.infer_seqlen
    assert all(infer_seqlen(s, t, c) == theirs(s, t, c) for s in range(41) for t in range(41) for c in range(1, 49))
    assert infer_seqlen(30, 10, 32) == (22, 10)  # response under half: kept whole, the prompt cut to 32 - 10
    assert infer_seqlen(10, 30, 32) == (10, 22)  # prompt under half: kept whole, the response gets the rest
    assert infer_seqlen(30, 50, 40) == (15, 25)  # both over half: 40 x 50/80 = 25 for the response, 15 prompt
    assert infer_seqlen(28, 20, 48) == (28, 20)  # fits: unchanged


def test_truncate_cuts_a_tokenised_example_as_llamafactory(qwen_tokenizer):
    """The paper's Qwen example (28 prompt + 20 response tokens, see test_paper_training_turn_qwen) cut as
    LLaMA-Factory's supervised processor cuts it: source = its system + user slots (encoded one by one), target =
    ``response<|im_end|>\n``; they keep ``source[:s] + target[:t]`` and supervise ``target[:t]`` (we mask the newline)."""
    ex = tokenize_conversation(qwen_tokenizer, PROBLEM, SOLUTION, system="You are a helpful assistant.")
    source = ids(qwen_tokenizer, "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n") + ids(
        qwen_tokenizer, f"<|im_start|>user\n{PROBLEM}<|im_end|>\n<|im_start|>assistant\n")
    target = ids(qwen_tokenizer, SOLUTION + "<|im_end|>\n")
    assert ex.input_ids == source + target and (ex.prompt_len, len(source), len(target)) == (28, 28, 20)
    im_end = qwen_tokenizer.convert_tokens_to_ids("<|im_end|>")

    # cutoff 40: both over half, the response gets int(40 x 20/48) = 16, the prompt 24: answer and <|im_end|> lost
    [cut], counts = apply_overlength([TokenizedExample(ex.input_ids, ex.labels, "p", "strong", prompt_len=28)], 40, "truncate")
    assert cut.input_ids == source[:24] + target[:16] and cut.labels == [IGNORE] * 24 + target[:16]
    assert qwen_tokenizer.decode(target[:16]) == "$2+3=5$.\n\nFinal Answer: $\\boxed{" and im_end not in cut.labels
    assert counts["truncated"] == {"strong": 1, "weak": 0} and counts["max_len"] == 40

    # cutoff 46: the response (20) is under half and kept whole with its <|im_end|>; the prompt loses "istant\n"
    cut = truncate_example(ex, 46)
    assert cut.input_ids == source[:26] + target and cut.prompt_len == 26
    assert qwen_tokenizer.convert_ids_to_tokens(source[26:]) == ["istant", "Ċ"]
    assert cut.labels == [IGNORE] * 26 + target[:-1] + [IGNORE]  # LLaMA-Factory supervises the final "\n" too
    assert truncate_example(ex, 48) is ex  # fits

    # a long response (68 tokens) at cutoff 64: the prompt (28) is under half, the response keeps 64 - 28 = 36
    long = tokenize_conversation(qwen_tokenizer, PROBLEM, "Wait, let me check that again. " * 6 + SOLUTION,
                                 system="You are a helpful assistant.")
    assert (long.prompt_len, len(long.input_ids)) == (28, 96)
    cut = truncate_example(long, 64)
    assert cut.input_ids == long.input_ids[:64] and cut.labels == long.labels[:64]


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
    # a: prompt 1 + response 9 at cutoff 8: the prompt is under half, the response gets the other 7 (8 tokens);
    # late: prompt 9 + response 1: the response is under half and kept whole, the prompt keeps 7 (LLaMA-Factory
    # cuts the source from the right, so a cut prompt loses its generation prompt)
    examples = [_ex(10, "strong", id_="a"), _ex(4, "weak", id_="b"), _ex(9, "weak", id_="d"),
                _ex(10, "strong", first_supervised=9, id_="late")]
    kept, counts = apply_overlength(examples, 8, "truncate")
    assert [e.input_ids for e in kept] == [list(range(8)), list(range(4)), list(range(8)), [*range(7), 9]]
    assert kept[3].labels == [IGNORE] * 7 + [9] and kept[3].prompt_len == 7
    assert counts["truncated"] == {"strong": 2, "weak": 1} and counts["dropped"] == {"strong": 0, "weak": 0}
    assert "overlength=truncate cut 3 of 4" in caplog.text


def test_overlength_errors():
    with pytest.raises(ValueError, match="example late: no supervised token"):  # 1 x 1/2 rounds down to 0
        apply_overlength([_ex(2, "strong", id_="late")], 1, "truncate")
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
