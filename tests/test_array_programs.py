"""Whole array programs: small networks, a large least-squares fit, structured parameters.

Why: the array rules are tested one at a time in test_array_rules.py; real programs chain them
(a matmul feeding a broadcast add feeding a max-subtracted softmax feeding integer indexing) and
carry parameters in tuples, lists and dicts. Each program here is checked against gradients
derived by hand (written out below in plain NumPy) and against autograd running a twin of the
program; nothing expected comes from srcgrad. The functions are defined in this module because
srcgrad reads their source.
"""

from __future__ import annotations

import itertools
from typing import Any

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
from array_cases import assert_close

from srcgrad import grad

RTOL = 1e-10  # float64: hand-derived and autograd gradients agree with srcgrad to rounding


def tree_close(actual: Any, expected: Any, rtol: float = RTOL, atol: float = 1e-12, *,
               leaf_types: bool = True) -> None:
    """Same container types, same keys/lengths, leaves close (float leaves stay Python floats).

    `leaf_types=False` for autograd's results, which return a 0-d array for a float leaf.
    """
    if leaf_types or isinstance(expected, (dict, list, tuple)):
        assert type(actual) is type(expected), (type(actual), type(expected))
    if isinstance(expected, dict):
        assert list(actual) == list(expected)
        for key in expected:
            tree_close(actual[key], expected[key], rtol, atol, leaf_types=leaf_types)
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected)
        for a, e in zip(actual, expected, strict=True):
            tree_close(a, e, rtol, atol, leaf_types=leaf_types)
    else:
        if isinstance(expected, np.ndarray) and leaf_types:
            assert actual.shape == expected.shape and actual.dtype == expected.dtype
        assert_close(actual, expected, rtol, atol, "leaf")


# --- a softmax cross-entropy MLP, parameters in a tuple ------------------------------------------

@grad(wrt=("params",))
def mlp_loss(params, X, y):
    W1, b1, W2, b2 = params
    h = np.maximum(0, X @ W1 + b1)
    z = h @ W2 + b2
    z = z - np.max(z, axis=1, keepdims=True)
    logp = z - np.log(np.sum(np.exp(z), axis=1, keepdims=True))
    return -np.mean(logp[np.arange(len(y)), y])


def mlp_loss_autograd(params, X, y):
    W1, b1, W2, b2 = params
    h = anp.maximum(0, anp.dot(X, W1) + b1)
    z = anp.dot(h, W2) + b2
    z = z - anp.max(z, axis=1, keepdims=True)
    logp = z - anp.log(anp.sum(anp.exp(z), axis=1, keepdims=True))
    return -anp.mean(logp[anp.arange(len(y)), y])


def mlp_backprop(params, X, y):
    """The textbook backward pass: softmax minus one-hot, then back through both layers."""
    W1, b1, W2, b2 = params
    a1 = X @ W1 + b1
    h = np.maximum(a1, 0)
    z = h @ W2 + b2
    e = np.exp(z - z.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    n = len(y)
    loss = -np.mean(np.log(p[np.arange(n), y]))
    dz = p.copy()
    dz[np.arange(n), y] -= 1
    dz /= n
    dW2 = h.T @ dz
    db2 = dz.sum(axis=0)
    da1 = (dz @ W2.T) * (a1 > 0)
    dW1 = X.T @ da1
    db1 = da1.sum(axis=0)
    return loss, (dW1, db1, dW2, db2)


def mlp_data(rng, dtype=np.float64, n=64, d=5, hidden=16, classes=4):
    params = (rng.normal(size=(d, hidden)) / np.sqrt(d), 0.1 * rng.normal(size=hidden),
              rng.normal(size=(hidden, classes)) / np.sqrt(hidden), 0.1 * rng.normal(size=classes))
    X = rng.normal(size=(n, d))
    y = rng.integers(0, classes, size=n)
    y[:classes] = np.arange(classes)  # every class present
    return tuple(p.astype(dtype) for p in params), X.astype(dtype), y


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_softmax_mlp_against_hand_backprop_and_autograd(seed):
    params, X, y = mlp_data(np.random.default_rng(seed))
    value, grads = mlp_loss(params, X, y)
    assert grads._fields == ("params",)
    (g_params,) = grads
    assert type(g_params) is tuple and len(g_params) == 4

    loss, expected = mlp_backprop(params, X, y)
    assert value == pytest.approx(loss, rel=1e-12)
    tree_close(g_params, expected)

    reference = autograd.grad(mlp_loss_autograd)(params, X, y)
    tree_close(g_params, tuple(reference))


def test_softmax_mlp_in_float32_end_to_end():
    params64, X64, y = mlp_data(np.random.default_rng(3))
    params = tuple(p.astype(np.float32) for p in params64)
    X = X64.astype(np.float32)
    value, (g_params,) = mlp_loss(params, X, y)
    assert np.result_type(value) == np.float32
    assert all(g.dtype == np.float32 for g in g_params)
    # Against the float64 hand backprop on the same (float32-rounded) numbers.
    loss, expected = mlp_backprop(tuple(p.astype(np.float64) for p in params),
                                  X.astype(np.float64), y)
    assert float(value) == pytest.approx(loss, rel=1e-5)
    for g, e in zip(g_params, expected, strict=True):
        assert_close(g, e, 1e-3, 1e-4, "float32 MLP gradient")


def test_softmax_mlp_gradient_of_a_wrong_rule_would_fail():
    """The hand backprop is sensitive: dropping the relu mask changes dW1 measurably."""
    params, X, y = mlp_data(np.random.default_rng(4))
    _, (g_params,) = mlp_loss(params, X, y)
    W1, b1, W2, b2 = params
    a1 = X @ W1 + b1
    _, expected = mlp_backprop(params, X, y)
    z = np.maximum(a1, 0) @ W2 + b2
    e = np.exp(z - z.max(axis=1, keepdims=True))
    dz = e / e.sum(axis=1, keepdims=True)
    dz[np.arange(len(y)), y] -= 1
    unmasked = X.T @ ((dz / len(y)) @ W2.T)
    assert not np.allclose(unmasked, expected[0], rtol=1e-3)
    np.testing.assert_allclose(g_params[0], expected[0], rtol=1e-10, atol=1e-13)


# --- a 2-16-16-1 tanh MLP with mean squared error, parameters in a list --------------------------

@grad(wrt=("params",))
def tanh_mse(params, X, y):
    W1, b1, W2, b2, W3, b3 = params
    h1 = np.tanh(X @ W1 + b1)
    h2 = np.tanh(h1 @ W2 + b2)
    out = h2 @ W3 + b3
    return np.mean((out[:, 0] - y) ** 2)


def tanh_mse_plain(params, X, y):
    W1, b1, W2, b2, W3, b3 = params
    h1 = np.tanh(X @ W1 + b1)
    h2 = np.tanh(h1 @ W2 + b2)
    return np.mean(((h2 @ W3 + b3)[:, 0] - y) ** 2)


def tanh_mse_autograd(params, X, y):
    W1, b1, W2, b2, W3, b3 = params
    h1 = anp.tanh(anp.dot(X, W1) + b1)
    h2 = anp.tanh(anp.dot(h1, W2) + b2)
    return anp.mean((anp.dot(h2, W3)[:, 0] + b3[0] - y) ** 2)


def tanh_backprop(params, X, y):
    W1, b1, W2, b2, W3, b3 = params
    h1 = np.tanh(X @ W1 + b1)
    h2 = np.tanh(h1 @ W2 + b2)
    out = h2 @ W3 + b3
    dout = 2 * (out - y[:, None]) / len(y)
    dW3, db3 = h2.T @ dout, dout.sum(axis=0)
    da2 = (dout @ W3.T) * (1 - h2**2)
    dW2, db2 = h1.T @ da2, da2.sum(axis=0)
    da1 = (da2 @ W2.T) * (1 - h1**2)
    dW1, db1 = X.T @ da1, da1.sum(axis=0)
    return [dW1, db1, dW2, db2, dW3, db3]


def test_tanh_mlp_mse_against_hand_backprop_autograd_and_differences():
    rng = np.random.default_rng(5)
    sizes = [2, 16, 16, 1]
    params = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        params += [rng.normal(size=(fan_in, fan_out)) / np.sqrt(fan_in),
                   0.1 * rng.normal(size=fan_out)]
    X = rng.uniform(-1, 1, size=(50, 2))
    y = np.sin(3 * X[:, 0]) * X[:, 1]

    value, (g_params,) = tanh_mse(params, X, y)
    assert type(g_params) is list and len(g_params) == 6
    assert value == pytest.approx(tanh_mse_plain(params, X, y), rel=1e-13)
    tree_close(g_params, tanh_backprop(params, X, y))
    tree_close(g_params, list(autograd.grad(tanh_mse_autograd)(params, X, y)))

    # Every one of the 337 parameters against central differences of the plain program.
    assert sum(p.size for p in params) == 337
    for k, p in enumerate(params):
        fd = np.empty(p.shape)
        for i in np.ndindex(p.shape):
            up = [q.copy() for q in params]
            down = [q.copy() for q in params]
            up[k][i] += 1e-6
            down[k][i] -= 1e-6
            fd[i] = (tanh_mse_plain(up, X, y) - tanh_mse_plain(down, X, y)) / 2e-6
        np.testing.assert_allclose(g_params[k], fd, rtol=1e-5, atol=1e-8)


# --- a linear layer with ReLU, summed ------------------------------------------------------------

@grad
def linear_relu_sum(W, b, X):
    return np.sum(np.maximum(0, X @ W + b))


def test_linear_relu_sum():
    rng = np.random.default_rng(6)
    W, b, X = rng.normal(size=(4, 3)), rng.normal(size=3), rng.normal(size=(20, 4))
    value, grads = linear_relu_sum(W, b, X)
    a = X @ W + b
    assert np.min(np.abs(a)) > 1e-6  # away from the kink
    active = (a > 0).astype(float)
    assert value == pytest.approx(np.sum(a * active), rel=1e-13)
    np.testing.assert_allclose(grads.W, X.T @ active, rtol=1e-13)
    np.testing.assert_allclose(grads.b, active.sum(axis=0), rtol=1e-13)
    np.testing.assert_allclose(grads.X, active @ W.T, rtol=1e-13)
    reference = autograd.grad(lambda W, b, X: anp.sum(anp.maximum(0, anp.dot(X, W) + b)),
                              (0, 1, 2))(W, b, X)
    for g, r in zip(grads, reference, strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-13)


# --- least squares over 100,000 samples ----------------------------------------------------------

@grad(wrt=("s", "mu", "sigma"))
def gaussian_fit(x, y, s, mu, sigma):
    return np.sum((s * np.exp(-((x - mu) ** 2) / sigma**2) - y) ** 2)


def gaussian_fit_gradient(x, y, s, mu, sigma):
    """d/ds, d/dmu, d/dsigma of sum((s e - y)^2), e = exp(-(x - mu)^2 / sigma^2)."""
    e = np.exp(-((x - mu) ** 2) / sigma**2)
    r2 = 2 * (s * e - y)
    return (float(np.sum(r2 * e)),
            float(np.sum(r2 * s * e * 2 * (x - mu) / sigma**2)),
            float(np.sum(r2 * s * e * 2 * (x - mu) ** 2 / sigma**3)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_least_squares_over_100000_samples(dtype):
    rng = np.random.default_rng(7)
    x = rng.uniform(-3, 3, size=100_000)
    y = 1.7 * np.exp(-((x - 0.4) ** 2) / 0.9**2) + 0.05 * rng.normal(size=x.size)
    s, mu, sigma = 1.5, 0.3, 1.1
    value, grads = gaussian_fit(x.astype(dtype), y.astype(dtype), s, mu, sigma)
    assert grads._fields == ("s", "mu", "sigma")
    assert all(type(g) is float for g in grads)  # Python float parameters: Python floats back
    x64, y64 = x.astype(dtype).astype(np.float64), y.astype(dtype).astype(np.float64)
    expected_value = np.sum((s * np.exp(-((x64 - mu) ** 2) / sigma**2) - y64) ** 2)
    expected = gaussian_fit_gradient(x64, y64, s, mu, sigma)
    rtol = 1e-10 if dtype is np.float64 else 1e-3
    assert np.result_type(value) == dtype
    assert float(value) == pytest.approx(expected_value, rel=rtol)
    scale = max(map(abs, expected))
    assert list(grads) == pytest.approx(list(expected), rel=rtol, abs=rtol * scale)


# --- dict and nested parameters ------------------------------------------------------------------

@grad(wrt=("params",))
def nested_loss(params, x):
    W = params["W"]
    (a, b), c = params["ab"], params["c"]
    scale = params["inner"]["scale"]
    first = params["seq"][0]
    u, v = params["seq"][1]
    hidden = np.tanh(x @ W + a) * b
    return np.sum(hidden) + c * scale * np.sum(first**2) + u * np.sum(v * first[:2])


def nested_loss_autograd(params, x):
    W = params["W"]
    (a, b), c = params["ab"], params["c"]
    scale = params["inner"]["scale"]
    first = params["seq"][0]
    u, v = params["seq"][1]
    hidden = anp.tanh(anp.dot(x, W) + a) * b
    return anp.sum(hidden) + c * scale * anp.sum(first**2) + u * anp.sum(v * first[:2])


def nested_params(rng, dtype=np.float64):
    return {
        "W": rng.normal(size=(3, 2)).astype(dtype),
        "ab": (rng.normal(size=2).astype(dtype), rng.normal(size=2).astype(dtype)),
        "c": 1.5,
        "inner": {"scale": 0.7, "unused": rng.normal(size=(2, 2)).astype(dtype)},
        "seq": [rng.normal(size=4).astype(dtype), [0.3, rng.normal(size=2).astype(dtype)]],
    }


def nested_by_hand(params, x):
    W, (a, b), c = params["W"], params["ab"], params["c"]
    scale, first = params["inner"]["scale"], params["seq"][0]
    u, v = params["seq"][1]
    t = np.tanh(x @ W + a)
    da = (1 - t**2) * b
    d_first = 2 * c * scale * first
    d_first[:2] += u * v
    return {
        "W": x.T @ da,
        "ab": (da.sum(axis=0), t.sum(axis=0)),
        "c": float(scale * np.sum(first**2)),
        "inner": {"scale": float(c * np.sum(first**2)),
                  "unused": np.zeros_like(params["inner"]["unused"])},
        "seq": [d_first, [float(np.sum(v * first[:2])), u * first[:2]]],
    }


def test_dict_and_nested_parameters_keep_their_structure():
    rng = np.random.default_rng(8)
    params = nested_params(rng)
    x = rng.normal(size=(5, 3))
    value, (g,) = nested_loss(params, x)
    # Same containers (dict, tuple, list), same keys in the same order, floats stay floats,
    # an unused leaf gets zeros of its shape.
    tree_close(g, nested_by_hand(params, x))
    reference = autograd.grad(nested_loss_autograd)(params, x)
    tree_close(g, reference, leaf_types=False)  # autograd keeps the containers too
    assert float(value) == pytest.approx(float(nested_loss_autograd(params, x)), rel=1e-13)


def test_nested_parameters_in_float32():
    rng = np.random.default_rng(9)
    params = nested_params(rng, np.float32)
    x = rng.normal(size=(5, 3)).astype(np.float32)
    value, (g,) = nested_loss(params, x)
    assert np.result_type(value) == np.float32
    expected = nested_by_hand(params, x)
    for got, want in [(g["W"], expected["W"]), (g["ab"][0], expected["ab"][0]),
                      (g["ab"][1], expected["ab"][1]), (g["seq"][0], expected["seq"][0]),
                      (g["seq"][1][1], expected["seq"][1][1]),
                      (g["inner"]["unused"], expected["inner"]["unused"])]:
        assert got.dtype == np.float32
        assert_close(got, want, 1e-4, 1e-5, "float32 nested")
    assert type(g["c"]) is float and type(g["seq"][1][0]) is float


@grad
def two_structures(layer, extra, x):
    W, b = layer
    return np.sum(np.sin(x @ W + b) * extra["w"]) + extra["k"] * np.sum(W)


def test_default_wrt_with_several_structured_parameters():
    rng = np.random.default_rng(10)
    layer = [rng.normal(size=(3, 2)), rng.normal(size=2)]
    extra = {"w": rng.normal(size=2), "k": 0.25}
    x = rng.normal(size=(4, 3))
    value, grads = two_structures(layer, extra, x)
    assert grads._fields == ("layer", "extra", "x")
    a = x @ layer[0] + layer[1]
    da = np.cos(a) * extra["w"]
    tree_close(grads.layer, [x.T @ da + extra["k"], da.sum(axis=0)])
    tree_close(grads.extra, {"w": np.sin(a).sum(axis=0), "k": float(np.sum(layer[0]))})
    np.testing.assert_allclose(grads.x, da @ layer[0].T, rtol=1e-12)


@grad(wrt=("p",))
def indexed_tuple(p, x):
    return np.sum(np.sin(x * p[0])) + p[1][1] * np.sum(p[1][0] * x[:2])


def test_structured_parameter_indexed_with_constant_keys():
    """`p[0]`, `p[1][1]` on a tuple holding an array and a (array, float) tuple."""
    x = np.array([0.3, -1.2, 2.0])
    p = (np.array([0.5, 1.5, -0.7]), (np.array([2.0, -1.0]), 0.25))
    value, (g,) = indexed_tuple(p, x)
    expected = (x * np.cos(x * p[0]), (p[1][1] * x[:2], float(np.sum(p[1][0] * x[:2]))))
    tree_close(g, expected)
    assert value == pytest.approx(float(np.sum(np.sin(x * p[0])) + 0.25 * np.sum(p[1][0] * x[:2])))


# --- integer indexing with repeats, boolean masks ------------------------------------------------

@grad(wrt=("E", "W"))
def embedding_loss(E, W, tokens):
    v = E[tokens] @ W
    return np.sum(v**2)


def test_repeated_integer_indices_add_up():
    rng = np.random.default_rng(11)
    E, W = rng.normal(size=(6, 3)), rng.normal(size=(3, 2))
    tokens = np.array([1, 4, 1, 1, 0, 4, 5, 1])
    value, grads = embedding_loss(E, W, tokens)
    expected_E = np.zeros_like(E)
    for t in tokens:  # each occurrence contributes: a loop, not np.add.at
        expected_E[t] += 2 * (E[t] @ W) @ W.T
    np.testing.assert_allclose(grads.E, expected_E, rtol=1e-13)
    assert np.all(grads.E[[2, 3]] == 0)  # never looked up
    np.testing.assert_allclose(grads.W, 2 * E[tokens].T @ (E[tokens] @ W), rtol=1e-13)
    reference = autograd.grad(lambda E: anp.sum(anp.dot(E[tokens], W) ** 2))(E)
    np.testing.assert_allclose(grads.E, reference, rtol=1e-13)


@grad(wrt=("x",))
def gather_twice(x, idx):
    return np.sum(x[idx] * x[idx[::-1]])


def test_repeated_indices_in_a_product():
    x = np.array([0.5, -1.0, 2.0, 3.0])
    idx = np.array([0, 2, 2, 3, 0, 0])
    value, grads = gather_twice(x, idx)
    expected = np.zeros_like(x)
    rev = idx[::-1]
    for i, j in zip(idx, rev, strict=True):
        expected[i] += x[j]
        expected[j] += x[i]
    assert value == pytest.approx(float(np.sum(x[idx] * x[rev])))
    np.testing.assert_allclose(grads.x, expected, rtol=1e-14)


@grad(wrt=("pred",))
def masked_mse(pred, y, mask):
    return np.sum((pred[mask] - y[mask]) ** 2) / np.sum(mask)


@grad
def positive_part_log(x):
    return np.sum(np.log1p(x[x > 0]))


def test_boolean_mask_programs():
    rng = np.random.default_rng(12)
    pred, y = rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
    mask = rng.random(size=(4, 5)) < 0.5
    value, grads = masked_mse(pred, y, mask)
    expected = np.where(mask, 2 * (pred - y), 0.0) / mask.sum()
    assert value == pytest.approx(float(np.sum((pred - y)[mask] ** 2) / mask.sum()), rel=1e-13)
    np.testing.assert_allclose(grads.pred, expected, rtol=1e-13)

    x = rng.normal(size=20)
    value, grads = positive_part_log(x)
    np.testing.assert_allclose(grads.x, np.where(x > 0, 1 / (1 + x), 0.0), rtol=1e-13)
    reference = autograd.grad(lambda x: anp.sum(anp.log1p(x[x > 0])))(x)
    np.testing.assert_allclose(grads.x, reference, rtol=1e-13)


# --- log-sum-exp written stably ------------------------------------------------------------------

@grad
def logsumexp(x):
    m = np.max(x)
    return m + np.log(np.sum(np.exp(x - m)))


@grad
def logsumexp_rows(x):
    m = np.max(x, axis=1, keepdims=True)
    return m[:, 0] + np.log(np.sum(np.exp(x - m), axis=1))


def softmax(x, axis=None):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


@pytest.mark.parametrize("offset", [0.0, 1000.0, -1000.0, 1e5])
def test_stable_logsumexp_has_finite_gradients_for_large_inputs(offset):
    rng = np.random.default_rng(13)
    small = rng.normal(size=8)
    x = offset + small
    with np.errstate(over="raise"):
        value, grads = logsumexp(x)
    assert np.isfinite(value) and np.all(np.isfinite(grads.x))
    exact = offset + np.log(np.sum(np.exp(small)))  # shift-invariance, computed on small numbers
    assert value == pytest.approx(exact, rel=1e-12)
    np.testing.assert_allclose(grads.x, softmax(small), rtol=1e-9)  # x - offset loses digits
    assert np.sum(grads.x) == pytest.approx(1.0, rel=1e-12)


def test_stable_logsumexp_with_a_tied_maximum():
    """With the maximum tied, its share of the gradient cancels: the result is still softmax."""
    x = np.array([1000.0, 1000.0, 999.0, 998.5])
    value, grads = logsumexp(x)
    np.testing.assert_allclose(grads.x, softmax(x), rtol=1e-12)
    reference = autograd.grad(lambda x: anp.max(x) + anp.log(anp.sum(anp.exp(x - anp.max(x)))))(x)
    np.testing.assert_allclose(grads.x, reference, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_stable_logsumexp_by_rows(dtype):
    rng = np.random.default_rng(14)
    x = (rng.normal(size=(5, 7)) + np.array([[1000.0], [-1000.0], [0.0], [50.0], [3e4]]))
    x = x.astype(dtype)
    value, grads = logsumexp_rows(x)
    assert value.dtype == dtype and grads.x.dtype == dtype
    assert np.all(np.isfinite(value)) and np.all(np.isfinite(grads.x))
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(grads.x, softmax(x64, axis=1), rtol=1e-12 if dtype is np.float64
                               else 1e-4, atol=1e-7)
    np.testing.assert_allclose(grads.x.sum(axis=1), 1.0, rtol=1e-5)


def _squared_norm(z):
    return np.sum(z * z)


def _squared_norm_derive(z):
    return 2.0 * z


def _scaled_bump(x, mu):
    return np.exp(-((x - mu) ** 2))


def _scaled_bump_derive(x, mu):
    e = np.exp(-((x - mu) ** 2))
    return -2.0 * (x - mu) * e, 2.0 * (x - mu) * e


@grad
def _user_reduction_times_its_argument(z, w):
    return _squared_norm(z) * z * w + np.sum(_scaled_bump(z, w))


def test_user_function_returning_a_scalar_of_an_array_argument():
    """A `_derive` may describe a reduction (a loss of an array): its result is a scalar even
    where it meets its own argument's shape (`f(z) * z`), so its adjoint must be summed."""
    z = np.array([1.0, 2.0, 3.0])
    for w in (0.7, np.float64(0.3)):
        value, grads = _user_reduction_times_its_argument(z, w)

        def reference(z, w):
            return anp.sum(anp.sum(z * z) * z * w + anp.sum(anp.exp(-((z - w) ** 2))))

        expected = autograd.grad(reference, (0, 1))(z, w)
        np.testing.assert_allclose(grads.z, expected[0], rtol=1e-12)
        np.testing.assert_allclose(grads.w, expected[1], rtol=1e-12)
