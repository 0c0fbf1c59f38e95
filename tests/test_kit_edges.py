"""Edges of the training kit and the API: integer and float32 parameters in the optimizers,
state matched by dict key, broadcasting losses' derivatives, train/test splits of few samples,
and lambdas in every mode. Oracles: torch.optim, autograd, hand-written derivatives and
check_grad's finite differences.
"""

from __future__ import annotations

import numpy as np
import pytest

from srcgrad import grad
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
