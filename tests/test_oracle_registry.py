"""Every registered primitive, alone, in every spelling, against three independent references.

Why: the random programs in test_generated_programs.py mix primitives, so a wrong rule that is
rarely reached, or right under one spelling only (``np.arctan2`` resolved but ``math.atan2``
not), could hide there. Here each primitive of `srcgrad.rules.primitive_names()` is differentiated
on its own, at several points of its domain, spelled as srcgrad.functions, NumPy, `math`, builtin
or operator, on floats and on arrays, and compared with
  * sympy's symbolic derivative, evaluated at 40 digits (the exact answer),
  * autograd, where it defines the primitive (an independent AD implementation), and
  * central finite differences of the plain function in float64.
The table below must name every registered primitive: adding a rule without an oracle fails
`test_every_registered_primitive_has_an_oracle`.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import autograd.numpy as anp
import numpy as np
import pytest
import sympy as sp
from autograd import elementwise_grad
from programs import UNARY, load_module
from support import central_difference

import srcgrad
import srcgrad.rules

SYMPY_RTOL, SYMPY_ATOL = 1e-10, 1e-12
AUTOGRAD_RTOL, AUTOGRAD_ATOL = 1e-9, 1e-12
FD_RTOL, FD_ATOL = 1e-6, 1e-7

try:  # autograd's erf needs SciPy, an optional extra of srcgrad: without it sympy and FD remain
    from autograd.scipy.special import erf as _autograd_erf
except ImportError:  # pragma: no cover - depends on the environment
    _autograd_erf = None


@dataclass(frozen=True)
class Oracle:
    """One primitive: its meaning, where to test it, and how user code may spell it."""

    arity: int
    sym: Callable[..., sp.Expr]  # the sympy meaning
    points: tuple[tuple[float, ...], ...]  # differentiable points inside the domain
    sf: str | None = None  # srcgrad.functions name
    np: str | None = None  # NumPy ufunc name
    math: str | None = None  # math-module name (floats only)
    builtin: str | None = None  # builtin function name
    operator: str | None = None  # operator template, e.g. "{0} ** {1}"
    autograd: Callable[..., Any] | None = None
    spellings: dict[str, str] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        args = ", ".join(f"{{{i}}}" for i in range(self.arity))
        forms = {
            "sf": self.sf and f"{self.sf}({args})",
            "np": self.np and f"np.{self.np}({args})",
            "math": self.math and f"math.{self.math}({args})",
            "builtin": self.builtin and f"{self.builtin}({args})",
            "operator": self.operator,
        }
        self.spellings.update({kind: form for kind, form in forms.items() if form})


# sympy's own kinked functions: the registry evaluates at fixed points by substitution, so
# Abs/Max and their Heaviside/sign derivatives are fine here (unlike in generated programs).
_SYMPY_OVERRIDES: dict[str, Callable[[sp.Expr], sp.Expr]] = {
    "abs": sp.Abs,
    "relu": lambda x: sp.Max(x, 0),
}


def _unary_sym(name: str) -> Callable[[sp.Expr], sp.Expr]:
    return _SYMPY_OVERRIDES.get(name, UNARY[name].sym)


def _sym_cbrt(x: sp.Expr) -> sp.Expr:
    third = sp.Rational(1, 3)
    return sp.Piecewise((x**third, x > 0), (-((-x) ** third), True))


def _u(name: str, points: tuple[float, ...], autograd: Any, **spellings: Any) -> Oracle:
    """A unary srcgrad.functions primitive; NumPy/math names default to the generator's table."""
    spec = UNARY[name]
    spellings.setdefault("np", spec.np_name)
    spellings.setdefault("math", spec.math_name)
    sym = _sym_cbrt if name == "cbrt" else _unary_sym(name)
    return Oracle(1, sym, tuple((p,) for p in points), sf=name, autograd=autograd, **spellings)


EVERYWHERE = (-2.3, -0.7, 0.0, 0.4, 1.9)
INSIDE_ONE = (-0.95, -0.4, 0.0, 0.3, 0.9)
POSITIVE = (0.05, 0.6, 1.0, 1.7, 9.5)
OFF_ZERO = (-1.3, -0.2, 0.4, 2.0)
PAIRS = ((0.3, -0.5), (-1.2, 0.7), (2.0, 1.5), (-0.4, -0.9), (0.0, 1.1))
# (y, x) for arctan2 and (x, y) for hypot: every quadrant and the axes, never the origin, and
# never the branch cut of arctan2 (y = 0, x < 0).
PLANE = ((0.3, 1.2), (1.1, -0.4), (-0.6, -1.5), (-1.0, 0.2), (0.7, 0.0), (0.0, 0.8))
POSITIVE_BASES = ((0.5, 1.7), (2.3, -0.6), (1.4, 3.0), (0.9, -2.1), (3.0, 0.0))


def _sigmoid(v: Any) -> Any:
    return 1.0 / (1.0 + anp.exp(-v))


ORACLES: dict[str, Oracle] = {
    "add": Oracle(2, operator.add, PAIRS, np="add", operator="{0} + {1}", autograd=operator.add),
    "sub": Oracle(
        2, operator.sub, PAIRS, np="subtract", operator="{0} - {1}", autograd=operator.sub
    ),
    "mul": Oracle(
        2, operator.mul, PAIRS, np="multiply", operator="{0} * {1}", autograd=operator.mul
    ),
    "div": Oracle(
        2,
        operator.truediv,
        ((0.3, -0.5), (-1.2, 0.7), (2.0, 1.5), (0.0, -0.9)),
        np="divide",
        operator="{0} / {1}",
        autograd=operator.truediv,
    ),
    "pow": Oracle(
        2, operator.pow, POSITIVE_BASES, operator="{0} ** {1}", builtin="pow", autograd=anp.power
    ),
    "power": Oracle(
        2, operator.pow, POSITIVE_BASES, sf="power", np="power", math="pow", autograd=anp.power
    ),
    "neg": Oracle(
        1,
        operator.neg,
        ((-1.5,), (0.0,), (2.5,)),
        np="negative",
        operator="-{0}",
        autograd=operator.neg,
    ),
    "sin": _u("sin", EVERYWHERE, anp.sin),
    "cos": _u("cos", EVERYWHERE, anp.cos),
    "tan": _u("tan", (-1.2, -0.5, 0.0, 0.3, 1.1), anp.tan),
    "arcsin": _u("arcsin", INSIDE_ONE, anp.arcsin),
    "arccos": _u("arccos", INSIDE_ONE, anp.arccos),
    "arctan": _u("arctan", (*EVERYWHERE, 30.0), anp.arctan),
    "sinh": _u("sinh", EVERYWHERE, anp.sinh),
    "cosh": _u("cosh", EVERYWHERE, anp.cosh),
    "tanh": _u("tanh", (*EVERYWHERE, 5.0), anp.tanh),
    "arcsinh": _u("arcsinh", (*EVERYWHERE, -8.0, 12.0), anp.arcsinh),
    "arccosh": _u("arccosh", (1.05, 1.7, 3.0, 25.0), anp.arccosh),
    "arctanh": _u("arctanh", INSIDE_ONE, anp.arctanh),
    "exp": _u("exp", EVERYWHERE, anp.exp),
    "expm1": _u("expm1", (*EVERYWHERE, 1e-5), anp.expm1),
    "exp2": _u("exp2", EVERYWHERE, anp.exp2),
    "log": _u("log", POSITIVE, anp.log),
    "log1p": _u("log1p", (-0.7, 0.0, 0.01, 1.3, 4.0), anp.log1p),
    "log2": _u("log2", POSITIVE, anp.log2),
    "log10": _u("log10", POSITIVE, anp.log10),
    "sqrt": _u("sqrt", POSITIVE, anp.sqrt),
    "cbrt": _u("cbrt", (-2.7, -0.4, 0.3, 1.0, 5.0), None),  # autograd has no cbrt derivative
    "square": _u("square", EVERYWHERE, anp.square),
    "reciprocal": _u("reciprocal", (-2.0, -0.5, 0.3, 1.7), anp.reciprocal),
    "abs": _u("abs", OFF_ZERO, anp.abs, builtin="abs"),
    "sigmoid": _u("sigmoid", (-20.0, -2.3, 0.0, 0.7, 20.0), _sigmoid),
    "relu": _u("relu", OFF_ZERO, lambda v: anp.maximum(v, 0.0)),
    "softplus": _u("softplus", (-20.0, -2.3, 0.0, 0.7, 20.0), lambda v: anp.logaddexp(0.0, v)),
    "erf": _u("erf", EVERYWHERE, _autograd_erf),
    "arctan2": Oracle(
        2, sp.atan2, PLANE, sf="arctan2", np="arctan2", math="atan2", autograd=anp.arctan2
    ),
    "hypot": Oracle(
        2,
        lambda x, y: sp.sqrt(x**2 + y**2),
        PLANE,
        sf="hypot",
        np="hypot",
        math="hypot",
        autograd=anp.hypot,
    ),
    "maximum": Oracle(2, sp.Max, PAIRS, sf="maximum", np="maximum", autograd=anp.maximum),
    "minimum": Oracle(2, sp.Min, PAIRS, sf="minimum", np="minimum", autograd=anp.minimum),
}

# The differentiable functions the public contract promises, by srcgrad.functions name.
CONTRACT_FUNCTIONS = [
    "sin",
    "cos",
    "tan",
    "arcsin",
    "arccos",
    "arctan",
    "sinh",
    "cosh",
    "tanh",
    "arcsinh",
    "arccosh",
    "arctanh",
    "exp",
    "expm1",
    "exp2",
    "log",
    "log1p",
    "log2",
    "log10",
    "sqrt",
    "cbrt",
    "square",
    "reciprocal",
    "abs",
    "sigmoid",
    "relu",
    "softplus",
    "erf",
    "arctan2",
    "hypot",
    "maximum",
    "minimum",
    "power",
]

CASES = [(name, kind) for name, oracle in ORACLES.items() for kind in oracle.spellings]
ARRAY_CASES = [(name, kind) for name, kind in CASES if kind != "math"]
PARAMS = ("x", "y")


def _case_id(case: tuple[str, str]) -> str:
    return f"{case[0]}-{case[1]}"


# ------------------------------------------------------------------------------------------
# Coverage of the registry
# ------------------------------------------------------------------------------------------


def test_every_registered_primitive_has_an_oracle() -> None:
    """A rule added to srcgrad without an entry here would go untested: fail instead."""
    registered = set(srcgrad.rules.primitive_names())
    missing = sorted(registered - set(ORACLES) - set(ARRAY_ORACLES))
    assert not missing, f"registered primitives without an oracle entry: {missing}"


def test_every_contract_function_exists_and_has_an_oracle() -> None:
    """The documented functions must exist in srcgrad.functions and be checked below."""
    import srcgrad.functions as functions

    absent = [name for name in CONTRACT_FUNCTIONS if not callable(getattr(functions, name, None))]
    assert not absent, f"srcgrad.functions lacks {absent}"
    spelled = {oracle.sf for oracle in ORACLES.values()}
    assert set(CONTRACT_FUNCTIONS) <= spelled, set(CONTRACT_FUNCTIONS) - spelled


# ------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------


def _load(name: str, kind: str, module_dir: Path) -> tuple[Callable[..., Any], Any]:
    """Write `def f(x[, y]): return <spelled primitive>` to a file; return (plain, srcgrad)."""
    oracle = ORACLES[name]
    params = PARAMS[: oracle.arity]
    body = oracle.spellings[kind].format(*params)
    header = "import math\n\nimport numpy as np\n"
    if kind == "sf":
        header += f"\nfrom srcgrad.functions import {oracle.sf}\n"
    source = f"{header}\n\ndef f({', '.join(params)}):\n    return {body}\n"
    module = load_module(source, module_dir)
    return module.f, srcgrad.grad(module.f)


def _exact(name: str, point: tuple[float, ...]) -> tuple[float, list[float]]:
    """Value and gradient of the primitive at one point, from sympy at 40 digits."""
    oracle = ORACLES[name]
    symbols = sp.symbols(PARAMS[: oracle.arity], real=True)
    expr = oracle.sym(*symbols)
    at = {s: sp.Float(v, 50) for s, v in zip(symbols, point, strict=True)}
    results = [expr, *(sp.diff(expr, s) for s in symbols)]
    floats = [float(sp.N(r.subs(at), 40)) for r in results]
    return floats[0], floats[1:]


def _central_difference(plain: Callable[..., Any], args: list[Any], i: int) -> Any:
    """d sum(plain) / d args[i], one element at a time (floats are one element)."""

    def at(shifted: Any) -> float:
        return float(np.sum(plain(*args[:i], shifted, *args[i + 1:])))

    base = float(args[i]) if np.ndim(args[i]) == 0 else args[i]
    return central_difference(at, base)


def _autograd(name: str, args: list[Any], i: int) -> Any:
    """d sum / d args[i] from autograd (per element), or None where it has no rule."""
    reference = ORACLES[name].autograd
    if reference is None:
        return None
    arrays = [np.asarray(a, dtype=np.float64) for a in args]
    grad = elementwise_grad(reference, i)(*np.broadcast_arrays(*arrays))
    return np.sum(grad) if np.ndim(args[i]) == 0 else grad


def _check_gradient(
    what: str, gradient: Any, given: Any, exact: Any, fd: Any, autograd: Any
) -> None:
    assert np.shape(gradient) == np.shape(given), f"{what}: shape {np.shape(gradient)}"
    if np.ndim(given) == 0:
        assert isinstance(gradient, float | np.floating), f"{what}: {type(gradient)}"
    else:
        assert gradient.dtype == np.float64, f"{what}: dtype {gradient.dtype}"
    np.testing.assert_allclose(gradient, exact, SYMPY_RTOL, SYMPY_ATOL, err_msg=f"{what} sympy")
    np.testing.assert_allclose(gradient, fd, FD_RTOL, FD_ATOL, err_msg=f"{what} finite diff")
    if autograd is not None:
        np.testing.assert_allclose(
            gradient, autograd, AUTOGRAD_RTOL, AUTOGRAD_ATOL, err_msg=f"{what} autograd"
        )


def check_call(name: str, plain: Callable[..., Any], g: Any, args: list[Any]) -> None:
    """One call of the srcgrad function against all references (args: floats or arrays)."""
    oracle = ORACLES[name]
    value, grads = g(*args)
    assert grads._fields == PARAMS[: oracle.arity]
    np.testing.assert_allclose(value, plain(*args), rtol=1e-13, atol=1e-300)
    n = max(np.size(a) for a in args)
    points = [tuple(float(np.broadcast_to(a, (n,))[k]) for a in args) for k in range(n)]
    exact = [_exact(name, p) for p in points]
    np.testing.assert_allclose(value, np.reshape([v for v, _ in exact], np.shape(value)), 1e-13)
    for i, param in enumerate(grads._fields):
        per_point = np.array([d[i] for _, d in exact])
        expected = per_point if np.ndim(args[i]) else per_point.sum()
        what = f"{name} d/d{param} at {args}"
        fd = _central_difference(plain, args, i)
        _check_gradient(
            what, getattr(grads, param), args[i], expected, fd, _autograd(name, args, i)
        )


# ------------------------------------------------------------------------------------------
# The checks
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_primitive_on_floats(case: tuple[str, str], module_dir: Path) -> None:
    """Python-float arguments, one point at a time: float gradients, exact to ~1e-10."""
    name, kind = case
    plain, g = _load(name, kind, module_dir)
    for point in ORACLES[name].points:
        check_call(name, plain, g, list(point))


@pytest.mark.parametrize("case", ARRAY_CASES, ids=_case_id)
def test_primitive_on_arrays(case: tuple[str, str], module_dir: Path) -> None:
    """All points as one float64 array per argument: per-element gradients."""
    name, kind = case
    plain, g = _load(name, kind, module_dir)
    columns = list(zip(*ORACLES[name].points, strict=True))
    check_call(name, plain, g, [np.array(c) for c in columns])


@pytest.mark.parametrize("case", [c for c in ARRAY_CASES if ORACLES[c[0]].arity == 2], ids=_case_id)
@pytest.mark.parametrize("array_arg", [0, 1], ids=["array-float", "float-array"])
def test_binary_primitive_broadcasting_a_float(
    case: tuple[str, str], array_arg: int, module_dir: Path
) -> None:
    """One array argument and one float: the float's gradient is the sum over elements."""
    name, kind = case
    plain, g = _load(name, kind, module_dir)
    points = ORACLES[name].points
    # Keep the float argument at a value that is valid with every partner in the table.
    fixed = points[0][1 - array_arg]
    column = np.array([p[array_arg] for p in points if _valid_pair(name, p, array_arg, fixed)])
    args: list[Any] = [None, None]
    args[array_arg], args[1 - array_arg] = column, fixed
    check_call(name, plain, g, args)


def _valid_pair(name: str, point: tuple[float, ...], array_arg: int, fixed: float) -> bool:
    """Whether replacing the other coordinate of `point` by `fixed` stays differentiable."""
    pair = list(point)
    pair[1 - array_arg] = fixed
    x, y = pair
    if name in ("maximum", "minimum"):
        return abs(x - y) > 0.1
    if name == "div":
        return abs(y) > 0.1
    if name == "arctan2":
        return not (abs(x) < 0.1 and y <= 0.1)  # (y, x): stay off the origin and the cut
    if name == "hypot":
        return abs(x) + abs(y) > 0.1
    return True


def test_builtin_abs_on_arrays_and_floats_agrees_with_np_abs(module_dir: Path) -> None:
    """Builtin abs is resolved like np.abs: d|x|/dx = sign(x), for floats and arrays."""
    plain, g = _load("abs", "builtin", module_dir)
    x = np.array([-1.5, -0.25, 0.5, 3.0])
    _, grads = g(x)
    np.testing.assert_array_equal(grads.x, np.sign(x))
    _, grads = g(-0.75)
    assert grads.x == -1.0
    assert plain(-0.75) == 0.75


# ------------------------------------------------------------------------------------------
# Array primitives (reductions, products, shape changes, indexing, selection)
# ------------------------------------------------------------------------------------------
# These are not elementwise, so sympy's scalar derivative does not apply directly; the
# independent reference is autograd running the *same expression* with `np` bound to
# autograd.numpy, or, where autograd has no rule or a wrong one (np.prod at an exact zero
# divides by zero), a closed form written here. Central differences check every case too.


@dataclass(frozen=True)
class ArrayCase:
    """`def f(<params>): return <expr>` at fixed inputs, with its non-FD reference."""

    expr: str
    inputs: dict[str, Any]  # parameter -> value (a shape tuple means: seeded random values)
    autograd: str | None = ""  # expression for autograd ("" = expr; None = use `expected`)
    expected: Callable[..., dict[str, Any]] | None = None  # closed-form gradient of sum
    prelude: str = ""  # module-level statements the expression may use (with `np` imported)

    def values(self) -> dict[str, Any]:
        rng = np.random.default_rng(sum(map(ord, self.expr)))  # fixed, case-specific inputs
        return {
            name: rng.uniform(-2.0, 2.0, size=v) if isinstance(v, tuple) else v
            for name, v in self.inputs.items()
        }


M23, M32, M34, V2, V3, V6 = (2, 3), (3, 2), (3, 4), (2,), (3,), (6,)
CLIPPED = np.array([-1.7, -0.3, 0.1, 0.45, 1.2])


def _prod_of_others(z: Any) -> dict[str, Any]:
    return {"z": np.array([np.prod(np.delete(z, i)) for i in range(z.size)])}


def _clip_expected(v: Any, lo: float, hi: float) -> dict[str, Any]:
    inside = (v > lo) & (v < hi)
    return {"v": inside.astype(float), "lo": float(np.sum(v < lo)), "hi": float(np.sum(v > hi))}


def _inf_norm_expected(v: Any) -> dict[str, Any]:
    g = np.zeros_like(v)
    k = int(np.argmax(np.abs(v)))
    g[k] = np.sign(v[k])
    return {"v": g}


ARRAY_ORACLES: dict[str, list[Any]] = {  # ArrayCase, or pytest.param(ArrayCase, marks=...)
    "sum": [
        ArrayCase("np.sum(x * y)", {"x": M23, "y": M23}),
        ArrayCase("x.sum(axis=0) * w", {"x": M23, "w": V3}),
        ArrayCase("np.sum(x, axis=1, keepdims=True) * x", {"x": M23}),
        ArrayCase("np.sum(np.sin(x), axis=-1) * mu", {"x": M23, "mu": 0.7}),
    ],
    "mean": [
        ArrayCase("np.mean(x, axis=0)", {"x": M23}),
        ArrayCase("x.mean() * w", {"x": M23, "w": V3}),
    ],
    "max": [
        ArrayCase("np.max(x, axis=1)", {"x": M23}),
        ArrayCase("x.max() * w", {"x": M23, "w": V3}),
        ArrayCase("np.amax(x, axis=0, keepdims=True) * x", {"x": M23}),
    ],
    "min": [
        ArrayCase("np.min(x, axis=0)", {"x": M23}),
        ArrayCase("x.min() * mu", {"x": M23, "mu": -1.3}),
    ],
    "prod": [
        ArrayCase("np.prod(x, axis=0)", {"x": M23}),
        ArrayCase("x.prod() * mu", {"x": M23, "mu": 0.4}),
        # d prod / dz_i is the product of the others: exact at a zero, where out / z fails.
        ArrayCase("np.prod(z)", {"z": np.array([1.5, 0.0, -2.0, 0.7])}, None, _prod_of_others),
        ArrayCase("np.prod(z)", {"z": np.array([0.0, 2.0, 0.0])}, None, _prod_of_others),
    ],
    "norm": [
        ArrayCase("np.linalg.norm(x)", {"x": M23}),
        ArrayCase("np.linalg.norm(x, axis=1) * w", {"x": M23, "w": V2}),
        ArrayCase(
            "np.linalg.norm(v, ord=1)",
            {"v": np.array([1.0, -2.0, 0.5])},
            None,
            lambda v: {"v": np.sign(v)},
        ),
        ArrayCase(
            "np.linalg.norm(v, ord=np.inf)",
            {"v": np.array([1.0, -2.0, 0.5])},
            None,
            _inf_norm_expected,
        ),
    ],
    "matmul": [
        ArrayCase("x @ y", {"x": M23, "y": M34}),
        ArrayCase("v @ x", {"v": V2, "x": M23}),
        ArrayCase("np.matmul(x, w)", {"x": M23, "w": V3}),
    ],
    "dot": [
        ArrayCase("np.dot(v, w)", {"v": V3, "w": V3}),
        ArrayCase("np.dot(x, y)", {"x": M23, "y": M34}),
        ArrayCase("v.dot(w)", {"v": V3, "w": V3}, autograd="np.dot(v, w)"),
    ],
    "outer": [ArrayCase("np.outer(v, w)", {"v": V2, "w": V3})],
    "einsum": [
        ArrayCase("np.einsum('ij,jk->ik', x, y)", {"x": M23, "y": M34}),
        ArrayCase("np.einsum('i,i->', v, w)", {"v": V3, "w": V3}),
        ArrayCase("np.einsum('ij->j', x) * w", {"x": M23, "w": V3}),
        ArrayCase(  # a repeated index (the diagonal): autograd cannot do it
            "np.einsum('ii->i', s)", {"s": (3, 3)}, None, lambda s: {"s": np.eye(3)}
        ),
    ],
    "transpose": [
        ArrayCase("np.transpose(x) * y", {"x": M23, "y": M32}),
        ArrayCase("x.transpose() @ x", {"x": M23}),
        ArrayCase("np.transpose(t, (1, 0, 2)) * u", {"t": (2, 3, 2), "u": (3, 2, 2)}),
    ],
    "reshape": [
        ArrayCase("np.reshape(x, (3, 2)) * y", {"x": M23, "y": M32}),
        ArrayCase("x.reshape((6,)) * r", {"x": M23, "r": V6}),
        ArrayCase("x.reshape(3, 2) * y", {"x": M23, "y": M32}),
    ],
    "expand_dims": [ArrayCase("np.expand_dims(w, 0) * x", {"w": V3, "x": M23})],
    "squeeze": [
        ArrayCase("np.squeeze(r) * w", {"r": (1, 3), "w": V3}),
        ArrayCase("np.squeeze(r, axis=0) * w", {"r": (1, 3), "w": V3}),
    ],
    "ravel": [
        ArrayCase("np.ravel(x) * r", {"x": M23, "r": V6}),
        ArrayCase("x.ravel() * r", {"x": M23, "r": V6}),
        ArrayCase("x.flatten() * r", {"x": M23, "r": V6}),
    ],
    "concatenate": [
        ArrayCase("np.concatenate([v, w * 2.0]) * r[:5]", {"v": V2, "w": V3, "r": V6}),
        ArrayCase("np.concatenate((x, y), axis=1)", {"x": M23, "y": (2, 2)}),
    ],
    "stack": [
        ArrayCase("np.stack([v, w]) * x", {"v": V3, "w": V3, "x": M23}),
        ArrayCase("np.stack([v, w], axis=1) * y", {"v": V3, "w": V3, "y": M32}),
    ],
    "getitem": [
        ArrayCase("x[0] * w", {"x": M23, "w": V3}),
        ArrayCase("x[:, 1:] * x[:, :2]", {"x": M23}),
        ArrayCase("w[::-1] * w", {"w": V3}),
        ArrayCase("x[-1, 0] * w", {"x": M23, "w": V3}),
        # A repeated index must accumulate (np.add.at, not assignment).
        ArrayCase("w[IDX] * r[:3]", {"w": V3, "r": V6}, prelude="IDX = np.array([0, 0, 2])"),
        ArrayCase("w[[0, 0, 2]]", {"w": V3}),  # a list literal index, repeated entries
        ArrayCase("x[x > 0.0] ** 2", {"x": M23}),
    ],
    "where": [
        ArrayCase("np.where(x > y, x * y, x - y)", {"x": M23, "y": M23}),
        ArrayCase("np.where(w > 0.0, np.sin(w), w ** 2)", {"w": V6}),
    ],
    "clip": [
        ArrayCase("np.clip(v, -0.5, 0.5)", {"v": CLIPPED}),
        ArrayCase("v.clip(-0.5, 0.5) * v", {"v": CLIPPED}),
        ArrayCase(
            "np.clip(v, lo, hi)", {"v": CLIPPED, "lo": -0.5, "hi": 0.5}, None, _clip_expected
        ),
    ],
}


def _array_case_params() -> list[Any]:
    """One pytest param per case, keeping the marks of cases wrapped in pytest.param."""
    params = []
    for name, cases in ARRAY_ORACLES.items():
        for case in cases:
            marks = ()
            if not isinstance(case, ArrayCase):  # a pytest.param carrying marks
                (case,), marks = case.values, case.marks
            params.append(pytest.param(name, case, marks=marks, id=f"{name}-{case.expr}"))
    return params


def _fd_of_sum(plain: Callable[..., Any], values: dict[str, Any], name: str) -> Any:
    params = list(values)
    args = [values[p] for p in params]
    return _central_difference(plain, args, params.index(name))


def _autograd_of_sum(spec: ArrayCase, values: dict[str, Any], name: str) -> Any:
    from autograd import grad

    params = list(values)
    namespace: dict[str, Any] = {"np": anp}
    exec(spec.prelude, namespace)  # the prelude and expression come from the table above

    def total(*args: Any) -> Any:
        scope = dict(zip(params, args, strict=True))
        return anp.sum(eval(spec.autograd or spec.expr, namespace, scope))

    return grad(total, params.index(name))(*[values[p] for p in params])


@pytest.mark.parametrize(("name", "spec"), _array_case_params())
def test_array_primitive(name: str, spec: ArrayCase, module_dir: Path) -> None:
    """Gradient of sum(output) against autograd (or a closed form) and finite differences."""
    values = spec.values()
    params = list(values)
    source = (
        f"import numpy as np\n\n{spec.prelude}\n\n\n"
        f"def f({', '.join(params)}):\n    return {spec.expr}\n"
    )
    plain = load_module(source, module_dir).f
    value, grads = srcgrad.grad(plain)(*values.values())
    assert grads._fields == tuple(params)
    expected_value = plain(*values.values())
    assert np.shape(value) == np.shape(expected_value)
    np.testing.assert_allclose(value, expected_value, rtol=1e-13, atol=1e-14)
    closed_form = spec.expected(**values) if spec.expected else None
    for p in params:
        gradient, given = getattr(grads, p), values[p]
        what = f"{spec.expr}: d/d{p}"
        assert np.shape(gradient) == np.shape(given), f"{what}: shape {np.shape(gradient)}"
        if isinstance(given, np.ndarray):
            assert gradient.dtype == np.float64, what
        fd = _fd_of_sum(plain, values, p)
        np.testing.assert_allclose(gradient, fd, FD_RTOL, FD_ATOL, err_msg=f"{what} vs FD")
        reference = closed_form[p] if closed_form else _autograd_of_sum(spec, values, p)
        np.testing.assert_allclose(
            gradient, reference, AUTOGRAD_RTOL, AUTOGRAD_ATOL, err_msg=f"{what} vs reference"
        )
