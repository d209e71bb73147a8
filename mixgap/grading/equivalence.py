"""Answer equivalence: cheap fast paths first, then the symbolic worker (math-verify) under a deadline.

Order of checks for ``(pred, gold)`` after :func:`mixgap.grading.normalize.normalize`:

1. ``x =`` prefixes are dropped from a side when the other side is not an equation;
2. equal compare keys (whitespace-free strings) -> ``exact``; else a prediction longer than
   ``MAX_ANSWER_CHARS`` -> ``too_large``; brackets nested deeper than 64 or more than 16 left
   unmatched -> ``parse_error`` (:func:`bracket_trouble`);
3. numbers with a base subscript (``2516_{8}``): same digits and base -> ``exact``;
4. plain numbers (integers, decimals, ``a/b``, ``\\frac{a}{b}``, mixed numbers) and lists of them are
   decided here exactly: equal values -> ``exact``; integers and fractions never match anything but
   their exact value; a decimal matches when both agree to 6 decimal places (math-verify's
   ``float_rounding``) **and** within 1e-5 relative, so tiny values stay distinct -> ``numeric``;
   a list of solutions matches in any order; a number never matches a list, tuple, interval or set;
5. huge powers and factorials (:func:`mixgap.grading.fastnum.huge_power_bits`, sized in log space): a tower
   (``9^{9^{9^{9}}}``) or a huge power against a small number -> ``too_large`` (``mismatch`` when
   only the gold is huge);
   proven mismatches: an interval end that is open on one side and closed on the other; values that
   differ at a generic point (:mod:`mixgap.grading.fastnum`, which never declares equality); two
   different pure-word answers ("odd", "Evelyn"; compared case-insensitively in step 2);
6. everything else goes to the worker (``symbolic`` / ``mismatch`` / ``parse_error`` / ``too_large``
   / ``timeout`` / ``worker_error``). Definite worker verdicts are cached per normalised pair.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import OrderedDict
from fractions import Fraction

from mixgap.grading.fastnum import Undecided, clearly_different, evaluate, huge_power_bits, variables
from mixgap.grading.normalize import (
    assignments_as_tuples,
    compare_key,
    is_equation,
    normalize,
    plain_number,
    split_top_level,
    strip_assignment,
)
from mixgap.grading.worker import run_symbolic

MAX_ANSWER_CHARS = 4000  # a normalised prediction longer than this is not parsed (reason ``too_large``)
_CACHE_SIZE = 16384
_WORDS = re.compile(r"^[A-Za-z]{3,}(?:\s+[A-Za-z]+)*$")  # "odd", "Evelyn"; not "ab" (a product)
# a number with a base subscript, "2516_{8}" (MATH number theory); digits first, base 2..36
_BASE_NUMBER = re.compile(r"^(-?\d[0-9A-Za-z]*(?:\.[0-9A-Za-z]+)?)_\{(\d{1,2})\}$")
_BASE_DIGITS = re.compile(r"^-?\d[0-9A-Za-z]*(?:\.[0-9A-Za-z]+)?$")
_DEFINITE = {"symbolic", "mismatch", "parse_error", "too_large"}
# pathological bracket structure: no real answer nests deeper or leaves this many unmatched
MAX_BRACKET_DEPTH = 64
MAX_UNMATCHED_BRACKETS = 16
_BRACKET = re.compile(r"\\[{}]|[()\[\]]")

_cache: OrderedDict[tuple[str, str], tuple[bool, str]] = OrderedDict()
_cache_lock = threading.Lock()


def _close(a: Fraction, b: Fraction) -> bool:
    """Float rule for decimal literals: same value at 6 decimal places and within 1e-5 relative."""
    if round(a * 10**6) != round(b * 10**6):
        return False
    return abs(a - b) <= Fraction(1, 10**5) * max(abs(a), abs(b))


def _compare_numbers(pred: tuple[Fraction, bool], gold: tuple[Fraction, bool]) -> tuple[bool, str]:
    if pred[0] == gold[0]:
        return True, "exact"
    if (pred[1] or gold[1]) and _close(pred[0], gold[0]):
        return True, "numeric"
    return False, "mismatch"


def _numbers(parts: list[str]) -> list[tuple[Fraction, bool]] | None:
    values = []
    for part in parts:
        value = plain_number(part)
        if value is None:
            return None
        values.append(value)
    return values


def _base_number_verdict(pred: str, gold: str) -> tuple[bool, str] | None:
    """``2516_{8}``: same digits and same base; an answer without the subscript is read in the gold's base."""
    pred_m, gold_m = _BASE_NUMBER.match(pred), _BASE_NUMBER.match(gold)
    if gold_m is None and pred_m is None:
        return None
    if gold_m is not None and pred_m is not None:
        same = pred_m.group(1).lower() == gold_m.group(1).lower() and int(pred_m.group(2)) == int(gold_m.group(2))
    elif gold_m is not None and _BASE_DIGITS.match(pred):
        same = pred.lower() == gold_m.group(1).lower()
    elif pred_m is not None and _BASE_DIGITS.match(gold):
        same = gold.lower() == pred_m.group(1).lower()
    else:
        return None
    return (True, "exact") if same else (False, "mismatch")


def _is_collection(s: str) -> bool:
    """``(a, b)``, ``[a, b)``, ``\\{a, b\\}`` and the like: one bracketed group with two or more items."""
    if s.startswith("\\{") and s.endswith("\\}"):
        inner = s[2:-2]
    elif len(s) >= 2 and s[0] in "([" and s[-1] in ")]":
        inner = s[1:-1]
    else:
        return False
    return split_top_level(s) == [s] and len(split_top_level(inner)) >= 2


def _outer_group(s: str) -> tuple[str, str, str] | None:
    """``(open, inner, close)`` if the bracket opened at ``s[0]`` closes exactly at ``s[-1]``."""
    if len(s) < 2 or s[0] not in "([" or s[-1] not in ")]":
        return None
    depth = 0
    for i, ch in enumerate(s):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0 and i != len(s) - 1:
                return None
    return (s[0], s[1:-1], s[-1]) if depth == 0 else None


def _interval_ends_differ(pred: str, gold: str) -> bool:
    """``[2, \\infty)`` vs ``(2, \\infty)``: same shape, a different bracket at a finite end."""
    pred_g, gold_g = _outer_group(pred), _outer_group(gold)
    if pred_g is None or gold_g is None:
        return False
    pred_items, gold_items = split_top_level(pred_g[1]), split_top_level(gold_g[1])
    if len(pred_items) != 2 or len(gold_items) != 2:
        return False
    for side, index in ((0, 0), (2, 1)):
        finite = "infty" not in pred_items[index] and "infty" not in gold_items[index]
        if finite and pred_g[side] != gold_g[side]:
            return True
    return False


def _tuple_items(s: str) -> list[str] | None:
    if len(s) >= 2 and s[0] == "(" and s[-1] == ")":
        items = split_top_level(s[1:-1])
        if len(items) >= 2 and split_top_level(s) == [s]:
            return items
    return None


def _proven_different(pred: str, pred_parts: list[str], gold: str, gold_parts: list[str]) -> bool:
    """Numeric proof of a mismatch (:mod:`mixgap.grading.fastnum`): scalars, ordered tuples, lists."""
    if len(pred_parts) == 1 and len(gold_parts) == 1:
        pred_items, gold_items = _tuple_items(pred), _tuple_items(gold)
        if pred_items is None and gold_items is None:
            return clearly_different(pred, gold)
        if pred_items is not None and gold_items is not None and len(pred_items) == len(gold_items):
            return any(clearly_different(p, g) for p, g in zip(pred_items, gold_items, strict=True))
        return False
    if len(pred_parts) == len(gold_parts):  # unordered lists: some item matches nothing
        return any(all(clearly_different(p, g) for g in gold_parts) for p in pred_parts)
    return False


def bracket_trouble(s: str) -> bool:
    """True if ``s`` nests ``( [ \\{`` deeper than :data:`MAX_BRACKET_DEPTH` or leaves more than
    :data:`MAX_UNMATCHED_BRACKETS` of them unmatched (thousands of ``(``: no parser can read it, and
    latex2sympy's ANTLR parser would spend seconds failing). One linear pass; the bracket kinds are not
    paired (``[1, 2)`` is an interval)."""
    depth = peak = unmatched = 0
    for tok in _BRACKET.finditer(s):
        if tok.group() in ("(", "[", "\\{"):
            depth += 1
            peak = max(peak, depth)
        elif depth:
            depth -= 1
        else:
            unmatched += 1
    return peak > MAX_BRACKET_DEPTH or unmatched + depth > MAX_UNMATCHED_BRACKETS


def _small_number(s: str) -> bool:
    """``s`` is a variable-free expression the fast evaluator reads to a finite, not-huge value."""
    if variables(s):
        return False
    try:
        evaluate(s, {})
    except Undecided:
        return False
    return True


def _huge_verdict(pred: str, gold: str) -> tuple[bool, str] | None:
    """Powers and factorials too large to expand (``9^{9^{9^{9^{9}}}}``, ``(10^{100})!``), decided without the worker.

    A tower whose exponent is itself huge is equal only to the same string (checked before this);
    a huge power never equals a small number. Two huge powers of finite size go to the worker, which
    compares them by mpmath (``2^{10^{10}}`` = ``4^{5\\cdot 10^{9}}``).
    """
    pred_bits, gold_bits = huge_power_bits(pred), huge_power_bits(gold)
    if pred_bits is None and gold_bits is None:
        return None
    if pred_bits is not None and (math.isinf(pred_bits) or (gold_bits is None and _small_number(gold))):
        return False, "too_large"
    if gold_bits is not None and (math.isinf(gold_bits) or (pred_bits is None and _small_number(pred))):
        return False, "mismatch"
    return None


def fast_verdict(pred: str, gold: str) -> tuple[bool, str] | None:
    """Decide normalised ``pred`` vs ``gold`` without sympy, or return ``None`` if it needs the worker."""
    if compare_key(pred) == compare_key(gold):
        return True, "exact"
    if len(pred) > MAX_ANSWER_CHARS:
        return False, "too_large"
    if bracket_trouble(pred):
        return False, "parse_error"
    based = _base_number_verdict(pred, gold)
    if based is not None:
        return based
    pred_parts, gold_parts = split_top_level(pred), split_top_level(gold)
    pred_nums, gold_nums = _numbers(pred_parts), _numbers(gold_parts)
    if pred_nums is not None and gold_nums is not None:
        if len(pred_nums) != len(gold_nums):
            return False, "mismatch"
        if len(gold_nums) == 1:
            return _compare_numbers(pred_nums[0], gold_nums[0])
        remaining = sorted(gold_nums)
        reasons = set()
        for value in sorted(pred_nums):
            match = next((i for i, g in enumerate(remaining) if _compare_numbers(value, g)[0]), None)
            if match is None:
                return False, "mismatch"
            reasons.add(_compare_numbers(value, remaining.pop(match))[1])
        return True, "numeric" if "numeric" in reasons else "exact"
    if (pred_nums is not None and len(pred_nums) == 1 and len(gold_parts) > 1) or (
        gold_nums is not None and len(gold_nums) == 1 and len(pred_parts) > 1
    ):
        return False, "mismatch"  # a number never matches a list of answers, and vice versa
    if (pred_nums is not None and len(pred_nums) == 1 and _is_collection(gold)) or (
        gold_nums is not None and len(gold_nums) == 1 and _is_collection(pred)
    ):
        return False, "mismatch"  # a number never matches a tuple, interval or set
    if len(pred_parts) == 1 and len(gold_parts) == 1 and _interval_ends_differ(pred, gold):
        return False, "mismatch"  # open/closed ends matter
    huge = _huge_verdict(pred, gold)
    if huge is not None:
        return huge
    if _proven_different(pred, pred_parts, gold, gold_parts):
        return False, "mismatch"
    pred_words, gold_words = _WORDS.match(pred) is not None, _WORDS.match(gold) is not None
    if pred_words and gold_words:
        return False, "mismatch"  # keys differ (already lower-cased)
    if (pred_words and gold_nums is not None) or (gold_words and pred_nums is not None):
        return False, "mismatch"
    return None


def prepare(pred: str, gold: str) -> tuple[str, str]:
    """Normalise both sides, read assignment lists as tuples where the other side asks for them
    (:func:`mixgap.grading.normalize.assignments_as_tuples`), and drop ``x =`` prefixes from a side when
    the other is not an equation."""
    pred_n, gold_n = assignments_as_tuples(normalize(pred), normalize(gold))
    if not is_equation(gold_n) and (stripped := strip_assignment(pred_n)) != pred_n:
        pred_n = normalize(stripped)  # "x = \\text{Evelyn}" -> "Evelyn"
    if not is_equation(pred_n) and (stripped := strip_assignment(gold_n)) != gold_n:
        gold_n = normalize(stripped)
    return pred_n, gold_n


def compare(pred: str, gold: str, timeout_s: float = 5.0) -> tuple[bool, str]:
    """Full comparison of an extracted answer with the gold: ``(correct, reason)``.

    Args:
        pred: the extracted answer (not the whole completion).
        gold: the reference answer.
        timeout_s: wall-clock bound for the whole call, including any worker wait.

    Returns:
        ``(correct, reason)`` with reason one of ``exact``, ``numeric``, ``symbolic``, ``mismatch``,
        ``no_answer``, ``parse_error``, ``too_large``, ``timeout``, ``worker_error``.

    Raises:
        TypeError: ``pred`` or ``gold`` is not a ``str``.
        ValueError: ``timeout_s`` is not a positive number.
    """
    deadline = time.monotonic() + _check_timeout(timeout_s)
    if not isinstance(pred, str) or not isinstance(gold, str):
        raise TypeError("pred and gold must be str")
    pred_n, gold_n = prepare(pred, gold)
    if not pred_n:
        return False, "no_answer"
    fast = fast_verdict(pred_n, gold_n)
    if fast is not None:
        return fast
    key = (pred_n, gold_n)
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    result = run_symbolic(pred_n, gold_n, deadline)
    if result[1] in _DEFINITE:
        with _cache_lock:
            _cache[key] = result
            if len(_cache) > _CACHE_SIZE:
                _cache.popitem(last=False)
    return result


def clear_cache() -> None:
    """Forget cached worker verdicts (benchmarks use this to time cold verdicts)."""
    with _cache_lock:
        _cache.clear()


def _check_timeout(timeout_s: float) -> float:
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not timeout_s > 0:
        raise ValueError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
    return float(timeout_s)


def is_equivalent(pred: str, gold: str, *, timeout_s: float = 5.0) -> bool:
    """True if the answer ``pred`` is mathematically equivalent to ``gold`` under the grading policy.

    The policy is written in :mod:`mixgap.grading` (module docstring). ``pred`` is an answer string,
    not a completion -- use :func:`mixgap.grading.grade` for completions.

    Args:
        pred: predicted answer (LaTeX or plain text), e.g. ``"\\frac{2}{3}"`` or ``"2/3"``.
        gold: reference answer.
        timeout_s: the call never takes longer than this; a timeout counts as not equivalent.

    Returns:
        ``bool``.

    Raises:
        TypeError: ``pred`` or ``gold`` is not a ``str``.
        ValueError: ``timeout_s`` is not a positive number.
    """
    return compare(pred, gold, timeout_s)[0]
