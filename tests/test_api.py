"""The public behaviour of `@grad`: return structure, shapes, dtypes, signatures, globals."""

from __future__ import annotations

import math

import numpy as np
import pytest

import srcgrad
from srcgrad import grad
from srcgrad.functions import exp, log, sin, sqrt

SCALE = 2.0  # a module global read live by `scaled`


def fd(f, *args, index, h=1e-6):
    """Central finite difference of scalar `f` in argument `index`."""
    up = list(args)
    down = list(args)
    up[index] += h
    down[index] -= h
    return (f(*up) - f(*down)) / (2 * h)


@grad
def mixed_sine(a):
    return sin(a) + 0.2 * sin(a * 5)


def test_floats_in_floats_out():
    value, grads = mixed_sine(0.7)
    assert type(value) is float
    assert type(grads.a) is float
    assert value == pytest.approx(math.sin(0.7) + 0.2 * math.sin(3.5), rel=1e-15)
    assert grads.a == pytest.approx(math.cos(0.7) + math.cos(3.5), rel=1e-14)
    (da,) = grads  # a namedtuple unpacks like a tuple
    assert da == grads.a


def test_arrays_give_per_element_derivatives():
    x = np.linspace(-np.pi, np.pi, 201)
    values, grads = mixed_sine(x)
    assert values.shape == x.shape and grads.a.shape == x.shape
    np.testing.assert_allclose(values, np.sin(x) + 0.2 * np.sin(5 * x), rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(grads.a, np.cos(x) + np.cos(5 * x), rtol=1e-13, atol=1e-14)


def test_float32_stays_float32():
    x = np.linspace(-1, 1, 7, dtype=np.float32)
    values, grads = mixed_sine(x)
    assert grads.a.dtype == np.float32
    assert values.dtype == np.float32


@grad(wrt=("mu", "sigma"))
def bump(x, mu, sigma):
    return np.exp(-((x - mu) ** 2) / sigma**2)


def test_wrt_subset_and_scalar_parameter_broadcast_is_summed():
    x = np.linspace(-2, 2, 41)
    value, grads = bump(x, 0.3, 0.8)
    assert grads._fields == ("mu", "sigma")
    assert np.shape(grads.mu) == () and np.shape(grads.sigma) == ()
    plain = bump.__wrapped__
    expected_mu = fd(lambda m: plain(x, m, 0.8).sum(), 0.3, index=0)
    expected_sigma = fd(lambda s: plain(x, 0.3, s).sum(), 0.8, index=0)
    assert grads.mu == pytest.approx(expected_mu, rel=1e-7)
    assert grads.sigma == pytest.approx(expected_sigma, rel=1e-7)


def test_array_parameter_against_scalar_data_broadcasts_back_to_its_shape():
    @grad
    def f(w, x):
        return w * x + w

    w = np.array([[1.0], [2.0]])  # shape (2, 1) broadcast against x of shape (3,)
    x = np.array([1.0, 2.0, 3.0])
    value, grads = f(w, x)
    assert value.shape == (2, 3)
    np.testing.assert_allclose(grads.w, [[9.0], [9.0]])  # sum over x of (x + 1)
    np.testing.assert_allclose(grads.x, [3.0, 3.0, 3.0])  # sum over w


def test_constant_gradient_is_shaped_like_its_parameter():
    @grad
    def f(a, b):
        return 3 * a

    value, grads = f(np.ones(4), np.ones((2, 2), dtype=np.float32))
    np.testing.assert_array_equal(grads.a, np.full(4, 3.0))
    np.testing.assert_array_equal(grads.b, np.zeros((2, 2)))
    assert grads.b.dtype == np.float32
    assert f(1.0, 2.0)[1] == (3.0, 0.0)


def test_gradient_never_aliases_an_input():
    @grad
    def f(a, b):
        return a * b

    a, b = np.arange(3.0), np.arange(3.0) + 1
    _, grads = f(a, b)
    np.testing.assert_array_equal(grads.b, a)
    assert grads.b is not a and not np.shares_memory(grads.b, a)


def test_defaults_keywords_and_keyword_only_parameters():
    @grad
    def f(a, b=2.0, *, c=3.0):
        return a * b * c

    assert f(1.0) == (6.0, (6.0, 3.0, 2.0))
    assert f(1.0, c=1.0) == (2.0, (2.0, 1.0, 2.0))
    assert f(b=1.0, a=2.0) == (6.0, (3.0, 6.0, 2.0))


def test_wrt_accepts_a_single_name_and_rejects_unknown_names():
    @grad(wrt="b")
    def f(a, b):
        return a * b

    @grad(wrt=("b",))
    def f_named(a, b):
        return a * b

    # One name as a string: the gradient itself; a tuple of names: a namedtuple of them.
    assert f(2.0, 3.0) == (6.0, 2.0)
    assert type(f(2.0, 3.0)[1]) is float
    assert f_named(2.0, 3.0)[1]._fields == ("b",)
    value, d_b = f(np.array([1.0, 2.0]), 3.0)
    np.testing.assert_array_equal(value, [3.0, 6.0])
    assert d_b == 3.0 and type(d_b) is float  # a float parameter's gradient: summed, a float
    with pytest.raises(ValueError, match=r"wrt names 'z', which is not a parameter of g\(a, b\)"):

        @grad(wrt=("z",))
        def g(a, b):
            return a

    with pytest.raises(ValueError, match="twice"):
        grad(wrt=("a", "a"))(lambda a: a)


def test_module_globals_are_read_live():
    global SCALE

    @grad
    def scaled(a):
        return SCALE * a

    assert scaled(1.0) == (2.0, (2.0,))
    SCALE = 5.0
    try:
        assert scaled(1.0) == (5.0, (5.0,))
    finally:
        SCALE = 2.0


def test_closure_constants_and_math_constants():
    def make(k):
        @grad
        def f(a):
            return k * a + math.pi

        return f

    f = make(4.0)
    value, grads = f(1.0)
    assert value == pytest.approx(4.0 + math.pi) and grads.a == 4.0


def test_tuple_unpacking_reassignment_and_augmented_assignment():
    @grad
    def f(a, b):
        a, b = b, a
        c = a
        c += b
        c -= 1
        c *= b
        c /= 2
        c **= 2
        return c

    def plain(a, b):
        return ((b + a - 1) * a / 2) ** 2

    value, grads = f(1.5, 0.5)
    assert value == pytest.approx(plain(1.5, 0.5))
    assert grads.a == pytest.approx(fd(plain, 1.5, 0.5, index=0), rel=1e-7)
    assert grads.b == pytest.approx(fd(plain, 1.5, 0.5, index=1), rel=1e-7)


def test_integer_and_list_arguments():
    assert mixed_sine(1)[1].a == pytest.approx(math.cos(1) + math.cos(5))
    values, grads = mixed_sine([0.0, 1.0])
    np.testing.assert_allclose(grads.a, [2.0, math.cos(1) + math.cos(5)])


def test_math_domain_errors_fall_back_to_numpy_semantics():
    @grad
    def f(a):
        return log(a) + sqrt(a)

    with np.errstate(all="ignore"):
        value, grads = f(0.0)
        array_value, array_grads = f(np.array([0.0]))
    assert value == -math.inf and grads.a == math.inf
    assert array_value[0] == value and array_grads.a[0] == grads.a


def test_wrong_argument_count_and_type_name_the_parameter():
    with pytest.raises(TypeError, match="sigma"):
        bump(1.0, 2.0)
    with pytest.raises(TypeError, match=r"parameter 'mu' must be a number"):
        bump(np.ones(3), "0.5", 1.0)
    with pytest.raises(TypeError, match=r"parameter 'a' must be a number"):
        mixed_sine(None)


def test_user_function_with_derive_beside_it():
    value, grads = _uses_cube(2.0)
    assert value == 8.0 + 2.0 and grads.a == 12.0 + 1.0
    values, grads = _uses_cube(np.array([1.0, 2.0]))
    np.testing.assert_array_equal(grads.a, [4.0, 13.0])
    assert "cube_derive(a)" in _uses_cube.source


def cube(x):
    return x * x * x


def cube_derive(x):
    return 3 * x * x


@grad
def _uses_cube(a):
    return cube(a) + a


def test_register_explicitly_and_as_decorator_with_several_arguments():
    def blend(x, y):
        return x * y + x

    @srcgrad.register(blend)
    def blend_partials(x, y):
        return y + 1, x

    def twice(x):
        return 2 * x

    srcgrad.register(twice, lambda x: 2.0)

    @grad
    def f(a, b):
        return blend(a, b) + twice(b)

    value, grads = f(2.0, 3.0)
    assert value == 14.0
    assert grads == (4.0, 4.0)


def test_exp_and_log_round_trip_reuse_forward_values():
    @grad
    def f(a):
        return exp(a) * 2

    value, grads = f(0.5)
    assert grads.a == pytest.approx(2 * math.exp(0.5))
    # d exp(a) / da is exp(a) itself: the backward pass reuses the forward value.
    assert f.raw_source.count("math.exp(") == 1


def test_decorated_function_metadata():
    assert mixed_sine.__wrapped__(0.5) == pytest.approx(math.sin(0.5) + 0.2 * math.sin(2.5))
    assert mixed_sine.__name__ == "mixed_sine"
    assert isinstance(mixed_sine, srcgrad.GradFunction)


def test_same_function_decorated_twice_shares_the_transform():
    def f(a):
        return a * a

    first, second = grad(f), grad(f)
    assert first(3.0) == second(3.0) == (9.0, (6.0,))
    assert first.function is second.function


@grad
def _centred_square(x, mu):
    d = x - mu
    return np.sum(d * d)


def test_graph_maps_each_forward_node_to_its_adjoint():
    """Tools (the graph example, debuggers) read intermediate adjoints from the graph."""
    _centred_square(np.ones(3), 0.5)
    view = _centred_square.graph
    by_hint = {view.graph.nodes[i].hint: adjoint for i, adjoint in view.adjoints.items()}
    assert by_hint["d"].op == "add" and [a.hint for a in by_hint["d"].args] == ["d", "d"]
    assert by_hint["mu"] is view.grads["mu"] and by_hint["x"] is view.grads["x"]


def test_differentiated_integer_arrays_are_differentiated_in_float64():
    """An int8 array's gradient used to be computed in int8 (and wrapped around: 2*100 became
    -56); data arrays may stay integer, a differentiated one becomes float64."""

    @grad
    def squares(x):
        return np.sum(x**2)

    @grad(wrt="w")
    def weighted(w, counts):
        return np.sum(w * counts)

    value, grads = squares(np.array([100, 3], dtype=np.int8))
    assert value == 100**2 + 3**2
    np.testing.assert_array_equal(grads.x, [200.0, 6.0])
    assert grads.x.dtype == np.float64
    _, grads_bool = squares(np.array([True, False]))
    np.testing.assert_array_equal(grads_bool.x, [2.0, 0.0])
    counts = np.array([1, 2, 3], dtype=np.int16)
    _, d_w = weighted(np.ones(3), counts)
    np.testing.assert_array_equal(d_w, counts)


@pytest.mark.parametrize("array, words", [
    (np.array([1 + 2j]), "complex array"),
    (np.matrix([[1.0, 2.0]]), "matrix, whose arithmetic differs"),
    (np.ma.array([1.0, 2.0], mask=[0, 1]), "MaskedArray, whose arithmetic differs"),
])
def test_arrays_whose_arithmetic_differs_are_refused(array, words):
    @grad
    def total(x, y):
        return np.sum(x * y)

    with pytest.raises(TypeError, match=words):
        total(array, 2.0)


def test_a_parameter_named_type():
    @grad
    def scaled(x, type):
        return x * type

    assert scaled(2.0, 3.0) == (6.0, (3.0, 2.0))
    value, grads = scaled(np.array([1.0, 2.0]), 3.0)
    np.testing.assert_array_equal(grads.x, [3.0, 3.0])
    assert grads.type == 3.0
