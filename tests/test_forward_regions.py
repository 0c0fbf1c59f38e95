"""Forward mode (`jvp`, `forward`, `jacobian`) through loops and branches.

Why these tests: the tangent of a loop is a new loop carrying each value and its tangent, and
the tangent of an `if` is an `if` whose branches compute both, so the code after a region is
restated over the new region's outputs. The bugs to look for are in that bookkeeping: a
carried value that gains a tangent only after some iterations, an invariant's tangent, a
branch that leaves an output alone, nested regions, `while` conditions, and the value (which
must now come from the new region). Each result is checked against reverse mode (`grad`, an
independent path through the same graph: ``jvp(f)(args, v) == grad(f)(args) . v``), against
float64 central differences along ``v``, and for hand-written programs against autograd.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from support import import_source
from test_generated_control_flow import (
    MARGIN,
    PARAMS,
    PROBE_HEADER,
    _traced,
    control_flow_programs,
)
from test_loops import HEADERS

import srcgrad

pytestmark = pytest.mark.filterwarnings("ignore:Output seems independent of input")

DIRECTIONS = ("x", "y", "a", "b", "xs")  # every float parameter (n only counts)
H = 1e-6


def _moved(args: dict[str, Any], direction: dict[str, Any], t: float) -> dict[str, Any]:
    return {**args, **{n: args[n] + t * direction[n] for n in DIRECTIONS}}


def _probe(program: dict[str, Any], seed: int, module_dir: Path
           ) -> tuple[Any, float, dict[str, Any], list[Any]]:
    """The program's traced twin, its value, a random direction, and the branches it took
    (examples near a branch's edge, or with no finite value, are rejected)."""
    args = program["args"]
    probe = import_source(PROBE_HEADER + HEADERS["srcgrad"] + program["probe"], module_dir,
                          "fr_probe")
    value, trace = _traced(probe, args)
    assume(np.isfinite(value))
    assume(all(abs(gap) > MARGIN for gap, _ in trace))
    rng = np.random.default_rng(seed)
    direction = {n: float(rng.uniform(-1, 1)) for n in "xyab"}
    direction["xs"] = rng.uniform(-1, 1, size=np.shape(args["xs"]))
    return probe, value, direction, [taken for _, taken in trace]


@settings(max_examples=40, deadline=None)
@given(program=control_flow_programs(), seed=st.integers(0, 2**16))
def test_random_programs_jvp_matches_grad_and_finite_differences(
    program: dict[str, Any], seed: int, module_dir: Path
):
    """Hypothesis programs nesting if/elif/else, `a if c else b`, for and while loops with
    `continue`/`break` guards and `sum(...)` generators (the generator of
    test_generated_control_flow): jvp along a random direction, on Python floats and on NumPy
    float64 scalars, against grad . v and a central difference along v."""
    text, args = program["text"], program["args"]
    context = f"\n{text}args: {args}"
    probe, value, direction, outcomes = _probe(program, seed, module_dir)

    def along(t: float) -> float:
        shifted_value, shifted = _traced(probe, _moved(args, direction, t))
        assume([taken for _, taken in shifted] == outcomes)  # no jump in between
        return shifted_value

    fd = (along(H) - along(-H)) / (2 * H)
    mine = import_source(HEADERS["srcgrad"] + text, module_dir, "fr_prog")
    jvp = srcgrad.jvp(mine.f, wrt=DIRECTIONS)
    gradient = srcgrad.grad(mine.f, wrt=DIRECTIONS)
    for kind in (float, np.float64):
        call = tuple(kind(args[p]) if p in ("x", "y", "a", "b") else args[p] for p in PARAMS)
        got_value, derivative = jvp(call, tuple(direction[n] for n in DIRECTIONS))
        np.testing.assert_allclose(got_value, value, rtol=1e-12, atol=1e-12,
                                   err_msg=f"value ({kind.__name__}){context}")
        _, grads = gradient(*call)
        terms = [np.sum(np.asarray(g) * direction[n])
                 for n, g in zip(DIRECTIONS, grads, strict=True)]
        scale = max(1.0, sum(abs(float(t)) for t in terms))
        np.testing.assert_allclose(derivative, sum(terms), rtol=1e-10, atol=1e-12 * scale,
                                   err_msg=f"jvp vs grad . v ({kind.__name__}){context}")
        np.testing.assert_allclose(derivative, fd, rtol=1e-5, atol=1e-6 * scale,
                                   err_msg=f"jvp vs finite differences{context}")


@settings(max_examples=25, deadline=None)
@given(program=control_flow_programs(), seed=st.integers(0, 2**16))
def test_random_programs_hvp_matches_differences_of_grad(
    program: dict[str, Any], seed: int, module_dir: Path
):
    """Forward over reverse through the same programs: the backward loops and `if`s get
    tangents too. hvp(f)(args, v) against the central difference of grad along v."""
    text, args = program["text"], program["args"]
    context = f"\n{text}args: {args}"
    probe, value, direction, outcomes = _probe(program, seed, module_dir)
    mine = import_source(HEADERS["srcgrad"] + text, module_dir, "fr_prog")
    gradient = srcgrad.grad(mine.f, wrt=DIRECTIONS)

    def grad_along(t: float) -> list[Any]:
        moved = _moved(args, direction, t)
        _, shifted = _traced(probe, moved)
        assume([taken for _, taken in shifted] == outcomes)  # no jump in between
        return list(gradient(*(moved[p] for p in PARAMS))[1])

    up, down = grad_along(H), grad_along(-H)
    expected = [(u - d) / (2 * H) for u, d in zip(up, down, strict=True)]
    hvp = srcgrad.hvp(mine.f, wrt=DIRECTIONS)
    for kind in (float, np.float64):
        call = tuple(kind(args[p]) if p in ("x", "y", "a", "b") else args[p] for p in PARAMS)
        got_value, grads, products = hvp(call, tuple(direction[n] for n in DIRECTIONS))
        np.testing.assert_allclose(got_value, value, rtol=1e-12, atol=1e-12,
                                   err_msg=f"value ({kind.__name__}){context}")
        for name, got, want, g in zip(DIRECTIONS, products, expected, grads, strict=True):
            np.testing.assert_allclose(g, getattr(gradient(*call)[1], name), rtol=1e-13,
                                       atol=1e-15, err_msg=f"grad {name}{context}")
            scale = max(1.0, float(np.max(np.abs(want))))
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * scale,
                                       err_msg=f"Hv {name} ({kind.__name__}){context}")


# -- hand-written programs -----------------------------------------------------------------

PROGRAMS = """
import math

import numpy as np

DT = 0.01


def recurrence(x, w):
    for _ in range(1000):
        x = x + DT * np.sin(x) * w
    return x


def newton_sqrt(a, x):
    while abs(x * x - a) > 1e-12:
        x = 0.5 * (x + a / x)
    return x * a


def nested(x, a):
    s = 0.0
    for i in range(3):
        t = x
        for j in range(2):
            t = np.tanh(t * a + 0.1 * i)
            if t > 0.5:
                continue
            s = s + t * t
    return s


def data_branch(x, a):
    if x * a > 0.3:
        y = np.sin(x) * a
    elif x < -1:
        y = x * x
    else:
        y = a * np.exp(x)
    return y + (y * y if y > 0 else -y)


def guarded(x, a, xs):
    s = 0.0
    for i, v in enumerate(xs):
        if v * a > 1.0:
            break
        s = s + np.sin(v * x) * (i + 1)
    for u, v in zip(xs, xs):
        s = s + u * v * a
    return s + sum(v * x * a for v in xs)


def root_or_zero(x):
    return np.sqrt(x) if x > 0 else 0.0


def array_loop(x, w):
    for i in range(4):
        x = np.tanh(x * w + 0.1 * i)
    return np.sum(x * x)


def then_product(x, w):
    for i in range(5):
        x = x * w + np.sin(x)
    return np.sin(x) * w + np.cos(w) * x


def vector_out(a, xs):
    y = xs * 0.0
    for i in range(3):
        y = y * a + np.sin(xs * (i + 1))
    return y
"""


@pytest.fixture(scope="module")
def programs(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return import_source(PROGRAMS, tmp_path_factory.mktemp("forward_regions"), "fr_programs")


@pytest.fixture(scope="module")
def twins(tmp_path_factory: pytest.TempPathFactory) -> Any:
    text = PROGRAMS.replace("import numpy as np", "import autograd.numpy as np")
    return import_source(text, tmp_path_factory.mktemp("forward_regions_ag"), "fr_twins")


XS = np.array([0.3, -0.8, 1.1, 0.5])
CASES = [
    ("recurrence", (0.5, 1.2)),
    ("newton_sqrt", (2.0, 1.0)),
    ("nested", (0.4, 0.9)),
    ("nested", (-0.7, 1.3)),
    ("data_branch", (0.8, 1.1)),
    ("data_branch", (-1.5, 0.2)),
    ("data_branch", (0.1, 0.5)),
    ("guarded", (0.7, 1.5, XS)),
    ("guarded", (0.7, 0.5, XS)),
    ("then_product", (0.3, 0.8)),
]


@pytest.mark.parametrize("name, args", CASES)
@pytest.mark.parametrize("kind", [float, np.float64])
def test_hand_written_programs_against_autograd(name: str, args: tuple, kind: type,
                                                programs: Any, twins: Any):
    """`forward` gives d value / d p for every float parameter; autograd runs the same Python
    control flow on its traced values."""
    fn, twin = getattr(programs, name), getattr(twins, name)
    call = tuple(kind(a) if np.ndim(a) == 0 else a for a in args)
    params = tuple(p for p, a in zip(fn.__code__.co_varnames, args, strict=False)
                   if np.ndim(a) == 0)
    value, tangents = srcgrad.forward(fn, wrt=params)(*call)
    assert value == pytest.approx(fn(*args), rel=1e-14)
    tangents = tangents if len(params) > 1 else (tangents,)
    for position, got in enumerate(tangents):
        expected = autograd.grad(twin, position)(*(float(a) if np.ndim(a) == 0 else a
                                                   for a in args))
        assert got == pytest.approx(expected, rel=1e-12, abs=1e-14), (name, position)


def test_the_recurrence_is_a_forward_loop_with_tangents(programs: Any):
    """1,000 steps of ``x = x + dt*sin(x)*w``: derivatives in w and x0 from forward mode, the
    generated code a single loop (not unrolled) carrying x and its tangent."""
    x0, w = 0.5, 1.2
    value, (dx0, dw) = srcgrad.forward(programs.recurrence, wrt=("x", "w"))(x0, w)
    _, grads = srcgrad.grad(programs.recurrence)(x0, w)
    assert (dx0, dw) == pytest.approx(tuple(grads), rel=1e-12)

    def at(x: float, w: float) -> float:
        for _ in range(1000):
            x = x + 0.01 * math.sin(x) * w
        return x

    # x0 barely matters after 1,000 steps (x -> pi): the difference loses digits to rounding
    assert dx0 == pytest.approx((at(x0 + H, w) - at(x0 - H, w)) / (2 * H), rel=1e-4)
    assert dw == pytest.approx((at(x0, w + H) - at(x0, w - H)) / (2 * H), rel=1e-6)
    jvp = srcgrad.jvp(programs.recurrence)
    _, derivative = jvp((x0, w), (1.0, 0.0))
    assert derivative == pytest.approx(dx0, rel=1e-14)
    source = jvp.source
    loops = [line for line in source.splitlines() if line.strip() == "for _ in range(1000):"]
    assert len(loops) == 2, source  # one loop on the float path, one on the array path
    assert "x_dot" in source and "tape" not in source


def test_while_loop_with_data_dependent_termination(programs: Any):
    """Newton's iteration for sqrt(a): the trip count depends on a and x0; the tangent of the
    converged x is d sqrt(a) / da = 1 / (2 sqrt(a)), and x0 does not matter."""
    a, x0 = 2.0, 1.0
    value, (d_a, d_x0) = srcgrad.forward(programs.newton_sqrt, wrt=("a", "x"))(a, x0)
    assert value == pytest.approx(math.sqrt(a) * a, rel=1e-14)
    assert d_a == pytest.approx(1.5 * math.sqrt(a), rel=1e-9)
    assert abs(d_x0) < 1e-9


def test_the_untaken_side_gives_zero_not_nan(programs: Any):
    """``sqrt(x) if x > 0 else 0.0`` at x = -4: only the branch taken runs, so its tangent is
    0 (np.where would give 0 * nan = nan)."""
    forward = srcgrad.forward(programs.root_or_zero, wrt="x")
    assert forward(-4.0) == (0.0, 0.0)
    value, derivative = forward(np.float64(-4.0))
    assert value == 0.0 and derivative == 0.0 and not np.isnan(derivative)
    assert forward(4.0) == (2.0, pytest.approx(0.25, rel=1e-15))


def test_arrays_through_a_loop(programs: Any, twins: Any):
    rng = np.random.default_rng(3)
    x, w = rng.normal(size=5), rng.normal(size=5)
    x_dot, w_dot = rng.normal(size=5), rng.normal(size=5)
    value, derivative = srcgrad.jvp(programs.array_loop)((x, w), (x_dot, w_dot))
    gx, gw = autograd.grad(twins.array_loop, (0, 1))(x, w)
    assert value == pytest.approx(programs.array_loop(x, w), rel=1e-14)
    assert derivative == pytest.approx(gx @ x_dot + gw @ w_dot, rel=1e-12)
    # a scalar weight: its tangent enters the loop as the constant 1.0
    value, d_w = srcgrad.forward(programs.array_loop, wrt="w")(x, 0.7)
    assert d_w == pytest.approx(autograd.grad(twins.array_loop, 1)(x, 0.7), rel=1e-12)


def test_jacobian_picks_forward_mode_through_a_loop(programs: Any, twins: Any):
    jacobian = srcgrad.jacobian(programs.vector_out, wrt="a")
    value, J = jacobian(0.8, XS)
    assert jacobian.mode_used == "forward"
    np.testing.assert_allclose(value, programs.vector_out(0.8, XS), rtol=1e-14)
    np.testing.assert_allclose(J.a, autograd.jacobian(twins.vector_out, 0)(0.8, XS),
                               rtol=1e-12)


@pytest.mark.parametrize("name, args", [case for case in CASES if case[0] != "recurrence"])
def test_hessians_through_regions_against_autograd(name: str, args: tuple, programs: Any,
                                                   twins: Any):
    """`hessian` (forward over reverse, one sweep per scalar parameter) against autograd's
    Hessian of the same Python control flow."""
    fn, twin = getattr(programs, name), getattr(twins, name)
    params = tuple(p for p, a in zip(fn.__code__.co_varnames, args, strict=False)
                   if np.ndim(a) == 0)
    value, grads, H = srcgrad.hessian(fn, wrt=params)(*args)
    assert value == pytest.approx(fn(*args), rel=1e-14)
    for i in range(len(params)):
        for j in range(len(params)):
            expected = autograd.grad(autograd.grad(twin, i), j)(*args)
            assert H[i][j] == pytest.approx(expected, rel=1e-10, abs=1e-12), (name, i, j)


def test_hvp_of_arrays_through_a_loop(programs: Any, twins: Any):
    rng = np.random.default_rng(5)
    x, w, x_dot, w_dot = (rng.normal(size=5) for _ in range(4))
    _, grads, (hx, hw) = srcgrad.hvp(programs.array_loop)((x, w), (x_dot, w_dot))

    def along(t: float) -> Any:
        gx, gw = autograd.grad(twins.array_loop, (0, 1))(x + t * x_dot, w + t * w_dot)
        return anp.concatenate([gx, gw])

    expected = autograd.jacobian(along)(0.0)
    np.testing.assert_allclose(np.concatenate([hx, hw]), expected, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(np.concatenate(list(grads)), along(0.0), rtol=1e-12)


BREAKING = '''
def settle(x, a):
    for i in range(50):
        x = x * a + 0.1
        if x > 2:
            x = x * 0.5
            break
    return x


def until(x, a):
    while True:
        x = x * a + 0.1
        if x > 2:
            break
    return x
'''


@pytest.mark.parametrize("name", ["settle", "until"])
def test_forward_modes_stop_where_a_break_stops_the_loop(name, module_dir: Path):
    """A `break` in the middle of a body (a flag among the carried values) must end the
    tangent loop too: jvp against grad . v and central differences, the Hessian against
    central differences of the gradient."""
    f = getattr(import_source(BREAKING, module_dir, "fr_breaking"), name)
    args, v = (0.5, 1.3), (0.3, -0.7)
    value, tangent = srcgrad.jvp(f)(args, v)
    _, grads = srcgrad.grad(f)(*args)
    assert value == pytest.approx(f(*args), rel=1e-12)
    assert tangent == pytest.approx(sum(g * d for g, d in zip(grads, v, strict=True)), rel=1e-12)
    moved = [f(*(a + s * H * d for a, d in zip(args, v, strict=True))) for s in (1, -1)]
    assert tangent == pytest.approx((moved[0] - moved[1]) / (2 * H), rel=1e-6)
    _, _, hessian = srcgrad.hessian(f)(*args)
    gradient = srcgrad.grad(f)
    for j in range(2):
        up = list(args)
        down = list(args)
        up[j] += H
        down[j] -= H
        column = [(p - m) / (2 * H) for p, m in zip(gradient(*up)[1], gradient(*down)[1],
                                                    strict=True)]
        for i in range(2):
            assert hessian[i][j] == pytest.approx(column[i], rel=1e-5, abs=1e-6), (i, j)
