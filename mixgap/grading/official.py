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
