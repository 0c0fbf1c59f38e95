"""Differentiating functions that call `grad`-decorated functions: higher derivatives.

A call to a decorated function inside another is inlined with its gradient, so the caller can
be decorated again (second order), and again (third order). Checked against SymPy's
derivatives and against central differences of srcgrad's own lower-order result.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy
from support import central_difference

from srcgrad import TransformError, grad
from srcgrad.functions import cos, exp, sin, tanh


@grad
def wave(x):
    return sin(x) * x + exp(0.5 * x)


def wave_slope(x):
    value, (dx,) = wave(x)
    return dx


wave_slope_grad = grad(wave_slope)


def wave_curvature(x):
    _, grads = wave_slope_grad(x)
    return grads.x


wave_curvature_grad = grad(wave_curvature)

X = sympy.Symbol("x")
WAVE = sympy.sin(X) * X + sympy.exp(X / 2)


@pytest.mark.parametrize("x", [-1.3, 0.0, 0.7, 2.5])
def test_second_and_third_derivatives_match_sympy(x):
    value, (d2,) = wave_slope_grad(x)
    assert value == pytest.approx(float(sympy.diff(WAVE, X).subs(X, x)), rel=1e-13)
    assert d2 == pytest.approx(float(sympy.diff(WAVE, X, 2).subs(X, x)), rel=1e-12, abs=1e-13)
    value3, (d3,) = wave_curvature_grad(x)
    assert value3 == pytest.approx(d2, rel=1e-13, abs=1e-14)
    assert d3 == pytest.approx(float(sympy.diff(WAVE, X, 3).subs(X, x)), rel=1e-12, abs=1e-13)


def test_higher_orders_agree_with_differences_of_the_lower_order_on_arrays():
    x = np.linspace(-2.0, 2.0, 9)
    slope, (curvature,) = wave_slope_grad(x)
    # Elementwise: d/dx_i of the sum of the slopes is the curvature at x_i.
    numeric = central_difference(lambda t: np.sum(wave(t)[1].x), x)
    np.testing.assert_allclose(curvature, numeric, rtol=1e-6, atol=1e-8)
    _, (third,) = wave_curvature_grad(x)
    numeric3 = central_difference(lambda t: np.sum(wave_slope_grad(t)[1].x), x)
    np.testing.assert_allclose(third, numeric3, rtol=1e-6, atol=1e-8)


@grad
def product(a, b):
    return a * b * b


def mixed_partial_sum(a):
    # The same node passed twice must still give two separate partial derivatives.
    _, (da, db) = product(a, a)
    return da + 2 * db


def test_a_value_passed_for_two_parameters_gets_both_partials():
    value, (d,) = grad(mixed_partial_sum)(1.5)
    # da = b^2 and db = 2ab, so da + 2 db = b^2 + 4ab: at b = a that is 5a^2, slope 10a.
    assert value == pytest.approx(5 * 1.5**2, rel=1e-14)
    assert d == pytest.approx(10 * 1.5, rel=1e-14)


def newton_step(w, x, y):
    # One Newton step on a 1-parameter least-squares fit, written with srcgrad gradients.
    _, dw = fit_grad(w, x, y)
    _, (dww,) = fit_curvature(w, x, y)
    return w - dw / dww


def fit_loss(w, x, y):
    return np.sum((tanh(w * x) - y) ** 2)


fit_grad = grad(fit_loss, wrt="w")


def fit_slope(w, x, y):
    _, d_w = fit_grad(w, x, y)  # `wrt="w"`: the gradient itself
    return d_w


fit_curvature = grad(fit_slope, wrt=("w",))  # a namedtuple of one


def test_newton_step_through_inlined_gradients_and_its_own_derivative():
    rng = np.random.default_rng(3)
    x = rng.normal(size=50)
    y = np.tanh(0.8 * x) + 0.01 * rng.normal(size=50)
    w = 0.3
    step, d_step = grad(newton_step, wrt="w")(w, x, y)
    h = 1e-4
    loss = [fit_loss(w + k * h, x, y) for k in (-1, 0, 1)]
    slope = (loss[2] - loss[0]) / (2 * h)
    curvature = (loss[2] - 2 * loss[1] + loss[0]) / h**2
    assert step == pytest.approx(w - slope / curvature, rel=1e-5)
    numeric = central_difference(lambda t: newton_step(t, x, y), w)
    assert d_step == pytest.approx(numeric, rel=1e-5)


def calls_generated_code(x):
    value, (dx,) = wave.function(x)  # the generated function itself
    return dx * cos(x)


def test_generated_code_is_valid_input():
    value, (d,) = grad(calls_generated_code)(0.4)
    slope = math.cos(0.4) * 0.4 + math.sin(0.4) + 0.5 * math.exp(0.2)
    curvature = float(sympy.diff(WAVE, X, 2).subs(X, 0.4))
    assert value == pytest.approx(slope * math.cos(0.4), rel=1e-13)
    assert d == pytest.approx(curvature * math.cos(0.4) - slope * math.sin(0.4), rel=1e-12)


@grad
def recursive(x):
    value, _ = recursive(x)
    return value


def test_recursion_is_a_clear_error():
    with pytest.raises(TransformError, match="recursion"):
        recursive(1.0)


def test_the_inlined_call_reads_like_the_source():
    source = wave_slope_grad.source
    assert "value, (dx,) = wave(x)" in source  # the comment quoting the call's line
    assert "d_x" in source and "alias" not in source


@grad
def eighth_power(x):
    for _ in range(3):
        x = x * x
    return x


def eighth_power_slope(x):
    _, (d_x,) = eighth_power(x)
    return d_x


def test_a_gradient_with_a_loop_is_differentiated_again_in_forward_mode_only():
    """Reverse mode over the backward loop of an inlined gradient is not built: a clear error
    at the call's line that says to use forward mode, which gives 56 x**6."""
    import srcgrad

    with pytest.raises(TransformError, match="forward mode instead") as raised:
        grad(eighth_power_slope)(0.7)
    assert raised.value.lineno == eighth_power_slope.__code__.co_firstlineno + 1
    assert "eighth_power(x)" in str(raised.value)
    value, second = srcgrad.forward(eighth_power_slope, wrt="x")(0.7)
    assert value == pytest.approx(8 * 0.7**7, rel=1e-13)
    assert second == pytest.approx(56 * 0.7**6, rel=1e-13)
