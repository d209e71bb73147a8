"""A small, safe numeric evaluator for a LaTeX subset -- used only to prove two answers *different*.

The symbolic worker spends most of a mismatch in ANTLR parsing and ``sympy.simplify``. Most wrong
answers are plain numeric or polynomial expressions (``4\\sqrt{10}`` vs ``2\\sqrt{113}``, ``4n^2`` vs
``8n^2 + 4n + 1``), and two expressions that take different values at one generic point are not
equal. This module reads such expressions with its own recursive-descent parser (no ``eval``, no
sympy) into complex floats and reports a mismatch only when the values clearly differ. Anything
outside the subset, any ambiguity (mixed numbers, ``a/bc``), overflow, or numerical cancellation
returns ``None`` so the worker decides. It never declares two answers equal.

Subset: numbers, single-letter variables (lower-cased, as latex2sympy does), Greek-letter variables,
``\\pi``, ``e``, ``i``, ``+ - * / ^``, ``\\cdot``, ``\\times``, ``\\div``, implicit products,
``( ) { }``, ``\\frac{}{}``, ``\\sqrt{}``, ``\\sqrt[n]{}``, ``n!`` (a non-negative integer ``n``; a
factorial above :data:`HUGE_BITS` bits, sized by ``lgamma``, is :class:`Huge`: ``(10^{100})!``).
"""

from __future__ import annotations

import cmath
import math
import re

_TOKEN = re.compile(r"\\[a-zA-Z]+|\d+\.\d*|\.\d+|\d+|[a-zA-Z]|[{}()\[\]+\-*/^]|\S")
_GREEK = {"alpha", "beta", "gamma", "delta", "theta", "lambda", "mu", "phi", "omega", "sigma", "tau", "rho"}
_POINT = (0.7310585786, 1.4142857, 2.2360679, 0.5772156, 1.6180339, 1.2020569, 0.6931471, 1.3247179)
_MAX_EXP = 1.0e4
# a power whose exact value needs more bits than this is "huge" (the worker's limit, mixgap.grading.symbolic)
HUGE_BITS = 100_000
_MAX_FACTORIAL = 170  # 171! overflows a float
_ATOM_START = {"(", "{", "\\frac", "\\sqrt", "\\pi"}


class Undecided(Exception):
    """The expression is outside the subset or cannot be evaluated reliably."""


class Huge(Undecided):
    """A power's (or a factorial's) exact value would exceed :data:`HUGE_BITS` bits.

    Attributes:
        bits: the estimated size of the largest such power in bits; ``inf`` for a tower whose exponent
            is itself huge (``9^{9^{9^{9}}}``: beyond what even mpmath's floats can hold).
    """

    def __init__(self, bits: float) -> None:
        super().__init__(f"power of about {bits:.3g} bits")
        self.bits = bits


class _Parser:
    def __init__(self, text: str, env: dict[str, complex]) -> None:
        self.toks = _TOKEN.findall(text)
        self.pos = 0
        self.env = env

    def peek(self) -> str | None:
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def take(self, expected: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (expected is not None and tok != expected):
            raise Undecided(f"expected {expected!r}, got {tok!r}")
        self.pos += 1
        return tok

    def parse(self) -> complex:
        value = self.expr()
        if self.peek() is not None:
            raise Undecided(f"trailing {self.peek()!r}")
        return value

    def expr(self) -> complex:
        value = self.term()
        while self.peek() in ("+", "-"):
            op = self.take()
            rhs = self.term()
            new = value + rhs if op == "+" else value - rhs
            if abs(new) < 1e-7 * (abs(value) + abs(rhs)):
                raise Undecided("cancellation")
            value = new
        return value

    def term(self) -> complex:
        value = self.unary()
        divided = False
        while True:
            tok = self.peek()
            if tok in ("*", "\\cdot", "\\times", "/", "\\div"):
                self.take()
                rhs = self.unary()
                if tok in ("/", "\\div"):
                    if rhs == 0:
                        raise Undecided("division by zero")
                    value, divided = value / rhs, True
                else:
                    value *= rhs
            elif tok is not None and self._starts_atom(tok):
                if divided:
                    raise Undecided("a/bc is ambiguous")
                if tok[0].isdigit() or tok[0] == ".":
                    raise Undecided("a number after a factor is ambiguous")
                value *= self.unary()
            else:
                return value

    def _starts_atom(self, tok: str) -> bool:
        return tok in _ATOM_START or tok[0].isdigit() or tok[0] == "." or tok.isalpha() or (
            tok[0] == "\\" and tok[1:] in _GREEK)

    def unary(self) -> complex:
        if self.peek() in ("-", "+"):
            return -self.unary() if self.take() == "-" else self.unary()
        return self.power()

    def factorial(self, value: complex) -> complex:
        """``value!`` for a non-negative integer ``value``; its size in bits is ``lgamma(n + 1) / ln 2``."""
        self.take("!")
        if self.peek() == "!":
            raise Undecided("double factorial")
        n = value.real
        if value.imag != 0 or n < 0 or not math.isfinite(n) or n != int(n):
            raise Undecided("factorial of a non-integer")
        try:
            bits = math.lgamma(n + 1) / math.log(2)
        except OverflowError:
            bits = math.inf
        if bits > HUGE_BITS:
            raise Huge(bits)
        if n > _MAX_FACTORIAL:
            raise Undecided("factorial beyond float range")
        return complex(math.factorial(int(n)))

    def power(self) -> complex:
        base = self.atom()
        while self.peek() == "!":
            base = self.factorial(base)
        if self.peek() != "^":
            return base
        self.take()
        try:
            exponent = self.group() if self.peek() == "{" else self.atom()
        except Huge as err:  # a tower: the exponent alone is huge
            if abs(base) in (0.0, 1.0):
                raise Undecided("huge exponent of 0 or 1") from err
            raise Huge(math.inf) from err
        size = abs(base)
        if size not in (0.0, 1.0) and math.isfinite(size):
            bits = abs(exponent) * abs(math.log2(size))
            if bits > HUGE_BITS:
                raise Huge(bits)
        if abs(exponent) > _MAX_EXP or (base == 0 and exponent.real <= 0):
            raise Undecided("power out of range")
        try:
            if exponent.imag == 0 and exponent.real == int(exponent.real):
                return base ** int(exponent.real)
            return base**exponent
        except (OverflowError, ZeroDivisionError) as err:
            raise Undecided("power") from err

    def group(self) -> complex:
        self.take("{")
        value = self.expr()
        self.take("}")
        return value

    def atom(self) -> complex:
        tok = self.take()
        if tok[0].isdigit() or tok[0] == ".":
            if self.peek() == "\\frac":
                raise Undecided("mixed number")
            return complex(float(tok))
        if tok == "(":
            value = self.expr()
            self.take(")")
            return value
        if tok == "{":
            value = self.expr()
            self.take("}")
            return value
        if tok == "\\frac":
            num, den = self.group(), self.group()
            if den == 0:
                raise Undecided("division by zero")
            return num / den
        if tok == "\\sqrt":
            index = None
            if self.peek() == "[":
                self.take("[")
                index = self.expr()
                self.take("]")
            radicand = self.group() if self.peek() == "{" else self.atom()
            if index is None:
                return cmath.sqrt(radicand)
            if index == 0:
                raise Undecided("zeroth root")
            return radicand ** (1 / index)
        if tok == "\\pi":
            return complex(cmath.pi)
        if tok.isalpha() or (tok[0] == "\\" and tok[1:] in _GREEK):
            name = tok.lstrip("\\").lower()
            if name == "e":
                return complex(cmath.e)
            if name == "i":
                return 1j
            if name not in self.env:
                raise Undecided(f"unknown variable {name}")
            return self.env[name]
        raise Undecided(f"unsupported token {tok!r}")


def variables(text: str) -> set[str]:
    """The variable names the evaluator would bind in ``text`` (lower-cased; ``e``/``i`` excluded)."""
    names = set()
    for tok in _TOKEN.findall(text):
        if tok.isalpha() or (tok[0] == "\\" and tok[1:] in _GREEK):
            name = tok.lstrip("\\").lower()
            if name not in ("e", "i"):
                names.add(name)
    return names


def evaluate(text: str, env: dict[str, complex]) -> complex:
    """Evaluate ``text`` in the subset with variables bound by ``env``.

    Raises:
        Undecided: outside the subset, ambiguous, non-finite, or numerically unreliable.
    """
    try:
        value = _Parser(text, env).parse()
    except (OverflowError, ZeroDivisionError, ValueError, RecursionError) as err:
        raise Undecided(str(err)) from err
    if not (cmath.isfinite(value)):
        raise Undecided("not finite")
    return value


def huge_power_bits(text: str) -> float | None:
    """Size in bits of a huge numeric power or factorial in ``text`` (``2^{10^{10}}``: 1e10), else ``None``.

    Only expressions without variables that the subset reads are sized (in log space, never
    expanded); a tower whose exponent is itself huge (``9^{9^{9^{9^{9}}}}``) gives ``inf``. ``None``
    means "not proven huge" (small, outside the subset, or with variables).
    """
    if variables(text):
        return None
    try:
        _Parser(text, {}).parse()
    except Huge as err:
        return err.bits
    except (Undecided, OverflowError, ZeroDivisionError, ValueError, RecursionError):
        return None
    return None


def clearly_different(pred: str, gold: str) -> bool:
    """True only if ``pred`` and ``gold`` evaluate to clearly different values at a generic point.

    Relative tolerance 1e-9, or 1e-5 when either side has a decimal point (the float rule). Both sides
    must use the same variables. ``False`` means "not proven different", never "equal".
    """
    names = variables(pred)
    if names != variables(gold) or len(names) > len(_POINT):
        return False
    env = {name: complex(_POINT[i]) for i, name in enumerate(sorted(names))}
    try:
        a, b = evaluate(pred, env), evaluate(gold, env)
    except Undecided:
        return False
    tol = 1e-5 if ("." in pred or "." in gold) else 1e-9
    return abs(a - b) > tol * max(abs(a), abs(b))
