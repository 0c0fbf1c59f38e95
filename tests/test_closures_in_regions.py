"""Local functions and lambdas that read the enclosing function's variables, called inside a
loop, a `while`, an `if` or a `sum(...)` generator.

Why these tests: a loop or branch body is lowered into a graph of its own, whose inputs are the
values it reads from outside. A local function's free names are read where it is *called*
(as Python closures read them at call time), so when the call is inside a region, what the
function reads must become inputs of that region too, and must be the region's current values
(a variable the loop updates is seen as updated). These programs once gave silently wrong
values and gradients (the body read nodes of the enclosing graph). Each program is written
once and imported twice, over NumPy for srcgrad and over autograd.numpy for the oracle; grad,
forward and hvp are checked against autograd and against central differences, on Python
floats, NumPy float64 scalars and arrays.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
from support import central_difference, import_source

import srcgrad

pytestmark = pytest.mark.filterwarnings("ignore:Output seems independent of input")

PROGRAMS = '''
def lambda_in_for(x, y):
    step = lambda t: t * y
    s = 0.0
    for i in range(2):
        s = s + step(x)
    return s


def def_in_if(x, y):
    def step(t):
        return t * y
    s = 0.0
    if x > 0:
        s = step(x)
    return s


def def_in_if_adds(x, y):
    acc = 0.0
    def step(t):
        return t * y
    if x > 0:
        acc = acc + step(x)
    return acc


def closure_reads_parameter(x, y):
    acc = y
    def step(t):
        return t + x
    for i in range(2):
        acc = step(acc) * y
    return acc


def def_in_for_three(x, y):
    acc = 0.0
    def step(t):
        return t * y
    for i in range(3):
        acc = acc + step(x)
    return acc


def def_in_while(x, y):
    def step(t):
        return t * y
    s = x
    while s < 5.0:
        s = s + step(x)
    return s


def sum_generator(x, y):
    step = lambda t: np.sin(t * y)
    return sum(step(x) * i for i in range(4))


def nested_local(x, y):
    def g(t):
        def h(u):
            return u * y
        return h(t) + x
    s = 0.0
    for i in range(2):
        s = s + g(s + 1.0)
    return s


def sees_update_before_call(x, y):
    scale = lambda t: t * y
    s = 0.0
    for i in range(3):
        y = y * x
        s = s + scale(x)
    return s


def sees_update_after_call(x, y):
    scale = lambda t: np.sin(t * y)
    s = 0.0
    for i in range(3):
        s = s + scale(x)
        y = y + s * x
    return s + y


def nested_loops(x, y):
    step = lambda t: t * y
    s = 0.0
    for i in range(2):
        for j in range(3):
            s = s + step(x) * j
    return s


def branch_in_loop(x, y):
    step = lambda t: t * y
    s = 0.0
    for i in range(4):
        if s < 1.0:
            s = s + step(x)
        else:
            s = s * 0.5
    return s


def defined_in_loop(x, y):
    s = 0.0
    for i in range(2):
        step = lambda t: t * y
        s = s + step(x)
    return s


def local_with_own_loop(x, y):
    def g(t):
        u = 0.0
        for k in range(2):
            u = u + t * y
        return u
    s = 0.0
    for i in range(2):
        s = s + g(x)
    return s


def called_from_local_loop(x, y):
    step = lambda t: t * y
    def g(t):
        u = 0.0
        for k in range(2):
            u = u + step(t)
        return u
    s = 0.0
    for i in range(2):
        s = s + g(x)
    return s


def shadowed_name(x, y):
    step = lambda t: t * y
    def g(t):
        y = 2.0 * t
        u = 0.0
        for k in range(2):
            u = u + step(t) + y
        return u
    s = 0.0
    for i in range(2):
        s = s + g(x)
    return s


def conditional_expression(x, y):
    step = lambda t: np.exp(t * y)
    return step(x) if x > 0 else x * x


def branch_updates_read_name(x, y):
    step = lambda t: t * y
    s = 0.0
    if x > 0:
        y = y * 3.0
        s = step(x)
    return s + y


def apply(fn, t):
    return fn(t)


def passed_to_helper(x, y):
    step = lambda t: np.sin(t) * y
    s = 0.0
    for i in range(2):
        s = s + apply(step, x)
    return s


def while_in_branch_in_loop(x, y):
    step = lambda t: t * y * x
    s = 0.0
    for i in range(2):
        if x > 0:
            k = 0.0
            while k < 2.0:
                k = k + 1.0
                s = s + step(k)
    return s


def while_condition_calls(x, y):
    step = lambda t: t * y
    s = x
    while step(s) < 5.0:
        s = s + x
    return s * y


def branch_in_called_local(x, y):
    def g(t):
        u = t
        if t > 0.5:
            u = u * y
        return u
    s = 0.0
    for i in range(3):
        s = s + g(x + i * 0.1)
    return s


def chained_locals_in_nested_regions(x, y):
    a = lambda t: t * y
    b = lambda t: a(t) + x * a(t)
    s = 0.0
    for i in range(2):
        if x > 0:
            for j in range(2):
                s = s + b(s * 0.1 + x)
    return s


def array_lambda_in_for(w, v):
    step = lambda t: np.tanh(t * w)
    s = v * 0.0
    for i in range(3):
        s = s + step(v)
    return np.sum(s * v)


def array_def_in_if(w, v):
    def step(t):
        return np.sin(t * w) * v
    s = 0.0
    if np.sum(w) > 0:
        s = np.sum(step(v))
    return s


def array_while(w, v):
    step = lambda t: np.sum(np.tanh(w * t))
    k = 0.0
    s = 0.0
    while k < 3.0:
        k = k + 1.0
        s = s + step(v) * k
    return s


def array_sum_generator(w, v):
    step = lambda t: np.sum(np.sin(w * t))
    return sum(step(v[i]) for i in range(3))


def array_carried_read_by_closure(w, v):
    shift = lambda t: np.sum(t * w)
    s = 0.0
    for i in range(3):
        w = np.tanh(w + v)
        s = s + shift(v)
    return s
'''

SCALARS = ["lambda_in_for", "def_in_if", "def_in_if_adds", "closure_reads_parameter",
           "def_in_for_three", "def_in_while", "sum_generator", "nested_local",
           "sees_update_before_call", "sees_update_after_call", "nested_loops",
           "branch_in_loop", "defined_in_loop", "local_with_own_loop", "called_from_local_loop",
           "shadowed_name", "conditional_expression", "branch_updates_read_name",
           "passed_to_helper", "while_in_branch_in_loop", "while_condition_calls",
           "branch_in_called_local", "chained_locals_in_nested_regions"]
ARRAYS = ["array_lambda_in_for", "array_def_in_if", "array_while", "array_sum_generator",
          "array_carried_read_by_closure"]
SCALAR_ARGS = (0.7, 1.3)
ARRAY_ARGS = (np.array([0.3, -0.8, 1.1]), np.array([0.9, 0.4, -0.6]))


@pytest.fixture(scope="module")
def modules(module_dir: Path) -> tuple[ModuleType, ModuleType]:
    """The programs over NumPy (for srcgrad) and over autograd.numpy (the oracle)."""
    mine = import_source("import numpy as np\n" + PROGRAMS, module_dir, "closures")
    oracle = import_source("import autograd.numpy as np\n" + PROGRAMS, module_dir,
                           "closures_oracle")
    return mine, oracle


def assert_close(got: object, want: object, what: str) -> None:
    np.testing.assert_allclose(np.asarray(got, dtype=float), np.asarray(want, dtype=float),
                               rtol=1e-9, atol=1e-12, err_msg=what)


def _fd(fn: object, args: tuple, k: int) -> object:
    def at(value: object) -> float:
        moved = list(args)
        moved[k] = value
        return float(fn(*moved))  # type: ignore[operator]
    return central_difference(at, args[k])


@pytest.mark.parametrize("kind", [float, np.float64])
@pytest.mark.parametrize("name", SCALARS)
def test_scalar_grad(name: str, kind: type, modules: tuple[ModuleType, ModuleType]):
    args = tuple(kind(a) for a in SCALAR_ARGS)
    assert_gradients_match(modules, name, args, SCALAR_ARGS, ("x", "y"))


def assert_gradients_match(modules: tuple[ModuleType, ModuleType], name: str, args: tuple,
                oracle_args: tuple, params: tuple[str, str]) -> None:
    """srcgrad's value and gradient of ``name`` against the function itself, autograd on its
    twin, and central differences."""
    mine, oracle = modules
    value, grads = srcgrad.grad(getattr(mine, name))(*args)
    assert_close(value, getattr(mine, name)(*args), f"{name}: value")
    for k, param in enumerate(params):
        want = autograd.grad(getattr(oracle, name), k)(*oracle_args)
        assert_close(getattr(grads, param), want, f"{name}: d/d{param} vs autograd")
        np.testing.assert_allclose(getattr(grads, param), _fd(getattr(mine, name), args, k),
                                   rtol=1e-6, atol=1e-7, err_msg=f"{name}: d/d{param} vs fd")


@pytest.mark.parametrize("name", SCALARS)
def test_scalar_forward(name: str, modules: tuple[ModuleType, ModuleType]):
    mine, oracle = modules
    for k, param in enumerate(("x", "y")):
        value, tangent = srcgrad.forward(getattr(mine, name), wrt=param)(*SCALAR_ARGS)
        assert_close(value, getattr(mine, name)(*SCALAR_ARGS), f"{name}: forward value")
        want = autograd.grad(getattr(oracle, name), k)(*SCALAR_ARGS)
        assert_close(tangent, want, f"{name}: forward d/d{param} vs autograd")
        np.testing.assert_allclose(tangent, _fd(getattr(mine, name), SCALAR_ARGS, k),
                                   rtol=1e-6, atol=1e-7, err_msg=f"{name}: forward vs fd")


@pytest.mark.parametrize("name", SCALARS)
def test_scalar_hvp(name: str, modules: tuple[ModuleType, ModuleType]):
    """Forward over reverse: Hv against autograd's Hessian times v."""
    mine, oracle = modules
    direction = (0.4, -1.1)
    value, grads, products = srcgrad.hvp(getattr(mine, name))(SCALAR_ARGS, direction)
    assert_close(value, getattr(mine, name)(*SCALAR_ARGS), f"{name}: hvp value")
    packed = getattr(oracle, name)
    hessian = autograd.hessian(lambda z: packed(z[0], z[1]))(np.array(SCALAR_ARGS))
    assert_close(list(grads), [autograd.grad(packed, k)(*SCALAR_ARGS) for k in (0, 1)],
           f"{name}: hvp grads")
    assert_close(list(products), hessian @ np.array(direction), f"{name}: Hv vs autograd")


@pytest.mark.parametrize("name", ARRAYS)
def test_array_grad(name: str, modules: tuple[ModuleType, ModuleType]):
    assert_gradients_match(modules, name, ARRAY_ARGS, ARRAY_ARGS, ("w", "v"))


@pytest.mark.parametrize("name", ARRAYS)
def test_array_forward(name: str, modules: tuple[ModuleType, ModuleType]):
    """forward(f, wrt=a): the derivative along all-ones in ``a``."""
    mine, oracle = modules
    for k, param in enumerate(("w", "v")):
        value, tangent = srcgrad.forward(getattr(mine, name), wrt=param)(*ARRAY_ARGS)
        assert_close(value, getattr(mine, name)(*ARRAY_ARGS), f"{name}: forward value")
        want = np.sum(autograd.grad(getattr(oracle, name), k)(*ARRAY_ARGS))
        assert_close(tangent, want, f"{name}: forward d/d{param} vs autograd")


def test_hunter_reproducer_values():
    """The report's numbers, written out: value 1.82, grads (2.6, 1.4), forward along y."""
    def f(x, y):
        step = lambda t: t * y  # noqa: E731
        s = 0.0
        for _ in range(2):
            s = s + step(x)
        return s

    value, grads = srcgrad.grad(f)(0.7, 1.3)
    assert value == pytest.approx(1.82)
    assert (grads.x, grads.y) == (pytest.approx(2.6), pytest.approx(1.4))
    assert srcgrad.forward(f, wrt="y")(0.7, 1.3) == (pytest.approx(1.82), pytest.approx(1.4))


def structured_closure(params, x):
    def step(t):
        return np.sum(np.tanh(t * params[0]) + params[1])
    s = 0.0
    for _ in range(2):
        s = s + step(x)
    return s


def test_structured_parameter_read_by_closure_in_loop():
    """A tuple parameter read (and indexed) only inside a lambda called in a loop: each leaf
    becomes an input of the loop."""
    w, b = np.array([0.3, 0.5]), np.array([0.1, -0.2])
    value, grads = srcgrad.grad(structured_closure)((w, b), 0.9)

    def twin(w, b, x):
        return 2.0 * anp.sum(anp.tanh(x * w) + b)

    assert_close(value, twin(w, b, 0.9), "value")
    for k, got in enumerate((grads.params[0], grads.params[1], grads.x)):
        assert_close(got, autograd.grad(twin, k)(w, b, 0.9), f"argument {k} vs autograd")
