"""`if`/`elif`/`else` and `a if c else b`: only the branch taken runs, forward and backward.

Checked against autograd (which runs the same Python control flow on its traced values) at
points on every branch, on the float path and on NumPy scalars; plus what only real branching
gives: the untaken side may be undefined (a square root of a negative number) without putting
NaN into the gradient.
"""

from __future__ import annotations

import math

import autograd
import autograd.numpy as anp
import numpy as np
import pytest

from srcgrad import TransformError, grad


def piecewise(x, a):
    if x > 0:
        y = math.sqrt(x) * a
    elif x > -1:
        y = x * x * a
    else:
        y = -a
    z = y * 2 if a > 0 else y * 3
    return z + x


def piecewise_reference(x, a):
    if x > 0:
        y = anp.sqrt(x) * a
    elif x > -1:
        y = x * x * a
    else:
        y = -a
    z = y * 2 if a > 0 else y * 3
    return z + x


piecewise_grad = grad(piecewise)


@pytest.mark.parametrize(("x", "a"), [(0.5, 1.3), (-0.5, 1.3), (-2.0, -0.7), (0.0, 2.0),
                                      (2.5, -1.1)])
@pytest.mark.parametrize("kind", [float, np.float64])
def test_every_branch_against_autograd(x, a, kind):
    value, grads = piecewise_grad(kind(x), kind(a))
    assert value == pytest.approx(piecewise_reference(x, a), rel=1e-15, abs=1e-15)
    expected = autograd.grad(piecewise_reference, (0, 1))(x, a)
    np.testing.assert_allclose(grads, expected, rtol=1e-14, atol=1e-15)


@grad
def safe_root(x):
    return np.sqrt(x) if x > 0 else 0.0 * x


def test_the_untaken_branch_cannot_poison_the_gradient():
    # np.where(x > 0, sqrt(x), 0) would give 0 * nan = nan here; a real branch gives 0.
    with np.errstate(invalid="raise"):
        value, (d,) = safe_root(-4.0)
    assert value == 0.0 and d == 0.0
    assert safe_root(4.0)[1].x == pytest.approx(0.25)


@grad(wrt=("w",))
def huber(w, xs, ys, delta):
    loss = 0.0
    for x, y in zip(xs, ys):  # noqa: B905 - srcgrad's zip loops over the first's length
        r = w * x - y
        if r > delta:
            loss = loss + delta * (r - 0.5 * delta)
        elif r < -delta:
            loss = loss - delta * (r + 0.5 * delta)
        else:
            loss = loss + 0.5 * r * r
    return loss


def huber_reference(w, xs, ys, delta):
    r = w * xs - ys
    quadratic = anp.abs(r) <= delta
    return anp.sum(anp.where(quadratic, 0.5 * r * r, delta * (anp.abs(r) - 0.5 * delta)))


@pytest.mark.parametrize("kind", [float, np.float64])
def test_a_branch_inside_a_loop(kind):
    xs = np.linspace(-2, 2, 9)
    ys = 0.5 * xs**3
    value, (d,) = huber(kind(0.8), xs, ys, 1.0)
    assert value == pytest.approx(huber_reference(0.8, xs, ys, 1.0), rel=1e-14)
    assert d == pytest.approx(autograd.grad(huber_reference)(0.8, xs, ys, 1.0), rel=1e-13)
    assert "for " in huber.source and "if " in huber.source


@grad
def loop_in_branch(x, n):
    if x > 1:
        for _ in range(n):
            x = x * 0.5 + 1
    else:
        x = -x
    return x * x


def test_a_loop_inside_a_branch():
    def reference(x, n):
        if x > 1:
            for _ in range(n):
                x = x * 0.5 + 1
        else:
            x = -x
        return x * x

    for x in (3.0, 0.5):
        value, grads = loop_in_branch(x, 4)
        assert value == pytest.approx(reference(x, 4), rel=1e-15)
        assert grads.x == pytest.approx(autograd.grad(reference)(x, 4), rel=1e-14)
        assert grads.n == 0.0  # a count: no gradient, and no error for asking


@grad
def assigned_in_one_branch(x):
    y = x
    if x > 0:
        y = x * 3  # the other branch leaves y as it was
    return y * x


@grad
def defined_by_both_branches(x):
    if x > 0:  # noqa: SIM108 - the statement form is what this tests
        s = x * x
    else:
        s = -x
    return s + 1


def test_variables_flow_through_the_branch_that_leaves_them_alone():
    assert assigned_in_one_branch(2.0)[1].x == pytest.approx(12.0)  # 3x^2
    assert assigned_in_one_branch(-2.0)[1].x == pytest.approx(-4.0)  # x^2
    assert defined_by_both_branches(3.0)[1].x == pytest.approx(6.0)
    assert defined_by_both_branches(-3.0)[1].x == pytest.approx(-1.0)


def only_one_branch_defines(x):
    if x > 0:
        t = x * 2
    return t


def return_in_branch(x):
    if x > 0:
        return x
    return -x


def test_what_branches_cannot_do_is_a_clear_error():
    with pytest.raises(TransformError, match="assigned only inside the `if`"):
        grad(only_one_branch_defines)(1.0)
    with pytest.raises(TransformError, match="`return` inside an `if`"):
        grad(return_in_branch)


def test_an_array_condition_fails_as_in_python():
    # `if` needs one truth value, as in Python; elementwise choices are np.where's job.
    with pytest.raises(ValueError, match="truth value"):
        piecewise_grad(np.array([0.5, -0.5]), 1.0)


def extremes(a, xs):
    highest = max((a * x - 1) ** 2 for x in xs)
    lowest = min([a * x for x in xs])
    return highest + lowest + max(a, 0.5) * min(a, 2.0)


@pytest.mark.parametrize("a", [0.9, 0.2, -1.5])
def test_max_and_min_of_generators_and_of_two_values(a):
    """`max(expr for ...)` is a loop keeping the larger value; builtin max/min of two values
    are srcgrad's maximum/minimum. Both differentiate like the branches they are."""
    xs = np.array([0.3, -1.0, 2.0, 0.7])
    value, d = grad(extremes, wrt="a")(a, xs)
    assert value == pytest.approx(extremes(a, xs), rel=1e-15)
    assert d == pytest.approx(autograd.grad(extremes)(a, xs), rel=1e-13)
