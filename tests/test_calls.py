"""Calls into the user's own Python functions, differentiated by transforming them too.

A function without a derivative of its own is lowered into the caller's graph at each call:
module-level helpers, functions defined inside the differentiated one (closures over its
variables), lambdas. A function with a `_derive` (or a registered derivative) keeps it.
Gradients are checked against autograd, which differentiates the same code independently.
"""

from __future__ import annotations

import autograd
import autograd.numpy as anp
import numpy as np
import pytest

from srcgrad import MissingDerivativeError, TransformError, check_grad, grad


def bump(x, mu, width=1.0):
    return np.exp(-((x - mu) ** 2) / (2 * width**2))


def two_bumps(p, x):
    return p[0] * bump(x, p[1], p[2]) + p[3] * bump(x, p[4], width=p[5])


def residuals(p, x, y):
    return two_bumps(p, x) - y


@grad(wrt="p")
def peaks_loss(p, x, y):
    return np.sum(residuals(p, x, y) ** 2)


def peaks_loss_reference(p, x, y):
    def b(mu, width):
        return anp.exp(-((x - mu) ** 2) / (2 * width**2))

    return anp.sum((p[0] * b(p[1], p[2]) + p[3] * b(p[4], p[5]) - y) ** 2)


def test_module_level_helpers_nest_with_defaults_and_keywords():
    x = np.linspace(-3, 3, 40)
    y = bump(x, -0.5, 0.6) + 0.5 * bump(x, 0.8, 0.7)
    p = np.array([1.0, -0.4, 0.5, 0.4, 0.9, 0.8])
    value, g = peaks_loss(p, x, y)  # `wrt="p"`: the gradient itself
    np.testing.assert_allclose(value, peaks_loss_reference(p, x, y), rtol=1e-13)
    np.testing.assert_allclose(g, autograd.grad(peaks_loss_reference)(p, x, y), rtol=1e-11)


@grad(wrt=("a", "b"))
def closures(a, b, x, y):
    scale = 2.0

    def model(t):
        return a * np.tanh(b * t) * scale  # a, b, scale: the enclosing function's variables

    square = lambda r: r * r  # noqa: E731 - a lambda bound to a name, as users write them

    def residual(t, target):
        return model(t) - target

    scale = 3.0  # late binding: the call below sees 3.0, as Python would
    return np.sum(square(residual(x, y))) + (lambda u: u * b)(a)


def closures_reference(a, b, x, y):
    return anp.sum((a * anp.tanh(b * x) * 3.0 - y) ** 2) + a * b


@pytest.mark.parametrize("kind", [float, np.float64])
def test_nested_functions_and_lambdas_close_over_the_caller(kind):
    x, y = np.linspace(-2, 2, 30), np.sin(np.linspace(-2, 2, 30))
    a, b = kind(0.7), kind(1.3)
    value, grads = closures(a, b, x, y)
    np.testing.assert_allclose(value, closures_reference(a, b, x, y), rtol=1e-13)
    expected = autograd.grad(closures_reference, (0, 1))(0.7, 1.3, x, y)
    np.testing.assert_allclose(grads, expected, rtol=1e-11)
    check_grad(closures, a, b, x, y)


def softplus(z):
    return np.log1p(np.exp(z))


def softplus_derive(z):
    return 1 / (1 + np.exp(-z))


@grad
def uses_a_derivative(z):
    return np.sum(softplus(z))


def test_a_function_with_a_derivative_keeps_it():
    z = np.array([-1.0, 0.5, 2.0])
    value, (g,) = uses_a_derivative(z)
    np.testing.assert_allclose(g, 1 / (1 + np.exp(-z)), rtol=1e-14)
    assert "softplus_derive(z)" in uses_a_derivative.source


def endless(x):
    return endless(x) + 1


@grad
def calls_recursion(x):
    return endless(x)


def test_recursion_is_refused_clearly():
    with pytest.raises(TransformError, match="recursion"):
        calls_recursion(1.0)


@grad
def calls_a_builtin_without_derivative(x):
    return np.sum(np.cumsum(x))


@grad
def wrong_arity(x):
    def f(u, v):
        return u * v

    return f(x)


def test_calls_that_cannot_be_transformed_say_why():
    with pytest.raises(MissingDerivativeError, match="cumsum"):
        calls_a_builtin_without_derivative(np.ones(3))
    with pytest.raises(TransformError, match="missing v"):
        wrong_arity(1.0)
