"""Elementary functions that accept Python floats and NumPy arrays alike.

On a Python float each function uses the `math` module (tens of nanoseconds, not the
microsecond of a NumPy scalar call); on anything else it uses the NumPy ufunc, with broadcasting.
NumPy's ufuncs dispatch to Dask and CuPy arrays themselves; an array that only implements the
Python array API (array-api-strict, JAX) is sent to its own namespace under NumPy's names
(`srcgrad.runtime.namespace`), not converted to NumPy.
Where `math` refuses an input that NumPy answers with inf or nan (``log(0.0)``,
``sqrt(-1.0)``, ``exp(1000.0)``), the float path falls back to NumPy, so a function gives the
same answer for ``0.0`` and for ``np.array([0.0])``.

srcgrad knows the derivative of every function here (see `srcgrad.rules`), so user code may
call them freely inside a differentiated function; the NumPy and `math` originals work too.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import numpy as np

_numpy = np  # the module itself, where a parameter named np shadows it

__all__ = [
    "abs", "arccos", "arccosh", "arcsin", "arcsinh", "arctan", "arctan2", "arctanh", "cbrt",
    "cos", "cosh", "erf", "exp", "exp2", "expm1", "hypot", "log", "log1p", "log2", "log10",
    "maximum", "minimum", "power", "reciprocal", "relu", "sigmoid", "sin", "sinh", "softplus",
    "sqrt", "square", "tan", "tanh",
]  # fmt: skip

_SCALARS = (float, int)
_FALLBACK = (ValueError, OverflowError, ZeroDivisionError)


def _array_api_only(x: Any) -> bool:
    """Whether ``x`` is an array NumPy's functions cannot take: the array API and nothing else."""
    kind = type(x)
    return (kind is not np.ndarray and hasattr(kind, "__array_namespace__")
            and not hasattr(kind, "__array_function__") and not isinstance(x, np.generic))


def _in_namespace(on_array: Callable, *args: Any) -> Any:
    """``on_array(*args)`` with ``np`` meaning the arguments' own namespace: the array
    implementations here take the module as a keyword (``np=``) for this."""
    from .runtime import namespace  # runtime imports this module: import when needed

    return on_array(*args, np=namespace(*args))


def _lift1(name: str, on_float: Callable, on_array: Callable, doc: str) -> Callable:
    """A one-argument function: `on_float` for Python numbers, `on_array` otherwise."""
    on_namespace = _namespaced(name, on_array, 1)

    def function(x: Any) -> Any:
        if type(x) in _SCALARS:
            try:
                return on_float(x)
            except _FALLBACK:
                pass
        elif type(x) is not np.ndarray and _array_api_only(x):
            return _in_namespace(on_namespace, x)
        return on_array(x)

    function.__name__ = function.__qualname__ = name
    function.__doc__ = doc
    function.__module__ = __name__
    return function


def _lift2(name: str, on_float: Callable, on_array: Callable, doc: str) -> Callable:
    """A two-argument function: `on_float` when both are Python numbers, `on_array` otherwise."""
    on_namespace = _namespaced(name, on_array, 2)

    def function(x: Any, y: Any) -> Any:
        if type(x) in _SCALARS and type(y) in _SCALARS:
            try:
                return on_float(x, y)
            except _FALLBACK:
                pass
        elif _array_api_only(x) or _array_api_only(y):
            return _in_namespace(on_namespace, x, y)
        return on_array(x, y)

    function.__name__ = function.__qualname__ = name
    function.__doc__ = doc
    function.__module__ = __name__
    return function


def _namespaced(name: str, on_array: Callable, arity: int) -> Callable:
    """The array implementation taking its module as ``np=``: `on_array` itself when it
    accepts that keyword, else the module's function named like the ufunc (or like ours)."""
    if isinstance(on_array, np.ufunc):
        name = on_array.__name__  # "absolute" for np.abs: NumpyNames knows the array API's
    elif "np" in inspect.signature(on_array).parameters:
        return on_array
    if arity == 1:
        return lambda x, np: getattr(np, name)(x)
    return lambda x, y, np: getattr(np, name)(x, y)


def _sigmoid_float(x: float) -> float:
    # Two branches so that exp never overflows: exp(-|x|) <= 1.
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def _sigmoid_array(x: Any, np: Any = np) -> Any:
    # 1 / (1 + exp(-x)) = exp(-log(1 + exp(-x))), computed stably by logaddexp.
    return np.exp(-np.logaddexp(0.0, np.negative(x)))


def _softplus_array(x: Any, np: Any = np) -> Any:
    return np.logaddexp(0.0, x)


def _relu_array(x: Any, np: Any = np) -> Any:
    return np.maximum(x, 0.0)


def _reciprocal_array(x: Any, np: Any = np) -> Any:
    return np.divide(1.0, x)


def _square_array(x: Any, np: Any = np) -> Any:
    return x * x if np is not _numpy else _numpy.square(x)


def _softplus_float(x: float) -> float:
    return max(x, 0.0) + math.log1p(math.exp(-math.fabs(x)))


def _cbrt_float(x: float) -> float:
    return math.copysign(math.fabs(x) ** (1.0 / 3.0), x)


def _erf_array(x: Any) -> Any:
    try:  # SciPy's erf is vectorised C; it is an optional extra (`pip install srcgrad[special]`).
        from scipy.special import erf as scipy_erf
    except ImportError:
        map_blocks = getattr(x, "map_blocks", None)  # a Dask array: stay lazy, per chunk
        if map_blocks is not None:
            return map_blocks(_erf_vectorised, dtype=float)
        return _erf_vectorised(x)
    return scipy_erf(x)


_erf_vectorised = np.vectorize(math.erf, otypes=[float])


def _relu_float(x: float) -> float:
    return x if x > 0.0 else 0.0


def _power_float(x: float, y: float) -> float:
    # math.pow raises on a negative base with a fractional exponent, where ** would return a
    # complex number; the raise sends us to NumPy, which answers nan like it does for arrays.
    return math.pow(x, y)


sin = _lift1("sin", math.sin, np.sin, "Sine.")
cos = _lift1("cos", math.cos, np.cos, "Cosine.")
tan = _lift1("tan", math.tan, np.tan, "Tangent.")
arcsin = _lift1("arcsin", math.asin, np.arcsin, "Inverse sine.")
arccos = _lift1("arccos", math.acos, np.arccos, "Inverse cosine.")
arctan = _lift1("arctan", math.atan, np.arctan, "Inverse tangent.")
sinh = _lift1("sinh", math.sinh, np.sinh, "Hyperbolic sine.")
cosh = _lift1("cosh", math.cosh, np.cosh, "Hyperbolic cosine.")
tanh = _lift1("tanh", math.tanh, np.tanh, "Hyperbolic tangent.")
arcsinh = _lift1("arcsinh", math.asinh, np.arcsinh, "Inverse hyperbolic sine.")
arccosh = _lift1("arccosh", math.acosh, np.arccosh, "Inverse hyperbolic cosine.")
arctanh = _lift1("arctanh", math.atanh, np.arctanh, "Inverse hyperbolic tangent.")
exp = _lift1("exp", math.exp, np.exp, "Exponential.")
expm1 = _lift1("expm1", math.expm1, np.expm1, "exp(x) - 1, accurate near 0.")
exp2 = _lift1("exp2", getattr(math, "exp2", lambda x: 2.0**x), np.exp2, "2 ** x.")
log = _lift1("log", math.log, np.log, "Natural logarithm.")
log1p = _lift1("log1p", math.log1p, np.log1p, "log(1 + x), accurate near 0.")
log2 = _lift1("log2", math.log2, np.log2, "Base-2 logarithm.")
log10 = _lift1("log10", math.log10, np.log10, "Base-10 logarithm.")
sqrt = _lift1("sqrt", math.sqrt, np.sqrt, "Square root.")
cbrt = _lift1("cbrt", getattr(math, "cbrt", _cbrt_float), np.cbrt, "Cube root (real).")
square = _lift1("square", lambda x: x * x, _square_array, "x * x.")
reciprocal = _lift1("reciprocal", lambda x: 1.0 / x, _reciprocal_array, "1 / x.")
abs = _lift1("abs", math.fabs, np.abs, "Absolute value.")
sigmoid = _lift1("sigmoid", _sigmoid_float, _sigmoid_array, "Logistic 1 / (1 + exp(-x)), stable.")
relu = _lift1("relu", _relu_float, _relu_array, "max(x, 0).")
softplus = _lift1("softplus", _softplus_float, _softplus_array, "log(1 + exp(x)), stable.")
erf = _lift1("erf", math.erf, _erf_array, "Gauss error function.")
arctan2 = _lift2("arctan2", math.atan2, np.arctan2, "Angle of the point (x, y): arctan2(y, x).")
hypot = _lift2("hypot", math.hypot, np.hypot, "sqrt(x**2 + y**2) without overflow.")
maximum = _lift2("maximum", max, np.maximum, "Elementwise maximum.")
minimum = _lift2("minimum", min, np.minimum, "Elementwise minimum.")
power = _lift2("power", _power_float, np.power, "x ** y (nan: negative base, fractional y).")
