"""srcgrad's runtime on arrays that only implement the Python array API (array-api-strict).

Such arrays have no ``__array_ufunc__``/``__array_function__``: ``np.exp(x)`` cannot dispatch to
their library. The arrays here live on array-api-strict's second device, which refuses any
conversion to NumPy, so a helper that quietly went through NumPy (``np.asarray``, a NumPy
function) fails here instead of returning a right-looking NumPy answer, as a CuPy array would
refuse it.

The runtime helpers (`srcgrad.runtime`, `srcgrad.backward`, `srcgrad.functions`) answer in the
array's own namespace, through `runtime.NumpyNames` (NumPy's names over the array API), and
generated code calls the templates' NumPy functions on ``xp = sg.namespace(<the arguments>)``,
bound once at the start of each array path. So whole programs run end to end on the device:
each is checked against the same program on NumPy arrays.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
from support import leaves

xp = pytest.importorskip("array_api_strict")

import srcgrad  # noqa: E402 - after the skip
from srcgrad import functions as F  # noqa: E402
from srcgrad import rules  # noqa: E402
from srcgrad import runtime as sg  # noqa: E402

DEVICE = xp.Device("device1")  # converting an array on it to NumPy raises
CPU = xp.Device("CPU_DEVICE")
RNG = np.random.default_rng(7)
A = RNG.normal(size=(6, 3))
v6 = RNG.normal(size=6)
w6 = RNG.normal(size=6)
M = RNG.normal(size=(3, 4))


def on_device(value: Any) -> Any:
    if isinstance(value, tuple):
        return tuple(on_device(v) for v in value)
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        return xp.asarray(value, device=DEVICE)
    return value


def to_numpy(value: Any) -> Any:
    return np.asarray(value.to_device(CPU)) if hasattr(value, "__array_namespace__") else value


def assert_same(result: Any, expected: Any) -> None:
    """``result`` is an array of the strict library, on its device, equal to ``expected``."""
    assert type(result) is type(xp.asarray(0.0)), type(result)
    assert result.device == DEVICE
    np.testing.assert_allclose(to_numpy(result), expected, rtol=1e-12, atol=1e-14)
    assert tuple(result.shape) == np.shape(expected)


def test_the_device_really_refuses_numpy():
    with pytest.raises(RuntimeError):
        np.exp(on_device(v6))


def test_namespace_is_numpy_unless_an_argument_speaks_only_the_array_api():
    assert sg.namespace(1.5, v6, 2) is np
    adapted = sg.namespace(v6, on_device(v6), 1.0)
    assert isinstance(adapted, sg.NumpyNames) and adapted.xp is xp
    assert sg.namespace(on_device(w6)) is adapted  # made once per namespace


def test_numpy_names_cover_every_numpy_call_in_the_derivative_rules():
    """Every ``np.<name>`` an array template of `srcgrad.rules` emits resolves on the array
    API, so binding ``np`` to `sg.namespace(...)` in generated code leaves no name missing."""
    names = set()
    for primitive in rules.PRIMITIVES.values():
        names |= set(re.findall(r"\bnp\.(\w+(?:\.\w+)?)", primitive.array))
    assert {"exp", "sum", "transpose", "linalg.norm"} <= names  # the scan found the templates
    adapted = sg.namespace(on_device(v6))
    for name in sorted(names):
        target = adapted
        for part in name.split("."):
            target = getattr(target, part)
        assert callable(target), name


NAMES = {  # a NumPy call spelled on the adapter, and the same call on NumPy
    "arcsin": lambda np_, a: np_.arcsin(a / 4),
    "arctan2": lambda np_, a: np_.arctan2(a, a + 3),
    "power": lambda np_, a: np_.power(np_.abs(a), 1.5),
    "transpose, axes": lambda np_, a: np_.transpose(a, (1, 0)),
    "transpose": lambda np_, a: np_.transpose(a),
    "ravel": lambda np_, a: np_.ravel(a),
    "squeeze": lambda np_, a: np_.squeeze(np_.expand_dims(a, (0, 2))),
    "expand_dims, two axes": lambda np_, a: np_.expand_dims(a, (0, 2)),
    "dot": lambda np_, a: np_.dot(np_.transpose(a), a),
    "outer": lambda np_, a: np_.outer(a[:, 0], a[0, :]),
    "where, two numbers": lambda np_, a: np_.where(a > 0, 1.0, 0.0),
    "heaviside": lambda np_, a: np_.heaviside(a, 0.5),
    "cbrt": lambda np_, a: np_.cbrt(a),
    "exp2": lambda np_, a: np_.exp2(a),
    "norm": lambda np_, a: np_.linalg.norm(a),
    "norm, axis": lambda np_, a: np_.linalg.norm(a, axis=1),
    "norm, ord 1": lambda np_, a: np_.linalg.norm(a[:, 0], ord=1),
    "concatenate": lambda np_, a: np_.concatenate([a, a], axis=1),
    "clip": lambda np_, a: np_.clip(a, -0.5, 0.5),
    "logaddexp": lambda np_, a: np_.logaddexp(0.0, a),
    "sum, keepdims": lambda np_, a: np_.sum(a, axis=0, keepdims=True),
    "zeros_like, shape": lambda np_, a: np_.zeros_like(a, dtype=np.float64, shape=(2, 5)),
}


@pytest.mark.parametrize("name", NAMES)
def test_numpy_names_compute_what_numpy_computes(name):
    fn = NAMES[name]
    assert_same(fn(sg.namespace(on_device(A)), on_device(A)), fn(np, A))


def test_missing_functions_say_what_to_do():
    adapted = sg.namespace(on_device(A))
    with pytest.raises(AttributeError, match="needs NumPy arrays"):
        adapted.erf  # noqa: B018 - the attribute access is the test
    with pytest.raises(NotImplementedError, match="no einsum"):
        adapted.einsum("ij->i", on_device(A))


@pytest.mark.parametrize("name", [n for n in F.__all__ if n != "erf"])
def test_srcgrad_functions_compute_in_the_arrays_namespace(name):
    fn = getattr(F, name)
    x = np.array([0.3, -0.7, 0.5, 0.9])
    args = (x,) if name not in ("arctan2", "hypot", "maximum", "minimum", "power") else (x, x[::-1])
    if name in ("log", "log2", "log10", "sqrt", "power", "arccosh"):
        args = tuple(np.abs(a) + 1.0 for a in args)  # inside the domain
    assert_same(fn(*(on_device(a) for a in args)), fn(*args))


HELPERS = {
    "sum_to: bias": (lambda g: sg.sum_to(g, (3,), (6, 3)), (A,)),
    "sum_to: kept axis": (lambda g: sg.sum_to(g, (6, 1), (6, 3)), (A,)),
    "sum_to: to a scalar": (lambda g: sg.sum_to(g, (), (6, 3)), (A,)),
    "sum_product": (lambda a, b: sg.sum_product(a, b, (), (6,)), (v6, w6)),
    "sum_squares": (sg.sum_squares, (A,)),
    "grad_like: a float's": (lambda g: sg.grad_like(sg.sum_squares(g), 0.5), (v6,)),
    "grad_like: broadcast": (lambda g: sg.grad_like(g, np.ones((6, 3))), (A[:, :1],)),
    "expand_to, a number": (lambda x: sg.expand_to(1.0, (6, 3), like=x), (A,)),
    "sum_backward": (lambda g, x: sg.sum_backward(g, x, 1, False), (v6, A)),
    "sum_backward, a number": (lambda x: sg.sum_backward(2.0, x, 1, False), (A,)),
    "mean_backward": (lambda g, x: sg.mean_backward(g, x, 0, True), (A[:1], A)),
    "extreme_backward": (lambda x, out: sg.extreme_backward(1.0, x, out, 0, False),
                         (A, A.max(axis=0))),
    "prod_backward": (lambda x, out: sg.prod_backward(1.0, x, out, 1, False),
                      (A, A.prod(axis=1))),
    "norm_backward": (lambda x, out: sg.norm_backward(1.0, x, out),
                      (v6, np.array(np.linalg.norm(v6)))),
    "matmul_backward_a": (lambda g, b: sg.matmul_backward_a(g, A, b), (A @ M, M)),
    "matmul_backward_b, a vector": (lambda g, a: sg.matmul_backward_b(g, a, A[0]), (v6, A)),
    "transpose_backward": (lambda g: sg.transpose_backward(g, (1, 0)), (A,)),
    "reshape_backward": (lambda g, x: sg.reshape_backward(g, x), (A.ravel(), A)),
    "concatenate_backward": (lambda g: sg.concatenate_backward(g, 0, 1, A[:2], A[2:]), (A,)),
    "stack_backward": (lambda g: sg.stack_backward(g, 1, 2), (A,)),
    "getitem_backward": (lambda g, x: sg.getitem_backward(g, x, (slice(1, 3), None)),
                         (A[1:3, None], A)),
    "getitem_backward, rows": (lambda g, x: sg.getitem_backward(g, x, slice(1, 3)),
                               (A[1:3], A)),
    "getitem_backward, a new axis": (lambda g, x: sg.getitem_backward(
        g, x, (None, slice(None))), (v6[None, :], v6)),
    "where_mask": (lambda x: sg.where_mask(x > 0), (v6,)),
    "clip partials": (lambda x: sg.clip_inside(x, -0.5, 0.5) + 2 * sg.clip_below(x, -0.5, 0.5)
                      + 3 * sg.clip_above(x, -0.5, 0.5), (v6,)),
    "sign, step, tie_weight": (lambda x: sg.sign(x) + sg.step(x) + sg.tie_weight(x, x * 0),
                               (v6,)),
}


@pytest.mark.parametrize("name", HELPERS)
def test_runtime_helper_answers_in_the_arrays_namespace(name):
    fn, args = HELPERS[name]
    assert_same(fn(*(on_device(a) for a in args)), fn(*args))


def test_a_scalar_parameters_gradient_is_a_0d_array_of_the_library():
    g = sg.grad_like(sg.sum_squares(on_device(v6)), 0.5)
    assert g.shape == () and g.dtype == xp.float64


def polynomial_loss(a, b, c, x, y):
    return np.sum((a * x * x + b * x + c - y) ** 2)


def gaussian_loss(mu, sigma, s, x, y):
    return np.sum((s * np.exp(-(x - mu) ** 2 / sigma ** 2) - y) ** 2)


@pytest.mark.parametrize("wrt", [("a", "b", "c"), None])
def test_operator_only_program_runs_end_to_end_today(wrt):
    """No ``np.`` call in its generated array code: operators and `sg.` helpers only."""
    args = (0.5, -1.0, 2.0, v6, w6)
    value, grads = srcgrad.grad(polynomial_loss, wrt=wrt)(*args)
    got_value, got_grads = srcgrad.grad(polynomial_loss, wrt=wrt)(*args[:3], *on_device(args[3:]))
    assert_same(got_value, value)
    for got, want in zip(got_grads, grads, strict=True):
        assert_same(got, want)


def fit_on_structured_data(mu, sigma, data):
    x, y = data
    return np.mean((np.exp(-(x - mu) ** 2 / (2 * sigma ** 2)) - y) ** 2)


def mlp(params, X, y):
    W1, b1 = params["hidden"]
    W2, b2 = params["out"]
    h = np.tanh(X @ W1 + b1)
    z = np.maximum(h @ W2 + b2, 0.1 * (h @ W2 + b2))  # a leaky relu
    return np.mean((z[:, 0] - y) ** 2) + 1e-3 * np.sum(W1 ** 2)


def where_and_indexing(x, w):
    soft = np.where(x > 0, x, 0.1 * x)
    return np.sum(soft[1:5] * w[:4]) + np.sum(np.sqrt(soft[::2] ** 2 + 1.0)) + x[0] * w[-1]


def reductions_and_shapes(A, v):
    B = np.reshape(A.T, (3, 6)) * v[:, None]
    return np.sum(np.max(B, axis=1) ** 2) + np.linalg.norm(np.mean(A, axis=0)) + np.sum(
        np.clip(A @ np.transpose(B[:, :3]), -1.0, 1.0))


PROGRAMS = {  # name: (function, NumPy arguments, wrt); float arguments go to the device
    "Gaussian fit: scalar parameters, device data": (
        gaussian_loss, (0.2, 0.9, 1.3, v6, w6), ("mu", "sigma", "s")),
    "Gaussian fit: every argument on the device": (gaussian_loss, (
        np.array(0.2), np.array(0.9), np.array(1.3), v6, w6), ("mu", "sigma", "s")),
    "fit on a (x, y) tuple: the mixed path, through the namespace": (
        fit_on_structured_data, (0.3, 1.1, (v6, w6)), ("mu", "sigma")),
    "MLP: @, tanh, maximum, mean, a dict of weights": (mlp, (
        {"hidden": (M, M[0]), "out": (M.T[:, :2], np.array([0.1, -0.2]))}, A, v6), ("params",)),
    "where, slices, negative and strided indices": (where_and_indexing, (v6, M[0]), None),
    "max, mean, norm, clip, reshape, transpose": (
        reductions_and_shapes, (A, np.array([0.5, -1.0, 2.0])), None),
}


@pytest.mark.parametrize("name", PROGRAMS)
def test_program_calling_numpy_functions_runs_on_array_api_arrays(name):
    """The gradient on device arrays is the gradient on NumPy arrays, and stays on the device
    (a Python float's gradient is a 0-d device array)."""
    fn, args, wrt = PROGRAMS[name]
    value, grads = srcgrad.grad(fn, wrt=wrt)(*args)
    got_value, got_grads = srcgrad.grad(fn, wrt=wrt)(*(tree_on_device(a) for a in args))
    assert_same(got_value, value)
    for got, want in zip(leaves(tuple(got_grads)), leaves(tuple(grads)), strict=True):
        assert_same(got, want)


def tree_on_device(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: tree_on_device(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(tree_on_device(v) for v in value)
    return on_device(value)




def looped(w, x, xp):
    for _ in range(3):
        x = np.tanh(w * x) + xp  # a parameter named like the namespace: it gets another name
    if np.sum(x) > 0:
        x = x * 2.0
    return np.sum(x ** 2)


MODES = {  # name: (call on NumPy or device arguments, arguments)
    "grad through a loop and a branch": (lambda *a: srcgrad.grad(looped)(*a), (0.7, v6, w6)),
    "jvp": (lambda *a: srcgrad.jvp(gaussian_loss, wrt=("mu", "sigma"))(a, (1.0, 0.5)),
            (0.2, 0.9, 1.3, v6, w6)),
    "hvp": (lambda *a: srcgrad.hvp(gaussian_loss, wrt=("mu", "sigma"))(a, (1.0, 0.5)),
            (0.2, 0.9, 1.3, v6, w6)),
    "hessian": (lambda *a: srcgrad.hessian(gaussian_loss, wrt=("mu", "sigma"))(*a),
                (0.2, 0.9, 1.3, v6, w6)),
}


@pytest.mark.parametrize("name", MODES)
def test_loops_branches_and_other_modes_run_on_array_api_arrays(name):
    call, args = MODES[name]
    expected = leaves(call(*args))
    got = leaves(call(*(tree_on_device(a) for a in args)))
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert_same(g, e)


def test_generated_array_paths_go_through_the_namespace_and_floats_through_math():
    f = srcgrad.grad(gaussian_loss, wrt=("mu", "sigma", "s"))
    f(0.2, 0.9, 1.3, v6, w6)  # the first call's floats give the function its mixed path
    source = f.raw_source
    scalar_path, rest = source.split("Float64 data")
    mixed_path, array_path = rest.split("# Array path")
    assert "sg.namespace(" not in mixed_path  # NumPy arrays only there: calls `np.`, in place
    assert "np.exp(t1, out=t1)" in mixed_path
    assert "xp = sg.namespace(mu, sigma, s, x, y)" in array_path
    code = [line for line in array_path.splitlines() if not line.lstrip().startswith("#")]
    assert "xp.exp(" in array_path and not any(re.search(r"\bnp\.", line) for line in code)
    structured = srcgrad.grad(fit_on_structured_data, wrt=("mu", "sigma"))
    structured(0.3, 1.1, (v6, w6))  # no in-place path for a tuple: the mixed path goes through xp
    assert "xp = sg.namespace(data)" in structured.raw_source.split("# Array path")[0]
    floats = srcgrad.grad(wave).raw_source.split("# Array path")
    assert "math.exp(" in floats[0] and "xp.exp(" in floats[1]  # the float path keeps `math`


def wave(a):
    return np.exp(a) * np.sin(a)


def test_namespace_looks_into_structured_parameters():
    assert sg.namespace((v6, [w6, 1.0]), {"a": A}) is np
    assert sg.namespace(2.0, {"w": (1.0, on_device(v6))}).xp is xp


def test_namespace_on_numpy_arrays_costs_a_loop_of_type_checks():
    """``sg.namespace`` runs once per call of every generated array path: it must stay cheap."""
    import timeit

    timer = timeit.Timer(lambda: sg.namespace(0.5, v6, w6, A))
    per_call = min(timer.repeat(5, 2000)) / 2000
    assert per_call < 5e-6, per_call  # ~0.2 µs here; a loose bound for slow CI machines
