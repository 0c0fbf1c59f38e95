"""Random differentiable programs, each built twice from one random tree: as Python and as sympy.

Why: a source-transformation AD has to get every statement form right (reassignment, augmented
assignment, tuple swaps, closures, globals) and every primitive's rule right, in any combination.
Hand-written cases cover a handful of combinations; this module lets hypothesis write hundreds.

Every node of the random tree is rendered at the same time as Python source text and as a sympy
expression, so sympy is an oracle that shares no code with srcgrad. Each assignment becomes a
fresh sympy symbol defined by its right-hand side (static single assignment), so expressions stay
the size of one statement; `Program.oracle_point` has sympy differentiate every statement and
chains those partial derivatives through the statements, all evaluated with mpmath at 40 digits
so that the reference itself carries no float64 rounding.

Numerical safety is by construction, not by luck: every node carries a rigorous interval that
bounds its value for inputs in [-INPUT_BOUND, INPUT_BOUND], and an argument that could leave its
function's domain (log of something that might be <= 0, arcsin of something that might reach 1,
exp of something large) is first wrapped in a squashing or shifting expression, which is itself
ordinary generated code. Kinks (abs, relu, maximum, minimum) and the branch cut or pole of
arctan2/hypot cannot be excluded by intervals, so they add *guards*: expressions that must stay at
least GUARD_MARGIN away from zero at the test inputs (tests `assume` it), which keeps both the
exact gradient well defined and central differences away from the kink.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import mpmath
import numpy as np
import sympy as sp
from hypothesis import strategies as st
from support import import_source

INPUT_BOUND = 2.0  # inputs are drawn from [-INPUT_BOUND, INPUT_BOUND]
CAP = 30.0  # a subexpression that may exceed this in magnitude is scaled or squashed before reuse
GUARD_MARGIN = 0.05  # minimum distance of a kink/pole argument from zero at the test inputs
ORACLE_DPS = 40  # mpmath working precision of the oracle

# How many generated programs each test checked to the end (conftest prints it after the run).
CHECKED: Counter[str] = Counter()

PARAM_POOL = ("x", "y", "z", "mu", "sigma", "w")
LOCAL_POOL = ("u", "v", "acc", "tmp", "s", "p", "q", "r")
GLOBAL_NAME = "K"  # module-level constant
CLOSURE_NAME = "C"  # constant captured from an enclosing function

# ---------------------------------------------------------------------------------------------
# The function table: how each primitive is spelled, computed on sympy, bounded, and restricted.
# ---------------------------------------------------------------------------------------------

Interval = tuple[float, float]


def _increasing(f: Callable[[float], float]) -> Callable[[float, float], Interval]:
    return lambda lo, hi: (f(lo), f(hi))


def _decreasing(f: Callable[[float], float]) -> Callable[[float, float], Interval]:
    return lambda lo, hi: (f(hi), f(lo))


def _even(f: Callable[[float], float]) -> Callable[[float, float], Interval]:
    """Image of an even function that increases on [0, inf)."""

    def image(lo: float, hi: float) -> Interval:
        top = f(max(abs(lo), abs(hi)))
        bottom = f(0.0) if lo <= 0.0 <= hi else f(min(abs(lo), abs(hi)))
        return bottom, top

    return image


def _unit(lo: float, hi: float) -> Interval:
    return -1.0, 1.0


def _sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def _softplus(v: float) -> float:
    return max(v, 0.0) + math.log1p(math.exp(-abs(v)))


# Kinked functions get sympy functions of their own rather than Abs/Max/Piecewise: sympy.Abs
# of an expression it cannot prove real differentiates into re()/im() terms, and Piecewise
# conditions on large expressions send sympy into set solving that can run for minutes. Each
# class only states its derivative away from the kink (the guards keep inputs there); sympy
# still does all the chain-rule work, and mpmath evaluates them via SYMPY_MODULES.


class _Kink(sp.Function):
    """Evaluates on numbers (constant subexpressions), stays symbolic otherwise."""

    @staticmethod
    def numeric(*args: float) -> float:
        raise NotImplementedError

    @classmethod
    def eval(cls, *args: sp.Expr) -> sp.Expr | None:
        if all(a.is_Number for a in args):
            return sp.Float(cls.numeric(*(float(a) for a in args)))
        return None

    def _eval_evalf(self, prec: int) -> sp.Expr | None:
        values = [a.evalf(prec) for a in self.args]
        if all(v.is_Number for v in values):
            return sp.Float(self.numeric(*(float(v) for v in values)), precision=prec)
        return None


class KinkStep(_Kink):
    """1 for u > 0, else 0: the derivative of relu, and of max/min in each argument."""

    numeric = staticmethod(lambda u: 1.0 if u > 0 else 0.0)

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        return sp.S.Zero


class KinkSign(_Kink):
    """sign(u): the derivative of |u|."""

    numeric = staticmethod(lambda u: math.copysign(1.0, u) if u else 0.0)

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        return sp.S.Zero


class KinkAbs(_Kink):
    """|u|."""

    numeric = staticmethod(abs)

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        return KinkSign(self.args[0])


class KinkRelu(_Kink):
    """max(u, 0)."""

    numeric = staticmethod(lambda u: max(u, 0.0))

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        return KinkStep(self.args[0])


class KinkMax(_Kink):
    """max(a, b)."""

    nargs = 2
    numeric = staticmethod(max)

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        a, b = self.args
        return KinkStep(a - b) if argindex == 1 else KinkStep(b - a)


class KinkMin(_Kink):
    """min(a, b)."""

    nargs = 2
    numeric = staticmethod(min)

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        a, b = self.args
        return KinkStep(b - a) if argindex == 1 else KinkStep(a - b)


# Namespace for sympy.lambdify: the kinked functions above, then mpmath for everything else.
SYMPY_MODULES: list[Any] = [
    {
        "KinkStep": lambda u: mpmath.mpf(1) if u > 0 else mpmath.mpf(0),
        "KinkSign": mpmath.sign,
        "KinkAbs": mpmath.fabs,
        "KinkRelu": lambda u: u if u > 0 else mpmath.mpf(0),
        "KinkMax": lambda a, b: a if a > b else b,
        "KinkMin": lambda a, b: a if a < b else b,
    },
    "mpmath",
]


def _sym_real_cbrt(u: sp.Expr, lo: float) -> sp.Expr:
    # sympy's x**(1/3) is the principal (complex) root for x < 0; the generator knows the sign.
    third = sp.Rational(1, 3)
    return u**third if lo > 0 else -((-u) ** third)


@dataclass(frozen=True)
class Unary:
    """A one-argument primitive as the generator uses it."""

    name: str  # the srcgrad.functions name (also the registry name)
    sym: Callable[[sp.Expr], sp.Expr]  # its meaning, for the sympy twin
    image: Callable[[float, float], Interval]  # interval of the result on the argument interval
    need: tuple[str, float]  # ("any", 0) | ("bounded", R) | ("lower", m) | ("nonzero", m)
    np_name: str | None = None
    math_name: str | None = None
    kink: bool = False  # guard the argument away from 0


ANY = ("any", 0.0)
TRIG = ("bounded", 0.9)  # arcsin, arccos, arctanh: derivative stays below 2.3
EXPONENTIAL = ("bounded", 3.0)
LOG = ("lower", 0.2)
NONZERO = ("nonzero", 0.3)
_math_exp2 = "exp2" if hasattr(math, "exp2") else None  # Python >= 3.11
_math_cbrt = "cbrt" if hasattr(math, "cbrt") else None


def _sym_expm1(u: sp.Expr) -> sp.Expr:
    return sp.exp(u) - 1


def _sym_exp2(u: sp.Expr) -> sp.Expr:
    return sp.Integer(2) ** u


def _sym_log1p(u: sp.Expr) -> sp.Expr:
    return sp.log(1 + u)


def _sym_log2(u: sp.Expr) -> sp.Expr:
    return sp.log(u) / sp.log(2)


def _sym_log10(u: sp.Expr) -> sp.Expr:
    return sp.log(u) / sp.log(10)


def _sym_reciprocal(u: sp.Expr) -> sp.Expr:
    return 1 / u


def _sym_sigmoid(u: sp.Expr) -> sp.Expr:
    return 1 / (1 + sp.exp(-u))


def _sym_softplus(u: sp.Expr) -> sp.Expr:
    return sp.log(1 + sp.exp(u))


UNARY: dict[str, Unary] = {
    u.name: u
    for u in [
        Unary("sin", sp.sin, _unit, ANY, "sin", "sin"),
        Unary("cos", sp.cos, _unit, ANY, "cos", "cos"),
        Unary("tan", sp.tan, _increasing(math.tan), ("bounded", 1.3), "tan", "tan"),
        Unary("arcsin", sp.asin, _increasing(math.asin), TRIG, "arcsin", "asin"),
        Unary("arccos", sp.acos, _decreasing(math.acos), TRIG, "arccos", "acos"),
        Unary("arctan", sp.atan, _increasing(math.atan), ANY, "arctan", "atan"),
        Unary("sinh", sp.sinh, _increasing(math.sinh), EXPONENTIAL, "sinh", "sinh"),
        Unary("cosh", sp.cosh, _even(math.cosh), EXPONENTIAL, "cosh", "cosh"),
        Unary("tanh", sp.tanh, _increasing(math.tanh), ANY, "tanh", "tanh"),
        Unary("arcsinh", sp.asinh, _increasing(math.asinh), ANY, "arcsinh", "asinh"),
        Unary("arccosh", sp.acosh, _increasing(math.acosh), ("lower", 1.2), "arccosh", "acosh"),
        Unary("arctanh", sp.atanh, _increasing(math.atanh), TRIG, "arctanh", "atanh"),
        Unary("exp", sp.exp, _increasing(math.exp), EXPONENTIAL, "exp", "exp"),
        Unary("expm1", _sym_expm1, _increasing(math.expm1), EXPONENTIAL, "expm1", "expm1"),
        Unary("exp2", _sym_exp2, _increasing(lambda v: 2.0**v), EXPONENTIAL, "exp2", _math_exp2),
        Unary("log", sp.log, _increasing(math.log), LOG, "log", "log"),
        Unary("log1p", _sym_log1p, _increasing(math.log1p), ("lower", -0.8), "log1p", "log1p"),
        Unary("log2", _sym_log2, _increasing(math.log2), LOG, "log2", "log2"),
        Unary("log10", _sym_log10, _increasing(math.log10), LOG, "log10", "log10"),
        Unary("sqrt", sp.sqrt, _increasing(math.sqrt), LOG, "sqrt", "sqrt"),
        # cbrt's sympy twin depends on the argument's sign: see Builder.call1.
        Unary("cbrt", sp.cbrt, _increasing(np.cbrt), ("nonzero", 0.2), "cbrt", _math_cbrt),
        Unary("square", lambda u: u**2, _even(lambda v: v * v), ANY, "square"),
        Unary("reciprocal", _sym_reciprocal, _decreasing(lambda v: 1 / v), NONZERO, "reciprocal"),
        Unary("abs", KinkAbs, _even(abs), ANY, "abs", "fabs", kink=True),
        Unary("sigmoid", _sym_sigmoid, _increasing(_sigmoid), ANY),
        Unary("relu", KinkRelu, _increasing(lambda v: max(v, 0.0)), ANY, kink=True),
        Unary("softplus", _sym_softplus, _increasing(_softplus), ANY),
        Unary("erf", sp.erf, _increasing(math.erf), ANY, None, "erf"),
    ]
}

BINARY_FUNCTIONS = ("arctan2", "hypot", "maximum", "minimum", "power")
BINARY_NP = {name: name for name in BINARY_FUNCTIONS}
BINARY_MATH = {"arctan2": "atan2", "hypot": "hypot", "power": "pow"}


def _np_and_math_names(sf_name: str) -> tuple[str | None, str | None]:
    if sf_name in UNARY:
        return UNARY[sf_name].np_name, UNARY[sf_name].math_name
    return BINARY_NP[sf_name], BINARY_MATH.get(sf_name)


# Every srcgrad.functions name the generator can emit (the registry test covers the rest).
FUNCTION_NAMES = (*UNARY, *BINARY_FUNCTIONS)


# ---------------------------------------------------------------------------------------------
# Expressions: text, sympy and interval, built together.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expr:
    """One generated expression: Python text, its sympy meaning and a bound on its value."""

    src: str
    sym: sp.Expr
    lo: float
    hi: float
    atomic: bool = False  # a name, a call or a non-negative literal: safe as an operand
    var: bool = False  # a bare variable reference (assigning it would alias an array)

    @property
    def mag(self) -> float:
        return max(abs(self.lo), abs(self.hi))

    def operand(self) -> str:
        return self.src if self.atomic else f"({self.src})"


def _product_interval(a: Interval, b: Interval) -> Interval:
    products = [x * y for x in a for y in b]
    return min(products), max(products)


def _literal(value: float | int) -> Expr:
    if not isinstance(value, int):
        value = float(value)  # not np.float64, whose repr is "np.float64(...)"
    sym = sp.Integer(value) if isinstance(value, int) else sp.Float(value)
    text = repr(value)
    return Expr(text, sym, float(value), float(value), atomic=value >= 0)


def _round_down(value: float) -> float:
    """A short literal (3 significant digits) no larger than value > 0: bounds stay valid."""
    digits = 2 - math.floor(math.log10(value))
    rounded = round(value, digits)
    if rounded > value:
        rounded = round(rounded - 10.0**-digits, digits)
    return rounded if rounded > 0 else value


def _round_up(value: float) -> float:
    """A short literal (2 decimals) no smaller than value."""
    rounded = round(value, 2)
    return rounded if rounded >= value else round(rounded + 0.01, 2)


def _pow_interval(base: Expr, exponent: Expr) -> Interval:
    """Bounds of base ** exponent: integer exponents allow any base, others need base > 0."""
    if exponent.lo == exponent.hi and float(exponent.lo).is_integer() and base.lo <= 0:
        n = int(exponent.lo)
        ends = [base.lo**n, base.hi**n]
        if base.lo <= 0 <= base.hi:  # only for n >= 0 (callers make negative powers nonzero)
            ends.append(0.0)
        return min(ends), max(ends)
    logs = (math.log(base.lo), math.log(base.hi))
    lo, hi = _product_interval(logs, (exponent.lo, exponent.hi))
    return math.exp(lo), math.exp(hi)


@dataclass
class Variable:
    """What a name is bound to at this point of the generated body."""

    expr: Expr
    fresh: bool  # bound to a value no other name refers to (safe to update in place)


@dataclass
class Builder:
    """Mutable state while drawing one program."""

    draw: Callable[[st.SearchStrategy[Any]], Any]
    batched: bool  # arrays may flow through: no `math` functions, no in-place aliasing
    constants: dict[str, float]  # names usable as constants (global, closure)
    shadow_abs: bool  # the module imports srcgrad.functions.abs, shadowing the builtin
    focus: str | None = None  # a function every program must call, in every spelling
    pending: list[str] = field(default_factory=list)  # focus spellings not yet emitted
    env: dict[str, Variable] = field(default_factory=dict)
    guards: list[sp.Expr] = field(default_factory=list)
    definitions: list[tuple[sp.Symbol, sp.Expr]] = field(default_factory=list)  # SSA form
    imports: set[str] = field(default_factory=set)
    features: set[str] = field(default_factory=set)

    def bind(self, name: str, value: Expr) -> None:
        """`name = value`: a new SSA symbol for the name, defined by the value's sympy twin."""
        symbol = sp.Symbol(f"{name}__{len(self.definitions)}", real=True)
        self.definitions.append((symbol, value.sym))
        ref = Expr(name, symbol, value.lo, value.hi, atomic=True, var=True)
        self.env[name] = Variable(ref, fresh=True)

    # -- small drawing helpers ------------------------------------------------------------------
    def choose(self, options: Sequence[Any]) -> Any:
        return self.draw(st.sampled_from(list(options)))

    def coin(self, p_true: float = 0.5) -> bool:
        return self.draw(st.integers(0, 99)) < round(p_true * 100)

    # -- leaves -----------------------------------------------------------------------------------
    def constant(self) -> Expr:
        # Floats only: an int reaching a NumPy call changes its meaning (np.reciprocal(2) == 0).
        magnitude = self.draw(st.integers(5, 300)) / 100
        return _literal(magnitude if self.coin(0.7) else -magnitude)

    def leaf(self) -> Expr:
        names = list(self.env)
        roll = self.draw(st.integers(0, 99))
        if roll < 72:
            name = self.choose(names)
            bound = self.env[name].expr
            self.features.add("read")
            ref = Expr(name, bound.sym, bound.lo, bound.hi, atomic=True, var=True)
            return self.cap(ref)
        if roll < 90:
            return self.constant()
        name = self.choose(sorted(self.constants))
        value = self.constants[name]
        self.features.add("global" if name == GLOBAL_NAME else "closure")
        return Expr(name, sp.Float(value), value, value, atomic=True)

    # -- arithmetic --------------------------------------------------------------------------------
    def binop(self, op: str, a: Expr, b: Expr) -> Expr:
        self.features.add(f"op:{op}")
        text = f"{a.operand()} {op} {b.operand()}"
        if op == "+":
            return Expr(text, a.sym + b.sym, a.lo + b.lo, a.hi + b.hi)
        if op == "-":
            return Expr(text, a.sym - b.sym, a.lo - b.hi, a.hi - b.lo)
        if op == "*":
            return Expr(text, a.sym * b.sym, *_product_interval((a.lo, a.hi), (b.lo, b.hi)))
        if op == "/":
            assert b.lo > 0 or b.hi < 0, "division by an expression that may vanish"
            inv = (1.0 / b.hi, 1.0 / b.lo)
            return Expr(text, a.sym / b.sym, *_product_interval((a.lo, a.hi), inv))
        raise ValueError(op)

    def unary_op(self, op: str, a: Expr) -> Expr:
        self.features.add(f"op:unary{op}")
        # `- x ** 2` would parse as -(x ** 2): an operand that is not atomic gets parentheses.
        text = f"{op}{a.operand()}"
        if op == "-":
            return Expr(text, -a.sym, -a.hi, -a.lo)
        return Expr(text, a.sym, a.lo, a.hi)

    def scale(self, a: Expr, factor: float) -> Expr:
        c = _literal(factor)
        return Expr(f"{c.src} * {a.operand()}", c.sym * a.sym, a.lo * factor, a.hi * factor)

    def shift(self, a: Expr, offset: float) -> Expr:
        c = _literal(offset)
        return Expr(f"{a.operand()} + {c.src}", a.sym + c.sym, a.lo + offset, a.hi + offset)

    def power(self, base: Expr, exponent: Expr, feature: str) -> Expr:
        """`base ** exponent`; the caller guarantees the domain (positive base unless integer)."""
        self.features.add(f"op:{feature}")
        text = f"{base.operand()} ** {exponent.operand()}"
        return Expr(text, base.sym**exponent.sym, *_pow_interval(base, exponent))

    # -- calls --------------------------------------------------------------------------------
    def spellings(self, sf_name: str) -> list[str]:
        """The ways this program may name a function: srcgrad.functions, numpy, math, builtin."""
        np_name, math_name = _np_and_math_names(sf_name)
        options = ["sf"]
        if sf_name == "abs" and not self.shadow_abs:
            options = ["builtin", "sf"]  # srcgrad's abs is then imported as sf_abs
        if np_name:
            options.append("np")
        if math_name and not self.batched:
            options.append("math")
        return options

    def spelling(self, sf_name: str, kind: str | None = None) -> str:
        """The callee text for one call site (of the given or a random spelling kind)."""
        np_name, math_name = _np_and_math_names(sf_name)
        if kind is None:
            kind = self.choose(self.spellings(sf_name))
        self.features.add(f"{kind}:{sf_name}")
        if kind == "np":
            return f"np.{np_name}"
        if kind == "math":
            return f"math.{math_name}"
        if kind == "sf" and sf_name == "abs" and not self.shadow_abs:
            self.imports.add("abs as sf_abs")  # aliasing: srcgrad resolves the object
            return "sf_abs"
        if kind == "sf":
            self.imports.add(sf_name)
        return sf_name

    def call1(self, name: str, arg: Expr, kind: str | None = None) -> Expr:
        spec = UNARY[name]
        arg = self.require(arg, spec.need)
        callee = self.spelling(name, kind)
        if spec.kink and not (arg.lo >= GUARD_MARGIN or arg.hi <= -GUARD_MARGIN):
            self.guards.append(arg.sym)
        lo, hi = spec.image(arg.lo, arg.hi)
        sym = _sym_real_cbrt(arg.sym, arg.lo) if name == "cbrt" else spec.sym(arg.sym)
        return Expr(f"{callee}({arg.src})", sym, lo, hi, atomic=True)

    def call2(self, name: str, a: Expr, b: Expr, kind: str | None = None) -> Expr:
        if name == "power":
            a = self.require(a, ("lower", 0.2))
            b = self.require(b, ("bounded", 2.0))
        if name in ("maximum", "minimum"):
            apart = a.lo - b.hi >= GUARD_MARGIN or b.lo - a.hi >= GUARD_MARGIN
            gap = a.sym - b.sym if not apart else None  # sympy cancels identical terms
            if gap is not None and gap.is_number and abs(float(gap)) < GUARD_MARGIN:
                b = self.shift(b, 1.0)  # maximum(x, x) has no gradient to check
                gap = a.sym - b.sym
            if gap is not None:
                self.guards.append(gap)
        # arctan2 (y, x): guarding y off 0 avoids both the origin and the branch cut (y=0, x<0).
        a_off_zero = a.lo >= GUARD_MARGIN or a.hi <= -GUARD_MARGIN
        b_off_zero = b.lo >= GUARD_MARGIN or b.hi <= -GUARD_MARGIN
        if (name == "arctan2" and not a_off_zero) or (
            name == "hypot" and not a_off_zero and not b_off_zero
        ):
            self.guards.append(a.sym)
        callee = self.spelling(name, kind)
        text = f"{callee}({a.src}, {b.src})"
        if name == "arctan2":
            return Expr(text, sp.atan2(a.sym, b.sym), -math.pi, math.pi, atomic=True)
        if name == "hypot":
            small = [min(abs(e.lo), abs(e.hi)) if e.lo * e.hi > 0 else 0.0 for e in (a, b)]
            lo = math.hypot(*small)
            return Expr(text, sp.sqrt(a.sym**2 + b.sym**2), lo, math.hypot(a.mag, b.mag), True)
        if name == "maximum":
            sym = KinkMax(a.sym, b.sym)
            return Expr(text, sym, max(a.lo, b.lo), max(a.hi, b.hi), atomic=True)
        if name == "minimum":
            sym = KinkMin(a.sym, b.sym)
            return Expr(text, sym, min(a.lo, b.lo), min(a.hi, b.hi), atomic=True)
        return Expr(text, a.sym**b.sym, *_pow_interval(a, b), atomic=True)

    # -- domain repair: wrappers that are ordinary generated code --------------------------------
    def cap(self, a: Expr) -> Expr:
        """Keep magnitudes bounded, so that nothing overflows and differences stay accurate."""
        if a.mag <= CAP:
            return a
        how = self.choose(["scale", "scale", "tanh", "arctan", "erf"])
        if how == "scale":
            return self.scale(a, _round_down(CAP / a.mag))
        return self.call1(how, a)

    def bounded(self, a: Expr, limit: float) -> Expr:
        if a.mag <= limit:
            return a
        how = self.choose(["scale", "scale", "tanh", "sin", "cos", "arctan", "erf"])
        if how == "scale":
            return self.scale(a, _round_down(limit / a.mag))
        return self.bounded(self.call1(how, a), limit)

    def positive(self, a: Expr, low: float) -> Expr:
        """An expression of `a` that is >= low > ... for every input."""
        if a.lo >= low:
            return a
        extra = self.choose([0.0, 0.1, 0.5, 1.0])
        how = self.choose(["shift", "shift", "square", "exp", "sigmoid", "hypot", "cosh"])
        if how == "shift":
            return self.shift(a, _round_up(low - a.lo + extra))
        floor = _literal(_round_up(max(low, 0.0) + extra + 0.05))
        if how == "square":
            small = self.bounded(a, 4.0)
            square = self.choose(["fn", "pow", "mul"])
            if square == "fn":
                body = self.call1("square", small)
            elif square == "pow":
                body = self.power(small, _literal(2), "pow_int")
            else:  # x * x: interval arithmetic alone would not know both factors are equal
                body = self.binop("*", small, small)
                body = Expr(body.src, body.sym, *_even(lambda v: v * v)(small.lo, small.hi))
            return self.binop("+", floor, body)
        if how == "hypot":
            return self.call2("hypot", a, floor)
        inner = a if how == "sigmoid" else self.bounded(a, 2.0)
        return self.binop("+", floor, self.call1(how, inner))

    def nonzero(self, a: Expr, margin: float) -> Expr:
        if a.lo >= margin or a.hi <= -margin:
            return a
        p = self.positive(a, margin)
        return self.unary_op("-", p) if self.coin() else p

    def require(self, a: Expr, need: tuple[str, float]) -> Expr:
        kind, amount = need
        if kind == "bounded":
            return self.bounded(a, amount)
        if kind == "lower":
            return self.positive(a, amount)
        if kind == "nonzero":
            return self.nonzero(a, amount)
        return a

    # -- expression trees ----------------------------------------------------------------------
    def focus_call(self, depth: int) -> Expr:
        """A call of the focus function in the next spelling still owed."""
        assert self.focus is not None
        kind = self.pending.pop(0)
        if self.focus in UNARY:
            return self.cap(self.call1(self.focus, self.expr(depth - 1), kind))
        a, b = self.expr(depth - 1), self.expr(depth - 1)
        return self.cap(self.call2(self.focus, a, b, kind))

    def expr(self, depth: int) -> Expr:
        if depth > 0 and self.pending and self.coin(0.3):
            return self.focus_call(depth)
        if depth <= 0 or self.coin(0.25):
            return self.leaf()
        kind = self.choose(
            ["binop", "binop", "binop", "unary", "pow", "call1", "call1", "call1", "call2"]
        )
        if kind == "binop":
            op = self.choose("+-*/")
            a, b = self.expr(depth - 1), self.expr(depth - 1)
            if op == "/":
                b = self.nonzero(b, 0.3)
            return self.cap(self.binop(op, a, b))
        if kind == "unary":
            return self.unary_op(self.choose("-+"), self.expr(depth - 1))
        if kind == "pow":
            return self.cap(self.pow_expr(depth))
        if kind == "call1":
            return self.cap(self.call1(self.choose(sorted(UNARY)), self.expr(depth - 1)))
        name = self.choose(BINARY_FUNCTIONS)
        return self.cap(self.call2(name, self.expr(depth - 1), self.expr(depth - 1)))

    def pow_expr(self, depth: int) -> Expr:
        form = self.choose(["int", "int", "negint", "float", "var", "constbase"])
        base = self.expr(depth - 1)
        if form == "int":
            return self.power(self.bounded(base, 5.0), _literal(self.choose([2, 3])), "pow_int")
        if form == "negint":
            exponent = _literal(self.choose([-1, -2]))
            return self.power(self.nonzero(self.bounded(base, 5.0), 0.3), exponent, "pow_negint")
        if form == "float":
            exponent = _literal(self.choose([0.5, 1.5, -0.5, 2.5]))
            return self.power(self.positive(self.bounded(base, 5.0), 0.2), exponent, "pow_float")
        if form == "var":
            exponent = self.bounded(self.expr(depth - 1), 2.0)
            return self.power(self.positive(self.bounded(base, 5.0), 0.2), exponent, "pow_var")
        constants = [0.5, 2.0, 1.7] + [v for v in self.constants.values() if v > 0.1]
        value = self.choose(constants)
        name = next((n for n, v in self.constants.items() if v == value), None)
        const = Expr(name, sp.Float(value), value, value, atomic=True) if name else _literal(value)
        return self.power(const, self.bounded(base, 3.0), "pow_constbase")


# ---------------------------------------------------------------------------------------------
# Programs
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Inputs:
    """Arguments for one call: Python floats, or 1-D arrays for the parameters in `arrays`."""

    values: dict[str, Any]

    def args(self, params: Sequence[str]) -> list[Any]:
        return [self.values[p] for p in params]


class Program:
    """A generated module: its source, its oracle, and how to call it."""

    def __init__(
        self,
        *,
        params: tuple[str, ...],
        body: list[str],
        output: sp.Expr,
        guards: list[sp.Expr],
        definitions: Sequence[tuple[sp.Symbol, sp.Expr]] = (),
        imports: set[str],
        constants: dict[str, float],
        closure: bool,
        decorated: bool,
        wrt: tuple[str, ...] | None,
        array_params: frozenset[str],
        features: set[str],
        required: frozenset[str] = frozenset(),
    ) -> None:
        self.params = params
        self.body = body
        self.output = output
        self.guards = guards
        self.definitions = list(definitions)
        self.imports = imports
        self.constants = constants
        self.closure = closure
        self.decorated = decorated
        self.wrt = wrt
        self.array_params = array_params
        self.features = frozenset(features)
        self.required = required  # features the program promised (its focus spellings)
        self.symbols = tuple(sp.Symbol(p, real=True) for p in params)

    @property
    def differentiated(self) -> tuple[str, ...]:
        """Parameters whose gradient srcgrad must return, in signature order."""
        if self.wrt is None:
            return self.params
        return tuple(p for p in self.params if p in self.wrt)

    # -- source -----------------------------------------------------------------------------------
    def _function(self, name: str, indent: str) -> list[str]:
        lines = []
        if name.endswith("_grad"):
            if self.wrt is None:
                lines.append(f"{indent}@grad")
            else:
                lines.append(f"{indent}@grad(wrt={self.wrt!r})")
        lines.append(f"{indent}def {name}({', '.join(self.params)}):")
        lines += [f"{indent}    {line}" for line in self.body]
        return lines

    @cached_property
    def source(self) -> str:
        lines = ['"""Generated by tests/programs.py."""', "import math", "", "import numpy as np"]
        lines.append("")
        if self.decorated:
            lines.append("from srcgrad import grad")
        if self.imports:
            lines.append(f"from srcgrad.functions import {', '.join(sorted(self.imports))}")
        lines += ["", f"{GLOBAL_NAME} = {self.constants[GLOBAL_NAME]!r}", "", ""]
        names = ["fn", "fn_grad"] if self.decorated else ["fn"]
        if self.closure:
            lines += ["def make():", f"    {CLOSURE_NAME} = {self.constants[CLOSURE_NAME]!r}", ""]
            for name in names:
                lines += [*self._function(name, "    "), ""]
            lines.append(f"    return {', '.join(names)}")
        else:
            for name in names:
                lines += [*self._function(name, ""), "", ""]
        return "\n".join(lines).rstrip() + "\n"

    def load(self, directory: Path) -> tuple[Callable[..., Any], Callable[..., Any] | None]:
        """Import the module; return (plain function, decorated function or None)."""
        module = load_module(self.source, directory)
        if self.closure:
            made = module.make()
            return (made[0], made[1]) if self.decorated else (made, None)
        return module.fn, (module.fn_grad if self.decorated else None)

    def grad_kwargs(self) -> dict[str, Any]:
        return {} if self.wrt is None else {"wrt": self.wrt}

    # -- oracle -----------------------------------------------------------------------------------
    @cached_property
    def _oracle(self) -> tuple[Callable[..., list[Any]], list[Any], list[Any], int]:
        """One mpmath function computing, in statement order, every SSA value, then the
        output, sympy's partial derivatives of the output and of every statement with respect
        to the symbols it reads, and the guards; plus the index plan for the chain rule.

        Why statement by statement: the output written as one expression of the parameters
        inlines every variable at each use, and sympy's differentiation (with its automatic
        assumption queries) can then take minutes on a program of eight statements.
        """
        results: list[sp.Expr] = [self.output]

        def partials(expr: sp.Expr) -> list[tuple[sp.Symbol, int]]:
            entries = []
            for symbol in sorted(expr.free_symbols, key=str):
                results.append(sp.diff(expr, symbol))
                entries.append((symbol, len(results) - 1))
            return entries

        output_plan = partials(self.output)
        statement_plan = [(symbol, partials(expr)) for symbol, expr in self.definitions]
        guard_start = len(results)
        results += self.guards
        definitions = list(self.definitions)
        fn = sp.lambdify(
            self.symbols, results, modules=SYMPY_MODULES, cse=lambda es: (definitions, es)
        )
        return fn, output_plan, statement_plan, guard_start

    def _evaluate(self, point: Sequence[float]) -> list[Any]:
        return self._oracle[0](*[mpmath.mpf(float(v)) for v in point])

    def oracle_point(self, point: Sequence[float]) -> tuple[float, list[float]]:
        """Exact value and gradient (all parameters) at one scalar point, rounded to float64.

        sympy differentiates each statement; the chain rule through the statements is the
        reverse sweep below, at 40 significant digits.
        """
        _, output_plan, statement_plan, _ = self._oracle
        with mpmath.workdps(ORACLE_DPS):
            results = self._evaluate(point)
            adjoint: dict[sp.Symbol, Any] = {}
            for symbol, index in output_plan:
                adjoint[symbol] = adjoint.get(symbol, 0) + results[index]
            for target, entries in reversed(statement_plan):
                weight = adjoint.pop(target, 0)
                for symbol, index in entries:
                    adjoint[symbol] = adjoint.get(symbol, 0) + weight * results[index]
            value = _real(results[0])
            gradient = [_real(adjoint.get(symbol, mpmath.mpf(0))) for symbol in self.symbols]
        return value, gradient

    def guards_ok(self, point: Sequence[float]) -> bool:
        """Whether every kink/pole argument is at least GUARD_MARGIN away from zero here."""
        if not self.guards:
            return True
        with mpmath.workdps(ORACLE_DPS):
            try:
                values = self._evaluate(point)[self._oracle[3] :]
            except ZeroDivisionError:  # a derivative at a pole: certainly not ok
                return False
            return all(abs(_real(v)) >= GUARD_MARGIN for v in values)

    def points(self, inputs: Inputs) -> list[list[float]]:
        """The scalar points a (possibly batched) call evaluates, one per output element."""
        n = max((np.size(v) for v in inputs.values.values()), default=1)
        return [
            [float(np.broadcast_to(inputs.values[p], (n,))[i]) for p in self.params]
            for i in range(n)
        ]

    def __repr__(self) -> str:  # hypothesis prints draws with repr: show the program
        return f"<Program\n{self.describe()}>"

    def describe(self, inputs: Inputs | None = None) -> str:
        text = f"wrt={self.wrt} arrays={sorted(self.array_params)}\n{self.source}"
        if inputs is not None:
            text += f"inputs: {inputs.values!r}\n"
        return text


def _real(value: Any) -> float:
    if isinstance(value, mpmath.mpc):
        raise AssertionError(f"oracle left the real domain: {value} (generator bug)")
    return float(value)


def load_module(source: str, directory: Path) -> Any:
    """Write `source` to a fresh file in `directory` and import it under a unique name.

    srcgrad reads function source with `inspect.getsource`, so programs must live in real files.
    """
    return import_source(source, directory, "srcgrad_generated")


def _assign_source(targets: Sequence[str], values: Sequence[Expr]) -> str:
    return f"{', '.join(targets)} = {', '.join(v.src for v in values)}"


def _fresh_value(b: Builder, value: Expr) -> Expr:
    """Never bind a name to another name's object: `t = x; t += 1` would mutate array x."""
    if value.var:
        return b.binop(b.choose("+*"), value, b.constant())
    return value


@st.composite
def programs(
    draw: Callable[[st.SearchStrategy[Any]], Any],
    *,
    batched: bool = False,
    min_statements: int = 3,
    max_statements: int = 8,
    max_depth: int = 3,
    max_params: int = 3,
    focus: str | None = None,
) -> Program:
    """Random function bodies over 1-3 float parameters, with an exact sympy twin.

    batched: some parameters will be 1-D arrays at call time, so `math` spellings are excluded
    and in-place augmented assignment never touches a caller's array.
    focus: a function name (UNARY or BINARY_FUNCTIONS) that the program calls at least once in
    each of its spellings (srcgrad.functions, NumPy, math, builtin), at random places, so that
    a test parametrized over FUNCTION_NAMES reaches every function in every spelling.
    """
    n_params = draw(st.integers(1, max_params))
    params = tuple(draw(st.permutations(PARAM_POOL))[:n_params])
    closure = draw(st.integers(0, 3)) == 0
    constants = {GLOBAL_NAME: _constant_value(draw)}
    if closure:
        constants[CLOSURE_NAME] = _constant_value(draw)
    shadow_abs = focus != "abs" and draw(st.booleans())  # focus abs: builtin and srcgrad's
    b = Builder(draw, batched, constants, shadow_abs=shadow_abs, focus=focus)
    if b.shadow_abs:
        b.imports.add("abs")
    required: frozenset[str] = frozenset()
    if focus is not None:
        b.pending = b.spellings(focus)
        required = frozenset(f"{kind}:{focus}" for kind in b.pending)
    for p, s in zip(params, (sp.Symbol(p, real=True) for p in params), strict=True):
        b.env[p] = Variable(
            Expr(p, s, -INPUT_BOUND, INPUT_BOUND, atomic=True, var=True), fresh=not batched
        )
    reassign_params = draw(st.booleans())
    locals_pool = [n for n in LOCAL_POOL if n not in params]
    body: list[str] = []

    def targets(include_params: bool) -> list[str]:
        return [n for n in b.env if n not in params or (include_params and reassign_params)]

    for _ in range(draw(st.integers(min_statements, max_statements))):
        kind = b.choose(["assign", "assign", "reassign", "augassign", "augassign", "swap", "pair"])
        unbound = [n for n in locals_pool if n not in b.env]
        depth = draw(st.integers(1, max_depth))
        if kind == "reassign" and targets(True):
            target = b.choose(targets(True))
            current = b.env[target].expr
            own = Expr(target, current.sym, current.lo, current.hi, atomic=True, var=True)
            value = b.cap(b.binop(b.choose("+-*"), b.cap(own), b.expr(depth - 1)))
            b.features.add("reassign-param" if target in params else "reassign")
            body.append(_assign_source([target], [value]))
            b.bind(target, value)
        elif kind == "augassign" and [t for t in targets(True) if b.env[t].fresh]:
            target = b.choose([t for t in targets(True) if b.env[t].fresh])
            body.append(_augassign(b, target, depth))
        elif kind == "swap" and len(targets(True)) >= 2:
            first, second = draw(st.permutations(targets(True)))[:2]
            b.features.add("swap")
            body.append(f"{first}, {second} = {second}, {first}")
            b.env[first], b.env[second] = b.env[second], b.env[first]
        elif kind == "pair" and (len(unbound) + len(targets(False))) >= 2:
            pool = unbound + targets(False)
            first, second = draw(st.permutations(pool))[:2]
            values = [b.cap(_fresh_value(b, b.expr(depth))) for _ in range(2)]
            b.features.add("tuple-assign")
            body.append(_assign_source([first, second], values))
            for name, value in zip((first, second), values, strict=True):
                b.bind(name, value)
        else:
            target = unbound[0] if unbound else b.choose(targets(False) or list(params))
            value = b.cap(_fresh_value(b, b.expr(depth)))
            b.features.add("assign")
            body.append(_assign_source([target], [value]))
            b.bind(target, value)

    assigned = [n for n in b.env if n not in params]
    result = b.expr(2)
    if assigned:
        last = b.env[assigned[-1]].expr
        ref = b.cap(Expr(assigned[-1], last.sym, last.lo, last.hi, atomic=True))
        result = b.binop(b.choose("+-*"), ref, result)
    result = b.cap(result)
    while b.pending:  # focus spellings the body did not happen to use
        result = b.cap(b.binop(b.choose("+-*"), result, b.focus_call(2)))
    body.append(f"return {result.src}")

    wrt = None
    if draw(st.booleans()):
        chosen = draw(st.lists(st.sampled_from(params), min_size=1, unique=True))
        wrt = tuple(chosen)  # any order: fields must still come back in signature order
        b.features.add("wrt")
    array_params: frozenset[str] = frozenset()
    if batched:
        chosen = draw(st.lists(st.sampled_from(params), min_size=1, unique=True))
        array_params = frozenset(chosen)
        if len(array_params) < len(params):
            b.features.add("mixed-float-array")
    decorated = draw(st.integers(0, 3)) == 0
    if closure:
        b.features.add("closure-fn")
    if decorated:
        b.features.add("decorator")
    return Program(
        params=params,
        body=body,
        output=result.sym,
        guards=b.guards,
        definitions=b.definitions,
        imports=b.imports,
        constants=constants,
        closure=closure,
        decorated=decorated,
        wrt=wrt,
        array_params=array_params,
        features=b.features,
        required=required,
    )


def _constant_value(draw: Callable[[st.SearchStrategy[Any]], Any]) -> float:
    magnitude = draw(st.integers(10, 200)) / 100
    return magnitude if draw(st.booleans()) else -magnitude


def _augassign(b: Builder, target: str, depth: int) -> str:
    """`target op= value` for + - * / **, keeping the domain and magnitude invariants."""
    current = b.env[target].expr
    ops = ["+", "-", "*", "/", "**"]
    op = b.choose(ops)
    value = b.expr(depth)
    if op == "/":
        value = b.nonzero(value, 0.3)
    own = Expr(target, current.sym, current.lo, current.hi, atomic=True)
    if op == "**":
        if current.lo >= 0.2 and current.mag <= 5.0:
            value = b.bounded(value, 2.0)
            new = b.power(own, value, "pow_var")
        else:
            value = _literal(2 if current.mag > 9.0 else b.choose([2, 3]))
            new = b.power(own, value, "pow_int")
    else:
        new = b.binop(op, own, value)
    b.features.add(f"augassign:{op}")
    b.bind(target, new)
    return f"{target} {op}= {value.src}"


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------

coordinates = st.floats(-INPUT_BOUND, INPUT_BOUND, allow_nan=False, allow_infinity=False)


@st.composite
def inputs_for(
    draw: Callable[[st.SearchStrategy[Any]], Any],
    program: Program,
    dtype: type = np.float64,
    max_length: int = 4,
) -> Inputs:
    """Python floats for scalar parameters; 1-D arrays of one common length for the others."""
    n = draw(st.integers(1, max_length))
    values: dict[str, Any] = {}
    for p in program.params:
        if p in program.array_params:
            values[p] = np.array(draw(st.lists(coordinates, min_size=n, max_size=n)), dtype=dtype)
        else:
            values[p] = draw(coordinates)
    return Inputs(values)
