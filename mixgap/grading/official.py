r"""The paper's own answer extraction, for ``grade(..., extract="boxed")`` -- pure string work, no sympy.

Ported from the authors' released code (Li et al. 2025, repository Small-Model-Learnability-Gap):

* MATH, MATH500, AIME, AMC, OlympiadBench -- ``lm-evaluation-harness/math_metric_llm_eval_general.py``:
  the answer is ``remove_boxed(last_boxed_only_string(resp))``; a response for which
  ``last_boxed_only_string`` is ``None`` is wrong and is never sent to the LLM judge. Ported below as
  :func:`last_boxed_only_string`, :func:`remove_boxed` and :func:`boxed_answer`, quirks kept:

  - only the last ``\boxed`` counts; ``\fbox`` is looked at only when the text has no ``\boxed`` at all;
  - the brace count starts at that ``\boxed`` and counts every ``{``/``}`` character, escaped or not;
    an unclosed box gives ``None``; an empty box ``\boxed{}`` gives ``""`` (an answer, a wrong one);
  - ``\boxed 5`` (a space, no braces): if ``"\boxed "`` occurs *anywhere* in the text it wins over any
    braced box, and the answer is everything after the last ``"\boxed "`` up to the next ``$`` (the
    rest of the text when there is none): ``$\boxed 5$`` is ``5``, ``\boxed {5}`` is ``{5}``;
  - ``remove_boxed`` asserts that a string holding ``\fbox{`` starts with it and ends with ``}``
    (``\boxed{\fbox{5}}`` fails): the original script stops with an ``AssertionError``; here that
    response has no answer (``None``).

* The paper's rule on that answer (``grade(..., extract="boxed", rule="paper")``), from the same script:
  ``is_equiv(resp_answer, answer)`` -- equal strings after ``strip_string`` -- with ``strip_string`` and its
  helpers ``fix_fracs``, ``fix_a_slash_b``, ``remove_right_units``, ``fix_sqrt`` (the MATH normalisation of
  lm-evaluation-harness's ``hendrycks_math``). Ported below as :func:`paper_is_equiv` and
  :func:`paper_strip_string`, quirks kept (``tests/unit/test_paper_rule.py`` runs their code verbatim beside it):

  - a plain string compare after normalising: ``\frac{65}{169}`` is not ``\frac{5}{13}``, ``-2,1`` is not
    ``1,-2``, ``10080`` is not ``10,\!080`` (``\!`` is dropped, the comma stays), ``E`` is not ``\text{(E)}``;
  - a left-hand side of at most 2 characters before the only ``=`` is dropped (``"k = "``): ``x = 5`` equals
    ``y = 5`` and ``5``;
  - ``\frac12`` is ``\frac{1}{2}``; ``0.5`` (the whole answer) and ``1/2`` (two integers) are ``\frac{1}{2}``;
    ``^\circ``, ``\$``, ``\%``, ``\left``/``\right``, ``\!``, spaces and newlines go; ``tfrac``/``dfrac`` are
    ``frac``; a leading ``.`` gets a ``0``; everything from the single ``"\text{ "`` (with its space) on is a unit
    and is cut;
  - when normalising either side raises, the raw strings are compared (``str1 == str2``): a ``/`` between
    non-integers (``int("x")`` raises ``ValueError``, which ``fix_a_slash_b`` does not catch), two
    ``"\text{ "`` (an ``assert``), ``\sqrt`` or ``\frac`` at the very end (an index error), and a gold that is
    not a ``str``. Their AMC23 golds are JSON floats (``27.0``, ``math_eval_data/amc23/test.jsonl``), so their
    script's rule never matches an AMC answer and sends every boxed one to the judge; here the gold is the
    kit's string (``"27"``; ``"27.0"`` from the Hub), so :func:`paper_is_equiv` with it matches ``27``.
    Their OlympiadBench gold is ``final_answer[0]`` with its ``$...$`` (266 of 675), which never matches
    either; the kit's gold has the dollars removed.

* GSM8K -- ``lm-evaluation-harness/lm_eval/tasks/gsm8k/gsm8k-cot-zeroshot.yaml``, metric
  ``exact_match,flexible-extract`` (read by ``math_metric_gsm8k.py``): the filter ``regex`` with
  ``regex_pattern: "(-?[$0-9.,]{2,})|(-?[0-9]+)"``, ``group_select: -1`` (the last match; its first
  non-empty group, stripped; no match gives the fallback ``[invalid]``), then ``take_first``; the
  metric ``exact_match`` (``lm_eval/api/metrics.py``, ``exact_match_hf_evaluate``) removes the regexes
  ``","``, ``"\$"``, ``"(?s).*#### "``, ``"\.$"`` (in that order) from prediction and reference, lower-cases
  both (``ignore_case: true``) and compares the strings. Ported as :func:`gsm8k_flexible_extract` and
  :func:`gsm8k_exact_match`.
"""

from __future__ import annotations

import re

GSM8K_FLEXIBLE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
GSM8K_FALLBACK = "[invalid]"
GSM8K_IGNORE = (",", "\\$", "(?s).*#### ", "\\.$")


def last_boxed_only_string(string: str) -> str | None:
    r"""The last ``\boxed{...}`` (or ``\fbox{...}``, or ``\boxed ...``) of ``string``, box command included.

    A line-by-line port of ``last_boxed_only_string`` in ``math_metric_llm_eval_general.py`` (see the
    module docstring for its quirks). ``None`` when there is no box or the last one is never closed.
    """
    idx = string.rfind("\\boxed")
    if "\\boxed " in string:
        return "\\boxed " + string.split("\\boxed ")[-1].split("$")[0]
    if idx < 0:
        idx = string.rfind("\\fbox")
        if idx < 0:
            return None
    depth = 0
    for i in range(idx, len(string)):
        if string[i] == "{":
            depth += 1
        elif string[i] == "}":
            depth -= 1
            if depth == 0:
                return string[idx : i + 1]
    return None


def remove_boxed(s: str) -> str | None:
    r"""The content of a box string from :func:`last_boxed_only_string` (port of ``remove_boxed``).

    Where the original's ``assert`` fails (a ``\fbox{`` that is not the whole string) this returns
    ``None``. Otherwise ``\fbox{X}`` gives ``X``, ``\boxed X`` gives ``X``, and anything else loses
    its first 7 characters (``\boxed{``) and its last one, as in the original.
    """
    if "\\fbox{" in s:
        left = "\\fbox{"
        if not (s.startswith(left) and s.endswith("}")):
            return None
        return s[len(left) : -1]
    if "\\boxed " in s:
        left = "\\boxed "
        if not s.startswith(left):
            return None
        return s[len(left) :]
    return s[len("\\boxed{") : -1]


def boxed_answer(completion: str) -> str | None:
    """The paper's answer for a MATH-style completion: ``remove_boxed(last_boxed_only_string(completion))``.

    Returns:
        The box content, not stripped or normalised (``""`` for an empty box), or ``None`` when the
        completion has no closed box (wrong, and never sent to the judge).

    Raises:
        TypeError: ``completion`` is not a ``str``.
    """
    if not isinstance(completion, str):
        raise TypeError(f"completion must be a str, got {type(completion).__name__}")
    box = last_boxed_only_string(completion)
    return None if box is None else remove_boxed(box)


def gsm8k_flexible_extract(completion: str) -> str | None:
    """The GSM8K ``flexible-extract`` answer: the last match of :data:`GSM8K_FLEXIBLE`, or ``None``.

    ``None`` stands for the harness's fallback ``[invalid]`` (no number in the completion).

    Raises:
        TypeError: ``completion`` is not a ``str``.
    """
    if not isinstance(completion, str):
        raise TypeError(f"completion must be a str, got {type(completion).__name__}")
    matches = GSM8K_FLEXIBLE.findall(completion)
    if not matches:
        return None
    groups = [g for g in matches[-1] if g]
    return groups[0].strip() if groups else None


def _gsm8k_clean(text: str) -> str:
    for pattern in GSM8K_IGNORE:
        text = re.sub(pattern, "", text)
    return text.lower()


def gsm8k_exact_match(prediction: str, reference: str) -> bool:
    """``exact_match`` of the GSM8K task: equal after removing :data:`GSM8K_IGNORE` and lower-casing.

    ``reference`` may be the bare answer (``"72"``) or the full GSM8K solution (``"... #### 72"``):
    ``"(?s).*#### "`` removes the reasoning. ``"1,200"`` matches ``"1200"`` and ``"$18."`` matches
    ``"18"``, but ``"72.00"`` does not match ``"72"`` (strings, not values).
    """
    return _gsm8k_clean(prediction) == _gsm8k_clean(reference)


def paper_is_equiv(str1: object, str2: object) -> bool:
    """The paper's rule: ``is_equiv`` of ``math_metric_llm_eval_general.py`` (line-by-line port, module docstring).

    Both ``None``: True (their script prints a warning); one ``None``: False. Else
    ``paper_strip_string(str1) == paper_strip_string(str2)``, and when either raises (any exception: a
    non-``str`` such as their AMC float gold, ``fix_a_slash_b``'s ``int()``, ``remove_right_units``'s
    ``assert``, an index past the end), the raw ``str1 == str2``.
    """
    if str1 is None and str2 is None:
        return True
    if str1 is None or str2 is None:
        return False
    try:
        return paper_strip_string(str1) == paper_strip_string(str2)  # type: ignore[arg-type]
    except Exception:  # their fallback, for every exception
        return str1 == str2


def _fix_fracs(string: str) -> str:
    r"""``fix_fracs``: ``\frac12`` -> ``\frac{1}{2}``, ``\frac1{72}`` -> ``\frac{1}{72}``; a ``\frac`` followed
    by one character returns the input unchanged; ``\frac`` at the very end raises ``IndexError``."""
    substrs = string.split("\\frac")
    new_str = substrs[0]
    for substr in substrs[1:]:
        new_str += "\\frac"
        if substr[0] == "{":
            new_str += substr
            continue
        if len(substr) < 2:
            return string
        a, b = substr[0], substr[1]
        if b != "{":
            new_str += "{" + a + "}{" + b + "}" + substr[2:]
        else:
            new_str += "{" + a + "}" + b + substr[2:]
    return new_str


def _fix_a_slash_b(string: str) -> str:
    r"""``fix_a_slash_b``: ``"3/4"`` -> ``\frac{3}{4}`` when both sides are integers written plainly;
    raises ``ValueError`` (their ``except AssertionError`` does not catch it) when a side is not an integer."""
    if len(string.split("/")) != 2:
        return string
    a, b = string.split("/")
    a_int, b_int = int(a), int(b)
    if string != f"{a_int}/{b_int}":
        return string
    return "\\frac{" + str(a_int) + "}{" + str(b_int) + "}"


def _remove_right_units(string: str) -> str:
    r"""``remove_right_units``: everything before ``"\text{ "`` (with its space); ``AssertionError`` when it
    occurs more than once."""
    if "\\text{ " in string:
        splits = string.split("\\text{ ")
        if len(splits) != 2:
            raise AssertionError("more than one \\text{ ")
        return splits[0]
    return string


def _fix_sqrt(string: str) -> str:
    r"""``fix_sqrt``: ``\sqrt3`` -> ``\sqrt{3}`` (one character); ``\sqrt`` at the very end raises ``IndexError``."""
    if "\\sqrt" not in string:
        return string
    splits = string.split("\\sqrt")
    new_string = splits[0]
    for split in splits[1:]:
        new_string += "\\sqrt{" + split[0] + "}" + split[1:] if split[0] != "{" else "\\sqrt" + split
    return new_string


def paper_strip_string(string: str) -> str:
    r"""``strip_string`` of ``math_metric_llm_eval_general.py``, step by step in their order (module docstring).

    Raises:
        AttributeError: ``string`` is not a ``str``. ValueError, AssertionError, IndexError: as their helpers
        do (see :func:`paper_is_equiv`, which falls back to the raw strings).
    """
    for old, new in (("\n", ""), ("\\!", ""), ("\\\\", "\\"), ("tfrac", "frac"), ("dfrac", "frac"),
                     ("\\left", ""), ("\\right", ""), ("^{\\circ}", ""), ("^\\circ", ""), ("\\$", "")):
        string = string.replace(old, new)
    string = _remove_right_units(string)
    string = string.replace("\\%", "")  # their next line, replace("\%", ""), is the same two characters
    string = string.replace(" .", " 0.").replace("{.", "{0.")
    if len(string) == 0:
        return string
    if string[0] == ".":
        string = "0" + string
    if len(string.split("=")) == 2 and len(string.split("=")[0]) <= 2:  # "k = " or "q = " at the start
        string = string.split("=")[1]
    string = _fix_sqrt(string)
    string = string.replace(" ", "")
    string = _fix_fracs(string)
    if string == "0.5":
        string = "\\frac{1}{2}"
    return _fix_a_slash_b(string)
