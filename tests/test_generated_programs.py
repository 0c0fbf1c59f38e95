"""srcgrad against two independent oracles on hundreds of random programs.

Why: srcgrad rewrites source, so its bugs hide in combinations (a swap after an augmented
assignment, a reassigned parameter read by a later statement, a closure constant inside a
variable exponent) that hand-written tests never reach. Each program comes from `programs.py` as
Python text plus a sympy twin built from the same random tree, and every gradient must match
  (a) sympy's exact derivative (sympy differentiates each statement, the oracle chains the
      partials through the statements), evaluated at 40 digits, to ~1e-9 relative, and
  (b) central finite differences of the *plain* function in float64, to ~1e-5 relative,
with zero tolerated mismatches. Hypothesis shrinks a failure to a minimal program and input.
No expected value comes from srcgrad itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sympy as sp
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from programs import (
    BINARY_MATH,
    BINARY_NP,
    CHECKED,
    FUNCTION_NAMES,
    GUARD_MARGIN,
    UNARY,
    Inputs,
    Program,
    inputs_for,
    load_module,
    programs,
)
from support import central_difference

import srcgrad

# Programs per function: every function of the contract is the focus of this many programs,
# which call it in every spelling (see programs.programs). 33 functions: 330 + 231 = 561 in CI.
# A deeper local search: SRCGRAD_PROGRAM_SCALE=10 HYPOTHESIS_PROFILE=explore pytest ...
SCALE = int(os.environ.get("SRCGRAD_PROGRAM_SCALE", "1"))
SCALAR_PER_FUNCTION = 10 * SCALE
BATCHED_PER_FUNCTION = 7 * SCALE
FLOAT32_PROGRAMS = 25 * SCALE

SYMPY_RTOL, SYMPY_ATOL = 1e-9, 1e-9
FD_RTOL, FD_ATOL = 1e-5, 1e-6
VALUE_RTOL = 1e-12  # srcgrad's value against the plain function's: the same float arithmetic


def differentiate(program: Program, plain: Callable[..., Any], decorated: Any) -> Any:
    """The srcgrad function under test: the module's own @grad, or srcgrad.grad applied here."""
    if decorated is not None:
        return decorated
    if program.wrt is None:
        return srcgrad.grad(plain)
    return srcgrad.grad(wrt=program.wrt)(plain)


def total(value: Any) -> float:
    return float(np.sum(value, dtype=np.float64))


def central_differences(
    plain: Callable[..., Any], program: Program, inputs: Inputs, name: str
) -> Any:
    """d sum(plain(...)) / d name, one element at a time: the definition, nothing assumed."""

    def at(shifted: Any) -> float:
        values = dict(inputs.values, **{name: shifted})
        return total(plain(*[values[p] for p in program.params]))

    return central_difference(at, inputs.values[name])


def oracle(program: Program, inputs: Inputs, output_is_array: bool) -> tuple[Any, dict[str, Any]]:
    """Exact value and gradient of sum(output) from sympy, shaped like srcgrad's answer.

    A parameter passed as a float gets the sum over output elements (it was broadcast), an
    array parameter gets one derivative per element. If the output is a scalar even though
    arrays were passed, nothing was broadcast and the float gradients are not summed.
    """
    points = program.points(inputs)
    evaluated = [program.oracle_point(p) for p in points]
    values = np.array([v for v, _ in evaluated])
    grads = {}
    for k, p in enumerate(program.params):
        per_point = np.array([g[k] for _, g in evaluated])
        if p in program.array_params:
            grads[p] = per_point
        else:
            grads[p] = float(per_point.sum()) if output_is_array else float(per_point[0])
    return (values if output_is_array else values[0]), grads


def assert_close(actual: Any, expected: Any, rtol: float, atol: float, what: str) -> None:
    np.testing.assert_allclose(
        np.asarray(actual, dtype=np.float64), expected, rtol=rtol, atol=atol, err_msg=what
    )


def check_program(program: Program, inputs: Inputs, module_dir: Path, counter: str) -> None:
    """Every check of one (program, input) pair; see the module docstring for the tolerances."""
    assume(all(program.guards_ok(p) for p in program.points(inputs)))
    assert program.required <= program.features, "generator skipped a focus spelling"
    plain, decorated = program.load(module_dir)
    args = inputs.args(program.params)
    context = program.describe(inputs)

    expected_value = plain(*args)
    result = differentiate(program, plain, decorated)(*args)
    value, grads = result  # documented as tuple-unpackable: (value, namedtuple)
    assert grads._fields == program.differentiated, context
    assert np.shape(value) == np.shape(expected_value), context
    assert_close(value, expected_value, VALUE_RTOL, 1e-12, f"value vs plain function\n{context}")

    output_is_array = np.ndim(expected_value) > 0
    exact_value, exact_grads = oracle(program, inputs, output_is_array)
    assert_close(value, exact_value, SYMPY_RTOL, SYMPY_ATOL, f"value vs sympy\n{context}")
    for name in program.differentiated:
        gradient, given_value = getattr(grads, name), inputs.values[name]
        where = f"d/d{name}"
        assert np.shape(gradient) == np.shape(given_value), f"{where} shape\n{context}"
        if np.ndim(given_value) == 0:
            assert isinstance(gradient, float | np.floating), f"{where}: {type(gradient)}"
        else:
            assert gradient.dtype == given_value.dtype, f"{where} dtype\n{context}"
        assert_close(
            gradient, exact_grads[name], SYMPY_RTOL, SYMPY_ATOL, f"{where} vs sympy\n{context}"
        )
        fd = central_differences(plain, program, inputs, name)
        assert_close(gradient, fd, FD_RTOL, FD_ATOL, f"{where} vs finite differences\n{context}")
    CHECKED[counter] += 1


@pytest.mark.parametrize("focus", FUNCTION_NAMES)
@settings(max_examples=SCALAR_PER_FUNCTION)
@given(data=st.data())
def test_scalar_programs_match_sympy_and_finite_differences(
    focus: str, data: st.DataObject, module_dir: Path
) -> None:
    """Python-float inputs: `math` spellings allowed, gradients are plain floats."""
    program = data.draw(programs(focus=focus), label="program")
    inputs = data.draw(inputs_for(program), label="inputs")
    check_program(program, inputs, module_dir, "scalar")


@pytest.mark.parametrize("focus", FUNCTION_NAMES)
@settings(max_examples=BATCHED_PER_FUNCTION)
@given(data=st.data())
def test_batched_programs_match_sympy_and_finite_differences(
    focus: str, data: st.DataObject, module_dir: Path
) -> None:
    """1-D float64 arrays for some parameters, floats for the rest: elementwise semantics,
    per-element gradients for arrays and summed gradients for broadcast floats."""
    program = data.draw(programs(batched=True, focus=focus), label="program")
    inputs = data.draw(inputs_for(program), label="inputs")
    check_program(program, inputs, module_dir, "batched")


@settings(max_examples=FLOAT32_PROGRAMS)
@given(data=st.data())
def test_float32_arrays_get_float32_gradients(data: st.DataObject, module_dir: Path) -> None:
    """A float32 array parameter gets a float32 gradient of its shape, close to the exact one.

    Why: silently upcasting (or returning a float64 gradient for float32 weights) breaks users
    who keep float32 models. Values are compared to sympy at float32-rounded inputs with a
    float32-sized tolerance; small programs keep rounding amplification low.
    """
    program = data.draw(programs(batched=True, max_statements=4, max_depth=2), label="program")
    inputs = data.draw(inputs_for(program, dtype=np.float32), label="inputs")
    assume(all(program.guards_ok(p) for p in program.points(inputs)))
    plain, decorated = program.load(module_dir)
    args = inputs.args(program.params)
    expected_value = plain(*args)
    value, grads = differentiate(program, plain, decorated)(*args)
    context = program.describe(inputs)
    augmented = any(op in program.source for op in ("+=", "-=", "*=", "/=", "**="))
    if not augmented:
        # srcgrad never mutates: `x /= s` means `x = x / s`, which follows NumPy's promotion
        # rules, where NumPy's in-place operator keeps x's dtype (docs/design.md). Values are
        # compared for dtype only when no augmented assignment can make that difference.
        assert np.asarray(value).dtype == np.asarray(expected_value).dtype, context
    _, exact = oracle(program, inputs, np.ndim(expected_value) > 0)
    for name in program.differentiated:
        gradient = getattr(grads, name)
        if name in program.array_params:
            assert isinstance(gradient, np.ndarray), context
            assert gradient.dtype == np.float32, f"d/d{name}: {gradient.dtype}\n{context}"
            assert gradient.shape == inputs.values[name].shape, context
        tolerance = 2e-3 * max(1.0, float(np.max(np.abs(exact[name]))))
        assert_close(gradient, exact[name], 2e-3, tolerance, f"d/d{name} vs sympy\n{context}")
    CHECKED["float32"] += 1


def test_float32_gradient_dtype_on_a_fixed_program(module_dir: Path) -> None:
    """The float32 contract on one readable program, so a failure needs no shrinking to read."""
    module = load_module(
        "from srcgrad.functions import sin\n\n\n"
        "def f(a, b):\n"
        "    c = sin(a) * b\n"
        "    c += a ** 2\n"
        "    return c + 0.2 * sin(a * 5)\n",
        module_dir,
    )
    a = np.linspace(-1.0, 1.0, 7, dtype=np.float32)
    value, g = srcgrad.grad(module.f)(a, 1.3)
    assert g.a.dtype == np.float32 and g.a.shape == (7,)
    assert value.dtype == module.f(a, 1.3).dtype  # float32 + Python float stays float32
    a64 = a.astype(np.float64)
    expected = np.cos(a64) * 1.3 + 2 * a64 + np.cos(a64 * 5)
    np.testing.assert_allclose(g.a, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(float(g.b), np.sum(np.sin(a64)), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------
# The generator itself: a test suite is only as good as what it generates.
# ------------------------------------------------------------------------------------------


def _features(batched: bool, focus: str, n: int) -> set[str]:
    seen: set[str] = set()

    @settings(max_examples=n, derandomize=True, database=None)
    @given(programs(batched=batched, focus=focus))
    def collect(program: Program) -> None:
        assert program.required <= program.features
        seen.update(program.features)

    collect()
    return seen


def _required_features(batched: bool) -> set[str]:
    required = {"sf:abs", "builtin:abs"}
    required |= {f"sf:{name}" for name in FUNCTION_NAMES}
    required |= {f"np:{n}" for n, u in UNARY.items() if u.np_name}
    required |= {f"np:{n}" for n in BINARY_NP}
    if not batched:
        required |= {f"math:{n}" for n, u in UNARY.items() if u.math_name}
        required |= {f"math:{n}" for n in BINARY_MATH}
    required |= {f"op:{op}" for op in ("+", "-", "*", "/", "unary-", "unary+")}
    required |= {f"op:pow_{kind}" for kind in ("int", "negint", "float", "var", "constbase")}
    required |= {f"augassign:{op}" for op in ("+", "-", "*", "/", "**")}
    required |= {"assign", "reassign", "reassign-param", "swap", "tuple-assign", "wrt"}
    required |= {"global", "closure", "closure-fn", "decorator"}
    if batched:
        required.add("mixed-float-array")
    return required


@pytest.mark.parametrize("batched", [False, True], ids=["scalar", "batched"])
def test_generator_covers_every_function_operator_and_statement(batched: bool) -> None:
    """Every primitive in every spelling, each operator and statement form must actually occur
    among generated programs; otherwise 'zero mismatches' would prove less than it claims.
    (Sampled like the checked runs, though not the very same programs.)"""
    seen = set().union(*(_features(batched, focus, 4) for focus in FUNCTION_NAMES))
    missing = _required_features(batched) - seen
    assert not missing, f"never generated: {sorted(missing)}"


def test_oracle_chain_rule_through_statements_on_a_known_program(module_dir: Path) -> None:
    """The oracle differentiates statement by statement (SSA) and chains the partials itself;
    check that machinery, swap and augmented assignment included, against a hand derivation:
    out = x*y + x**3*y**2, so d/dx = y + 3x^2y^2 and d/dy = x + 2x^3y. Also check guards."""
    x, y = sp.symbols("x y", real=True)
    u0, u1 = sp.symbols("u__0 u__1", real=True)
    program = Program(
        params=("x", "y"),
        body=["u = x * y", "u, y = y, u", "u += y ** 2", "return u * x"],
        # after the swap, `u` is the parameter y and `y` is u__0
        definitions=[(u0, x * y), (u1, y + u0**2)],
        output=u1 * x,
        guards=[x - 1],  # as if the program had a kink where x == 1
        imports=set(),
        constants={"K": 1.0},
        closure=False,
        decorated=False,
        wrt=None,
        array_params=frozenset(),
        features=set(),
    )
    plain, _ = program.load(module_dir)
    value, gradient = program.oracle_point([1.5, -0.5])
    assert plain(1.5, -0.5) == value == 1.5 * -0.5 + 1.5**3 * 0.25
    assert gradient == [-0.5 + 3 * 2.25 * 0.25, 1.5 + 2 * 1.5**3 * -0.5]
    assert program.guards_ok([1.5, -0.5])
    assert not program.guards_ok([1.0 + GUARD_MARGIN / 2, -0.5])
