"""The fused backend (``grad(fn, backend="numba")``) against the NumPy backend and oracles.

Why: the fused backend re-emits the float path's code for one element inside a Numba loop,
classifies every node as a number, an element or a total, and splits the loop into stages. Each
of those steps can silently drop a factor (a total not scaled by the element count), read the
wrong element, or compile a helper Numba cannot type. Every check compares the fused result
with the default NumPy backend's (an independent code path, to rounding), and every family of
tests also checks against an oracle that shares no code with srcgrad: central differences of the
plain function, autograd, or sympy (the generated programs of `programs.py`).

Each new fused function costs a Numba compile, so functions are shared where a failure still
names its cause (the primitive test switches terms on one at a time through live globals).
"""

from __future__ import annotations

import copy
import inspect
import math
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

numba = pytest.importorskip("numba")

from hypothesis import Phase, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from programs import CHECKED, inputs_for, programs  # noqa: E402
from support import central_difference, import_source  # noqa: E402
from test_generated_programs import central_differences, oracle  # noqa: E402

import srcgrad  # noqa: E402
from srcgrad import fused, rules  # noqa: E402

RTOL, ATOL = 1e-12, 1e-12  # fused vs NumPy backend: the same formulas, summed in another order
FD_RTOL, FD_ATOL = 1e-5, 1e-6  # vs central differences in float64


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def load(text: str, directory: Path) -> Any:
    """A module from source text (srcgrad reads source with inspect, so it needs a file)."""
    return import_source(textwrap.dedent(text), directory, "fused_case")


def pair(fn: Callable[..., Any], **kwargs: Any) -> tuple[Any, Any]:
    """(fused, NumPy backend) versions of ``fn``."""
    return srcgrad.grad(fn, backend="numba", **kwargs), srcgrad.grad(fn, **kwargs)


def mismatches(fused_result: Any, numpy_result: Any, rtol: float = RTOL, atol: float = ATOL
               ) -> list[str]:
    """What differs between two ``(value, grads)`` results (empty: they agree)."""
    (value, grads), (expected_value, expected) = fused_result, numpy_result
    problems = []
    if grads._fields != expected._fields:
        return [f"fields {grads._fields} != {expected._fields}"]
    pairs = [("value", value, expected_value)] + [
        (f"d/d{name}", getattr(grads, name), getattr(expected, name)) for name in grads._fields]
    for what, got, want in pairs:
        if np.shape(got) != np.shape(want):
            problems.append(f"{what}: shape {np.shape(got)} != {np.shape(want)}")
            continue
        if isinstance(want, np.ndarray) and np.asarray(got).dtype != want.dtype:
            problems.append(f"{what}: dtype {np.asarray(got).dtype} != {want.dtype}")
        try:
            np.testing.assert_allclose(np.asarray(got, dtype=np.float64),
                                       np.asarray(want, dtype=np.float64), rtol=rtol, atol=atol)
        except AssertionError as error:
            problems.append(f"{what}: {error}")
    return problems


def assert_same(fused_result: Any, numpy_result: Any, what: str = "", **tolerances: float
                ) -> None:
    problems = mismatches(fused_result, numpy_result, **tolerances)
    assert not problems, f"{what}\n" + "\n".join(problems)


def finite_differences(plain: Callable[..., Any], args: list[Any], index: int) -> Any:
    """d sum(plain(*args)) / d args[index], by central differences (the definition)."""

    def at(shifted: Any) -> float:
        moved = list(args)
        moved[index] = shifted
        return float(np.sum(plain(*moved)))

    return central_difference(at, args[index])


def assert_matches_finite_differences(plain: Callable[..., Any], args: list[Any], grads: Any,
                                      what: str = "") -> None:
    for index, name in enumerate(grads._fields):
        np.testing.assert_allclose(
            getattr(grads, name), finite_differences(plain, args, index), rtol=FD_RTOL,
            atol=FD_ATOL, err_msg=f"{what} d/d{name} vs central differences")


def kernels(fused_function: Any) -> dict[str, Any]:
    """The serial and parallel Numba dispatchers a fused function chooses between."""
    bound = inspect.getclosurevars(fused_function.function).nonlocals
    return {"serial": bound["serial"], "parallel": bound["parallel"]}


# ----------------------------------------------------------------------------------------------
# 1. Every elementwise primitive of the registry, in the fused loop
# ----------------------------------------------------------------------------------------------

# How a user writes each primitive, in `a`, `b` (numbers, or arrays) and `x`, `y` (arrays), on
# a domain that is safe for the inputs below (|x|, |y| < 2; a, b in (0, 1)).
SPELLINGS = {
    "add": "x + a",
    "sub": "y - x",
    "mul": "x * y",
    "div": "x / (1.5 + a * y)",
    "pow": "(1.5 + x * x) ** a",
    "neg": "-(x * a)",
    "sin": "np.sin(a * x)",
    "cos": "np.cos(x + b)",
    "tan": "srcgrad.functions.tan(0.5 * x)",
    "arcsin": "np.arcsin(0.5 * np.tanh(x))",
    "arccos": "np.arccos(0.5 * np.tanh(y))",
    "arctan": "np.arctan(a * x)",
    "sinh": "np.sinh(x)",
    "cosh": "np.cosh(b * y)",
    "tanh": "np.tanh(x - y)",
    "arcsinh": "np.arcsinh(a * x)",
    "arccosh": "np.arccosh(1.5 + x * x)",
    "arctanh": "np.arctanh(0.5 * np.tanh(x))",
    "exp": "np.exp(a * x)",
    "expm1": "np.expm1(x)",
    "exp2": "np.exp2(x)",
    "log": "np.log(1.0 + x * x)",
    "log1p": "np.log1p(x * x)",
    "log2": "np.log2(2.0 + y)",
    "log10": "np.log10(3.0 + x)",
    "sqrt": "np.sqrt(1.0 + x * x)",
    "cbrt": "np.cbrt(x)",
    "square": "np.square(x - a)",
    "reciprocal": "np.reciprocal(2.5 + x)",
    "abs": "np.abs(x)",
    "sigmoid": "srcgrad.functions.sigmoid(a * x)",
    "relu": "srcgrad.functions.relu(x)",
    "softplus": "srcgrad.functions.softplus(x)",
    "erf": "srcgrad.functions.erf(x)",
    "arctan2": "np.arctan2(y, x)",
    "hypot": "np.hypot(x, y)",
    "maximum": "np.maximum(x, y)",
    "minimum": "np.minimum(a * x, y)",
    "sign": "np.sign(x) * x * x",
    "where": "np.where(x > y, x * x, np.sin(y))",
    "clip": "np.clip(x, a - 1.0, b)",
    "greater": "(x > y) * x",
    "greater_equal": "(x >= a) * y",
    "less": "(x < y) * y",
    "less_equal": "(x <= b) * x",
    "equal": "(x == y) * x + x",
    "not_equal": "(x != y) * y",
}
# Primitives no user spells: the partials of others, which bring them into the loop.
INDIRECT = {"step": "relu", "tie_weight": "maximum", "where_mask": "where",
            "clip_inside": "clip", "clip_below": "clip", "clip_above": "clip"}
# Their compiled float helpers call `abs`, which `srcgrad.functions` shadows with its own
# (untyped for Numba) `abs`: tested on their own below, as known failures.
FUSED_PRIMITIVES = list(SPELLINGS)


def registry_elementwise() -> list[str]:
    """The registry's elementwise primitives with a float template (what a loop body runs)."""
    return [name for name, primitive in rules.PRIMITIVES.items()
            if primitive.elementwise and primitive.scalar and primitive.scalar != "<attrs>"
            and name not in rules.ENGINE_OPS]


def test_every_elementwise_primitive_has_a_spelling_here() -> None:
    """A primitive added to the registry must be added to SPELLINGS (or INDIRECT) too."""
    names = registry_elementwise()
    assert len(names) > 40
    missing = set(names) - set(SPELLINGS) - set(INDIRECT)
    assert not missing, f"add a spelling for {sorted(missing)} to SPELLINGS"
    assert set(SPELLINGS) | set(INDIRECT) <= set(names) | {"alias"}
    assert set(names) <= fused._ELEMENTWISE_OPS


def primitives_module(directory: Path, names: list[str]) -> Any:
    """``f(a, b, x, y)``: one term per primitive, each switched on by a live global ``W_<name>``.

    The loss squares the sum so that every adjoint depends on the element.
    """
    lines = ["import numpy as np", "", "import srcgrad", ""]
    lines += [f"W_{name} = 1.0" for name in names]
    lines += ["", "", "def f(a, b, x, y):", "    acc = 0.0 * x"]
    lines += [f"    acc = acc + W_{name} * ({SPELLINGS[name]})" for name in names]
    lines += ["    return np.sum(acc * acc)", ""]
    return load("\n".join(lines), directory)


@pytest.fixture(scope="module")
def primitives(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return primitives_module(tmp_path_factory.mktemp("fused_primitives"), FUSED_PRIMITIVES)


X = np.array([-1.3, -0.7, -0.2, 0.4, 0.9, 1.6])
Y = np.array([0.5, -1.1, 0.3, 1.2, -0.4, 0.8])
A, B = 0.7, 0.3


def signature_args(signature: str) -> list[Any]:
    if signature == "mixed":  # numbers a, b; arrays x, y
        return [A, B, X.copy(), Y.copy()]
    return [np.full(X.shape, A) + 0.05 * X, np.full(X.shape, B) - 0.05 * Y, X.copy(), Y.copy()]


def switch_on(module: Any, names: list[str], on: set[str]) -> None:
    for name in names:
        setattr(module, f"W_{name}", 1.0 if name in on else 0.0)


@pytest.mark.parametrize("signature", ["mixed", "arrays"])
def test_every_elementwise_primitive_matches_numpy_backend_and_finite_differences(
    primitives: Any, signature: str
) -> None:
    """Each primitive alone (one-hot weights), then all together: value and every gradient
    against the NumPy backend (same arguments) and central differences of the plain function."""
    fused_f, numpy_f = pair(primitives.f)
    args = signature_args(signature)
    failures = []
    for name in [*FUSED_PRIMITIVES, "all"]:
        switch_on(primitives, FUSED_PRIMITIVES,
                  set(FUSED_PRIMITIVES) if name == "all" else {name})
        result = fused_f(*args)
        failures += [f"{name}: {p}" for p in mismatches(result, numpy_f(*args))]
        try:
            assert_matches_finite_differences(primitives.f, args, result[1])
        except AssertionError as error:
            failures.append(f"{name} vs central differences: {error}")
    switch_on(primitives, FUSED_PRIMITIVES, set(FUSED_PRIMITIVES))
    assert not failures, "\n".join(failures)
    # It really ran the fused loop: the serial kernel was compiled, and every helper is there.
    assert kernels(fused_f)["serial"].signatures
    source = fused_f.source
    for helper, user in INDIRECT.items():
        assert f"numba_sg.{helper}(" in source, f"{helper} (through {user}) not in the loop"


def test_primitives_at_their_kinks_match_numpy_backend(primitives: Any) -> None:
    """At a kink both backends use the same rule (abs'(0) = 0, a tie of maximum splits 1/2, a
    clip bound counts as inside): the fused loop must agree there too, not only near it."""
    fused_f, numpy_f = pair(primitives.f)
    x = np.array([0.0, -0.3, A - 1.0, B, 0.6, 1.0])
    y = np.array([0.4, -0.3, 0.2, -0.5, 0.6, 1.5])  # ties of x and y at 1 and 4
    switch_on(primitives, FUSED_PRIMITIVES, set(FUSED_PRIMITIVES))
    for signature_values in ([A, B, x, y], [np.full(6, A), np.full(6, B), x, y]):
        failures = []
        for name in ("abs", "relu", "maximum", "minimum", "sign", "where", "clip", "equal",
                     "not_equal", "greater", "greater_equal", "less", "less_equal"):
            switch_on(primitives, FUSED_PRIMITIVES, {name})
            result = fused_f(*signature_values)
            failures += [f"{name}: {p}"
                         for p in mismatches(result, numpy_f(*signature_values))]
        switch_on(primitives, FUSED_PRIMITIVES, set(FUSED_PRIMITIVES))
        assert not failures, "\n".join(failures)


def test_abs_shadowed_by_the_module(module_dir: Path) -> None:
    module = load(
        """
        import numpy as np

        from srcgrad.functions import abs


        def f(x):
            return np.sum(abs(x) * x)
        """,
        module_dir,
    )
    x = np.array([1.0, -2.0, 0.5])
    value, grads = srcgrad.grad(module.f, backend="numba")(x)
    np.testing.assert_allclose(value, np.sum(np.abs(x) * x))
    np.testing.assert_allclose(grads.x, 2 * np.abs(x))


def test_other_spellings_of_the_primitives(module_dir: Path) -> None:
    """`math`, builtins, `np.power`, `srcgrad.functions.power`, fractional and negative
    constant exponents (`math.pow` in the float template): the same primitives, other names.
    The plain function cannot take arrays through `math`, so the oracle is a NumPy twin."""
    module = load(
        """
        import math

        import numpy as np

        import srcgrad


        def f(a, b, x, y):
            u = math.sin(x) + math.cos(a * y) + math.exp(-x * x) + math.log(1.0 + y * y)
            u = u + math.sqrt(2.0 + x) + math.atan2(y, x) + math.hypot(x, y) + math.tanh(x)
            u = u + abs(x - a) + max(x, y) + min(x, y) + math.fabs(y) + math.erf(x)
            u = u + pow(1.5 + x * x, a) + (2.0 + x) ** 0.5 + x ** -2 + np.power(2.0 + y, b)
            u = u + srcgrad.functions.power(1.5 + x * x, 1.5) + math.pow(2.0 + x, a)
            u = u + math.log(2.0 + y, 3.0) + np.positive(x) + np.divide(x, 2.5 + y)
            return np.sum(u * y)


        def twin(a, b, x, y):
            u = np.sin(x) + np.cos(a * y) + np.exp(-x * x) + np.log(1.0 + y * y)
            u = u + np.sqrt(2.0 + x) + np.arctan2(y, x) + np.hypot(x, y) + np.tanh(x)
            u = u + np.abs(x - a) + np.maximum(x, y) + np.minimum(x, y) + np.abs(y)
            u = u + srcgrad.functions.erf(x)
            u = u + (1.5 + x * x) ** a + (2.0 + x) ** 0.5 + x ** -2.0 + (2.0 + y) ** b
            u = u + (1.5 + x * x) ** 1.5 + (2.0 + x) ** a
            u = u + np.log(2.0 + y) / np.log(3.0) + x + x / (2.5 + y)
            return np.sum(u * y)
        """,
        module_dir,
    )
    fused_f, numpy_f = pair(module.f)
    args = [A, B, X.copy(), Y.copy()]
    result = fused_f(*args)
    assert_same(result, numpy_f(*args))
    assert_matches_finite_differences(module.twin, args, result[1])


# ----------------------------------------------------------------------------------------------
# 2. Generated programs (tests/programs.py) against sympy and central differences
# ----------------------------------------------------------------------------------------------

GENERATED = 12  # each example compiles a kernel
# Shrinking recompiles a kernel per step (minutes): a failure prints its whole program instead.
NO_SHRINK = (Phase.explicit, Phase.reuse, Phase.generate)


def check_generated(program: Any, inputs: Any, module_dir: Path, counter: str) -> None:
    assume(all(program.guards_ok(p) for p in program.points(inputs)))
    plain, _ = program.load(module_dir)
    args = inputs.args(program.params)
    context = program.describe(inputs)
    fused_f = srcgrad.grad(plain, backend="numba", **program.grad_kwargs())
    try:
        result = fused_f(*args)
    except srcgrad.TransformError as error:  # a construct the fused loop refuses, by design
        assert "backend='numba' fuses" in str(error), context
        CHECKED[f"{counter}-refused"] += 1
        assume(False)
    except SyntaxError:  # known bug: nothing but constants to return (test_constant_value)
        CHECKED[f"{counter}-constant"] += 1
        assume(False)
    numpy_result = srcgrad.grad(plain, **program.grad_kwargs())(*args)
    assert_same(result, numpy_result, f"fused vs NumPy backend\n{context}", rtol=1e-11,
                atol=1e-11)
    value, grads = result
    output_is_array = np.ndim(plain(*args)) > 0
    exact_value, exact = oracle(program, inputs, output_is_array)
    np.testing.assert_allclose(value, exact_value, rtol=1e-9, atol=1e-9, err_msg=context)
    for name in program.differentiated:
        np.testing.assert_allclose(getattr(grads, name), exact[name], rtol=1e-9, atol=1e-9,
                                   err_msg=f"d/d{name} vs sympy\n{context}")
        fd = central_differences(plain, program, inputs, name)
        np.testing.assert_allclose(getattr(grads, name), fd, rtol=FD_RTOL, atol=FD_ATOL,
                                   err_msg=f"d/d{name} vs central differences\n{context}")
    CHECKED[counter] += 1


def all_arrays(program: Any) -> Any:
    """The same program with every parameter passed as an array (no number parameters)."""
    twin = copy.copy(program)
    twin.array_params = frozenset(program.params)
    return twin


@settings(max_examples=GENERATED, deadline=None, phases=NO_SHRINK)
@given(data=st.data())
def test_generated_all_array_programs_match_sympy(data: st.DataObject, module_dir: Path
                                                  ) -> None:
    program = all_arrays(data.draw(programs(batched=True, max_statements=5), label="program"))
    inputs = data.draw(inputs_for(program, max_length=5), label="inputs")
    check_generated(program, inputs, module_dir, "fused-arrays")


@settings(max_examples=GENERATED, deadline=None, phases=NO_SHRINK)
@given(data=st.data())
def test_generated_mixed_programs_match_sympy(data: st.DataObject, module_dir: Path) -> None:
    program = data.draw(programs(batched=True, max_statements=5), label="program")
    assume(len(program.array_params) < len(program.params))  # some number parameter
    inputs = data.draw(inputs_for(program, max_length=5), label="inputs")
    check_generated(program, inputs, module_dir, "fused-mixed")


def test_generated_programs_mostly_ran() -> None:
    """The generated-program tests above must not pass by refusing (or skipping) everything."""
    ran = CHECKED["fused-arrays"]
    skipped = CHECKED["fused-arrays-refused"] + CHECKED["fused-arrays-constant"]
    if ran + skipped == 0:
        pytest.skip("run together with test_generated_all_array_programs_match_sympy")
    assert ran >= GENERATED - 2 and skipped <= ran // 3, (ran, skipped)


def test_constant_value(module_dir: Path) -> None:
    module = load(
        """
        def constant(x):
            u = 1.5
            return u * u
        """,
        module_dir,
    )
    value, grads = srcgrad.grad(module.constant, backend="numba")(np.arange(3.0))
    assert value == 2.25
    np.testing.assert_array_equal(grads.x, np.zeros(3))


# ----------------------------------------------------------------------------------------------
# 3. The Gaussian curve fit: parallel and serial kernels
# ----------------------------------------------------------------------------------------------


def gaussian_fit(mu, sigma, s, x, y):
    return np.sum((s * np.exp(-((x - mu) ** 2) / sigma**2) - y) ** 2)


@pytest.fixture(scope="module")
def fused_fit() -> Any:
    return srcgrad.grad(gaussian_fit, backend="numba")


@pytest.mark.parametrize("samples", [100, 100_000], ids=["serial", "parallel"])
def test_gaussian_fit_matches_numpy_backend_autograd_and_finite_differences(
    fused_fit: Any, samples: int
) -> None:
    ag = pytest.importorskip("autograd")
    anp = pytest.importorskip("autograd.numpy")
    rng = np.random.default_rng(samples)
    x = np.linspace(-4.0, 4.0, samples)
    y = 1.3 * np.exp(-((x - 0.4) ** 2) / 1.1**2) + 0.05 * rng.standard_normal(samples)
    args = [0.1, 0.9, 1.1, x, y]
    result = fused_fit(*args)
    assert_same(result, srcgrad.grad(gaussian_fit)(*args), f"{samples} samples",
                rtol=1e-10, atol=1e-12)

    def autograd_fit(mu, sigma, s, x, y):
        return anp.sum((s * anp.exp(-((x - mu) ** 2) / sigma**2) - y) ** 2)

    value, grads = result
    np.testing.assert_allclose(value, autograd_fit(*args), rtol=1e-10)
    for index, name in enumerate(grads._fields):
        expected = ag.grad(autograd_fit, index)(*args)
        np.testing.assert_allclose(getattr(grads, name), expected, rtol=1e-9, atol=1e-12,
                                   err_msg=f"d/d{name} vs autograd")
    for index in range(3):  # the numbers, by central differences of the plain function
        fd = finite_differences(gaussian_fit, args, index)
        np.testing.assert_allclose(grads[index], fd, rtol=1e-6, atol=1e-6)
    path = "parallel" if samples >= fused.PARALLEL_FROM else "serial"
    assert kernels(fused_fit)[path].signatures, f"the {path} kernel did not run"


def test_small_arrays_do_not_start_the_parallel_kernel(module_dir: Path) -> None:
    module = load(
        """
        import numpy as np


        def loss(w, x):
            return np.sum((w * x - 1.0) ** 2)
        """,
        module_dir,
    )
    fused_f = srcgrad.grad(module.loss, backend="numba")
    x = np.linspace(0.0, 1.0, fused.PARALLEL_FROM - 1)
    value, grads = fused_f(0.5, x)
    np.testing.assert_allclose(value, np.sum((0.5 * x - 1.0) ** 2), rtol=1e-12)
    np.testing.assert_allclose(grads.w, np.sum(2 * (0.5 * x - 1.0) * x), rtol=1e-12)
    np.testing.assert_allclose(grads.x, 2 * (0.5 * x - 1.0) * 0.5, rtol=1e-12)
    assert kernels(fused_f)["serial"].signatures
    assert not kernels(fused_f)["parallel"].signatures


# ----------------------------------------------------------------------------------------------
# 4. Stages: elementwise values that read a total
# ----------------------------------------------------------------------------------------------

STAGES_SOURCE = """
import numpy as np


def centred(x, w):
    return np.sum((x - np.mean(x * w)) ** 2)


def normalised(s, x, y):
    return np.mean((s * x / np.mean(x) - y) ** 2)


def three_stages(x, y):
    z = x - np.mean(x)
    return np.sum(z * y) / np.sum(np.abs(z - np.mean(z * y)))
"""


@pytest.fixture(scope="module")
def stages(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return load(STAGES_SOURCE, tmp_path_factory.mktemp("fused_stages"))


def test_stages_match_numpy_backend_and_autograd(stages: Any) -> None:
    ag = pytest.importorskip("autograd")
    anp = pytest.importorskip("autograd.numpy")
    rng = np.random.default_rng(7)
    x, w, y = rng.uniform(0.5, 2.0, 9), rng.uniform(-1.0, 1.0, 9), rng.uniform(-1.0, 1.0, 9)
    cases = {
        "centred": ([x, w], lambda x, w: anp.sum((x - anp.mean(x * w)) ** 2)),
        "normalised": ([1.3, x, y],
                       lambda s, x, y: anp.mean((s * x / anp.mean(x) - y) ** 2)),
        "three_stages": ([x, y], lambda x, y: anp.sum((x - anp.mean(x)) * y) / anp.sum(
            anp.abs(x - anp.mean(x) - anp.mean((x - anp.mean(x)) * y)))),
    }
    loops = {}
    for name, (args, reference) in cases.items():
        fn = getattr(stages, name)
        fused_f = srcgrad.grad(fn, backend="numba")
        result = fused_f(*args)
        assert_same(result, srcgrad.grad(fn)(*args), name, rtol=1e-11, atol=1e-12)
        value, grads = result
        np.testing.assert_allclose(value, reference(*args), rtol=1e-12, err_msg=name)
        for index, field in enumerate(grads._fields):
            np.testing.assert_allclose(getattr(grads, field), ag.grad(reference, index)(*args),
                                       rtol=1e-10, atol=1e-12, err_msg=f"{name} d/d{field}")
        loops[name] = fused_f.source.count("prange(")
    # A total read by elements needs a loop after the one that sums it, and the gradient one
    # more (the total's adjoint is itself a total); three_stages nests one mean deeper.
    assert loops["centred"] >= 2 and loops["normalised"] >= 2, loops
    assert loops["three_stages"] > loops["centred"], loops


# ----------------------------------------------------------------------------------------------
# 5. Other kinds of arguments: the NumPy backend's function; 2-D arrays
# ----------------------------------------------------------------------------------------------

KINDS_SOURCE = """
import numpy as np


def fit(mu, x, y):
    return np.sum((mu * np.sin(x) - y) ** 2)


def elementwise(a, x, y):
    return a * x * np.cos(y)
"""


@pytest.fixture(scope="module")
def kinds(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return load(KINDS_SOURCE, tmp_path_factory.mktemp("fused_kinds"))


def test_calls_of_other_kinds_match_numpy_backend(kinds: Any) -> None:
    fused_f, numpy_f = pair(kinds.fit)
    x, y = np.linspace(-1.0, 2.0, 5), np.linspace(0.5, -0.5, 5)
    first = fused_f(0.7, x, y)  # compiles the loop for (number, array, array)
    assert_same(first, numpy_f(0.7, x, y))
    np.testing.assert_allclose(first[1].mu, np.sum(2 * (0.7 * np.sin(x) - y) * np.sin(x)))
    calls = {
        "broadcast": (0.7, x, np.array([0.25])),
        "2-D against 1-D": (0.7, np.outer(np.ones(2), x), y),
        "list": (0.7, x, list(y)),
        "array for a number": (np.full(5, 0.7), x, y),
        "numpy scalar": (np.float64(0.7), x, y),
        "0-d arrays": (0.7, np.array(0.3), np.array(0.1)),
        "int number": (2, x, y),
        "int arrays": (0.7, np.arange(5), np.arange(5) - 2),
    }
    for what, args in calls.items():
        assert_same(fused_f(*args), numpy_f(*args), what)
    assert kernels(fused_f)["serial"].signatures  # the first call did run the loop


def test_float32_arrays_keep_their_dtype(kinds: Any) -> None:
    fused_f, numpy_f = pair(kinds.fit)
    x = np.linspace(-1.0, 2.0, 5, dtype=np.float32)
    y = np.linspace(0.5, -0.5, 5, dtype=np.float32)
    value, grads = fused_f(0.7, x, y)
    assert grads.x.dtype == grads.y.dtype == np.float32
    assert type(value) is np.float32  # as the NumPy backend's np.sum of float32 arrays
    assert type(fused_f(0.7, x.astype(np.float64), y)[0]) is np.float64
    assert_same((value, grads), numpy_f(0.7, x, y), "float32", rtol=1e-5, atol=1e-6)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    np.testing.assert_allclose(grads.x, 2 * (0.7 * np.sin(x64) - y64) * 0.7 * np.cos(x64),
                               rtol=1e-5, atol=1e-6)


def test_two_dimensional_arrays_are_flattened_and_reshaped_back(kinds: Any) -> None:
    fused_f, numpy_f = pair(kinds.elementwise)
    x = np.arange(12.0).reshape(3, 4) / 7
    y = np.linspace(-1.0, 1.0, 12).reshape(4, 3).T  # not contiguous: ravel copies it
    for args in ([0.4, x, y], [np.full((3, 4), 0.4), x, y]):
        result = fused_f(*args)
        assert_same(result, numpy_f(*args))
        value, grads = result
        assert value.shape == grads.x.shape == grads.y.shape == (3, 4)
        np.testing.assert_allclose(value, 0.4 * x * np.cos(y), rtol=1e-14)  # an output array
        np.testing.assert_allclose(grads.x, 0.4 * np.cos(y), rtol=1e-14)
        np.testing.assert_allclose(grads.y, -0.4 * x * np.sin(y), rtol=1e-14, atol=1e-15)
        assert_matches_finite_differences(kinds.elementwise, args, grads)


def test_fallback_of_a_weighted_square(module_dir: Path) -> None:
    module = load(
        """
        import numpy as np


        def f(x, y, w):
            return np.sum(y + w * np.square(x))
        """,
        module_dir,
    )
    fused_f = srcgrad.grad(module.f, backend="numba")
    x, y = np.array([1.0, 2.0]), np.array([0.5, 0.25])
    fused_f(x, y, 1.5)
    value, grads = fused_f(x, np.array([0.5]), 1.5)  # broadcasting: the NumPy backend
    np.testing.assert_allclose(value, 0.5 * 2 + 1.5 * 5.0)
    np.testing.assert_allclose(grads.x, 2 * 1.5 * x)
    np.testing.assert_allclose(grads.w, 5.0)


# ----------------------------------------------------------------------------------------------
# Number parameters: their gradient is a total over the elements
# ----------------------------------------------------------------------------------------------


def test_number_gradient_is_summed_over_the_elements(module_dir: Path) -> None:
    module = load(
        """
        import numpy as np


        def shifted(a, x):
            return np.sum(x + a)


        def both(a, x):
            return np.sum(x * x + a * a)


        def averaged(a, x):
            return np.mean(x * 0.5 + 3.0 * a)
        """,
        module_dir,
    )
    x = np.arange(6.0)
    expected = {"shifted": 6.0, "both": 6 * 2 * 0.5, "averaged": 3.0}  # by hand
    got = {name: srcgrad.grad(getattr(module, name), backend="numba")(0.5, x)[1].a
           for name in expected}
    assert got == pytest.approx(expected, rel=1e-12)


# ----------------------------------------------------------------------------------------------
# 6. What the fused loop refuses, and where it says so
# ----------------------------------------------------------------------------------------------

REFUSED_SOURCE = '''
import numpy as np


def smooth(x):
    return x * x / (1.0 + x * x)


def smooth_derive(x):
    return 2.0 * x / (1.0 + x * x) ** 2


def uses_matmul(x, W):
    h = x * 2.0
    return np.sum(h @ W)  # refused: matmul


def uses_axis(x):
    return np.sum(np.sum(x, axis=0) ** 2)  # refused: axis


def uses_loop(x):
    acc = 0.0 * x
    for k in range(3):  # refused: loop
        acc = acc + x * k
    return np.sum(acc)


def uses_tuple(params, x):  # refused: tuple
    a, b = params
    return np.sum(a * x + b)


def uses_user_function(x):
    return np.sum(smooth(x))  # refused: call


def uses_index(x):
    return np.sum(x * x[0])  # refused: index


def uses_branch(a, x):
    if a > 0:  # refused: branch
        x = x * a
    return np.sum(x)
'''

REFUSED_CALLS = {
    "uses_matmul": ((np.ones((2, 3)), np.ones((3, 2))), "refused: matmul", "np.matmul"),
    "uses_axis": ((np.ones((2, 3)),), "refused: axis", "over some axes"),
    "uses_loop": ((np.ones(3),), "refused: loop", "a loop"),
    "uses_tuple": (((np.ones(3), np.ones(3)), np.ones(3)), "refused: tuple", "tuple, list or dict"),
    "uses_user_function": ((np.ones(3),), "refused: call", "a call to `smooth`"),
    "uses_index": ((np.ones(3),), "refused: index", "np.getitem"),
    "uses_branch": ((0.5, np.ones(3)), "refused: branch", "an `if`"),
}


@pytest.fixture(scope="module")
def refused(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return load(REFUSED_SOURCE, tmp_path_factory.mktemp("fused_refused"))


@pytest.mark.parametrize("name", sorted(REFUSED_CALLS))
def test_unfusable_constructs_raise_transform_error_at_their_line(refused: Any, name: str
                                                                  ) -> None:
    args, marker, phrase = REFUSED_CALLS[name]
    fn = getattr(refused, name)
    srcgrad.grad(fn)(*args)  # the NumPy backend takes it: the refusal is the fused loop's
    with pytest.raises(srcgrad.TransformError) as info:
        srcgrad.grad(fn, backend="numba")(*args)
    error = info.value
    path = inspect.getsourcefile(fn)
    lines = Path(path).read_text().splitlines()
    lineno = next(i for i, line in enumerate(lines, 1) if marker in line)
    assert error.filename == path
    assert error.lineno == lineno
    message = str(error)
    assert f'File "{path}", line {lineno}' in message
    assert lines[lineno - 1].strip() in message
    assert "backend='numpy'" in message
    assert phrase in message, message


def test_unknown_backend_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="bogus"):
        srcgrad.grad(gaussian_fit, backend="bogus")
    with pytest.raises(ValueError, match="bogus"):
        srcgrad.grad(backend="bogus")


GLOBAL_ARRAY_SOURCE = """
import numpy as np

DATA = np.arange(4.0)


def weighted(w):
    return np.sum(w * DATA)  # a module-global array
"""


def test_a_global_array_is_refused_or_falls_back(module_dir: Path) -> None:
    module = load(GLOBAL_ARRAY_SOURCE, module_dir)
    w = np.linspace(0.0, 1.0, 4)
    fused_f = srcgrad.grad(module.weighted, backend="numba")
    try:
        value, grads = fused_f(w)
    except srcgrad.TransformError as error:
        assert error.lineno is not None and "DATA" in str(error)
        return
    np.testing.assert_allclose(value, np.sum(w * module.DATA))
    np.testing.assert_allclose(grads.w, module.DATA)


# ----------------------------------------------------------------------------------------------
# 7. Globals are read live; closure numbers
# ----------------------------------------------------------------------------------------------


def test_module_globals_are_read_live_and_closures_are_constants(module_dir: Path) -> None:
    module = load(
        """
        import numpy as np

        SCALE = 2.0


        def scaled(w, x):
            return np.sum(SCALE * (w * x - 1.0) ** 2)


        def make(c):
            def closure(w, x):
                return np.sum(c * np.sin(w * x))

            return closure
        """,
        module_dir,
    )
    x = np.linspace(-1.0, 1.0, 7)
    fused_f, numpy_f = pair(module.scaled)
    for scale in (2.0, 3.5, -1.0):
        module.SCALE = scale
        value, grads = fused_f(0.3, x)
        np.testing.assert_allclose(value, scale * np.sum((0.3 * x - 1.0) ** 2), rtol=1e-13)
        np.testing.assert_allclose(grads.w, scale * np.sum(2 * (0.3 * x - 1.0) * x),
                                   rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(grads.x, scale * 2 * (0.3 * x - 1.0) * 0.3, rtol=1e-13)
        assert_same((value, grads), numpy_f(0.3, x), f"SCALE={scale}")
    for c in (1.5, -0.25):
        closure = module.make(c)
        fused_c = srcgrad.grad(closure, backend="numba")
        value, grads = fused_c(0.8, x)
        np.testing.assert_allclose(value, c * np.sum(np.sin(0.8 * x)), rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(grads.x, c * 0.8 * np.cos(0.8 * x), rtol=1e-13)
        assert_same((value, grads), srcgrad.grad(closure)(0.8, x), f"c={c}")
        assert_matches_finite_differences(closure, [0.8, x], grads)


# ----------------------------------------------------------------------------------------------
# 8. inf and nan as NumPy gives them, not exceptions
# ----------------------------------------------------------------------------------------------


def test_division_by_zero_and_log_of_negatives_give_inf_and_nan(module_dir: Path) -> None:
    module = load(
        """
        import math

        import numpy as np


        def poles(a, x):
            return np.sum(a / x)


        def logs(a, x):
            return np.sum(np.log(x) * a + math.sqrt(a - 1.0) * x)


        def logs_twin(a, x):  # what `logs` means, where math.sqrt would raise
            return np.sum(np.log(x) * a + np.sqrt(a - 1.0) * x)


        def inverse_number(a, x):
            return np.sum(x / a)
        """,
        module_dir,
    )
    with np.errstate(all="ignore"):
        cases = [
            (module.poles, module.poles, [1.0, np.array([0.0, 2.0, 4.0])]),
            (module.poles, module.poles, [1.0, np.array([-0.0, 2.0])]),
            (module.logs, module.logs_twin, [0.5, np.array([-1.0, 0.0, 2.0])]),
            (module.logs, module.logs_twin, [2.0, np.array([-1.0, 3.0])]),
            (module.inverse_number, module.inverse_number, [0.0, np.array([1.0, -2.0, 0.0])]),
        ]
        for fn, plain, args in cases:
            fused_f, numpy_f = pair(fn)
            value, grads = fused_f(*args)
            # The NumPy backend's array path (a NumPy scalar is not a number to it): its mixed
            # path raises on `1.0 / a` (test_mixed_path_division_by_a_zero_number).
            expected_value, expected = numpy_f(*[np.float64(v) if type(v) is float else v
                                                 for v in args])
            np.testing.assert_array_equal(value, plain(*args))  # NumPy's own inf/nan
            np.testing.assert_array_equal(value, expected_value)
            for name in grads._fields:  # the same infs and nans, in the same places
                np.testing.assert_allclose(getattr(grads, name), getattr(expected, name),
                                           rtol=1e-12, err_msg=f"{fn.__name__} d/d{name}")
        value, grads = srcgrad.grad(module.poles, backend="numba")(1.0, np.array([0.0, 2.0]))
        assert value == math.inf and grads.x[0] == -math.inf and grads.a == math.inf
        value, grads = srcgrad.grad(module.logs, backend="numba")(0.5, np.array([-1.0, 2.0]))
        assert math.isnan(value) and math.isnan(grads.a) and math.isnan(grads.x[1])


def test_mixed_path_division_by_a_zero_number(module_dir: Path) -> None:
    module = load(
        """
        import numpy as np


        def inverse_number(a, x):
            return np.sum(x / a)
        """,
        module_dir,
    )
    fused_f = srcgrad.grad(module.inverse_number, backend="numba")
    fused_f(2.0, np.array([1.0, 2.0]))
    with np.errstate(all="ignore"):
        value, grads = fused_f(0.0, [1.0, 2.0])  # a list: the NumPy backend's function
    assert value == math.inf and grads.a == -math.inf
    np.testing.assert_array_equal(grads.x, [math.inf, math.inf])


# ----------------------------------------------------------------------------------------------
# 9. The generated source
# ----------------------------------------------------------------------------------------------


def test_source_shows_the_loop_the_kernels_and_the_users_lines(fused_fit: Any) -> None:
    x = np.linspace(-1.0, 1.0, 50)
    fused_fit(0.1, 1.2, 0.9, x, np.cos(x))  # built for float parameters, array data
    source = fused_fit.source
    lineno = inspect.getsourcelines(gaussian_fit)[1]
    user_line = inspect.getsource(gaussian_fit).splitlines()[1].strip()
    assert f"(backend='numba') from {__file__}, line {lineno}." in source
    # exp runs as NumPy's ufunc between two passes: one writes its argument, one reads it.
    assert source.count("numba.prange(") == 2
    assert "np.exp(exp_values, out=exp_values)" in source
    assert f"# line {lineno + 1}: {user_line}" in source
    assert f"# line {lineno + 1}, backward: {user_line}" in source
    assert "njit(error_model=\"numpy\")" in source
    assert "njit(error_model=\"numpy\", parallel=True)" in source
    assert f">= {fused.PARALLEL_FROM}" in source
    assert "return numpy_backend(mu, sigma, s, x, y)" in source
    # The only arrays made: the array gradients and the buffer exp runs on.
    assert source.count("np.empty(") == 3
    loop = source.split("numba.prange(", 1)[1].split("return value")[0]  # both passes
    code = [line for line in loop.splitlines() if not line.strip().startswith("#")
            and "np.exp(exp_values, out=exp_values)" not in line]
    assert "x[i]" in loop and "y[i]" in loop
    assert not [line for line in code if "np." in line]  # per element: no NumPy calls


def test_backend_numba_without_numba_says_how_to_install(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    monkeypatch.setattr(fused, "available", lambda: False)
    with pytest.raises(ImportError, match=r"pip install 'srcgrad\[numba\]'"):
        srcgrad.grad(gaussian_fit, backend="numba")
