"""srcgrad.optim, srcgrad.data and srcgrad.nn: updates by hand, data by construction, losses by
oracle (finite differences through check_grad, and autograd).
"""

from __future__ import annotations

import collections
import math

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
from support import oracle_hinge, oracle_mse, oracle_softmax_cross_entropy

import srcgrad
from srcgrad import check_grad, data, grad, nn
from srcgrad.optim import SGD, Adam, tree_leaves, tree_map

# --- optimizers: updates computed by hand ---------------------------------------------------------
GRADS = (0.5, -0.2, 0.1)  # three steps of a one-parameter problem starting at p = 1


def run(optimizer: srcgrad.optim.Optimizer, p: float = 1.0) -> list[float]:
    path = []
    for g in GRADS:
        p = optimizer.step(p, g)
        path.append(p)
    return path


def test_sgd_plain_is_p_minus_lr_g():
    assert run(SGD(lr=0.1)) == pytest.approx([0.95, 0.97, 0.96], abs=1e-15)


def test_sgd_momentum_and_weight_decay_by_hand():
    # g' = g + 0.01 p;  v = 0.9 v + g';  p -= 0.1 v
    # 1: g' = 0.51,                 v = 0.51,        p = 1 - 0.051         = 0.949
    # 2: g' = -0.2 + 0.00949 = -0.19051,  v = 0.459 - 0.19051 = 0.26849,  p = 0.922151
    # 3: g' = 0.1 + 0.00922151 = 0.10922151,  v = 0.241641 + 0.10922151 = 0.35086251,
    #    p = 0.922151 - 0.035086251 = 0.887064749
    path = run(SGD(lr=0.1, momentum=0.9, weight_decay=0.01))
    assert path == pytest.approx([0.949, 0.922151, 0.887064749], abs=1e-12)


def test_adam_bias_correction_by_hand():
    # Step 1: m = 0.05, v = 0.00025; corrected m^ = 0.5, v^ = 0.25: the step is lr * g/|g|,
    # not shrunk by the zero start of the moments.
    # Step 2: m = 0.045 - 0.02 = 0.025, v = 0.00024975 + 0.00004 = 0.00028975;
    #   m^ = 0.025 / 0.19, v^ = 0.00028975 / 0.001999; p = 0.9 - 0.1 m^ / (sqrt(v^) + 1e-8)
    # Step 3: m = 0.0225 + 0.01 = 0.0325, v = 0.00028946025 + 0.00001 = 0.00029946025;
    #   m^ = 0.0325 / 0.271, v^ = 0.00029946025 / 0.002997001
    m2, v2 = 0.025 / 0.19, 0.00028975 / 0.001999
    m3, v3 = 0.0325 / 0.271, 0.00029946025 / 0.002997001
    p1 = 1.0 - 0.1 * 0.5 / (0.5 + 1e-8)
    p2 = p1 - 0.1 * m2 / (math.sqrt(v2) + 1e-8)
    p3 = p2 - 0.1 * m3 / (math.sqrt(v3) + 1e-8)
    assert run(Adam(lr=0.1)) == pytest.approx([p1, p2, p3], abs=1e-12)
    assert p1 == pytest.approx(0.9, abs=1e-7)


def test_adam_weight_decay_is_added_to_the_gradient():
    with_decay = Adam(lr=0.1, weight_decay=0.5).step(np.array([2.0]), np.array([0.0]))
    # g' = 0 + 0.5 * 2 = 1: the first Adam step moves by lr against its sign
    assert with_decay == pytest.approx([1.9], abs=1e-7)


Pair = collections.namedtuple("Pair", "left right")


def structured():
    params = {"layer": (np.array([1.0, 2.0]), [3.0, np.array([[4.0]], dtype=np.float32)]),
              "pair": Pair(np.array([5.0]), 6.0), "scale": 7.0}
    grads = {"layer": (np.array([1.0, -1.0]), [2.0, np.array([[0.5]], dtype=np.float32)]),
             "pair": Pair(np.array([10.0]), -4.0), "scale": 1.0}
    return params, grads


@pytest.mark.parametrize("make", [lambda: SGD(lr=0.5), lambda: SGD(lr=0.5, momentum=0.9)])
def test_sgd_updates_nested_structures_and_keeps_their_types(make):
    params, grads = structured()
    new = make().step(params, grads)  # first step: momentum changes nothing yet
    assert set(new) == {"layer", "pair", "scale"}
    assert isinstance(new["layer"], tuple) and isinstance(new["layer"][1], list)
    assert isinstance(new["pair"], Pair)
    np.testing.assert_allclose(new["layer"][0], [0.5, 2.5])
    assert new["layer"][1][0] == 2.0 and type(new["layer"][1][0]) is float
    assert new["layer"][1][1].dtype == np.float32
    np.testing.assert_allclose(new["layer"][1][1], [[3.75]])
    np.testing.assert_allclose(new["pair"].left, [0.0])
    assert new["pair"].right == 8.0 and new["scale"] == 6.5
    assert params["scale"] == 7.0 and params["layer"][0][0] == 1.0  # inputs are not mutated


def test_adam_on_nested_structures_moves_every_leaf_by_lr_first():
    params, grads = structured()
    new = Adam(lr=0.01).step(params, grads)
    moved = [np.ravel(a - b) for a, b in zip(tree_leaves(params), tree_leaves(new), strict=True)]
    signs = [np.sign(np.ravel(g)) for g in tree_leaves(grads)]
    for step, sign in zip(moved, signs, strict=True):
        np.testing.assert_allclose(step, 0.01 * sign, rtol=1e-5)


def test_optimizer_state_is_per_leaf_and_structure_is_checked():
    optimizer = SGD(lr=1.0, momentum=0.5)
    p = optimizer.step((1.0, 1.0), (1.0, 0.0))
    p = optimizer.step(p, (0.0, 1.0))
    # leaf 0: v = 1 then 0.5 -> 1 - 1 - 0.5; leaf 1: v = 0 then 1 -> 1 - 0 - 1
    assert p == pytest.approx((-0.5, 0.0))
    with pytest.raises(ValueError, match="structure"):
        optimizer.step((1.0, 2.0, 3.0), (0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="structure"):
        SGD(lr=0.1).step({"a": 1.0}, {"b": 1.0})
    with pytest.raises(ValueError, match="learning rate"):
        SGD(lr=0.0)


def test_tree_map_pairs_leaves_in_order():
    assert tree_map(lambda a, b: a - b, {"x": (3, [4])}, {"x": (1, [1])}) == {"x": (2, [3])}
    assert tree_leaves({"a": (1, 2), "b": [3]}) == [1, 2, 3]


def test_optimizers_minimise_a_srcgrad_loss_over_a_dict():
    target = np.array([[1.0, -2.0], [0.5, 3.0]])
    params = {"W": np.zeros((2, 2)), "b": 0.0}
    for optimizer in (SGD(lr=0.1, momentum=0.9), Adam(lr=0.1)):
        p = params
        for _ in range(300):
            _, (g,) = quadratic(p, target)
            p = optimizer.step(p, g)
        np.testing.assert_allclose(p["W"], target, atol=1e-3)
        assert p["b"] == pytest.approx(3.0, abs=1e-3)


@grad(wrt=("params",))
def quadratic(params, target):
    return np.sum((params["W"] - target) ** 2) + (params["b"] - 3.0) ** 2


# --- data: by construction -----------------------------------------------------------------------
GENERATORS = [data.make_moons, data.make_circles, data.make_xor, data.make_linear]


@pytest.mark.parametrize("make", GENERATORS)
@pytest.mark.parametrize("n", [2, 101, 400])
def test_generators_shapes_and_balance(make, n):
    X, y = make(n=n, seed=3)
    assert X.shape == (n, 2) and X.dtype == np.float64
    assert y.shape == (n,) and y.dtype == np.int64
    assert np.sum(y == 0) == n // 2 and np.sum(y == 1) == n - n // 2


@pytest.mark.parametrize("make", GENERATORS)
def test_generators_are_seeded(make):
    X1, y1 = make(n=50, seed=7)
    X2, y2 = make(n=50, seed=7)
    X3, _ = make(n=50, seed=8)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.allclose(X1, X3)


@pytest.mark.parametrize("make", GENERATORS)
def test_noise_moves_points_by_its_scale(make):
    X0, y0 = make(n=300, noise=0.0, seed=1)
    X1, y1 = make(n=300, noise=0.2, seed=1)
    np.testing.assert_array_equal(y0, y1)
    assert np.std(X1 - X0) == pytest.approx(0.2, rel=0.15)


def test_shapes_without_noise_are_the_advertised_ones():
    X, y = data.make_circles(n=200, noise=0.0, factor=0.4, seed=0)
    radius = np.hypot(X[:, 0], X[:, 1])
    np.testing.assert_allclose(radius[y == 0], 1.0)
    np.testing.assert_allclose(radius[y == 1], 0.4)
    X, y = data.make_xor(n=200, noise=0.0, seed=0)
    assert np.all((X[:, 0] * X[:, 1] < 0) == (y == 1)) and np.min(np.abs(X)) >= 0.2
    X, y = data.make_linear(n=200, noise=0.0, seed=0)
    distance = (X[:, 0] + X[:, 1]) / math.sqrt(2)
    assert np.all((distance > 0) == (y == 1)) and np.min(np.abs(distance)) >= 0.15
    X, y = data.make_moons(n=200, noise=0.0, seed=0)
    upper = X[y == 0]  # the unit half circle above the x axis
    np.testing.assert_allclose(np.hypot(*upper.T), 1.0)
    assert np.all(upper[:, 1] >= 0)
    lower = X[y == 1] - [1.0, 0.5]  # the same half circle, flipped and shifted
    np.testing.assert_allclose(np.hypot(*lower.T), 1.0)
    assert np.all(lower[:, 1] <= 0)


def test_generator_arguments_are_checked():
    with pytest.raises(ValueError, match="at least 2"):
        data.make_moons(n=1)
    with pytest.raises(ValueError, match="factor"):
        data.make_circles(factor=1.5)


def test_dataloader_sees_every_sample_once_per_epoch():
    X = np.arange(20.0).reshape(10, 2)
    y = np.arange(10)
    loader = data.DataLoader(X, y, batch_size=4, shuffle=True, seed=0)
    assert len(loader) == 3
    orders = []
    for _ in range(2):
        batches = list(loader)
        assert [len(b) for _, b in batches] == [4, 4, 2]
        seen = np.concatenate([b for _, b in batches])
        assert sorted(seen) == list(range(10))
        for X_batch, y_batch in batches:  # rows stay paired with their labels
            np.testing.assert_array_equal(X_batch[:, 0], 2 * y_batch)
        orders.append(seen)
    assert not np.array_equal(orders[0], orders[1])  # reshuffled each epoch
    again = data.DataLoader(X, y, batch_size=4, shuffle=True, seed=0)
    np.testing.assert_array_equal(np.concatenate([b for _, b in again]), orders[0])


def test_dataloader_without_shuffle_keeps_order_and_checks_arguments():
    X, y = np.zeros((5, 2)), np.arange(5)
    assert [list(b) for _, b in data.DataLoader(X, y, 2, shuffle=False)] == [[0, 1], [2, 3], [4]]
    with pytest.raises(ValueError, match="rows"):
        data.DataLoader(X, y[:4])
    with pytest.raises(ValueError, match="batch_size"):
        data.DataLoader(X, y, batch_size=0)


def test_train_test_split_partitions_the_rows():
    X = np.arange(40.0).reshape(20, 2)
    y = np.arange(20)
    X_train, X_test, y_train, y_test = data.train_test_split(X, y, 0.25, seed=1)
    assert len(y_test) == 5 and len(y_train) == 15
    assert sorted(np.concatenate([y_train, y_test])) == list(range(20))
    np.testing.assert_array_equal(X_test[:, 0], 2 * y_test)


# --- nn: initialisers -----------------------------------------------------------------------------
def test_he_and_xavier_have_their_variances():
    rng = np.random.default_rng(0)
    he = nn.he_init(rng, 50, 400)
    assert he.shape == (50, 400) and np.var(he) == pytest.approx(2 / 50, rel=0.05)
    xavier = nn.xavier_init(rng, 60, 140)
    limit = math.sqrt(6 / 200)
    assert np.max(np.abs(xavier)) <= limit
    assert np.var(xavier) == pytest.approx(2 / 200, rel=0.05)


def test_mlp_init_shapes_zero_biases_and_seed():
    params = nn.mlp_init([2, 16, 8, 3], seed=4, init="xavier")
    assert [p.shape for p in params] == [(2, 16), (16,), (16, 8), (8,), (8, 3), (3,)]
    assert all(np.all(b == 0) for b in params[1::2])
    again = nn.mlp_init([2, 16, 8, 3], seed=4, init="xavier")
    assert all(np.array_equal(a, b) for a, b in zip(params, again, strict=True))
    with pytest.raises(ValueError, match="init"):
        nn.mlp_init([2, 3], init="lecun")
    with pytest.raises(ValueError, match="at least"):
        nn.mlp_init([2])


# --- nn: losses against autograd and finite differences -------------------------------------------
def loss_cases():
    rng = np.random.default_rng(11)
    scores = rng.normal(size=9)
    scores[np.abs(1 - np.abs(scores)) < 0.05] += 0.2  # keep clear of the hinge's kink
    return [
        (nn.mse, nn.mse_derive, oracle_mse, "pred",
         (rng.normal(size=(6, 3)), rng.normal(size=(6, 3)))),
        (nn.hinge, nn.hinge_derive, oracle_hinge, "scores",
         (scores, rng.choice([-1.0, 1.0], 9))),
        (nn.softmax_cross_entropy, nn.softmax_cross_entropy_derive,
         oracle_softmax_cross_entropy, "logits",
         (3 * rng.normal(size=(7, 4)), rng.integers(0, 4, 7))),
    ]


@pytest.mark.parametrize("loss, derive, oracle, wrt, args", loss_cases(),
                         ids=["mse", "hinge", "softmax_cross_entropy"])
def test_losses_value_derivative_and_srcgrad_agree_with_autograd(loss, derive, oracle, wrt,
                                                                  args):
    expected_value = oracle(*args)
    expected_grad = autograd.grad(oracle)(*args)
    assert loss(*args) == pytest.approx(expected_value, rel=1e-12)
    np.testing.assert_allclose(derive(*args)[0], expected_grad, rtol=1e-10, atol=1e-14)
    transformed = grad(loss, wrt=wrt)  # the loss body itself is inside srcgrad's subset
    value, g = transformed(*args)  # one name: the gradient itself
    assert value == pytest.approx(expected_value, rel=1e-12)
    np.testing.assert_allclose(g, expected_grad, rtol=1e-10, atol=1e-14)
    check_grad(transformed, *args)  # raises on a mismatch with finite differences


def test_mse_derive_gives_the_target_its_partial():
    pred, target = np.array([1.0, 2.0]), np.array([0.0, 4.0])
    d_pred, d_target = nn.mse_derive(pred, target)
    np.testing.assert_allclose(d_target, autograd.grad(oracle_mse, 1)(pred, target))


def test_softmax_cross_entropy_is_stable_for_large_logits():
    logits = np.array([[1000.0, 0.0], [0.0, -1000.0]])
    value = nn.softmax_cross_entropy(logits, np.array([0, 1]))
    assert value == pytest.approx(500.0)  # log(1 + e^-1000) = 0 and 1000 for the wrong class
    assert np.all(np.isfinite(nn.softmax_cross_entropy_derive(logits, np.array([0, 1]))[0]))


@grad(wrt=("W",))
def linear_mse(W, X, y):
    return nn.mse(X @ W, y) + 0.5 * np.sum(W * W)


@grad(wrt=("W",))
def linear_hinge(W, X, y):
    return nn.hinge(X @ W, y)


@grad(wrt=("W",))
def linear_softmax(W, X, labels):
    return nn.softmax_cross_entropy(X @ W, labels)


def test_losses_called_inside_a_decorated_function_use_their_derivatives():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(8, 3))
    cases = [
        (linear_mse, rng.normal(size=(3, 2)), rng.normal(size=(8, 2)),
         lambda w, y: oracle_mse(anp.dot(X, w), y) + 0.5 * anp.sum(w * w)),
        (linear_hinge, rng.normal(size=3), rng.choice([-1.0, 1.0], 8),
         lambda w, y: oracle_hinge(anp.dot(X, w), y)),
        (linear_softmax, rng.normal(size=(3, 4)), rng.integers(0, 4, 8),
         lambda w, y: oracle_softmax_cross_entropy(anp.dot(X, w), y)),
    ]
    for loss, W, y, oracle in cases:
        value, (g,) = loss(W, X, y)
        assert value == pytest.approx(oracle(W, y), rel=1e-12)
        np.testing.assert_allclose(g, autograd.grad(oracle)(W, y), rtol=1e-10, atol=1e-14)
        assert "_derive(" in loss.raw_source  # the call went through the derivative


def test_accuracy_for_argmax_and_sign_predictions():
    assert nn.accuracy(np.array([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]]), np.array([0, 1, 1])) \
        == pytest.approx(2 / 3)
    assert nn.accuracy(np.array([0.5, -0.2, 0.1]), np.array([1, 0, 0])) == pytest.approx(2 / 3)
    assert nn.accuracy(np.array([0.5, -0.2, 0.1]), np.array([1, -1, -1])) == pytest.approx(2 / 3)


def test_importing_srcgrad_stays_cheap():
    import subprocess
    import sys

    code = ("import sys, srcgrad; print(srcgrad.optim.SGD.__name__, "
            "'matplotlib' in sys.modules, 'tqdm' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.split() == ["SGD", "False", "False"]
