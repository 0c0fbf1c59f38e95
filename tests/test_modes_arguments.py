"""The arguments the modes beyond `grad` take: directions, structured, keyword-only and
array-API parameters (srcgrad.modes).

Why: `jvp` and `hvp` take a direction per parameter, and `hessian` and `jacobian` build theirs
(basis vectors, seeds) from the arguments. Each of these once went wrong on its own: a direction
of another shape was broadcast into a wrong sum; tuple, list and dict parameters crashed
`hessian`/`jacobian` or were stacked into one block; keyword-only parameters were passed
positionally; array-API arrays got NumPy basis vectors. Every number here is checked against
something srcgrad does not compute: autograd (an independent AD), hand-derived formulas, or
central differences.
"""

from __future__ import annotations

import re
from typing import Any

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
from support import leaves

import srcgrad
from srcgrad import hessian, hvp, jacobian, jvp

AD_RTOL = 1e-10
RNG = np.random.default_rng(11)


def assert_close(got: Any, want: Any, rtol: float = AD_RTOL, what: str = "") -> None:
    assert np.shape(got) == np.shape(want), (what, np.shape(got), np.shape(want))
    np.testing.assert_allclose(np.asarray(got, dtype=float), want, rtol=rtol, atol=1e-12,
                               err_msg=what)




# --- functions (srcgrad reads their source) -------------------------------------------------------


def sines(x):
    return np.sum(np.sin(x))


def sines_with(x, w):
    return np.sum(np.sin(x) * w)


def mlp(params, X):
    W, b = params
    return np.sum(np.tanh(X @ W + b) ** 2)


def mlp_outputs(params, X):
    W, b = params
    return np.tanh(X @ W + b) ** 2


def dict_loss(p, X):
    return np.sum(np.tanh(X @ p["W"]) ** 2 * p["c"])


def dict_outputs(p, X):
    return np.tanh(X @ p["W"]) * p["c"]


def pair(ab):
    a, b = ab
    return np.sum(a * a * b + np.sin(a - b))


def cubes(x, *, s=2.0):
    return np.sum(x**3) * s


def scaled_cubes(x, *, s=2.0):
    return x**3 * s


def red(A, s):
    return np.sum(A * A * s)


def scaled(s, A):
    return np.sin(A) * s


def a_mlp(flat, X):  # autograd's reference of mlp, on one flat vector W (3x2) then b (2)
    W = flat[:6].reshape(3, 2)
    return anp.sum(anp.tanh(anp.dot(X, W) + flat[6:]) ** 2)


W = RNG.normal(size=(3, 2))
B = RNG.normal(size=2)
X = RNG.normal(size=(4, 3))
C = RNG.normal(size=2)


# --- 1. directions must have their parameter's shape and structure -------------------------------

DIRECTION_MODES = {"jvp": jvp, "hvp": hvp}


@pytest.mark.parametrize("mode", list(DIRECTION_MODES))
@pytest.mark.parametrize("given", [(4, 3), (1,), (), (3, 1)])
def test_a_direction_of_another_shape_is_refused(mode: str, given: tuple) -> None:
    """jvp summed a (4, 3) direction for a (3,) parameter into a 4x too big derivative, and
    took (1,) by broadcasting; docs/modes.md: a direction has its parameter's shape."""
    x = np.array([0.1, 0.2, 0.3])
    made = DIRECTION_MODES[mode](sines)
    direction = np.ones(given) if given else 1.0
    with pytest.raises(ValueError, match=r"parameter x .*\(3,\).*" + re.escape(str(given))):
        made((x,), (direction,))


def test_a_direction_of_the_right_shape_still_works() -> None:
    """Hand values: d/dt sum(sin(x + t v)) = sum(cos(x) v); Hv = -sin(x) v."""
    x = np.array([0.1, 0.2, 0.3])
    v = np.array([1.0, -2.0, 0.5])
    assert_close(jvp(sines)((x,), (v,))[1], np.sum(np.cos(x) * v))
    assert_close(hvp(sines)((x,), (v,))[2].x, -np.sin(x) * v)
    # a direction as a list of numbers has the shape (3,) too
    assert_close(jvp(sines)((x,), ([1.0, -2.0, 0.5],))[1], np.sum(np.cos(x) * v))


@pytest.mark.parametrize("point", [0.7, np.float64(0.7), np.array(0.7)])
@pytest.mark.parametrize("direction", [2.0, np.float64(2.0), np.array(2.0)])
def test_scalar_directions_of_scalar_parameters(point: Any, direction: Any) -> None:
    assert_close(jvp(sines)((point,), (direction,))[1], 2.0 * np.cos(0.7))
    assert_close(hvp(sines)((point,), (direction,))[2].x, -2.0 * np.sin(0.7))


def test_the_error_names_the_parameter_among_several() -> None:
    x = np.array([0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=r"parameter w must have its shape \(3,\); got shape "
                                         r"\(2,\)"):
        jvp(sines_with)((x, x), (x, np.ones(2)))


@pytest.mark.parametrize("mode", list(DIRECTION_MODES))
def test_structured_directions_are_checked_leaf_by_leaf(mode: str) -> None:
    made = DIRECTION_MODES[mode](mlp, wrt="params")
    with pytest.raises(ValueError, match=r"parameter params\[1\] must have its shape \(2,\); "
                                         r"got shape \(3,\)"):
        made(((W, B), X), ((W, np.ones(3)),))
    with pytest.raises(TypeError, match=r"parameter params must be a tuple or list of 2"):
        made(((W, B), X), ((W,),))
    with pytest.raises(TypeError, match=r"parameter params must be a tuple or list of 2"):
        made(((W, B), X), (np.ones(3),))
    dict_made = DIRECTION_MODES[mode](dict_loss, wrt="p")
    with pytest.raises(TypeError, match=r"parameter p must be a dict with its keys \['W', 'c'\]"):
        dict_made(({"W": W, "c": C}, X), ({"W": W},))
    with pytest.raises(ValueError, match=r"parameter p\['W'\] must have its shape \(3, 2\)"):
        dict_made(({"W": W, "c": C}, X), ({"W": W.T, "c": C},))
    # the right structure: a list for a tuple is fine, and dict keys in any order
    expected = made(((W, B), X), ((W, B),))
    got = made(((W, B), X), ([W, B],))
    for g, e in zip(leaves(got), leaves(expected), strict=True):
        assert_close(g, e)
    expected = dict_made(({"W": W, "c": C}, X), ({"W": W, "c": C},))
    got = dict_made(({"W": W, "c": C}, X), ({"c": C, "W": W},))
    for g, e in zip(leaves(got), leaves(expected), strict=True):
        assert_close(g, e)


# --- 2. hessian and jacobian of tuple, list and dict parameters ----------------------------------


def test_hessian_of_a_tuple_parameter_has_a_block_per_pair_of_leaves() -> None:
    """docs/modes.md: H[i][j] has parameter i's structure, each leaf of which has parameter
    j's, each leaf of which is the block of two leaves. Against autograd on the flat vector."""
    value, grads, H = hessian(mlp, wrt="params")((W, B), X)
    expected = autograd.hessian(a_mlp)(np.concatenate([W.ravel(), B]), X)
    (HWW, HWb), (HbW, Hbb) = H[0][0]
    assert_close(HWW, expected[:6, :6].reshape(3, 2, 3, 2), what="W, W")
    assert_close(HWb, expected[:6, 6:].reshape(3, 2, 2), what="W, b")
    assert_close(HbW, expected[6:, :6].reshape(2, 3, 2), what="b, W")
    assert_close(Hbb, expected[6:, 6:], what="b, b")
    assert_close(value, a_mlp(np.concatenate([W.ravel(), B]), X))
    assert_close(grads.params[0], autograd.grad(a_mlp)(np.concatenate([W.ravel(), B]), X)[:6]
          .reshape(3, 2))
    assert isinstance(H[0][0], tuple) and isinstance(H[0][0][0], tuple)


def test_hessian_of_a_tuple_beside_an_array() -> None:
    """The mixed blocks of a structured and a plain parameter follow the structure too."""
    _, _, H = hessian(mlp)((W, B), X)

    def packed(flat):
        return a_mlp(flat[:8], flat[8:].reshape(4, 3))

    expected = autograd.hessian(packed)(np.concatenate([W.ravel(), B, X.ravel()]))
    HWX, HbX = H[0][1]
    HXW, HXb = H[1][0]
    assert_close(HWX, expected[:6, 8:].reshape(3, 2, 4, 3), what="W, X")
    assert_close(HbX, expected[6:8, 8:].reshape(2, 4, 3), what="b, X")
    assert_close(HXW, expected[8:, :6].reshape(4, 3, 3, 2), what="X, W")
    assert_close(HXb, expected[8:, 6:8].reshape(4, 3, 2), what="X, b")
    assert_close(H[1][1], expected[8:, 8:].reshape(4, 3, 4, 3), what="X, X")


def test_hessian_of_leaves_of_one_shape_is_not_one_stacked_block() -> None:
    """A tuple of two (2,) arrays was stacked into a (2, 2) parameter."""
    a, b = np.array([0.3, -0.4]), np.array([1.1, 0.6])
    _, _, H = hessian(pair)((a, b))

    def packed(flat):
        return anp.sum(flat[:2] * flat[:2] * flat[2:] + anp.sin(flat[:2] - flat[2:]))

    expected = autograd.hessian(packed)(np.concatenate([a, b]))
    blocks = H[0][0]
    assert len(blocks) == 2 and all(len(row) == 2 for row in blocks)
    for i in range(2):
        for j in range(2):
            assert_close(blocks[i][j], expected[2 * i:2 * i + 2, 2 * j:2 * j + 2], what=f"{i}, {j}")


def test_hessian_of_a_dict_parameter() -> None:
    _, _, H = hessian(dict_loss, wrt="p")({"W": W, "c": C}, X)

    def packed(flat):
        return anp.sum(anp.tanh(anp.dot(X, flat[:6].reshape(3, 2))) ** 2 * flat[6:])

    expected = autograd.hessian(packed)(np.concatenate([W.ravel(), C]))
    blocks = H[0][0]
    assert set(blocks) == {"W", "c"} and set(blocks["W"]) == {"W", "c"}
    assert_close(blocks["W"]["W"], expected[:6, :6].reshape(3, 2, 3, 2))
    assert_close(blocks["W"]["c"], expected[:6, 6:].reshape(3, 2, 2))
    assert_close(blocks["c"]["W"], expected[6:, :6].reshape(2, 3, 2))
    assert_close(blocks["c"]["c"], expected[6:, 6:])


@pytest.mark.parametrize("rows", [1, 40])  # reverse mode (1 output), forward mode (40 x 2)
def test_jacobian_of_a_tuple_parameter_in_both_modes(rows: int) -> None:
    data = RNG.normal(size=(rows, 3))
    f = jacobian(mlp_outputs, wrt="params")
    value, J = f((W, B), data)
    assert f.mode_used == ("reverse" if rows == 1 else "forward")
    assert_close(value, mlp_outputs((W, B), data))
    JW = autograd.jacobian(lambda w: anp.tanh(anp.dot(data, w) + B) ** 2)(W)
    Jb = autograd.jacobian(lambda b: anp.tanh(anp.dot(data, W) + b) ** 2)(B)
    assert isinstance(J.params, tuple) and len(J.params) == 2
    assert_close(J.params[0], JW, what="W")
    assert_close(J.params[1], Jb, what="b")


@pytest.mark.parametrize("rows", [1, 40])
def test_jacobian_of_a_dict_parameter_in_both_modes(rows: int) -> None:
    data = RNG.normal(size=(rows, 3))
    f = jacobian(dict_outputs, wrt="p")
    _, J = f({"W": W, "c": C}, data)
    assert f.mode_used == ("reverse" if rows == 1 else "forward")
    JW = autograd.jacobian(lambda w: anp.tanh(anp.dot(data, w)) * C)(W)
    Jc = autograd.jacobian(lambda c: anp.tanh(anp.dot(data, W)) * c)(C)
    assert set(J.p) == {"W", "c"}
    assert_close(J.p["W"], JW, what="W")
    assert_close(J.p["c"], Jc, what="c")


def test_jacobian_of_a_scalar_function_of_a_tuple_is_its_gradient() -> None:
    _, J = jacobian(mlp, wrt="params")((W, B), X)
    _, grads = srcgrad.grad(mlp, wrt="params")((W, B), X)
    expected = autograd.grad(a_mlp)(np.concatenate([W.ravel(), B]), X)
    assert_close(J.params[0], expected[:6].reshape(3, 2))
    assert_close(J.params[1], expected[6:])
    assert_close(J.params[0], grads[0])


# --- 3. keyword-only parameters ------------------------------------------------------------------


def test_hessian_with_a_keyword_only_parameter() -> None:
    """Hand values for sum(x**3) * s: H_xx = diag(6 x s), H_xs = 3 x**2, H_ss = 0."""
    x = np.array([1.0, 2.0])
    value, grads, H = hessian(cubes)(x, s=3.0)
    assert_close(value, 27.0)
    assert_close(grads.x, 9.0 * x**2)
    assert_close(grads.s, 9.0)
    assert_close(H[0][0], np.diag(18.0 * x))
    assert_close(H[0][1], 3.0 * x**2)
    assert_close(H[1][0], 3.0 * x**2)
    assert H[1][1] == 0.0
    _, _, H_default = hessian(cubes, wrt="x")(x)  # s's default, 2.0
    assert_close(H_default[0][0], np.diag(12.0 * x))


def test_jacobian_with_a_keyword_only_parameter() -> None:
    x = np.array([1.0, 2.0])
    _, J = jacobian(cubes)(x, s=3.0)
    assert_close(J.x, 9.0 * x**2)
    assert_close(J.s, 9.0)
    _, J = jacobian(cubes)(x)  # the default
    assert_close(J.x, 6.0 * x**2)
    forward_mode = jacobian(scaled_cubes, wrt="x")  # 2 inputs, 2 outputs: forward mode
    _, J = forward_mode(x, s=3.0)
    assert forward_mode.mode_used == "forward"
    assert_close(J.x, np.diag(9.0 * x**2))
    reverse_mode = jacobian(scaled_cubes)  # 3 inputs, 2 outputs: reverse mode
    _, J = reverse_mode(x, s=3.0)
    assert reverse_mode.mode_used == "reverse"
    assert_close(J.x, np.diag(9.0 * x**2))
    assert_close(J.s, x**3)


# --- 4. array-API arrays -------------------------------------------------------------------------


def _strict() -> tuple[Any, Any, Any]:
    xp = pytest.importorskip("array_api_strict")
    device = xp.Device("device1")  # refuses any conversion to NumPy
    return xp, device, xp.Device("CPU_DEVICE")


def _on_device_equal(got: Any, want: Any) -> None:
    xp, device, cpu = _strict()
    assert type(got) is type(xp.asarray(0.0)), type(got)
    assert got.device == device
    assert_close(np.asarray(got.to_device(cpu)), want)


def test_hessian_of_array_api_arrays_stays_on_their_device() -> None:
    xp, device, _ = _strict()
    A = np.array([[1.0, 2.0], [3.0, 4.0]])
    value, grads, H = hessian(red)(xp.asarray(A, device=device), 0.7)
    _on_device_equal(value, 0.7 * np.sum(A * A))
    _on_device_equal(grads.A, 1.4 * A)
    _on_device_equal(H[0][0], 1.4 * np.eye(4).reshape(2, 2, 2, 2))
    _on_device_equal(H[0][1], 2 * A)
    _on_device_equal(H[1][0], 2 * A)
    assert H[1][1] == 0.0


def test_jacobian_of_array_api_arrays_in_both_modes() -> None:
    xp, device, _ = _strict()
    A = np.array([[1.0, 2.0], [3.0, 4.0]])
    on_device = xp.asarray(A, device=device)
    reverse_mode = jacobian(red)
    _, J = reverse_mode(on_device, 0.7)
    assert reverse_mode.mode_used == "reverse"
    _on_device_equal(J.A, 1.4 * A)
    assert J.s == pytest.approx(np.sum(A * A), rel=1e-12)
    _, J = jacobian(red, wrt="s")(on_device, 0.7)
    assert J.s == pytest.approx(np.sum(A * A), rel=1e-12)
    forward_mode = jacobian(scaled, wrt="s")  # 1 input, 4 outputs
    value, J = forward_mode(0.7, on_device)
    assert forward_mode.mode_used == "forward"
    _on_device_equal(value, 0.7 * np.sin(A))
    _on_device_equal(J.s, np.sin(A))
    both = jacobian(scaled)  # 5 inputs, 4 outputs: reverse
    _, J = both(0.7, on_device)
    assert both.mode_used == "reverse"
    expected = np.zeros((2, 2, 2, 2))
    for i in range(2):
        for j in range(2):
            expected[i, j, i, j] = 0.7 * np.cos(A[i, j])
    _on_device_equal(J.A, expected)


def test_check_grad_checks_every_block_of_a_structured_hessian() -> None:
    """check_grad(hessian(f)) compares each block of each pair of leaves with central
    differences of srcgrad's gradient (it crashed on a tuple parameter)."""
    report = srcgrad.check_grad(hessian(mlp, wrt="params"), (W, B), X)
    labels = {entry.parameter for entry in report.entries}
    assert labels == {f"H[params[{a}]][params[{b}]]" for a in range(2) for b in range(2)}
    assert len(report.entries) == 8 * 8
    report = srcgrad.check_grad(hessian(dict_loss, wrt="p"), {"W": W, "c": C}, X)
    assert len(report.entries) == 8 * 8
    report = srcgrad.check_grad(hessian(cubes), np.array([1.0, 2.0]), s=3.0)
    assert len(report.entries) == 9  # H_xx (4), H_xs (2), H_sx (2), H_ss (1)


def test_hessian_and_jacobian_of_dask_arrays_stay_lazy() -> None:
    da = pytest.importorskip("dask.array")
    A = np.array([[1.0, 2.0], [3.0, 4.0]])
    lazy = da.from_array(A, chunks=1)
    _, _, H = hessian(red)(lazy, 0.7)
    assert isinstance(H[0][0], da.Array) and isinstance(H[0][1], da.Array)
    assert_close(H[0][0].compute(), 1.4 * np.eye(4).reshape(2, 2, 2, 2))
    assert_close(H[0][1].compute(), 2 * A)
    for made in (jacobian(scaled, wrt="s"), jacobian(scaled)):
        _, J = made(0.7, lazy)
        assert isinstance(J.s, da.Array), made.mode_used
        assert_close(J.s.compute(), np.sin(A))


def _product(x, y):
    return x * y


@pytest.mark.parametrize("mode", ["jvp", "hvp"])
def test_a_call_without_the_two_tuples_says_how_to_call(mode):
    made = getattr(srcgrad, mode)(_product)
    for call in (lambda: made(1.0, 2.0), lambda: made((1.0, 2.0)), lambda: made(1.0)):
        with pytest.raises(TypeError, match=rf"{mode}\(f\)\(\(x, y\), \(dx, dy\)\)"):
            call()
    value, *rest = made((1.0, 2.0), (1.0, 0.0))
    assert value == 2.0 and rest[-1] == (2.0 if mode == "jvp" else (0.0, 1.0))
