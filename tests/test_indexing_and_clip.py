"""`np.dot` with numbers and N-d arrays, negative constants in indices, and `np.clip`'s
derivative where its bounds cross.

Why these tests: each case used to fail (a raw NumPy error from a backward helper, a
`TransformError` for valid code, or a wrong derivative) while its neighbours worked: `np.dot`
reused matmul's adjoint, which assumes matmul's meaning; `a[[0, -1]]` and `p[-1]` were refused
because `-1` is a unary minus in the syntax tree, not a constant; and the clip rule treated the
bounds as if ``low <= high``, where NumPy computes ``minimum(maximum(x, low), high)``.
Every gradient is checked against autograd (which differentiates NumPy's own definition),
central differences in float64, or values derived by hand.
"""

from __future__ import annotations

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
from support import central_difference

import srcgrad

RNG = np.random.default_rng(20240611)

# -- np.dot ----------------------------------------------------------------------------------


def dot(a, b):
    return np.dot(a, b)


def dot_loss(a, b):
    return np.sum(np.sin(np.dot(a, b)))


def dot_loss_twin(a, b):
    return anp.sum(anp.sin(anp.dot(a, b)))


def test_dot_of_a_number_and_a_vector_by_hand():
    x = np.array([1.0, 2.0, 3.0])
    value, grads = srcgrad.grad(dot)(2.0, x)
    np.testing.assert_array_equal(value, [2.0, 4.0, 6.0])  # its elements sum to 12
    assert grads.a == 6.0
    np.testing.assert_array_equal(grads.b, [2.0, 2.0, 2.0])
    value, grads = srcgrad.grad(dot)(2.0, 3.0)
    assert (value, grads.a, grads.b) == (6.0, 3.0, 2.0)
    value, grads = srcgrad.grad(dot)(np.array(2.0), x)
    assert np.shape(grads.a) == () and grads.a == 6.0
    np.testing.assert_array_equal(grads.b, [2.0, 2.0, 2.0])
    value, grads = srcgrad.grad(dot)(x, 2.0)
    np.testing.assert_array_equal(grads.a, [2.0, 2.0, 2.0])
    assert grads.b == 6.0


DOT_SHAPES = [
    ((), ()), ((), (3,)), ((3,), ()), ((2, 3), ()), ((), (2, 3)),  # numbers: a product
    ((3,), (3,)), ((2, 3), (3,)), ((3,), (3, 4)), ((2, 3), (3, 4)),  # what matmul does too
    ((2, 2, 3), (3,)), ((2, 2, 3), (3, 4)), ((3,), (2, 3, 4)), ((2, 3), (5, 3, 4)),  # N-d:
    ((2, 2, 3), (5, 3, 4)), ((4, 2, 3), (2, 5, 3, 2)),  # a's last axis, b's second-to-last
]


@pytest.mark.parametrize("shape_a, shape_b", DOT_SHAPES)
def test_dot_matches_autograd(shape_a: tuple, shape_b: tuple):
    a, b = RNG.normal(size=shape_a), RNG.normal(size=shape_b)
    value, grads = srcgrad.grad(dot_loss)(a, b)
    np.testing.assert_allclose(value, dot_loss_twin(a, b), rtol=1e-13)
    want_a, want_b = autograd.grad(dot_loss_twin, (0, 1))(a, b)
    assert np.shape(grads.a) == shape_a and np.shape(grads.b) == shape_b
    np.testing.assert_allclose(grads.a, want_a, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(grads.b, want_b, rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("shape_a, shape_b", [((), (3,)), ((2, 3), (3,)), ((2, 2, 3), (5, 3, 4)),
                                              ((3,), (2, 3, 4))])
def test_dot_forward_mode_and_hessian_vector_products(shape_a: tuple, shape_b: tuple):
    a, b = RNG.normal(size=shape_a), RNG.normal(size=shape_b)
    da, db = RNG.normal(size=shape_a), RNG.normal(size=shape_b)
    want_a, want_b = autograd.grad(dot_loss_twin, (0, 1))(a, b)
    value, along = srcgrad.jvp(dot_loss)((a, b), (da, db))
    np.testing.assert_allclose(along, np.sum(want_a * da) + np.sum(want_b * db), rtol=1e-11)

    def directional(a, b):  # the gradient along (da, db): its gradient is H (da, db)
        ga, gb = autograd.grad(dot_loss_twin, (0, 1))(a, b)
        return anp.sum(ga * da) + anp.sum(gb * db)

    value, grads, hv = srcgrad.hvp(dot_loss)((a, b), (da, db))
    hv_a, hv_b = autograd.grad(directional, (0, 1))(a, b)
    np.testing.assert_allclose(hv[0], hv_a, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(hv[1], hv_b, rtol=1e-10, atol=1e-12)


# -- integer lists and arrays as indices ------------------------------------------------------


def first_and_last(a):
    return a[[0, -1]]


def repeated_rows(a):
    return a[np.array([0, 0, 2])]


def rows_and_columns(a):
    return np.sum(np.sin(a[np.array([0, -1]), 1:])) * np.sum(a[[-2, 1], [0, -1]])


def rows_and_columns_twin(a):
    return anp.sum(anp.sin(a[np.array([0, -1]), 1:])) * anp.sum(a[[-2, 1], [0, -1]])


def computed_list(a, i):
    return a[[i, 0]]


def test_a_negative_constant_in_an_index_list():
    value, grads = srcgrad.grad(first_and_last)(np.arange(4.0))
    np.testing.assert_array_equal(value, [0.0, 3.0])
    np.testing.assert_array_equal(grads.a, [1.0, 0.0, 0.0, 1.0])


def test_an_integer_array_of_constants_as_an_index():
    value, grads = srcgrad.grad(repeated_rows)(np.arange(4.0))
    np.testing.assert_array_equal(value, [0.0, 0.0, 2.0])
    np.testing.assert_array_equal(grads.a, [2.0, 0.0, 1.0, 0.0])  # row 0 taken twice


def test_constant_index_lists_and_arrays_in_a_tuple_index_match_autograd():
    a = RNG.normal(size=(3, 4))
    value, grads = srcgrad.grad(rows_and_columns)(a)
    np.testing.assert_allclose(value, rows_and_columns_twin(a), rtol=1e-13)
    np.testing.assert_allclose(grads.a, autograd.grad(rows_and_columns_twin)(a), rtol=1e-12)


def test_a_computed_index_list_gets_indexing_advice():
    with pytest.raises(srcgrad.TransformError) as raised:
        srcgrad.grad(computed_list)(np.arange(4.0), 1)
    message = str(raised.value)
    assert "integer constants" in message and "integer array" in message
    assert "np.stack" not in message


# -- negative indices of tuple and list parameters --------------------------------------------


def last_of_a_tuple(p, x):
    return np.sum(p[0] * x) + p[-1]


def counted_from_the_end(p, x):
    return np.sum(p[-2] * x) + p[-1] * p[1]


def too_far_back(p, x):
    return np.sum(p[-3] * x)


@pytest.mark.parametrize("container", [tuple, list])
def test_negative_indices_of_a_structured_parameter_count_from_the_end(container: type):
    x = np.arange(3.0)
    p = container([np.ones(3), 2.0])
    value, grads = srcgrad.grad(last_of_a_tuple, wrt="p")(p, x)
    assert value == 5.0
    assert type(grads) is container
    np.testing.assert_array_equal(grads[0], x)
    assert grads[1] == 1.0
    value, grads = srcgrad.grad(counted_from_the_end, wrt="p")(p, x)
    assert value == 3.0 + 4.0
    np.testing.assert_array_equal(grads[0], x)
    assert grads[1] == 4.0  # d(p1 * p1) / d p1


def test_an_index_before_the_first_element_is_a_clear_error():
    with pytest.raises(srcgrad.TransformError) as raised:
        srcgrad.grad(too_far_back, wrt="p")([np.ones(3), 2.0], np.arange(3.0))
    assert "no element -3" in str(raised.value) and "it has 0, 1" in str(raised.value)


# -- np.clip: NumPy's minimum(maximum(x, low), high), crossed bounds included ---------------------

WEIGHTS = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
# inside, below, above; then low > high with x below both, between them, above both
X = np.array([0.2, -2.0, 3.0, -3.0, 0.7, 2.0, -1.5, 0.1, 5.0])
LOW = np.array([-1.0, -1.0, -1.0, 0.0, 1.0, 1.0, -1.0, 0.5, 1.0])
HIGH = np.array([1.0, 1.0, 1.0, -2.0, 0.5, 0.5, -2.0, -0.5, 0.0])


def clip_loss(x, low, high):
    return np.sum(np.clip(x, low, high) * WEIGHTS)


def clip_twin(x, low, high):
    return anp.sum(anp.minimum(anp.maximum(x, low), high) * WEIGHTS)


def clip_times_x(x, low, high):
    return np.sum(np.clip(x, low, high) * x)


def clip_times_x_twin(x, low, high):
    return anp.sum(anp.minimum(anp.maximum(x, low), high) * x)


def clip_number(x, low, high):
    return np.clip(x, low, high)


def clip_twin_number(x, low, high):
    return anp.minimum(anp.maximum(x, low), high)


def clipped_by_itself(a):
    return np.sum(np.clip(a, -1.0, a))


def test_clip_with_crossed_bounds_matches_numpy_definition():
    np.testing.assert_array_equal(np.clip(X, LOW, HIGH), np.minimum(np.maximum(X, LOW), HIGH))
    value, grads = srcgrad.grad(clip_loss)(X, LOW, HIGH)
    want = autograd.grad(clip_twin, (0, 1, 2))(X, LOW, HIGH)
    assert value == clip_twin(X, LOW, HIGH)
    for got, expected in zip(grads, want, strict=True):
        np.testing.assert_array_equal(got, expected)
    # by hand: where low > high the result is high, whatever x is
    np.testing.assert_array_equal(grads.high, WEIGHTS * [0, 0, 1, 1, 1, 1, 1, 1, 1])
    np.testing.assert_array_equal(grads.low, WEIGHTS * [0, 1, 0, 0, 0, 0, 0, 0, 0])


def test_clip_forward_mode_with_crossed_bounds():
    want = autograd.grad(clip_twin, (0, 1, 2))(X, LOW, HIGH)
    directions = [RNG.normal(size=X.shape) for _ in range(3)]
    _, along = srcgrad.jvp(clip_loss)((X, LOW, HIGH), directions)
    np.testing.assert_allclose(along, sum(np.sum(w * d) for w, d in zip(want, directions,
                                                                          strict=True)))
    for k, name in enumerate(("x", "low", "high")):
        _, tangent = srcgrad.forward(clip_loss, wrt=name)(X, LOW, HIGH)
        np.testing.assert_allclose(tangent, np.sum(want[k]))


@pytest.mark.parametrize("x, low, high", list(zip(X.tolist(), LOW.tolist(), HIGH.tolist(),
                                                   strict=True)))
@pytest.mark.parametrize("kind", [float, np.float64])
def test_clip_of_numbers_in_both_modes(x: float, low: float, high: float, kind: type):
    args = tuple(map(kind, (x, low, high)))
    value, grads = srcgrad.grad(clip_number)(*args)
    want = autograd.grad(clip_twin_number, (0, 1, 2))(x, low, high)
    assert value == np.clip(x, low, high)
    assert tuple(grads) == want
    for k, name in enumerate(("x", "low", "high")):
        _, tangent = srcgrad.forward(clip_number, wrt=name)(*args)
        assert tangent == want[k]
        fd = central_difference(
            lambda v, k=k: float(np.clip(*(v if i == k else a for i, a in enumerate(args)))),
            args[k])
        assert tangent == pytest.approx(fd, abs=1e-8)


def test_clip_with_its_argument_as_the_upper_bound():
    """`np.clip(a, -1.0, a)` is `a` everywhere (minimum(maximum(a, -1), a)): slope 1."""
    a = np.array([-3.0, -0.5, 2.0])
    value, grads = srcgrad.grad(clipped_by_itself)(a)
    assert value == np.sum(a)
    np.testing.assert_array_equal(grads.a, [1.0, 1.0, 1.0])
    _, tangent = srcgrad.forward(clipped_by_itself, wrt="a")(a)
    assert tangent == 3.0
    for number in (-3.0, 2.0):
        assert srcgrad.grad(clipped_by_itself)(number)[1].a == 1.0


def test_clip_in_the_fused_backend_with_crossed_bounds():
    pytest.importorskip("numba")
    fused = srcgrad.grad(clip_times_x, backend="numba")
    value, grads = fused(X, LOW, HIGH)
    want = autograd.grad(clip_times_x_twin, (0, 1, 2))(X, LOW, HIGH)
    assert value == pytest.approx(clip_times_x_twin(X, LOW, HIGH), rel=1e-14)
    for got, expected in zip(grads, want, strict=True):
        np.testing.assert_array_equal(got, expected)
    a = np.array([-3.0, -0.5, 2.0])
    _, grads = srcgrad.grad(clipped_by_itself, backend="numba")(a)
    np.testing.assert_array_equal(grads.a, [1.0, 1.0, 1.0])
