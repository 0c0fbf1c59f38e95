"""`grad(f, wrt="a")`, one name as a string: the call returns ``(value, d_a)``, the gradient
itself, where ``wrt=("a",)`` (or no ``wrt``) returns ``(value, Grads(a=d_a))``.

Each code path of the generated function is exercised in its bare form: the float fast path
(with its fall-back to NumPy floats on inf/nan), the array path, the mixed path (scalar
parameters, array data), the static-shape path (float64 arrays at the first call), structured
parameters, loops and branches, the fused Numba backend, a bare `grad` call inlined into another
differentiated function, `check_grad`, the generated source and the transform cache.

Oracles: hand derivations, central differences in float64 and autograd (an independent
reverse-mode implementation). srcgrad's named form is used only to check that the bare gradient
is exactly its one field.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from support import central_difference, import_source

import srcgrad
from srcgrad import grad


def autograd_grad(fn: Any, argnum: int, *args: Any) -> Any:
    """autograd's gradient of the sum of ``fn``'s value (what srcgrad differentiates)."""

    def summed(*values: Any) -> Any:
        return anp.sum(fn(*values))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "output seems independent of input"
        return autograd.grad(summed, argnum)(*args)


def assert_bare_is_the_named_field(bare_result: Any, named_result: Any, name: str) -> None:
    """The bare gradient is exactly the one field of the named form (same generated code)."""
    value, gradient = bare_result
    named_value, grads = named_result
    assert grads._fields == (name,)
    assert not hasattr(gradient, "_fields")  # never a namedtuple
    np.testing.assert_array_equal(value, named_value)
    expected = getattr(grads, name)
    if isinstance(expected, (tuple, list, dict)):
        assert type(gradient) is type(expected)
        pairs = (zip(gradient.values(), expected.values(), strict=True)
                 if isinstance(expected, dict) else zip(gradient, expected, strict=True))
        for mine, theirs in pairs:
            np.testing.assert_array_equal(mine, theirs)
            assert np.asarray(mine).dtype == np.asarray(theirs).dtype
    else:
        np.testing.assert_array_equal(gradient, expected)
        assert type(gradient) is type(expected)


# -- the float fast path ---------------------------------------------------------------------


def wave(a, b):
    return math.sin(a) * b + math.exp(0.5 * a) / b


def wave_hand(a: float, b: float) -> dict[str, float]:
    return {"a": math.cos(a) * b + 0.5 * math.exp(0.5 * a) / b,
            "b": math.sin(a) - math.exp(0.5 * a) / b**2}


@pytest.mark.parametrize("name", ["a", "b"])
@pytest.mark.parametrize(("a", "b"), [(0.7, 2.0), (-2.5, -0.4)])
def test_float_fast_path_returns_the_gradient_itself(name: str, a: float, b: float):
    bare = grad(wave, wrt=name)
    assert bare.bare is True and bare.wrt == (name,)
    value, gradient = bare(a, b)
    assert type(value) is float and type(gradient) is float
    assert value == pytest.approx(wave(a, b), rel=1e-15)
    assert gradient == pytest.approx(wave_hand(a, b)[name], rel=1e-13)
    args = {"a": a, "b": b}
    numeric = central_difference(lambda t: wave(**dict(args, **{name: t})), args[name])
    assert gradient == pytest.approx(numeric, rel=1e-7, abs=1e-9)
    named = grad(wave, wrt=(name,))
    assert named.bare is False
    assert_bare_is_the_named_field(bare(a, b), named(a, b), name)


def cubic(a, b):
    return a * a * b + 3 * a


def test_int_arguments_take_the_fast_path_too():
    bare = grad(cubic, wrt="a")
    value, gradient = bare(2, 5)
    assert value == 26 and gradient == 2 * 2 * 5 + 3
    value, gradient = bare(2, 0.5)  # an int and a float
    assert value == 8.0 and gradient == 5.0
    assert_bare_is_the_named_field(bare(-3, 7), grad(cubic, wrt=("a",))(-3, 7), "a")


def log_scaled(a, b):
    return math.log(a) * b


@pytest.mark.parametrize(("a", "expected_value", "expected_gradient"), [
    (0.0, -math.inf, math.inf),  # log(0) = -inf, d/da = b / a = inf
    (-1.0, math.nan, -2.0),      # log(-1) = nan, d/da = b / a = -2 (NumPy's rule, no error)
])
def test_math_domain_error_falls_back_to_numpy_floats(a: float, expected_value: float,
                                                     expected_gradient: float):
    bare = grad(log_scaled, wrt="a")
    with np.errstate(all="ignore"):
        value, gradient = bare(a, 2.0)
        named = grad(log_scaled, wrt=("a",))(a, 2.0)
        reference = np.log(np.float64(a)) * 2.0
    assert isinstance(value, np.floating) and isinstance(gradient, np.floating)
    np.testing.assert_equal(value, reference)
    np.testing.assert_equal(value, expected_value)
    np.testing.assert_equal(gradient, expected_gradient)
    assert_bare_is_the_named_field((value, gradient), named, "a")
    value, gradient = bare(math.e, 2.0)  # and back on the fast path afterwards
    assert type(gradient) is float and gradient == pytest.approx(2.0 / math.e, rel=1e-15)


def reciprocal(a):
    return 1.0 / a + a


def test_division_by_zero_falls_back_to_numpy_floats():
    bare = grad(reciprocal, wrt="a")
    with np.errstate(all="ignore"):
        value, gradient = bare(0.0)
        named = grad(reciprocal, wrt=("a",))(0.0)
    assert isinstance(gradient, np.floating)
    assert value == math.inf and gradient == -math.inf  # d/da = 1 - 1/a^2
    assert_bare_is_the_named_field((value, gradient), named, "a")
    assert bare(0.5) == (2.5, 1.0 - 4.0)


# -- the array path --------------------------------------------------------------------------


def soft_wave(a, b):
    return np.tanh(a) * b + np.exp(-a * a)


def test_array_path_gives_per_element_gradients():
    bare = grad(soft_wave, wrt="a")
    assert bare(0.3, 1.5)[1] == pytest.approx(
        (1 - math.tanh(0.3) ** 2) * 1.5 - 0.6 * math.exp(-0.09), rel=1e-13)
    a = np.linspace(-2.0, 2.0, 9)
    b = np.linspace(0.5, 1.5, 9)
    value, gradient = bare(a, b)
    assert isinstance(gradient, np.ndarray) and gradient.shape == a.shape
    np.testing.assert_allclose(value, np.tanh(a) * b + np.exp(-a * a), rtol=1e-14)
    hand = (1 - np.tanh(a) ** 2) * b - 2 * a * np.exp(-a * a)
    np.testing.assert_allclose(gradient, hand, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(gradient, autograd_grad(soft_wave_autograd, 0, a, b),
                               rtol=1e-12, atol=1e-15)
    named = grad(soft_wave, wrt=("a",))
    named(0.3, 1.5)  # built from the same first call as the bare form: the same code
    assert_bare_is_the_named_field(bare(a, b), named(a, b), "a")


def soft_wave_autograd(a, b):
    return anp.tanh(a) * b + anp.exp(-a * a)


def scaled_total(a, b):
    return np.sin(a) * b


def test_scalar_parameter_broadcast_over_an_array_gets_the_summed_gradient():
    bare = grad(scaled_total, wrt="b")
    a = np.linspace(0.1, 1.7, 6)
    value, gradient = bare(a, 0.8)
    assert value.shape == a.shape  # the value stays an array; the gradient is of its sum
    assert np.shape(gradient) == () and not isinstance(gradient, tuple)
    assert gradient == pytest.approx(np.sum(np.sin(a)), rel=1e-13)
    numeric = central_difference(lambda t: float(np.sum(scaled_total(a, t))), 0.8)
    assert gradient == pytest.approx(numeric, rel=1e-7)


def float32_cube(a, b):
    return a * a * a * b


def test_float32_arrays_keep_float32():
    bare = grad(float32_cube, wrt="a")
    a = np.linspace(-1, 1, 7, dtype=np.float32)
    b = np.float32(2.0) * np.ones(7, dtype=np.float32)
    value, gradient = bare(a, b)
    assert value.dtype == np.float32 and gradient.dtype == np.float32
    np.testing.assert_allclose(gradient, 3 * a.astype(np.float64) ** 2 * 2.0, rtol=1e-6)
    assert_bare_is_the_named_field(bare(a, b), grad(float32_cube, wrt=("a",))(a, b), "a")


def ignores_a(a, b):
    return 3 * b * b


def test_unused_parameter_gets_a_zero_gradient_shaped_like_it():
    bare = grad(ignores_a, wrt="a")
    value, gradient = bare(1.0, 2.0)
    assert value == 12.0 and gradient == 0.0 and type(gradient) is float
    a = np.ones((2, 3), dtype=np.float32)
    value, gradient = bare(a, np.float32(2.0))
    assert gradient.shape == (2, 3) and gradient.dtype == np.float32
    assert not np.any(gradient)


# -- the mixed path: scalar parameters, array data --------------------------------------------


def gaussian_fit_loss(x, y, mu, sigma, s):
    return np.sum((s * np.exp(-((x - mu) ** 2) / sigma**2) - y) ** 2)


def gaussian_fit_loss_autograd(x, y, mu, sigma, s):
    return anp.sum((s * anp.exp(-((x - mu) ** 2) / sigma**2) - y) ** 2)


def gaussian_d_mu(x, y, mu, sigma, s) -> float:
    """By hand: d/dmu sum(r^2), r = s e - y, e = exp(-(x-mu)^2/sigma^2)."""
    e = np.exp(-((x - mu) ** 2) / sigma**2)
    r = s * e - y
    return float(np.sum(2 * r * s * e * 2 * (x - mu) / sigma**2))


def gaussian_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    x = np.linspace(-2.0, 2.0, 41)
    y = 1.2 * np.exp(-((x - 0.3) ** 2) / 0.64) + 0.01 * rng.normal(size=x.size)
    return x, y


def test_mixed_path_gaussian_fit():
    x, y = gaussian_data()
    bare = grad(gaussian_fit_loss, wrt="mu")
    value, d_mu = bare(x, y, 0.1, 0.9, 1.1)
    assert "array data: factors made of scalars" in bare.source  # the mixed path ran
    assert np.shape(d_mu) == () and not isinstance(d_mu, tuple)
    assert value == pytest.approx(gaussian_fit_loss(x, y, 0.1, 0.9, 1.1), rel=1e-13)
    assert d_mu == pytest.approx(gaussian_d_mu(x, y, 0.1, 0.9, 1.1), rel=1e-11)
    assert d_mu == pytest.approx(
        autograd_grad(gaussian_fit_loss_autograd, 2, x, y, 0.1, 0.9, 1.1), rel=1e-11)
    numeric = central_difference(lambda m: gaussian_fit_loss(x, y, m, 0.9, 1.1), 0.1)
    assert d_mu == pytest.approx(numeric, rel=1e-6)
    named = grad(gaussian_fit_loss, wrt=("mu",))
    assert_bare_is_the_named_field(bare(x, y, 0.1, 0.9, 1.1), named(x, y, 0.1, 0.9, 1.1), "mu")


def test_mixed_path_hands_other_arguments_to_the_array_path_still_bare():
    x, y = gaussian_data()
    bare = grad(gaussian_fit_loss, wrt="mu")
    bare(x, y, 0.1, 0.9, 1.1)  # built for scalar parameters and array data
    mus = np.array([[-0.4], [0.2], [0.6]])  # now an array of three means: the array path
    value, d_mu = bare(x, y, mus, 0.9, 1.1)
    assert d_mu.shape == mus.shape
    expected = [gaussian_d_mu(x, y, m, 0.9, 1.1) for m in mus[:, 0]]
    np.testing.assert_allclose(d_mu[:, 0], expected, rtol=1e-11)
    value, d_mu = bare(x, y, np.float64(0.2), 0.9, 1.1)  # a NumPy float is not a Python float
    assert float(d_mu) == pytest.approx(gaussian_d_mu(x, y, 0.2, 0.9, 1.1), rel=1e-11)


# -- the static-shape path: float64 arrays at the first call ----------------------------------


def static_mix(a, b):
    return np.sum(a * b + np.sin(a) * np.exp(-b))


def static_mix_autograd(a, b):
    return anp.sum(a * b + anp.sin(a) * anp.exp(-b))


def test_static_shape_path_and_its_fall_back_to_the_array_path():
    a, b = np.linspace(-1.0, 1.0, 5), np.linspace(0.2, 1.4, 5)
    bare = grad(static_mix, wrt="b")
    value, d_b = bare(a, b)
    assert "sg.shaped_as(" in bare.source  # the static-shape path ran
    assert type(d_b) is np.ndarray and d_b.shape == b.shape
    np.testing.assert_allclose(d_b, a - np.sin(a) * np.exp(-b), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(d_b, autograd_grad(static_mix_autograd, 1, a, b), rtol=1e-13)
    assert_bare_is_the_named_field(bare(a, b), grad(static_mix, wrt=("b",))(a, b), "b")
    wider_a, column_b = np.linspace(-1.0, 1.0, 4), np.array([[0.5], [1.5]])  # other shapes
    value, d_b = bare(wider_a, column_b)
    assert d_b.shape == (2, 1)
    np.testing.assert_allclose(d_b, autograd_grad(static_mix_autograd, 1, wider_a, column_b),
                               rtol=1e-13)


def inner_product(a, b):
    return np.sum(a * b)


def test_static_path_gradient_never_aliases_an_input():
    a, b = np.arange(3.0), np.arange(3.0) + 1
    value, d_a = grad(inner_product, wrt="a")(a, b)
    np.testing.assert_array_equal(d_a, b)
    assert d_a is not b and not np.shares_memory(d_a, b)
    d_a[0] = 100.0
    assert b[0] == 1.0


# -- structured parameters ---------------------------------------------------------------------


def two_layer(params, x):
    w1, b1, w2 = params
    h = np.tanh(x @ w1 + b1)
    return np.sum((h @ w2) ** 2)


def two_layer_autograd(params, x):
    w1, b1, w2 = params
    h = anp.tanh(anp.dot(x, w1) + b1)
    return anp.sum(anp.dot(h, w2) ** 2)


def dict_model(params, x):
    return np.sum(np.sin(params["w"] * x) + params["c"] * x)


def dict_model_autograd(params, x):
    return anp.sum(anp.sin(params["w"] * x) + params["c"] * x)


def network_params(rng: np.random.Generator) -> list[np.ndarray]:
    return [rng.normal(size=(3, 4)), rng.normal(size=4), rng.normal(size=(4, 2))]


@pytest.mark.parametrize("container", [tuple, list])
def test_structured_parameter_gradient_has_its_structure(container: type):
    rng = np.random.default_rng(3)
    params = container(network_params(rng))
    x = rng.normal(size=(5, 3))
    bare = grad(two_layer, wrt="params")
    value, d_params = bare(params, x)
    assert type(d_params) is container and len(d_params) == 3
    expected = autograd_grad(two_layer_autograd, 0, params, x)
    for mine, theirs, p in zip(d_params, expected, params, strict=True):
        assert mine.shape == p.shape
        np.testing.assert_allclose(mine, theirs, rtol=1e-11, atol=1e-13)
    numeric = central_difference(
        lambda w: two_layer(container([w, params[1], params[2]]), x), params[0])
    np.testing.assert_allclose(d_params[0], numeric, rtol=1e-6, atol=1e-8)
    assert_bare_is_the_named_field(bare(params, x),
                                   grad(two_layer, wrt=("params",))(params, x), "params")
    assert "Returns (value, d_params)." in bare.source


def test_dict_parameter_static_and_array_paths():
    x = np.linspace(-1.0, 2.0, 6)
    params = {"w": np.array([0.4, -0.3, 1.1, 0.2, 0.9, -1.2]), "c": np.array(0.7)}
    bare = grad(dict_model, wrt="params")
    value, d_params = bare(params, x)  # every leaf a float64 array: the static-shape path
    assert "sg.shaped_as(" in bare.source
    assert type(d_params) is dict and list(d_params) == ["w", "c"]
    np.testing.assert_allclose(d_params["w"], x * np.cos(params["w"] * x), rtol=1e-13)
    assert d_params["c"].shape == () and d_params["c"] == pytest.approx(np.sum(x), rel=1e-14)
    other = {"w": np.float32(0.5) * np.ones(6, dtype=np.float32), "c": np.array(0.7)}
    value, d_other = bare(other, x)  # float32 leaves: the array path
    assert d_other["w"].dtype == np.float32
    expected = autograd_grad(dict_model_autograd, 0, {"w": other["w"].astype(float),
                                                      "c": other["c"]}, x)
    np.testing.assert_allclose(d_other["w"], expected["w"], rtol=1e-6)
    assert float(d_other["c"]) == pytest.approx(float(expected["c"]), rel=1e-12)


# -- control flow ------------------------------------------------------------------------------


def damped(w, x):
    h = x
    for _ in range(5):
        h = np.tanh(w * h) + 0.5 * x
    return h


def damped_autograd(w, x):
    h = x
    for _ in range(5):
        h = anp.tanh(w * h) + 0.5 * x
    return h


def test_for_loop_on_floats_and_arrays():
    bare = grad(damped, wrt="w")
    value, d_w = bare(0.8, 0.6)
    assert type(d_w) is float
    assert d_w == pytest.approx(autograd_grad(damped_autograd, 0, 0.8, 0.6), rel=1e-12)
    assert d_w == pytest.approx(central_difference(lambda t: damped(t, 0.6), 0.8), rel=1e-7)
    x = np.linspace(-1.5, 1.5, 7)
    values, d_w = bare(0.8, x)  # an array value; a float parameter: the gradient of the sum
    assert values.shape == x.shape and np.shape(d_w) == ()
    assert d_w == pytest.approx(autograd_grad(damped_autograd, 0, 0.8, x), rel=1e-12)
    named = grad(damped, wrt=("w",))
    named(0.8, 0.6)  # built from the same first call as the bare form: the same code
    assert_bare_is_the_named_field(bare(0.8, x), named(0.8, x), "w")


def piecewise(a, b):
    if a > b:
        square = a * a
        out = square - b
    else:
        out = np.sin(a) * b
    return out


@pytest.mark.parametrize(("a", "b", "expected"), [
    (2.0, 1.0, 4.0),                        # a > b: d/da (a^2 - b) = 2a
    (0.5, 1.0, math.cos(0.5) * 1.0),        # otherwise: d/da sin(a) b = cos(a) b
])
def test_if_branch_on_data(a: float, b: float, expected: float):
    bare = grad(piecewise, wrt="a")
    value, d_a = bare(a, b)
    assert value == piecewise(a, b)
    assert d_a == pytest.approx(expected, rel=1e-15)
    assert d_a == pytest.approx(central_difference(lambda t: piecewise(t, b), a), rel=1e-7)
    assert_bare_is_the_named_field(bare(a, b), grad(piecewise, wrt=("a",))(a, b), "a")


# -- the fused backend ---------------------------------------------------------------------------


def fused_elementwise(a, s):
    return np.sum(np.sin(a) * s + a * a)


def test_numba_fused_gaussian_fit_is_bare():
    pytest.importorskip("numba")
    x, y = gaussian_data()
    fused = grad(gaussian_fit_loss, wrt="mu", backend="numba")
    assert fused.bare is True
    value, d_mu = fused(x, y, 0.1, 0.9, 1.1)
    assert "numba.njit" in fused.source  # the fused loop ran
    assert not isinstance(d_mu, tuple) and np.shape(d_mu) == ()
    assert value == pytest.approx(gaussian_fit_loss(x, y, 0.1, 0.9, 1.1), rel=1e-12)
    assert d_mu == pytest.approx(gaussian_d_mu(x, y, 0.1, 0.9, 1.1), rel=1e-11)
    assert d_mu == pytest.approx(
        autograd_grad(gaussian_fit_loss_autograd, 2, x, y, 0.1, 0.9, 1.1), rel=1e-11)
    assert "Returns (value, d_mu)." in fused.source and "tuple_new" not in fused.source
    mus = np.array([[0.0], [0.5]])  # not numbers: the NumPy backend's function, still bare
    value, d_mu = fused(x, y, mus, 0.9, 1.1)
    assert d_mu.shape == (2, 1)
    np.testing.assert_allclose(d_mu[:, 0], [gaussian_d_mu(x, y, m, 0.9, 1.1) for m in (0, 0.5)],
                               rtol=1e-11)


def test_numba_fused_array_parameter_is_bare():
    pytest.importorskip("numba")
    fused = grad(fused_elementwise, wrt="a", backend="numba")
    a = np.linspace(-1.0, 2.0, 11)
    value, d_a = fused(a, 2.0)
    assert type(d_a) is np.ndarray and d_a.shape == a.shape
    np.testing.assert_allclose(d_a, 2.0 * np.cos(a) + 2 * a, rtol=1e-13, atol=1e-15)
    assert value == pytest.approx(np.sum(np.sin(a) * 2.0 + a * a), rel=1e-13)
    value32, d_a32 = fused(a.reshape(1, 11).astype(np.float32), 2.0)
    assert d_a32.dtype == np.float32 and d_a32.shape == (1, 11)
    np.testing.assert_allclose(d_a32[0], d_a, rtol=1e-5)
    numpy_value, numpy_d_a = grad(fused_elementwise, wrt="a")(a, 2.0)
    np.testing.assert_allclose(d_a, numpy_d_a, rtol=1e-14)


# -- a bare `grad` inlined into another differentiated function ---------------------------------


def energy(w, x):
    return np.sum(np.sin(w * x) * w)


d_energy = grad(energy, wrt="w")
d_energy_named = grad(energy, wrt=("w",))


def energy_slope(w, x):
    _, d_w = d_energy(w, x)
    return d_w


def energy_slope_indexed(w, x):
    return 3.0 * d_energy(w, x)[1]


def slope_squared_two_ways(w, x):
    _, bare_slope = d_energy(w, x)
    _, grads = d_energy_named(w, x)
    return bare_slope * grads.w + (bare_slope - grads.w)


def energy_d1(w: Any, x: np.ndarray) -> Any:
    """By hand: d/dw sum_x sin(w x) w = sum_x sin(w x) + w x cos(w x)."""
    return np.sum(np.sin(w * x) + w * x * np.cos(w * x), axis=-1)


def energy_d2(w: Any, x: np.ndarray) -> Any:
    """By hand: d2/dw2 = sum_x 2 x cos(w x) - w x^2 sin(w x)."""
    return np.sum(2 * x * np.cos(w * x) - w * x**2 * np.sin(w * x), axis=-1)


ENERGY_X = np.array([0.3, 0.9, 1.4, -0.6, 2.1])


def second_difference(w: float) -> float:
    h = 1e-4
    return (energy(w + h, ENERGY_X) - 2 * energy(w, ENERGY_X) + energy(w - h, ENERGY_X)) / h**2


@pytest.mark.parametrize("w", [0.7, -1.2])
def test_inlined_bare_gradient_gives_the_second_derivative(w: float):
    curvature = grad(energy_slope, wrt="w")
    slope, d_slope = curvature(w, ENERGY_X)
    assert np.shape(d_slope) == () and not isinstance(d_slope, tuple)
    assert slope == pytest.approx(energy_d1(w, ENERGY_X), rel=1e-13)
    assert d_slope == pytest.approx(energy_d2(w, ENERGY_X), rel=1e-12)
    assert d_slope == pytest.approx(second_difference(w), rel=1e-5)
    named = grad(energy_slope, wrt=("w",))
    assert_bare_is_the_named_field(curvature(w, ENERGY_X), named(w, ENERGY_X), "w")


def test_inlined_bare_gradient_indexed_and_on_arrays():
    w = np.array([0.4, -0.8, 1.3])
    x = ENERGY_X[:, None]  # broadcast: each w sees every x; separable, so per-w curvature
    value, d_w = grad(energy_slope_indexed, wrt="w")(w, x)
    assert d_w.shape == w.shape
    np.testing.assert_allclose(value, 3.0 * energy_d1(w[:, None], ENERGY_X), rtol=1e-12)
    np.testing.assert_allclose(d_w, 3.0 * energy_d2(w[:, None], ENERGY_X), rtol=1e-11)
    np.testing.assert_allclose(d_w, [3.0 * second_difference(v) for v in w], rtol=1e-5)


def test_inlined_bare_and_named_forms_agree_inside_one_function():
    w = 0.55
    value, d_w = grad(slope_squared_two_ways, wrt="w")(w, ENERGY_X)
    d1, d2 = energy_d1(w, ENERGY_X), energy_d2(w, ENERGY_X)
    assert value == pytest.approx(d1 * d1, rel=1e-13)  # the difference term is exactly zero
    assert d_w == pytest.approx(2 * d1 * d2, rel=1e-12)


def weighted(a, b):
    return a * b**2


weighted_d_b = grad(weighted, wrt="b")


def same_value_twice(w):
    return weighted_d_b(w, w)[1]  # d/db (a b^2) = 2 a b, at a = b = w: 2 w^2


def test_inlined_bare_call_with_one_value_for_two_parameters():
    value, d_w = grad(same_value_twice, wrt="w")(1.5)
    assert value == 2 * 1.5**2 and d_w == 4 * 1.5  # both partials, summed
    values, d_w = grad(same_value_twice, wrt="w")(np.array([1.0, -2.0]))
    np.testing.assert_array_equal(d_w, [4.0, -8.0])


energy_curvature = grad(energy_slope, wrt="w")  # bare too: (slope, d slope / dw)


def energy_curvature_value(w, x):
    _, curvature = energy_curvature(w, x)
    return curvature


def energy_d3(w: float, x: np.ndarray) -> float:
    """By hand: d3/dw3 = sum_x -3 x^2 sin(w x) - w x^3 cos(w x)."""
    return float(np.sum(-3 * x**2 * np.sin(w * x) - w * x**3 * np.cos(w * x)))


def test_bare_gradient_of_an_inlined_bare_gradient_of_an_inlined_bare_gradient():
    w = 0.7
    value, d3 = grad(energy_curvature_value, wrt="w")(w, ENERGY_X)
    assert value == pytest.approx(energy_d2(w, ENERGY_X), rel=1e-12)
    assert d3 == pytest.approx(energy_d3(w, ENERGY_X), rel=1e-11)
    h = 1e-3
    numeric = (energy_d1(w + h, ENERGY_X) - 2 * energy_d1(w, ENERGY_X)
               + energy_d1(w - h, ENERGY_X)) / h**2
    assert d3 == pytest.approx(numeric, rel=1e-5)


def test_other_modes_through_an_inlined_bare_gradient():
    w = -0.4
    value, slope_of_slope = srcgrad.forward(energy_slope, wrt="w")(w, ENERGY_X)
    assert value == pytest.approx(energy_d1(w, ENERGY_X), rel=1e-13)
    assert slope_of_slope == pytest.approx(energy_d2(w, ENERGY_X), rel=1e-12)
    value, grads, blocks = srcgrad.hessian(energy_slope, wrt="w")(w, ENERGY_X)
    assert grads._fields == ("w",) and grads.w == pytest.approx(energy_d2(w, ENERGY_X),
                                                                 rel=1e-12)
    assert blocks[0][0] == pytest.approx(energy_d3(w, ENERGY_X), rel=1e-11)


def unpacks_a_namedtuple_of_one(w, x):
    _, (d_w,) = d_energy(w, x)  # the old spelling: d_energy now returns the gradient itself
    return d_w


def test_unpacking_a_bare_inlined_gradient_as_a_namedtuple_is_refused():
    with pytest.raises(TypeError):  # what Python itself says on the plain function
        unpacks_a_namedtuple_of_one(0.5, ENERGY_X)
    with pytest.raises(srcgrad.TransformError, match="line"):
        grad(unpacks_a_namedtuple_of_one, wrt="w")(0.5, ENERGY_X)


# -- check_grad ---------------------------------------------------------------------------------


def wrong_cube(x):
    return x * x * x


def wrong_cube_derive(x):
    return 2 * x * x  # wrong on purpose: 3 x^2 is right


def uses_wrong_cube(a, b):
    return wrong_cube(a) * b


def test_check_grad_on_a_bare_function():
    x, y = gaussian_data()
    bare = grad(gaussian_fit_loss, wrt="mu")
    report = srcgrad.check_grad(bare, x, y, 0.1, 0.9, 1.1)
    assert [e.parameter for e in report.entries] == ["mu"]
    (entry,) = report.entries
    assert entry.srcgrad == pytest.approx(gaussian_d_mu(x, y, 0.1, 0.9, 1.1), rel=1e-11)
    # check_grad reads the bare gradient itself: a wrong derivative is caught, not skipped.
    with pytest.raises(srcgrad.GradientMismatch, match="mismatch"):
        srcgrad.check_grad(grad(uses_wrong_cube, wrt="a"), 1.5, 2.0)
    assert grad(uses_wrong_cube, wrt="a")(1.5, 2.0)[1] == 2 * 1.5**2 * 2.0


def test_check_grad_with_wrt_as_one_name():
    x, y = gaussian_data()
    report = srcgrad.check_grad(gaussian_fit_loss, x, y, 0.1, 0.9, 1.1, wrt="mu")
    assert [e.parameter for e in report.entries] == ["mu"]
    assert report.entries[0].srcgrad == pytest.approx(gaussian_d_mu(x, y, 0.1, 0.9, 1.1),
                                                      rel=1e-11)
    rng = np.random.default_rng(11)
    params, data = tuple(network_params(rng)), rng.normal(size=(4, 3))
    report = srcgrad.check_grad(two_layer, params, data, wrt="params")
    assert len(report.entries) == 3 * 4 + 4 + 4 * 2
    assert {e.parameter for e in report.entries} == {"params[0]", "params[1]", "params[2]"}
    with pytest.raises(srcgrad.GradientMismatch):
        srcgrad.check_grad(uses_wrong_cube, 1.5, 2.0, wrt="a")


# -- the generated source -----------------------------------------------------------------------


def source_probe(a, b):
    return math.sin(a) * b


def test_source_of_the_bare_form():
    bare = grad(source_probe, wrt="a")
    bare(0.5, 2.0)
    source = bare.source
    assert "Returns (value, d_a)." in source
    assert "return (value, d_a)" in source  # the fast path
    assert "sg.grad_like(d_a, a)" in source  # the array path
    assert "tuple_new" not in source and "Grads" not in source
    named = grad(source_probe, wrt=("a",))
    named(0.5, 2.0)
    assert "tuple_new(Grads, (d_a,))" in named.source
    assert "Returns (value, Grads(a))." in named.source
    assert "def make_source_probe(np, math, sg, SCALARS):" in source
    assert "def make_source_probe(np, math, sg, SCALARS, Grads, tuple_new):" in named.source


# -- the cache --------------------------------------------------------------------------------


@pytest.mark.parametrize("bare_first", [True, False])
def test_bare_and_named_forms_do_not_share_a_cache_entry(bare_first: bool):
    def f(a, b):
        return a * b + a

    order = [("a", True), (("a",), False)]
    if not bare_first:
        order.reverse()
    made = {}
    for wrt, is_bare in order:
        made[is_bare] = grad(f, wrt=wrt)
        made[is_bare](2.0, 3.0)
    assert made[True](2.0, 3.0) == (8.0, 4.0)
    value, grads = made[False](2.0, 3.0)
    assert value == 8.0 and grads._fields == ("a",) and grads.a == 4.0
    assert made[True].function is not made[False].function
    again = grad(f, wrt="a")  # the same request again: the cached bare function
    assert again(2.0, 3.0) == (8.0, 4.0)
    assert again.function is made[True].function
    np.testing.assert_array_equal(again(np.ones(2), np.ones(2))[1], [2.0, 2.0])


def test_hessian_and_hvp_still_return_namedtuples():
    """docs/modes.md: `hvp` and `hessian` always return namedtuples, also of a bare function
    and with one name as a string."""
    value, grads, blocks = srcgrad.hessian(weighted_d_b)(1.5, 2.0)
    assert value == 6.0
    assert grads._fields == ("a", "b") and grads == (4.0, 6.0)  # b^2, 2ab
    assert blocks == ((0.0, 4.0), (4.0, 3.0))  # [[0, 2b], [2b, 2a]]
    value, grads, blocks = srcgrad.hessian(weighted, wrt="b")(1.5, 2.0)
    assert grads._fields == ("b",) and grads.b == 6.0 and blocks == ((3.0,),)
    value, grads, along = srcgrad.hvp(weighted, wrt="b")((1.5, 2.0), (2.0,))
    assert grads._fields == ("b",) and along._fields == ("b",) and along.b == 2 * 1.5 * 2.0


# -- generated programs -------------------------------------------------------------------------

UNARY = ("np.sin({})", "np.cos({})", "np.tanh({})", "np.exp(np.tanh({}))",
         "np.log(1.5 + np.sin({}))", "np.sqrt(1.0 + ({}) ** 2)", "({}) ** 2",
         "1.0 / (1.0 + ({}) ** 2)", "-({})")
BINARY = ("({} + {})", "({} - {})", "({} * {})", "({} / (2.0 + np.cos({})))")
CONSTANTS = (0.5, 1.5, 2.0, -0.75, 3.0)


@st.composite
def expressions(draw: Any, names: tuple[str, ...], depth: int) -> str:
    """A random expression of ``names`` (mostly) and constants, at most ``depth`` deep."""
    kinds = ("leaf", "unary", "unary", "binary", "binary") if depth > 0 else ("leaf",)
    kind = draw(st.sampled_from(kinds))
    if kind == "leaf":
        if draw(st.integers(0, 3)) == 0:
            return repr(draw(st.sampled_from(CONSTANTS)))
        return draw(st.sampled_from(names))
    if kind == "unary":
        return draw(st.sampled_from(UNARY)).format(draw(expressions(names, depth - 1)))
    return draw(st.sampled_from(BINARY)).format(draw(expressions(names, depth - 1)),
                                                draw(expressions(names, depth - 1)))


@st.composite
def scalar_programs(draw: Any) -> str:
    """``def f(x, y)``: a few assignments to fresh locals, then a return; each right-hand side
    combines a random expression of the names so far with the latest of them, so every line
    feeds the value."""
    names: tuple[str, ...] = ("x", "y")
    latest = draw(st.sampled_from(names))
    lines = ["def f(x, y):"]
    for k in range(draw(st.integers(0, 3))):
        combined = draw(st.sampled_from(BINARY)).format(draw(expressions(names, 2)), latest)
        lines.append(f"    u{k} = {combined}")
        latest = f"u{k}"
        names = (*names, latest)
    combined = draw(st.sampled_from(BINARY)).format(latest, draw(expressions(names, 2)))
    lines.append(f"    return {combined}")
    return "\n".join(lines) + "\n"


@settings(max_examples=30)
@given(source=scalar_programs(), name=st.sampled_from(("x", "y")),
       x=st.floats(-2.0, 2.0), y=st.floats(-2.0, 2.0))
def test_generated_programs_bare_matches_named_autograd_and_differences(
        source: str, name: str, x: float, y: float, module_dir: Path):
    plain = import_source("import numpy as np\n\n" + source, module_dir, "bare_program").f
    twin = import_source("import autograd.numpy as np\n\n" + source, module_dir,
                         "bare_program_autograd").f
    value = float(plain(x, y))
    expected = float(autograd_grad(twin, ("x", "y").index(name), x, y))
    assume(abs(value) < 1e4 and abs(expected) < 1e4)  # central differences stay accurate
    bare = grad(plain, wrt=name)
    named = grad(plain, wrt=(name,))
    result = bare(x, y)
    gradient = result[1]
    assert not isinstance(gradient, tuple)
    assert_bare_is_the_named_field(result, named(x, y), name)
    assert float(result[0]) == pytest.approx(value, rel=1e-12, abs=1e-14)
    assert float(gradient) == pytest.approx(expected, rel=1e-9, abs=1e-11 * (1 + abs(value)))
    args = {"x": x, "y": y}
    numeric = central_difference(lambda t: float(plain(**dict(args, **{name: t}))), args[name])
    assert float(gradient) == pytest.approx(numeric, rel=1e-5, abs=1e-6 * (1 + abs(value)))
    # The same function on an array of points for the parameter: per-element derivatives.
    points = args[name] + np.array([-0.25, 0.0, 0.4])
    values, gradients = bare(**dict(args, **{name: points}))
    assert np.shape(gradients) == points.shape
    per_point = [float(autograd_grad(twin, ("x", "y").index(name), *dict(
        args, **{name: float(p)}).values())) for p in points]
    scale = 1 + np.max(np.abs(values))
    np.testing.assert_allclose(gradients, per_point, rtol=1e-9, atol=1e-11 * scale)
