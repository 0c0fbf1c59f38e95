"""Every array primitive of srcgrad, one at a time, against autograd and finite differences.

Why: each array rule (reductions, products, shape changes, indexing, selection, broadcasting)
has its own adjoint, and the bugs hide in the corners: a negative or tuple axis, keepdims, a
size-1 or 0-d shape, a broadcast operand, repeated indices, float32. Each test draws shapes, axes
and inputs with hypothesis, writes the operation as a tiny program (`array_cases.program`) and
checks srcgrad's value, gradient shapes and dtypes, and numbers against
  (a) autograd running the same source text (an independent reverse-mode implementation), and
  (b) central finite differences of the plain NumPy function in float64.
Inputs keep away from kinks and ties (max/min ties, abs at 0, clip bounds, mask thresholds),
except in the tests that check the documented tie and kink conventions explicitly.
float32 inputs must give float32 gradients, compared with the float64 references loosely.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from array_cases import (
    ATOL_FRACTION,
    assert_close,
    axes,
    broadcast_pair,
    central_differences,
    check,
    dtypes,
    positive,
    program,
    reduced_shape,
    seeds,
    shapes,
    signed,
    spread,
)
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

import srcgrad

# No shrinking: a failure is reported as first found (with its program and inputs), so a red run
# stays within the time budget; report_multiple_bugs=False stops at the first failure.
PHASES = (Phase.explicit, Phase.reuse, Phase.generate)
SETTINGS = settings(
    deadline=None,
    derandomize=True,
    database=None,
    max_examples=100,
    phases=PHASES,
    report_multiple_bugs=False,
)
FEW = settings(SETTINGS, max_examples=30)


@pytest.fixture(scope="session")
def cases_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the test programs are written: srcgrad reads source with inspect.getsource."""
    return tmp_path_factory.mktemp("array_rules")


def result_shape(expression: str, **arrays: Any) -> tuple[int, ...]:
    """The shape NumPy gives `expression` on zero arrays of the given shapes."""
    env = {name: np.zeros(shape) for name, shape in arrays.items()}
    return np.shape(eval(expression, {"np": np}, env))


def weighted(expression: str, params: str) -> str:
    """`sin(expression) * w`: w has the result's shape, so a misplaced adjoint shows up."""
    return f"def f({params}, w):\n    return np.sin({expression}) * w\n"


# --- reductions ----------------------------------------------------------------------------------

REDUCTIONS = ("sum", "mean", "max", "min", "prod")


@st.composite
def reduction_calls(draw: Any, op: str, ndim: int) -> tuple[str, Any, bool]:
    """The call as source text, in one of its spellings, with its axis and keepdims."""
    axis = draw(axes(ndim))
    keepdims = draw(st.booleans())
    keep = f", keepdims={keepdims}" if keepdims or draw(st.booleans()) else ""
    spelling = draw(st.sampled_from(["function", "method", "positional"]))
    if spelling == "function":
        ax = f", axis={axis!r}" if axis is not None or draw(st.booleans()) else ""
        return f"np.{op}(x{ax}{keep})", axis, keepdims
    if spelling == "method":
        ax = f"axis={axis!r}" if axis is not None or draw(st.booleans()) else ""
        sep = ", " if ax and keep else ""
        return f"x.{op}({ax}{sep}{keep.lstrip(', ')})", axis, keepdims
    return f"np.{op}(x, {axis!r}{keep})", axis, keepdims


@SETTINGS
@given(data=st.data(), op=st.sampled_from(REDUCTIONS), shape=shapes(0, 3), seed=seeds, dtype=dtypes)
def test_reductions(cases_dir, data, op, shape, seed, dtype):
    call, axis, keepdims = data.draw(reduction_calls(op, len(shape)))
    rng = np.random.default_rng(seed)
    if op == "prod":  # sin of a large product is ill-conditioned: weight the product directly
        source = f"def f(x, w):\n    return {call} * w\n"
        x = signed(rng, shape, 0.7, 1.3)
    else:
        source = weighted(call, "x")
        x = spread(rng, shape)  # no ties: max/min are differentiable
    w = rng.normal(size=reduced_shape(shape, axis, keepdims))
    check(program(source, cases_dir), {"x": x, "w": w}, dtype=dtype)


@pytest.mark.parametrize("op", REDUCTIONS)
def test_reductions_of_a_python_float(cases_dir, op):
    """A plain float through an array reduction: the gradient is a float."""
    prog = program(f"def f(x):\n    return np.{op}(x) * np.sin(x)\n", cases_dir)
    value, grads = prog.grad()(0.7)
    assert type(grads.x) is float
    assert value == pytest.approx(0.7 * np.sin(0.7), rel=1e-14)
    assert grads.x == pytest.approx(np.sin(0.7) + 0.7 * np.cos(0.7), rel=1e-13)


@SETTINGS
@given(
    op=st.sampled_from(["max", "min"]),
    shape=shapes(1, 3, 1, 4),
    data=st.data(),
    seed=seeds,
    dtype=dtypes,
)
def test_max_min_ties_share_the_gradient_equally(cases_dir, op, shape, data, seed, dtype):
    """On a tie every extreme entry gets an equal share (autograd's convention too)."""
    axis = data.draw(axes(len(shape)))
    keepdims = data.draw(st.booleans())
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 3, size=shape).astype(np.float64)  # many ties
    w = rng.normal(size=reduced_shape(shape, axis, keepdims))
    source = f"def f(x, w):\n    return np.{op}(x, axis={axis!r}, keepdims={keepdims}) * w\n"
    grads = check(program(source, cases_dir), {"x": x, "w": w}, dtype=dtype, fd=False)
    # The convention itself, by hand: w shared equally among the extreme entries of each slice.
    extreme = getattr(np, op)(x, axis=axis, keepdims=True)
    mask = x == extreme
    share = mask / np.sum(mask, axis=axis, keepdims=True)
    expected = share * np.reshape(w, extreme.shape)
    assert_close(grads.x, expected, 1e-6, 1e-7, "tie shares")


@FEW
@given(shape=shapes(1, 3, 1, 4), data=st.data(), seed=seeds, dtype=dtypes)
def test_prod_with_zeros(cases_dir, shape, data, seed, dtype):
    """The product of the *other* entries, exact with one or more zeros (no division by x)."""
    axis = data.draw(axes(len(shape)))
    keepdims = data.draw(st.booleans())
    rng = np.random.default_rng(seed)
    x = signed(rng, shape, 0.7, 1.3)
    zeros = data.draw(st.integers(1, min(3, x.size)))
    x.flat[rng.choice(x.size, size=zeros, replace=False)] = 0.0
    w = rng.normal(size=reduced_shape(shape, axis, keepdims))
    source = f"def f(x, w):\n    return np.prod(x, axis={axis!r}, keepdims={keepdims}) * w\n"
    # autograd divides by x (nan at zeros); the product is multilinear, so differences are exact.
    check(program(source, cases_dir, autograd_ok=False), {"x": x, "w": w}, dtype=dtype)


@SETTINGS
@given(shape=shapes(1, 3, 1, 4), data=st.data(), seed=seeds, dtype=dtypes)
def test_norm(cases_dir, shape, data, seed, dtype):
    ndim = len(shape)
    axis = data.draw(axes(ndim, max_len=2) if ndim >= 2 else st.sampled_from([None, 0, -1]))
    keepdims = data.draw(st.booleans())
    if axis is None and not keepdims and data.draw(st.booleans()):
        call = "np.linalg.norm(x)"
    else:
        call = f"np.linalg.norm(x, axis={axis!r}, keepdims={keepdims})"
    # autograd's own norm rule mishandles 1-tuples, negative pairs and keepdims on vectors:
    # its twin spells the 2-norm out.
    twin = f"np.sqrt(np.sum(x * x, axis={axis!r}, keepdims={keepdims}))"
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape)
    w = rng.normal(size=result_shape(call, x=shape))
    prog = program(weighted(call, "x"), cases_dir, weighted(twin, "x"))
    check(prog, {"x": x, "w": w}, dtype=dtype)


def test_norm_at_zero_has_zero_gradient(cases_dir):
    """At 0 the 2-norm has no derivative; srcgrad documents the subgradient 0 (not nan)."""
    prog = program(
        "def f(x):\n    return np.linalg.norm(x, axis=1) * 3.0\n", cases_dir, autograd_ok=False
    )
    x = np.array([[0.0, 0.0, 0.0], [3.0, -4.0, 0.0]])
    value, grads = prog.grad()(x)
    np.testing.assert_allclose(value, [0.0, 15.0])
    np.testing.assert_allclose(grads.x, [[0.0, 0.0, 0.0], [1.8, -2.4, 0.0]], rtol=1e-14)


VECTOR_ORDERS = {  # ord as written: the same norm spelled out for autograd
    "1": "np.sum(np.abs(x), axis=$AX, keepdims=$KD)",
    "2": "np.sqrt(np.sum(x * x, axis=$AX, keepdims=$KD))",
    "3": "np.sum(np.abs(x) ** 3, axis=$AX, keepdims=$KD) ** (1.0 / 3.0)",
    "1.5": "np.sum(np.abs(x) ** 1.5, axis=$AX, keepdims=$KD) ** (1.0 / 1.5)",
    "np.inf": "np.max(np.abs(x), axis=$AX, keepdims=$KD)",
    "-np.inf": "np.min(np.abs(x), axis=$AX, keepdims=$KD)",
}


@SETTINGS
@given(
    order=st.sampled_from(sorted(VECTOR_ORDERS)),
    shape=shapes(1, 3, 1, 4),
    data=st.data(),
    seed=seeds,
    dtype=dtypes,
)
def test_norm_of_vectors_for_other_orders(cases_dir, order, shape, data, seed, dtype):
    """Vector p-norms along one axis (1-D x, or an int axis): 1, 3, 1.5, inf, -inf."""
    ndim = len(shape)
    axis = data.draw(st.integers(-ndim, ndim - 1) if ndim > 1 else st.sampled_from([None, 0, -1]))
    keepdims = data.draw(st.booleans())
    spelling = data.draw(st.sampled_from(["{}", "ord={}"])).format(order)
    call = f"np.linalg.norm(x, {spelling}, axis={axis!r}, keepdims={keepdims})"
    twin = VECTOR_ORDERS[order].replace("$AX", repr(axis)).replace("$KD", repr(keepdims))
    rng = np.random.default_rng(seed)
    # distinct magnitudes >= 0.25, random signs: no tie for inf/-inf, no kink of abs
    x = (1.25 + spread(rng, shape, 1.0)) * rng.choice([-1.0, 1.0], size=shape)
    w = rng.normal(size=result_shape(call, x=shape))
    prog = program(weighted(call, "x"), cases_dir, weighted(twin, "x"))
    check(prog, {"x": x, "w": w}, dtype=dtype)


@pytest.mark.parametrize(
    ("call", "shape"),
    [
        ("np.linalg.norm(x, 2)", (3, 4)),  # the spectral norm
        ("np.linalg.norm(x, ord=1)", (3, 4)),  # max column sum
        ("np.linalg.norm(x, ord=-np.inf, axis=(0, 1))", (3, 4)),
        ("np.linalg.norm(x, ord='nuc')", (3, 3)),
    ],
)
def test_matrix_norms_other_than_frobenius_are_rejected_or_right(cases_dir, call, shape):
    """Matrix norms except Frobenius are refused (documented): never a silently wrong gradient."""
    prog = program(f"def f(x):\n    return {call}\n", cases_dir)
    x = np.random.default_rng(sum(shape)).normal(size=shape)
    try:
        value, grads = prog.grad()(x)
    except (srcgrad.TransformError, NotImplementedError):
        return
    expected = central_differences(prog.plain, {"x": x}, "x")
    assert_close(grads.x, expected, 1e-5, 1e-6, f"{call}: gradient of a matrix norm")


# --- products ------------------------------------------------------------------------------------

MATMUL_FORMS = [  # operand shapes by dimension letter; "1" is a size-1 batch dimension
    ("n", "n"),
    ("kn", "n"),
    ("n", "nm"),
    ("kn", "nm"),
    ("bkn", "nm"),
    ("bkn", "bnm"),
    ("kn", "bnm"),
    ("bkn", "n"),
    ("1kn", "bnm"),
    ("bkn", "1nm"),
    ("c1kn", "bnm"),
]


def letters_to_shape(letters: str, dims: dict[str, int]) -> tuple[int, ...]:
    return tuple(1 if c == "1" else dims[c] for c in letters)


@SETTINGS
@given(
    form=st.sampled_from(MATMUL_FORMS),
    dims=st.fixed_dictionaries({c: st.integers(1, 4) for c in "bcknm"}),
    data=st.data(),
    seed=seeds,
    dtype=dtypes,
)
def test_matmul_and_dot(cases_dir, form, dims, data, seed, dtype):
    a_shape, b_shape = (letters_to_shape(s, dims) for s in form)
    spellings = ["a @ b", "np.matmul(a, b)"]
    if len(a_shape) <= 2 and len(b_shape) <= 2:
        spellings += ["np.dot(a, b)", "a.dot(b)"]
    expression = data.draw(st.sampled_from(spellings))
    rng = np.random.default_rng(seed)
    args = {"a": rng.normal(size=a_shape), "b": rng.normal(size=b_shape)}
    twin = "np.dot(a, b)" if expression == "a.dot(b)" else expression  # autograd: no .dot
    prog = program(
        f"def f(a, b):\n    return np.sin({expression})\n",
        cases_dir,
        f"def f(a, b):\n    return np.sin({twin})\n",
    )
    check(prog, args, dtype=dtype)


@FEW
@given(
    dims=st.fixed_dictionaries({c: st.integers(1, 4) for c in "bnm"}),
    seed=seeds,
    dtype=dtypes,
    spelling=st.sampled_from(["a @ b", "np.matmul(a, b)"]),
)
def test_matmul_vector_with_a_stack_of_matrices(cases_dir, dims, seed, dtype, spelling):
    """(n,) @ (b, n, m): the vector is broadcast against every matrix of the stack."""
    rng = np.random.default_rng(seed)
    args = {
        "a": rng.normal(size=(dims["n"],)),
        "b": rng.normal(size=(dims["b"], dims["n"], dims["m"])),
    }
    check(program(f"def f(a, b):\n    return np.sin({spelling})\n", cases_dir), args, dtype=dtype)


@SETTINGS
@given(
    a_shape=st.sampled_from([(3,), (1,), (2, 2), (4,)]),
    m=st.integers(1, 4),
    seed=seeds,
    dtype=dtypes,
)
def test_outer(cases_dir, a_shape, m, seed, dtype):
    """np.outer flattens its inputs (autograd's rule does not, so its twin flattens first)."""
    rng = np.random.default_rng(seed)
    source = "def f(a, b):\n    return np.sin(np.outer(a, b))\n"
    reference = "def f(a, b):\n    return np.sin(np.outer(np.ravel(a), np.ravel(b)))\n"
    args = {"a": rng.normal(size=a_shape), "b": rng.normal(size=(m,))}
    check(program(source, cases_dir, reference), args, dtype=dtype)


EINSUMS = [
    "ij,jk->ik",
    "ij,jk",
    "ij,ij->i",
    "ij,ij->",
    "ij,ij",
    "i,i->",
    "i,i",
    "i,j->ij",
    "i,j",
    "ij,j->i",
    "ij,kj->ik",
    "ij,jh",
    "ba,ac",
    "ijk,ik->j",
    "ijk,kl->ijl",
    "ij,k->k",
    "ij,k->ik",
    "ij,jk->ki",
    "i,i->i",
    "ij,ji->",
    "bij,bjk->bik",
    "ij,jk->",
    "i,jk->kji",
]
EINSUM_DIAGONALS = ["ii,i->i", "ii,j->ij", "iij,j->i", "ij,jj->i", "ii,ii->"]


def einsum_args(spec: str, dims: dict[str, int], rng: np.random.Generator) -> dict[str, Any]:
    left = spec.split("->")[0]
    a, b = left.split(",")
    return {
        "a": rng.normal(size=tuple(dims[c] for c in a)),
        "b": rng.normal(size=tuple(dims[c] for c in b)),
    }


@SETTINGS
@given(
    spec=st.sampled_from(EINSUMS),
    dims=st.fixed_dictionaries({c: st.integers(1, 4) for c in "abchijkl"}),
    seed=seeds,
    dtype=dtypes,
)
def test_einsum(cases_dir, spec, dims, seed, dtype):
    source = f"def f(a, b):\n    return np.sin(np.einsum({spec!r}, a, b))\n"
    args = einsum_args(spec, dims, np.random.default_rng(seed))
    check(program(source, cases_dir), args, dtype=dtype)


@FEW
@given(
    spec=st.sampled_from(EINSUM_DIAGONALS),
    dims=st.fixed_dictionaries({c: st.integers(1, 4) for c in "ij"}),
    seed=seeds,
    dtype=dtypes,
)
def test_einsum_with_a_repeated_index(cases_dir, spec, dims, seed, dtype):
    """A diagonal (`ii`): the adjoint lands on the diagonal only (autograd cannot do these)."""
    source = f"def f(a, b):\n    return np.sin(np.einsum({spec!r}, a, b))\n"
    args = einsum_args(spec, dims, np.random.default_rng(seed))
    check(program(source, cases_dir, autograd_ok=False), args, dtype=dtype)


# --- shape changes -------------------------------------------------------------------------------


@SETTINGS
@given(shape=shapes(0, 4), data=st.data(), seed=seeds, dtype=dtypes)
def test_transpose(cases_dir, shape, data, seed, dtype):
    ndim = len(shape)
    perm = tuple(data.draw(st.permutations(range(ndim))))
    explicit = f"np.transpose(x, {perm})"
    choices = [
        ("x.T", "x.T"),
        ("np.transpose(x)", "np.transpose(x)"),
        (explicit, explicit),
        (f"np.transpose(x, axes={perm})", explicit),
        (f"x.transpose({perm})", explicit),
    ]
    if ndim >= 2:  # varargs, which autograd's boxes do not take
        choices.append((f"x.transpose({', '.join(map(str, perm))})", explicit))
    call, twin = data.draw(st.sampled_from(choices))
    reference = weighted(twin, "x")
    rng = np.random.default_rng(seed)
    args = {"x": rng.normal(size=shape), "w": rng.normal(size=result_shape(call, x=shape))}
    check(program(weighted(call, "x"), cases_dir, reference), args, dtype=dtype)


@FEW
@given(shape=shapes(2, 4), data=st.data(), seed=seeds, dtype=dtypes)
def test_transpose_with_negative_axes(cases_dir, shape, data, seed, dtype):
    """np.transpose accepts negative axes, e.g. (-1, 0, 1) for (2, 0, 1)."""
    ndim = len(shape)
    perm = tuple(data.draw(st.permutations(range(ndim))))
    perm = tuple(p - ndim if data.draw(st.booleans()) else p for p in perm)
    if min(perm) >= 0:
        perm = (perm[0] - ndim, *perm[1:])  # at least one negative axis
    call = f"np.transpose(x, {perm})"
    reference = weighted(f"np.transpose(x, {tuple(p % ndim for p in perm)})", "x")
    rng = np.random.default_rng(seed)
    args = {"x": rng.normal(size=shape), "w": rng.normal(size=result_shape(call, x=shape))}
    check(program(weighted(call, "x"), cases_dir, reference), args, dtype=dtype)


def factorisations(size: int, max_len: int = 3) -> list[tuple[int, ...]]:
    """Every shape of at most `max_len` dims holding `size` elements (1s included)."""
    found: set[tuple[int, ...]] = set()

    def extend(prefix: tuple[int, ...], rest: int) -> None:
        if rest == 1:
            found.add(prefix)
        if len(prefix) == max_len:
            return
        for d in range(1, rest + 1):
            if rest % d == 0:
                extend((*prefix, d), rest // d)

    extend((), size)
    return sorted(t for t in found if t)


@SETTINGS
@given(shape=shapes(0, 3), data=st.data(), seed=seeds, dtype=dtypes)
def test_reshape(cases_dir, shape, data, seed, dtype):
    size = int(np.prod(shape, dtype=np.int64))
    target = data.draw(st.sampled_from(factorisations(size)))
    if data.draw(st.booleans()):
        k = data.draw(st.integers(0, len(target) - 1))
        target = (*target[:k], -1, *target[k + 1 :])
    call = data.draw(
        st.sampled_from(
            [
                f"x.reshape({target})",
                f"x.reshape({', '.join(map(str, target))})",
                f"np.reshape(x, {target})",
            ]
        )
    )
    reference = weighted(f"np.reshape(x, {target})", "x")
    rng = np.random.default_rng(seed)
    args = {"x": rng.normal(size=shape), "w": rng.normal(size=result_shape(call, x=shape))}
    check(program(weighted(call, "x"), cases_dir, reference), args, dtype=dtype)


@SETTINGS
@given(shape=shapes(0, 3), data=st.data(), seed=seeds, dtype=dtypes)
def test_expand_dims(cases_dir, shape, data, seed, dtype):
    ndim = len(shape)
    added = data.draw(st.integers(1, 2))
    out_ndim = ndim + added
    chosen = data.draw(st.permutations(range(out_ndim)))[:added]
    chosen = tuple(a - out_ndim if data.draw(st.booleans()) else a for a in chosen)
    axis = chosen[0] if added == 1 and data.draw(st.booleans()) else chosen
    call = f"np.expand_dims(x, {axis!r})"
    rng = np.random.default_rng(seed)
    args = {"x": rng.normal(size=shape), "w": rng.normal(size=result_shape(call, x=shape))}
    check(program(weighted(call, "x"), cases_dir), args, dtype=dtype)


@SETTINGS
@given(shape=shapes(1, 4), data=st.data(), seed=seeds, dtype=dtypes)
def test_squeeze(cases_dir, shape, data, seed, dtype):
    ones = data.draw(st.sets(st.integers(0, len(shape) - 1), min_size=1))
    shape = tuple(1 if i in ones else s for i, s in enumerate(shape))
    unit = [i for i, s in enumerate(shape) if s == 1]
    k = data.draw(st.sampled_from(unit))
    k = k - len(shape) if data.draw(st.booleans()) else k
    call = data.draw(
        st.sampled_from(
            [
                "np.squeeze(x)",
                "x.squeeze()",
                f"np.squeeze(x, axis={k})",
                f"np.squeeze(x, {k})",
                f"x.squeeze(axis={k})",
                f"np.squeeze(x, axis={tuple(unit)})",
            ]
        )
    )
    reference = weighted(call.replace("x.squeeze(", "np.squeeze(x, ").replace(", )", ")"), "x")
    rng = np.random.default_rng(seed)
    args = {"x": rng.normal(size=shape), "w": rng.normal(size=result_shape(call, x=shape))}
    check(program(weighted(call, "x"), cases_dir, reference), args, dtype=dtype)


@SETTINGS
@given(
    shape=shapes(0, 3),
    call=st.sampled_from(["np.ravel(x)", "x.ravel()", "x.flatten()"]),
    seed=seeds,
    dtype=dtypes,
)
def test_ravel(cases_dir, shape, call, seed, dtype):
    rng = np.random.default_rng(seed)
    args = {"x": rng.normal(size=shape), "w": rng.normal(size=result_shape(call, x=shape))}
    check(program(weighted(call, "x"), cases_dir), args, dtype=dtype)


@st.composite
def joined(draw: Any, kind: str) -> tuple[str, list[tuple[int, ...]], tuple[int, ...]]:
    """A concatenate/stack call on 2 or 3 operands (parameters or expressions of them)."""
    base = draw(shapes(1, 3, 1, 3))
    ndim = len(base)
    count = draw(st.integers(2, 3))
    if kind == "concatenate":
        axis = draw(st.integers(-ndim, ndim - 1))
        sides = [draw(st.integers(1, 3)) for _ in range(count)]
        operand_shapes = [
            tuple(s if i != axis % ndim else side for i, s in enumerate(base)) for side in sides
        ]
    else:
        axis = draw(st.integers(-ndim - 1, ndim))
        operand_shapes = [base] * count
    terms = [
        draw(st.sampled_from([name, f"2.0 * {name}", f"np.exp({name})"])) for name in "abc"[:count]
    ]
    items = ", ".join(terms)
    items = f"[{items}]" if draw(st.booleans()) else f"({items})"
    keyword = f", axis={axis}" if axis != 0 or draw(st.booleans()) else ""
    call = f"np.{kind}({items}{keyword})"
    shape = result_shape(call, **dict(zip("abc", operand_shapes, strict=False)))
    return call, operand_shapes, shape


@SETTINGS
@given(case=joined("concatenate"), seed=seeds, dtype=dtypes)
def test_concatenate(cases_dir, case, seed, dtype):
    call, operand_shapes, out_shape = case
    rng = np.random.default_rng(seed)
    names = "abc"[: len(operand_shapes)]
    args = {n: rng.normal(size=s) for n, s in zip(names, operand_shapes, strict=True)}
    args["w"] = rng.normal(size=out_shape)
    check(program(weighted(call, ", ".join(names)), cases_dir), args, dtype=dtype)


@FEW
@given(a_shape=shapes(1, 3, 1, 3), b_shape=shapes(1, 3, 1, 3), seed=seeds, dtype=dtypes)
def test_concatenate_with_axis_none(cases_dir, a_shape, b_shape, seed, dtype):
    """axis=None flattens every operand first (any shapes)."""
    call = "np.concatenate([a, 2.0 * b], axis=None)"
    rng = np.random.default_rng(seed)
    args = {"a": rng.normal(size=a_shape), "b": rng.normal(size=b_shape)}
    args["w"] = rng.normal(size=result_shape(call, a=a_shape, b=b_shape))
    twin = "np.concatenate([np.ravel(a), np.ravel(2.0 * b)])"  # autograd: no axis=None
    check(program(weighted(call, "a, b"), cases_dir, weighted(twin, "a, b")), args, dtype=dtype)


@SETTINGS
@given(case=joined("stack"), seed=seeds, dtype=dtypes)
def test_stack(cases_dir, case, seed, dtype):
    call, operand_shapes, out_shape = case
    rng = np.random.default_rng(seed)
    names = "abc"[: len(operand_shapes)]
    args = {n: rng.normal(size=s) for n, s in zip(names, operand_shapes, strict=True)}
    args["w"] = rng.normal(size=out_shape)
    check(program(weighted(call, ", ".join(names)), cases_dir), args, dtype=dtype)


# --- indexing ------------------------------------------------------------------------------------

BASIC_INDEXING = [  # (subscript, minimum ndim)
    ("x[0]", 1),
    ("x[-1]", 1),
    ("x[1:3]", 1),
    ("x[:, 0]", 2),
    ("x[::2]", 1),
    ("x[1:, -1]", 2),
    ("x[..., 0]", 1),
    ("x[None, ::-1]", 1),
    ("x[-2:]", 1),
    ("x[0, 1]", 2),
    ("x[:, 1:3]", 2),
    ("x[1:-1, ::2]", 2),
    ("x[:, None, 0]", 2),
    ("x[2, :, 1]", 3),
    ("x[..., ::-1, 0]", 2),
    ("x[:]", 1),
    ("x[-3::-1]", 1),
    ("x[1:2]", 1),
    ("x[-1, ...]", 1),
]


@SETTINGS
@given(case=st.sampled_from(BASIC_INDEXING), data=st.data(), seed=seeds, dtype=dtypes)
def test_basic_indexing(cases_dir, case, data, seed, dtype):
    subscript, min_ndim = case
    shape = data.draw(shapes(min_ndim, 3, 3, 4))
    rng = np.random.default_rng(seed)
    args = {"x": rng.normal(size=shape), "w": rng.normal(size=result_shape(subscript, x=shape))}
    check(program(weighted(subscript, "x"), cases_dir), args, dtype=dtype)


@SETTINGS
@given(shape=shapes(1, 3, 3, 5), data=st.data(), seed=seeds, dtype=dtypes)
def test_indexing_with_integer_parameters(cases_dir, shape, data, seed, dtype):
    """Indices and slice bounds passed as arguments: `x[i]`, `x[i:j]`, `x[:, i]`."""
    n = shape[0]
    i = data.draw(st.integers(-n, n - 1))
    j = data.draw(st.integers(-n, n))
    subscript, params, ints = data.draw(
        st.sampled_from(
            [
                ("x[i]", "x, i", {"i": i}),
                ("x[i:j]", "x, i, j", {"i": i, "j": j}),
                ("x[i:]", "x, i", {"i": i}),
                ("x[::j]", "x, j", {"j": max(1, abs(j))}),
            ]
            + (
                [("x[:, i]", "x, i", {"i": data.draw(st.integers(-shape[1], shape[1] - 1))})]
                if len(shape) >= 2
                else []
            )
        )
    )
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape)
    env = {"x": x, **ints}
    w = rng.normal(size=np.shape(eval(subscript, {}, env)))
    prog = program(weighted(subscript, params), cases_dir)
    check(prog, {"x": x, **ints, "w": w}, wrt=("x", "w"), dtype=dtype)


INTEGER_INDEXING = [  # (subscript, x ndim, index arrays as (name, which axis of x, index ndim))
    ("x[idx]", 1, [("idx", 0, 1)]),
    ("x[idx]", 1, [("idx", 0, 2)]),
    ("x[idx]", 2, [("idx", 0, 1)]),
    ("x[idx, :]", 2, [("idx", 0, 1)]),
    ("x[:, idx]", 2, [("idx", 1, 1)]),
    ("x[idx, 1]", 2, [("idx", 0, 1)]),
    ("x[idx, jdx]", 2, [("idx", 0, 1), ("jdx", 1, 1)]),
    ("x[np.arange(len(jdx)), jdx]", 2, [("jdx", 1, 1)]),
    ("x[idx][:, jdx]", 2, [("idx", 0, 1), ("jdx", 1, 1)]),
]


@SETTINGS
@given(case=st.sampled_from(INTEGER_INDEXING), data=st.data(), seed=seeds, dtype=dtypes)
def test_integer_array_indexing_adds_repeated_indices(cases_dir, case, data, seed, dtype):
    subscript, ndim, index_specs = case
    rng = np.random.default_rng(seed)
    m = data.draw(st.integers(2, 6))  # index length (the rows of x, for the arange form)
    shape = tuple(data.draw(st.integers(1, 4)) for _ in range(ndim))
    if "arange" in subscript:
        shape = (m, *shape[1:])
    if ", 1]" in subscript:  # the constant index needs a second column
        shape = (shape[0], max(2, shape[1]))
    x = rng.normal(size=shape)
    indices = {}
    for name, axis, index_ndim in index_specs:
        size = shape[axis]
        index = rng.integers(-size, size, size=(m,) if index_ndim == 1 else (2, m))
        index.flat[-1] = index.flat[0]  # at least one repeat
        indices[name] = index
    w = rng.normal(size=np.shape(eval(subscript, {"np": np}, {"x": x, **indices})))
    params = ", ".join(["x", *indices])
    prog = program(weighted(subscript, params), cases_dir)
    check(prog, {"x": x, **indices, "w": w}, wrt=("x", "w"), dtype=dtype)


BOOLEAN_MASKS = [  # (source of f, parameters differentiated, parameters with zero gradient)
    ("def f(x):\n    return np.sum(np.sin(x[x > 0]) ** 2)\n", ("x",), ()),
    ("def f(x, m):\n    return np.exp(x[m]) * 2.0\n", ("x",), ()),
    ("def f(x, y):\n    return np.tanh(x[y > 0]) * y[y > 0]\n", ("x", "y"), ()),
    ("def f(x, y):\n    return np.sin(x[x < y])\n", ("x", "y"), ("y",)),
    ("def f(x):\n    return x[x > 10.0] * 3.0 + np.sum(x[x < -10.0])\n", ("x",), ("x",)),
]


@SETTINGS
@given(case=st.sampled_from(BOOLEAN_MASKS), shape=shapes(1, 3, 1, 4), seed=seeds, dtype=dtypes)
def test_boolean_mask_indexing(cases_dir, case, shape, seed, dtype):
    source, wrt, zero = case
    rng = np.random.default_rng(seed)
    both = spread(rng, (2, *shape))  # x and y distinct, none at the 0 threshold
    args: dict[str, Any] = {"x": both[0]}
    if "m)" in source:
        args["m"] = rng.random(size=shape) < 0.5
    if "y)" in source:
        args["y"] = both[1]
    check(program(source, cases_dir), args, wrt=wrt, dtype=dtype, zero=zero)


@FEW
@given(rows=st.integers(1, 5), cols=st.integers(1, 4), seed=seeds, dtype=dtypes)
def test_boolean_mask_selects_rows(cases_dir, rows, cols, seed, dtype):
    """A 1-D mask on a 2-D array selects whole rows."""
    rng = np.random.default_rng(seed)
    source = "def f(x, m):\n    return np.sin(x[m]) * np.arange(x.shape[1])\n"
    args = {"x": rng.normal(size=(rows, cols)), "m": rng.random(size=rows) < 0.6}
    check(program(source, cases_dir), args, wrt=("x",), dtype=dtype)


# --- selection -----------------------------------------------------------------------------------


@st.composite
def broadcast_triple(draw: Any) -> list[tuple[int, ...]]:
    result = draw(shapes(1, 3, 2, 4))
    out = []
    for _ in range(3):
        drop = draw(st.integers(0, len(result)))
        out.append(tuple(1 if draw(st.booleans()) else s for s in result[drop:]))
    return out


WHERES = [  # autograd's where does not sum a broadcast branch back, so its twin uses a 0/1 mask
    ("np.where(c > 0, a, b)", "(c > 0) * a + (c <= 0) * b"),
    ("np.where(c > 0, np.sin(a), b ** 2)", "(c > 0) * np.sin(a) + (c <= 0) * b ** 2"),
    ("np.where(c < 0, a * b, 0.0)", "(c < 0) * (a * b)"),
    ("np.where(a > b, a, b) * c", "((a > b) * a + (a <= b) * b) * c"),
]


@SETTINGS
@given(case=st.sampled_from(WHERES), operand_shapes=broadcast_triple(), seed=seeds, dtype=dtypes)
def test_where(cases_dir, case, operand_shapes, seed, dtype):
    expression, twin = case
    rng = np.random.default_rng(seed)
    values = spread(rng, (3, *np.broadcast_shapes(*operand_shapes)))
    args = {
        n: values[k][
            tuple(
                0 if s == 1 else slice(None) for s in ((1,) * (values[k].ndim - len(shape)) + shape)
            )
        ].reshape(shape)
        for k, (n, shape) in enumerate(zip("cab", operand_shapes, strict=True))
    }
    zero = ("c",) if expression.startswith("np.where(c") else ()
    prog = program(
        f"def f(c, a, b):\n    return {expression}\n",
        cases_dir,
        f"def f(c, a, b):\n    return {twin}\n",
    )
    check(prog, args, dtype=dtype, zero=zero)


COMPARISONS = [  # (expression, params with zero gradient)
    ("(x > y) * x + (x <= y) * y", ()),
    ("x * (x >= 0)", ()),
    ("np.greater(x, y) * y", ("x",)),
    ("np.less(x, 0) * x ** 2", ()),
    ("(x < y) * np.sin(x)", ("y",)),
    ("(x != y) * x", ("y",)),
    ("(x == x) * y", ("x",)),
    ("np.greater_equal(x, y) * x + np.less_equal(x, y) * y", ()),
    ("np.not_equal(x, y) * np.equal(y, y) * x * y", ()),
]


@SETTINGS
@given(case=st.sampled_from(COMPARISONS), pair=broadcast_pair(), seed=seeds, dtype=dtypes)
def test_comparisons_are_masks_without_gradient(cases_dir, case, pair, seed, dtype):
    expression, zero = case
    rng = np.random.default_rng(seed)
    values = spread(rng, (int(np.prod(pair[0])) + int(np.prod(pair[1])),))
    x = values[: int(np.prod(pair[0]))].reshape(pair[0])
    y = values[int(np.prod(pair[0])) :].reshape(pair[1])
    prog = program(f"def f(x, y):\n    return {expression}\n", cases_dir)
    check(prog, {"x": x, "y": y}, dtype=dtype, zero=zero if "y" in expression else ())


def away_from(x: np.ndarray, bounds: list[Any], gap: float = 1e-3) -> np.ndarray:
    """`x` moved off the given (broadcastable) points by at least `gap`."""
    for bound in bounds:
        if bound is None:
            continue
        close = np.abs(x - bound) < gap
        x = np.where(close, x + 4 * gap, x)
    return x


CLIPS = [
    "np.clip(x, -0.5, 0.5)",
    "np.clip(x, None, 0.5)",
    "np.clip(x, -0.5, None)",
    "x.clip(-0.5, 0.5)",
    "np.clip(x, 0.5, 1.5) * x",
]


@SETTINGS
@given(call=st.sampled_from(CLIPS), shape=shapes(0, 3), seed=seeds, dtype=dtypes)
def test_clip_with_constant_bounds(cases_dir, call, shape, seed, dtype):
    rng = np.random.default_rng(seed)
    x = away_from(spread(rng, shape), [-0.5, 0.5, 1.5])
    check(program(f"def f(x):\n    return np.sin({call})\n", cases_dir), {"x": x}, dtype=dtype)


@SETTINGS
@given(pair=broadcast_pair(), seed=seeds, dtype=dtypes)
def test_clip_with_array_bounds(cases_dir, pair, seed, dtype):
    """The bounds get the gradient where they bind (autograd only differentiates x)."""
    lo_shape, hi_shape = pair
    shape = np.broadcast_shapes(lo_shape, hi_shape)
    rng = np.random.default_rng(seed)
    lo = -0.5 + rng.uniform(-0.2, 0.2, size=lo_shape)
    hi = 0.5 + rng.uniform(-0.2, 0.2, size=hi_shape)
    x = away_from(away_from(spread(rng, shape), [lo]), [hi])
    prog = program("def f(x, lo, hi):\n    return np.sin(np.clip(x, lo, hi)) * 2.0\n", cases_dir)
    check(prog, {"x": x, "lo": lo, "hi": hi}, dtype=dtype, no_reference=("lo", "hi"))


ABS_AND_RELU = [
    "np.abs(x)",
    "abs(x)",
    "np.absolute(x)",
    "np.fabs(x)",
    "np.maximum(0, x)",
    "np.maximum(x, 0.0)",
    "np.minimum(x, 0)",
    "np.maximum(x, y)",
    "np.minimum(x, y)",
    "np.maximum(0, x * y)",
]


@SETTINGS
@given(expression=st.sampled_from(ABS_AND_RELU), pair=broadcast_pair(), seed=seeds, dtype=dtypes)
def test_abs_and_relu_away_from_kinks(cases_dir, expression, pair, seed, dtype):
    rng = np.random.default_rng(seed)
    n = int(np.prod(pair[0]))
    values = spread(rng, (n + int(np.prod(pair[1])),))
    args = {"x": values[:n].reshape(pair[0]), "y": signed(rng, pair[1])}
    if "y" in expression:
        args["y"] = values[n:].reshape(pair[1])
    prog = program(f"def f(x, y):\n    return np.sin({expression}) * 1.5\n", cases_dir)
    check(prog, args, dtype=dtype)


@pytest.mark.parametrize(
    ("expression", "at_kink"),
    [
        ("np.abs(x)", 0.0),
        ("abs(x)", 0.0),
        ("np.maximum(0, x)", 0.5),
        ("np.maximum(x, 0.0)", 0.5),
        ("np.minimum(x, 0)", 0.5),
        ("np.max(x)", None),
    ],
)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_kink_conventions_match_autograd(cases_dir, expression, at_kink, dtype):
    """At the kink: abs' = 0, relu' = 1/2 (a tie of maximum), like autograd."""
    x = np.array([-1.5, 0.0, 2.0, 0.0, -0.0, 2.0])
    prog = program(f"def f(x):\n    return {expression} * 3.0\n", cases_dir)
    grads = check(prog, {"x": x}, dtype=dtype, fd=False)
    if at_kink is not None:
        np.testing.assert_array_equal(grads.x[[1, 3, 4]], 3.0 * at_kink)


NONDIFFERENTIABLE = [  # (expression, shape constraint, input kind)
    ("x * np.sign(x)", None, "spread"),
    ("np.floor(x) * x", None, "offgrid"),
    ("np.ceil(x) * np.sin(x)", None, "offgrid"),
    ("np.round(x) * x", None, "offhalf"),
    ("np.round(x, 1) * x", None, "offhalf_tenth"),
    ("x[np.argmax(x)] * 2.0 + x[np.argmin(x)]", "1d", "spread"),
    ("np.sin(x) * np.arange(x.shape[-1])", None, "spread"),
    ("np.sum(x * np.arange(len(x)))", "1d", "spread"),
    ("x + np.zeros(x.shape)", None, "spread"),
    ("x * np.ones(x.shape) * x", None, "spread"),
    ("np.zeros_like(x) + x * x", None, "spread"),
    ("x / x.size + x * x.ndim", None, "spread"),
    ("np.ones(len(x)) @ x", "1d2d", "spread"),
    ("x * np.linspace(0.0, 1.0, x.size).reshape(x.shape)", None, "spread"),
]


def nondifferentiable_input(kind: str, rng: np.random.Generator, shape: tuple[int, ...]) -> Any:
    """Values away from where the piecewise-constant helper jumps (central differences)."""
    whole = rng.integers(-3, 4, size=shape)
    frac = rng.uniform(0.1, 0.4, size=shape) + 0.5 * rng.integers(0, 2, size=shape)
    if kind == "offgrid":
        return whole + frac
    if kind == "offhalf":
        return whole + frac + 0.5  # never k + 1/2
    if kind == "offhalf_tenth":
        return (whole + frac + 0.5) / 10
    return spread(rng, shape)


@SETTINGS
@given(case=st.sampled_from(NONDIFFERENTIABLE), data=st.data(), seed=seeds, dtype=dtypes)
def test_nondifferentiable_helpers_pass_through(cases_dir, case, data, seed, dtype):
    expression, constraint, kind = case
    if constraint == "1d":
        shape = data.draw(shapes(1, 1, 1, 5))
    elif constraint == "1d2d":
        shape = data.draw(shapes(1, 2, 1, 4))
    else:
        shape = data.draw(shapes(0, 3))
        if "x.shape[-1]" in expression and not shape:
            shape = (3,)
    rng = np.random.default_rng(seed)
    x = nondifferentiable_input(kind, rng, shape)
    check(program(f"def f(x):\n    return {expression}\n", cases_dir), {"x": x}, dtype=dtype)


# --- elementwise ---------------------------------------------------------------------------------

UNARY = {  # name: (domain low, high)
    "sin": (-2, 2),
    "cos": (-2, 2),
    "tan": (-1, 1),
    "arcsin": (-0.9, 0.9),
    "arccos": (-0.9, 0.9),
    "arctan": (-3, 3),
    "sinh": (-2, 2),
    "cosh": (-2, 2),
    "tanh": (-2, 2),
    "arcsinh": (-3, 3),
    "arccosh": (1.2, 3),
    "arctanh": (-0.9, 0.9),
    "exp": (-2, 2),
    "expm1": (-2, 2),
    "exp2": (-2, 2),
    "log": (0.2, 3),
    "log1p": (-0.8, 3),
    "log2": (0.2, 3),
    "log10": (0.2, 3),
    "sqrt": (0.2, 3),
    "cbrt": (0.2, 3),
    "square": (-2, 2),
    "reciprocal": (0.3, 3),
    "negative": (-2, 2),
    "asin": (-0.9, 0.9),
    "acos": (-0.9, 0.9),
    "atan": (-3, 3),
    "asinh": (-3, 3),
    "acosh": (1.2, 3),
    "atanh": (-0.9, 0.9),
}
TWINS = {"cbrt": "x ** (1.0 / 3.0)"}  # autograd has no cbrt rule (the domain is positive)
SCALAR_MIXED = [
    "x ** 2",
    "x ** 2.5",
    "2.0 ** x",
    "3.0 / x",
    "x * 2.5 - 1.0",
    "-x",
    "1.0 - x",
    "np.power(x, 3)",
    "x ** -1.5",
]


@SETTINGS
@given(name=st.sampled_from(sorted(UNARY)), shape=shapes(0, 3), seed=seeds, dtype=dtypes)
def test_elementwise_functions(cases_dir, name, shape, seed, dtype):
    low, high = UNARY[name]
    rng = np.random.default_rng(seed)
    x = rng.uniform(low, high, size=shape)
    twin = TWINS.get(name, f"np.{name}(x)")
    prog = program(
        f"def f(x):\n    return np.{name}(x) * 1.5\n",
        cases_dir,
        f"def f(x):\n    return {twin} * 1.5\n",
    )
    check(prog, {"x": x}, dtype=dtype)


@SETTINGS
@given(expression=st.sampled_from(SCALAR_MIXED), shape=shapes(0, 3), seed=seeds, dtype=dtypes)
def test_arrays_with_python_numbers(cases_dir, expression, shape, seed, dtype):
    """A Python number against a float32 array keeps float32 (NumPy's weak scalars)."""
    rng = np.random.default_rng(seed)
    check(
        program(f"def f(x):\n    return {expression}\n", cases_dir),
        {"x": positive(rng, shape)},
        dtype=dtype,
    )


BINARY = [
    "x + y",
    "x - y",
    "x * y",
    "x / y",
    "x ** y",
    "np.sin(x) * np.exp(y)",
    "np.hypot(x, y)",
    "np.arctan2(x, y)",
    "np.maximum(x, y)",
    "x * y + x / y - y",
    "np.add(x, y)",
    "np.subtract(x, y)",
    "np.multiply(x, y)",
    "np.divide(x, y)",
    "np.power(x, y)",
    "(x - y) ** 2",
    "np.minimum(x, y) * x",
]


@SETTINGS
@given(expression=st.sampled_from(BINARY), pair=broadcast_pair(), seed=seeds, dtype=dtypes)
def test_broadcasting_binary_operations(cases_dir, expression, pair, seed, dtype):
    """The adjoint of a broadcast operand is summed back over its size-1 and missing dims."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(pair[0]))
    values = 1.25 + spread(rng, (n + int(np.prod(pair[1])),), 1.0)  # in [0.25, 2.25], distinct
    args = {"x": values[:n].reshape(pair[0]), "y": values[n:].reshape(pair[1])}
    check(program(f"def f(x, y):\n    return {expression}\n", cases_dir), args, dtype=dtype)


@pytest.mark.parametrize(
    ("x_shape", "y_shape"),
    [
        ((3, 1), (4,)),
        ((4,), (3, 1)),
        ((1,), (5,)),
        ((), (2, 3)),
        ((2, 1, 3), (4, 1)),
        ((1, 1), (2, 3)),
        ((2, 3), ()),
        ((5, 1, 1), (1, 2, 1)),
    ],
)
def test_broadcasting_named_pairs(cases_dir, x_shape, y_shape):
    rng = np.random.default_rng(sum(x_shape) * 7 + sum(y_shape))
    prog = program("def f(x, y):\n    return np.exp(x * y) / (1.0 + y ** 2) - x\n", cases_dir)
    for dtype in (np.float64, np.float32):
        check(prog, {"x": rng.normal(size=x_shape), "y": rng.normal(size=y_shape)}, dtype=dtype)


def test_central_differences_helper_detects_a_wrong_gradient(cases_dir):
    """The oracle can fail: a deliberately wrong derivative does not pass `assert_close`."""
    prog = program("def f(x):\n    return np.sum(x ** 3)\n", cases_dir)
    x = np.array([0.5, -1.0, 2.0])
    fd = central_differences(prog.plain, {"x": x}, "x")
    assert_close(fd, 3 * x**2, 1e-6, 1e-8, "finite differences of x^3")
    with pytest.raises(AssertionError):
        assert_close(2 * x**2, fd, 1e-5, ATOL_FRACTION[np.float64], "wrong derivative")
