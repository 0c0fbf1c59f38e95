"""Static shapes: every node's shape, given the shapes of the first call's arguments.

The generated function gets a path for calls whose arguments are float64 NumPy arrays shaped
as at the first call (`runtime.shaped_as` checks that). On it the shapes of the intermediate
values are known when the code is generated, so the broadcasting helpers resolve there:
``sg.sum_to`` to nothing or to ``.sum(axis=0)``, ``sg.expand_to`` to nothing, the matmul
adjoints to ``g @ b.T`` and ``a.T @ g``, ``sg.grad_like`` to nothing, and no ``np.shape`` is
captured. A node whose shape this module cannot tell is `UNKNOWN`; what depends on it keeps
the general helper, which is correct for every shape.

Each node gets a `Static`: its shape, whether it is a float64 NumPy value (``"f64"``, an array
or a NumPy float64 scalar) or a Python number (``"weak"``, which leaves a float64 array
float64), and whether it is an array this function allocated (``fresh``: never a caller's
array or a view of one).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import rules
from .graph import BOUND, CONST, GLOBAL, PARAM, Node


@dataclass(frozen=True)
class Static:
    shape: tuple[int, ...] | None  # None: not known
    kind: str | None = None  # "f64", "weak" (a Python number) or None (not known)
    fresh: bool = False  # an array this function made (not an input, not a view of one)


UNKNOWN = Static(None)

# Elementwise operations whose result is float64 when their operands are float64 arrays and
# Python numbers, and a new array.
_FLOAT_UFUNCS = frozenset({
    "add", "sub", "mul", "div", "neg", "pow", "exp", "log", "sin", "cos", "tan", "tanh",
    "sinh", "cosh", "sqrt", "square", "abs", "expm1", "log1p", "arctan", "maximum", "minimum",
    "tie_weight", "relu", "sigmoid", "log2", "log10", "exp2", "arcsin", "arccos", "arcsinh",
    "arccosh", "arctanh", "reciprocal", "cbrt",
})
_MATMUL_BACKWARD = frozenset({"matmul_backward_a", "matmul_backward_b", "dot_backward_a",
                              "dot_backward_b"})
_REDUCTIONS = frozenset({"sum", "mean", "max", "min", "prod"})


def broadcast(*shapes: tuple[int, ...]) -> tuple[int, ...] | None:
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        return None


def sum_to_shape(v: tuple[int, ...], x: tuple[int, ...], n: tuple[int, ...]
                 ) -> tuple[int, ...] | None:
    """The shape of ``runtime.sum_to(v, x, n)`` (the same steps, on shapes)."""
    if x == n:
        return v
    lead = len(n) - len(x)
    if v == n and n[lead:] == x:
        return x
    rank = max(len(n), len(x), len(v))
    v_full = (1,) * (rank - len(v)) + v
    x_full = (1,) * (rank - len(x)) + x
    n_full = (1,) * (rank - len(n)) + n
    axes = [axis for axis, (n_dim, x_dim, v_dim) in enumerate(zip(n_full, x_full, v_full,
                                                                  strict=True))
            if x_dim == 1 and n_dim != 1 and v_dim != 1]
    if axes:
        kept = tuple(1 if axis in axes else side for axis, side in enumerate(v_full))
        return kept[rank - len(x):]
    if len(v) > len(x):
        return v_full[rank - len(x):]
    return v


def reduced_shape(shape: tuple[int, ...], axis: Any, keepdims: Any) -> tuple[int, ...] | None:
    if axis is None:
        axes = set(range(len(shape)))
    elif isinstance(axis, int) and not isinstance(axis, bool):
        axes = {axis}
    elif isinstance(axis, tuple) and all(type(a) is int for a in axis):
        axes = set(axis)
    else:
        return None
    if any(not -len(shape) <= a < len(shape) for a in axes) and shape:
        return None
    axes = {a % len(shape) for a in axes} if shape else set()
    if keepdims is True:
        return tuple(1 if i in axes else side for i, side in enumerate(shape))
    if keepdims is not False:
        return None
    return tuple(side for i, side in enumerate(shape) if i not in axes)


def matmul_shape(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...] | None:
    if not a or not b:
        return None
    a2 = (1, *a) if len(a) == 1 else a
    b2 = (*b, 1) if len(b) == 1 else b
    if a2[-1] != b2[-2]:
        return None
    batch = broadcast(a2[:-2], b2[:-2])
    if batch is None:
        return None
    out = (*batch, a2[-2], b2[-1])
    if len(a) == 1:
        out = out[:-2] + out[-1:]
    if len(b) == 1:
        out = out[:-1]
    return out


def _index_shape(shape: tuple[int, ...], text: str) -> tuple[int, ...] | None:
    """The shape of ``x[index]`` for an index written out in ``text`` (basic indexing)."""
    try:
        index = _literal_index(ast.parse(text, mode="eval").body)
        dummy = np.lib.stride_tricks.as_strided(np.zeros(1), shape, (0,) * len(shape))
        return tuple(dummy[index].shape)
    except (ValueError, TypeError, IndexError, SyntaxError, KeyError):
        return None


def _literal_index(node: ast.expr) -> Any:
    """An index made of ints, slices, None and ``...`` (anything else: ValueError)."""
    if isinstance(node, ast.Tuple):
        return tuple(_literal_index(e) for e in node.elts)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "slice":
        return slice(*(_literal_index(a) for a in node.args))
    if isinstance(node, ast.Constant) and (node.value is None or node.value is Ellipsis
                                           or type(node.value) is int):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_literal_index(node.operand)
    if isinstance(node, ast.Name) and node.id == "Ellipsis":
        return Ellipsis
    raise ValueError("not a literal basic index")


def infer(nodes: list[Node], leaves: dict[int, tuple[int, ...]]) -> dict[int, Static]:
    """`Static` of every node in ``nodes`` (in graph order); ``leaves``: the shape of each
    array parameter (or structured parameter's leaf), all float64 arrays."""
    out: dict[int, Static] = {}
    for node in nodes:
        try:
            out[node.id] = _infer(node, out, leaves)
        except (ValueError, TypeError, IndexError, KeyError):
            out[node.id] = UNKNOWN
    return out


def _const(value: Any) -> Static:
    if type(value) in (int, float):
        return Static((), "weak")
    if type(value) is np.float64:
        return Static((), "f64")
    return UNKNOWN


def _float(*kinds: str | None) -> str | None:
    """float64 if every operand is float64 or a Python number, and one is float64."""
    if all(k in ("f64", "weak") for k in kinds):
        return "f64" if "f64" in kinds else "weak"
    return None


def _infer(node: Node, known: dict[int, Static], leaves: dict[int, tuple[int, ...]]) -> Static:
    op = node.op
    if node.id in leaves:
        return Static(leaves[node.id], "f64")
    if op == CONST:
        return _const(node.value)
    if op in (PARAM, GLOBAL, BOUND, "item", "call", "index", "nondiff"):
        return UNKNOWN
    args = [known.get(a.id, UNKNOWN) for a in node.args]
    if op == "alias":
        return args[0]
    shapes = [a.shape for a in args]
    primitive = rules.PRIMITIVES.get(op)
    if primitive is None:
        return UNKNOWN
    if primitive.elementwise and node.attrs != (rules.PYTHON_SPELLING,):
        if None in shapes:
            return UNKNOWN
        shape = broadcast(*shapes)
        if shape is None:
            return UNKNOWN
        kind = _float(*(a.kind for a in args)) if op in _FLOAT_UFUNCS else None
        return Static(shape, kind, kind == "f64" and shape != ())
    if op in _REDUCTIONS:
        x, axis, keep = node.args
        if args[0].shape is None or not axis.is_const or not keep.is_const:
            return UNKNOWN
        shape = reduced_shape(args[0].shape, axis.value, keep.value)
        kind = "f64" if args[0].kind == "f64" else None
        return Static(shape, kind, kind == "f64" and bool(shape))
    if op == "matmul":
        if None in shapes[:2]:
            return UNKNOWN
        shape = matmul_shape(*shapes[:2])
        kind = "f64" if args[0].kind == args[1].kind == "f64" else None
        return Static(shape, kind, kind == "f64" and bool(shape))
    if op == "getitem":
        if len(node.args) != 1 or shapes[0] is None:
            return UNKNOWN
        return Static(_index_shape(shapes[0], node.attrs[1]), args[0].kind, False)
    if op in ("sum_to", "sum_product"):
        v = args[0] if op == "sum_to" else Static(
            None if None in shapes[:2] else broadcast(*shapes[:2]),
            _float(args[0].kind, args[1].kind), True)
        x, n = args[-2], args[-1]
        if v.shape is None or x.shape is None or n.shape is None:
            return UNKNOWN
        shape = sum_to_shape(v.shape, x.shape, n.shape)
        identity = x.shape == n.shape
        fresh = (v.fresh if identity else True) and v.kind == "f64" and bool(shape)
        return Static(shape, v.kind, fresh)
    if op == "expand_to":
        g, x = args
        if g.shape is None or x.shape is None:
            return UNKNOWN
        kind = "f64" if g.kind in ("f64", "weak") else None
        return Static(x.shape, kind, g.fresh and g.shape == x.shape)
    if op in _MATMUL_BACKWARD:
        g, a, b = args
        like = a if op in ("matmul_backward_a", "dot_backward_a") else b
        two_d = a.shape is not None and b.shape is not None and len(a.shape) == len(
            b.shape) == 2
        kind = "f64" if g.kind == a.kind == b.kind == "f64" else None
        return Static(like.shape, kind, two_d and kind == "f64")
    if op == "mean_backward":
        g, x, axis, keep = node.args
        if axis.is_const and axis.value is None and keep.is_const and keep.value is False:
            kind = args[0].kind if args[0].kind in ("f64", "weak") else None
            return Static(args[0].shape, kind, args[0].fresh)
        return UNKNOWN
    if op == "getitem_backward":
        g, x = args[0], args[1]
        kind = "f64" if x.kind == "f64" and g.kind in ("f64", "weak") else None
        return Static(x.shape, kind, kind == "f64" and bool(x.shape))
    return UNKNOWN
