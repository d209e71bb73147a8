"""The symbolic check, run inside the grader's worker process (see :mod:`mixgap.grading.worker`).

math-verify (``latex2sympy2_extended`` parsing + ``math_verify.verify``) is the core. Our wrappers:

* parsing goes through latex2sympy only -- never ``sympify``/``parse_expr`` on raw text, which ``eval``;
* ``verify`` runs with ``allow_set_relation_comp=True`` so an interval written as an inequality
  (``1 < x \\le 2``) matches ``(1, 2]``, and ``strict=True`` so variables matter;
* math-verify's numeric test ``(a - b).evalf(chop=True) == 0`` calls any two tiny values equal
  (``1/2^98`` = ``1/2^99``). Every numeric "equal" it returns is re-checked here: exact values
  must agree to 1e-25 relative, values written with a decimal point to 1e-5 relative;
* a list of inequalities in one variable (``x < 2, x > 3``, normalised from "x < 2 or x > 3") matches
  an interval/union gold when its union or its intersection is that set;
* two scalar expressions with the same free symbols that differ at a fixed generic point are a
  mismatch without ``simplify`` (speed only: every equality still comes from math-verify);
* expressions with a huge power or factorial (> 100k bits, e.g. ``2^{10^{10}}``) are never expanded:
  they are equal only if structurally identical or equal to 40 significant digits by mpmath;
* the caller's time budget is enforced with ``SIGALRM`` (this is the worker's main thread) and a
  memory cap (``RLIMIT_AS``); C-level hangs are the parent's job (it kills this process).

Protocol: one JSON object per line on stdin ``{"id", "pred", "gold", "budget"}``; one per line on
the original stdout ``{"id", "ok", "reason"}``. EOF on stdin ends the process.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import sys
import threading
import time
from functools import lru_cache

try:
    import resource
except ImportError:  # not on Windows
    resource = None

_HUGE_BITS = 100_000
_HUGE_FACTORIAL = 5_000
# fixed "generic" points (read as exact decimals) for the fast mismatch test (deterministic verdicts)
_POINTS = ((0.7310585786, 1.4142857, 2.2360679, 0.5772156, 3.1415927, 1.6180339),
           (1.3247179, 0.4142135, 2.7182818, 1.2020569, 0.6931471, 1.7320508))


class _Alarm(BaseException):
    """Raised by SIGALRM; a BaseException so math-verify's ``except Exception`` cannot swallow it."""


def _on_alarm(signum, frame):  # noqa: ARG001
    raise _Alarm()


def _setup_math_verify():
    """Import sympy/math-verify and install the tiny-value guard (worker process only)."""
    import math_verify.grader as grader
    import sympy
    from latex2sympy2_extended.latex2sympy2 import NormalizationConfig, latex2sympy, normalize_latex
    from math_verify import verify

    for name in ("math_verify", "latex2sympy2_extended"):
        logging.getLogger(name).setLevel(logging.CRITICAL)

    original = grader.sympy_numeric_eq

    def guarded_numeric_eq(a, b, float_rounding, numeric_precision):
        return original(a, b, float_rounding, numeric_precision) and _values_agree(sympy, a, b)

    grader.sympy_numeric_eq = guarded_numeric_eq
    config = NormalizationConfig(basic_latex=True, units=False, malformed_operators=True, nits=True,
                                 boxed="none", equations=False)
    return sympy, verify, grader, latex2sympy, normalize_latex, config


def _values_agree(sympy, a, b) -> bool:
    """Relative agreement of two numeric sympy values; True (no opinion) for anything non-numeric."""
    try:
        if not (isinstance(a, sympy.Basic) and isinstance(b, sympy.Basic)):
            return True
        if a.free_symbols or b.free_symbols or not (a.is_number and b.is_number):
            return True
        va, vb = sympy.N(a, 40), sympy.N(b, 40)
        scale = max(abs(va), abs(vb))
        if not (scale.is_Number and scale.is_finite) or scale == 0:
            return True
        tol = 1e-5 if (a.has(sympy.Float) or b.has(sympy.Float)) else 1e-25
        return bool(abs(va - vb) <= tol * scale)
    except Exception:
        return True


def _is_huge(sympy, expr) -> bool:
    """True if ``expr`` holds a power or factorial whose exact value would exceed ~100k bits.

    latex2sympy keeps ``2^{10^{10}}`` unevaluated; the exponent is estimated with mpmath (never expanded).
    """
    for node in sympy.preorder_traversal(expr):
        if isinstance(node, sympy.Pow):
            base, exp = node.args
            if not (base.is_number and exp.is_number) or base.is_Symbol:
                continue
            try:
                size = abs(complex(sympy.N(base, 15)))
                exponent = abs(complex(sympy.N(exp, 15)))
            except (OverflowError, TypeError, ValueError):
                return True
            if size in (0.0, 1.0) or not math.isfinite(size):
                continue
            if not math.isfinite(exponent) or exponent * abs(math.log2(size)) > _HUGE_BITS:
                return True
        elif isinstance(node, (sympy.factorial, sympy.binomial)):
            if any(arg.is_number and arg.is_real and arg > _HUGE_FACTORIAL for arg in node.args):
                return True
    return False


class Judge:
    """Parses with latex2sympy and compares with math-verify plus the guards in the module docstring."""

    def __init__(self):
        (self.sympy, self.verify, self.grader, self._latex2sympy, self._normalize,
         self._config) = _setup_math_verify()
        self.parse = lru_cache(maxsize=4096)(self._parse)

    def _parse(self, text: str):
        latex = self._normalize(text, self._config)
        is_real = not self.grader.should_treat_as_complex(latex)
        try:
            return self._latex2sympy(latex, is_real=is_real, convert_degrees=False, normalization_config=None)
        except Exception:
            last = latex.rsplit("=", 1)[-1] if latex.count("=") > 1 and "," not in latex else latex
            if last == latex:
                raise
            return self._latex2sympy(last, is_real=is_real, convert_degrees=False, normalization_config=None)

    def _huge_equal(self, gold, pred) -> bool:
        if self.sympy.srepr(gold) == self.sympy.srepr(pred):
            return True
        if not (gold.is_number and pred.is_number):
            return False
        vg, vp = self.sympy.N(gold, 40), self.sympy.N(pred, 40)
        scale = max(abs(vg), abs(vp))
        return bool(scale.is_Number and abs(vg - vp) <= self.sympy.Float(1e-35) * scale)

    def _inequality_list_matches(self, gold, pred) -> bool:
        """``x < 2, x > 3`` (normalised from "x < 2 or x > 3") against an interval or union gold.

        A list of inequalities in one variable matches when its union ("or") or its intersection
        ("and") is the gold set; math-verify reads such a list as a set of relations and says wrong.
        """
        sympy = self.sympy
        if not isinstance(gold, sympy.Set) or not isinstance(pred, (sympy.FiniteSet, sympy.Tuple)):
            return False
        rels = list(pred.args)
        if len(rels) < 2 or not all(isinstance(r, sympy.core.relational.Relational) for r in rels):
            return False
        if any(isinstance(r, (sympy.Eq, sympy.Ne)) for r in rels):
            return False
        if len(set().union(*(r.free_symbols for r in rels))) != 1:
            return False
        try:
            sets = [r.as_set() for r in rels]
            return any(sympy.simplify(combo.symmetric_difference(gold)).is_empty is True
                       for combo in (sympy.Union(*sets), sympy.Intersection(*sets)))
        except Exception:
            return False

    def _clearly_different(self, gold, pred) -> bool:
        """Fast mismatch for two scalar expressions: different values at fixed generic points.

        Only a shortcut to ``False`` (math-verify's ``simplify`` is the slow part of a mismatch); every
        possible equality still goes through math-verify. Skipped for sets, tuples, relations,
        matrices, bare symbols/products of symbols (math-verify compares those by name), and when the
        two sides have different free symbols. Decimals (Float) use the 1e-5 relative rule.
        """
        sympy = self.sympy
        if not (isinstance(gold, sympy.Expr) and isinstance(pred, sympy.Expr)):
            return False
        symbols = gold.free_symbols
        if symbols != pred.free_symbols or any(str(sym).lower() == "e" for sym in symbols):
            return False
        for expr in (gold, pred):
            if expr.is_Symbol or (expr.is_Mul and all(arg.is_Symbol for arg in expr.args)):
                return False
            if expr.has(sympy.UnevaluatedExpr) or expr.has(sympy.Function) and not expr.is_number:
                return False
        tol = 1e-5 if (gold.has(sympy.Float) or pred.has(sympy.Float)) else 1e-12
        ordered = sorted(symbols, key=str)
        for point in _POINTS[: 2 if ordered else 1]:
            # exact rationals, so evalf's adaptive precision sees no rounding in the inputs
            subs = {sym: sympy.Rational(str(point[i % len(point)])) for i, sym in enumerate(ordered)}
            try:
                vg = sympy.N(gold.subs(subs) if subs else gold, 30)
                vp = sympy.N(pred.subs(subs) if subs else pred, 30)
                if not (vg.is_number and vp.is_number and vg.is_finite and vp.is_finite):
                    return False
                diff, scale = abs(vg - vp), max(abs(vg), abs(vp))
                if not (diff.is_Number and scale.is_Number) or diff <= tol * scale:
                    return False
            except Exception:
                return False
        return True

    def judge(self, pred: str, gold: str) -> tuple[bool, str]:
        """Compare normalised ``pred`` with ``gold``; returns ``(correct, reason)``."""
        try:
            gold_expr = self.parse(gold)
            pred_expr = self.parse(pred)
        except (_Alarm, KeyboardInterrupt):
            raise
        except BaseException:
            return False, "parse_error"
        try:
            huge = _is_huge(self.sympy, gold_expr) or _is_huge(self.sympy, pred_expr)
        except Exception:
            huge = False  # could not size it: math-verify runs, still under the time budget
        if huge:
            try:
                return (True, "symbolic") if self._huge_equal(gold_expr, pred_expr) else (False, "too_large")
            except Exception:
                return False, "too_large"
        if self._inequality_list_matches(gold_expr, pred_expr):
            return True, "symbolic"
        if self._clearly_different(gold_expr, pred_expr):
            return False, "mismatch"
        ok = self.verify(gold_expr, pred_expr, timeout_seconds=None, allow_set_relation_comp=True,
                         strict=True, raise_on_error=False)
        return (True, "symbolic") if ok else (False, "mismatch")


def _watch_parent(parent_pid: int) -> None:
    """Exit when the parent process is gone (stdin EOF covers the idle case; this covers busy ones)."""
    while True:
        time.sleep(0.5)
        if os.getppid() != parent_pid:
            os._exit(0)


def _limit_memory() -> None:
    if resource is None:  # no RLIMIT_AS on this platform
        return
    try:
        limit = int(os.environ.get("MIXGAP_GRADER_MEM_MB", "4096")) * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ValueError, OSError):
        pass


def main() -> None:
    """Worker loop: read requests from stdin, answer on the original stdout (see module docstring)."""
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints from libraries never hit the protocol
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGALRM, _on_alarm)
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    _limit_memory()
    judge = Judge()
    for line in sys.stdin:
        req = json.loads(line)
        ok, reason = _answer(judge, req)
        out.write(json.dumps({"id": req["id"], "ok": ok, "reason": reason}) + "\n")


def _answer(judge: Judge, req: dict) -> tuple[bool, str]:
    """Run one comparison under the request's time budget (SIGALRM, one-shot)."""
    signal.setitimer(signal.ITIMER_REAL, max(0.01, float(req["budget"])))
    try:
        try:
            return judge.judge(req["pred"], req["gold"])
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _Alarm:
        return False, "timeout"
    except MemoryError:
        return False, "too_large"
    except Exception:
        return False, "worker_error"


if __name__ == "__main__":
    main()
