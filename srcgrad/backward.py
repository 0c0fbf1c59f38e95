"""Vector-Jacobian products of the array primitives, called by generated code as ``sg.<name>``.

Each takes the adjoint ``g`` of an operation's result (at the result's full shape, unless noted)
and what it needs of the forward pass, and returns the contribution to one argument, shaped like
that argument. They are small NumPy functions, named after what they undo, so that the generated
backward pass reads ``d_x = sg.sum_backward(d_total, x, 1, True)``.

They also run on arrays of libraries that implement NumPy's dispatch protocols, Dask above all:
``np.sum`` or ``np.expand_dims`` of a dask array builds a lazy, chunked dask array. What would
defeat that is converting with ``np.asarray`` (which computes a dask graph there and then) or
writing into a NumPy buffer, so both are kept for NumPy's own arrays and for Python numbers
(`_array`, `is_foreign`).
"""

from __future__ import annotations

__all__ = [
    "clip_above", "clip_below", "clip_inside", "concatenate_backward", "dot_backward_a",
    "dot_backward_b", "einsum_backward", "expand_to", "extreme_backward", "getitem_backward",
    "matmul_backward_a", "matmul_backward_b", "mean_backward", "norm_backward",
    "outer_backward_a", "outer_backward_b", "prod_backward", "reshape_backward",
    "stack_backward", "sum_backward", "transpose_backward", "where_mask",
]  # fmt: skip

import string
from typing import Any

import numpy as np


def is_foreign(value: Any) -> bool:
    """Whether ``value`` is another library's array (Dask, CuPy, an array-API array).

    Such an array is used through its own operations, never converted with ``np.asarray``: for
    a dask array that conversion would compute the whole graph, for a GPU array copy it to the
    host. NumPy arrays (subclasses too), NumPy scalars and Python numbers are not foreign.
    """
    if isinstance(value, (np.ndarray, np.generic, float, int)):
        return False
    kind = type(value)
    return hasattr(kind, "__array_function__") or hasattr(kind, "__array_namespace__")


def _xp(*values: Any) -> Any:
    """NumPy, or for an array that only speaks the Python array API (array-api-strict, JAX) its
    namespace under NumPy's names (`runtime.namespace`): what these helpers call."""
    for value in values:
        if type(value) is not np.ndarray and is_foreign(value) and not hasattr(
                type(value), "__array_function__"):
            from .runtime import namespace  # runtime imports this module: import when needed

            return namespace(*values)
    return np


def _float_mask(xp: Any, condition: Any, like: Any) -> Any:
    """``condition`` as 1.0/0.0 in ``like``'s floating dtype (float64 for integers)."""
    if xp is np:
        return condition.astype(np.result_type(like, np.float32))
    return xp.where(condition, 1.0, 0.0)


def _array(value: Any) -> Any:
    """``np.asarray(value)``, except that another library's array stays as it is."""
    if type(value) is np.ndarray or is_foreign(value):
        return value
    return np.asarray(value)


def _normalise_axes(axis: Any, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (tuple, list)):
        return tuple(sorted(a % ndim for a in axis))
    return (axis % ndim,)


def _expand_reduced(g: Any, x: Any, axis: Any, keepdims: bool) -> Any:
    """``g`` (shaped like a reduction of ``x``) with the reduced axes put back as size 1."""
    xp = _xp(x)
    if xp is not np and not hasattr(g, "ndim"):  # a number: made an array where x lives
        g = xp.asarray(g, device=x.device)
    g = _array(g)
    if keepdims or np.ndim(x) == 0:
        return g
    axes = _normalise_axes(axis, np.ndim(x))
    if g.ndim == np.ndim(x) - len(axes):
        return _xp(g).expand_dims(g, axes)
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
        return g / _size(x)  # broadcast-compatible with x as it is
    shape = np.shape(x)
    count = 1
    for a in _normalise_axes(axis, len(shape)):
        count *= shape[a]
    return _expand_reduced(g, x, axis, keepdims) / count


def extreme_backward(g: Any, x: Any, out: Any, axis: Any = None, keepdims: bool = False) -> Any:
    """Adjoint of ``np.max``/``np.min``: to the extreme entries, shared equally on ties."""
    out_full = _expand_reduced(out, x, axis, keepdims)
    xp = _xp(x)
    mask = _float_mask(xp, x == out_full, x)
    count = xp.sum(mask, axis=axis, keepdims=True) if np.ndim(x) else 1.0
    return _expand_reduced(g, x, axis, keepdims) * mask / count


def prod_backward(g: Any, x: Any, out: Any, axis: Any = None, keepdims: bool = False) -> Any:
    """Adjoint of ``np.prod``: the product of the other entries (exact with zeros present)."""
    x = _array(x)
    xp = _xp(x)
    axes = _normalise_axes(axis, x.ndim)
    if x.ndim == 0:
        return g * xp.ones_like(x)
    last = tuple(range(x.ndim - len(axes), x.ndim))
    moved = xp.moveaxis(x, axes, last)
    flat = xp.reshape(moved, (*moved.shape[: x.ndim - len(axes)], -1))
    # Product of all other entries = exclusive prefix product * exclusive suffix product.
    ones = xp.ones_like(flat[..., :1])
    prefix = xp.cumprod(xp.concatenate([ones, flat[..., :-1]], axis=-1), axis=-1)
    suffix = xp.cumprod(xp.concatenate([ones, flat[..., :0:-1]], axis=-1), axis=-1)[..., ::-1]
    others = xp.moveaxis(xp.reshape(prefix * suffix, moved.shape), last, axes)
    return _expand_reduced(g, x, axis, keepdims) * others


def norm_backward(g: Any, x: Any, out: Any, order: Any = None, axis: Any = None,
                  keepdims: bool = False) -> Any:
    """Adjoint of ``np.linalg.norm(x, ord, axis, keepdims)`` for vector p-norms and Frobenius.

    Vector norms (1-D ``x``, or an integer ``axis``): any ``ord`` (1, 2, inf, -inf, p).
    Matrix norms: the Frobenius norm (``ord=None`` or ``"fro"``); the others raise.
    """
    x = _array(x)
    vector = x.ndim <= 1 or isinstance(axis, int) or (
        isinstance(axis, tuple) and len(axis) == 1)
    if not vector and order not in (None, "fro"):
        raise NotImplementedError(
            f"srcgrad differentiates matrix norms only for ord=None or 'fro', not ord={order!r}")
    g_full = _expand_reduced(g, x, axis, keepdims)
    norm = _expand_reduced(out, x, axis, keepdims)
    xp = _xp(x)
    if order in (None, 2, "fro"):
        safe = xp.where(norm == 0, 1.0, norm)
        return g_full * xp.where(norm == 0, 0.0, x / safe)
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
    return _undo_matrix(g2 @ _swap_last(b2), a, a2.shape)


def matmul_backward_b(g: Any, a: Any, b: Any) -> Any:
    """Adjoint of ``a @ b`` with respect to ``b``."""
    if _ndim(a) == 2 and _ndim(b) == 2:
        return a.T @ g
    a2, b2, g2 = _as_matrices(g, a, b)
    return _undo_matrix(_swap_last(a2) @ g2, b, b2.shape)


def dot_backward_a(g: Any, a: Any, b: Any) -> Any:
    """Adjoint of ``np.dot(a, b)`` with respect to ``a``: matmul's for vectors and matrices, a
    product for a number, and a sum over ``b``'s other axes for N-d arrays (where ``np.dot``
    contracts ``a``'s last axis with ``b``'s second-to-last, unlike matmul)."""
    na, nb = _ndim(a), _ndim(b)
    if na == 0 or nb == 0:
        return _dot_by_number(g, b, a)
    if na <= 2 and nb <= 2:
        return matmul_backward_a(g, a, b)
    xp = _xp(g, a, b)
    if nb == 1:  # out[i..] = sum_k a[i.., k] b[k]
        return xp.expand_dims(g, -1) * b
    # out[i.., j.., l] = sum_k a[i.., k] b[j.., k, l]: sum g b over j.. and l
    return xp.tensordot(g, b, axes=(list(range(na - 1, _ndim(g))), [*range(nb - 2), nb - 1]))


def dot_backward_b(g: Any, a: Any, b: Any) -> Any:
    """Adjoint of ``np.dot(a, b)`` with respect to ``b``."""
    na, nb = _ndim(a), _ndim(b)
    if na == 0 or nb == 0:
        return _dot_by_number(g, a, b)
    if na <= 2 and nb <= 2:
        return matmul_backward_b(g, a, b)
    xp = _xp(g, a, b)
    lead = list(range(na - 1))  # sum g a over a's leading axes i..
    total = xp.tensordot(a, g, axes=(lead, lead))  # (k, j.., l), or (k,) for a vector b
    return total if nb == 1 else xp.moveaxis(total, 0, -2)


def _dot_by_number(g: Any, other: Any, like: Any) -> Any:
    """Adjoint of ``np.dot`` when an operand is a number (``a * b``), for operand ``like``."""
    value = g * other
    if _ndim(like) == 0 and _ndim(value) > 0:
        value = _xp(value).sum(value)
    return value


def _swap_last(m: Any) -> Any:
    """``m`` with its last two axes swapped (a stack of matrices transposed)."""
    if type(m) is np.ndarray or not hasattr(m, "mT"):
        return np.swapaxes(m, -1, -2)
    return m.mT  # the array API's spelling


def _as_matrices(g: Any, a: Any, b: Any) -> tuple[Any, Any, Any]:
    """``a``, ``b`` and the adjoint ``g`` with vectors made matrices, as matmul does."""
    a2 = _array(a)[None, :] if _ndim(a) == 1 else _array(a)
    b2 = _array(b)[:, None] if _ndim(b) == 1 else _array(b)
    g2 = _array(g)
    xp = _xp(g2)
    if _ndim(a) == 1:
        g2 = xp.expand_dims(g2, -2 if _ndim(b) > 1 else -1)
    if _ndim(b) == 1:
        g2 = xp.expand_dims(g2, -1)
    return a2, b2, g2


def _undo_matrix(value: Any, original: Any, matrix_shape: tuple[int, ...]) -> Any:
    """Sum the broadcast batch axes away, then drop the axis a vector was given."""
    value = _sum_leading(value, matrix_shape)
    return _xp(value).reshape(value, np.shape(original))


def _ndim(value: Any) -> int:
    return value.ndim if type(value) is np.ndarray else np.ndim(value)  # attribute: faster


def _size(value: Any) -> int:
    """The element count, from the attribute where there is one: Dask does not implement
    ``np.size``, and NumPy's fallback would compute the array to count it."""
    size = getattr(value, "size", None)
    return np.size(value) if size is None else size


def _sum_leading(value: Any, shape: tuple[int, ...]) -> Any:
    """Sum the batch axes a stacked matmul broadcast ``value`` over, down to ``shape``."""
    value = _array(value)
    xp = _xp(value)
    while value.ndim > len(shape):
        value = xp.sum(value, axis=0)
    for axis, (have, want) in enumerate(zip(value.shape, shape, strict=True)):
        if want == 1 and have != 1:
            value = xp.sum(value, axis=axis, keepdims=True)
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
    xp = _xp(g)
    if axes is None:
        return xp.transpose(g)
    ndim = np.ndim(g)
    inverse = np.argsort([axis % ndim for axis in axes])
    return xp.transpose(g, tuple(inverse.tolist()))  # a tuple: Dask takes no array of axes


def reshape_backward(g: Any, x: Any) -> Any:
    """Adjoint of any reshaping of ``x`` (reshape, expand_dims, squeeze, ravel)."""
    return _xp(g).reshape(g, np.shape(x))


def concatenate_backward(g: Any, axis: int, position: int, *arrays: Any) -> Any:
    """Adjoint of ``np.concatenate(arrays, axis)`` for ``arrays[position]``."""
    xp = _xp(g)
    if axis is None:  # the arrays were flattened first
        start = sum(_size(a) for a in arrays[:position])
        piece = xp.ravel(g)[start:start + _size(arrays[position])]
        return xp.reshape(piece, np.shape(arrays[position]))
    start = sum(np.shape(a)[axis] for a in arrays[:position])
    size = np.shape(arrays[position])[axis]
    index = [slice(None)] * np.ndim(g)
    index[axis] = slice(start, start + size)
    return xp.reshape(g[tuple(index)], np.shape(arrays[position]))


def stack_backward(g: Any, axis: int, position: int) -> Any:
    """Adjoint of ``np.stack(arrays, axis)`` for ``arrays[position]``."""
    if type(g) is np.ndarray or _xp(g) is np:
        return np.take(g, position, axis=axis)
    return g[(slice(None),) * (axis % g.ndim) + (position, ...)]  # the array API: no int take


def getitem_backward(g: Any, x: Any, index: Any) -> Any:
    """Adjoint of ``x[index]``: ``g`` scattered back, repeated indices adding up."""
    if is_foreign(g) or is_foreign(x):
        return _scatter_foreign(g, x, index)
    out = np.zeros(np.shape(x), dtype=np.result_type(g, x, np.float32))
    if _is_basic(index):
        out[index] = g  # basic indexing selects each element at most once
    else:
        np.add.at(out, index, g)
    return out


def _scatter_foreign(g: Any, x: Any, index: Any) -> Any:
    """`getitem_backward` for another library's arrays: assignment into its own zeros.

    ``np.add.at`` (the scatter-add behind repeated indices) exists only for NumPy buffers, and
    a dask array cannot be written into one without computing it. Item assignment is lazy in
    Dask, and exact whenever no element is selected twice: basic indexing, or integer arrays
    without repeats (checked when they are NumPy arrays). Repeats raise rather than lose terms.
    """
    like = g if is_foreign(g) else x
    xp = _xp(like)
    if xp is np:
        dtype = np.result_type(g.dtype if hasattr(g, "dtype") else g,
                               x.dtype if hasattr(x, "dtype") else x, np.float32)
    else:  # the array API's dtypes: the floating one of the two
        dtype = like.dtype if xp.isdtype(like.dtype, "real floating") else xp.float64
    if _ndim(x) == 1 and hasattr(g, "map_blocks") and _is_mask(index, np.shape(x)):
        return _unmask_blocks(g, x, index, dtype)
    out = xp.zeros_like(like, dtype=dtype, shape=np.shape(x))
    if not _plainly_basic(index) and not _unique_along_one_axis(index, np.shape(x)):
        raise NotImplementedError(
            f"srcgrad cannot scatter a gradient into a {type(like).__name__} lazily through "
            "this index (repeated indices, several index arrays, or a mask): index with unique "
            "integers, or call this function with NumPy arrays")
    parts = index if type(index) is tuple else (index,)
    # Neither Dask nor the array API assigns through a new axis: drop the Nones (and g's
    # size-1 axes with them). The array API also wants every axis indexed, or a `...`.
    kept = tuple(part for part in parts if part is not None)
    changed = len(kept) != len(parts)
    if xp is not np and not any(part is Ellipsis for part in kept):
        kept, changed = (*kept, ...), True
    if changed:
        index = kept
        g = xp.reshape(g, np.shape(out[index]))
    out[index] = g
    return out


def _plainly_basic(index: Any) -> bool:
    """Whether ``index`` is made of integers, slices, None and ``...`` only. Stricter than
    `_is_basic`: an index array of another library (a dask array of integers, which may
    repeat, or of booleans) is not basic here."""
    parts = index if type(index) is tuple else (index,)
    return all(isinstance(part, (int, np.integer, slice)) or part is None or part is Ellipsis
               for part in parts)


def _is_mask(index: Any, shape: tuple[int, ...]) -> bool:
    """Whether ``index`` is one boolean array of ``shape`` (``x[x > 0]``)."""
    dtype = getattr(index, "dtype", None)
    return dtype is not None and dtype == np.bool_ and np.shape(index) == shape


def _unmask_blocks(g: Any, x: Any, mask: Any, dtype: Any) -> Any:
    """The adjoint of ``x[mask]`` for a 1-D dask ``x``, block by block.

    Dask selects with a mask chunk by chunk, so the selection's i-th chunk (of a length known
    only after computing) holds chunk i's selected entries, and an elementwise adjoint ``g``
    keeps those chunks: each block of the result is that chunk's zeros with ``g``'s block put
    where the mask holds. No chunk sizes are needed, and nothing is computed.
    """
    import dask.array as da  # here only for dask data, so Dask stays optional

    chunks = x.chunks if hasattr(x, "chunks") else g.chunks
    mask = da.asarray(mask).rechunk(chunks)
    if g.numblocks != mask.numblocks:
        raise NotImplementedError(
            "srcgrad cannot put a gradient back through a boolean mask of a dask array whose "
            "selection was re-chunked; use np.where(mask, ..., 0) instead of indexing")

    def place(block_mask: np.ndarray, block_g: np.ndarray) -> np.ndarray:
        out = np.zeros(block_mask.shape, dtype=dtype)
        out[block_mask] = block_g
        return out

    return da.map_blocks(place, mask, g, dtype=dtype, chunks=mask.chunks)


def _unique_along_one_axis(index: Any, shape: tuple[int, ...]) -> bool:
    """Whether ``index`` is full slices around one NumPy integer array without repeats."""
    parts = index if type(index) is tuple else (index,)
    arrays = [(axis, part) for axis, part in enumerate(parts)
              if not (type(part) is slice and part == slice(None))]
    if len(arrays) != 1 or not isinstance(arrays[0][1], (list, np.ndarray)):
        return False
    axis, part = arrays[0]
    part = np.asarray(part)
    if part.dtype.kind not in "iu" or axis >= len(shape):
        return False
    return np.unique(part % shape[axis]).size == part.size


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


def expand_to(g: Any, shape: tuple[int, ...], like: Any = None) -> Any:
    """``g`` (broadcastable to ``shape``) at that full shape, for rules that need it.

    ``like``, an array of the computation, says where a number ``g`` (the seed adjoint 1.0)
    is made when that is not NumPy: an array-API array on some device.
    """
    g_shape = g.shape if type(g) is np.ndarray else np.shape(g)
    if g_shape == shape:
        return g
    if like is not None and not hasattr(g, "ndim") and _xp(like) is not np:
        xp = _xp(like)
        return xp.full(shape, g, dtype=xp.float64, device=like.device)
    if len(g_shape) == len(shape) and any(side != side for side in shape):
        return g  # Dask's unknown (nan) lengths: g has them too, it comes from the same data
    return _xp(g).broadcast_to(g, shape)


def where_mask(condition: Any) -> Any:
    """1.0 where ``condition`` holds, else 0.0 (the partial of ``np.where`` in its 2nd arg)."""
    return _xp(condition).where(condition, 1.0, 0.0)


def clip_inside(x: Any, low: Any, high: Any) -> Any:
    """Partial of ``np.clip(x, low, high)`` in ``x``: 1 where x is inside the bounds.

    NumPy's clip is ``minimum(maximum(x, low), high)``, and its three partials follow that
    definition exactly, also where ``low > high`` (the result is then ``high``). A tie counts as
    inside. Built from the comparisons themselves rather than ``&=`` into a NumPy buffer, so
    that it stays in ``x``'s library (a lazy dask array stays lazy).
    """
    xp = _xp(x, low, high)
    inside = None
    if low is not None:
        inside = xp.greater_equal(x, low)
    if high is not None:  # where x >= low, maximum(x, low) is x
        below = xp.less_equal(x, high)
        inside = below if inside is None else inside & below
    if inside is None:
        return xp.ones_like(x, dtype=xp.float64)
    return _ones_where(xp, inside)


def clip_below(x: Any, low: Any, high: Any) -> Any:
    """Partial of ``np.clip`` in its lower bound: 1 where x was raised to it and that was not
    lowered again to ``high`` (which happens when ``low > high``)."""
    xp = _xp(x, low, high)
    raised = xp.less(x, low)
    if high is not None:  # where x < low, maximum(x, low) is low
        raised = raised & xp.less_equal(xp.maximum(x, low), high)
    return _ones_where(xp, raised)


def clip_above(x: Any, low: Any, high: Any) -> Any:
    """Partial of ``np.clip`` in its upper bound: 1 where ``maximum(x, low)`` was lowered to it."""
    xp = _xp(x, low, high)
    return _ones_where(xp, xp.greater(x if low is None else xp.maximum(x, low), high))


def _ones_where(xp: Any, condition: Any) -> Any:
    return condition * 1.0 if xp is np else xp.where(condition, 1.0, 0.0)
