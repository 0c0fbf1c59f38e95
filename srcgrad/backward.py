"""Vector-Jacobian products of the array primitives, called by generated code as ``sg.<name>``.

Each takes the adjoint ``g`` of an operation's result (at the result's full shape, unless noted)
and what it needs of the forward pass, and returns the contribution to one argument, shaped like
that argument. They are small NumPy functions, named after what they undo, so that the generated
backward pass reads ``d_x = sg.sum_backward(d_total, x, 1, True)``.
"""

from __future__ import annotations

__all__ = [
    "clip_above", "clip_below", "clip_inside", "concatenate_backward", "einsum_backward",
    "expand_to", "extreme_backward", "getitem_backward", "matmul_backward_a",
    "matmul_backward_b", "mean_backward", "norm_backward", "outer_backward_a",
    "outer_backward_b", "prod_backward", "reshape_backward", "stack_backward", "sum_backward",
    "transpose_backward", "where_mask",
]  # fmt: skip

import string
from typing import Any

import numpy as np


def _normalise_axes(axis: Any, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (tuple, list)):
        return tuple(sorted(a % ndim for a in axis))
    return (axis % ndim,)


def _expand_reduced(g: Any, x: Any, axis: Any, keepdims: bool) -> Any:
    """``g`` (shaped like a reduction of ``x``) with the reduced axes put back as size 1."""
    g = np.asarray(g)
    if keepdims or np.ndim(x) == 0:
        return g
    axes = _normalise_axes(axis, np.ndim(x))
    if g.ndim == np.ndim(x) - len(axes):
        return np.expand_dims(g, axes)
    return g  # already broadcastable (a scalar adjoint)


def sum_backward(g: Any, x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    """Adjoint of ``np.sum(x, axis, keepdims)``: ``g`` spread over the summed axes.

    Returned in broadcast-compatible form (summed axes kept as size 1, not copied): the
    engine's elementwise operations broadcast it, and `expand_to` materialises it where needed.
    """
    return _expand_reduced(g, x, axis, keepdims)


def mean_backward(g: Any, x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    """Adjoint of ``np.mean``: ``g`` divided by the count of averaged entries (compressed)."""
    if axis is None and not keepdims:
        return g / np.size(x)  # broadcast-compatible with x as it is
    shape = np.shape(x)
    count = 1
    for a in _normalise_axes(axis, len(shape)):
        count *= shape[a]
    return _expand_reduced(g, x, axis, keepdims) / count


def extreme_backward(g: Any, x: Any, out: Any, axis: Any = None, keepdims: bool = False) -> Any:
    """Adjoint of ``np.max``/``np.min``: to the extreme entries, shared equally on ties."""
    out_full = _expand_reduced(out, x, axis, keepdims)
    mask = (x == out_full).astype(np.result_type(x, np.float32))
    count = np.sum(mask, axis=axis, keepdims=True) if np.ndim(x) else 1.0
    return _expand_reduced(g, x, axis, keepdims) * mask / count


def prod_backward(g: Any, x: Any, out: Any, axis: Any = None, keepdims: bool = False) -> Any:
    """Adjoint of ``np.prod``: the product of the other entries (exact with zeros present)."""
    x = np.asarray(x)
    axes = _normalise_axes(axis, x.ndim)
    if x.ndim == 0:
        return g * np.ones_like(x)
    moved = np.moveaxis(x, axes, range(x.ndim - len(axes), x.ndim))
    flat = moved.reshape((*moved.shape[: x.ndim - len(axes)], -1))
    # Product of all other entries = exclusive prefix product * exclusive suffix product.
    ones = np.ones((*flat.shape[:-1], 1), dtype=flat.dtype)
    prefix = np.cumprod(np.concatenate([ones, flat[..., :-1]], axis=-1), axis=-1)
    suffix = np.cumprod(np.concatenate([ones, flat[..., :0:-1]], axis=-1), axis=-1)[..., ::-1]
    others = (prefix * suffix).reshape(moved.shape)
    others = np.moveaxis(others, range(x.ndim - len(axes), x.ndim), axes)
    return _expand_reduced(g, x, axis, keepdims) * others


def norm_backward(g: Any, x: Any, out: Any, order: Any = None, axis: Any = None,
                  keepdims: bool = False) -> Any:
    """Adjoint of ``np.linalg.norm(x, ord, axis, keepdims)`` for vector p-norms and Frobenius.

    Vector norms (1-D ``x``, or an integer ``axis``): any ``ord`` (1, 2, inf, -inf, p).
    Matrix norms: the Frobenius norm (``ord=None`` or ``"fro"``); the others raise.
    """
    x = np.asarray(x)
    vector = x.ndim <= 1 or isinstance(axis, int) or (
        isinstance(axis, tuple) and len(axis) == 1)
    if not vector and order not in (None, "fro"):
        raise NotImplementedError(
            f"srcgrad differentiates matrix norms only for ord=None or 'fro', not ord={order!r}")
    g_full = _expand_reduced(g, x, axis, keepdims)
    norm = _expand_reduced(out, x, axis, keepdims)
    if order in (None, 2, "fro"):
        safe = np.where(norm == 0, 1.0, norm)
        return g_full * np.where(norm == 0, 0.0, x / safe)
    magnitude = np.abs(x)
    if order in (np.inf, -np.inf):
        hit = (magnitude == norm).astype(np.result_type(x, np.float32))
        count = np.sum(hit, axis=axis, keepdims=True) if x.ndim else 1.0
        return g_full * np.sign(x) * hit / count
    if order == 0:
        return np.zeros_like(x, dtype=np.result_type(x, np.float32))
    if order == 1:
        return g_full * np.sign(x)
    p = float(order)
    return g_full * np.sign(x) * (magnitude / np.where(norm == 0, 1.0, norm)) ** (p - 1)


def matmul_backward_a(g: Any, a: Any, b: Any) -> Any:
    """Adjoint of ``a @ b`` with respect to ``a`` (vectors and stacks of matrices included)."""
    if _ndim(a) == 2 and _ndim(b) == 2:
        return g @ b.T  # the common case first
    a2, b2, g2 = _as_matrices(g, a, b)
    return _undo_matrix(g2 @ np.swapaxes(b2, -1, -2), a, a2.shape)


def matmul_backward_b(g: Any, a: Any, b: Any) -> Any:
    """Adjoint of ``a @ b`` with respect to ``b``."""
    if _ndim(a) == 2 and _ndim(b) == 2:
        return a.T @ g
    a2, b2, g2 = _as_matrices(g, a, b)
    return _undo_matrix(np.swapaxes(a2, -1, -2) @ g2, b, b2.shape)


def _as_matrices(g: Any, a: Any, b: Any) -> tuple[Any, Any, Any]:
    """``a``, ``b`` and the adjoint ``g`` with vectors made matrices, as matmul does."""
    a2 = np.asarray(a)[None, :] if _ndim(a) == 1 else np.asarray(a)
    b2 = np.asarray(b)[:, None] if _ndim(b) == 1 else np.asarray(b)
    g2 = np.asarray(g)
    if _ndim(a) == 1:
        g2 = np.expand_dims(g2, -2 if _ndim(b) > 1 else -1)
    if _ndim(b) == 1:
        g2 = np.expand_dims(g2, -1)
    return a2, b2, g2


def _undo_matrix(value: Any, original: Any, matrix_shape: tuple[int, ...]) -> Any:
    """Sum the broadcast batch axes away, then drop the axis a vector was given."""
    value = _sum_leading(value, matrix_shape)
    return np.reshape(value, np.shape(original))


def _ndim(value: Any) -> int:
    return value.ndim if type(value) is np.ndarray else np.ndim(value)  # attribute: faster


def _sum_leading(value: Any, shape: tuple[int, ...]) -> Any:
    """Sum the batch axes a stacked matmul broadcast ``value`` over, down to ``shape``."""
    value = np.asarray(value)
    while value.ndim > len(shape):
        value = value.sum(axis=0)
    for axis, (have, want) in enumerate(zip(value.shape, shape, strict=True)):
        if want == 1 and have != 1:
            value = value.sum(axis=axis, keepdims=True)
    return value


def einsum_backward(g: Any, subscripts: str, position: int, *operands: Any) -> Any:
    """Adjoint of ``np.einsum(subscripts, *operands)`` with respect to operand ``position``."""
    inputs, output = _parse_einsum(subscripts, len(operands))
    target = inputs[position]
    others = [(s, op) for i, (s, op) in enumerate(zip(inputs, operands, strict=True))
              if i != position]
    available = set(output) | {c for s, _ in others for c in s}
    # Indices of the target that appear nowhere else were summed away: broadcast them back.
    kept = "".join(c for c in target if c in available)
    spec = ",".join([output, *(s for s, _ in others)]) + "->" + "".join(dict.fromkeys(kept))
    partial = np.einsum(spec, g, *(op for _, op in others))
    order = "".join(dict.fromkeys(kept))
    full = "".join(dict.fromkeys(target))
    shape = dict(zip(target, np.shape(operands[position]), strict=True))
    for c in full:
        if c not in order:
            partial = np.expand_dims(partial, -1)
            order += c
    partial = np.broadcast_to(np.einsum(f"{order}->{full}", partial),
                              tuple(shape[c] for c in full))
    if full != target:  # a repeated index (a diagonal): write it back on the diagonal
        return _diagonal_back(partial, full, target, np.shape(operands[position]))
    return partial


def _diagonal_back(partial: Any, full: str, target: str, shape: tuple[int, ...]) -> Any:
    out = np.zeros(shape, dtype=np.result_type(partial))
    np.einsum(f"{target}->{full}", out)[...] = partial  # a writable diagonal view
    return out


def _parse_einsum(subscripts: str, count: int) -> tuple[list[str], str]:
    spec = subscripts.replace(" ", "")
    if "..." in spec:
        raise ValueError("srcgrad differentiates einsum without '...'; name every axis")
    if "->" in spec:
        left, output = spec.split("->")
    else:
        left = spec
        letters = left.replace(",", "")
        output = "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    inputs = left.split(",")
    if len(inputs) != count or not all(set(s) <= set(string.ascii_letters) for s in inputs):
        raise ValueError(f"einsum subscripts {subscripts!r} do not match {count} operands")
    return inputs, output


def outer_backward_a(g: Any, a: Any, b: Any) -> Any:
    """Adjoint of ``np.outer(a, b)`` (inputs flattened) with respect to ``a``."""
    return np.reshape(g @ np.ravel(b), np.shape(a))


def outer_backward_b(g: Any, a: Any, b: Any) -> Any:
    """Adjoint of ``np.outer(a, b)`` with respect to ``b``."""
    return np.reshape(np.ravel(a) @ g, np.shape(b))


def transpose_backward(g: Any, axes: Any = None) -> Any:
    """Adjoint of ``np.transpose(x, axes)``: the inverse permutation."""
    if axes is None:
        return np.transpose(g)
    ndim = np.ndim(g)
    return np.transpose(g, np.argsort([axis % ndim for axis in axes]))


def reshape_backward(g: Any, x: Any) -> Any:
    """Adjoint of any reshaping of ``x`` (reshape, expand_dims, squeeze, ravel)."""
    return np.reshape(g, np.shape(x))


def concatenate_backward(g: Any, axis: int, position: int, *arrays: Any) -> Any:
    """Adjoint of ``np.concatenate(arrays, axis)`` for ``arrays[position]``."""
    if axis is None:  # the arrays were flattened first
        start = sum(np.size(a) for a in arrays[:position])
        piece = np.ravel(g)[start:start + np.size(arrays[position])]
        return np.reshape(piece, np.shape(arrays[position]))
    start = sum(np.shape(a)[axis] for a in arrays[:position])
    size = np.shape(arrays[position])[axis]
    index = [slice(None)] * np.ndim(g)
    index[axis] = slice(start, start + size)
    return np.reshape(g[tuple(index)], np.shape(arrays[position]))


def stack_backward(g: Any, axis: int, position: int) -> Any:
    """Adjoint of ``np.stack(arrays, axis)`` for ``arrays[position]``."""
    return np.take(g, position, axis=axis)


def getitem_backward(g: Any, x: Any, index: Any) -> Any:
    """Adjoint of ``x[index]``: ``g`` scattered back, repeated indices adding up."""
    out = np.zeros(np.shape(x), dtype=np.result_type(g, x, np.float32))
    if _is_basic(index):
        out[index] = g  # basic indexing selects each element at most once
    else:
        np.add.at(out, index, g)
    return out


_BASIC_PARTS = (int, slice, type(None), type(Ellipsis))


def _is_basic(index: Any) -> bool:
    """Whether ``index`` selects each element at most once (no integer arrays or lists)."""
    parts = index if type(index) is tuple else (index,)
    for part in parts:
        if type(part) in _BASIC_PARTS:  # the common parts, recognised by type alone
            continue
        if isinstance(part, (list, tuple)) or (
                isinstance(part, np.ndarray) and part.dtype != np.bool_):
            return False
    return True


def expand_to(g: Any, shape: tuple[int, ...]) -> Any:
    """``g`` (broadcastable to ``shape``) at that full shape, for rules that need it."""
    if (g.shape if type(g) is np.ndarray else np.shape(g)) == shape:
        return g
    return np.broadcast_to(g, shape)


def where_mask(condition: Any) -> Any:
    """1.0 where ``condition`` holds, else 0.0 (the partial of ``np.where`` in its 2nd arg)."""
    return np.where(condition, 1.0, 0.0)


def clip_inside(x: Any, low: Any, high: Any) -> Any:
    """Partial of ``np.clip(x, low, high)`` in ``x``: 1 where x is inside the bounds."""
    inside = np.ones(np.shape(x), dtype=bool)
    if low is not None:
        inside &= np.greater_equal(x, low)
    if high is not None:
        inside &= np.less_equal(x, high)
    return inside * 1.0


def clip_below(x: Any, low: Any) -> Any:
    """Partial of ``np.clip`` in its lower bound: 1 where x was raised to it."""
    return np.less(x, low) * 1.0


def clip_above(x: Any, high: Any) -> Any:
    """Partial of ``np.clip`` in its upper bound: 1 where x was lowered to it."""
    return np.greater(x, high) * 1.0
