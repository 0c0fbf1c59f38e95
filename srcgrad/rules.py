"""The derivative registry: what every primitive computes and what its derivative is.

One row per primitive. A row says how the generated code computes the primitive on Python
floats (``scalar``) and on arrays (``array``), as a Python expression template whose ``_0``,
``_1`` stand for the arguments, and gives its **partial derivatives** as an expression of the
arguments and, where that is cheaper, of the output ``out`` (``exp``'s derivative is ``out``).

Elementwise primitives are described by partials rather than by a backward function: reverse
mode multiplies a partial by the incoming adjoint, forward mode by the incoming tangent, so one
row serves both. The partials are written with the same operations they describe (``cos(x)``
builds a graph node), so they are hash-consed with the forward computation: the ``exp(x)`` of the
forward pass is the one the derivative reuses.

User functions get their derivative from a ``foo_derive`` function beside ``foo`` or from
`register`; both appear by name in the generated code.
"""

from __future__ import annotations

import builtins
import math
import operator
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import functions as F
from .graph import Node

Partials = Callable[..., Any]


@dataclass(frozen=True)
class Param:
    """A parameter of an array primitive's Python signature (for binding keyword arguments)."""

    name: str
    default: Any = NotImplemented  # NotImplemented: required


@dataclass(frozen=True)
class Primitive:
    """One operation the graph may contain, with its code and its derivative.

    Elementwise primitives give ``partials``; array primitives (reductions, products, shape
    changes) give ``vjp``, which maps the adjoint of the result to one contribution per
    argument, already shaped like that argument (None for arguments without a gradient).
    """

    name: str
    arity: int  # -1: any number of arguments
    scalar: str  # expression template on Python floats
    array: str  # expression template on arrays
    partials: Partials | None  # (*args, out) -> partial or tuple of partials; None: zero gradient
    fold: Callable[..., Any] | None = None  # evaluates the op on constants at build time
    commutative: bool = False
    scalar_choice: Callable[[tuple[Node, ...]], str] | None = field(default=None, repr=False)
    vjp: Callable[..., Any] | None = field(default=None, repr=False)
    signature: tuple[Param, ...] | None = None  # array primitives: how calls bind arguments
    elementwise: bool = True
    needs_full_adjoint: bool = True  # vjp wants the adjoint at the result's full shape
    # Forward mode for non-elementwise primitives: (tangents, *args, out) -> tangent of the
    # result (None: zero). Tangents arrive at their argument's full shape unless
    # ``full_tangents`` is False (rules that broadcast them themselves, like ``sum_to``).
    jvp: Callable[..., Any] | None = field(default=None, repr=False)
    full_tangents: bool = True

    def scalar_template(self, args: tuple[Node, ...]) -> str:
        """The float-path template for these arguments (``x ** 2`` beats ``math.pow``)."""
        return self.scalar_choice(args) if self.scalar_choice else self.scalar

    @property
    def differentiable(self) -> bool:
        return self.partials is not None or self.vjp is not None


PRIMITIVES: dict[str, Primitive] = {}


def _op(name: str) -> Callable[..., Node]:
    """A graph builder for primitive ``name``, for writing partials as formulas."""

    def build(*args: Any) -> Node:
        graph = next(a.graph for a in args if isinstance(a, Node))
        return graph.apply(name, *args)

    build.__name__ = name
    return build


def defprim(
    name: str,
    arity: int,
    scalar: str,
    array: str,
    partials: Partials | None,
    fold: Callable[..., Any] | None = None,
    *,
    commutative: bool = False,
    scalar_choice: Callable[[tuple[Node, ...]], str] | None = None,
) -> None:
    """Add a row to the table."""
    PRIMITIVES[name] = Primitive(
        name, arity, scalar, array, partials, fold, commutative, scalar_choice
    )


# Builders used by the partials below.
cos, sin, log, exp, sqrt = _op("cos"), _op("sin"), _op("log"), _op("exp"), _op("sqrt")
sinh, cosh, sigmoid = _op("sinh"), _op("cosh"), _op("sigmoid")
sign, step, tie = _op("sign"), _op("step"), _op("tie_weight")

LN2, LN10, TWO_OVER_SQRT_PI = math.log(2.0), math.log(10.0), 2.0 / math.sqrt(math.pi)


def _pow_scalar(args: tuple[Node, ...]) -> str:
    exponent = args[1]
    if exponent.is_const and float(exponent.value).is_integer():
        return "_0 ** _1"  # exact, fast, and never complex for an integer exponent
    return "math.pow(_0, _1)"  # raises on a negative base, so the NumPy path answers nan


# --- arithmetic ---------------------------------------------------------------------------------
#        name   arity  on floats         on arrays       partials (x, [y,] out)
defprim("add",  2, "_0 + _1",           "_0 + _1",      lambda x, y, out: (1.0, 1.0), operator.add, commutative=True)
defprim("sub",  2, "_0 - _1",           "_0 - _1",      lambda x, y, out: (1.0, -1.0), operator.sub)
defprim("mul",  2, "_0 * _1",           "_0 * _1",      lambda x, y, out: (y, x), operator.mul, commutative=True)
defprim("div",  2, "_0 / _1",           "_0 / _1",      lambda x, y, out: (1.0 / y, -out / y), operator.truediv)
defprim("pow",  2, "math.pow(_0, _1)",  "_0 ** _1",     lambda x, y, out: (y * x ** (y - 1), out * log(x)), F.power, scalar_choice=_pow_scalar)
defprim("neg",  1, "-_0",               "-_0",          lambda x, out: -1.0, operator.neg)

# --- elementary functions -------------------------------------------------------------------------
defprim("sin",     1, "math.sin(_0)",    "np.sin(_0)",     lambda x, out: cos(x), F.sin)
defprim("cos",     1, "math.cos(_0)",    "np.cos(_0)",     lambda x, out: -sin(x), F.cos)
defprim("tan",     1, "math.tan(_0)",    "np.tan(_0)",     lambda x, out: 1.0 + out * out, F.tan)
defprim("arcsin",  1, "math.asin(_0)",   "np.arcsin(_0)",  lambda x, out: 1.0 / sqrt(1.0 - x * x), F.arcsin)
defprim("arccos",  1, "math.acos(_0)",   "np.arccos(_0)",  lambda x, out: -1.0 / sqrt(1.0 - x * x), F.arccos)
defprim("arctan",  1, "math.atan(_0)",   "np.arctan(_0)",  lambda x, out: 1.0 / (1.0 + x * x), F.arctan)
defprim("sinh",    1, "math.sinh(_0)",   "np.sinh(_0)",    lambda x, out: cosh(x), F.sinh)
defprim("cosh",    1, "math.cosh(_0)",   "np.cosh(_0)",    lambda x, out: sinh(x), F.cosh)
defprim("tanh",    1, "math.tanh(_0)",   "np.tanh(_0)",    lambda x, out: 1.0 - out * out, F.tanh)
defprim("arcsinh", 1, "math.asinh(_0)",  "np.arcsinh(_0)", lambda x, out: 1.0 / sqrt(x * x + 1.0), F.arcsinh)
defprim("arccosh", 1, "math.acosh(_0)",  "np.arccosh(_0)", lambda x, out: 1.0 / sqrt(x * x - 1.0), F.arccosh)
defprim("arctanh", 1, "math.atanh(_0)",  "np.arctanh(_0)", lambda x, out: 1.0 / (1.0 - x * x), F.arctanh)
defprim("exp",     1, "math.exp(_0)",    "np.exp(_0)",     lambda x, out: out, F.exp)
defprim("expm1",   1, "math.expm1(_0)",  "np.expm1(_0)",   lambda x, out: out + 1.0, F.expm1)
defprim("exp2",    1, "sg.exp2(_0)",     "np.exp2(_0)",    lambda x, out: out * LN2, F.exp2)
defprim("log",     1, "math.log(_0)",    "np.log(_0)",     lambda x, out: 1.0 / x, F.log)
defprim("log1p",   1, "math.log1p(_0)",  "np.log1p(_0)",   lambda x, out: 1.0 / (1.0 + x), F.log1p)
defprim("log2",    1, "math.log2(_0)",   "np.log2(_0)",    lambda x, out: 1.0 / (x * LN2), F.log2)
defprim("log10",   1, "math.log10(_0)",  "np.log10(_0)",   lambda x, out: 1.0 / (x * LN10), F.log10)
defprim("sqrt",    1, "math.sqrt(_0)",   "np.sqrt(_0)",    lambda x, out: 0.5 / out, F.sqrt)
defprim("cbrt",    1, "sg.cbrt(_0)",     "np.cbrt(_0)",    lambda x, out: 1.0 / (3.0 * out * out), F.cbrt)
defprim("square",  1, "_0 * _0",         "np.square(_0)",  lambda x, out: 2.0 * x, F.square)
defprim("reciprocal", 1, "1.0 / _0",     "1.0 / _0",       lambda x, out: -out * out, F.reciprocal)
defprim("abs",     1, "abs(_0)",         "np.abs(_0)",     lambda x, out: sign(x), F.abs)
defprim("sigmoid", 1, "sg.sigmoid(_0)",  "sg.sigmoid(_0)", lambda x, out: out * (1.0 - out), F.sigmoid)
defprim("relu",    1, "sg.relu(_0)",     "np.maximum(_0, 0.0)", lambda x, out: step(x), F.relu)
defprim("softplus", 1, "sg.softplus(_0)", "np.logaddexp(0.0, _0)", lambda x, out: sigmoid(x), F.softplus)
defprim("erf",     1, "math.erf(_0)",    "sg.erf(_0)",     lambda x, out: TWO_OVER_SQRT_PI * exp(-(x * x)), F.erf)
defprim("arctan2", 2, "math.atan2(_0, _1)", "np.arctan2(_0, _1)", lambda y, x, out: (x / (x * x + y * y), -y / (x * x + y * y)), F.arctan2)
defprim("hypot",   2, "math.hypot(_0, _1)", "np.hypot(_0, _1)", lambda x, y, out: (x / out, y / out), F.hypot, commutative=True)
defprim("maximum", 2, "sg.maximum(_0, _1)", "np.maximum(_0, _1)", lambda x, y, out: (tie(x, y), tie(y, x)), F.maximum, commutative=True)
defprim("minimum", 2, "sg.minimum(_0, _1)", "np.minimum(_0, _1)", lambda x, y, out: (tie(y, x), tie(x, y)), F.minimum, commutative=True)

# --- piecewise-constant helpers: used by partials above, no gradient of their own ----------------
defprim("sign",  1, "sg.sign(_0)",  "np.sign(_0)", None, np.sign)
defprim("step",  1, "sg.step(_0)",  "sg.step(_0)", None)  # 1 where x > 0, else 0
defprim("tie_weight", 2, "sg.tie_weight(_0, _1)", "sg.tie_weight(_0, _1)", None)  # 1, 1/2 or 0

# --- engine operations: inserted by srcgrad itself, never written by users ------------------------
def _sum_terms(*terms: Node | None) -> Node | None:
    """The sum of the terms that are not None (None if all are): a linear rule's tangent."""
    present = [t for t in terms if t is not None]
    if not present:
        return None
    total = present[0]
    for term in present[1:]:
        total = total + term
    return total


def linear_in_first(name: str) -> Callable[..., Any]:
    """The forward rule of an operation linear in its first argument, the others fixed
    (shape references, axes, masks): apply the same operation to the tangent."""
    build = _op(name)
    return lambda t, first, *rest, out: None if t[0] is None else build(t[0], *rest)


def _sum_product_jvp(t: tuple, a: Node, b: Node, x: Node, n: Node, out: Node) -> Node | None:
    return _sum_terms(None if t[0] is None else _op("sum_product")(t[0], b, x, n),
                      None if t[1] is None else _op("sum_product")(a, t[1], x, n))


# Their reverse rules (vjp) let srcgrad differentiate a gradient again, in reverse mode: the
# adjoint of a broadcast sum is a broadcast, and the adjoint of a broadcast is a sum.
def _sum_to_vjp(g: Node, v: Node, x: Node, n: Node, out: Node) -> tuple:
    return (_op("sum_to")(g, v, n), None, None)


def _sum_product_vjp(g: Node, a: Node, b: Node, x: Node, n: Node, out: Node) -> tuple:
    return (_op("sum_to")(g * b, a, n), _op("sum_to")(g * a, b, n), None, None)


def _engine(name: str, arity: int, scalar: str, array: str, vjp: Callable[..., Any],
            jvp: Callable[..., Any]) -> None:
    PRIMITIVES[name] = Primitive(name, arity, scalar, array, None, elementwise=False, vjp=vjp,
                                 needs_full_adjoint=False, jvp=jvp, full_tangents=False)


# sum_to(v, x, n): v (broadcastable to n) summed over the axes that n broadcast x along.
_engine("sum_to", 3, "_0", "sg.sum_to(_0, _1, _2)", _sum_to_vjp, linear_in_first("sum_to"))
# sum_product(a, b, x, n) = sum_to(a * b, x, n), as a dot product where it can be one.
_engine("sum_product", 4, "_0 * _1", "sg.sum_product(_0, _1, _2, _3)", _sum_product_vjp,
        _sum_product_jvp)
# reduce_to(v, out): a forward-mode tangent summed down to the shape of ``out`` (a user function
# may return a scalar of an array argument, so partial * tangent can be bigger than its result).
_engine("reduce_to", 2, "_0", "sg.reduce_to(_0, _1)",
        lambda g, v, shape_of, out: (_op("sum_to")(g, v, shape_of), None),
        linear_in_first("reduce_to"))
# alias(x): x itself, as a distinct node: the parameters of an inlined `grad` call, so that
# f(x, x) differentiates each parameter separately. Free in the generated code.
PRIMITIVES["alias"] = Primitive("alias", 1, "_0", "_0", lambda x, out: 1.0)
# A user function or its derivative, by name. Not elementwise: `foo_derive` may describe a
# function of an array that returns a scalar (a loss) as well as an elementwise one.
PRIMITIVES["call"] = Primitive("call", -1, "", "", None, elementwise=False)
# loop(start, stop, step, *initial, *invariants): a `for` loop, its body in attrs[0] (a
# `graph.LoopBody`); loop_output(loop) is carried variable attrs[0] after the loop. Both modes
# differentiate them as one region (`reverse.py`, `forward.py`), not through this table.
for _name in ("loop", "loop_output", "loop_backward", "loop_adjoint", "branch", "branch_output",
              "branch_backward", "branch_adjoint"):
    PRIMITIVES[_name] = Primitive(_name, -1, "", "", None, elementwise=False)
# item(t): element attrs[0] of a tuple/list/dict t (a structured parameter, or the partials a
# user `_derive` returns); attrs[1] is the tuple's length, so the code can unpack it.
PRIMITIVES["item"] = Primitive("item", 1, "", "", None, elementwise=False)


def partials_of(node: Node) -> tuple[Node | None, ...]:
    """One partial derivative per argument of an elementwise node or a user call (None: no
    gradient flows); both modes multiply them by what flows along the edge."""
    graph = node.graph
    if node.op == "call":
        user: UserFunction = node.attrs[0]
        if user.derivative is None:
            raise NoDerivativeRule(node, f"differentiating `{user.label}` again needs its own "
                                   f"derivative: define `{user.label}_derive` beside it or "
                                   f"`srcgrad.register({user.label}, ...)`")
        derivative = graph.apply("call", *node.args, attrs=(user.derivative,))
        if len(node.args) == 1:
            return (derivative,)
        count = len(node.args)
        return tuple(graph.apply("item", derivative, attrs=(i, count)) for i in range(count))
    primitive = PRIMITIVES[node.op]
    if primitive.partials is None:
        return (None,) * len(node.args)
    partials = primitive.partials(*node.args, node)
    if not isinstance(partials, tuple):
        partials = (partials,)
    return tuple(None if p is None else graph.lift(p) for p in partials)


def numpy_spelling(op: str) -> str:
    """How a user writes primitive ``op`` (`np.prod`, `np.linalg.norm`), for messages."""
    return "np.linalg.norm" if op == "norm" else f"np.{op}"


class NoDerivativeRule(Exception):
    """A node whose derivative srcgrad does not know (raised while differentiating; the
    transform turns it into a `TransformError` pointing at the node's source line)."""

    def __init__(self, node: Node, reason: str) -> None:
        super().__init__(reason)
        self.node = node
        self.reason = reason


ENGINE_OPS = frozenset({"sum_to", "sum_product", "reduce_to", "expand_to", "call", "item",
                        "alias", "loop", "loop_output", "loop_backward", "loop_adjoint",
                        "branch", "branch_output", "branch_backward", "branch_adjoint"})
HELPER_OPS = frozenset({"sign", "step", "tie_weight"})


def primitive_names(kind: str = "elementwise") -> list[str]:
    """Names of the built-in differentiable primitives of one kind.

    ``"elementwise"``: the functions of issue 2 (arithmetic, `srcgrad.functions`); ``"array"``:
    reductions, products, shape changes, indexing and selection (`srcgrad.array_rules`).
    """
    from .array_rules import ARRAY_NAMES

    return [name for name, prim in PRIMITIVES.items()
            if prim.differentiable and name not in ENGINE_OPS
            and (name in ARRAY_NAMES) == (kind == "array")]


OPS = PRIMITIVES  # the graph reads `name`, `commutative` and `fold` from each row

# --- which Python objects are which primitive -----------------------------------------------------
_BY_OBJECT: dict[Any, str] = {}


def _alias(name: str, *objects: Any) -> None:
    for obj in objects:
        if obj is not None:
            _BY_OBJECT[obj] = name


for _name in primitive_names():
    if _name not in ("add", "sub", "mul", "div", "pow", "neg"):
        _alias(_name, getattr(F, _name), getattr(np, _name, None))
_alias("add", np.add, operator.add)
_alias("sub", np.subtract, operator.sub)
_alias("mul", np.multiply, operator.mul)
_alias("div", np.divide, np.true_divide, operator.truediv)
_alias("pow", np.power, getattr(np, "pow", None), F.power, builtins.pow, operator.pow, math.pow)
_alias("neg", np.negative, operator.neg)
_alias("abs", builtins.abs, np.absolute, np.fabs, math.fabs)
_alias("maximum", builtins.max)  # `max(a, b)` of two values (of a generator: see parse.py)
_alias("minimum", builtins.min)
_alias("arcsin", math.asin, getattr(np, "asin", None))
_alias("arccos", math.acos, getattr(np, "acos", None))
_alias("arctan", math.atan, getattr(np, "atan", None))
_alias("arcsinh", math.asinh, getattr(np, "asinh", None))
_alias("arccosh", math.acosh, getattr(np, "acosh", None))
_alias("arctanh", math.atanh, getattr(np, "atanh", None))
_alias("arctan2", math.atan2, getattr(np, "atan2", None))
for _name in ("sin", "cos", "tan", "sinh", "cosh", "tanh", "exp", "expm1", "log", "log1p", "log2",
              "log10", "sqrt", "erf", "hypot", "cbrt", "exp2"):  # fmt: skip
    _alias(_name, getattr(math, _name, None))
_alias("sign", np.sign)

# Elementwise primitives that `srcgrad.functions` implements for floats and arrays alike; a call
# spelled through it (or `math`) is marked with PYTHON_SPELLING and runs as `sg.<name>` on
# arrays, so a Python float argument gives a Python float, as in the plain function.
LIFTED = {name: name for name in F.__all__} | {"pow": "power"}
PYTHON_SPELLING = "python"

# `math.log(x, base)` takes an optional base; the lowering turns it into log(x) / log(base).
LOG_WITH_BASE = (math.log,)
# Identity-like callables: `np.positive(x)` is x.
IDENTITY = (np.positive, operator.pos)


def primitive_for(obj: Any) -> Primitive | None:
    """The primitive a Python callable stands for, or None."""
    try:
        name = _BY_OBJECT.get(obj)
    except TypeError:  # unhashable callable
        return None
    return PRIMITIVES[name] if name else None


# --- user functions -------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class UserFunction:
    """A user's callable as it appears in generated code, under ``name``.

    ``derivative`` is the `_derive` (or registered) function, itself a `UserFunction`.
    """

    fn: Callable[..., Any]
    name: str
    derivative: UserFunction | None = None

    @property
    def label(self) -> str:
        """The function's own name, for messages (``name`` may carry a suffix: `bind_name`)."""
        return getattr(self.fn, "__name__", self.name)


_REGISTERED: dict[Any, Callable[..., Any]] = {}


def register(fn: Callable[..., Any], derive: Callable[..., Any] | None = None) -> Any:
    """Declare ``derive`` as the derivative of ``fn``.

    ``derive`` takes ``fn``'s arguments; for one argument it returns dfn/dx, for several a
    tuple with one partial derivative per argument. Without ``derive`` this returns a decorator::

        @srcgrad.register(smooth_step)
        def smooth_step_partial(x):
            return 6 * x * (1 - x)
    """
    if not callable(fn):
        raise TypeError(f"srcgrad.register: {fn!r} is not callable")
    if derive is None:

        def decorator(derivative: Callable[..., Any]) -> Callable[..., Any]:
            register(fn, derivative)
            return derivative

        return decorator
    if not callable(derive):
        raise TypeError(f"srcgrad.register: the derivative of {_name_of(fn)} must be callable")
    _REGISTERED[fn] = derive
    return derive


def _name_of(fn: Any) -> str:
    return getattr(fn, "__name__", None) or repr(fn)


def derivative_for(fn: Callable[..., Any], caller_globals: Mapping[str, Any]) -> Any | None:
    """The derivative of a user function: registered, else ``<name>_derive`` beside it.

    "Beside it" means the decorated function's globals first, then ``fn``'s own module.
    """
    try:
        registered = _REGISTERED.get(fn)
    except TypeError:
        registered = None
    if registered is not None:
        return registered
    name = getattr(fn, "__name__", None)
    if not name:
        return None
    derive_name = f"{name}_derive"
    candidate = caller_globals.get(derive_name)
    if callable(candidate):
        return candidate
    module = sys.modules.get(getattr(fn, "__module__", None) or "")
    candidate = getattr(module, derive_name, None) if module else None
    return candidate if callable(candidate) else None


from . import array_rules  # noqa: E402, F401 - the array half of the table registers itself


# --- the table as documentation -------------------------------------------------------------------
def _formula(node: Node, names: dict[int, str]) -> str:
    """A node of a small partials graph as an infix formula (for docs/functions.md)."""
    if node.id in names:
        return names[node.id]
    if node.is_const:
        return repr(node.value)
    args = [_formula(a, names) for a in node.args]
    infix = {"add": "+", "sub": "-", "mul": "*", "div": "/", "pow": "**"}
    if node.op in infix:
        return f"({args[0]} {infix[node.op]} {args[1]})"
    if node.op == "neg":
        return f"-{args[0]}"
    return f"{node.op}({', '.join(args)})"


def derivative_table() -> list[tuple[str, list[str], list[str]]]:
    """(primitive, Python callables that mean it, one partial formula per argument) rows."""
    from .graph import Graph

    spellings: dict[str, list[str]] = {}
    for obj, name in _BY_OBJECT.items():
        module = getattr(obj, "__module__", None) or ("numpy" if isinstance(obj, np.ufunc) else "")
        module = {"srcgrad.functions": "srcgrad.functions", "math": "math", "builtins": "builtins",
                  "_operator": "operator"}.get(module, "numpy" if "numpy" in module else module)
        spellings.setdefault(name, []).append(f"{module}.{getattr(obj, '__name__', obj)}")
    rows = []
    for name in [*primitive_names(), *primitive_names("array")]:
        primitive = PRIMITIVES[name]
        graph = Graph(OPS)
        names = _argument_names(primitive)
        args = [graph.param(v) for v in names]
        out = graph.apply(name, *args)
        labels = {a.id: a.hint for a in args}
        labels[out.id] = "out"
        if primitive.vjp is not None:
            adjoint = graph.param("g")
            labels[adjoint.id] = "g"
            terms = primitive.vjp(adjoint, *args, out=out)
            formulas = ["" if t is None else "vjp: " + _formula(graph.lift(t), labels)
                        for t in terms]
        else:
            partials = primitive.partials(*args, out)
            if not isinstance(partials, tuple):
                partials = (partials,)
            formulas = ["" if p is None else _formula(graph.lift(p), labels) for p in partials]
        spelled = sorted(set(spellings.get(name, []))) or [_SPELLINGS.get(name, name)]
        rows.append((name, spelled, list(zip(names, formulas, strict=True))))
    return rows


_SPELLINGS = {"getitem": "x[index]"}


def _argument_names(primitive: Primitive) -> list[str]:
    if primitive.signature:
        return [p.name for p in primitive.signature]
    if primitive.name in ("einsum",):
        return ["subscripts", "a", "b"]
    if primitive.name in ("concatenate", "stack"):
        return ["axis", "a", "b"]
    if primitive.name == "getitem":
        return ["x", "index"]
    if primitive.name == "where":
        return ["condition", "x", "y"]
    return ["x", "y", "z"][: primitive.arity]


def markdown_table() -> str:
    """docs/functions.md's table, generated from the registry so that it cannot drift."""
    lines = ["| primitive | Python spellings | derivative (`out` is the result, `g` its adjoint) |",
             "|---|---|---|"]
    for name, spellings, formulas in derivative_table():
        text = "; ".join(f"∂/∂{a} = `{f}`" if not f.startswith("vjp: ") else
                         f"d{a} = `{f[5:]}`" for a, f in formulas if f)
        lines.append(f"| `{name}` | {', '.join(f'`{s}`' for s in spellings)} | {text} |")
    return "\n".join(lines) + "\n"
