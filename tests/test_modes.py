"""The modes beyond `grad` (srcgrad.modes): forward, jvp, hvp, hessian, jacobian.

Why: each mode is new generated code (tangent sweeps, forward over reverse, per-entry loops) on
top of `grad`'s machinery, so each can go wrong on its own: a tangent rule, a shape, a dtype,
the float fast path, a name bound on one code path and read on another. Every number here is
checked against something srcgrad did not compute the same way:
  * on hundreds of generated programs, forward mode against reverse mode (`grad`, itself checked
    against SymPy in test_generated_programs.py): a JVP must equal gradient · direction, and an
    HVP the central difference of the gradient along the direction;
  * on hand-picked functions (Rosenbrock, Gaussian log-likelihoods, a small MLP), Hessians,
    Jacobians and JVPs against autograd (an independent AD with its own rules), SymPy where
    the function is scalar, hand-derived formulas, and central finite differences of srcgrad's
    gradients.
"""

from __future__ import annotations

import ast
import inspect
import warnings
from collections import namedtuple
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
import sympy as sp
from array_cases import Program, assert_close, program, spread
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from programs import CHECKED, FUNCTION_NAMES, Inputs, inputs_for, programs
from support import central_difference
from test_generated_programs import differentiate

import srcgrad

# Programs per function of the contract (33 functions), as in test_generated_programs.py but
# fewer: these check modes built on grad's machinery, not each derivative rule again.
SCALAR_PER_FUNCTION = 3
BATCHED_PER_FUNCTION = 3

EXACT_RTOL = 1e-12  # the same float arithmetic, possibly in another order
AD_RTOL = 1e-9  # two exact methods (AD against AD, AD against SymPy)
FD_RTOL = 1e-5  # central differences of exact gradients: O(h^2) and O(eps/h) error
FD_ATOL_FRACTION = 1e-6  # of the largest expected magnitude
AD_ATOL_FRACTION = 1e-9


# --- helpers -------------------------------------------------------------------------------------


def flat(values: Sequence[Any]) -> np.ndarray:
    """Concatenated float64 entries of some numbers/arrays (to compare whole gradients)."""
    return np.concatenate([np.ravel(np.asarray(v, dtype=np.float64)) for v in values])


def leaves(tree: Any) -> list[Any]:
    """The numbers/arrays of a tuple/list/dict tree, in a fixed order."""
    if isinstance(tree, dict):
        return [leaf for key in sorted(tree) for leaf in leaves(tree[key])]
    if isinstance(tree, (tuple, list)):
        return [leaf for item in tree for leaf in leaves(item)]
    return [tree]


def along(tree: Any, direction: Any, t: float) -> Any:
    """``tree + t * direction`` leaf by leaf, keeping the tree's structure."""
    if isinstance(tree, dict):
        return {key: along(tree[key], direction[key], t) for key in tree}
    if isinstance(tree, (tuple, list)):
        return type(tree)(along(a, b, t) for a, b in zip(tree, direction, strict=True))
    return tree + t * direction


def fd_hessian(gradient: Callable[..., Any], args: dict[str, Any], names: Sequence[str]
               ) -> list[list[np.ndarray]]:
    """Central differences of srcgrad's gradient: block [i][j] = d grad_j / d p_i, shaped
    ``S_i + S_j`` (float parameters have shape ())."""
    blocks = []
    for name_i in names:
        base = np.asarray(args[name_i], dtype=np.float64)
        rows = []
        for k in range(base.size):
            def gradient_at(t: float, k: int = k, name_i: str = name_i,
                            base: np.ndarray = base) -> np.ndarray:
                moved = base.copy()
                moved.flat[k] += t
                value = moved if np.ndim(args[name_i]) else float(moved)
                _, grads = gradient(**dict(args, **{name_i: value}))
                return flat([getattr(grads, name) for name in names])

            rows.append(central_difference(gradient_at, 0.0))
        by_row = np.stack(rows)
        blocks.append([])
        start = 0
        for name_j in names:
            shape_j = np.shape(args[name_j])
            size = int(np.prod(shape_j, dtype=np.int64))
            blocks[-1].append(by_row[:, start:start + size].reshape(base.shape + shape_j))
            start += size
    return blocks


def autograd_hessian(reference: Callable[..., Any], args: dict[str, Any],
                     names: Sequence[str]) -> list[list[np.ndarray]]:
    """autograd's Hessian of ``reference`` with respect to ``names``, in ``fd_hessian``'s
    layout: the parameters packed into one vector, the full matrix split into blocks."""
    shapes = [np.shape(args[name]) for name in names]
    sizes = [int(np.prod(shape, dtype=np.int64)) for shape in shapes]
    ends = np.cumsum(sizes)

    def packed(vector: Any) -> Any:
        values = dict(args)
        for name, shape, end, size in zip(names, shapes, ends, sizes, strict=True):
            values[name] = anp.reshape(vector[end - size:end], shape)
        return reference(**values)

    matrix = autograd.hessian(packed)(flat([args[name] for name in names]))
    return [[matrix[ei - si:ei, ej - sj:ej].reshape(shi + shj)
             for ej, sj, shj in zip(ends, sizes, shapes, strict=True)]
            for ei, si, shi in zip(ends, sizes, shapes, strict=True)]


def assert_blocks(actual: Any, expected: list[list[np.ndarray]], rtol: float,
                  atol_fraction: float, what: str) -> None:
    assert len(actual) == len(expected), what
    for i, row in enumerate(expected):
        assert len(actual[i]) == len(row), what
        for j, block in enumerate(row):
            assert np.shape(actual[i][j]) == np.shape(block), f"H[{i}][{j}] shape: {what}"
            assert_close(actual[i][j], block, rtol, atol_fraction, f"H[{i}][{j}]: {what}")


def line_of(prog: Program, text: str) -> int:
    """The line number of ``text`` in the file the plain function was imported from."""
    lines = Path(inspect.getsourcefile(prog.plain)).read_text().splitlines()
    return lines.index(text) + 1


# --- forward against reverse on generated programs -----------------------------------------------


def check_modes_on_program(program_: Any, inputs: Inputs, module_dir: Path, seed: int,
                           batched: bool) -> None:
    """jvp(direction) == grad · direction; hvp's gradient == grad's and its product == the
    central difference of grad along the direction. Batched programs also get the per-element
    check: with the float parameters' directions zero, the JVP is grad * direction elementwise.

    Batched programs pass their float parameters as Python floats beside the arrays: the
    "mixed" path of jvp/hvp (see also test_python_float_beside_arrays).
    """
    assume(all(program_.guards_ok(p) for p in program_.points(inputs)))
    plain, decorated = program_.load(module_dir)
    values = dict(inputs.values)  # batched: Python floats beside arrays (the mixed path)
    args = [values[p] for p in program_.params]
    names = program_.differentiated
    context = program_.describe(Inputs(values))
    gradient = differentiate(program_, plain, decorated)
    value, grads = gradient(*args)
    rng = np.random.default_rng(seed)
    direction = [rng.uniform(-1.0, 1.0, size=np.shape(values[n])) if np.ndim(values[n])
                 else float(rng.uniform(-1.0, 1.0)) for n in names]
    source = decorated if decorated is not None else plain  # jvp(@grad f): f's own source

    jvp = srcgrad.jvp(source, wrt=names)
    jvp_value, derivative = jvp(args, direction)
    assert np.shape(derivative) == np.shape(value), context
    assert_close(jvp_value, value, EXACT_RTOL, 1e-12, f"jvp value\n{context}")
    terms = [np.asarray(getattr(grads, n), dtype=np.float64) * d
             for n, d in zip(names, direction, strict=True)]
    size = sum(float(np.sum(np.abs(t))) for t in terms)  # cancellation can make the sum ~0
    np.testing.assert_allclose(float(np.sum(derivative)), sum(float(np.sum(t)) for t in terms),
                               rtol=AD_RTOL, atol=AD_RTOL * max(1.0, size),
                               err_msg=f"jvp vs grad · direction\n{context}")
    if batched:
        elementwise = [d if np.ndim(values[n]) else 0.0 for n, d in zip(names, direction,
                                                                        strict=True)]
        _, derivative = jvp(args, elementwise)
        expected = np.zeros(np.shape(value))
        for n, d in zip(names, elementwise, strict=True):
            expected = expected + np.asarray(getattr(grads, n)) * d
        np.testing.assert_allclose(derivative, expected, rtol=AD_RTOL,
                                   atol=AD_RTOL * max(1.0, size),
                                   err_msg=f"jvp vs grad * direction per element\n{context}")

    hvp_value, hvp_grads, product = srcgrad.hvp(source, wrt=names)(args, direction)
    assert_close(hvp_value, value, EXACT_RTOL, 1e-12, f"hvp value\n{context}")
    assert hvp_grads._fields == names, context
    assert_close(flat(hvp_grads), flat(grads), EXACT_RTOL, 1e-12, f"hvp grads\n{context}")
    for n in names:
        assert np.shape(getattr(product, n)) == np.shape(values[n]), context

    def gradient_along(t: float) -> np.ndarray:
        moved = dict(values)
        for n, d in zip(names, direction, strict=True):
            moved[n] = values[n] + t * d
        return flat(gradient(*[moved[p] for p in program_.params])[1])

    expected = central_difference(gradient_along, 0.0)
    assert_close(flat(product), expected, FD_RTOL, FD_ATOL_FRACTION,
                 f"hvp vs central differences of grad\n{context}")
    CHECKED["modes " + ("batched" if batched else "scalar")] += 1


@pytest.mark.parametrize("focus", FUNCTION_NAMES)
@settings(max_examples=SCALAR_PER_FUNCTION)
@given(data=st.data())
def test_forward_matches_reverse_on_scalar_programs(focus: str, data: st.DataObject,
                                                    module_dir: Path) -> None:
    """Python floats: the fast path of jvp and hvp (one generated function for each)."""
    program_ = data.draw(programs(focus=focus), label="program")
    inputs = data.draw(inputs_for(program_), label="inputs")
    seed = data.draw(st.integers(0, 2**32 - 1), label="direction seed")
    check_modes_on_program(program_, inputs, module_dir, seed, batched=False)


@pytest.mark.parametrize("focus", FUNCTION_NAMES)
@settings(max_examples=BATCHED_PER_FUNCTION)
@given(data=st.data())
def test_forward_matches_reverse_on_batched_programs(focus: str, data: st.DataObject,
                                                     module_dir: Path) -> None:
    """1-D arrays beside scalars: broadcast tangents, summed gradients of scalar parameters."""
    program_ = data.draw(programs(batched=True, focus=focus), label="program")
    inputs = data.draw(inputs_for(program_), label="inputs")
    seed = data.draw(st.integers(0, 2**32 - 1), label="direction seed")
    check_modes_on_program(program_, inputs, module_dir, seed, batched=True)


# --- Hessians ----------------------------------------------------------------------------------

ROSENBROCK = """
def f(x, y):
    return (1 - x) ** 2 + 100 * (y - x ** 2) ** 2
"""

ROSENBROCK_N = """
def f(x):
    return np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)
"""

GAUSSIAN = """
def f(mu, sigma, x):
    return np.sum(-0.5 * ((x - mu) / sigma) ** 2 - np.log(sigma) - 0.5 * np.log(2 * np.pi))
"""

GAUSSIAN_VECTOR_MEAN = """
def f(mu, sigma, X):
    r = (X - mu) / sigma
    return np.sum(-0.5 * r ** 2 - np.log(sigma))
"""

MLP = """
def f(params, X, y):
    W1, b1, W2, b2 = params
    h = np.tanh(X @ W1 + b1)
    out = h @ W2 + b2
    return np.mean((out[:, 0] - y) ** 2)
"""

MLP_FLAT = """
def f(theta, X, y):
    W1 = theta[0:6].reshape(2, 3)
    b1 = theta[6:9]
    W2 = theta[9:12].reshape(3, 1)
    b2 = theta[12:13]
    h = np.tanh(X @ W1 + b1)
    out = h @ W2 + b2
    return np.mean((out[:, 0] - y) ** 2)
"""

MLP_SHAPES = ((2, 3), (3,), (3, 1), (1,))


def mlp_case() -> tuple[tuple[np.ndarray, ...], np.ndarray, np.ndarray, tuple[np.ndarray, ...]]:
    """Parameters, data and a direction for the 2-3-1 MLP (13 parameters)."""
    rng = np.random.default_rng(5)
    params = tuple(rng.normal(scale=0.8, size=shape) for shape in MLP_SHAPES)
    direction = tuple(rng.normal(size=shape) for shape in MLP_SHAPES)
    return params, rng.normal(size=(6, 2)), rng.normal(size=6), direction


def test_rosenbrock_hessian_of_two_floats(module_dir: Path) -> None:
    """Two Python floats: one generated function, float blocks, exact against SymPy."""
    prog = program(ROSENBROCK, module_dir)
    args = {"x": 1.2, "y": 0.8}
    hessian = srcgrad.hessian(prog.plain)
    value, grads, H = hessian(**args)
    assert hessian.mode_used == "blocks"
    x, y = sp.symbols("x y")
    exact = sp.hessian(prog.plain(x, y), (x, y)).subs(args)  # the source is plain arithmetic
    assert all(type(H[i][j]) is float for i in range(2) for j in range(2)), H
    assert_blocks(H, [[float(exact[i, j]) for j in range(2)] for i in range(2)], AD_RTOL,
                  AD_ATOL_FRACTION, "vs SymPy")
    assert_blocks(H, autograd_hessian(prog.reference, args, ("x", "y")), AD_RTOL,
                  AD_ATOL_FRACTION, "vs autograd")
    assert_blocks(H, fd_hessian(prog.grad(), args, ("x", "y")), FD_RTOL, FD_ATOL_FRACTION,
                  "vs central differences of grad")
    assert value == prog.plain(**args)
    assert_close(flat(grads), [2 * (x0 - 1) - 400 * x0 * (0.8 - x0**2) for x0 in [1.2]]
                 + [200 * (0.8 - 1.2**2)], AD_RTOL, AD_ATOL_FRACTION, "gradient")


@pytest.mark.parametrize("n", [2, 6])
def test_rosenbrock_hessian_of_an_array(module_dir: Path, n: int) -> None:
    """An array parameter: H[0][0] is n x n, tridiagonal, one HVP per entry."""
    prog = program(ROSENBROCK_N, module_dir)
    args = {"x": spread(np.random.default_rng(n), (n,), 1.5)}
    hessian = srcgrad.hessian(prog.plain)
    value, grads, H = hessian(**args)
    assert hessian.mode_used == "products"
    assert H[0][0].shape == (n, n) and H[0][0].dtype == np.float64
    assert_blocks(H, autograd_hessian(prog.reference, args, ("x",)), AD_RTOL, AD_ATOL_FRACTION,
                  "vs autograd")
    assert_blocks(H, fd_hessian(prog.grad(), args, ("x",)), FD_RTOL, FD_ATOL_FRACTION,
                  "vs central differences of grad")
    assert np.all(np.triu(H[0][0], 2) == 0), "Rosenbrock couples neighbours only"
    assert_close(value, prog.plain(**args), EXACT_RTOL, 0.0, "value")


def test_gaussian_log_likelihood_hessian_in_mean_and_scale(module_dir: Path) -> None:
    """Scalar mu and sigma, array data: the 2 x 2 observed information, against SymPy's
    Hessian of the same sum written out over the data."""
    prog = program(GAUSSIAN, module_dir)
    x = np.linspace(-1.0, 2.5, 9)
    args = {"mu": 0.3, "sigma": 1.4, "x": x}
    value, grads, H = srcgrad.hessian(prog.plain, wrt=("mu", "sigma"))(**args)
    mu, sigma = sp.symbols("mu sigma", positive=True)
    loglik = sum(-((float(xi) - mu) / sigma) ** 2 / 2 - sp.log(sigma) - sp.log(2 * sp.pi) / 2
                 for xi in x)
    exact = sp.hessian(loglik, (mu, sigma)).subs({mu: 0.3, sigma: 1.4})
    assert grads._fields == ("mu", "sigma")
    assert_blocks(H, [[float(exact[i, j]) for j in range(2)] for i in range(2)], AD_RTOL,
                  AD_ATOL_FRACTION, "vs SymPy")
    assert_blocks(H, autograd_hessian(prog.reference, args, ("mu", "sigma")), AD_RTOL,
                  AD_ATOL_FRACTION, "vs autograd")
    assert_blocks(H, fd_hessian(prog.grad(("mu", "sigma")), args, ("mu", "sigma")), FD_RTOL,
                  FD_ATOL_FRACTION, "vs central differences of grad")
    assert_close(H[0][0], -len(x) / 1.4**2, AD_RTOL, 0.0, "d2/dmu2 = -n / sigma^2")


def test_gaussian_hessian_with_a_vector_mean(module_dir: Path) -> None:
    """mu a vector, sigma a NumPy scalar: blocks of shapes (3, 3), (3,), (3,) and ().

    sigma is np.float64 here; test_hessian_block_of_two_scalars_is_a_float_beside_an_array
    covers a Python float.
    """
    prog = program(GAUSSIAN_VECTOR_MEAN, module_dir)
    rng = np.random.default_rng(3)
    args = {"mu": rng.normal(size=3), "sigma": np.float64(1.3), "X": rng.normal(size=(5, 3))}
    value, grads, H = srcgrad.hessian(prog.plain, wrt=("mu", "sigma"))(**args)
    assert [[np.shape(b) for b in row] for row in H] == [[(3, 3), (3,)], [(3,), ()]]
    assert_blocks(H, autograd_hessian(prog.reference, args, ("mu", "sigma")), AD_RTOL,
                  AD_ATOL_FRACTION, "vs autograd")
    assert_blocks(H, fd_hessian(prog.grad(("mu", "sigma")), args, ("mu", "sigma")), FD_RTOL,
                  FD_ATOL_FRACTION, "vs central differences of grad")
    assert_close(H[0][0], -5 / 1.3**2 * np.eye(3), AD_RTOL, 0.0, "d2/dmu2 = -n I / sigma^2")


def test_mlp_hvp_with_tuple_parameters(module_dir: Path) -> None:
    """hvp through tanh, @, indexing and mean, with a tuple of four arrays and a tuple
    direction: Hv keeps the structure, against autograd's make_hvp and central differences."""
    prog = program(MLP, module_dir)
    params, X, y, v = mlp_case()
    value, grads, Hv = srcgrad.hvp(prog.plain, wrt="params")((params, X, y), (v,))
    assert type(grads.params) is tuple and type(Hv.params) is tuple
    assert [p.shape for p in Hv.params] == list(MLP_SHAPES)
    assert_close(flat(grads.params), flat(prog.grad(("params",))(params, X, y)[1].params),
                 EXACT_RTOL, 1e-12, "hvp's gradient vs grad's")
    product, _ = autograd.make_hvp(prog.reference)(params, X, y)
    assert_close(flat(Hv.params), flat(product(v)), AD_RTOL, AD_ATOL_FRACTION, "vs autograd")
    gradient = prog.grad(("params",))
    expected = central_difference(
        lambda t: flat(gradient(along(params, v, t), X, y)[1].params), 0.0)
    assert_close(flat(Hv.params), expected, FD_RTOL, FD_ATOL_FRACTION, "vs central differences")


def test_mlp_hessian_of_flat_parameters(module_dir: Path) -> None:
    """The same MLP on one 13-vector: the full Hessian, against autograd and differences, and
    H @ v against the tuple version's HVP (the two srcgrad paths must agree)."""
    prog = program(MLP_FLAT, module_dir)
    params, X, y, v = mlp_case()
    args = {"theta": flat(params), "X": X, "y": y}
    value, grads, H = srcgrad.hessian(prog.plain, wrt="theta")(**args)
    assert H[0][0].shape == (13, 13)
    assert_blocks(H, autograd_hessian(prog.reference, args, ("theta",)), AD_RTOL,
                  AD_ATOL_FRACTION, "vs autograd")
    assert_blocks(H, fd_hessian(prog.grad(("theta",)), args, ("theta",)), FD_RTOL,
                  FD_ATOL_FRACTION, "vs central differences of grad")
    _, _, Hv = srcgrad.hvp(program(MLP, module_dir).plain, wrt="params")((params, X, y), (v,))
    assert_close(H[0][0] @ flat(v), flat(Hv.params), AD_RTOL, AD_ATOL_FRACTION, "H v vs hvp")


# --- jacobian ----------------------------------------------------------------------------------

JACOBIAN_CASES = {
    # name: (source, arguments, mode the rule must pick, value shape)
    "R2->R5 array": ("C = np.arange(1.0, 6.0)\n\n\ndef f(p):\n"
                     "    return np.sin(p[0]) * C + p[1] ** 2 * C ** 2 + p[0] * p[1]\n",
                     {"p": np.array([0.3, -0.7])}, "forward"),
    "R5->R2 array": ("def f(p):\n    return np.stack([np.sum(p ** 2), np.sum(np.sin(p) * p[0])])\n",
                     {"p": np.linspace(-0.9, 1.1, 5)}, "reverse"),
    "R2->R5 floats": ("def f(a, b):\n"
                      "    return np.stack([a * b, np.sin(a), b ** 2, a + b, np.exp(a - b)])\n",
                      {"a": 0.3, "b": 0.7}, "forward"),
    "R5->R2 floats": ("def f(a, b, c, d, e):\n    return np.stack([a * b + c, d * e - a ** 2])\n",
                      {"a": 0.3, "b": 0.7, "c": -0.2, "d": 1.1, "e": 0.5}, "reverse"),
    "R->R float": ("def f(a):\n    return np.tanh(a) * a\n", {"a": 0.6}, "forward"),
    "R4 -> R (array)": ("def f(p):\n    return np.sum(np.exp(p) * p)\n",
                        {"p": np.linspace(-1.0, 1.0, 4)}, "reverse"),
}


@pytest.mark.parametrize("case", list(JACOBIAN_CASES))
def test_jacobian_in_both_modes_against_autograd(module_dir: Path, case: str) -> None:
    """J.p is shaped value.shape + p.shape (a float when both are scalars); the mode is forward
    when there are no more input entries than output entries."""
    source, args, mode = JACOBIAN_CASES[case]
    prog = program(source, module_dir)
    jacobian = srcgrad.jacobian(prog.plain)
    value, J = jacobian(**args)
    assert jacobian.mode_used == mode
    assert J._fields == tuple(args)
    assert_close(value, prog.plain(**args), EXACT_RTOL, 0.0, "value")
    for index, name in enumerate(args):
        expected = autograd.jacobian(prog.reference, index)(*args.values())
        block = getattr(J, name)
        assert np.shape(block) == np.shape(value) + np.shape(args[name]), name
        if np.shape(block) == ():
            assert type(block) is float, type(block)
        assert_close(block, expected, AD_RTOL, AD_ATOL_FRACTION, f"J.{name} vs autograd")
    # .source shows the generated function the call used: tangents, or a seeded reverse sweep
    assert ("_dot" in jacobian.source) == (mode == "forward")
    assert ("d_value" in jacobian.source) == (mode == "reverse")


# --- forward and jvp ---------------------------------------------------------------------------

ELEMENTWISE = {
    # body: derivative written by hand
    "np.sin(a) * a ** 2": lambda a: np.cos(a) * a**2 + 2 * a * np.sin(a),
    "np.tanh(a) + np.log1p(a ** 2)": lambda a: 1 - np.tanh(a) ** 2 + 2 * a / (1 + a**2),
    "np.exp(-a ** 2) / (1 + a ** 2)": lambda a: (-2 * a * np.exp(-(a**2)) / (1 + a**2)
                                                 - 2 * a * np.exp(-(a**2)) / (1 + a**2) ** 2),
    "np.abs(a) ** 3 - np.maximum(a, 0.25)": lambda a: 3 * a * np.abs(a) - (a > 0.25),
}


@pytest.mark.parametrize("body", list(ELEMENTWISE))
def test_forward_gives_per_element_derivatives(module_dir: Path, body: str) -> None:
    """The tangent of an array parameter is all ones, so an elementwise function gets its
    derivative at every element; a float gets a float (the fast path)."""
    prog = program(f"def f(a):\n    return {body}\n", module_dir)
    a = spread(np.random.default_rng(1), (7,), 1.5)
    value, derivative = srcgrad.forward(prog.plain, wrt="a")(a)
    assert isinstance(derivative, np.ndarray) and derivative.shape == a.shape
    assert_close(derivative, ELEMENTWISE[body](a), AD_RTOL, AD_ATOL_FRACTION, "vs by hand")
    assert_close(derivative, autograd.elementwise_grad(prog.reference)(a), AD_RTOL,
                 AD_ATOL_FRACTION, "vs autograd")
    assert_close(value, prog.plain(a), EXACT_RTOL, 0.0, "value")
    value, derivative = srcgrad.forward(prog.plain, wrt="a")(float(a[2]))
    assert type(value) is float and type(derivative) is float
    assert_close(derivative, ELEMENTWISE[body](a[2]), AD_RTOL, AD_ATOL_FRACTION, "float")


def test_forward_with_several_parameters(module_dir: Path) -> None:
    """Several wrt names: a namedtuple of tangents in signature order, whatever order given."""
    prog = program("def f(a, b, c):\n    return a * np.exp(b) + b ** 3 * c\n", module_dir)
    a, b, c = np.array([0.3, -1.0, 2.0]), np.array([0.7, 0.1, -0.4]), 1.5
    value, tangents = srcgrad.forward(prog.plain, wrt=("b", "a"))(a, b, c)
    assert tangents._fields == ("a", "b")
    assert_close(tangents.a, np.exp(b), AD_RTOL, AD_ATOL_FRACTION, "d/da")
    assert_close(tangents.b, a * np.exp(b) + 3 * b**2 * c, AD_RTOL, AD_ATOL_FRACTION, "d/db")
    value, tangents = srcgrad.forward(prog.plain, wrt=("a", "c"))(0.3, 0.7, 1.5)
    assert type(tangents.a) is float and type(tangents.c) is float
    assert_close(flat(tangents), [np.exp(0.7), 0.7**3], AD_RTOL, AD_ATOL_FRACTION, "floats")


def test_forward_of_a_scalar_parameter_broadcast_over_data(module_dir: Path) -> None:
    """``sum((a*x - y)**2)`` with a float ``a``: the tangent of a broadcast scalar sums over the
    data, like grad's gradient; the Hessian in ``a`` is ``2 sum(x**2)``."""
    prog = program("def f(a, x, y):\n    return np.sum((a * x - y) ** 2)\n", module_dir)
    x = np.linspace(-1.0, 2.0, 8)
    y = 0.5 * x + np.cos(x)
    for a in (1.5, np.float64(1.5)):
        value, derivative = srcgrad.forward(prog.plain, wrt="a")(a, x, y)
        assert np.shape(derivative) == ()
        assert_close(derivative, 2 * np.sum((a * x - y) * x), AD_RTOL, 0.0, f"{type(a)}")
        _, grads, H = srcgrad.hessian(prog.plain, wrt="a")(a, x, y)
        assert_close(H[0][0], 2 * np.sum(x**2), AD_RTOL, 0.0, f"hessian {type(a)}")
        assert_close(grads.a, derivative, EXACT_RTOL, 0.0, "grad vs forward")
    # jvp and hvp of the same, with a NumPy scalar (a Python float: see
    # test_python_float_beside_arrays)
    _, derivative = srcgrad.jvp(prog.plain, wrt="a")((np.float64(1.5), x, y), (-2.0,))
    assert_close(derivative, -4 * np.sum((1.5 * x - y) * x), AD_RTOL, 0.0, "jvp")
    _, _, Hv = srcgrad.hvp(prog.plain, wrt="a")((np.float64(1.5), x, y), (-2.0,))
    assert_close(Hv.a, -4 * np.sum(x**2), AD_RTOL, 0.0, "hvp")


def test_forward_refuses_structured_parameters_and_points_to_jvp(module_dir: Path) -> None:
    prog = program("def f(params, x):\n    w, b = params\n    return np.sum(w * x) + b\n",
                   module_dir)
    with pytest.raises(TypeError, match="jvp"):
        srcgrad.forward(prog.plain, wrt="params")((np.ones(3), 0.5), np.arange(3.0))


DICT_PARAMS = """
def f(params, x):
    return np.sum(params["w"] * x) + params["b"] ** 2 * np.sum(np.sin(x))
"""

TUPLE_PARAMS = """
def f(params, x):
    w, b = params
    return np.tanh(w * x + b)
"""


def test_jvp_with_a_dict_tangent(module_dir: Path) -> None:
    """A dict parameter takes a dict direction; with x differentiated too, two directions."""
    prog = program(DICT_PARAMS, module_dir)
    x = np.array([0.2, -1.0, 1.4])
    params, tangent = {"w": np.array([1.0, 2.0, -0.5]), "b": 0.5}, {"w": x[::-1].copy(),
                                                                      "b": -1.5}
    value, derivative = srcgrad.jvp(prog.plain, wrt="params")((params, x), (tangent,))
    by_hand = np.sum(tangent["w"] * x) + 2 * 0.5 * -1.5 * np.sum(np.sin(x))
    assert np.shape(derivative) == ()
    assert_close(derivative, by_hand, AD_RTOL, AD_ATOL_FRACTION, "vs by hand")
    dx = np.array([0.3, 0.0, -1.0])
    _, derivative = srcgrad.jvp(prog.plain)((params, x), (tangent, dx))
    expected = central_difference(lambda t: prog.plain(along(params, tangent, t), x + t * dx),
                                  0.0)
    assert_close(derivative, expected, FD_RTOL, FD_ATOL_FRACTION, "vs central differences")
    _, oracle = autograd.make_jvp(prog.reference, 0)(params, x)(tangent)
    _, oracle_x = autograd.make_jvp(prog.reference, 1)(params, x)(dx)
    assert_close(derivative, oracle + oracle_x, AD_RTOL, AD_ATOL_FRACTION, "vs autograd")


def test_jvp_with_a_tuple_tangent_of_an_array_valued_function(module_dir: Path) -> None:
    """The derivative is shaped like the value: (1 - tanh^2) * (dw * x + db) per element."""
    prog = program(TUPLE_PARAMS, module_dir)
    x = np.linspace(-1.0, 1.0, 5)
    params, tangent = (np.full(5, 0.8), 0.3), (np.linspace(1.0, 2.0, 5), -0.5)
    value, derivative = srcgrad.jvp(prog.plain, wrt="params")((params, x), (tangent,))
    assert derivative.shape == value.shape == (5,)
    by_hand = (1 - np.tanh(0.8 * x + 0.3) ** 2) * (tangent[0] * x - 0.5)
    assert_close(derivative, by_hand, AD_RTOL, AD_ATOL_FRACTION, "vs by hand")
    _, oracle = autograd.make_jvp(prog.reference, 0)(params, x)(tangent)
    assert_close(derivative, oracle, AD_RTOL, AD_ATOL_FRACTION, "vs autograd")


@pytest.mark.parametrize("mode", ["jvp", "hvp"])
@pytest.mark.parametrize("count", [0, 1, 3])
def test_wrong_number_of_directions_is_a_type_error(module_dir: Path, mode: str,
                                                    count: int) -> None:
    prog = program(ROSENBROCK, module_dir)
    made = getattr(srcgrad, mode)(prog.plain)
    with pytest.raises(TypeError, match=r"one direction per differentiated parameter \(x, y\)"):
        made((1.2, 0.8), (1.0,) * count)


# --- the float fast path against the array path ------------------------------------------------

MODES_ON_ROSENBROCK: dict[str, Callable[[Callable[..., Any], Any, Any], Any]] = {
    "forward": lambda f, x, y: srcgrad.forward(f, wrt=("x", "y"))(x, y),
    "jvp": lambda f, x, y: srcgrad.jvp(f)((x, y), (0.25 + 0 * x, -0.5 + 0 * y)),
    "hvp": lambda f, x, y: srcgrad.hvp(f)((x, y), (0.25 + 0 * x, -0.5 + 0 * y)),
    "hessian": lambda f, x, y: srcgrad.hessian(f)(x, y),
    "jacobian": lambda f, x, y: srcgrad.jacobian(f)(x, y),
}


@pytest.mark.parametrize("mode", list(MODES_ON_ROSENBROCK))
def test_float_fast_path_agrees_with_array_path(module_dir: Path, mode: str) -> None:
    """Python floats (the math module), 0-d arrays and 1-element arrays: the same numbers,
    floats for floats and arrays of the argument's shape for arrays."""
    prog = program(ROSENBROCK, module_dir)
    call = MODES_ON_ROSENBROCK[mode]
    on_floats = leaves(call(prog.plain, 1.2, 0.8))
    assert all(type(leaf) is float for leaf in on_floats), on_floats
    for shape in [(), (1,)]:
        on_arrays = leaves(call(prog.plain, np.full(shape, 1.2), np.full(shape, 0.8)))
        assert len(on_arrays) == len(on_floats)
        assert_close(flat(on_arrays), flat(on_floats), EXACT_RTOL, 1e-12, f"shape {shape}")


def test_float32_arrays_keep_float32(module_dir: Path) -> None:
    """float32 in, float32 out, in every mode (as grad: a float32 model stays float32), close to
    the float64 result. jacobian's blocks take the value's dtype."""
    prog = program(ROSENBROCK_N, module_dir)
    x64 = np.array([1.2, 0.8, -0.5, 0.3])
    x = x64.astype(np.float32)
    v = np.array([0.5, -1.0, 0.25, 2.0], dtype=np.float32)
    results = {
        "forward": srcgrad.forward(prog.plain)(x),
        "jvp": srcgrad.jvp(prog.plain)((x,), (v,)),
        "hvp": srcgrad.hvp(prog.plain)((x,), (v,)),
        "hessian": srcgrad.hessian(prog.plain)(x),
    }
    for mode, result in results.items():
        for leaf in leaves(result):
            assert np.asarray(leaf).dtype == np.float32, (mode, leaf)
    H64 = autograd.hessian(prog.reference)(x.astype(np.float64))
    assert_close(results["hessian"][2][0][0], H64, 2e-3, 2e-4, "float32 Hessian")
    assert_close(results["hvp"][2].x, H64 @ v, 2e-3, 2e-4, "float32 HVP")
    elementwise = program(f"def f(a):\n    return {next(iter(ELEMENTWISE))}\n", module_dir)
    for source in (elementwise, program(JACOBIAN_CASES["R5->R2 array"][0], module_dir)):
        jacobian = srcgrad.jacobian(source.plain)
        value, J = jacobian(x)
        assert value.dtype == np.float32 and J[0].dtype == np.float32, jacobian.mode_used


# --- errors ------------------------------------------------------------------------------------

NO_SECOND_DERIVATIVE = {
    "np.prod": "def f(x):\n    return np.prod(x) + np.sum(x)\n",
    "np.linalg.norm": "def f(x):\n    return np.linalg.norm(x) * 2.0\n",
}


@pytest.mark.parametrize("mode", ["hessian", "hvp"])
@pytest.mark.parametrize("function", list(NO_SECOND_DERIVATIVE))
def test_missing_second_derivative_names_file_and_line(module_dir: Path, function: str,
                                                       mode: str) -> None:
    """A gradient srcgrad cannot differentiate again is a TransformError pointing at the
    user's line (not a crash inside srcgrad), while first derivatives still work there."""
    prog = program(NO_SECOND_DERIVATIVE[function], module_dir)
    x = np.array([1.0, -2.0, 3.0])
    call = {"hessian": lambda: srcgrad.hessian(prog.plain)(x),
            "hvp": lambda: srcgrad.hvp(prog.plain)((x,), (x,))}[mode]
    with pytest.raises(srcgrad.TransformError) as raised:
        call()
    text = NO_SECOND_DERIVATIVE[function].splitlines()[1]
    message = str(raised.value)
    assert inspect.getsourcefile(prog.plain) in message
    assert f"line {line_of(prog, text)}" in message and text.strip() in message
    assert "second derivative" in message
    # forward mode through the same function is fine: one derivative, against autograd
    _, derivative = srcgrad.jvp(prog.plain)((x,), (np.array([0.5, 1.0, -1.0]),))
    _, oracle = autograd.make_jvp(prog.reference)(x)(np.array([0.5, 1.0, -1.0]))
    assert_close(derivative, oracle, AD_RTOL, AD_ATOL_FRACTION, "first derivative")


def test_missing_second_derivative_names_the_function_as_written(module_dir: Path) -> None:
    prog = program(NO_SECOND_DERIVATIVE["np.linalg.norm"], module_dir)
    # the quoted source line names it anyway: look at the explanation
    with pytest.raises(srcgrad.TransformError, match=r"through `np\.linalg\.norm`"):
        srcgrad.hessian(prog.plain)(np.array([1.0, -2.0, 3.0]))


USER_DERIVATIVE = """
def soft(x):
    return np.log(1 + np.exp(x))


def soft_derive(x):
    return 1 / (1 + np.exp(-x))


def f(a, b):
    return soft(a * b) + a
"""


def test_user_derivative_without_its_own_derivative(module_dir: Path) -> None:
    """`soft_derive` makes grad work; the Hessian needs soft_derive's derivative, which is
    missing: a TransformError at the calling line, not a wrong number."""
    prog = program(USER_DERIVATIVE, module_dir, autograd_ok=False)
    _, grads = prog.grad()(0.3, 0.7)
    assert_close(grads.b, 0.3 / (1 + np.exp(-0.21)), AD_RTOL, 0.0, "first derivative")
    with pytest.raises(srcgrad.TransformError) as raised:
        srcgrad.hessian(prog.plain)(0.3, 0.7)
    message = str(raised.value)
    assert f"line {line_of(prog, '    return soft(a * b) + a')}" in message
    assert "soft_derive" in message


SOFT_SECOND = "def soft_second(x):\n    s = 1 / (1 + np.exp(-x))\n    return s * (1 - s)\n"


@pytest.mark.parametrize("how", ["beside", "register"])
def test_user_second_derivative_can_be_given(module_dir: Path, how: str) -> None:
    """The error above asks for soft_derive's own derivative: given by the naming rule
    (`soft_derive_derive` beside it) or by srcgrad.register, the Hessian works, exactly."""
    source = f"{USER_DERIVATIVE}\n\n{SOFT_SECOND}"
    if how == "beside":
        source += "\n\nsoft_derive_derive = soft_second\n"
    prog = program(source, module_dir, autograd_ok=False)
    if how == "register":
        module = inspect.getmodule(prog.plain)
        srcgrad.register(module.soft_derive, module.soft_second)
    a, b = 0.3, 0.7
    _, _, H = srcgrad.hessian(prog.plain)(a, b)
    s = 1 / (1 + np.exp(-a * b))
    ds = s * (1 - s)  # soft'' at a*b; f = soft(a b) + a
    expected = [[b * b * ds, s + a * b * ds], [s + a * b * ds, a * a * ds]]
    assert_blocks(H, expected, AD_RTOL, AD_ATOL_FRACTION, how)
    assert_blocks(H, fd_hessian(prog.grad(), {"a": a, "b": b}, ("a", "b")), FD_RTOL,
                  FD_ATOL_FRACTION, f"{how}, vs central differences of grad")


# --- bugs: a Python float beside arrays ----------------------------------------------------------

MIXED_CALLS: dict[str, Callable[[Callable[..., Any], np.ndarray, np.ndarray], Any]] = {
    "jvp": lambda f, x, y: srcgrad.jvp(f, wrt="a")((1.5, x, y), (1.0,)),
    "hvp": lambda f, x, y: srcgrad.hvp(f, wrt="a")((1.5, x, y), (1.0,)),
    "hessian, array wrt": lambda f, x, y: srcgrad.hessian(f, wrt="x")(1.5, x, y),
    "jacobian": lambda f, x, y: srcgrad.jacobian(f, wrt="a")(1.5, x, y),
}


@pytest.mark.parametrize("mode", list(MIXED_CALLS))
def test_python_float_beside_arrays(module_dir: Path, mode: str) -> None:
    """``sum((a*x - y)**2)`` with a Python float ``a``: every direction-taking mode (and the
    Hessian of arrays, and the Jacobian, built on them) fails with a NameError."""
    prog = program("def f(a, x, y):\n    return np.sum((a * x - y) ** 2)\n", module_dir)
    x = np.linspace(-1.0, 2.0, 8)
    y = 0.5 * x
    result = MIXED_CALLS[mode](prog.plain, x, y)
    expected = {"jvp": 2 * np.sum((1.5 * x - y) * x), "hvp": 2 * np.sum(x**2),
                "hessian, array wrt": 2 * 1.5**2 * np.eye(8),
                "jacobian": 2 * np.sum((1.5 * x - y) * x)}[mode]
    assert_close(leaves(result)[-1], expected, AD_RTOL, 0.0, mode)


def test_hessian_block_of_two_scalars_is_a_float_beside_an_array(module_dir: Path) -> None:
    """hessian's contract: a float for two scalars (as the all-scalar path and jacobian do)."""
    prog = program(GAUSSIAN_VECTOR_MEAN, module_dir)
    X = np.random.default_rng(3).normal(size=(5, 3))
    _, _, H = srcgrad.hessian(prog.plain, wrt=("mu", "sigma"))(np.zeros(3), 1.3, X)
    assert isinstance(H[1][1], float), type(H[1][1])


def test_hessian_generated_function_on_an_array(module_dir: Path) -> None:
    """``hessian(f).function`` is the scalar-parameter (blocks) function whatever the last
    call was; called with an array it must give the Hessian or refuse, not a row sum."""
    prog = program(ROSENBROCK_N, module_dir)
    x = np.array([1.2, 0.8, -0.5])
    expected = autograd.hessian(prog.reference)(x)
    try:
        _, _, H = srcgrad.hessian(prog.plain).function(x)
    except (TypeError, ValueError):
        return
    assert np.shape(H[0][0]) == (3, 3)
    assert_close(H[0][0], expected, AD_RTOL, AD_ATOL_FRACTION, "generated function")


# --- the generated source ------------------------------------------------------------------------


def _made(mode: str, f: Callable[..., Any]) -> Any:
    """A mode object of `f` (Rosenbrock in x, y), after one call on arrays."""
    x, y = np.array([1.2, -0.3]), np.array([0.8, 0.4])
    made = {"forward": lambda: srcgrad.forward(f, wrt="x"), "jvp": lambda: srcgrad.jvp(f),
            "hvp": lambda: srcgrad.hvp(f), "hessian": lambda: srcgrad.hessian(f),
            "jacobian": lambda: srcgrad.jacobian(f, wrt="x")}[mode]()  # 2 in, 2 out: forward
    if mode in ("jvp", "hvp"):
        made((x, y), (np.ones(2), np.zeros(2)))
    elif mode == "hessian":
        made(1.2, 0.8)  # the generated function is the scalar-parameter one
    else:
        made(x, y)
    return made


def use_after_del(tree: ast.AST) -> list[str]:
    """Names read after a ``del`` without being assigned in between, in textual order.

    Textual order is enough: each path of the generated code (fast, mixed, array) is
    straight-line, and a later path assigns its temporaries before reading them. On one line,
    reads come before stores (``t = t * 2``).
    """
    events = sorted(
        (n.lineno, isinstance(n.ctx, ast.Load) is False, n.col_offset, type(n.ctx), n.id)
        for n in ast.walk(tree) if isinstance(n, ast.Name))
    deleted: set[str] = set()
    problems = []
    for lineno, _, _, context, name in events:
        if context is ast.Del:
            deleted.add(name)
        elif context is ast.Store:
            deleted.discard(name)
        elif name in deleted:
            problems.append(f"`{name}` read on line {lineno} after `del {name}`")
    return problems


NAMES = {  # names each mode's code must contain (Rosenbrock in x, y)
    "forward": ("dvalue_dx",),
    "jvp": ("x_dot", "y_dot", "value_dot"),
    "hvp": ("d_x", "d_y", "x_dot", "y_dot"),
    "hessian": ("d_x", "d_y", "d_x_d_x", "d_y_d_y"),
    "jacobian": ("x_dot", "value_dot"),
}


@pytest.mark.parametrize("mode", list(NAMES))
def test_source_compiles_reads_well_and_never_reads_a_deleted_name(module_dir: Path,
                                                                   mode: str) -> None:
    """What ``.source`` shows is valid Python naming tangents and adjoints after the user's
    variables, with a docstring saying what comes back; ``del`` (memory) never precedes a use."""
    prog = program(ROSENBROCK, module_dir)
    made = _made(mode, prog.plain)
    source = made.source
    tree = ast.parse(source)
    compile(tree, "<srcgrad source>", "exec")
    identifiers = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    missing = [name for name in NAMES[mode] if name not in identifiers]
    assert not missing, f"{missing} not in\n{source}"
    inner = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "f")
    docstring = ast.get_docstring(inner) or ""
    assert "`f`" in docstring and "Returns (value, " in docstring, docstring
    assert not use_after_del(inner), use_after_del(inner)


@pytest.mark.parametrize("mode", [
    "forward",
    "jvp",
    "hvp",
    "hessian",
])
def test_docstring_explains_the_names_the_code_uses(module_dir: Path, mode: str) -> None:
    """The naming legend of the generated docstring must match the code below it."""
    prog = program(ROSENBROCK, module_dir)
    tree = ast.parse(_made(mode, prog.plain).source)
    inner = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "f")
    identifiers = {n.id for n in ast.walk(inner) if isinstance(n, ast.Name)}
    docstring = ast.get_docstring(inner) or ""
    if "<name>_dot" in docstring:
        assert any(name.endswith("_dot") for name in identifiers), docstring
    if "d_<name>" in docstring:
        assert any(name.startswith("d_") for name in identifiers), docstring


def test_the_judging_helpers_on_known_answers() -> None:
    """The Hessian oracles (autograd packing, differences of a gradient) on x^2 y^3, and the
    use-after-del scan on two snippets: they must be right before anything is judged by them."""
    args = {"x": 1.5, "y": -0.5}
    expected = [[2 * -0.125, 6 * 1.5 * 0.25], [6 * 1.5 * 0.25, 6 * 2.25 * -0.5]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert_blocks(autograd_hessian(lambda x, y: x**2 * y**3, args, ("x", "y")), expected,
                      1e-12, 0.0, "autograd_hessian")
    grads_type = namedtuple("grads", "x y")

    def known_gradient(x: float, y: float) -> tuple[float, Any]:
        return x**2 * y**3, grads_type(2 * x * y**3, 3 * x**2 * y**2)

    assert_blocks(fd_hessian(known_gradient, args, ("x", "y")), expected, FD_RTOL,
                  FD_ATOL_FRACTION, "fd_hessian")
    assert use_after_del(ast.parse("def g(a):\n    b = a\n    del a\n    return b + a\n"))
    assert not use_after_del(ast.parse("def g(a):\n    b = a + 1\n    del b\n    b = a * 2\n"
                                       "    b = b * 2\n    return b\n"))
