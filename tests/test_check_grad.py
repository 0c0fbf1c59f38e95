"""`check_grad`: passes correct gradients, catches wrong ones, reports every entry."""

from __future__ import annotations

import csv

import numpy as np
import pytest

import srcgrad
from srcgrad import GradientMismatch, check_grad, grad


def gaussian(x, mu, sigma):
    return np.exp(-((x - mu) ** 2) / sigma**2)


def test_correct_gradients_pass_with_small_errors():
    x = np.linspace(-1.0, 1.0, 5)
    report = check_grad(gaussian, x, 0.2, 0.7, wrt=("mu", "sigma"))
    assert report.passed
    assert len(report.entries) == 2
    assert report.max_rel_error < 1e-7


def test_array_and_structured_parameters_are_checked_elementwise():
    def layer(params, x):
        w, b = params
        return np.tanh(x @ w + b)

    rng = np.random.default_rng(1)
    report = check_grad(layer, (rng.normal(size=(3, 2)), rng.normal(size=2)),
                        rng.normal(size=(4, 3)), wrt="params")
    assert {e.parameter for e in report.entries} == {"params[0]", "params[1]"}
    assert len(report.entries) == 3 * 2 + 2


def smooth(x):
    return x * x * x


def test_a_wrong_registered_derivative_is_caught_with_a_readable_table(tmp_path):
    srcgrad.register(smooth, lambda x: 2 * x * x)  # wrong on purpose: should be 3 x**2

    def uses_smooth(a):
        return smooth(a) + a

    try:
        with pytest.raises(GradientMismatch) as info:
            check_grad(uses_smooth, np.array([0.5, 1.0, 2.0]), report=str(tmp_path / "r.csv"))
    finally:
        srcgrad.register(smooth, lambda x: 3 * x * x)
    message = str(info.value)
    assert "3 mismatches" in message and "<-- mismatch" in message
    worst = max(info.value.report.failures, key=lambda e: e.abs_error)  # at a = 2
    assert worst.parameter == "a" and worst.numeric == pytest.approx(3 * 4.0 + 1, rel=1e-6)
    with open(tmp_path / "r.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 and rows[0]["ok"] == "False"
    assert float(rows[2]["srcgrad"]) == pytest.approx(2 * 4.0 + 1)


def test_decorated_functions_are_accepted():
    decorated = grad(gaussian, wrt="mu")
    assert check_grad(decorated, 0.3, 0.1, 0.9).passed


def test_wrt_given_for_a_decorated_function_is_honoured():
    decorated = grad(gaussian, wrt="mu")
    report = check_grad(decorated, 0.3, 0.1, 0.9, wrt=("x", "sigma"))
    assert {e.parameter for e in report.entries} == {"x", "sigma"}
    assert {e.parameter for e in check_grad(decorated, 0.3, 0.1, 0.9, wrt="mu").entries} == {"mu"}


def _coupled(a, b):
    return a * a * b + np.sin(a * b)


def _chain(x):
    return np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


def test_hessians_are_checked_against_differences_of_the_gradient():
    report = check_grad(srcgrad.hessian(_coupled), 0.4, 1.3)
    assert {e.parameter for e in report.entries} == {"H[a][a]", "H[a][b]", "H[b][a]", "H[b][b]"}
    by_name = {e.parameter: e for e in report.entries}
    # d2/da db (a^2 b + sin(ab)) = 2a + cos(ab) - ab sin(ab), written out independently.
    a, b = 0.4, 1.3
    assert by_name["H[a][b]"].numeric == pytest.approx(
        2 * a + np.cos(a * b) - a * b * np.sin(a * b), rel=1e-7)
    array_report = check_grad(srcgrad.hessian(_chain), np.array([0.5, 1.2, -0.3]))
    assert len(array_report.entries) == 9 and array_report.max_rel_error < 1e-6


def _wrong_curvature(x):
    return _bent(x) * x


def _bent(x):
    return x ** 3


def _bent_derive(x):
    return 3 * x * x


def test_a_wrong_second_derivative_is_caught():
    """The second derivative of `_bent` comes from srcgrad differentiating `_bent_derive`;
    a registered derivative of that which is wrong shows up in the Hessian check."""
    srcgrad.register(_bent_derive, lambda x: 5 * x)  # the truth is 6x
    try:
        with pytest.raises(GradientMismatch, match="H\\[x\\]\\[x\\]"):
            check_grad(srcgrad.hessian(_wrong_curvature), 0.8)
    finally:
        srcgrad.rules._REGISTERED.pop(_bent_derive, None)
