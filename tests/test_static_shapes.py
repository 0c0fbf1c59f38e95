"""The path specialised to the first call's shapes (`srcgrad.static`): calls with other shapes,
broadcasting and size-1 axes give the general path's gradients, bit for bit."""

from __future__ import annotations

import types

import numpy as np
import pytest

import srcgrad
from srcgrad import runtime


def mlp(params, X, y):
    W1, b1, W2, b2 = params
    h = np.tanh(X @ W1 + b1)
    out = h @ W2 + b2
    return np.mean(np.maximum(0, 1 - y * out[:, 0]))


def bias(a, b):
    return np.sum(np.sin(a + b) * b)


def averaged(a, b):
    return np.mean(a * b) + np.sum(a)


def _mlp_args(batch: int, hidden: int, seed: int = 0) -> tuple:
    rng = np.random.default_rng(seed)
    params = (rng.standard_normal((2, hidden)), rng.standard_normal(hidden),
              rng.standard_normal((hidden, 1)), rng.standard_normal(1))
    return params, rng.standard_normal((batch, 2)), np.sign(rng.standard_normal(batch))


def _twin(fn):
    """A new function object with ``fn``'s code: transformed afresh (the cache is per function
    object), so its first call can set other shapes than ``fn``'s."""
    return types.FunctionType(fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__)


def _same(got, expected) -> None:
    flat_got, flat_expected = _leaves(got), _leaves(expected)
    assert len(flat_got) == len(flat_expected)
    for g, e in zip(flat_got, flat_expected, strict=True):
        assert type(g) is type(e)
        assert np.shape(g) == np.shape(e) and np.asarray(g).dtype == np.asarray(e).dtype
        np.testing.assert_array_equal(g, e)


def _leaves(tree):
    if isinstance(tree, (tuple, list)):
        return [leaf for item in tree for leaf in _leaves(item)]
    return [tree]


def test_mlp_specialised_and_general_paths_agree_bit_for_bit() -> None:
    f = srcgrad.grad(mlp, wrt="params")
    first = _mlp_args(100, 16)
    result = f(*first)
    assert "sg.shaped_as(" in f.source and "matmul_backward" in f.source  # both paths
    general = srcgrad.grad(_twin(mlp), wrt="params")
    general(*_mlp_args(3, 4))  # its first call: other shapes
    _same(result, general(*first))
    for args in (_mlp_args(7, 16, 1), _mlp_args(100, 5, 2), _mlp_args(1, 16, 3)):
        _same(f(*args), general(*args))  # other shapes: the general path


@pytest.mark.parametrize(("first", "later"), [
    (((3, 4), (4,)), ((3, 4), (1, 4))),  # the bias gets a size-1 axis
    (((3, 4), (4,)), ((3, 4), (3, 1))),
    (((3, 1), (1, 4)), ((3, 4), (4,))),  # broadcast both ways at first
    (((5,), ()), ((5,), (5,))),
    (((1, 1), (1,)), ((2, 3), (3,))),  # size-1 everywhere at first
])
@pytest.mark.parametrize("fn", [bias, averaged])
def test_broadcasting_and_size_one_axes(fn, first, later) -> None:
    rng = np.random.default_rng(4)
    f = srcgrad.grad(fn)
    general = srcgrad.grad(_twin(fn))
    general(np.float32(1.0), np.ones(2, dtype=np.float32))  # first call: not float64
    for shapes in (first, later, first):
        args = tuple(rng.standard_normal(s) for s in shapes)
        _same(f(*args), general(*args))
    assert "sg.shaped_as(" in f.source


def test_other_dtypes_and_numbers_take_the_general_path() -> None:
    f = srcgrad.grad(bias)
    a, b = np.ones((3, 4)), np.full(4, 0.5)
    f(a, b)
    value, grads = f(a.astype(np.float32), b.astype(np.float32))
    assert grads.a.dtype == np.float32 and grads.b.dtype == np.float32
    value, grads = f([[1.0] * 4] * 3, b)  # a list
    np.testing.assert_allclose(grads.b, f(a, b)[1].b)


def test_gradients_never_alias_the_inputs() -> None:
    def linear(a, b):
        return np.sum(a * b)

    f = srcgrad.grad(linear)
    a, b = np.ones(3), np.arange(3.0)
    _, grads = f(a, b)
    assert grads.a is not b and not np.shares_memory(grads.a, b)
    assert not np.shares_memory(grads.b, a)


def test_shaped_as() -> None:
    a, b = np.zeros((3, 2)), np.zeros(2)
    assert runtime.shaped_as(((3, 2), ((2,), (3, 2))), a, (b, a))
    # A dict is matched key by key, in any order, against a dict of shapes.
    assert runtime.shaped_as(((3, 2), {"u": (2,), "v": (3, 2)}), a, {"u": b, "v": a})
    assert runtime.shaped_as(((3, 2), {"u": (2,), "v": (3, 2)}), a, {"v": a, "u": b})
    assert not runtime.shaped_as(((3, 2), {"u": (2,), "v": (3, 2)}), a, {"u": a, "v": b})
    assert not runtime.shaped_as(((3, 2), {"u": (2,), "v": (3, 2)}), a, {"u": b, "w": a})
    assert not runtime.shaped_as(((3, 2), ((2,), (3, 2))), a, {"u": b, "v": a})
    assert not runtime.shaped_as(((3, 2), ((2,), (3, 2))), a, (a, a))
    assert not runtime.shaped_as(((3, 2), ((2,), (3, 2))), a, (b,))
    assert not runtime.shaped_as(((3, 2),), a.astype(">f8"))
    assert not runtime.shaped_as(((3, 2),), a.astype(np.float32))
    assert not runtime.shaped_as(((),), 1.0)
