"""Answer extraction from a model completion (CoT text) -- pure string work, no sympy.

Two styles, chosen per benchmark by :func:`mixgap.grading.grade`:

* ``boxed`` (MATH, MATH500, AIME24, AMC23, OlympiadBench): the answer that comes **last** in the
  text -- the content of the last balanced ``\\boxed{...}`` / ``\\fbox{...}``, or the text after a
  ``Final Answer:`` (or "final answer is") marker written after that box; else ``None``.
  Long-CoT students box several candidates while they self-correct, so the last box is the answer
  (the rule of the Qwen2.5-Math evaluation harness used by the paper, ``find_box`` on the last
  ``\\boxed``). Braces are matched in one linear pass, so enormous or unbalanced LaTeX costs O(n).
* ``last_number`` (GSM8K, Cobbe et al. 2021): a boxed answer wins if present, else the last number in the
  text, with thousands separators and a trailing ``.0``/``.00`` normalised away.
"""

from __future__ import annotations

import re
import string

from mixgap.core.fields import choices_of
from mixgap.core.schema import BenchmarkConfig

STYLES = choices_of(BenchmarkConfig, "extraction")  # a benchmark's answer: the last \\boxed{} | the last number

# a box command followed by its opening brace (optional whitespace in between)
_BOX_OPEN = re.compile(r"\\(?:boxed|fbox)\s*\{")
# the only characters that matter for brace matching: escapes (\{ \} \\ ...) and bare braces
_BRACE_TOKEN = re.compile(r"\\.|[{}]", re.DOTALL)
# "Final Answer:" as written by Minerva-style prompts ("Final Answer: The final answer is $5$. I hope ..."),
# and the same marker in prose ("So, the final answer is 9901.")
_FINAL_ANSWER = re.compile(r"final\s+answer\s*(?:\*\*)?\s*:(?:\s*\*\*)?|\bfinal\s+answer\s+is\b\s*:?",
                           re.IGNORECASE)
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_MATH_SPAN = re.compile(r"\$\$.+?\$\$|\$.+?\$|\\\(.+?\\\)|\\\[.+?\\\]", re.DOTALL)
_SENTENCE_END = re.compile(r"\.(?:\s|$)")
_HOPE = re.compile(r"I hope it is correct\.?\s*$", re.IGNORECASE)
# a number token: digit groups joined by commas, optional decimals, or ".5"; one unambiguous pass
# (linear time). A token in the thousands shape is one number, otherwise its last group is.
_NUMBER = re.compile(
    r"(?:(?<![0-9A-Za-z)\]}])-)?"  # a minus that is a sign, not a subtraction ("3-5" gives 5)
    r"(?:\d+(?:,\d+)*(?:\.\d+)?|(?<!\d)\.\d+)"
)
_THOUSANDS = re.compile(r"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_TRAILING_ZEROS = re.compile(r"\.0+$")
_QUOTES = re.compile(r'^(?:\\?")+|(?:\\?")+$')  # "Final Answer: \"$12$ and $13$\"" quotes its answer
_MATHY = re.compile(r"[0-9\\]")  # a marker's answer with a digit or a LaTeX command can override a box


def _last_final_marker(text: str) -> re.Match[str] | None:
    """The last ``Final Answer:`` / "final answer is" marker, found backwards from the end (fast)."""
    lowered = text.translate(_ASCII_LOWER)  # same length as text, unlike str.lower()
    pos = lowered.rfind("final")
    while pos >= 0:
        match = _FINAL_ANSWER.match(text, pos)
        if match is not None and (pos == 0 or not lowered[pos - 1].isalnum()):
            return match
        pos = lowered.rfind("final", 0, pos)
    return None


def _last_match(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    found = None
    for found in pattern.finditer(text):  # noqa: B007 -- keep the last one
        pass
    return found


def _matching_braces(text: str, start: int = 0) -> dict[int, int]:
    """Map the index of every balanced ``{`` at or after ``start`` to the index of its ``}`` (one O(n) pass).

    Escaped braces (``\\{``, ``\\}``) are literal characters, not structure. Whether a ``{`` is closed
    depends only on the text after it, so starting late gives the same pairs for the braces it sees.
    """
    pairs: dict[int, int] = {}
    stack: list[int] = []
    for tok in _BRACE_TOKEN.finditer(text, start):
        ch = tok.group()
        if ch == "{":
            stack.append(tok.start())
        elif ch == "}" and stack:
            pairs[stack.pop()] = tok.start()
    return pairs


def _last_box(text: str) -> tuple[str, int] | None:
    """``(content, index of its closing brace)`` of the last balanced, non-empty box, or ``None``."""
    if "\\boxed" not in text and "\\fbox" not in text:
        return None
    braces = [m.end() - 1 for m in _BOX_OPEN.finditer(text)]
    if not braces:
        return None
    for pairs in (_matching_braces(text, braces[-1]), None):
        if pairs is None:
            pairs = _matching_braces(text, braces[0])
        for brace in reversed(braces):
            close = pairs.get(brace)
            if close is None:
                continue
            content = text[brace + 1 : close].strip()
            if content:
                return content, close
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last balanced, non-empty ``\\boxed{...}``/``\\fbox{...}`` in ``text``, or ``None``.

    Args:
        text: the completion.

    Returns:
        The stripped box content. An unclosed box (``\\boxed{5`` -- e.g. a generation cut at max tokens)
        is never an answer, and empty boxes (``\\boxed{}``, as in "put the answer in \\boxed{}" echoed
        inside a long CoT) are skipped. Nested boxes resolve to the innermost, last-opened one.
        Linear time: the tail after the last box is scanned first, the whole text only if needed.
    """
    box = _last_box(text)
    return None if box is None else box[0]


def _strip_math_delimiters(ans: str) -> str:
    ans = ans.strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\[", "\\]"), ("\\(", "\\)"), ("**", "**")):
        if ans.startswith(left) and ans.endswith(right) and len(ans) >= len(left) + len(right):
            ans = ans[len(left) : len(ans) - len(right)].strip()
    return ans


def _answer_after(text: str, marker: re.Match[str]) -> str | None:
    """The answer written after a final-answer ``marker`` (see :func:`final_answer_text`)."""
    rest = text[marker.end() :].lstrip(" *\n")
    span = _MATH_SPAN.match(rest)
    if span is not None:
        answer = span.group()
    else:
        answer = rest.split("\n", 1)[0]
        answer = _HOPE.sub("", answer)
        end = _SENTENCE_END.search(answer)
        answer = answer[: end.start()] if end is not None else answer
    answer = _strip_math_delimiters(_QUOTES.sub("", answer.strip())).rstrip(".").strip()
    return answer or None


def final_answer_text(text: str) -> str | None:
    """The answer after the last ``Final Answer:`` (or "final answer is") marker, or ``None``.

    Case-insensitive. If a math span (``$...$``, ``\\(...\\)``, ``\\[...\\]``) starts the text after the
    marker, its content is the answer; otherwise the first non-empty line up to its first sentence
    end. A Minerva-style wrapper ("The final answer is $X$. I hope it is correct.") is removed.
    """
    last = _last_final_marker(text)
    return None if last is None else _answer_after(text, last)


def _boxed_or_marked(text: str) -> str | None:
    """The answer that comes last in ``text``: the last box, or a final-answer marker written after it.

    A marker after the last box wins only when its answer looks mathematical (a math span, a digit or a
    LaTeX command), so prose such as "... \\boxed{5}. I checked that the final answer is right." keeps
    the box ("\\boxed{12} ... Final Answer: 34" is graded on 34).
    """
    box = _last_box(text)
    tail = text if box is None else text[box[1] + 1 :]  # only the text after the box is searched (fast)
    marker = _last_final_marker(tail)
    if marker is not None:
        answer = _answer_after(tail, marker)
        if answer is not None and (box is None or _MATHY.search(answer)):
            return answer
    return None if box is None else box[0]


def normalize_number(num: str) -> str:
    """Normalise a number token as GSM8K graders do: drop thousands commas and a trailing ``.0``/``.00``.

    ``"1,234.00"`` -> ``"1234"``; ``"-0.50"`` stays ``"-0.50"`` (only all-zero decimals are dropped).
    """
    num = num.replace(",", "")
    return _TRAILING_ZEROS.sub("", num)


def last_number(text: str) -> str | None:
    """The last number in ``text`` (GSM8K style), normalised by :func:`normalize_number`, or ``None``."""
    last = _last_match(_NUMBER, text)
    if last is None:
        return None
    token = last.group()
    if "," in token and not _THOUSANDS.match(token):
        token = token.rsplit(",", 1)[1]  # "3,5,7" is a list: its last number is 7
    return normalize_number(token)


def extract_answer(completion: str, style: str = "boxed") -> str | None:
    """Extract the final answer from a model completion.

    Args:
        completion: the model's output (short or long CoT).
        style: ``"boxed"`` -- whichever comes last in the text: the **last** balanced
            ``\\boxed{}``/``\\fbox{}``, or the answer after a ``Final Answer:`` (or "final answer is",
            see :func:`final_answer_text`) marker written after that box (when the marker's answer holds
            a digit or a LaTeX command); ``None`` if neither (an unclosed box is no answer).
            ``"last_number"`` -- GSM8K style: a boxed answer wins if present, else the last number in
            the text with thousands separators and a trailing ``.0``/``.00`` removed.

    Returns:
        The extracted answer string, or ``None`` when the completion gives no answer.

    Raises:
        TypeError: ``completion`` is not a ``str``.
        ValueError: ``style`` is not one of ``STYLES``.
    """
    if not isinstance(completion, str):
        raise TypeError(f"completion must be a str, got {type(completion).__name__}")
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    if style == "boxed":
        return _boxed_or_marked(completion)
    boxed = last_boxed(completion)
    if boxed is not None:
        return boxed
    return last_number(completion)
