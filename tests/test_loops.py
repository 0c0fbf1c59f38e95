"""`for i in range(...)` loops, differentiated as loops (issue 4, loop parts).

Why these tests: a loop is the first construct whose generated code is not straight-line. Its
forward loop saves the carried values on a tape and the backward loop pops them and runs the
body's adjoint in reverse, so the failure modes are new: an off-by-one in the tape, an
invariant's adjoint summed in the wrong shape, a carried value that changes shape after the
first iteration, recursion or code size that grows with the iteration count, and a bound
parameter (`n` in `range(n)`) that must be treated as non-differentiable.

Every gradient is checked against something that shares no code with srcgrad: autograd
(differentiating a twin written with `autograd.numpy`), a hand-written backward loop, or central
finite differences of the plain function. Nothing expected comes from srcgrad itself.
"""

from __future__ import annotations

import math
import os
import textwrap
import tracemalloc
from pathlib import Path
from typing import Any

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from support import central_difference, import_source

import srcgrad
from srcgrad import TransformError
from srcgrad.functions import exp, sin

# autograd warns when a loop runs zero times and the output ignores an argument: expected here.
pytestmark = pytest.mark.filterwarnings("ignore:Output seems independent of input")

DT = 0.01  # the recurrences' step size: a module constant, read by the generated code
STEPS = 1000
RTOL = 1e-10  # srcgrad vs autograd: the same chain rule in a different order of rounding


def autograd_grads(fn: Any, args: tuple, argnums: tuple[int, ...]) -> list[Any]:
    """d sum(fn(*args)) / d args[k] for each k in argnums, by autograd."""

    def total(*a: Any) -> Any:
        return anp.sum(fn(*a))

    return [autograd.grad(total, k)(*args) for k in argnums]


def assert_grads_match(grads: Any, expected: dict[str, Any], rtol: float = RTOL,
                       atol: float = 1e-13) -> None:
    """Each named gradient equals the oracle's, and has the shape of its argument's oracle."""
    for name, want in expected.items():
        got = getattr(grads, name)
        assert np.shape(got) == np.shape(want), f"d_{name}: shape {np.shape(got)}"
        np.testing.assert_allclose(np.asarray(got, dtype=np.float64), want, rtol=rtol,
                                   atol=atol, err_msg=f"d_{name}")


# -- the scalar recurrence ------------------------------------------------------------------------

def recurrence(x, w):
    for _ in range(STEPS):
        x = x + DT * sin(x) * w
    return x


def recurrence_math(x, w):
    for _ in range(STEPS):
        x = x + DT * math.sin(x) * w
    return x


def recurrence_steps(x, w, n):
    for _ in range(n):
        x = x + DT * sin(x) * w
    return x


def recurrence_autograd(x, w):
    for _ in range(STEPS):
        x = x + DT * anp.sin(x) * w
    return x


def recurrence_by_hand(x: Any, w: float, steps: int = STEPS) -> tuple[Any, Any, float]:
    """Value, d sum(value)/dx0 and d sum(value)/dw by an explicit tape and a reversed loop."""
    saved = []
    for _ in range(steps):
        saved.append(x)
        x = x + DT * np.sin(x) * w
    d_x = np.ones_like(np.asarray(x, dtype=np.float64))
    d_w = 0.0
    for previous in reversed(saved):
        d_w += float(np.sum(d_x * DT * np.sin(previous)))
        d_x = d_x * (1.0 + DT * w * np.cos(previous))
    return x, (d_x if np.ndim(x) else float(d_x)), d_w


@pytest.mark.parametrize("plain", [recurrence, recurrence_math], ids=["functions.sin", "math.sin"])
@pytest.mark.parametrize("x0", [0.3, np.linspace(-1.0, 2.0, 5)], ids=["float", "array5"])
def test_recurrence_matches_plain_value_autograd_and_hand_written_loop(plain: Any, x0: Any):
    """The benchmark's W7 recurrence, both spellings of sin, float fast path and batched path.

    The value must be the plain function's exactly (the generated forward loop performs the
    same float operations in the same order). `math.sin` cannot take an array in the plain
    function, but srcgrad's array path computes it as NumPy's sin: the same as `recurrence`.
    """
    w = 0.8
    value, grads = srcgrad.grad(plain)(x0, w)
    expected = plain(x0, w) if np.ndim(x0) == 0 else recurrence(x0, w)
    assert np.shape(value) == np.shape(expected)
    assert np.array_equal(value, expected), "value differs from the plain function's"
    if np.ndim(x0) == 0:
        assert isinstance(grads.x, float) and isinstance(grads.w, float)
    d_x, d_w = autograd_grads(recurrence_autograd, (x0, w), (0, 1))
    assert_grads_match(grads, {"x": d_x, "w": d_w})
    _, hand_x, hand_w = recurrence_by_hand(x0, w)
    assert_grads_match(grads, {"x": hand_x, "w": hand_w})


def test_ten_thousand_iterations_run_as_a_loop_without_recursion():
    """10,000 iterations: no RecursionError, no unrolling, gradients still exact.

    Also checks that the generated code does not depend on the iteration count: the same
    function called with n=10 and n=10,000 keeps one source, which contains a forward `for`
    and a `reversed(range(` backward loop.
    """
    g = srcgrad.grad(recurrence_steps)
    value_10, grads_10 = g(0.3, 0.8, 10)
    source_10 = g.source
    value, grads = g(0.3, 0.8, 10_000)
    assert len(g.source) == len(source_10)
    assert g.source == source_10
    assert "for " in source_10 and "reversed(range(" in source_10
    assert value == recurrence_steps(0.3, 0.8, 10_000)
    expected, hand_x, hand_w = recurrence_by_hand(0.3, 0.8, 10_000)
    assert value == pytest.approx(expected, rel=1e-12)
    assert grads.x == pytest.approx(hand_x, rel=1e-9)
    assert grads.w == pytest.approx(hand_w, rel=1e-9)
    # batched, through the array path
    x0 = np.linspace(-1.0, 2.0, 5)
    value, grads = g(x0, 0.8, 10_000)
    expected, hand_x, hand_w = recurrence_by_hand(x0, 0.8, 10_000)
    np.testing.assert_allclose(value, expected, rtol=1e-12)
    np.testing.assert_allclose(grads.x, hand_x, rtol=1e-9)
    assert grads.w == pytest.approx(hand_w, rel=1e-9)


def test_generated_code_size_does_not_depend_on_a_literal_iteration_count(module_dir: Path):
    """`range(10)` and `range(10000)` generate the same code up to the literal: a loop."""
    template = textwrap.dedent("""\
        from srcgrad.functions import sin


        def f(x, w):
            for _ in range(STEPS):
                x = x + 0.01 * sin(x) * w
            return x
        """)
    sources = []
    for steps in ("10", "10000"):
        module = import_source(template.replace("STEPS", steps), module_dir, "loop_size")
        g = srcgrad.grad(module.f)
        g(0.3, 0.8)
        stem = Path(module.__file__).stem  # named in the header and docstring
        sources.append(g.source.replace(stem, "M").replace(f"range({steps})", "range(N)"))
    assert sources[0] == sources[1]
    assert sources[0].count("for ") >= 2 and "reversed(range(" in sources[0]


def test_tape_memory_grows_linearly_with_iterations():
    """Peak memory of one call is a constant plus one saved value per iteration.

    Why: the tape is the only thing that should grow; anything quadratic (a copy of the tape
    per iteration, adjoints kept alive) would show as increments that double.
    """
    g = srcgrad.grad(recurrence_steps)
    x0 = np.linspace(-1.0, 2.0, 100)
    g(x0, 0.8, 10)  # generate the code outside the measurement

    def peak(n: int) -> int:
        tracemalloc.start()
        try:
            g(x0, 0.8, n)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    p1, p2, p4 = peak(500), peak(1000), peak(2000)
    first, second = p2 - p1, p4 - p2
    assert first > 0
    assert 1.6 < second / first < 2.4, (p1, p2, p4)
    per_iteration = second / 1000
    # one saved array (800 bytes of data plus the ndarray header) and its slot in the list
    assert x0.nbytes <= per_iteration < 2 * x0.nbytes, per_iteration


# -- per-sample loss ----------------------------------------------------------------------------

def per_sample_loss(a, b, x, y):
    loss = 0.0
    for i in range(len(x)):
        r = a * x[i] + b - y[i]
        loss = loss + r * r
    return loss / len(x)


def per_sample_loss_autograd(a, b, x, y):
    return anp.mean((a * x + b - y) ** 2)


@pytest.mark.parametrize("kind", [float, np.float64], ids=["float", "np.float64"])
def test_per_sample_loss_loop(kind: type):
    """Indexing data inside the loop; a, b as Python floats and as NumPy scalars.

    The gradient of a scalar parameter keeps the parameter's type.
    """
    rng = np.random.default_rng(0)
    x = rng.normal(size=7)
    y = 2.0 * x + 0.5 + 0.1 * rng.normal(size=7)
    a, b = kind(1.3), kind(-0.2)
    value, grads = srcgrad.grad(per_sample_loss)(a, b, x, y)
    assert value == pytest.approx(per_sample_loss(a, b, x, y), rel=1e-14)
    assert type(grads.a) is kind and type(grads.b) is kind
    expected = autograd_grads(per_sample_loss_autograd, (a, b, x, y), (0, 1, 2, 3))
    assert_grads_match(grads, dict(zip("abxy", expected, strict=True)))


# -- array carried values, bounds, zero iterations, temporaries ---------------------------------

def array_carried(x, w):
    s = 0.0
    for i in range(3):
        x = np.tanh(x * w + 0.1 * i)
        s = s + np.sum(x * x)
    return s + np.sum(x)


def array_carried_autograd(x, w):
    s = 0.0
    for i in range(3):
        x = anp.tanh(x * w + 0.1 * i)
        s = s + anp.sum(x * x)
    return s + anp.sum(x)


def matrix_carried(x, W):
    for _ in range(3):
        x = np.tanh(W @ x)
    return np.sum(x * x)


def matrix_carried_autograd(x, W):
    for _ in range(3):
        x = anp.tanh(anp.dot(W, x))
    return anp.sum(x * x)


def grows_into_array(x, a):
    for _ in range(3):
        x = x * a + 0.1
    return x


def grows_into_array_autograd(x, a):
    for _ in range(3):
        x = x * a + 0.1
    return x


@pytest.mark.parametrize("w", [1.2, np.array([1.2, -0.4, 0.3])], ids=["w float", "w array"])
def test_array_carried_values_and_reductions(w: Any):
    """An array carried through tanh, a scalar accumulator of reductions, and the index."""
    x = np.array([0.1, -0.5, 0.3])
    value, grads = srcgrad.grad(array_carried)(x, w)
    assert value == pytest.approx(array_carried(x, w), rel=1e-14)
    expected = autograd_grads(array_carried_autograd, (x, w), (0, 1))
    assert_grads_match(grads, {"x": expected[0], "w": expected[1]})


def test_matrix_product_in_the_body():
    """`W @ x` in the body: W's adjoint is an outer product summed over the iterations."""
    x = np.array([0.1, 0.2])
    W = np.array([[0.5, 0.3], [-0.2, 0.8]])
    value, grads = srcgrad.grad(matrix_carried)(x, W)
    assert value == pytest.approx(matrix_carried(x, W), rel=1e-14)
    expected = autograd_grads(matrix_carried_autograd, (x, W), (0, 1))
    assert_grads_match(grads, {"x": expected[0], "W": expected[1]})


def test_carried_float_that_becomes_an_array():
    """A float carried value broadcast against an array invariant changes shape after the
    first iteration; its gradient is still a float (summed over the broadcast)."""
    a = np.array([0.5, 1.2, 0.9])
    value, grads = srcgrad.grad(grows_into_array)(0.5, a)
    np.testing.assert_allclose(value, grows_into_array(0.5, a), rtol=1e-14)
    expected = autograd_grads(grows_into_array_autograd, (0.5, a), (0, 1))
    assert_grads_match(grads, {"x": expected[0], "a": expected[1]})
    assert grads.x == pytest.approx(float(np.sum(a**3)), rel=1e-14)


def strided(x, w, start, stop, step):
    for i in range(start, stop, step):
        x = x * w + 0.1 * i
    return x


def strided_autograd(x, w, start, stop, step):
    for i in range(start, stop, step):
        x = x * w + 0.1 * i
    return x


@pytest.mark.parametrize("bounds", [(1, 8, 2), (8, 1, -3), (0, 5, 1), (5, 5, 1), (6, 2, 1)])
def test_range_with_start_stop_step_parameters(bounds: tuple[int, int, int]):
    """Bounds from parameters, negative steps, empty ranges; the bounds get zero gradients."""
    args = (0.5, 0.9, *bounds)
    value, grads = srcgrad.grad(strided)(*args)
    assert value == strided(*args)
    expected = autograd_grads(strided_autograd, args, (0, 1))
    assert_grads_match(grads, {"x": expected[0], "w": expected[1]})
    assert (grads.start, grads.stop, grads.step) == (0.0, 0.0, 0.0)


def zero_iterations(x, w):
    for _ in range(0):
        x = x * w
    return x + w


@pytest.mark.parametrize("x", [0.3, np.array([0.3, -1.0])], ids=["float", "array"])
def test_zero_iteration_loop_passes_the_gradient_straight_through(x: Any):
    """No iteration: x is returned unchanged (d/dx = 1) and w only through `+ w`."""
    value, grads = srcgrad.grad(zero_iterations)(x, 0.7)
    np.testing.assert_array_equal(value, x + 0.7)
    np.testing.assert_array_equal(grads.x, np.ones_like(x))
    assert grads.w == float(np.size(x))


def temporaries(x, w):
    s = 0.0
    for i in range(4):
        t = sin(x) * w
        u = t * t + i
        x = x + 0.1 * u
        s += u * x
    return s * x


def temporaries_autograd(x, w):
    s = 0.0
    for i in range(4):
        t = anp.sin(x) * w
        u = t * t + i
        x = x + 0.1 * u
        s = s + u * x
    return s * x


def swap_body(x, y):
    for _ in range(4):
        x, y = y, x + 0.5 * y
    return x * y


def test_loop_local_temporaries_and_augmented_assignment():
    """Names first assigned in the body are recomputed per iteration, not carried."""
    value, grads = srcgrad.grad(temporaries)(0.4, 0.9)
    assert value == pytest.approx(temporaries(0.4, 0.9), rel=1e-14)
    expected = autograd_grads(temporaries_autograd, (0.4, 0.9), (0, 1))
    assert_grads_match(grads, {"x": expected[0], "w": expected[1]})


def test_tuple_swap_in_the_body():
    """`x, y = y, x + 0.5*y` carries both names from the values of the previous iteration."""
    value, grads = srcgrad.grad(swap_body)(0.3, 0.4)
    assert value == swap_body(0.3, 0.4)
    expected = autograd_grads(swap_body, (0.3, 0.4), (0, 1))
    assert_grads_match(grads, {"x": expected[0], "y": expected[1]})


def neighbour_differences(x):
    s = 0.0
    for i in range(len(x) - 1):
        d = x[i + 1] - x[i]
        s = s + d * d
    return s


def test_computed_bound_and_index_arithmetic():
    """`range(len(x) - 1)` and `x[i + 1] - x[i]`: the gradient of a total variation."""
    x = np.array([0.1, 0.5, 0.2, 0.9])
    value, grads = srcgrad.grad(neighbour_differences)(x)
    assert value == pytest.approx(neighbour_differences(x), rel=1e-14)
    d = np.diff(x)
    expected = np.zeros_like(x)
    expected[1:] += 2 * d
    expected[:-1] -= 2 * d
    assert_grads_match(grads, {"x": expected})


# Python binds the loop's temporaries (and its index) after the loop; srcgrad does not: reading
# them after the loop is a TransformError at the reading line (documented, not a wrong value).
ONLY_IN_LOOP = """\
def only_in_loop(x):
    for i in range(3):
        t = x * i
        x = x + t
    return x + t


def index_after(x):
    for i in range(3):
        x = x * 2.0
    return x * i
"""


@pytest.mark.parametrize("name, missing", [("only_in_loop", "t"), ("index_after", "i")])
def test_a_name_bound_only_by_the_loop_is_not_readable_after_it(
    name: str, missing: str, module_dir: Path
):
    """srcgrad refuses clearly (file, the `return` line, the name) rather than guessing."""
    module = import_source(ONLY_IN_LOOP, module_dir, "loop_scope")
    with pytest.raises(TransformError) as raised:
        srcgrad.grad(getattr(module, name))(0.5)
    message = str(raised.value)
    line = {"only_in_loop": 5, "index_after": 11}[name]
    assert f"{module.__file__}\", line {line}" in message
    if name == "index_after":  # the loop variable: copy what is needed inside the loop
        assert f"`{missing}` is the variable of the loop" in message
        assert f"`last = {missing}`" in message
    else:
        assert f"`{missing}` is assigned only inside the loop" in message
        assert f"give it a value before it (`{missing} = 0.0`)" in message


# -- nested loops and helpers with loops --------------------------------------------------------

def nested_then_sin(x, w):
    for i in range(3):
        for j in range(4):
            x = x + w * sin(x) * (i + j)
        x = sin(x)
    return x


def nested_then_sin_autograd(x, w):
    for i in range(3):
        for j in range(4):
            x = x + w * anp.sin(x) * (i + j)
        x = anp.sin(x)
    return x


def triangular(x, w):
    for i in range(4):
        for j in range(i):
            x = x + w * sin(x) * j
        x = sin(x)
    return x


def triangular_autograd(x, w):
    for i in range(4):
        for j in range(i):
            x = x + w * anp.sin(x) * j
        x = anp.sin(x)
    return x


def pairs(x, w):
    s = 0.0
    for i in range(len(x)):
        for j in range(len(x)):
            s = s + w * x[i] * x[j]
        s = sin(s)
    return s


def pairs_autograd(x, w):
    s = 0.0
    for i in range(len(x)):
        for j in range(len(x)):
            s = s + w * x[i] * x[j]
        s = anp.sin(s)
    return s


def nested_plain(x, w):
    for i in range(3):
        for j in range(4):
            x = x + w * sin(x) * (i + j)
    return x


def nested_plain_autograd(x, w):
    for i in range(3):
        for j in range(4):
            x = x + w * anp.sin(x) * (i + j)
    return x


def damped(x, w):
    for _ in range(3):
        x = x + w * exp(-x * x)
    return x


def damped_autograd(x, w):
    for _ in range(3):
        x = x + w * anp.exp(-x * x)
    return x


def calls_damped_then_sin(x, w):
    for _ in range(3):
        x = sin(damped(x, w))
    return x


def calls_damped_then_sin_autograd(x, w):
    for _ in range(3):
        x = anp.sin(damped_autograd(x, w))
    return x


def calls_damped(x, w):
    for _ in range(3):
        x = damped(x, w) * 0.9
    return x


def calls_damped_autograd(x, w):
    for _ in range(3):
        x = damped_autograd(x, w) * 0.9
    return x


@srcgrad.grad
def squared_damped(x, w):
    y = damped(x, w)
    return y * y


def squared_damped_autograd(x, w):
    y = damped_autograd(x, w)
    return y * y


def carried_unused_after(x, w):
    s = 0.0
    for _ in range(3):
        s = s + x * w
        x = x * w
    return s


def carried_unused_after_autograd(x, w):
    s = 0.0
    for _ in range(3):
        s = s + x * w
        x = x * w
    return s


X_CASES = [0.3, np.array([0.3, -0.2, 1.1])]
X_IDS = ["float", "array"]


def check_against_autograd(fn: Any, twin: Any, x: Any, w: float = 0.7) -> None:
    value, grads = (fn if isinstance(fn, srcgrad.GradFunction) else srcgrad.grad(fn))(x, w)
    plain = fn.__wrapped__ if hasattr(fn, "__wrapped__") else fn
    np.testing.assert_allclose(value, plain(x, w), rtol=1e-14)
    expected = autograd_grads(twin, (x, w), (0, 1))
    assert_grads_match(grads, {"x": expected[0], "w": expected[1]})


@pytest.mark.parametrize("x", X_CASES, ids=X_IDS)
def test_nested_loops(x: Any):
    """An inner loop over j inside a loop over i, the inner body reading both indices."""
    check_against_autograd(nested_then_sin, nested_then_sin_autograd, x)


@pytest.mark.parametrize("x", X_CASES, ids=X_IDS)
def test_nested_loop_bounded_by_the_outer_index(x: Any):
    """`range(i)` inside `for i`: the inner tape has a different length per outer iteration."""
    check_against_autograd(triangular, triangular_autograd, x)


def test_nested_loops_over_pairs_of_samples():
    """Indexing one array with both indices; the adjoint of x collects from every pair."""
    check_against_autograd(pairs, pairs_autograd, np.array([0.1, 0.4, -0.3]))


@pytest.mark.parametrize("x", X_CASES, ids=X_IDS)
def test_helper_with_a_loop_called_in_a_loop_body(x: Any):
    """`damped` has a loop of its own; it is lowered into the outer loop's body."""
    check_against_autograd(calls_damped_then_sin, calls_damped_then_sin_autograd, x)


@pytest.mark.parametrize("x", X_CASES, ids=X_IDS)
def test_grad_function_calling_a_helper_with_a_loop(x: Any):
    check_against_autograd(squared_damped, squared_damped_autograd, x)


INNER_OUTPUT_BUG = (
    "KeyError in codegen.forward_loop: when the outer loop's backward re-runs the inner loop "
    "to rebuild its tape, the inner loop's `loop_output` is not reachable from the adjoint "
    "roots (nothing in the backward reads the inner loop's final value), so _Path never names "
    "it and `self.names[o.id]` fails. Works only if a later body statement's partial reads "
    "the inner result (e.g. `x = sin(x)` after the inner loop)."
)


@pytest.mark.parametrize("x", X_CASES, ids=X_IDS)
def test_nested_loop_whose_result_is_the_outer_carried_value(x: Any):
    """The plainest nesting: the inner loop's x is the outer loop's next x."""
    check_against_autograd(nested_plain, nested_plain_autograd, x)


@pytest.mark.parametrize("x", X_CASES, ids=X_IDS)
def test_helper_loop_result_scaled_in_a_loop_body(x: Any):
    """`x = damped(x, w) * 0.9`: the product's partials do not read damped's result either."""
    check_against_autograd(calls_damped, calls_damped_autograd, x)


@pytest.mark.parametrize("x", X_CASES, ids=X_IDS)
def test_carried_value_not_used_after_the_loop(x: Any):
    check_against_autograd(carried_unused_after, carried_unused_after_autograd, x)


def dead_temporary(x, y):
    for _ in range(3):
        t = y * 2.0  # noqa: F841 -- the dead temporary is the point of this case
        x = x * 2.0
    return x


@pytest.mark.parametrize("x", X_CASES, ids=X_IDS)
def test_invariant_read_only_by_dead_code(x: Any):
    value, grads = srcgrad.grad(dead_temporary)(x, 0.3)
    np.testing.assert_array_equal(value, dead_temporary(x, 0.3))
    np.testing.assert_array_equal(grads.x, np.full_like(np.asarray(x, dtype=float), 8.0))
    assert grads.y == 0.0


# -- the bound parameter is not differentiable -----------------------------------------------

@pytest.mark.parametrize("x", [0.3, np.array([0.3, -1.0])], ids=["float", "array"])
def test_gradient_with_respect_to_the_bound_is_zero(x: Any):
    """`n` in `range(n)` only steers control: asking for d/dn gives 0, not an error."""
    g = srcgrad.grad(wrt=["x", "w", "n"])(recurrence_steps)
    value, grads = g(x, 0.8, 25)
    assert grads.n == 0.0
    np.testing.assert_array_equal(value, recurrence_steps(x, 0.8, 25))
    _, hand_x, hand_w = recurrence_by_hand(x, 0.8, 25)
    assert_grads_match(grads, {"x": hand_x, "w": hand_w})
    only_n = srcgrad.grad(wrt="n")(recurrence_steps)
    value, d_n = only_n(x, 0.8, 25)
    assert d_n == 0.0


# -- errors ------------------------------------------------------------------------------------

ERRORS = """\
def returns_inside(x, xs):
    while x < 3.0:
        x = x * 2.0
        return x
    return x


def forever(x, xs):
    x = x * 2.0
    while True:
        x = x * 0.5
    return x


def over_reversed(x, xs):
    for v in reversed(xs):
        x = x * v
    return x


def else_breaks(x, xs):
    for i in range(3):
        for j in range(2):
            x = x * 2.0
        else:
            break
    return x


def looped(x):
    for i in range(3):
        x = x * x
    return x
"""


@pytest.mark.parametrize("name, line, words", [
    ("returns_inside", 4, "`return` inside a loop"),
    ("forever", 10, "never ends"),
    ("over_reversed", 16, "range(...)"),
    ("else_breaks", 26, "`else` clause"),
])
def test_unsupported_control_flow_names_file_and_line(
    name: str, line: int, words: str, module_dir: Path
):
    module = import_source(ERRORS, module_dir, "loop_errors")
    with pytest.raises(TransformError) as raised:
        srcgrad.grad(getattr(module, name), wrt="x")(0.5, np.ones(2))
    message = str(raised.value)
    assert f"{module.__file__}\", line {line}" in message, message
    assert words in message


@pytest.mark.parametrize("mode", ["hvp", "hessian"])
def test_second_order_through_a_loop(mode: str, module_dir: Path):
    """Forward over reverse through the loop (x -> x ** 8): the backward loop gets tangents
    too (tests/test_forward_regions.py checks this on random programs)."""
    module = import_source(ERRORS, module_dir, "loop_errors")
    if mode == "hvp":
        _, _, (second,) = srcgrad.hvp(module.looped)((0.5,), (1.0,))
    else:
        _, _, ((second,),) = srcgrad.hessian(module.looped)(0.5)
    assert second == pytest.approx(56 * 0.5 ** 6, rel=1e-14)


# -- random loop programs --------------------------------------------------------------------

UNARY = ("sin", "exp", "tanh")
HEADERS = {
    "srcgrad": "import numpy as np\nfrom srcgrad.functions import exp, sin, tanh\n",
    "autograd": "import autograd.numpy as np\nfrom autograd.numpy import exp, sin, tanh\n",
}
LOOP_EXAMPLES = 50 * int(os.environ.get("SRCGRAD_PROGRAM_SCALE", "1"))  # as test_generated_*
CARRIED_BOUND = 2.0  # every carried value stays within this (assignments are squashed)


@st.composite
def expressions(draw: Any, names: dict[str, float], depth: int) -> tuple[str, float]:
    """An expression over ``names`` (name -> bound on |value|) and its bound on |value|."""
    if depth == 0 or draw(st.integers(0, 3)) == 0:
        choice = draw(st.sampled_from([*sorted(names), "const", "index"]))
        if choice == "const":
            c = draw(st.sampled_from([0.5, 1.5, -0.7, 2.0]))
            return repr(c), abs(c)
        if choice == "index":
            return "0.1 * i", 0.6
        return choice, names[choice]
    if draw(st.booleans()):
        fn = draw(st.sampled_from(UNARY))
        spelling = draw(st.sampled_from([fn, f"np.{fn}"]))
        arg, bound = draw(expressions(names, depth - 1))
        if fn == "exp":
            if bound > 2.0:
                arg, bound = f"tanh({arg})", 1.0
            return f"{spelling}({arg})", math.exp(bound)
        return f"{spelling}({arg})", min(1.0, bound)
    op = draw(st.sampled_from("+-*"))
    left, lb = draw(expressions(names, depth - 1))
    right, rb = draw(expressions(names, depth - 1))
    return f"({left} {op} {right})", lb * rb if op == "*" else lb + rb


@st.composite
def loop_programs(draw: Any) -> dict[str, Any]:
    """A function with one loop: 1-2 carried values, 1-3 body statements, 0-6 iterations.

    Carried values are the parameters x, y or an accumulator s; a, b and the uncarried
    parameters are invariants; temporaries t<k> are assigned in the body before being read.
    An assignment to a carried value whose bound could exceed CARRIED_BOUND is squashed with
    tanh, and exp's argument is squashed when large, so values and derivatives stay moderate
    whatever the iteration count. Every carried value is returned and a last statement feeds
    every invariant and temporary into a carried value (both once avoided bugs now fixed, which
    would otherwise fail most examples and hide everything else).
    """
    carried = draw(st.lists(st.sampled_from(["x", "y", "s"]), min_size=1, max_size=2,
                            unique=True))
    steps = draw(st.integers(0, 6))
    spelling = draw(st.sampled_from(["literal", "param", "start"]))
    bound = {"literal": f"range({steps})", "param": "range(n)",
             "start": f"range(2, {steps + 2})"}[spelling]
    names = {"x": 1.5, "y": 1.5, "a": 1.5, "b": 1.5}
    if "s" in carried:
        names["s"] = 0.75
    for name in carried:
        names[name] = CARRIED_BOUND
    body = []
    for k in range(draw(st.integers(1, 3))):
        target = draw(st.sampled_from([*carried, f"t{k}"]))
        text, size = draw(expressions(names, 2))
        if target in carried and draw(st.booleans()):  # a recurrence: c = c + h * (...)
            text, size = f"{target} + 0.3 * {text}", names[target] + 0.3 * size
        if target in carried and size > CARRIED_BOUND:
            text, size = f"np.tanh({text})", 1.0
        body.append(f"        {target} = {text}")
        if target not in carried:
            names[target] = size
    for name in carried:  # each carried value is assigned at least once
        if not any(line.strip().startswith(f"{name} =") for line in body):
            body.append(f"        {name} = np.tanh({name} * a + b)")
    # Every invariant and temporary reaches a carried value, so none is read only by dead
    # code (that case is test_invariant_read_only_by_dead_code above).
    readers = sorted({"a", "b", "x", "y"} - set(carried)) + [
        name for name in names if name.startswith("t")]
    sink = carried[0]
    body.append(f"        {sink} = np.tanh({sink} + 0.1 * ({' + '.join(readers)}))")
    params = ["x", "y", "a", "b"] + (["n"] if spelling == "param" else [])
    lines = [f"def f({', '.join(params)}):"]
    if "s" in carried:
        lines.append("    s = 0.5 * a")
    lines += [f"    for i in {bound}:", *body]
    returned = sorted({"x", *carried})
    lines.append(f"    return {' + '.join(returned)}")
    text = "\n".join(lines) + "\n"
    batched = draw(st.booleans())
    values = draw(st.lists(st.floats(-1.5, 1.5), min_size=6, max_size=6))
    x = np.array(values[3:6]) if batched else values[3]
    args = {"x": x, "y": values[0], "a": values[1], "b": values[2], "n": steps}
    return {"text": text, "params": params, "args": args}


@settings(max_examples=LOOP_EXAMPLES)
@given(program=loop_programs())
def test_random_loop_programs_match_autograd_and_finite_differences(
    program: dict[str, Any], module_dir: Path
):
    """Hypothesis writes loop programs; autograd (on an `autograd.numpy` twin of the same
    text) and central differences of the plain function must agree with srcgrad."""
    text, params, values = program["text"], program["params"], program["args"]
    context = f"\n{text}args: {values}"
    mine = import_source(HEADERS["srcgrad"] + text, module_dir, "loop_prog")
    twin = import_source(HEADERS["autograd"] + text, module_dir, "loop_twin")
    args = tuple(values[p] for p in params)
    expected_value = mine.f(*args)
    assume(np.all(np.isfinite(expected_value)))
    value, grads = srcgrad.grad(mine.f)(*args)
    np.testing.assert_allclose(value, expected_value, rtol=1e-12, atol=1e-12,
                               err_msg=f"value{context}")
    float_params = [p for p in params if p != "n"]
    argnums = tuple(params.index(p) for p in float_params)
    expected = dict(zip(float_params, autograd_grads(twin.f, args, argnums), strict=True))
    scale = max(1.0, *(float(np.max(np.abs(g))) for g in expected.values()))
    assume(scale < 1e4)  # central differences lose digits on steep programs
    for name in float_params:
        got = getattr(grads, name)
        assert np.shape(got) == np.shape(values[name]), f"d_{name} shape{context}"
        np.testing.assert_allclose(got, expected[name], rtol=1e-9, atol=1e-12 * scale,
                                   err_msg=f"d_{name} vs autograd{context}")

        def at(shifted: Any, name: str = name) -> float:
            shifted_args = dict(values, **{name: shifted})
            return float(np.sum(mine.f(*(shifted_args[p] for p in params))))

        fd = central_difference(at, values[name])
        np.testing.assert_allclose(got, fd, rtol=1e-5, atol=1e-6 * scale,
                                   err_msg=f"d_{name} vs finite differences{context}")
    if "n" in params:
        assert grads.n == 0.0


# -- while loops ----------------------------------------------------------------------------------

WHILE_LOOPS = """
import numpy as np


def newton_sqrt(a, x):
    while abs(x * x - a) > 1e-12 * a:
        x = 0.5 * (x + a / x)
    return x


def grow(r, target):
    money = 1.0
    years = 0.0
    while money < target:
        money = money * (1 + r)
        years = years + 1
    return money + years * r
"""


@pytest.mark.parametrize("kind", [float, np.float64])
def test_while_loops_with_data_dependent_termination(kind, module_dir: Path):
    """The generated code tests the condition at the top of each iteration, as Python does,
    and the backward loop runs once per iteration the forward loop made (the tape's length)."""
    module = import_source(WHILE_LOOPS, module_dir, "while_loops")
    value, grads = srcgrad.grad(module.newton_sqrt)(kind(2.0), kind(1.0))
    expected = autograd.grad(module.newton_sqrt, (0, 1))(2.0, 1.0)
    assert value == module.newton_sqrt(2.0, 1.0)
    np.testing.assert_allclose(grads, expected, rtol=1e-12, atol=1e-15)
    assert grads.a == pytest.approx(0.5 / np.sqrt(2.0), rel=1e-10)  # d sqrt(a) / da
    growth = srcgrad.grad(module.grow, wrt="r")
    for target in (2.0, 0.5):  # 15 iterations, then none at all
        value, d_r = growth(kind(0.05), target)
        assert value == pytest.approx(module.grow(0.05, target), rel=1e-15)
        assert d_r == pytest.approx(autograd.grad(module.grow)(0.05, target), rel=1e-12)
    source = srcgrad.grad(module.newton_sqrt).source
    assert "while True:" in source and "break" in source and "range(len(" in source


BREAK_AND_CONTINUE = """
def skip_and_stop(w, xs):
    total = 0.0
    for x in xs:
        if x < 0:
            continue
        total = total + w * x * x
        if total > 3.0:
            break
        total = total + 0.1 * w
    return total
"""


@pytest.mark.parametrize("w", [0.7, 0.2, 1.1])
def test_continue_and_break_as_guards(w: float, module_dir: Path):
    """`if c: continue` and `if c: break` become branches (and a flag that stops the rest of
    the iterations), so the gradient follows the iterations Python actually runs."""
    module = import_source(BREAK_AND_CONTINUE, module_dir, "break_continue")
    xs = np.array([0.5, -1.0, 1.0, 2.0, 1.5, 0.3])
    for kind in (float, np.float64):
        value, d_w = srcgrad.grad(module.skip_and_stop, wrt="w")(kind(w), xs)
        assert value == module.skip_and_stop(w, xs)
        assert d_w == pytest.approx(autograd.grad(module.skip_and_stop)(w, xs), rel=1e-13)
