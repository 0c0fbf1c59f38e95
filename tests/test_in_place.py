"""Generated code that writes into its own temporaries (`out=`) must be invisible to callers.

The path taken for Python-float parameters beside float64 arrays reuses the memory of
temporaries that die. Each program here runs twice: with Python floats (that path) and with
the same floats as NumPy scalars (the general array path, which never writes in place); the
results must agree, the inputs must be untouched, and the in-place path must really have run.
"""

from __future__ import annotations

import numpy as np
import pytest

from srcgrad import grad


@grad(wrt=("mu", "sigma", "s"))
def gaussian_fit(mu, sigma, s, x, y):
    return np.sum((s * np.exp(-(x - mu) ** 2 / sigma**2) - y) ** 2)


@grad(wrt=("a", "b"))
def keeps_a_view(a, b, x):
    t = x * a + b
    head = t[:3]  # a view of t: t must not be overwritten while head lives
    u = np.exp(t) * b
    return np.sum(u) + np.sum(head * head) * a


@grad(wrt=("a",))
def broadcasts_bigger(a, x, grid):
    t = x * a
    return np.sum(np.tanh(t - grid))  # x is (n,), grid (m, n): the result outgrows t


@grad(wrt=("a", "b"))
def chained(a, b, x, y):
    r = np.sin(x * a) * b - y
    return np.sum(r**2) + np.sum(np.sqrt(1 + (x - a) ** 2) * b)


CASES = {
    "gaussian_fit": (gaussian_fit, (0.3, 1.2, 0.9), lambda rng: (
        rng.normal(size=500), rng.normal(size=500))),
    "keeps_a_view": (keeps_a_view, (0.7, -0.4), lambda rng: (rng.normal(size=50),)),
    "broadcasts_bigger": (broadcasts_bigger, (1.3,), lambda rng: (
        rng.normal(size=40), rng.normal(size=(3, 40)))),
    "chained": (chained, (0.9, 1.1), lambda rng: (rng.normal(size=64), rng.normal(size=64))),
}


@pytest.mark.parametrize("name", list(CASES))
def test_in_place_path_matches_the_general_path_and_leaves_inputs_alone(name):
    f, scalars, make_data = CASES[name]
    data = make_data(np.random.default_rng(7))
    copies = [d.copy() for d in data]
    value, grads = f(*scalars, *data)
    for original, after in zip(copies, data, strict=True):
        np.testing.assert_array_equal(original, after)
    general_value, general_grads = f(*(np.float64(v) for v in scalars), *data)
    np.testing.assert_allclose(value, general_value, rtol=1e-13)
    for got, expected in zip(grads, general_grads, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)
    # and a second call on the same inputs gives the same answer (no state kept)
    again_value, again_grads = f(*scalars, *data)
    assert again_value == value and all(
        np.array_equal(a, b) for a, b in zip(again_grads, grads, strict=True))


def test_the_fit_reuses_memory_only_behind_a_float64_guard():
    source = gaussian_fit.source
    assert "out=" in source and "sg.float64_arrays(x, y)" in source
    # float32 data takes the general path: results stay float32
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=100).astype(np.float32), rng.normal(size=100).astype(np.float32)
    value, grads = gaussian_fit(0.3, 1.2, 0.9, x, y)
    assert np.asarray(value).dtype == np.float32


def test_a_view_is_never_written_through():
    source = keeps_a_view.source
    mixed = source.split("Float64 data")[1].split("Array path")[0]
    assert "out=t)" not in mixed.replace(" ", "")  # t is viewed by head


def test_the_fits_three_sums_share_one_product_and_match_autograd():
    """d_s, d_mu and d_sigma are Σ r·e, Σ r·e·d and Σ r·e·d² (r the residual, e the exp,
    d = x - mu): the product r·e is made once, in place, and summed three times, rather than
    multiplied out for each sum (`reverse.share_products`)."""
    anp = pytest.importorskip("autograd.numpy")
    autograd = pytest.importorskip("autograd")
    rng = np.random.default_rng(3)
    x = rng.uniform(-3, 3, 500)
    y = 1.2 * np.exp(-(x - 0.2) ** 2 / 0.7) + 0.05 * rng.standard_normal(500)
    args = (0.3, 0.9, 1.1, x, y)
    value, grads = gaussian_fit(*args)
    mixed = gaussian_fit.source.split("# Array path")[0]
    product = [line for line in mixed.splitlines() if "exp_t1_times_t2 = " in line]
    assert len(product) == 1 and "out=" in product[0], mixed  # made once, in a dying buffer
    assert mixed.count("exp_t1_times_t2") >= 4  # ... and read by the three sums

    def plain(mu, sigma, s):
        return anp.sum((s * anp.exp(-(x - mu) ** 2 / sigma**2) - y) ** 2)

    for index, name in enumerate(("mu", "sigma", "s")):
        expected = autograd.grad(plain, index)(*args[:3])
        np.testing.assert_allclose(getattr(grads, name), expected, rtol=1e-12, err_msg=name)
