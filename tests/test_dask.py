"""srcgrad's generated code on Dask arrays: lazy, chunk-parallel, and equal to NumPy's answer.

Every check runs the same function on NumPy data and on the same data as a chunked dask array,
and compares. "Lazy" is checked, not assumed: the dask calls run under a scheduler that raises
(`forbid_compute`), so a helper that materialises a dask array (``np.asarray``, ``float``,
``np.vdot``, writing into a NumPy buffer) fails the test where it happens. The issue's test
runs the Gaussian fit over 2e6 samples in 8 chunks on a local `distributed` cluster of two
workers and checks, from the task graph and the task stream, that the reductions ran per chunk.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")

import srcgrad  # noqa: E402 - after the skips: without Dask there is nothing to test here
from srcgrad import runtime as sg  # noqa: E402
from srcgrad.functions import sigmoid  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PNG = b"\x89PNG\r\n\x1a\n"


def forbid_compute(dsk: Any, keys: Any, **kwargs: Any) -> Any:
    """A Dask scheduler that refuses: installed while srcgrad builds results, it turns any
    eager computation (a helper materialising a dask array) into a test failure."""
    raise AssertionError("a dask array was computed while the result was being built")


def lazily(fn: Callable[..., Any], *args: Any) -> Any:
    with dask.config.set(scheduler=forbid_compute):
        return fn(*args)


def chunked(value: Any, parts: int = 4) -> Any:
    """``value`` as a dask array of about ``parts`` chunks along its first axis (numbers and
    NumPy integer index arrays stay as they are); tuples element by element."""
    if isinstance(value, tuple):
        return tuple(chunked(v, parts) for v in value)
    if isinstance(value, np.ndarray) and value.ndim and value.dtype.kind == "f":
        return da.from_array(value, chunks=(max(1, -(-value.shape[0] // parts)),
                                            *value.shape[1:]))
    return value


def leaves(tree: Any) -> list[Any]:
    if isinstance(tree, (tuple, list)):
        return [leaf for item in tree for leaf in leaves(item)]
    return [tree]


def assert_matches(lazy: Any, expected: Any, rtol: float = 1e-12) -> None:
    """``lazy`` (computed here) equals ``expected`` leaf by leaf: values, shapes, dtypes."""
    (computed,) = dask.compute(lazy, scheduler="sync")
    for got, want in zip(leaves(computed), leaves(expected), strict=True):
        assert np.shape(got) == np.shape(want)
        if isinstance(want, np.ndarray):
            assert np.asarray(got).dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-14)


# --- the test: a curve fit over 2e6 samples on a 2-worker cluster ------------------------

def fit_loss(mu, sigma, s, x, y):
    return np.sum((s * np.exp(-(x - mu) ** 2 / sigma ** 2) - y) ** 2)


@pytest.fixture(scope="module")
def client():
    """A local cluster of two workers (threads in this process: starts in ~0.5 s, no pickling
    of the data; the scheduling, chunk placement and task stream are the real ones). Its
    HTTP server takes a free port (``dashboard_address=None`` still binds 8787, which a
    concurrent run would then fight over)."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as client:
        yield client


def test_gaussian_fit_over_2e6_samples_on_a_cluster_matches_numpy(client):
    n, chunks = 2_000_000, 8
    rng = da.random.default_rng(42)  # drawn on the workers, chunk by chunk
    x = rng.uniform(-3.0, 3.0, n, chunks=n // chunks)
    y = 1.5 * da.exp(-(x - 0.3) ** 2 / 0.8 ** 2) + 0.05 * rng.standard_normal(n, chunks=n // chunks)
    x, y = dask.persist(x, y)
    x_np, y_np = dask.compute(x, y)
    at = (0.2, 0.9, 1.3)  # mu, sigma, s: away from the truth, so no gradient is near zero

    value, grads = srcgrad.grad(wrt=("mu", "sigma", "s"))(fit_loss)(*at, x_np, y_np)
    f = srcgrad.grad(wrt=("mu", "sigma", "s"))(fit_loss)
    lazy_value, lazy_grads = lazily(f, *at, x, y)

    results = [lazy_value, *lazy_grads]
    assert all(isinstance(r, da.Array) and r.shape == () for r in results)
    for result in results:  # every reduction over the samples is a sum per chunk, then a tree
        graph = dict(result.__dask_graph__())
        layers = Counter(dask.utils.key_split(k) for k in graph)
        assert layers["sum"] >= chunks and layers["sum"] % chunks == 0, layers
        assert layers["sum-aggregate"] >= 1
    separate = sum(len(r.__dask_graph__()) for r in results)
    shared = len(dask.highlevelgraph.HighLevelGraph.merge(*(r.dask for r in results)))
    assert shared < separate / 2  # one compute evaluates the model once for all four results

    with distributed.get_task_stream(client) as stream:
        got_value, got_grads = dask.compute(lazy_value, lazy_grads)
    workers = {task["worker"] for task in stream.data}
    assert workers <= set(client.scheduler_info()["workers"]) and workers
    ran = Counter(dask.utils.key_split(task["key"]) for task in stream.data)
    assert ran["sum"] >= chunks, ran  # the per-chunk sums ran on the cluster

    np.testing.assert_allclose(got_value, value, rtol=1e-10)
    for name in ("mu", "sigma", "s"):
        np.testing.assert_allclose(getattr(got_grads, name), getattr(grads, name), rtol=1e-10)
        assert isinstance(getattr(got_grads, name), np.floating)


# --- programs: the same function on NumPy and on dask data -------------------------------------

def mean_fit(mu, sigma, s, x, y):
    return np.mean((s * np.exp(-(x - mu) ** 2 / (2 * sigma ** 2)) - y) ** 2)


def linear_relu(W, b, X):
    return np.sum(np.maximum(0, X @ W + b))


def tanh_mlp(params, X, y):
    W1, b1, W2, b2 = params
    h = np.tanh(X @ W1 + b1)
    z = h @ W2 + b2
    return np.mean((z[:, 0] - y) ** 2)


def row_norms(X, w):
    return np.sum(np.linalg.norm(X * w, axis=1)) + np.sum(np.max(X, axis=0) * np.min(X, axis=0))


def slices_and_indices(x, w, idx):
    return np.sum(x[2:10] * w) + np.sum(x[idx] ** 2) + np.sum(x[x > 0] ** 3)


def shapes(X, w):
    stacked = np.concatenate([X, w[None, :]], axis=0)
    return np.sum(np.einsum("ij,j->i", stacked, w) ** 2) + np.sum(np.reshape(X.T, (-1,)) ** 3)


def logistic(w, X, y):
    p = sigmoid(X @ w)
    return -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)) + np.sum(np.clip(w, -0.5, 0.5) ** 2)


RNG = np.random.default_rng(3)
X = RNG.normal(size=(40, 3))
x1 = RNG.normal(size=40)
y1 = RNG.uniform(0.1, 0.9, size=40)
PROGRAMS = {  # name: (function, arguments, wrt, positions of the arguments made dask arrays)
    "np.mean, scalar parameters": (mean_fit, (0.1, 0.9, 1.5, x1, y1), ("mu", "sigma", "s"), {3, 4}),
    "@ and a bias, all gradients": (linear_relu, (RNG.normal(size=(3, 5)), RNG.normal(size=5), X),
                                    None, {0, 2}),
    "MLP, a tuple parameter": (tanh_mlp, ((RNG.normal(size=(3, 4)), RNG.normal(size=4),
                                           RNG.normal(size=(4, 1)), RNG.normal(size=1)), X, x1),
                               ("params",), {1, 2}),
    "norm, max, min over axes": (row_norms, (X, RNG.normal(size=3)), None, {0}),
    "slices, unique indices, a mask": (slices_and_indices,
                                       (x1, RNG.normal(size=8), np.array([1, 3, 7, 2])),
                                       ("x", "w"), {0}),
    "concatenate, einsum, transpose": (shapes, (X, RNG.normal(size=3)), None, {0}),
    "sigmoid, log, clip": (logistic, (RNG.normal(size=3), X, (x1 > 0) * 1.0), ("w",), {1, 2}),
}


@pytest.mark.parametrize("name", PROGRAMS)
def test_program_on_dask_data_is_lazy_and_matches_numpy(name):
    fn, args, wrt, on_dask = PROGRAMS[name]
    expected_value, expected_grads = srcgrad.grad(fn, wrt=wrt)(*args)
    dask_args = [chunked(a) if i in on_dask else a for i, a in enumerate(args)]
    value, grads = lazily(srcgrad.grad(fn, wrt=wrt), *dask_args)
    assert all(isinstance(leaf, da.Array) for leaf in leaves((value, grads)))
    assert grads._fields == expected_grads._fields
    assert_matches((value, tuple(grads)), (expected_value, tuple(expected_grads)), rtol=1e-10)


def test_float32_data_keeps_float32_and_scalar_gradients_are_float64():
    f = srcgrad.grad(mean_fit, wrt=("mu", "sigma", "s"))
    x, y = chunked(x1.astype(np.float32)), chunked(y1.astype(np.float32))
    value, grads = lazily(f, 0.1, 0.9, 1.5, x, y)
    assert value.dtype == np.float32
    assert all(g.dtype == np.float64 and g.shape == () for g in grads)  # a Python float's


def gather(x, idx):
    return np.sum(x[idx] ** 2)


@pytest.mark.parametrize("index", [np.array([1, 3, 3]), da.from_array(np.array([1, 3, 3])),
                                   da.from_array(x1.reshape(8, 5)) > 0],
                         ids=["repeats", "a dask index", "a 2-D dask mask"])
def test_unsupported_indices_raise_a_clear_error_instead_of_dropping_terms(index):
    x = chunked(x1) if np.ndim(index) == 1 else chunked(x1.reshape(8, 5))
    f = srcgrad.grad(gather, wrt=("x",))
    with pytest.raises(NotImplementedError, match="repeated indices"):
        lazily(f, x, index)


# --- the runtime helpers, one by one ------------------------------------------------------------

A = RNG.normal(size=(40, 3))
B = RNG.normal(size=(40, 3))
v40 = RNG.normal(size=40)
w40 = RNG.normal(size=40)
M = RNG.normal(size=(3, 5))
HELPERS: dict[str, tuple[Callable[..., Any], tuple[Any, ...]]] = {
    "sum_to: a bias": (lambda g: sg.sum_to(g, (3,), (40, 3)), (A,)),
    "sum_to: kept axis": (lambda g: sg.sum_to(g, (40, 1), (40, 3)), (A,)),
    "sum_to: to a scalar": (lambda g: sg.sum_to(g, (), (40, 3)), (A,)),
    "sum_to: a size-1 adjoint axis": (lambda g: sg.sum_to(g, (1, 3), (40, 3)), (A[:, :1],)),
    "sum_product: a dot product": (lambda a, b: sg.sum_product(a, b, (), (40,)), (v40, w40)),
    "sum_product: per column": (lambda a, b: sg.sum_product(a, b, (3,), (40, 3)), (A, B)),
    "sum_squares": (sg.sum_squares, (A,)),
    "reduce_to": (lambda t: sg.reduce_to(t, ()), (v40,)),
    "grad_like: of a float": (lambda a, b: sg.grad_like(sg.sum_product(a, b, (), (40,)), 0.5),
                              (v40, w40)),
    "grad_like: of a float32 array": (lambda g: sg.grad_like(g, np.ones(3, np.float32)),
                                      (A[0],)),
    "grad_like: broadcast": (lambda g: sg.grad_like(g, np.ones((40, 3))), (A[:, :1],)),
    "grad_like: of itself, copied": (lambda g: sg.grad_like(g, g, copy=True), (A,)),
    "expand_to": (lambda g: sg.expand_to(g, (40, 3)), (A[:, :1],)),
    "sum_backward": (lambda g, x: sg.sum_backward(g, x, 1, False), (v40, A)),
    "mean_backward": (lambda g, x: sg.mean_backward(g, x, 0, True), (A[:1], A)),
    "mean_backward: all": (lambda x: sg.mean_backward(x[0], x), (v40,)),
    "extreme_backward": (lambda x: sg.extreme_backward(x[0, 0] * 0 + 1, x, np.max(x, axis=0),
                                                       0, False), (A,)),
    "prod_backward": (lambda x: sg.prod_backward(1.0, x, np.prod(x, axis=1), 1, False), (A,)),
    "norm_backward": (lambda x: sg.norm_backward(1.0, x, np.linalg.norm(x)), (v40,)),
    "matmul_backward_a": (lambda g, b: sg.matmul_backward_a(g, A, b), (A @ M, M)),
    "matmul_backward_b": (lambda g, a: sg.matmul_backward_b(g, a, M), (A @ M, A)),
    "matmul_backward: a vector": (lambda g, a: sg.matmul_backward_b(g, a, A[0]), (v40, A)),
    "outer_backward_a": (lambda a, b: sg.outer_backward_a(np.outer(a, b), a, b), (v40, w40)),
    "einsum_backward": (lambda g, x: sg.einsum_backward(g, "ij,j->i", 0, x, A[0]), (v40, A)),
    "transpose_backward": (lambda g: sg.transpose_backward(g, (1, 0)), (A,)),
    "reshape_backward": (lambda g, x: sg.reshape_backward(g, x), (A.ravel(), A)),
    "concatenate_backward": (lambda g: sg.concatenate_backward(g, 0, 1, A[:30], A[30:]), (A,)),
    "stack_backward": (lambda g: sg.stack_backward(g, 1, 2), (A,)),
    "getitem_backward: a slice": (lambda g, x: sg.getitem_backward(g, x, slice(2, 10)),
                                  (v40[:8], v40)),
    "getitem_backward: a new axis": (lambda g, x: sg.getitem_backward(g, x, (None, slice(None))),
                                     (A[:1], A[0] * 1)),
    "getitem_backward: unique integers": (lambda g, x: sg.getitem_backward(
        g, x, np.array([3, 1, 7])), (A[:3], A)),
    "getitem_backward: a mask": (lambda x: sg.getitem_backward(x[x > 0] * 2, x, x > 0), (v40,)),
    "clip_inside": (lambda x: sg.clip_inside(x, -0.5, 0.5), (v40,)),
    "clip_below, clip_above": (lambda x: sg.clip_below(x, -0.5, 0.5)
                               + sg.clip_above(x, -0.5, 0.5), (v40,)),
    "where_mask": (lambda x: sg.where_mask(x > 0), (v40,)),
    "sign, step, tie_weight": (lambda x: sg.sign(x) + sg.step(x) + sg.tie_weight(x, x * 0),
                               (v40,)),
    "functions": (lambda x: sg.sigmoid(x) + sg.softplus(x) + sg.relu(x) + sg.erf(x) + sg.cbrt(x)
                  + sg.power(sg.abs(x), 1.5) + sg.maximum(x, 0.1), (v40,)),
}


@pytest.mark.parametrize("name", HELPERS)
def test_helper_keeps_dask_arrays_lazy(name):
    fn, args = HELPERS[name]
    expected = fn(*args)
    result = lazily(fn, *(chunked(a) for a in args))
    assert isinstance(result, da.Array), type(result)
    assert_matches(result, expected)


def test_reductions_stay_chunk_parallel():
    """A sum over the batch is a per-chunk sum and a tree: as many first-stage tasks as chunks
    (a helper that gathered the data first would have one task reading every chunk)."""
    a, b = chunked(v40, 8), chunked(w40, 8)
    for result in (lazily(sg.sum_product, a, b, (), (40,)), lazily(sg.sum_squares, a),
                   lazily(sg.sum_to, chunked(A, 8), (3,), (40, 3))):
        layers = Counter(dask.utils.key_split(k) for k in dict(result.__dask_graph__()))
        assert layers["sum"] == 8, layers


def test_the_in_place_path_is_not_taken_and_arguments_pass_unchanged():
    x = chunked(v40)
    assert not sg.float64_arrays(x)  # no `out=` into a dask array
    assert not sg.float64_arrays(v40, x)
    assert sg.float64_arrays(v40, w40)
    assert sg.as_array(x, "x", "f", True) is x
    assert sg.is_foreign(x) and not sg.is_foreign(v40) and not sg.is_foreign(1.5)


# --- the example -------------------------------------------------------------------------------

def test_dask_fit_example_recovers_its_gaussian_and_draws_it(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "dask_fit.py"), "--quick",
                             "--out", str(tmp_path)],
                            capture_output=True, text=True, check=False, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["chunks"] > 1 and summary["samples"] > summary["samples"] / summary["chunks"]
    truth = {"mu": 0.7, "sigma": 0.9, "s": 2.0}  # the example's documented truth
    for name, value in truth.items():
        assert summary["fitted"][name] == pytest.approx(value, rel=0.02), name
    assert summary["final_loss"] < 1.2 * 0.05 ** 2  # down to the noise variance
    png = tmp_path / "fit.png"
    assert png.is_file() and png.stat().st_size > 1000 and png.read_bytes()[:8] == PNG
