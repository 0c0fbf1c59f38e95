"""Edges of the training kit and the API: integer and float32 parameters in the optimizers,
state matched by dict key, broadcasting losses' derivatives, train/test splits of few samples,
and lambdas in every mode. Oracles: torch.optim, autograd, hand-written derivatives and
check_grad's finite differences.
"""

from __future__ import annotations

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
from support import oracle_hinge, oracle_mse, oracle_softmax_cross_entropy

import srcgrad
from srcgrad import check_grad, data, forward, grad, hessian, hvp, jacobian, jvp, nn
from srcgrad.optim import SGD, Adam

try:  # the optimizers' oracle
    import torch
except ImportError:  # pragma: no cover
    torch = None


# --- optimizers: integer and float32 parameters ---------------------------------------------------
def torch_steps(make, start, grads):
    """The parameter after ``torch.optim`` steps with the given gradients (float64)."""
    if torch is None:  # pragma: no cover
        pytest.skip("torch is the oracle for the optimizers")
    p = torch.tensor(np.asarray(start, dtype=np.float64), requires_grad=True)
    optimizer = make([p])
    for g in grads:
        p.grad = torch.tensor(np.asarray(g, dtype=np.float64))
        optimizer.step()
    return p.detach().numpy()


OPTIMIZERS = [
    (lambda: SGD(lr=0.1), lambda ps: torch.optim.SGD(ps, lr=0.1)),
    (lambda: SGD(lr=0.1, momentum=0.9, weight_decay=0.01),
     lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01)),
    (lambda: Adam(lr=0.1), lambda ps: torch.optim.Adam(ps, lr=0.1)),
]


@pytest.mark.parametrize("ours, theirs", OPTIMIZERS, ids=["sgd", "momentum", "adam"])
def test_an_integer_array_parameter_is_promoted_not_truncated(ours, theirs):
    start = np.array([1, 2, 3])
    grads = [np.array([1.5, 3.5, 5.5]), np.array([-0.5, 0.25, 2.0]), np.array([0.1, 0.2, 0.3])]
    optimizer, p = ours(), start
    for g in grads:
        p = optimizer.step(p, g)
        assert p.dtype == np.float64
    np.testing.assert_allclose(p, torch_steps(theirs, start, grads), rtol=1e-12)
    np.testing.assert_array_equal(start, [1, 2, 3])  # new values; the caller's array untouched


def test_parameter_types_follow_numpy():
    g = np.float32(0.5)
    p = SGD(lr=0.1).step(np.float32(1.0), g)
    assert type(p) is np.float32 and p == pytest.approx(0.95)
    p = SGD(lr=0.1).step(np.array([1.0, 2.0], dtype=np.float32), np.array([1.0, 1.0]))
    assert p.dtype == np.float32
    np.testing.assert_allclose(p, [0.9, 1.9], rtol=1e-6)
    p = SGD(lr=0.1).step(np.int64(2), 1.0)
    assert type(p) is np.float64 and p == pytest.approx(1.9)
    p = SGD(lr=0.1).step(2, 1.0)  # a Python int: a Python float
    assert type(p) is float and p == pytest.approx(1.9)
    p = SGD(lr=0.1).step((1, np.array([1, 1])), (1.0, np.array([1.0, 2.0])))
    assert p[0] == pytest.approx(0.9)
    np.testing.assert_allclose(p[1], [0.9, 0.8])


def test_an_integer_start_trains_with_srcgrad_gradients():
    @grad(wrt="w")
    def loss(w):
        return np.sum((w - 0.25) ** 2)

    w = np.array([1, 2, 3])
    optimizer = Adam(lr=0.1)
    for _ in range(300):
        w = optimizer.step(w, loss(w)[1])
    np.testing.assert_allclose(w, 0.25, atol=1e-3)


# --- optimizers: state follows the key, not the position -----------------------------------------
@pytest.mark.parametrize("ours, theirs", OPTIMIZERS, ids=["sgd", "momentum", "adam"])
def test_state_is_matched_by_dict_key(ours, theirs):
    rng = np.random.default_rng(0)
    scale = {"a": 100.0, "b": 0.001}  # moments that differ by orders of magnitude
    grads = [{k: s * rng.normal(size=2) for k, s in scale.items()} for _ in range(4)]
    optimizer = ours()
    p = {"a": np.zeros(2), "b": np.ones(2)}
    for i, g in enumerate(grads):
        if i % 2:  # the same keys in the other order, parameters and gradients alike
            p, g = {"b": p["b"], "a": p["a"]}, {"b": g["b"], "a": g["a"]}
        p = optimizer.step(p, g)
    for key, start in (("a", np.zeros(2)), ("b", np.ones(2))):
        expected = torch_steps(theirs, start, [g[key] for g in grads])
        np.testing.assert_allclose(p[key], expected, rtol=1e-10, err_msg=key)


def test_gradients_in_another_key_order_pair_by_key():
    optimizer = SGD(lr=1.0, momentum=0.5)
    p = optimizer.step({"a": 1.0, "b": 1.0}, {"b": 0.0, "a": 1.0})
    p = optimizer.step({"b": p["b"], "a": p["a"]}, {"a": 0.0, "b": 1.0})
    # a: v = 1 then 0.5 -> 1 - 1 - 0.5; b: v = 0 then 1 -> 1 - 0 - 1 (hand-written)
    assert p == pytest.approx({"a": -0.5, "b": 0.0})


def test_a_changed_structure_is_rejected_with_the_paths():
    optimizer = Adam(lr=0.1)
    optimizer.step({"a": 1.0, "b": (1.0, 2.0)}, {"a": 1.0, "b": (1.0, 1.0)})
    with pytest.raises(ValueError, match=r"changed structure.*\['c'\]"):
        optimizer.step({"a": 1.0, "c": (1.0, 2.0)}, {"a": 1.0, "c": (1.0, 1.0)})
    with pytest.raises(ValueError, match="changed structure"):
        optimizer.step({"a": 1.0, "b": (1.0,)}, {"a": 1.0, "b": (1.0,)})
    with pytest.raises(ValueError, match="changed structure"):
        optimizer.step({"a": 1.0, "b": [(1.0, 2.0)]}, {"a": 1.0, "b": [(1.0, 1.0)]})
    assert optimizer.t == 1  # a rejected step takes no step


# --- nn: derivatives of broadcasting losses, through their `_derive` -----------------------------
def model_loss(w, X, y):
    return nn.mse(X @ w, y)  # (n, 1) against (n,): broadcasts to (n, n), as NumPy computes it


def mse_to(p, t):
    return nn.mse(p, t)


def hinge_of(s, y):
    return nn.hinge(s, y)


def cross_entropy_of(logits, labels):
    return nn.softmax_cross_entropy(logits, labels)


def assert_gradients(transformed, oracle, args, names):
    value, grads = transformed(*args)
    assert "_derive(" in transformed.raw_source  # the call went through the derivative
    assert value == pytest.approx(oracle(*args), rel=1e-12)
    for i, name in enumerate(names):
        expected = autograd.grad(oracle, i)(*args)
        got = getattr(grads, name)
        assert np.shape(got) == np.shape(args[i]), name
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-14, err_msg=name)
    check_grad(transformed, *args)


def test_mse_derive_reduces_broadcast_axes():
    rng = np.random.default_rng(1)
    X, w, y = rng.normal(size=(5, 3)), rng.normal(size=(3, 1)), rng.normal(size=5)
    transformed = grad(model_loss, wrt=("w", "y"))
    value, grads = transformed(w, X, y)
    assert "_derive(" in transformed.raw_source

    def oracle(w, y):
        return oracle_mse(anp.dot(X, w), y)

    assert value == pytest.approx(oracle(w, y), rel=1e-12)
    assert grads.w.shape == w.shape and grads.y.shape == y.shape
    np.testing.assert_allclose(grads.w, autograd.grad(oracle, 0)(w, y), rtol=1e-10)
    np.testing.assert_allclose(grads.y, autograd.grad(oracle, 1)(w, y), rtol=1e-10)
    check_grad(transformed, w, X, y)
    assert_gradients(grad(mse_to), oracle_mse, (X @ w, y), ("p", "t"))


def test_mse_with_a_float_target_or_prediction():
    rng = np.random.default_rng(2)
    p = rng.normal(size=(4, 3))
    assert_gradients(grad(mse_to), oracle_mse, (p, 0.5), ("p", "t"))
    assert_gradients(grad(mse_to), oracle_mse, (0.5, p), ("p", "t"))
    assert_gradients(grad(mse_to), oracle_mse, (p, rng.normal(size=3)), ("p", "t"))
    value, grads = grad(mse_to)(0.3, 0.5)
    assert type(grads.t) is float and grads.t == pytest.approx(0.4)


def test_hinge_derive_reduces_broadcast_axes_and_gives_labels_their_partial():
    rng = np.random.default_rng(3)
    scores = rng.normal(size=(6, 1))
    scores[np.abs(1 - np.abs(scores)) < 0.05] += 0.2  # keep clear of the kink
    y = rng.choice([-1.0, 1.0], 6)
    assert_gradients(grad(hinge_of), oracle_hinge, (scores, y), ("s", "y"))
    assert_gradients(grad(hinge_of), oracle_hinge, (scores.ravel(), y), ("s", "y"))
    assert_gradients(grad(hinge_of), oracle_hinge, (scores.ravel(), -1.0), ("s", "y"))


def test_softmax_cross_entropy_derive_with_broadcast_labels():
    rng = np.random.default_rng(4)
    logits = 2 * rng.normal(size=(5, 3))
    for labels in (rng.integers(0, 3, 5), rng.integers(0, 3, (5, 1)), np.array([1, 1, 1, 1, 1])):
        value, g = grad(cross_entropy_of, wrt="logits")(logits, labels)
        assert "_derive(" in grad(cross_entropy_of, wrt="logits").raw_source
        assert value == pytest.approx(oracle_softmax_cross_entropy(logits, labels), rel=1e-12)
        np.testing.assert_allclose(g, autograd.grad(oracle_softmax_cross_entropy)(logits, labels),
                                   rtol=1e-10, atol=1e-14)
        d_logits, d_labels = nn.softmax_cross_entropy_derive(logits, labels)
        assert d_logits.shape == logits.shape and d_labels == 0.0


# --- data: both parts of a split are non-empty ---------------------------------------------------
@pytest.mark.parametrize("n, fraction, expected_test", [
    (4, 0.9, 3), (4, 0.1, 1), (2, 0.75, 1), (2, 0.25, 1), (3, 0.5, 2), (20, 0.25, 5)])
def test_train_test_split_never_leaves_a_part_empty(n, fraction, expected_test):
    X = np.arange(2.0 * n).reshape(n, 2)
    y = np.arange(n)
    X_train, X_test, y_train, y_test = data.train_test_split(X, y, fraction, seed=3)
    assert len(y_test) == expected_test and len(y_train) == n - expected_test
    assert len(X_train) == len(y_train) and len(X_test) == len(y_test)
    assert sorted(np.concatenate([y_train, y_test])) == list(range(n))


def test_train_test_split_rejects_what_cannot_be_split():
    with pytest.raises(ValueError, match="at least 2 samples"):
        data.train_test_split(np.zeros((1, 2)), np.zeros(1), 0.5)
    with pytest.raises(ValueError, match="rows"):
        data.train_test_split(np.zeros((3, 2)), np.zeros(4), 0.5)
    with pytest.raises(ValueError, match="test_fraction"):
        data.train_test_split(np.zeros((3, 2)), np.zeros(3), 1.0)


# --- lambdas in every mode ------------------------------------------------------------------------
square_sum = lambda x: np.sum(x * x)  # noqa: E731 - the lambdas are what is tested
mixed = lambda x, y: x * y + np.sin(x) * y**2  # noqa: E731
elementwise = lambda x: x * x + np.sin(x)  # noqa: E731
pair = lambda a: a * 2.0, lambda a: a * 3.0  # two on one line: which one cannot be told


def oracle_mixed(x, y):
    return x * y + anp.sin(x) * y**2


def test_grad_of_a_lambda():
    x = np.array([1.0, -2.0, 0.5])
    value, grads = grad(square_sum)(x)
    assert value == pytest.approx(5.25)
    np.testing.assert_allclose(grads.x, 2 * x)
    value, d_y = grad(mixed, wrt="y")(0.7, 1.3)
    assert d_y == pytest.approx(autograd.grad(oracle_mixed, 1)(0.7, 1.3))
    transformed = grad(mixed)
    assert transformed.__name__ == "<lambda>"
    assert "def lambda_fn(" in transformed.source
    assert check_grad(transformed, 0.7, np.array([1.3, -0.4])).passed


def test_forward_jvp_and_hvp_of_a_lambda():
    x, y = 0.7, 1.3
    value, slope = forward(mixed, wrt="x")(x, y)
    assert value == pytest.approx(oracle_mixed(x, y))
    assert slope == pytest.approx(autograd.grad(oracle_mixed, 0)(x, y))
    value, tangents = forward(mixed)(x, y)
    assert tangents.y == pytest.approx(autograd.grad(oracle_mixed, 1)(x, y))
    value, along = jvp(mixed)((x, y), (0.5, -2.0))
    expected = 0.5 * autograd.grad(oracle_mixed, 0)(x, y) - 2.0 * autograd.grad(
        oracle_mixed, 1)(x, y)
    assert along == pytest.approx(expected)
    v = np.array([1.0, 2.0, -1.0])
    value, grads, hv = hvp(square_sum)((np.ones(3),), (v,))
    np.testing.assert_allclose(grads.x, 2.0)
    np.testing.assert_allclose(hv.x, 2 * v)


def test_hessian_and_jacobian_of_a_lambda():
    x, y = 0.7, 1.3
    value, grads, H = hessian(mixed)(x, y)
    expected = autograd.hessian(lambda z: oracle_mixed(z[0], z[1]))(np.array([x, y]))
    np.testing.assert_allclose(np.array(H, dtype=float), expected, rtol=1e-12)
    assert check_grad(hessian(mixed), x, y).passed
    points = np.array([0.3, -1.2, 2.0])
    value, J = jacobian(elementwise)(points)
    np.testing.assert_allclose(J.x, np.diag(2 * points + np.cos(points)), rtol=1e-12)


def test_a_lambda_that_cannot_be_told_apart_is_a_transform_error():
    with pytest.raises(srcgrad.TransformError, match="which lambda") as info:
        grad(pair[0])
    assert "def" in str(info.value)
