"""Array primitives: reductions, products, shape changes, indexing, selection.

The second half of the registry (`srcgrad.rules` holds the elementwise half and the machinery).
Each array primitive gives a **vector-Jacobian product** (``vjp``): from the adjoint of its
result, one contribution per argument, already shaped like that argument. The heavy lifting is
in small NumPy functions in `srcgrad.backward`, each a primitive here too, so that the generated
backward pass calls them by name. Broadcasting of elementwise operations is still handled by the
engine (`sum_to`); nothing here sums over broadcast axes.

Also here: selection (`np.where`, `np.clip`, comparisons as masks) and calls that pass through
with a zero gradient (`np.arange`, `len`, `np.argmax`, `np.floor`, ...).
"""

from __future__ import annotations

import dataclasses
import operator
from typing import Any

import numpy as np

from .graph import Node
from .rules import (
    HELPER_OPS,
    PRIMITIVES,
    Param,
    Primitive,
    _alias,
    _op,
    _sum_terms,
    linear_in_first,
)

_NO = NotImplemented  # a required parameter


def defarray(name: str, signature: tuple[Param, ...], array: str, vjp: Any, jvp: Any, *,
             needs_full_adjoint: bool = True) -> None:
    """Add an array primitive: a NumPy call template, its vector-Jacobian product (reverse
    mode) and its Jacobian-vector product (forward mode)."""
    PRIMITIVES[name] = Primitive(
        name, len(signature) if signature else -1, "", array, None, vjp=vjp, jvp=jvp,
        signature=signature, elementwise=False, needs_full_adjoint=needs_full_adjoint)


def defhelper(name: str, arity: int, template: str | None = None, *,
              elementwise: bool = False, jvp: Any = None) -> Any:
    """A backward helper or a mask; returns its graph builder. ``jvp`` is its forward rule,
    used when a gradient is differentiated again (Hessian-vector products)."""
    if template is None:
        template = f"sg.{name}({', '.join(f'_{i}' for i in range(arity))})"
    PRIMITIVES[name] = Primitive(name, arity, template, template, None, elementwise=elementwise,
                                 jvp=jvp)
    return _op(name)


def P(name: str, default: Any = _NO) -> Param:
    return Param(name, default)


def _bilinear(name: str, first: int, second: int) -> Any:
    """The forward rule of a helper linear in arguments ``first`` and ``second`` separately
    (``g @ b.T`` in ``g`` and ``b``); its other arguments are shapes."""
    build = _op(name)

    def jvp(t: tuple, *args: Node, out: Node) -> Node | None:
        terms = []
        for position in (first, second):
            if t[position] is not None:
                varied = list(args)
                varied[position] = t[position]
                terms.append(build(*varied))
        return _sum_terms(*terms)

    return jvp


# Backward helpers (functions of srcgrad.backward, reached as sg.<name>). Their forward rules
# let a gradient be differentiated again: each is linear in the adjoint ``g`` (argument 0); a
# mask such as max's ties is piecewise constant, so it contributes nothing.
sum_backward = defhelper("sum_backward", 4, jvp=linear_in_first("sum_backward"))
mean_backward = defhelper("mean_backward", 4, jvp=linear_in_first("mean_backward"))
extreme_backward = defhelper("extreme_backward", 5, jvp=linear_in_first("extreme_backward"))
prod_backward = defhelper("prod_backward", 5)  # second derivatives of np.prod: not yet
norm_backward = defhelper("norm_backward", 6)  # second derivatives of np.linalg.norm: not yet
matmul_backward_a = defhelper("matmul_backward_a", 3, jvp=_bilinear("matmul_backward_a", 0, 2))
matmul_backward_b = defhelper("matmul_backward_b", 3, jvp=_bilinear("matmul_backward_b", 0, 1))
dot_backward_a = defhelper("dot_backward_a", 3, jvp=_bilinear("dot_backward_a", 0, 2))
dot_backward_b = defhelper("dot_backward_b", 3, jvp=_bilinear("dot_backward_b", 0, 1))
outer_backward_a = defhelper("outer_backward_a", 3, jvp=_bilinear("outer_backward_a", 0, 2))
outer_backward_b = defhelper("outer_backward_b", 3, jvp=_bilinear("outer_backward_b", 0, 1))
transpose_backward = defhelper("transpose_backward", 2, jvp=linear_in_first("transpose_backward"))
reshape_backward = defhelper("reshape_backward", 2, jvp=linear_in_first("reshape_backward"))
getitem_backward = defhelper("getitem_backward", 3, jvp=linear_in_first("getitem_backward"))
expand_to = defhelper("expand_to", 2, jvp=linear_in_first("expand_to"))
PRIMITIVES["expand_to"] = dataclasses.replace(  # a broadcast: its adjoint is a sum
    PRIMITIVES["expand_to"], vjp=lambda g, v, x, out: (_op("sum_to")(g, v, x), None),
    needs_full_adjoint=False)
where_mask = defhelper("where_mask", 1, elementwise=True)
clip_inside = defhelper("clip_inside", 3, elementwise=True)
clip_below = defhelper("clip_below", 3, elementwise=True)
clip_above = defhelper("clip_above", 3, elementwise=True)


def _variadic(name: str, arity: int, jvp: Any = None) -> Any:
    """A builder for a helper whose argument count varies (einsum, concatenate, stack)."""

    def build(*args: Any) -> Node:
        graph = next(a.graph for a in args if isinstance(a, Node))
        return graph.apply(name, *args)

    PRIMITIVES.setdefault(name, Primitive(name, arity, "", f"sg.{name}(*)", None,
                                          elementwise=False, jvp=jvp))
    return build


def _multilinear(build: Any, fixed: int) -> Any:
    """Forward rule of a product of its arguments (einsum): one term per varied argument.
    The first ``fixed`` arguments are not operands (subscripts, a position)."""

    def jvp(t: tuple, *args: Node, out: Node) -> Node | None:
        terms = []
        for position in range(len(args)):
            if t[position] is not None and (position == 0 or position >= fixed):
                varied = list(args)
                varied[position] = t[position]
                terms.append(build(*varied))
        return _sum_terms(*terms)

    return jvp


def _einsum_backward_jvp(t: tuple, g: Node, subscripts: Node, position: Node, *ops: Node,
                         out: Node) -> Node | None:
    # Linear in g and in every operand except the one the adjoint is for (its shape only).
    skip = 3 + int(position.value)
    masked = tuple(None if i == skip else ti for i, ti in enumerate(t))
    return _multilinear(einsum_backward, 3)(masked, g, subscripts, position, *ops, out=out)


einsum_backward = _variadic("einsum_backward", -1, jvp=_einsum_backward_jvp)
concatenate_backward = _variadic("concatenate_backward", -1,
                                 jvp=lambda t, g, *rest, out: None if t[0] is None
                                 else concatenate_backward(t[0], *rest))
stack_backward = defhelper("stack_backward", 3, jvp=linear_in_first("stack_backward"))

AXIS = (P("a"), P("axis", None), P("keepdims", False))
_sum = _op("sum")


def _via_gradient(backward: Any) -> Any:
    """Forward rule of a reduction from its gradient: sum(d out/d x * tangent) over the axes
    (each entry of x feeds one entry of the result; ``backward`` with adjoint 1 is d out/d x)."""
    return lambda t, x, *params, out: None if t[0] is None else _sum(
        backward(1.0, x, out, *params) * t[0], params[-2], params[-1])


def _joined(build: Any) -> Any:
    """Forward rule of concatenate/stack: join the tangents (zeros for constant pieces)."""

    def jvp(t: tuple, axis: Node, *arrays: Node, out: Node) -> Node | None:
        if all(ti is None for ti in t[1:]):
            return None
        return build(axis, *(expand_to(0.0, a) if ti is None else ti
                             for a, ti in zip(arrays, t[1:], strict=True)))

    return jvp


# --- reductions ----------------------------------------------------------------------------------
#        name    signature  NumPy template                             vjp (g, *args, out); jvp (tangents, *args, out)
defarray("sum",  AXIS, "np.sum(_0, axis=_1, keepdims=_2)",  lambda g, x, axis, keep, out: (sum_backward(g, x, axis, keep), None, None), linear_in_first("sum"), needs_full_adjoint=False)
defarray("mean", AXIS, "np.mean(_0, axis=_1, keepdims=_2)", lambda g, x, axis, keep, out: (mean_backward(g, x, axis, keep), None, None), linear_in_first("mean"), needs_full_adjoint=False)
defarray("max",  AXIS, "np.max(_0, axis=_1, keepdims=_2)",  lambda g, x, axis, keep, out: (extreme_backward(g, x, out, axis, keep), None, None), _via_gradient(extreme_backward), needs_full_adjoint=False)
defarray("min",  AXIS, "np.min(_0, axis=_1, keepdims=_2)",  lambda g, x, axis, keep, out: (extreme_backward(g, x, out, axis, keep), None, None), _via_gradient(extreme_backward), needs_full_adjoint=False)
defarray("prod", AXIS, "np.prod(_0, axis=_1, keepdims=_2)", lambda g, x, axis, keep, out: (prod_backward(g, x, out, axis, keep), None, None), _via_gradient(prod_backward), needs_full_adjoint=False)
defarray("norm", (P("x"), P("ord", None), P("axis", None), P("keepdims", False)), "np.linalg.norm(_0, ord=_1, axis=_2, keepdims=_3)",
         lambda g, x, order, axis, keep, out: (norm_backward(g, x, out, order, axis, keep), None, None, None), _via_gradient(norm_backward), needs_full_adjoint=False)

# --- products ------------------------------------------------------------------------------------
defarray("matmul", (P("a"), P("b")), "_0 @ _1",          lambda g, a, b, out: (matmul_backward_a(g, a, b), matmul_backward_b(g, a, b)), _bilinear("matmul", 0, 1))
defarray("dot",    (P("a"), P("b")), "np.dot(_0, _1)",   lambda g, a, b, out: (dot_backward_a(g, a, b), dot_backward_b(g, a, b)), _bilinear("dot", 0, 1))
defarray("outer",  (P("a"), P("b")), "np.outer(_0, _1)", lambda g, a, b, out: (outer_backward_a(g, a, b), outer_backward_b(g, a, b)), _bilinear("outer", 0, 1))
defarray("einsum", (), "np.einsum(*)",
         lambda g, subscripts, *ops, out: (None, *(einsum_backward(g, subscripts, i, *ops) for i in range(len(ops)))),
         lambda t, *args, out: _multilinear(_op("einsum"), 1)((None, *t[1:]), *args, out=out))

# --- shape changes -------------------------------------------------------------------------------
defarray("transpose",   (P("a"), P("axes", None)),   "np.transpose(_0, axes=_1)",  lambda g, x, axes, out: (transpose_backward(g, axes), None), linear_in_first("transpose"))
defarray("reshape",     (P("a"), P("shape")),        "np.reshape(_0, _1)",         lambda g, x, shape, out: (reshape_backward(g, x), None), linear_in_first("reshape"))
defarray("expand_dims", (P("a"), P("axis")),         "np.expand_dims(_0, _1)",     lambda g, x, axis, out: (reshape_backward(g, x), None), linear_in_first("expand_dims"))
defarray("squeeze",     (P("a"), P("axis", None)),   "np.squeeze(_0, axis=_1)",    lambda g, x, axis, out: (reshape_backward(g, x), None), linear_in_first("squeeze"))
defarray("ravel",       (P("a"),),                   "np.ravel(_0)",               lambda g, x, out: (reshape_backward(g, x),), linear_in_first("ravel"))
defarray("concatenate", (), "np.concatenate(*)",
         lambda g, axis, *arrays, out: (None, *(concatenate_backward(g, axis, i, *arrays) for i in range(len(arrays)))),
         _joined(_op("concatenate")))
defarray("stack", (), "np.stack(*)",
         lambda g, axis, *arrays, out: (None, *(stack_backward(g, axis, i) for i in range(len(arrays)))),
         _joined(_op("stack")))

# --- indexing: templates come from the node (attrs[0]); the index object from an `index` node ----
PRIMITIVES["index"] = Primitive("index", -1, "<attrs>", "<attrs>", None, elementwise=False)
defarray("getitem", (), "<attrs>",
         lambda g, x, *parts, out: (getitem_backward(g, x, out.graph.apply("index", *parts, attrs=out.attrs[1:])), *(None,) * len(parts)),
         lambda t, x, *parts, out: None if t[0] is None else out.graph.apply("getitem", t[0], *parts, attrs=out.attrs))

# --- selection: elementwise, so broadcasting is the engine's job ----------------------------------
PRIMITIVES["where"] = Primitive("where", 3, "(_1 if _0 else _2)", "np.where(_0, _1, _2)",
                                lambda c, x, y, out: (None, where_mask(c), 1.0 - where_mask(c)))
PRIMITIVES["clip"] = Primitive("clip", 3, "np.clip(_0, _1, _2)", "np.clip(_0, _1, _2)",
                               lambda x, lo, hi, out: (clip_inside(x, lo, hi), clip_below(x, lo, hi), clip_above(x, lo, hi)),
                               signature=(P("a"), P("a_min", None), P("a_max", None)))
_COMPARISONS = {"greater": ">", "greater_equal": ">=", "less": "<", "less_equal": "<=",
                "equal": "==", "not_equal": "!="}
for _name, _symbol in _COMPARISONS.items():
    PRIMITIVES[_name] = Primitive(_name, 2, f"_0 {_symbol} _1", f"_0 {_symbol} _1", None,
                                  fold=getattr(operator, {"greater": "gt", "greater_equal": "ge", "less": "lt", "less_equal": "le", "equal": "eq", "not_equal": "ne"}[_name]))
    _alias(_name, getattr(np, _name))

# --- calls and attributes with no gradient (piecewise constant, or about shape only) -------------
PRIMITIVES["nondiff"] = Primitive("nondiff", -1, "<attrs>", "<attrs>", None, elementwise=False)
NONDIFFERENTIABLE = frozenset({
    np.arange, np.zeros, np.ones, np.zeros_like, np.ones_like, np.full, np.full_like, np.eye,
    np.linspace, np.argmax, np.argmin, np.argsort, np.floor, np.ceil, np.round, np.rint,
    np.trunc, np.isnan, np.isfinite, np.isinf, np.logical_and, np.logical_or, np.logical_not,
    np.shape, np.ndim, np.size, len, range,
})
VALUE_ATTRIBUTES = frozenset({"shape", "size", "ndim", "dtype"})  # `x.shape`: no gradient

_alias("sum", np.sum)
_alias("mean", np.mean)
_alias("max", np.max, getattr(np, "amax", None))
_alias("min", np.min, getattr(np, "amin", None))
_alias("prod", np.prod)
_alias("norm", np.linalg.norm)
_alias("matmul", np.matmul, operator.matmul)
_alias("dot", np.dot)
_alias("outer", np.outer)
_alias("einsum", np.einsum)
_alias("transpose", np.transpose)
_alias("reshape", np.reshape)
_alias("expand_dims", np.expand_dims)
_alias("squeeze", np.squeeze)
_alias("ravel", np.ravel)
_alias("concatenate", np.concatenate)
_alias("stack", np.stack)
_alias("where", np.where)
_alias("clip", np.clip)

# Methods of arrays: `x.sum(axis=1)` means `np.sum(x, axis=1)`.
METHODS = {"sum": "sum", "mean": "mean", "max": "max", "min": "min", "prod": "prod",
           "reshape": "reshape", "transpose": "transpose", "dot": "dot", "ravel": "ravel",
           "squeeze": "squeeze", "clip": "clip", "flatten": "ravel"}
ARRAY_NAMES = frozenset({"sum", "mean", "max", "min", "prod", "norm", "matmul", "dot", "outer",
                         "einsum", "transpose", "reshape", "expand_dims", "squeeze", "ravel",
                         "concatenate", "stack", "getitem", "where", "clip"})
VARIADIC = frozenset({"einsum", "concatenate", "stack", "einsum_backward",
                      "concatenate_backward"})

# Operations whose derivative is zero wherever it exists (masks, comparisons, rounding, index
# objects): forward mode gives them no tangent, as reverse mode gives their arguments nothing.
NONDIFFERENTIABLE_OPS = frozenset({*HELPER_OPS, *_COMPARISONS, "where_mask", "clip_inside",
                                   "clip_below", "clip_above", "nondiff", "index"})
