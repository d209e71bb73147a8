r"""Answer grading: every accuracy (pass@1) mixgap reports is a verdict of :func:`grade`.

Grading policy
==============

math-verify (``latex2sympy2_extended`` parsing + ``math_verify.verify``) is the core; these rules wrap
it. Each rule has cases in ``tests/unit/test_grading.py``; disagreements with plain math-verify and
with the source harness on real traces are listed in ``benchmarks/grading_disagreements.md``.

1. **Extraction, the last answer wins** (``extract="policy"``, the default). Styles: ``boxed`` (MATH,
   MATH500, AIME24, AMC23, OlympiadBench) and ``last_number`` (GSM8K), chosen by the benchmark's name
   (:data:`EXTRACTION_STYLE`) or given as ``style=`` (a benchmark YAML's ``extraction``; then any name
   is accepted). ``boxed``: the content of the *last* balanced, non-empty ``\boxed{}``/``\fbox{}``, or
   the text after a ``Final Answer:`` (or "final answer is": its math span, else its sentence) written
   *after* that box -- whichever comes last (``\boxed{12} ... Final Answer: 34`` is 34; a marker after
   the box wins only when its answer holds a digit or a LaTeX command, so "the final answer is right"
   keeps the box); else no answer (``no_answer``) -- an answer stated only in prose is not read. An
   unclosed box is no answer. Long-CoT students box several candidates while self-correcting;
   math-verify alone turns ``\boxed{5} ... \boxed{7}`` into the set {5, 7} and says wrong.
   ``last_number``: a box wins, else the last number in the text (thousands separators and a trailing
   ``.0``/``.00`` removed).
1b. **The paper's extraction** (``extract="boxed"``, :mod:`mixgap.grading.official`, ported from the
   authors' ``math_metric_llm_eval_general.py`` and their ``gsm8k-cot-zeroshot.yaml``). ``boxed`` style:
   only the last ``\boxed``/``\fbox`` as their ``last_boxed_only_string``/``remove_boxed`` read it
   (``Final Answer: 5`` without a box is ``no_answer``; an empty box is an answer, wrong; ``\boxed 5``
   without braces runs to the next ``$``), then rules 2-10 decide; misses with an answer are what the
   paper's LLM judge re-checks. ``last_number`` style: GSM8K's ``exact_match,flexible-extract`` --
   the last match of ``(-?[$0-9.,]{2,})|(-?[0-9]+)``, equal to the gold as a string once ``,``, ``$``,
   everything up to ``#### `` and one trailing ``.`` are removed and both are lower-cased
   (``$1,200.`` = ``1200``; ``72.00`` is not ``72``); rules 2-10 do not apply.
1c. **The paper's rule** (``rule="paper"``, with ``extract="boxed"`` only; :func:`mixgap.grading.official.paper_is_equiv`,
   ported from the same script's ``is_equiv``/``strip_string``): instead of rules 2-10, the boxed answer and the
   gold are equal strings after the MATH harness's normalisation -- quirks kept: ``\frac{65}{169}`` is not
   ``\frac{5}{13}``, ``-2,1`` is not ``1,-2``, ``10,\!080`` is not ``10080``, ``E`` is not ``\text{(E)}``, and a
   left-hand side of <= 2 characters is dropped (``x = 5`` matches ``y = 5``). Reasons: ``exact`` (correct),
   ``mismatch``, ``no_answer``; no sympy, no worker. GSM8K (``last_number``) is scored as under 1b.
2. **Integers exactly.** No relative tolerance: ``123450`` is not ``123456``, ``10001`` is not
   ``10000``. Exact values (fractions, radicals, ...) must be equal; distinct tiny values stay
   distinct (``\frac{1}{2^{98}}`` is not ``\frac{1}{2^{99}}``; math-verify's chopped numeric test says
   equal, so every numeric "equal" it returns is re-checked to 1e-25 relative).
3. **Decimals.** A value written with a decimal point matches when it agrees to 6 decimal places
   (math-verify's ``float_rounding``) *and* within 1e-5 relative (``0.333333`` = ``\frac13``;
   ``1.5\times10^{-8}`` is not ``2\times10^{-8}``).
4. **AMC float golds.** ``27.0`` matches ``27`` (value equality).
5. **No percent rescue.** Nothing is multiplied or divided by 100: ``0.5`` is not ``50`` and
   ``50\%`` is not ``0.5``. The percent sign is a unit and is dropped: gold ``50\%`` matches ``50``
   and ``50\%``; gold ``10`` matches ``10\%`` (MATH500 ``test/prealgebra/1233`` asks "by what percent",
   gold ``10``).
6. **Commas** are thousands separators only in the shape ``^-?\d{1,3}(,\d{3})+(\.\d+)?$`` (not with a
   leading ``0,`` group; ``,\!`` and ``{,}`` are commas): ``115,000`` is 115000, ``1,000.99`` and
   ``\$16,\!386.20`` are one number each, gold ``0,1`` is the pair (0, 1), and ``\boxed{1}`` does
   not match gold ``0,1``.
7. **Stripped**: ``\text{}``/``\textnormal{}``/``\mbox{}`` wrappers and trailing text units, unit words after a number
   (``cm``, ``dollars``, ``degrees``...) and any words after a bare number ("28 different pizzas"),
   degree marks (``^\circ``), dollar signs, ordinal suffixes (``12^{\text{th}}``), ``x =``/``f(x) =``/
   ``x \in`` prefixes (only when the other side is not an equation), ``\left``/``\right``,
   ``\dfrac``, spacing. ``\text{(C)}`` is ``C``; word answers ("odd", "Evelyn") compare
   case-insensitively; a base subscript must match (``2516_8``; a bare ``2516`` is read in the gold's
   base, ``4343_7`` is not ``4343_6``).
8. **Structure.** Ordered tuples stay ordered (``(1,2)`` is not ``(2,1)``); a list of solutions
   matches in any order (``1, 2`` = ``2, 1``; ``3 \pm 2\sqrt2`` = ``3+2\sqrt2, 3-2\sqrt2``); a number
   never matches a list, tuple, interval or set; open/closed interval ends matter (``[1,2)`` is not
   ``[1,2]``; an infinite end is always open); an interval written as inequalities matches the
   interval (``1 < x \le 2`` = ``(1,2]``, ``x<2 \text{ or } x>3`` = ``(-\infty,2)\cup(3,\infty)``);
   equations compare as equations (``y = 2x+1`` = ``2x+1 = y``; ``x = 5`` is not ``y = 5``). A list
   of assignments to k >= 2 variables is read as k-tuples in its written order when the other side lists
   k-tuples (``p=5,q=2;p=7,q=2`` = ``(5,2),(7,2)``, as Math-Verify does), or in the gold's variable order
   when both sides assign the same variables (``q=2, p=5`` = ``p=5, q=2``); one variable
   (``x = 1, x = 2``) stays a list of solutions.
9. **Bounded.** A verdict never takes longer than its timeout (``timeout_s``, default 5 s). The
   symbolic check runs in a worker process, killed and restarted on timeout; a timeout counts as
   wrong with reason ``timeout``. Powers/factorials above ~100k bits (``2^{10^{10}}``, ``(10^{100})!``)
   are never expanded; a normalised prediction over 4000 characters is ``too_large`` (wrong) unless it equals
   the gold as a string; worker memory is capped (``RLIMIT_AS``, 4 GiB). Pathological predictions
   are decided without the worker: a power tower (``9^{9^{9^{9^{9}}}}``, sized in log space) or a
   huge power or factorial (sized by ``lgamma``) against a small value is ``too_large``; brackets
   nested deeper than 64 or more than 16 left unmatched are ``parse_error``.
10. **No evaluation of model text.** No ``eval``/``exec``/``sympify``/``parse_expr`` on anything from a
    completion; parsing is latex2sympy's ANTLR grammar only.

Verdict reasons: ``exact`` (same normalised string or same exact value), ``numeric`` (decimal rule),
``symbolic`` (math-verify), ``mismatch``, ``no_answer``, ``parse_error``, ``too_large``, ``timeout``,
``worker_error``. Only the first three are correct.

Importing this package is cheap (no sympy); the worker starts on the first symbolic check.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from mixgap.core.fields import choices_of
from mixgap.core.schema import EvalConfig
from mixgap.grading.equivalence import compare
from mixgap.grading.extract import STYLES, extract_answer
from mixgap.grading.official import boxed_answer, gsm8k_exact_match, gsm8k_flexible_extract, paper_is_equiv

#: Bumped whenever a rule above changes a verdict: pools and evaluations are keyed by it, so they are rebuilt.
POLICY_VERSION = "2026.12.2"
BENCHMARKS = ("math", "math500", "gsm8k", "aime24", "amc23", "olympiadbench")
EXTRACTION_STYLE = {name: ("last_number" if name == "gsm8k" else "boxed") for name in BENCHMARKS}
EXTRACT_MODES = choices_of(EvalConfig, "extract")  # eval.extract: ours (rule 1) | the paper's (mixgap.grading.official)
RULES = choices_of(EvalConfig, "rule")  # eval.rule, after extraction: ours (rules 2-10) | the paper's (rule 1c)
#: The scorings every evaluation records side by side: name -> (extract, rule).
SCORINGS = {"policy": ("policy", "policy"), "boxed": ("boxed", "policy"), "paper": ("boxed", "paper")}



@dataclass(frozen=True)
class Verdict:
    """One grading decision.

    Attributes:
        correct: the completion's answer is equivalent to the gold.
        extracted: the answer taken from the completion (``None`` when it gave none).
        reason: ``exact``, ``numeric``, ``symbolic``, ``mismatch``, ``no_answer``, ``parse_error``,
            ``too_large``, ``timeout`` or ``worker_error`` (see the policy above).
    """

    correct: bool
    extracted: str | None
    reason: str


def scoring_name(extract: str, rule: str) -> str:
    """The :data:`SCORINGS` name of an (``extract``, ``rule``) pair: ``paper`` for the paper's rule, else the
    extraction mode (``policy`` or ``boxed``, both under our rule). Raises ValueError for a pair not in it."""
    for name, pair in SCORINGS.items():
        if pair == (extract, rule):
            return name
    raise ValueError(f"(extract, rule)=({extract!r}, {rule!r}) is not a scoring; allowed: {list(SCORINGS.values())}")


def _style_for(benchmark: str, style: str | None) -> str:
    """The extraction style: ``style`` when given (any benchmark name is accepted), else by name."""
    if style is not None:
        if style not in STYLES:
            raise ValueError(f"style must be one of {STYLES}, got {style!r}")
        return style
    if benchmark not in EXTRACTION_STYLE:
        raise ValueError(f"benchmark must be one of {BENCHMARKS}, got {benchmark!r}")
    return EXTRACTION_STYLE[benchmark]


def _official_gsm8k(completion: str, gold: str) -> Verdict:
    """GSM8K as the paper's task scores it (``exact_match,flexible-extract``; :mod:`mixgap.grading.official`)."""
    extracted = gsm8k_flexible_extract(completion)
    if extracted is None:
        return Verdict(False, None, "no_answer")
    return Verdict(True, extracted, "exact") if gsm8k_exact_match(extracted, gold) else Verdict(
        False, extracted, "mismatch")


def grade(completion: str, gold: str, benchmark: str, *, extract: str = "policy", rule: str = "policy",
          style: str | None = None, timeout_s: float = 5.0) -> Verdict:
    """Grade one completion against its gold answer under the grading policy (module docstring).

    Args:
        completion: the model output (short or long CoT).
        gold: the reference answer (e.g. the data kit's ``answer`` field).
        benchmark: the benchmark's name. Without ``style`` it must be one of :data:`BENCHMARKS` and
            selects the style (:data:`EXTRACTION_STYLE`: ``gsm8k`` is ``last_number``, the others
            ``boxed``); with ``style`` it is not used (any name, e.g. a new ``aime25``).
        extract: ``"policy"`` -- our extraction (rule 1, :func:`extract_answer`); ``"boxed"`` -- the
            paper's (:mod:`mixgap.grading.official`): ``boxed`` style reads only the last
            ``\\boxed{}``/``\\fbox{}`` as their ``last_boxed_only_string``/``remove_boxed`` do, then
            compares by our equivalence; ``last_number`` style is GSM8K's ``exact_match,flexible-extract``
            (last regex match, string equality after the task's filters).
        rule: ``"policy"`` -- our equivalence (rules 2-10); ``"paper"`` -- the authors' ``is_equiv`` (rule 1c;
            needs ``extract="boxed"``): correct (``exact``) when the boxed answer and the gold are equal
            after their ``strip_string``, else ``mismatch``; no answer is ``no_answer``.
        style: ``"boxed"`` or ``"last_number"`` (a benchmark YAML's ``extraction`` field), or ``None``.
        timeout_s: the verdict never takes longer than this; a timeout is wrong with reason ``timeout``.

    Returns:
        :class:`Verdict`. ``extracted`` is ``None`` only when the completion gives no answer.

    Raises:
        ValueError: ``extract`` is not in :data:`EXTRACT_MODES`, ``rule`` not in :data:`RULES` (or ``paper``
            with ``extract="policy"``), ``style`` is not in ``STYLES``,
            ``benchmark`` is not in :data:`BENCHMARKS` while ``style`` is ``None``, or ``timeout_s`` is
            not positive.
        TypeError: ``completion`` or ``gold`` is not a ``str``.
    """
    start = time.monotonic()
    if extract not in EXTRACT_MODES:
        raise ValueError(f"extract must be one of {EXTRACT_MODES}, got {extract!r}")
    if rule not in RULES or (rule == "paper" and extract != "boxed"):
        raise ValueError(f"rule must be one of {RULES} ('paper' only with extract='boxed'), got rule={rule!r}, "
                         f"extract={extract!r}")
    chosen = _style_for(benchmark, style)
    if not isinstance(gold, str):
        raise TypeError(f"gold must be a str, got {type(gold).__name__}")
    if not isinstance(timeout_s, (int, float)) or isinstance(timeout_s, bool) or not timeout_s > 0:
        raise ValueError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
    if extract == "boxed" and chosen == "last_number":
        return _official_gsm8k(completion, gold)
    extracted = boxed_answer(completion) if extract == "boxed" else extract_answer(completion, chosen)
    if extracted is None:
        return Verdict(False, None, "no_answer")
    if rule == "paper":
        return Verdict(True, extracted, "exact") if paper_is_equiv(extracted, gold) else Verdict(
            False, extracted, "mismatch")
    remaining = max(1e-3, timeout_s - (time.monotonic() - start))
    correct, reason = compare(extracted, gold, remaining)
    if extract == "boxed" and reason == "no_answer":
        reason = "mismatch"  # an empty box is an answer for the paper's script (a wrong one, sent to its judge)
    return Verdict(correct, extracted, reason)
