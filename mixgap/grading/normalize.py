"""Cheap string normalisation of extracted answers and golds (no sympy; runs in the calling process).

Everything here is a rewrite that keeps the mathematical value: presentation (``\\left``, ``\\dfrac``,
spacing), wrappers (``\\text{}``, ``$``), units, degrees and percent signs, and ``x =`` prefixes. The
result feeds the fast paths of :mod:`mixgap.grading.equivalence` (string and exact-number compare) and,
when those cannot decide, the symbolic worker. Whitespace is collapsed first and every regex is written
so that matching stays linear in the answer length (no ambiguous adjacent quantifiers); loops that strip
suffixes run a bounded number of times.
"""

from __future__ import annotations

import re
from fractions import Fraction

# Thousands separators only in this shape: "115,000" is 115000, "0,1" is the pair (0, 1).
# A leading "0," group is never a grouped number, so "0,111" is a pair too (latex2sympy reads it as 0.111).
# Decimals may follow the last group: "1,000.99" is 1000.99, "98,765.4" is 98765.4.
THOUSANDS = re.compile(r"^-?(?!0,)\d{1,3}(?:,\d{3})+(?:\.\d+)?$")

_UNICODE = {"\u2212": "-", "\u2013": "-", "\u00d7": "\\times ", "\u00b7": "\\cdot ", "\u00b0": "^\\circ",
            "\u221a": "\\sqrt", "\u03c0": "\\pi ", "\u221e": "\\infty ", "\u2264": "\\le ", "\u2265": "\\ge ",
            "\u2260": "\\ne ", "\u2009": " ", "\u00a0": " "}
_THIN_COMMA = re.compile(r",\s*\\!\s*")  # in "10,\!080" the negative space glues a thousands group
_WRAP = re.compile(r"^\\(?:boxed|fbox)\s*\{")
_SIZING = re.compile(r"\\(?:right\.|left\.|(?:left|right|bigl|bigr|Bigl|Bigr|biggl|biggr|big|Big|bigg|Bigg)(?![a-zA-Z]))")
_FRAC_CMD = re.compile(r"\\[dtc]frac(?![a-zA-Z])")
_BINOM_CMD = re.compile(r"\\[dt]binom(?![a-zA-Z])")
# "\\\\" (a row break) is matched first and kept, so "\\\\ " is not read as "\\" + "\\ "
_SPACES = re.compile(r"\\\\|\\(?:quad|qquad|displaystyle|textstyle)(?![a-zA-Z])|\\[,;: ]|~")
_RELATIONS = ((re.compile(r"\\(?:leq|leqslant)(?![a-zA-Z])"), "\\le"),
              (re.compile(r"\\(?:geq|geqslant)(?![a-zA-Z])"), "\\ge"),
              (re.compile(r"\\neq(?![a-zA-Z])"), "\\ne"))
_DEGREES = re.compile(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ|\\degrees?(?![a-zA-Z])")
_PERCENT = re.compile(r"\\?%")
# written for single spaces (normalize collapses whitespace first): no two adjacent open-ended \s quantifiers
_AND_OR = re.compile(r"(?: ?,)? ?\\(?:text|textnormal|mbox|mathrm) ?\{ ?(?:and|or) ?\} ?|(?: ?,)? (?:and|or) ")
_ORDINAL_TEXT = re.compile(r"\^\s*\{?\s*\\(?:text|textnormal|mathrm|textrm)\s*\{\s*(?:st|nd|rd|th)?\s*\}\s*\}?")
_ORDINAL = re.compile(r"(\d)\s*(?:st|nd|rd|th)\b")
_TEXT_CMD = r"\\(?:text|textnormal|mbox|mathrm|textrm|textbf|textit|mathbf|operatorname)\s*"
_WHOLE_TEXT = re.compile(r"^" + _TEXT_CMD + r"\{([^{}]*)\}$")
_TRAILING_TEXT = re.compile(r"\s*" + _TEXT_CMD + r"\{[^{}]*\}\s*(?:\^\s*\{?\s*[23]\s*\}?)?\s*$")
_UNIT_WORDS = (
    "square units|sq units|units?|centimeters?|cm|meters?|metres?|km|mm|inches|inch|feet|foot|ft|yards?|"
    "miles?|mph|degrees?|dollars?|cents?|hours?|hrs?|minutes?|mins?|seconds?|secs?|days?|weeks?|months?|"
    "years?|percent|pounds?|lbs?|ounces?|oz|kg|grams?|liters?|litres?|gallons?|people|students?|ways"
)
_TRAILING_UNIT = re.compile(r"(?<=[\d}\s.])\s*(?:" + _UNIT_WORDS + r")(?:\s*\^\s*\{?[23]\}?)?"
                            r"(?:\s*(?:per|/)\s*(?:" + _UNIT_WORDS + r"))?\s*$")
_BASE_PAREN = re.compile(r"^\((\w+)\)_")  # (2516)_8 -> 2516_8
# "28 different pizzas", "9 boys": a number followed only by words (prose answers); math words excluded
_NUMBER_WORDS = re.compile(r"^(-?\d[\d,]*(?:\.\d+)?)\s+(?!(?:pi|sqrt|i|e)\b)[A-Za-z]{2,}(?:[\s\-][A-Za-z]+)*$")
_CHOICE = re.compile(r"^\(\s*([A-Ea-e])\s*\)$|^([A-E])$")
_FRAC_DIGITS = re.compile(r"\\frac\s*(\d)\s*(\d)")
_FRAC_DIGIT_BRACE = re.compile(r"\\frac\s*(\d)\s*\{")
_FRAC_BRACE_DIGIT = re.compile(r"\\frac\s*(\{[^{}]*\})\s*(\d)")
_SQRT_DIGIT = re.compile(r"\\sqrt\s*(\d)")
_SCRIPT_CHAR = re.compile(r"([_^])\s*([0-9A-Za-z])(?![0-9A-Za-z])")  # x^2 -> x^{2}; 2^10 is left alone
_CONTAINS = re.compile(r"^[A-Za-z]\s*\\in\s*")
_ASSIGN = re.compile(
    r"^\s*(?:[A-Za-z]|\\[A-Za-z]+)(?:_\{?\w+\}?)?(?:\([A-Za-z]\))?\s*=\s*(?![=<>])")
# one "p = 5" item of an assignment list: a variable (as in _ASSIGN) and its value
_ASSIGN_ITEM = re.compile(r"^((?:[A-Za-z]|\\[A-Za-z]+)(?:_\{?\w+\}?)?)\s*=\s*(?![=<>])([^=<>]+)$")
_EQUATION = re.compile(r"(?<![<>!\\])=")
_WS = re.compile(r"\s+")
_MARK_COMMA = re.compile(r"(\\circ\s*\}?|%|\})\s*,\s*")
_UNIT_HOST = re.compile(r"[\w}\)\]|.]\s*$")  # a unit follows a number or expression, not "x ="
_UNIT_PASSES = 3  # units/text suffixes stripped per answer ("5 \\text{cm}^2" needs 1; caps the work)
_WORDS_ONLY = re.compile(r"^[A-Za-z][A-Za-z \-']*$")

_INT = r"[+-]?\d+"
_NUM_INT = re.compile(r"^[+-]?\d+$")
_NUM_DEC = re.compile(r"^[+-]?(?:\d+\.\d*|\.\d+)$")
_NUM_SLASH = re.compile(r"^([+-]?)\(?(" + _INT + r")\)?/\(?(" + _INT + r")\)?$")
_NUM_FRAC = re.compile(r"^([+-]?)\\frac\{(" + _INT + r")\}\{(" + _INT + r")\}$")
_NUM_MIXED = re.compile(r"^([+-]?)(\d+)\s*\\frac\{(\d+)\}\{(\d+)\}$")
_DIGIT_GAP = re.compile(r"\d\s+\d")
_MAX_DIGITS = 4000  # below CPython's int-from-str limit (4300 digits)


def _strip_trailing(s: str) -> str:
    """Drop trailing whitespace, periods, semicolons and ``\\\\`` row breaks (linear, no regex)."""
    end = len(s)
    while end:
        if s[end - 1] in " \t\n.;":
            end -= 1
        elif s.endswith("\\\\", 0, end):
            end -= 2
        else:
            break
    return s[:end]


def _unwrap_box(s: str) -> str | None:
    """The content of ``\\boxed{...}`` if that box spans all of ``s`` (not ``\\boxed{1} + \\boxed{2}``)."""
    m = _WRAP.match(s)
    if m is None or not s.endswith("}"):
        return None
    depth = 0
    for i in range(m.end() - 1, len(s)):
        if s[i] == "{" and s[i - 1] != "\\":
            depth += 1
        elif s[i] == "}" and s[i - 1] != "\\":
            depth -= 1
            if depth == 0:
                return s[m.end() : i].strip() if i == len(s) - 1 else None
    return None


def normalize(ans: str) -> str:
    """Normalise one answer string (prediction or gold) without changing its mathematical value.

    Removes ``$``/``\\$`` and math delimiters, an enclosing ``\\boxed{}``, ``\\left``/``\\right``, spacing
    commands, ``\\text{}`` wrappers of a whole-text answer, trailing ``\\text{...}``/``\\mbox{...}`` units
    and plain unit words after a number (any words after a bare number: "28 different pizzas"),
    degree marks, percent signs, ordinal suffixes ("12th"), ``x \\in``
    prefixes; maps ``\\dfrac``->``\\frac``, ``\\leq``->``\\le``, "a and b"->"a, b", ``(C)``->``C``; braces
    single-character scripts and ``\\frac12``; removes thousands commas in the shape :data:`THOUSANDS`
    (decimals allowed after the last group: ``1,000.99``) and
    puts a space after every other comma so no later parser reads "0,1" as a number.

    Args:
        ans: the answer string.

    Returns:
        The normalised string (whitespace collapsed to single spaces).
    """
    s = _WS.sub(" ", ans).strip()  # every regex below may assume single spaces
    for char, repl in _UNICODE.items():
        if char in s:
            s = s.replace(char, repl)
    s = s.replace("\\$", "").replace("$", "").replace("\\(", "").replace("\\)", "")
    s = s.replace("\\[", "").replace("\\]", "").strip()
    for _ in range(_UNIT_PASSES):  # \boxed{\boxed{5}}; bounded so deep nesting stays linear
        if (inner := _unwrap_box(s)) is None:
            break
        s = inner
    s = _SIZING.sub("", s)
    s = _FRAC_CMD.sub(r"\\frac", s)
    s = _BINOM_CMD.sub(r"\\binom", s)
    s = _THIN_COMMA.sub(",", s).replace("{,}", ",").replace("\\!", "")
    s = _SPACES.sub(lambda m: m.group() if m.group() == "\\\\" else " ", s).strip()
    for pattern, repl in _RELATIONS:
        s = pattern.sub(lambda _m, r=repl: r, s)
    s = _MARK_COMMA.sub(r"\1, ", s)  # "45^\circ,135^\circ" is a list, not 45135 once the marks go
    s = _DEGREES.sub("", s)
    s = _PERCENT.sub("", s)
    s = _AND_OR.sub(", ", s)
    s = _ORDINAL_TEXT.sub("", s)
    s = _strip_trailing(s)
    whole = _WHOLE_TEXT.match(s)
    if whole is not None:
        s = whole.group(1).strip()
    else:
        for _ in range(_UNIT_PASSES):
            stripped = _TRAILING_TEXT.sub("", s)
            if stripped == s or not _UNIT_HOST.search(stripped):
                break
            s = _strip_trailing(stripped)
    if (words := _NUMBER_WORDS.match(s)) is not None:
        s = words.group(1)
    if not _WORDS_ONLY.match(s):
        for _ in range(_UNIT_PASSES):
            stripped = _TRAILING_UNIT.sub("", s)
            if stripped == s or not stripped.strip():
                break
            s = _strip_trailing(stripped)
        s = _ORDINAL.sub(r"\1", s)
    choice = _CHOICE.match(s)
    if choice is not None:
        s = (choice.group(1) or choice.group(2)).upper()
    s = _CONTAINS.sub("", s)
    s = _BASE_PAREN.sub(r"\1_", s)
    s = _FRAC_DIGITS.sub(r"\\frac{\1}{\2}", s)
    s = _FRAC_DIGIT_BRACE.sub(r"\\frac{\1}{", s)
    s = _FRAC_BRACE_DIGIT.sub(r"\\frac\1{\2}", s)
    s = _SQRT_DIGIT.sub(r"\\sqrt{\1}", s)
    s = _SCRIPT_CHAR.sub(r"\1{\2}", s)
    s = _WS.sub(" ", _strip_trailing(s)).strip()
    if s.startswith("+") and (_NUM_INT.match(s) or _NUM_DEC.match(s)):
        s = s[1:]
    if THOUSANDS.match(s):
        return s.replace(",", "")
    return re.sub(r",\s*", ", ", s)


def compare_key(s: str) -> str:
    """Key for the exact-string fast path: whitespace removed; pure-word answers lower-cased."""
    key = _WS.sub("", s)
    return key.lower() if _WORDS_ONLY.match(s) else key


def is_equation(s: str) -> bool:
    """True if ``s`` contains a top-level ``=`` (not part of ``<=``, ``>=``, ``!=``)."""
    return _EQUATION.search(s) is not None


def strip_assignment(s: str) -> str:
    """Drop ``x =``-style prefixes (one variable, optionally subscripted or ``f(x)``) from each list item.

    ``"x = 3"`` -> ``"3"``; ``"x = 1, x = 2"`` -> ``"1, 2"``; ``"2x + 1 = 7"`` is left alone.
    """
    parts = split_top_level(s)
    return ", ".join(_ASSIGN.sub("", p, count=1).strip() for p in parts)


def _assignment_groups(s: str) -> tuple[list[str], list[list[str]]] | None:
    """``p=5, q=2; p=7, q=2`` -> ``(["p", "q"], [["5", "2"], ["7", "2"]])``, else ``None``.

    Every top-level item must be ``variable = value``, with two or more distinct variables repeated in the
    same order (``p, q, p, q``); groups may be separated by ``;``, ``,`` or "and" (normalised to ``,``).
    """
    items = [_ASSIGN_ITEM.match(part) for part in split_top_level(s)]
    if not items or any(m is None for m in items):
        return None
    names = [m.group(1) for m in items]
    width = len(dict.fromkeys(names))
    if width < 2 or len(names) % width or names != names[:width] * (len(names) // width):
        return None
    values = [m.group(2).strip() for m in items]
    return names[:width], [values[i : i + width] for i in range(0, len(values), width)]


def _tuple_arity(s: str) -> int | None:
    """The common length of the top-level tuples ``s`` lists (``(5, 2), (7, 2)``: 2), else ``None``."""
    sizes = set()
    for part in split_top_level(s):
        if len(part) < 2 or part[0] != "(" or part[-1] != ")" or split_top_level(part) != [part]:
            return None
        sizes.add(len(split_top_level(part[1:-1])))
    return sizes.pop() if len(sizes) == 1 else None


def _as_tuples(groups: list[list[str]]) -> str:
    return ", ".join("(" + ", ".join(values) + ")" for values in groups)


def assignments_as_tuples(pred: str, gold: str) -> tuple[str, str]:
    """Read lists of assignments as tuples, so ``p=5,q=2;p=7,q=2`` can match ``(5,2),(7,2)`` (Math-Verify does).

    * one side assigns k >= 2 variables per group and the other side lists k-tuples: that side becomes
      the tuples in its written variable order (``(p, q)``);
    * both sides assign the same variables: both become tuples in the gold's variable order, so
      ``q=2, p=5`` matches ``p=5, q=2``;
    * anything else is returned unchanged: a single variable (``x = 1, x = 2`` is a list of solutions)
      or different variables (``x = 5`` is not ``y = 5``) stay equations.
    """
    pred_groups, gold_groups = _assignment_groups(pred), _assignment_groups(gold)
    if pred_groups is not None and gold_groups is not None:
        if set(pred_groups[0]) != set(gold_groups[0]):
            return pred, gold
        order = [pred_groups[0].index(name) for name in gold_groups[0]]
        reordered = [[values[i] for i in order] for values in pred_groups[1]]
        return _as_tuples(reordered), _as_tuples(gold_groups[1])
    if pred_groups is not None and _tuple_arity(gold) == len(pred_groups[0]):
        return _as_tuples(pred_groups[1]), gold
    if gold_groups is not None and _tuple_arity(pred) == len(gold_groups[0]):
        return pred, _as_tuples(gold_groups[1])
    return pred, gold


def split_top_level(s: str) -> list[str]:
    """Split ``s`` on commas (and semicolons) that are not inside ``{}``, ``()`` or ``[]``."""
    parts: list[str] = []
    depth = 0
    start = 0
    for i, ch in enumerate(s):
        if ch in "{([":
            depth += 1
        elif ch in "})]":
            depth = max(0, depth - 1)
        elif ch in ",;" and depth == 0:
            parts.append(s[start:i].strip())
            start = i + 1
    parts.append(s[start:].strip())
    return parts


def _int(text: str) -> int | None:
    digits = text.lstrip("+-")
    if len(digits) > _MAX_DIGITS:
        return None
    return int(text)


def plain_number(s: str) -> tuple[Fraction, bool] | None:
    """Read ``s`` as a plain number, exactly.

    Accepts integers, decimals (``.5``, ``27.0``), ``a/b``, ``\\frac{a}{b}`` and mixed numbers
    (``1\\frac{4}{5}`` = 9/5, as in MATH golds) with integer parts. No evaluation of anything else.

    Returns:
        ``(value, is_decimal)`` -- ``is_decimal`` is True when the literal has a decimal point (an
        approximation, compared with the float rule); ``None`` if ``s`` is not a plain number or has
        more than 4000 digits.
    """
    if _DIGIT_GAP.search(s):
        return None  # "1 2" is not 12
    s = s.replace(" ", "")
    if not s or len(s) > _MAX_DIGITS:
        return None
    if _NUM_INT.match(s):
        value = _int(s)
        return None if value is None else (Fraction(value), False)
    if _NUM_DEC.match(s):
        return Fraction(s), True
    m = _NUM_SLASH.match(s) or _NUM_FRAC.match(s)
    if m is not None:
        num, den = _int(m.group(2)), _int(m.group(3))
        if num is None or not den:
            return None
        value = Fraction(num, den)
        return (-value if m.group(1) == "-" else value), False
    m = _NUM_MIXED.match(s)
    if m is not None:
        whole, num, den = int(m.group(2)), int(m.group(3)), int(m.group(4))
        if not den:
            return None
        value = whole + Fraction(num, den)
        return (-value if m.group(1) == "-" else value), False
    return None
