"""Numba-compiled float versions of the ``sg.`` helpers the float path's templates call.

Inside a fused loop (`srcgrad.fused`) every value is one number, so the templates of
`srcgrad.rules` that call ``sg.relu(x)`` or ``sg.step(x)`` need those helpers as compiled
functions of floats. They are the float branches of `srcgrad.runtime`'s helpers, written again
here where they differ from those (which also take arrays); the others are `srcgrad.functions`'
float versions, compiled. The fused backend's tests compare every elementwise rule against the
NumPy backend, so the two cannot drift apart silently.

Importing this module imports Numba (the ``numba`` extra).
"""

from __future__ import annotations

import numba

from . import functions

__all__ = ["cbrt", "clip", "clip_above", "clip_below", "clip_inside", "exp2", "maximum", "minimum",
           "numba", "relu", "sigmoid", "sign", "softplus", "step", "tie_weight", "where_mask"]

_jit = numba.njit(cache=False, error_model="numpy")


# The float versions `srcgrad.functions` already has, compiled.
exp2 = _jit(lambda x: 2.0 ** x)
cbrt = _jit(functions._cbrt_float)
sigmoid = _jit(functions._sigmoid_float)
relu = _jit(functions._relu_float)
softplus = _jit(functions._softplus_float)
maximum = _jit(lambda x, y: max(x, y))
minimum = _jit(lambda x, y: min(x, y))


# The partials' helpers (their `srcgrad.runtime` versions also take arrays).
@_jit
def sign(x):
    return 1.0 if x > 0 else (-1.0 if x < 0 else 0.0)


@_jit
def step(x):
    return 1.0 if x > 0 else 0.0


@_jit
def tie_weight(x, y):
    return 1.0 if x > y else (0.5 if x == y else 0.0)


@_jit
def where_mask(condition):
    return 1.0 if condition else 0.0


@_jit
def clip(x, low, high):
    if low is not None and x < low:
        x = low
    if high is not None and x > high:
        x = high
    return x


@_jit
def clip_inside(x, low, high):
    if low is not None and x < low:
        return 0.0
    if high is not None and x > high:
        return 0.0
    return 1.0


@_jit
def clip_below(x, low, high):
    if high is not None and low > high:
        return 0.0  # raised to low, then lowered to high
    return 1.0 if x < low else 0.0


@_jit
def clip_above(x, low, high):
    if low is not None and x < low:
        x = low
    return 1.0 if x > high else 0.0
