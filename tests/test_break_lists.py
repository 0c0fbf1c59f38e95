"""`break` and `continue` anywhere in a loop body, and loops over lists and tuples of arrays.

Why these tests: a `break` or `continue` inside an `if` (with statements before it in the same
arm, in an `else`, in nested `if`s, in `while` loops, in nested loops) is lowered to flags that
guard the rest of the iteration and end the loop, and a loop over a list of arrays is unrolled.
Both are rewrites of the user's control flow, so each program is checked, on Python floats and
on NumPy float64 scalars, against

- autograd, which runs the same Python control flow on its traced values, and
- float64 central differences of the plain function (at points where no comparison is near
  its boundary, so the difference does not straddle a jump),

and the generated code is checked to still be a loop that stops at the `break`.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from support import central_difference, import_source
from test_generated_control_flow import (
    COMPARISONS,
    MARGIN,
    PARAMS,
    PROBE_HEADER,
    THRESHOLDS,
    _as_kind,
    _traced,
    check_differences,
    render,
)
from test_loops import HEADERS, LOOP_EXAMPLES, expressions

import srcgrad

pytestmark = pytest.mark.filterwarnings("ignore:Output seems independent of input")

# -- hand-written programs ------------------------------------------------------------------

PROGRAMS = """
def halve_and_stop(x, a):
    for i in range(6):
        x = x * a + 0.1
        if x > 2:
            x = x * 0.5
            break
        x = x + 0.2 * a
    return x


def nested_ifs(x, a):
    s = 0.0
    for i in range(8):
        if x > 0.5:
            s = s + x
            if s > 1.5:
                s = s * a
                continue
            elif s < 0.2:
                break
            x = x * 0.9
        else:
            x = x + a
            if x < -3:
                break
        s = s + 0.1 * x * a
    return s + x


def jump_in_else(x, a):
    for i in range(5):
        if x < 1:
            x = x + a
        else:
            x = x * 0.5
            continue
        x = x * a
    return x


def while_true(x, a):
    k = 0.0
    while True:
        x = tanh(x * a + 0.3)
        k = k + 1.0
        if x > 0.6:
            x = x * a
            break
        if k > 20:
            break
    return x + k


def while_with_break(x, a):
    k = 0.0
    while k < 5:
        k = k + 1.0
        if x * a > 3:
            x = x - a
            break
        x = x * 1.5
    return x + k


def while_with_continue(x, a):
    k = 0.0
    while k < 6:
        k = k + 1.0
        if sin(x * k) > 0.3:
            x = x * a
            continue
        x = x + 0.25 * a
    return x


def nested_loops(x, a):
    for i in range(3):
        for j in range(4):
            if j == 2:
                break
            x = x * a
        if x > 5:
            break
        x = x + 0.1
    return x


def for_else(x, a):
    for i in range(3):
        x = x * a
        if x > 2:
            break
    else:
        x = x + 10.0 * a
    return x


def both_arms_jump(x, a):
    s = 0.0
    for i in range(6):
        s = s + x * a
        if s > 2:
            break
        else:
            x = x * 1.1
            continue
    return s


def over_a_literal(a, b, c):
    s = 0.0
    for v in [a, b, c]:
        s = s + v * v
        if s > 3.0:
            break
    return s


def over_a_tuple_with_index(a, b):
    s = 0.0
    for i, v in enumerate((a, b, a * b)):
        s = s + (i + 1) * v
    return s + sum(w * w for w in (a, b))
"""

# (function, arguments): each set of arguments takes a different path through the jumps.
SCALAR_CASES = [
    ("halve_and_stop", (0.7, 1.3)), ("halve_and_stop", (0.7, 0.9)),
    ("nested_ifs", (0.7, 1.3)), ("nested_ifs", (0.2, -1.3)), ("nested_ifs", (0.9, 0.4)),
    ("jump_in_else", (0.3, 1.1)), ("jump_in_else", (1.4, 0.6)),
    ("while_true", (0.1, 0.8)), ("while_true", (0.1, 0.3)),
    ("while_with_break", (0.5, 1.2)), ("while_with_break", (0.5, 0.3)),
    ("while_with_continue", (0.4, 0.9)),
    ("nested_loops", (0.5, 1.7)), ("nested_loops", (0.5, 0.8)),
    ("for_else", (0.5, 1.2)), ("for_else", (0.5, 2.5)),
    ("both_arms_jump", (0.3, 1.1)), ("both_arms_jump", (0.2, 0.3)),
    ("over_a_literal", (0.5, 1.2, 2.0)), ("over_a_literal", (0.5, 0.2, 0.4)),
    ("over_a_tuple_with_index", (0.5, 1.2)),
]


def _modules(module_dir: Path, text: str, prefix: str) -> tuple[Any, Any]:
    """The program for srcgrad and its twin for autograd (`np` is autograd.numpy there)."""
    return (import_source(HEADERS["srcgrad"] + text, module_dir, prefix),
            import_source(HEADERS["autograd"] + text, module_dir, prefix + "_twin"))


@pytest.mark.parametrize("name, args", SCALAR_CASES)
@pytest.mark.parametrize("kind", [float, np.float64])
def test_jumps_match_autograd_and_finite_differences(name: str, args: tuple, kind: type,
                                                     module_dir: Path):
    mine, twin = _modules(module_dir, PROGRAMS, "jumps")
    fn = getattr(mine, name)
    value, grads = srcgrad.grad(fn)(*map(kind, args))
    assert value == pytest.approx(fn(*args), rel=1e-13, abs=1e-13)
    expected = autograd.grad(getattr(twin, name), tuple(range(len(args))))(*args)
    np.testing.assert_allclose(tuple(grads), expected, rtol=1e-12, atol=1e-14)
    for k in range(len(args)):
        fd = central_difference(
            lambda v, k=k: fn(*args[:k], v, *args[k + 1:]), args[k])
        assert grads[k] == pytest.approx(fd, rel=1e-6, abs=1e-8)


def test_a_break_ends_the_generated_loop(module_dir: Path):
    """The loop stays a loop (its body once in the source), stops after the iteration that
    breaks, and the backward loop runs over the iterations made: no full-length replay."""
    mine, _ = _modules(module_dir, PROGRAMS, "jumps")
    source = srcgrad.grad(mine.halve_and_stop).source
    assert source.count("for _ in range(6):") == 2  # a loop on each path (float, array)
    assert "if not running_" in source and "break" in source
    assert source.count("for _ in reversed(range(6)[: len(") == 2
    loop = srcgrad.grad(mine.while_true).source
    assert "while True:" in loop and "if not 1.0" not in loop


def test_a_ten_thousand_step_while_loop_with_a_break(module_dir: Path):
    """`while True: ... if c: break`, 10,000 iterations: no recursion, no unrolling."""
    text = """
def decay(x, rate):
    k = 0.0
    while True:
        x = x - rate * sin(x) * 0.001
        k = k + 1.0
        if k >= 10000:
            break
    return x
"""
    mine, twin = _modules(module_dir, text, "long")
    grad = srcgrad.grad(mine.decay)
    for kind in (float, np.float64):
        value, grads = grad(kind(1.2), kind(0.7))
        assert value == pytest.approx(mine.decay(1.2, 0.7), rel=1e-13)
        expected = autograd.grad(twin.decay, (0, 1))(1.2, 0.7)
        np.testing.assert_allclose(tuple(grads), expected, rtol=1e-10)
    fd = central_difference(lambda r: mine.decay(1.2, r), 0.7)
    assert grads.rate == pytest.approx(fd, rel=1e-6)
    loops = [line.strip() for line in grad.source.splitlines()]
    assert loops.count("while True:") == 2  # a loop on each path (float, array)


# -- lists and tuples of arrays -------------------------------------------------------------

LISTS = """
def mlp(layers, x):
    h = x
    for W, b in layers:
        h = np.tanh(h @ W + b)
    return np.sum(h * h)


def scaled(weights, x, a):
    for w in weights:
        x = np.sin(x * w) + a
    return np.sum(x)


def zipped(weights, xs, a):
    s = 0.0
    for i, (w, x) in enumerate(zip(weights, xs)):
        s = s + np.sum(w * x) * a * (i + 1)
        if s > 4.0:
            break
    return s


def tuple_in_a_loop(x, a, b):
    for i in range(3):
        for c in (a, b):
            x = x * c
            if x > 4:
                break
    return x


def loop_in_a_list_loop(layers, x):
    s = 0.0
    for W, b in layers:
        for i in range(3):
            s = s + np.sum(W * b) * x
            if s > 2:
                break
    return s


def mean_of_layers(layers, x):
    for W, b in layers:
        x = np.tanh(x @ W + b) / len(layers)
    return np.sum(x)


def helper(x, ws):
    for w in ws:
        x = x * w
        if x > 3:
            break
    return x


def passes_a_tuple(a, b):
    return helper(a, (a, b, 2.0))


def nested_structure(layers, x):
    h = x
    for layer in layers:
        W, b = layer
        h = np.tanh(h @ W) + b
    return np.sum(h)
"""


def _layers(rng: np.random.Generator, sizes: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(rng.normal(size=(m, n)) / np.sqrt(m), rng.normal(size=n) * 0.1)
            for m, n in itertools.pairwise(sizes)]


def _flat(tree: Any) -> list[np.ndarray]:
    if isinstance(tree, (list, tuple)):
        return [leaf for child in tree for leaf in _flat(child)]
    return [np.asarray(tree, dtype=float)]


def _check_tree(fn: Any, twin_fn: Any, args: tuple, argnum: int, got: Any) -> None:
    """``got``, the gradient for args[argnum], against autograd and central differences,
    with the argument's structure (a list of tuples stays a list of tuples)."""
    expected = autograd.grad(twin_fn, argnum)(*args)
    assert type(got) is type(args[argnum])
    for mine, want in zip(_flat(got), _flat(expected), strict=True):
        np.testing.assert_allclose(mine, want, rtol=1e-10, atol=1e-12)
    leaves = _flat(args[argnum])
    for k, leaf in enumerate(leaves):

        def at(value: Any, k: int = k) -> float:
            replaced = iter([*leaves[:k], value, *leaves[k + 1:]])
            rebuilt = _rebuild(args[argnum], replaced)
            return float(fn(*args[:argnum], rebuilt, *args[argnum + 1:]))

        np.testing.assert_allclose(_flat(got)[k], central_difference(at, leaf), rtol=1e-5,
                                   atol=1e-7)


def _rebuild(tree: Any, leaves: Any) -> Any:
    if isinstance(tree, (list, tuple)):
        return type(tree)(_rebuild(child, leaves) for child in tree)
    return next(leaves)


def test_a_list_of_layers(module_dir: Path):
    """`for W, b in layers: h = np.tanh(h @ W + b)`, layers of different shapes; the gradient
    is a list of (d_W, d_b) pairs, as the parameter is."""
    mine, twin = _modules(module_dir, LISTS, "lists")
    rng = np.random.default_rng(4)
    layers, x = _layers(rng, [3, 5, 4, 2]), rng.normal(size=(6, 3))
    value, grads = srcgrad.grad(mine.mlp)(layers, x)
    assert value == pytest.approx(mine.mlp(layers, x), rel=1e-13)
    _check_tree(mine.mlp, twin.mlp, (layers, x), 0, grads.layers)
    assert [tuple(g.shape for g in pair) for pair in grads.layers] == [
        ((3, 5), (5,)), ((5, 4), (4,)), ((4, 2), (2,))]
    np.testing.assert_allclose(grads.x, autograd.grad(twin.mlp, 1)(layers, x), rtol=1e-10)
    # Another depth is another structure: the transform is built again, not reused wrongly.
    shallow = _layers(rng, [3, 2])
    value, grads = srcgrad.grad(mine.mlp)(shallow, x)
    _check_tree(mine.mlp, twin.mlp, (shallow, x), 0, grads.layers)


@pytest.mark.parametrize("a, b", [(1.1, 1.5), (0.5, 1.2), (1.4, 0.6)])
def test_tuples_written_out(a: float, b: float, module_dir: Path):
    """A tuple literal looped over inside a real loop (with a `break`), and passed to a
    helper function that loops over it."""
    mine, twin = _modules(module_dir, LISTS, "lists")
    for name, args in (("tuple_in_a_loop", (0.7, a, b)), ("passes_a_tuple", (a, b))):
        fn = getattr(mine, name)
        for kind in (float, np.float64):
            value, grads = srcgrad.grad(fn)(*map(kind, args))
            assert value == pytest.approx(fn(*args), rel=1e-13)
            expected = autograd.grad(getattr(twin, name), tuple(range(len(args))))(*args)
            np.testing.assert_allclose(tuple(grads), expected, rtol=1e-12)
        for k in range(len(args)):
            fd = central_difference(
                lambda v, k=k, fn=fn, args=args: fn(*args[:k], v, *args[k + 1:]), args[k])
            assert grads[k] == pytest.approx(fd, rel=1e-6, abs=1e-8)


@pytest.mark.parametrize("name", ["scaled", "zipped", "nested_structure", "loop_in_a_list_loop",
                                  "mean_of_layers"])
def test_lists_and_tuples_of_arrays(name: str, module_dir: Path):
    mine, twin = _modules(module_dir, LISTS, "lists")
    rng = np.random.default_rng(7)
    if name == "scaled":
        args: tuple = ((rng.normal(size=3), 0.7, rng.normal(size=3)), rng.normal(size=3), 0.2)
    elif name == "zipped":
        args = ([rng.normal(size=2), rng.normal(size=2), rng.normal(size=2)],
                rng.normal(size=(4, 2)), 0.9)
    elif name == "loop_in_a_list_loop":
        args = (_layers(rng, [2, 2, 2]), 0.3)
    else:
        args = (_layers(rng, [3, 4, 4]), rng.normal(size=(2, 3)))
    fn = getattr(mine, name)
    value, grads = srcgrad.grad(fn)(*args)
    assert value == pytest.approx(fn(*args), rel=1e-12)
    _check_tree(fn, getattr(twin, name), args, 0, grads[0])
    np.testing.assert_allclose(grads[1], autograd.grad(getattr(twin, name), 1)(*args),
                               rtol=1e-10, atol=1e-12)


def test_a_break_in_a_list_loop_guards_the_later_items(module_dir: Path):
    """With a `break`, items after the first run under `if running_<line>:`, and the items
    the loop never reached get a zero gradient."""
    mine, twin = _modules(module_dir, LISTS, "lists")
    weights = [np.array([1.0, 2.0]), np.array([0.5, 0.5]), np.array([3.0, 1.0])]
    xs = np.array([[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]])
    gradient = srcgrad.grad(mine.zipped)
    value, grads = gradient(weights, xs, 1.0)  # breaks at the second item
    assert value == mine.zipped(weights, xs, 1.0)
    np.testing.assert_array_equal(grads.weights[2], [0.0, 0.0])
    _check_tree(mine.zipped, twin.zipped, (weights, xs, 1.0), 0, grads.weights)
    assert "if running_" in gradient.source


# -- zip of sequences of different lengths ---------------------------------------------------

ZIPS = """
def zip_two(xs, ys, a):
    s = 0.0
    for x, y in zip(xs, ys):
        s = s + a * x * y
    return s


def zip_three(xs, ys, zs, a):
    s = 0.0
    for i, (x, y, z) in enumerate(zip(xs, ys, zs)):
        s = s + np.sin(a * x) * y * z * (i + 1)
    return s


def zip_with_layers(xs, ws, a):
    s = 0.0
    for x, w in zip(xs, ws):
        s = s + np.sum(x * w) * a
    return s
"""


def _check_args(fn: Any, twin_fn: Any, args: tuple, grads: tuple) -> None:
    """Each gradient against autograd and central differences of the plain function."""
    expected = autograd.grad(twin_fn, tuple(range(len(args))))(*args)
    for k, (got, want) in enumerate(zip(grads, expected, strict=True)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
        fd = central_difference(
            lambda v, k=k: float(fn(*args[:k], v, *args[k + 1:])), args[k])
        np.testing.assert_allclose(got, fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("lengths", [(3, 2), (2, 3), (3, 3), (1, 4)])
def test_zip_stops_at_the_shortest_sequence(lengths: tuple[int, int], module_dir: Path):
    """Python's zip stops at its shortest argument; the generated loop runs as many times."""
    mine, twin = _modules(module_dir, ZIPS, "zips")
    rng = np.random.default_rng(sum(lengths))
    xs, ys = rng.normal(size=lengths[0]), rng.normal(size=lengths[1])
    value, grads = srcgrad.grad(mine.zip_two)(xs, ys, 0.3)
    assert value == pytest.approx(mine.zip_two(xs, ys, 0.3), rel=1e-13)
    _check_args(mine.zip_two, twin.zip_two, (xs, ys, 0.3), tuple(grads))
    short = min(lengths)
    np.testing.assert_array_equal(grads.xs[short:], 0.0)  # items zip never reached
    _, slope = srcgrad.forward(mine.zip_two, wrt="a")(xs, ys, 0.3)
    assert slope == pytest.approx(float(np.dot(xs[:short], ys[:short])), rel=1e-13)
    # a list of floats is an array here: zipped the same way
    value, grads = srcgrad.grad(mine.zip_two)(xs, list(ys), 0.3)
    assert value == pytest.approx(mine.zip_two(xs, list(ys), 0.3), rel=1e-13)
    np.testing.assert_allclose(grads.ys, autograd.grad(twin.zip_two, 1)(xs, ys, 0.3))


def test_enumerate_of_a_zip_of_three_stops_at_the_shortest(module_dir: Path):
    mine, twin = _modules(module_dir, ZIPS, "zips")
    rng = np.random.default_rng(3)
    args = (rng.normal(size=4), rng.normal(size=5), rng.normal(size=2), 0.7)
    value, grads = srcgrad.grad(mine.zip_three)(*args)
    assert value == pytest.approx(mine.zip_three(*args), rel=1e-13)
    _check_args(mine.zip_three, twin.zip_three, args, tuple(grads))


def test_an_array_zipped_with_a_list_of_arrays(module_dir: Path):
    """Unrolled over the list: an array with more items gives its first ones; one with fewer
    than the list is a clear error naming the zip, not an IndexError from generated code."""
    mine, twin = _modules(module_dir, ZIPS, "zips")
    rng = np.random.default_rng(5)
    ws = [rng.normal(size=2) for _ in range(3)]
    xs = rng.normal(size=(4, 2))
    value, grads = srcgrad.grad(mine.zip_with_layers)(xs, ws, 0.5)
    assert value == pytest.approx(mine.zip_with_layers(xs, ws, 0.5), rel=1e-13)
    np.testing.assert_allclose(grads.xs, autograd.grad(twin.zip_with_layers, 0)(xs, ws, 0.5))
    _check_tree(mine.zip_with_layers, twin.zip_with_layers, (xs, ws, 0.5), 1, grads.ws)
    with pytest.raises(ValueError, match=r"zip\(\.\.\., xs, \.\.\.\).*2 items and the list or "
                       r"tuple 3"):
        srcgrad.grad(mine.zip_with_layers)(xs[:2], ws, 0.5)


# -- what is still refused -------------------------------------------------------------------

REFUSED = """
def jump_in_loop_else(x, xs):
    for i in range(3):
        for j in range(2):
            x = x * 2.0
        else:
            continue
    return x


def over_a_dict(params, x):
    for w in params:
        x = x * w
    return x


def forever(x, xs):
    while True:
        x = x * 0.5
    return x


def returns_in_a_loop(x, xs):
    for v in xs:
        if v > x:
            return v
    return x


def over_a_call(x, xs):
    for v in sorted(xs):
        x = x * v
    return x
"""


@pytest.mark.parametrize("name, line_text, words", [
    ("jump_in_loop_else", "continue", "`else` clause"),
    ("over_a_dict", "for w in params", "is a dict"),
    ("forever", "while True", "never ends"),
    ("returns_in_a_loop", "return v", "`return` inside a loop"),
    ("over_a_call", "for v in sorted", "over a list or tuple of arrays"),
])
def test_unsupported_loops_are_transform_errors(name: str, line_text: str, words: str,
                                                module_dir: Path):
    """Named file and line, the construct, and what to write instead; never a raw exception
    from inside srcgrad."""
    module = import_source(REFUSED, module_dir, "refused")
    fn = getattr(module, name)
    args = ({"a": 1.0}, 0.5) if name == "over_a_dict" else (0.5, np.ones(2))
    with pytest.raises(srcgrad.TransformError) as raised:
        srcgrad.grad(fn)(*args)
    line = next(i for i, text in enumerate(REFUSED.splitlines(), 1) if line_text in text)
    assert f"{module.__file__}\", line {line}" in str(raised.value)
    assert words in str(raised.value)


# -- generated programs ---------------------------------------------------------------------

ASSIGNED = ("x", "y", "s")  # kept within [-1.5, 1.5] by tanh, so carried values stay bounded


class _JumpWriter:
    """Writes loops whose bodies nest `if` / `elif` / `else` and loops, with `break` and
    `continue` at the end of random arms (after other statements, or alone). Comparisons are
    placeholders `@k@`, filled in by `render` (with or without a probe)."""

    def __init__(self, draw: Any) -> None:
        self.draw = draw
        self.conditions: list[tuple[str, str, str]] = []
        self.loops = itertools.count()

    def expression(self, names: dict[str, float], index: str, depth: int = 2) -> str:
        text, _ = self.draw(expressions(names, depth))
        return text.replace("0.1 * i", index)

    def condition(self, names: dict[str, float], index: str) -> str:
        left = self.expression(names, index, depth=1)
        right = self.draw(st.sampled_from([*map(repr, THRESHOLDS), *sorted(names)]))
        if right == left:
            right = repr(THRESHOLDS[0])
        self.conditions.append((left, self.draw(st.sampled_from(COMPARISONS)), right))
        return f"@{len(self.conditions) - 1}@"

    def assignment(self, names: dict[str, float], index: str, pad: str) -> str:
        target = self.draw(st.sampled_from(ASSIGNED))
        text = self.expression(names, index)
        if self.draw(st.booleans()):
            return f"{pad}{target} = np.tanh({text})"
        return f"{pad}{target} = 0.5 * {target} + 0.5 * np.tanh({text})"

    def block(self, names: dict[str, float], index: str, pad: str, depth: int,
              in_loop: bool) -> list[str]:
        lines: list[str] = []
        for _ in range(self.draw(st.integers(1, 3))):
            kind = self.draw(st.sampled_from(["assign", "if", "if", "loop"] if depth < 2
                                             else ["assign"]))
            if kind == "assign":
                lines.append(self.assignment(names, index, pad))
            elif kind == "if":
                lines += self.branch(names, index, pad, depth, in_loop)
            else:
                lines += self.loop(names, pad, depth)
        return lines

    def arm(self, names: dict[str, float], index: str, pad: str, depth: int, in_loop: bool
            ) -> list[str]:
        """An arm of an `if`: statements, then maybe a jump; or a jump alone."""
        shape = self.draw(st.sampled_from(["plain", "then_jump", "jump"] if in_loop
                                          else ["plain"]))
        lines = [] if shape == "jump" else self.block(names, index, pad, depth + 1, in_loop)
        if shape != "plain":
            lines.append(pad + self.draw(st.sampled_from(["break", "continue"])))
        return lines

    def branch(self, names: dict[str, float], index: str, pad: str, depth: int,
               in_loop: bool) -> list[str]:
        inner = pad + "    "
        lines = [f"{pad}if {self.condition(names, index)}:",
                 *self.arm(names, index, inner, depth, in_loop)]
        if self.draw(st.booleans()):
            lines += [f"{pad}elif {self.condition(names, index)}:",
                      *self.arm(names, index, inner, depth, in_loop)]
        if self.draw(st.booleans()):
            lines += [f"{pad}else:", *self.arm(names, index, inner, depth, in_loop)]
        return lines

    def loop(self, names: dict[str, float], pad: str, depth: int) -> list[str]:
        k = next(self.loops)
        inner = pad + "    "
        kind = self.draw(st.sampled_from(["range", "n", "xs", "enumerate", "while",
                                          "while_true"]))
        body_names = dict(names)
        index = "0.25"
        if kind in ("range", "n"):
            stop = self.draw(st.integers(0, 5)) if kind == "range" else "n"
            header = [f"{pad}for i{k} in range({stop}):"]
            index = f"0.1 * i{k}"
        elif kind in ("xs", "enumerate"):
            header = [f"{pad}for v{k} in xs:" if kind == "xs" else
                      f"{pad}for i{k}, v{k} in enumerate(xs):"]
            body_names[f"v{k}"] = 1.5
            index = f"0.1 * i{k}" if kind == "enumerate" else f"0.1 * v{k}"
        elif kind == "while":  # the counter moves first, so a `continue` cannot skip it
            self.conditions.append((f"k{k}", "<", repr(self.draw(st.sampled_from([1.0, 2.0])))))
            step = self.expression(names, index, 1)
            header = [f"{pad}k{k} = 0.0", f"{pad}while @{len(self.conditions) - 1}@:",
                      f"{inner}k{k} = k{k} + 0.5 + 0.25 * np.tanh({step})"]
        else:
            limit = self.draw(st.integers(0, 4))
            header = [f"{pad}k{k} = 0", f"{pad}while True:", f"{inner}k{k} = k{k} + 1",
                      f"{inner}if k{k} > {limit}:", f"{inner}    break"]
        lines = [*header, *self.block(body_names, index, inner, depth + 1, in_loop=True)]
        if kind != "while_true" and self.draw(st.integers(0, 3)) == 0:
            lines += [f"{pad}else:", f"{inner}s = 0.5 * s + 0.25"]
        return lines


@st.composite
def jump_programs(draw: Any) -> dict[str, Any]:
    """A function of x, y, a, b, an array xs and an int n: one or two loops (for over range,
    an array, enumerate; while with a data-dependent counter; `while True` with a `break`),
    whose bodies jump out of random arms of nested `if` statements."""
    writer = _JumpWriter(draw)
    names = {"x": 1.5, "y": 1.5, "s": 1.5, "a": 1.5, "b": 1.5}
    body: list[str] = []
    for _ in range(draw(st.integers(1, 2))):
        body += writer.loop(names, "    ", 0)
    text = "\n".join([f"def f({', '.join(PARAMS)}):", "    s = 0.5 * a", *body,
                      "    return x + y + s"]) + "\n"
    values = draw(st.lists(st.floats(-1.5, 1.5), min_size=7, max_size=7))
    args = dict(zip(("x", "y", "a", "b"), values, strict=False))
    args.update(xs=np.array(values[4:]), n=draw(st.integers(0, 4)))
    return {"text": render(text, writer.conditions, probe=False),
            "probe": render(text, writer.conditions, probe=True), "args": args}


@settings(max_examples=3 * LOOP_EXAMPLES, deadline=None)  # about 10 s
@given(program=jump_programs())
def test_random_jumps_match_autograd_and_finite_differences(program: dict[str, Any],
                                                            module_dir: Path):
    text, args = program["text"], program["args"]
    context = f"\n{text}args: {args}"
    probe = import_source(PROBE_HEADER + HEADERS["srcgrad"] + program["probe"], module_dir,
                          "jump_probe")
    value, trace = _traced(probe, args)
    assume(all(abs(gap) > MARGIN for gap, _ in trace))
    twin = import_source(HEADERS["autograd"] + text, module_dir, "jump_twin")
    floats = ("x", "y", "a", "b", "xs")
    positional = tuple(args[p] for p in PARAMS)
    expected = {name: autograd.grad(lambda *a: anp.sum(twin.f(*a)), PARAMS.index(name))(
        *positional) for name in floats}
    mine = import_source(HEADERS["srcgrad"] + text, module_dir, "jump_prog")
    gradient = srcgrad.grad(mine.f)
    for kind in (float, np.float64):
        got_value, grads = gradient(*_as_kind(args, kind))
        np.testing.assert_allclose(got_value, value, rtol=1e-12, atol=1e-12,
                                   err_msg=f"value ({kind.__name__}){context}")
        for name in floats:
            np.testing.assert_allclose(getattr(grads, name), expected[name], rtol=1e-10,
                                       atol=1e-12, err_msg=f"d_{name} vs autograd{context}")
    check_differences(probe, args, trace, grads, floats, context)
