"""Random programs with branches and loops: srcgrad against autograd and central differences.

Why these tests: a branch or a loop in the source is a branch or a loop in the generated code,
so the bugs to look for are in how the two nest: a variable assigned in one branch only (passed
through by the other), a branch inside a loop whose taken side changes from one iteration to
the next (the backward loop must test the same condition on the restored values), a loop inside
a branch, `continue` / `break` guards, `while` loops whose trip count depends on the data, and
`a if c else b`. Hypothesis writes such programs in the style of `loop_programs`
(tests/test_loops.py), reusing its expression generator; each one is checked on Python floats
and on NumPy float64 scalars against

- autograd, which runs the same Python control flow on its traced values (same branches, the
  chain rule in another order of rounding), and
- float64 central differences of the plain function, skipped (`assume`) when a comparison's
  outcome at x + h or x - h differs from the one at x, so no difference straddles a jump.

Every comparison goes through a probe (in a third copy of the program) that records how far
its two sides are apart: points within MARGIN of a boundary are skipped, because srcgrad may
round an intermediate differently from Python there and take the other branch legitimately.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import autograd
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from support import central_difference, import_source
from test_loops import CARRIED_BOUND, HEADERS, LOOP_EXAMPLES, autograd_grads, expressions

import srcgrad

pytestmark = pytest.mark.filterwarnings("ignore:Output seems independent of input")

MARGIN = 1e-9  # skip points where a comparison's two sides are closer than this
THRESHOLDS = (-0.5, 0.0, 0.3, 0.8)
COMPARISONS = ("<", "<=", ">", ">=")
CARRIED = ("x", "y", "s")  # the only names assigned in a nested block (bounded by CARRIED_BOUND)
MAX_DEPTH = 2  # nesting of if / for / while
WHILE_LIMITS = (-1.0, 1.0, 2.0)  # a while counter starts at 0 and grows by 0.25..0.75 a step
PROBE_HEADER = """\
import operator

TRACE = []
_COMPARE = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def _probe(left, op, right):
    TRACE.append((float(left - right), bool(_COMPARE[op](left, right))))
    return _COMPARE[op](left, right)
"""
PARAMS = ("x", "y", "a", "b", "xs", "n")
FLOAT_PARAMS = ("x", "y", "a", "b", "xs")


class _Writer:
    """Writes one program; comparisons are placeholders `@k@` for `render` to fill in."""

    def __init__(self, draw: Any) -> None:
        self.draw = draw
        self.conditions: list[tuple[str, str, str]] = []
        self.temporaries = itertools.count()
        self.whiles = 0
        self.loops = itertools.count()

    def expression(self, names: dict[str, float], index: str, depth: int = 2
                   ) -> tuple[str, float]:
        text, bound = self.draw(expressions(names, depth))
        return text.replace("0.1 * i", index), bound  # `expressions` spells the index `i`

    def condition(self, names: dict[str, float], index: str) -> str:
        left, _ = self.expression(names, index, depth=1)
        right = self.draw(st.sampled_from([*map(repr, THRESHOLDS), *sorted(names)]))
        if right == left:  # `x > x` sits on its boundary at every point
            right = repr(THRESHOLDS[0])
        self.conditions.append((left, self.draw(st.sampled_from(COMPARISONS)), right))
        return f"@{len(self.conditions) - 1}@"

    def store(self, names: dict[str, float], target: str, text: str, bound: float) -> str:
        """`target = text`, squashed if a carried value could leave CARRIED_BOUND."""
        if target in CARRIED:
            # A bare name (`x = a` in a loop) hits test_loop_copying_an_invariant below.
            if bound > CARRIED_BOUND or text.isidentifier():
                text = f"np.tanh({text})"
        else:
            names[target] = bound
        return f"{target} = {text}"

    def target(self) -> str:
        return self.draw(st.sampled_from([*CARRIED, "t"])).replace(
            "t", f"t{next(self.temporaries)}")

    def block(self, names: dict[str, float], index: str, pad: str, depth: int,
              guards: bool = False) -> list[str]:
        """1-3 statements; `guards` allows one `if c: continue` / `if c: break` among them."""
        if depth:
            names = dict(names)  # temporaries assigned here are not visible after the block
        lines: list[str] = []
        guard_at = self.draw(st.integers(-1, 2)) if guards else -1
        for k in range(self.draw(st.integers(1, 3 if depth == 0 else 2))):
            if k == guard_at:
                jump = self.draw(st.sampled_from(["continue", "break"]))
                lines += [f"{pad}if {self.condition(names, index)}:", f"{pad}    {jump}"]
            lines += self.statement(names, index, pad, depth)
        return lines

    def statement(self, names: dict[str, float], index: str, pad: str, depth: int
                  ) -> list[str]:
        kinds = ["assign", "assign", "ifexp"]
        if depth < MAX_DEPTH:
            kinds += ["if", "if", "for"]
            kinds.append("while")  # nested whiles too (they once clashed: see test_found_bugs)
        kinds.append("reduce")  # sum of a generator, in branches and loops too
        kind = self.draw(st.sampled_from(kinds))
        inner = pad + "    "
        if kind == "assign":
            target = self.target()
            text, bound = self.expression(names, index)
            if target in CARRIED and self.draw(st.booleans()):  # a recurrence
                text, bound = f"{target} + 0.3 * {text}", CARRIED_BOUND + 0.3 * bound
            return [pad + self.store(names, target, text, bound)]
        if kind == "ifexp":
            target = self.target()
            (yes, yes_bound), (no, no_bound) = (self.expression(names, index, 1)
                                                for _ in range(2))
            text = f"{yes} if {self.condition(names, index)} else {no}"
            return [pad + self.store(names, target, text, max(yes_bound, no_bound))]
        if kind == "reduce":
            target = self.target()
            body, bound = self.expression({**names, "v": 1.5}, "0.1 * v", 1)
            # Not max/min: at a tie (a = 0 in max(v * a for v in xs)) srcgrad splits the
            # gradient among the equal values, autograd gives it to the first.
            text = f"sum({body} for v in xs)"
            return [pad + self.store(names, target, text, 3 * bound)]
        if kind == "if":
            lines = [f"{pad}if {self.condition(names, index)}:",
                     *self.block(names, index, inner, depth + 1)]
            if self.draw(st.booleans()):
                lines += [f"{pad}elif {self.condition(names, index)}:",
                          *self.block(names, index, inner, depth + 1)]
            if self.draw(st.booleans()):
                lines += [f"{pad}else:", *self.block(names, index, inner, depth + 1)]
            return lines
        if kind == "for":
            return self.for_loop(names, pad, depth)
        self.whiles += 1
        counter = f"k{self.whiles}"
        limit = self.draw(st.sampled_from(WHILE_LIMITS))
        self.conditions.append((counter, "<", repr(limit)))
        step, _ = self.expression(names, f"0.1 * {counter}", 1)
        return [f"{pad}{counter} = 0.0",
                f"{pad}while @{len(self.conditions) - 1}@:",
                *self.block({**names, counter: 3.0}, f"0.1 * {counter}", inner, depth + 1),
                f"{inner}{counter} = {counter} + 0.5 + 0.25 * np.tanh({step})"]

    def for_loop(self, names: dict[str, float], pad: str, depth: int) -> list[str]:
        # Each loop has variables of its own (test_found_bugs covers a variable shared by the
        # loops in both branches of an `if`).
        k = next(self.loops)
        i, v = f"i{k}", f"v{k}"
        steps = self.draw(st.integers(0, 5))
        header = self.draw(st.sampled_from([
            f"{i} in range({steps})", f"{i} in range(n)", f"{i} in range(2, {steps + 2})",
            f"{v} in xs", f"{i}, {v} in enumerate(xs)"]))
        if v in header:
            names = {**names, v: 1.5}
        index = f"0.1 * {v}" if header.startswith(v) else f"0.1 * {i}"
        return [f"{pad}for {header}:",
                *self.block(names, index, pad + "    ", depth + 1, guards=True)]


def render(text: str, conditions: list[tuple[str, str, str]], probe: bool) -> str:
    for k, (left, op, right) in enumerate(conditions):
        filled = f"_probe({left}, {op!r}, {right})" if probe else f"{left} {op} {right}"
        text = text.replace(f"@{k}@", filled)
    return text


@st.composite
def control_flow_programs(draw: Any) -> dict[str, Any]:
    """A function of x, y, a, b, an array xs and an int n, whose body nests if / elif / else,
    `a if c else b`, for loops (range, an array, enumerate; `continue` / `break` guards) and
    bounded while loops two deep, comparing intermediate values with thresholds or each other.

    x, y and an accumulator s are the only names a nested block assigns (so they are carried
    by loops, passed through by branches that do not assign them) and are squashed with tanh
    whenever their bound could exceed CARRIED_BOUND; temporaries t<k> are fresh names, read
    only in the block that assigns them. A while loop's counter grows by 0.25 to 0.75 (the
    step depends on the data) until it reaches its limit, so it stops within 8 iterations.
    """
    writer = _Writer(draw)
    names = {"x": CARRIED_BOUND, "y": CARRIED_BOUND, "s": CARRIED_BOUND, "a": 1.5, "b": 1.5}
    body = writer.block(names, "0.25", "    ", 0)  # no loop index here
    returned = " + ".join(["x", "y", "s", *(name for name in names if name.startswith("t"))])
    text = "\n".join([f"def f({', '.join(PARAMS)}):", "    s = 0.5 * a", *body,
                      f"    return {returned}"]) + "\n"
    values = draw(st.lists(st.floats(-1.5, 1.5), min_size=7, max_size=7))
    args = dict(zip(("x", "y", "a", "b"), values, strict=False))
    args.update(xs=np.array(values[4:]), n=draw(st.integers(0, 5)))
    return {"text": render(text, writer.conditions, probe=False),
            "probe": render(text, writer.conditions, probe=True), "args": args}


def _traced(probe: Any, args: dict[str, Any]) -> tuple[float, list[tuple[float, bool]]]:
    """The plain function's value at ``args`` and each comparison's (left - right, outcome)."""
    probe.TRACE.clear()
    value = float(probe.f(*(args[p] for p in PARAMS)))
    return value, list(probe.TRACE)


def check_differences(probe: Any, args: dict[str, Any], trace: list[tuple[float, bool]],
                      grads: Any, names: Any, context: str, scale: float = 1.0) -> None:
    """Each gradient in ``names`` against a central difference of the plain function, taken
    only where no comparison changes its outcome between the two shifted points."""
    outcomes = [taken for _, taken in trace]
    for name in names:

        def at(shifted: Any, name: str = name) -> float:
            shifted_value, shifted_trace = _traced(probe, dict(args, **{name: shifted}))
            assume([taken for _, taken in shifted_trace] == outcomes)  # no jump in between
            return shifted_value

        fd = central_difference(at, args[name])
        np.testing.assert_allclose(getattr(grads, name), fd, rtol=1e-5, atol=1e-6 * scale,
                                   err_msg=f"d_{name} vs finite differences{context}")



def _as_kind(args: dict[str, Any], kind: type) -> tuple:
    return tuple(kind(args[p]) if p in "xyab" and len(p) == 1 else args[p] for p in PARAMS)


@settings(max_examples=3 * LOOP_EXAMPLES)  # about 8 s
@given(program=control_flow_programs())
def test_random_control_flow_programs_match_autograd_and_finite_differences(
    program: dict[str, Any], module_dir: Path
):
    text, args = program["text"], program["args"]
    context = f"\n{text}args: {args}"
    probe = import_source(PROBE_HEADER + HEADERS["srcgrad"] + program["probe"], module_dir,
                          "cf_probe")
    assume(len(set(args["xs"])) == len(args["xs"]))  # no tie in a max or min of xs
    value, trace = _traced(probe, args)
    assume(np.isfinite(value))
    assume(all(abs(gap) > MARGIN for gap, _ in trace))
    twin = import_source(HEADERS["autograd"] + text, module_dir, "cf_twin")
    argnums = tuple(PARAMS.index(p) for p in FLOAT_PARAMS)
    positional = tuple(args[p] for p in PARAMS)
    expected = dict(zip(FLOAT_PARAMS, autograd_grads(twin.f, positional, argnums), strict=True))
    scale = max(1.0, *(float(np.max(np.abs(g))) for g in expected.values()))
    assume(scale < 1e4)  # central differences lose digits on steep programs
    mine = import_source(HEADERS["srcgrad"] + text, module_dir, "cf_prog")
    gradient = srcgrad.grad(mine.f)
    for kind in (float, np.float64):
        got_value, grads = gradient(*_as_kind(args, kind))
        np.testing.assert_allclose(got_value, value, rtol=1e-12, atol=1e-12,
                                   err_msg=f"value ({kind.__name__}){context}")
        for name in FLOAT_PARAMS:
            got = getattr(grads, name)
            assert np.shape(got) == np.shape(args[name]), f"d_{name} shape{context}"
            np.testing.assert_allclose(got, expected[name], rtol=1e-10, atol=1e-12 * scale,
                                       err_msg=f"d_{name} vs autograd ({kind.__name__}){context}")
        assert grads.n == 0.0
    check_differences(probe, args, trace, grads, FLOAT_PARAMS, context, scale)


# -- bugs the generator found (fixed; each is one minimal program) -------------------------

BUGS = """
import numpy as np


def loop_variable_set_before(x):
    i = 0.0
    for i in range(3):
        x = x * 1.0
    return x + i


def generator_in_a_branch(x, y):
    s = 0.0
    if x > 0:
        s = sum(v * y for v in range(3))
    return s


def while_in_a_while(x):
    k = 0.0
    while k < 1.0:
        j = 0.0
        while j < 1.0:
            x = x * 0.5
            j = j + 1.0
        k = k + 1.0
    return x


def loops_in_both_branches(x, a):
    if a < 0:
        for i in range(2):
            x = x * a
    else:
        for i in range(2):
            x = x + a
    return x


def whiles_in_both_branches(x, a):
    k = 0.0
    if a < 0:
        while k < 1.0:
            x = x * a
            k = k + 1.0
    else:
        while k < 1.0:
            x = x + a
            k = k + 1.0
    return x


def loop_copying_an_invariant(x, a):
    for i in range(3):
        x = a
    return x
"""


@pytest.mark.parametrize("name", ["generator_in_a_branch", "while_in_a_while",
                                  "loops_in_both_branches", "whiles_in_both_branches",
                                  "loop_copying_an_invariant"])
@pytest.mark.parametrize("kind", [float, np.float64])
def test_found_bugs(name: str, kind: type, module_dir: Path):
    """Programs the generator once broke srcgrad with (now fixed), against autograd."""
    module = import_source(BUGS, module_dir, "cf_bugs")
    fn = getattr(module, name)
    args = (kind(0.7), kind(-0.3))[:fn.__code__.co_argcount]
    value, grads = srcgrad.grad(fn)(*args)
    assert value == pytest.approx(fn(*args), rel=1e-12)
    expected = autograd.grad(fn, tuple(range(len(args))))(*map(float, args))
    np.testing.assert_allclose(tuple(grads), expected, rtol=1e-12, atol=1e-15)


def test_a_loop_variable_is_not_read_after_its_loop(module_dir: Path):
    """Python leaves the last index in it; srcgrad refuses to guess rather than give the value
    it had before the loop."""
    module = import_source(BUGS, module_dir, "cf_bugs")
    with pytest.raises(srcgrad.TransformError, match="is the variable of the loop"):
        srcgrad.grad(module.loop_variable_set_before)(0.7)
