"""What generated code calls at run time, bound into it under the name ``sg``.

Kept deliberately small: the engine's broadcasting reduction (`sum_to`), the shaping of final
gradients (`grad_like`), argument checks, and the elementwise functions of
`srcgrad.functions` (re-exported so generated code needs one name).

Every helper also takes other libraries' arrays (`backward.is_foreign`: Dask, CuPy, array-API
arrays) and answers in that library: reductions go through ``np.sum`` dispatch or the array's
own namespace, never ``np.vdot`` or ``np.asarray``, and a gradient computed from dask data stays
a lazy dask array, a 0-d one for a Python-float parameter (see docs/scaling.md). NumPy arrays
are recognised first, by exact type, so the common path pays one comparison for this.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from .backward import *  # noqa: F403 - generated code calls the array backward helpers as sg.<name>
from .backward import __all__ as _backward
from .backward import is_foreign
from .functions import *  # noqa: F403 - generated code reaches every function as sg.<name>
from .functions import __all__ as _functions

__all__ = [*_functions, *_backward, "SCALARS", "NumpyNames", "as_array", "fits", "fusable",
           "any_float", "float64_arrays", "grad_like", "namespace", "numpy_float", "reduce_to",
           "shaped_as", "sign", "step",
           "sum_product", "sum_squares", "sum_to", "tie_weight", "zip_item"]

SCALARS = (float, int)  # argument types that take the float fast path


def _namespace(value: Any) -> Any:
    """The module whose array-API functions (``sum``, ``reshape``, ``astype``) take ``value``:
    NumPy for its own arrays and for arrays NumPy's functions dispatch to (Dask, CuPy:
    ``__array_function__``), else the array's own namespace."""
    kind = type(value)
    if (hasattr(kind, "__array_function__") or not hasattr(kind, "__array_namespace__")
            or isinstance(value, np.generic)):
        return np
    return value.__array_namespace__()


def namespace(*values: Any) -> Any:
    """What array code should call ``np.<name>`` on for these values: NumPy itself, unless
    one of them is an array NumPy's functions cannot take.

    NumPy arrays, numbers, and arrays that implement NumPy's dispatch protocols (Dask, CuPy:
    ``np.exp`` of them stays theirs) get ``np``. An array that only offers the Python array
    API (``__array_namespace__``: array-api-strict, JAX) gets its namespace behind
    `NumpyNames`, so that generated code written against NumPy's names runs on it. Meant for
    the generated array path: ``xp = sg.namespace(x, y)`` once, then ``xp.exp(...)``.

    A tuple, list or dict (a structured parameter) is looked into. NumPy arrays and Python
    numbers are recognised first, by exact type: on NumPy data this costs a loop of type checks.
    """
    for value in values:
        if type(value) in _NUMPY_TYPES:
            continue
        xp = _namespace_in(value)
        if xp is not np:
            return xp
    return np


# Types `namespace` passes over with one set look-up: the common case costs a loop of these.
_NUMPY_TYPES = frozenset({np.ndarray, float, int, np.float64})


def _namespace_in(value: Any) -> Any:
    """`namespace` of one value that is not a NumPy array or a number: of a container's
    elements, else of the value."""
    kind = type(value)
    if kind in (tuple, list, dict):
        return namespace(*(value.values() if kind is dict else value))
    xp = _namespace(value)
    return np if xp is np else numpy_names(xp)


_ADAPTED: dict[int, NumpyNames] = {}
_ARRAY_API_NAMES = {  # NumPy's name -> the array API's, where they differ
    "arcsin": "asin", "arccos": "acos", "arctan": "atan", "arcsinh": "asinh", "arccosh": "acosh",
    "arctanh": "atanh", "arctan2": "atan2", "power": "pow", "absolute": "abs", "fabs": "abs",
    "concatenate": "concat", "true_divide": "divide", "amax": "max", "amin": "min"}


def numpy_names(xp: Any) -> NumpyNames:
    """The `NumpyNames` view of namespace ``xp`` (made once per namespace)."""
    adapted = _ADAPTED.get(id(xp))
    if adapted is None or adapted.xp is not xp:
        adapted = _ADAPTED[id(xp)] = NumpyNames(xp)
    return adapted


class NumpyNames:
    """An array-API namespace under NumPy's names and signatures.

    The derivative rules are written as NumPy calls (``np.arcsin``, ``np.concatenate``,
    ``np.transpose(x, axes)``, ``np.where(c, 1.0, 0.0)``). The array API names some of these
    differently (``asin``, ``concat``, ``permute_dims``) or leaves them out (``einsum``,
    ``heaviside``, ``cbrt``); this class maps the one set onto the other, so that the same rule
    serves both. A name the namespace has under NumPy's spelling is used as it is (JAX's
    ``jax.numpy`` needs no mapping); anything missing raises AttributeError naming it.
    """

    def __init__(self, xp: Any) -> None:
        self.xp = xp
        self.linalg = _Linalg(xp)

    def __repr__(self) -> str:
        return f"<NumPy names for {self.xp.__name__}>"

    def __getattr__(self, name: str) -> Any:
        xp = self.xp
        adapter = getattr(type(self), "_" + name, None)
        if adapter is not None:
            found = functools.partial(adapter, xp)
        elif hasattr(xp, name):
            found = getattr(xp, name)
        elif name in _ARRAY_API_NAMES:
            found = getattr(xp, _ARRAY_API_NAMES[name])
        else:
            raise AttributeError(f"{xp.__name__} has no {name} (nor an array-API equivalent "
                                 f"srcgrad knows); this operation needs NumPy arrays")
        setattr(self, name, found)  # found once per name
        return found

    # Functions whose array-API form differs in signature or is missing.
    @staticmethod
    def _transpose(xp: Any, x: Any, axes: Any = None) -> Any:
        return xp.permute_dims(x, tuple(reversed(range(x.ndim))) if axes is None else axes)

    @staticmethod
    def _ravel(xp: Any, x: Any) -> Any:
        return xp.reshape(x, (-1,))

    @staticmethod
    def _squeeze(xp: Any, x: Any, axis: Any = None) -> Any:
        if axis is None:
            axis = tuple(i for i, side in enumerate(x.shape) if side == 1)
        return xp.squeeze(x, axis=axis)

    @staticmethod
    def _expand_dims(xp: Any, x: Any, axis: Any) -> Any:
        for a in sorted(a % (x.ndim + len(axis)) for a in axis) if isinstance(
                axis, (tuple, list)) else (axis,):
            x = xp.expand_dims(x, axis=a)
        return x

    @staticmethod
    def _dot(xp: Any, a: Any, b: Any) -> Any:
        if a.ndim > 2 or b.ndim > 2:
            raise NotImplementedError("np.dot of arrays of more than 2 dimensions: use @")
        return xp.matmul(a, b)

    @staticmethod
    def _outer(xp: Any, a: Any, b: Any) -> Any:
        return xp.reshape(a, (-1, 1)) * xp.reshape(b, (1, -1))

    @staticmethod
    def _where(xp: Any, condition: Any, a: Any, b: Any) -> Any:
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):  # two scalars: one
            a = xp.asarray(float(a), device=condition.device)  # must be an array
        return xp.where(condition, a, b)

    @staticmethod
    def _heaviside(xp: Any, x: Any, at_zero: Any) -> Any:
        one = xp.ones_like(x)
        return xp.where(x > 0, one, xp.where(x == 0, at_zero * one, 0 * one))

    @staticmethod
    def _cumprod(xp: Any, x: Any, axis: int) -> Any:
        return xp.cumulative_prod(x, axis=axis)

    @staticmethod
    def _exp2(xp: Any, x: Any) -> Any:
        return 2.0 ** x

    @staticmethod
    def _cbrt(xp: Any, x: Any) -> Any:
        return xp.sign(x) * xp.abs(x) ** (1.0 / 3.0)

    # Shapes: of the namespace's arrays, and of the Python numbers beside them (a scalar
    # parameter of a fit: generated code reads ``xp.shape(mu)`` too).
    @staticmethod
    def _shape(xp: Any, x: Any) -> tuple[int, ...]:
        return tuple(x.shape) if hasattr(x, "shape") else np.shape(x)

    @staticmethod
    def _ndim(xp: Any, x: Any) -> int:
        return len(NumpyNames._shape(xp, x))

    @staticmethod
    def _size(xp: Any, x: Any) -> int:
        return math.prod(NumpyNames._shape(xp, x))

    @staticmethod
    def _zeros_like(xp: Any, x: Any, dtype: Any = None, shape: Any = None) -> Any:
        if dtype is not None and not isinstance(dtype, type(x.dtype)):
            dtype = getattr(xp, np.dtype(dtype).name)  # a NumPy dtype: the namespace's own
        if shape is None:
            return xp.zeros_like(x, dtype=dtype)
        return xp.zeros(shape, dtype=dtype or x.dtype, device=x.device)

    @staticmethod
    def _einsum(xp: Any, *args: Any) -> Any:
        raise NotImplementedError("the array API has no einsum: use @, sum and products")


class _Linalg:
    """``np.linalg.norm`` on an array-API namespace (vector norms and Frobenius)."""

    def __init__(self, xp: Any) -> None:
        self.xp = xp

    def norm(self, x: Any, ord: Any = None, axis: Any = None, keepdims: bool = False) -> Any:
        linalg = self.xp.linalg
        vector = x.ndim <= 1 or isinstance(axis, int) or (
            isinstance(axis, tuple) and len(axis) == 1)
        if vector or ord in (None, "fro"):
            return linalg.vector_norm(x, axis=axis, keepdims=keepdims,
                                      ord=2 if ord in (None, "fro") else ord)
        return linalg.matrix_norm(x, keepdims=keepdims, ord=ord)


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
    xp = np if type(v) is np.ndarray or not is_foreign(v) else _namespace(v)
    lead = len(n_shape) - len(x_shape)
    if v_shape == n_shape and n_shape[lead:] == x_shape:  # a bias: sum over leading axes
        if xp is np:
            return v.sum(axis=tuple(range(lead)))  # the method: NumPy's fastest spelling
        return xp.sum(v) if x_shape == () else xp.sum(v, axis=tuple(range(lead)))
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
        v = xp.sum(xp.reshape(v, v_full), axis=tuple(axes), keepdims=True)
        v = xp.reshape(v, np.shape(v)[rank - len(x_shape):])
    elif len(v_shape) > len(x_shape):
        v = xp.reshape(v, v_full[rank - len(x_shape):])
    return v * factor if factor != 1 else v


def sum_product(a: Any, b: Any, x_shape: tuple[int, ...], n_shape: tuple[int, ...]) -> Any:
    """``sum_to(a * b, x_shape, n_shape)``; a dot product when everything is summed.

    ``np.vdot`` multiplies and adds in one pass without the temporary product array. It is
    for NumPy arrays only: on a dask array it would compute, so other arrays take the product
    and `sum_to`, a per-chunk sum and a tree reduction in Dask.
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


def any_float(*values: Any) -> bool:
    """Whether any of ``values`` is a Python float (see `numpy_float`)."""
    return any(type(value) is float for value in values)


def numpy_float(value: Any) -> Any:
    """A Python float as a NumPy float64, which divides by zero to inf or nan rather than
    raising; anything else as it is."""
    return np.float64(value) if type(value) is float else value


_FLOAT64 = np.dtype(np.float64)


def shaped_as(shapes: tuple[Any, ...], *values: Any) -> bool:
    """Whether ``values`` are float64 NumPy arrays of exactly these ``shapes``: the condition of
    the path whose broadcasting was resolved when it was generated (see `srcgrad.static`).

    A tuple or list of arrays is matched against a tuple of shapes, a dict against a dict of
    them, key by key (the generated code reads a dict by key, in whatever order it comes).
    """
    if len(values) != len(shapes):
        return False
    for value, shape in zip(values, shapes, strict=True):
        kind = type(value)
        if kind is np.ndarray:
            if value.shape != shape or value.dtype is not _FLOAT64:
                return False
        elif kind is tuple or kind is list:
            if type(shape) is not tuple or not shaped_as(shape, *value):
                return False
        elif kind is dict:
            if (type(shape) is not dict or len(value) != len(shape)
                    or not all(key in value for key in shape)
                    or not shaped_as(tuple(shape.values()), *(value[key] for key in shape))):
                return False
        else:
            return False
    return True


def value_like(value: Any, *arrays: np.ndarray) -> Any:
    """``value`` (a float, or a float64 array) in the floating type NumPy's arithmetic on
    ``arrays`` gives: what the NumPy backend returns where the fused loop computed in float64."""
    dtype = np.result_type(*arrays)
    if dtype.kind != "f":
        dtype = np.dtype(np.float64)
    if isinstance(value, np.ndarray):
        return value.astype(dtype, copy=False)
    return dtype.type(value)


def structure_of(value: Any) -> Any:
    """The structure srcgrad sees in an argument: containers of arrays, or a leaf (None).

    A tuple or list of numbers is a leaf (it becomes an array). The first call's structures
    decide how the generated code unpacks its parameters.
    """
    if isinstance(value, dict):
        return ("dict", tuple(value), tuple(structure_of(v) for v in value.values()))
    if isinstance(value, (tuple, list)) and not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return (type(value).__name__ if type(value) in (tuple, list) else "tuple",
                tuple(range(len(value))), tuple(structure_of(v) for v in value))
    return None


def structures(*values: Any) -> tuple[Any, ...]:
    """`structure_of` each value: what a generated function compares with its first call's
    before it unpacks structured parameters (another structure has a transform of its own)."""
    return tuple(structure_of(value) for value in values)


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
    """``np.sum(v ** 2)`` without the squared temporary: a dot product of ``v`` with itself.

    Another library's array is squared and summed by its own namespace (lazily, chunk by chunk,
    for Dask).
    """
    if type(v) is np.ndarray and v.dtype.kind == "f":
        return np.vdot(v, v)
    return _namespace(v).sum(v * v) if is_foreign(v) else np.sum(v * v)


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

    A ``g`` from another library stays in it: a dask ``g`` is returned as a lazy dask array even
    for a NumPy or Python-float ``x`` (then a 0-d one), since making it a NumPy array or a float
    would compute the graph here, once per gradient, instead of in one ``dask.compute`` call.
    """
    if type(x) is np.ndarray:
        dtype = x.dtype if x.dtype.kind in "fc" else np.float64
        if isinstance(g, np.ndarray) and g.shape == x.shape and g.dtype == dtype and not copy:
            return g
        if is_foreign(g):
            return _foreign_like(g, x.shape, dtype, copy)
        if np.shape(g) == x.shape:
            return np.array(g, dtype=dtype)
        out = np.empty(x.shape, dtype=dtype)
        out[...] = g
        return out
    if is_foreign(g):  # x a number or another library's array: shape it where g lives
        if isinstance(x, np.generic) and x.dtype.kind == "f":
            return _foreign_like(g, (), x.dtype, copy)
        if isinstance(x, (float, int, np.number)):
            return _foreign_like(g, (), np.float64, copy)  # a float's gradient: float64
        return _foreign_like(g, np.shape(x), None, copy)
    if isinstance(x, np.generic) and x.dtype.kind == "f":
        return x.dtype.type(g)
    if is_foreign(x):
        return g + 0 * x  # a number or NumPy gradient for another library's array
    return float(g)


def _foreign_like(g: Any, shape: tuple[int, ...], dtype: Any, copy: bool) -> Any:
    """Another library's ``g`` at ``shape`` and ``dtype`` (a NumPy dtype; None: g's own, made
    floating), with that library's operations, so a lazy ``g`` stays lazy."""
    xp = _namespace(g)
    if xp is np:  # NumPy dispatch (Dask): NumPy dtypes, array methods
        if dtype is None:
            dtype = g.dtype if g.dtype.kind in "fc" else np.float64
        if g.dtype != dtype:
            g, copy = g.astype(dtype), False
    else:  # the array API: its own dtype objects, named like NumPy's
        if dtype is None and not xp.isdtype(g.dtype, ("real floating", "complex floating")):
            dtype = np.float64
        if dtype is not None and g.dtype != getattr(xp, np.dtype(dtype).name):
            g, copy = xp.astype(g, getattr(xp, np.dtype(dtype).name)), False
    if np.shape(g) != shape:
        size = 1
        for side in np.shape(g):
            size *= side
        # A size-1 gradient of a scalar is reshaped; otherwise broadcast (a constant's).
        g = xp.reshape(g, shape) if size == 1 and shape == () else xp.broadcast_to(g, shape)
        copy = copy and xp is not np
    if copy:
        g = g.copy() if hasattr(g, "copy") else xp.asarray(g, copy=True)
    return g


def as_array(value: Any, parameter: str, function: str, differentiated: bool) -> Any:
    """``value`` checked (and lists converted) for the array path, or a clear `TypeError`."""
    if type(value) is np.ndarray and value.dtype.kind == "f":
        return value  # the common case, checked first
    if isinstance(value, np.ndarray):
        if type(value) is not np.ndarray:  # np.matrix's * is @; a masked array's mask is lost
            raise TypeError(
                f"{function}(): parameter '{parameter}' is a {type(value).__name__}, whose "
                "arithmetic differs from a plain array's; pass np.asarray(...) of it (for a "
                "masked array, the entries to use: x[~x.mask], or np.ma.filled(x, value)).")
        if value.dtype.kind == "f":
            return value
        if value.dtype.kind == "c":
            raise TypeError(
                f"{function}(): parameter '{parameter}' is a complex array; srcgrad "
                "differentiates real functions of real numbers. Pass the real and imaginary "
                "parts as two real arrays.")
        if value.dtype.kind in "iub":
            # Data may stay integer (indices, counts); a differentiated array becomes float64,
            # or its gradient would be computed in its own integer type (and wrap around).
            return value.astype(np.float64) if differentiated else value
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
    return np.sign(x) if type(x) is np.ndarray else namespace(x).sign(x)


def step(x: Any) -> Any:
    """1 where x > 0, else 0 (the derivative of relu; 0 at the kink)."""
    if type(x) in SCALARS:
        return 1.0 if x > 0 else 0.0
    return np.heaviside(x, 0.0) if type(x) is np.ndarray else namespace(x).heaviside(x, 0.0)


def tie_weight(x: Any, y: Any) -> Any:
    """d maximum(x, y) / dx: 1 where x > y, 0 where x < y, 1/2 on a tie (a subgradient)."""
    if type(x) in SCALARS and type(y) in SCALARS:
        return 1.0 if x > y else (0.5 if x == y else 0.0)
    xp = np if type(x) is np.ndarray and type(y) is np.ndarray else namespace(x, y)
    if xp is np:
        return np.greater(x, y) + 0.5 * np.equal(x, y)
    return xp.where(xp.greater(x, y), 1.0, xp.where(xp.equal(x, y), 0.5, 0.0))


def zip_item(array: Any, k: int, count: int, where: str) -> Any:
    """Item ``k`` of an array zipped with a list of ``count`` items, in a loop srcgrad unrolled
    over the list: the array must have an item for each of them. ``where`` names the zip."""
    if len(array) < count:
        raise ValueError(
            f"{where}: the array has {len(array)} items and the list or tuple {count}; srcgrad "
            "unrolls this loop over the list's items, where Python's zip would stop at the "
            "shorter. Zip the array with as many items as it has (slice the list or tuple).")
    return array[k]


def fusable(*arrays: Any) -> bool:
    """Whether ``arrays`` are NumPy arrays of real numbers, all of one shape: what a fused
    loop (``backend="numba"``) is compiled for."""
    first = arrays[0]
    for array in arrays:
        if type(array) is not np.ndarray or array.dtype.kind not in "fiub" or (
                array.shape != first.shape) or array.ndim == 0:
            return False
    return True
