"""What generated code calls at run time, bound into it under the name ``sg``.

Kept deliberately small: the engine's broadcasting reduction (`sum_to`), the shaping of final
gradients (`grad_like`), argument checks, and the elementwise functions of
`srcgrad.functions` (re-exported so generated code needs one name).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .backward import *  # noqa: F403 - generated code calls the array backward helpers as sg.<name>
from .backward import __all__ as _backward
from .functions import *  # noqa: F403 - generated code reaches every function as sg.<name>
from .functions import __all__ as _functions

__all__ = [*_functions, *_backward, "SCALARS", "as_array", "fits", "float64_arrays",
           "grad_like", "reduce_to", "sign", "step", "sum_product", "sum_squares", "sum_to",
           "tie_weight"]

SCALARS = (float, int)  # argument types that take the float fast path


def sum_to(v: Any, x_shape: tuple[int, ...], n_shape: tuple[int, ...]) -> Any:
    """The contribution ``v`` to the adjoint of ``x`` through an operation with result ``n``.

    ``v`` broadcasts to ``n``'s shape; the true contribution is ``v`` broadcast to that shape,
    then summed over the axes along which ``x`` was broadcast. Axes where ``v`` itself has size
    1 are not materialised: summing a constant along them is multiplying by their length.
    The generated code passes shapes, captured when ``x`` and ``n`` were computed, so that the
    arrays themselves can be freed early.
    """
    if x_shape == n_shape:
        return v
    v_shape = v.shape if type(v) is np.ndarray else np.shape(v)
    lead = len(n_shape) - len(x_shape)
    if v_shape == n_shape and n_shape[lead:] == x_shape:  # a bias: sum over leading axes
        return v.sum(axis=tuple(range(lead)))
    # Align the three shapes at the right (a user function may return something smaller than
    # its argument, so ``x`` can have more axes than ``n``).
    rank = max(len(n_shape), len(x_shape), len(v_shape))
    v_full = (1,) * (rank - len(v_shape)) + tuple(v_shape)
    x_full = (1,) * (rank - len(x_shape)) + tuple(x_shape)
    n_full = (1,) * (rank - len(n_shape)) + tuple(n_shape)
    axes = []
    factor = 1
    for axis, (n_dim, x_dim, v_dim) in enumerate(zip(n_full, x_full, v_full, strict=True)):
        if x_dim == 1 and n_dim != 1:
            if v_dim == 1:
                factor *= n_dim
            else:
                axes.append(axis)
    if axes:
        v = np.sum(np.reshape(v, v_full), axis=tuple(axes), keepdims=True)
        v = np.reshape(v, np.shape(v)[rank - len(x_shape):])
    elif len(v_shape) > len(x_shape):
        v = np.reshape(v, v_full[rank - len(x_shape):])
    return v * factor if factor != 1 else v


def sum_product(a: Any, b: Any, x_shape: tuple[int, ...], n_shape: tuple[int, ...]) -> Any:
    """``sum_to(a * b, x_shape, n_shape)``; a dot product when everything is summed.

    ``np.vdot`` multiplies and adds in one pass without the temporary product array.
    """
    if (x_shape == () and type(a) is np.ndarray and type(b) is np.ndarray
            and a.shape == b.shape == n_shape and a.dtype == b.dtype):
        return np.vdot(a, b)
    return sum_to(a * b, x_shape, n_shape)


def float64_arrays(*arrays: Any) -> bool:
    """Whether every argument is a float64 NumPy array of at least one dimension: the condition
    under which generated code may compute into its own temporaries (``out=``)."""
    for a in arrays:
        if type(a) is not np.ndarray or a.dtype != np.float64 or a.ndim == 0:
            return False
    return True


def fits(buffer: np.ndarray, *others: Any) -> np.ndarray | None:
    """``buffer`` if an elementwise result of it and ``others`` has its shape (then the result
    can be written into it, ``out=buffer``), else None (NumPy allocates)."""
    shape = buffer.shape
    for other in others:
        other_shape = other.shape if type(other) is np.ndarray else np.shape(other)
        if other_shape != shape and np.broadcast_shapes(shape, other_shape) != shape:
            return None
    return buffer


def sum_squares(v: Any) -> Any:
    """``np.sum(v ** 2)`` without the squared temporary: a dot product of ``v`` with itself."""
    if type(v) is np.ndarray and v.dtype.kind == "f":
        return np.vdot(v, v)
    return np.sum(v * v)


def reduce_to(v: Any, shape: tuple[int, ...]) -> Any:
    """A forward-mode tangent ``v`` summed down to ``shape`` when it is bigger.

    A user function's partial times a tangent has the argument's shape; for a function that
    returns a scalar of an array (a loss with a ``_derive``), the tangent is its sum.
    """
    v_shape = v.shape if type(v) is np.ndarray else np.shape(v)
    if len(v_shape) <= len(shape) and all(a in (1, b) for a, b in zip(
            v_shape[::-1], shape[::-1], strict=False)):
        return v  # already broadcasts to the result
    return sum_to(v, shape, v_shape)


def grad_like(g: Any, x: Any, copy: bool = False) -> Any:
    """The final gradient for parameter ``x``: ``x``'s shape, ``x``'s floating dtype.

    ``g`` broadcasts to ``x``'s shape (it may be a scalar, e.g. a constant derivative).
    ``copy`` is set when ``g`` might be a caller's array (the gradient of ``a * b`` w.r.t.
    ``b`` is ``a`` itself): the gradient must not alias an input.
    """
    if type(x) is np.ndarray:
        dtype = x.dtype if x.dtype.kind in "fc" else np.float64
        if isinstance(g, np.ndarray) and g.shape == x.shape and g.dtype == dtype and not copy:
            return g
        if np.shape(g) == x.shape:
            return np.array(g, dtype=dtype)
        out = np.empty(x.shape, dtype=dtype)
        out[...] = g
        return out
    if isinstance(x, np.generic) and x.dtype.kind == "f":
        return x.dtype.type(g)
    if hasattr(x, "__array_namespace__") or hasattr(x, "__array_ufunc__"):
        return g + 0 * x  # another array library: broadcast with its own operations
    return float(g)


def as_array(value: Any, parameter: str, function: str, differentiated: bool) -> Any:
    """``value`` checked (and lists converted) for the array path, or a clear `TypeError`."""
    if type(value) is np.ndarray and value.dtype.kind == "f":
        return value  # the common case, checked first
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "fc":
            return value
        if value.dtype.kind in "iub":
            return value  # integers stay integers (they may be indices); gradients are float
    elif isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
            value, bool):
        return value  # a Python float stays weakly typed: float32 arrays stay float32
    elif isinstance(value, (list, tuple)):
        try:
            return as_array(np.asarray(value, dtype=np.float64), parameter, function,
                            differentiated)
        except (TypeError, ValueError):
            pass
    elif hasattr(value, "__array_ufunc__") or hasattr(value, "__array_namespace__"):
        return value
    raise TypeError(
        f"{function}(): parameter '{parameter}' must be a number or a numeric array, "
        f"got {type(value).__name__} {value!r:.60}")


def sign(x: Any) -> Any:
    """-1, 0 or 1 (the derivative of abs; 0 at the kink)."""
    if type(x) in SCALARS:
        return 1.0 if x > 0 else (-1.0 if x < 0 else 0.0)
    return np.sign(x)


def step(x: Any) -> Any:
    """1 where x > 0, else 0 (the derivative of relu; 0 at the kink)."""
    if type(x) in SCALARS:
        return 1.0 if x > 0 else 0.0
    return np.heaviside(x, 0.0)


def tie_weight(x: Any, y: Any) -> Any:
    """d maximum(x, y) / dx: 1 where x > y, 0 where x < y, 1/2 on a tie (a subgradient)."""
    if type(x) in SCALARS and type(y) in SCALARS:
        return 1.0 if x > y else (0.5 if x == y else 0.0)
    return np.greater(x, y) + 0.5 * np.equal(x, y)
