"""Later calls that differ from the first one, and gradients the caller may change.

The first call decides how the generated code unpacks structured parameters and which shapes
its specialised path assumes. A later call with another structure (a list of another length,
a dict with its keys in another order) must get the right gradient, not the first call's
layout; and a gradient must never be a view of an input, which an optimizer updating one
parameter in place would change under another's gradient. Oracles: autograd and the
derivatives written out by hand.
"""

from __future__ import annotations

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
from support import import_source

import srcgrad


def _layers(layers, x):
    h = x
    for W in layers:
        h = np.tanh(h @ W)
    return np.sum(h)


def _layers_reference(layers, x):
    h = x
    for W in layers:
        h = anp.tanh(anp.dot(h, W))
    return anp.sum(h)


@pytest.mark.parametrize("first", [2, 1, 3])
def test_a_list_of_another_length_gets_its_own_transform(first: int):
    rng = np.random.default_rng(first)
    f = srcgrad.grad(_layers)
    x = rng.normal(size=2)
    for count in (first, 1, 3, 2, first):  # the first structure again at the end: cached
        layers = [rng.normal(size=(2, 2)) for _ in range(count)]
        for kind in (list, tuple):
            value, grads = f(kind(layers), x)
            assert value == pytest.approx(_layers_reference(layers, x), rel=1e-13)
            expected = autograd.grad(_layers_reference)(list(layers), x)
            assert len(grads.layers) == count
            for got, want in zip(grads.layers, expected, strict=True):
                np.testing.assert_allclose(got, want, rtol=1e-12)
            np.testing.assert_allclose(grads.x, autograd.grad(_layers_reference, 1)(
                list(layers), x), rtol=1e-12)


def _nested(params, x):
    scale, layers = params
    h = x
    for W in layers:
        h = np.sin(h @ W)
    return np.sum(scale * h)


def test_a_nested_structure_that_changes_inside():
    rng = np.random.default_rng(5)
    f = srcgrad.grad(_nested, wrt="params")
    x = rng.normal(size=3)
    for count in (2, 1):
        scale = rng.normal(size=3)
        layers = [rng.normal(size=(3, 3)) for _ in range(count)]
        _, (d_scale, d_layers) = f((scale, layers), x)
        h = [x]
        for W in layers:
            h.append(np.sin(h[-1] @ W))
        np.testing.assert_allclose(d_scale, h[-1], rtol=1e-13)  # d/d scale of sum(scale * h)
        g = scale.copy()  # backward through the sines by hand
        expected = []
        for W, before in zip(reversed(layers), reversed(h[:-1]), strict=True):
            g = g * np.cos(before @ W)
            expected.append(np.outer(before, g))
            g = g @ W.T
        for got, want in zip(d_layers, reversed(expected), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-12)


def _by_key(p, x):
    return np.sum(np.sin(p["w"] * x + p["b"]))


def test_a_dict_with_its_keys_in_another_order():
    """The path specialised to the first call's shapes matched a dict's values by position:
    the same shapes under swapped keys took it, with each gradient under the other key."""
    f = srcgrad.grad(_by_key, wrt="p")
    x = np.array([0.1, 0.2, 0.3])
    f({"w": np.array([1.0, 2.0, 3.0]), "b": np.array([0.5])}, x)  # w (3,), b (1,)
    w, b = np.array([2.0]), np.array([0.1, -0.2, 0.4])
    for p in ({"b": b, "w": w}, {"w": w, "b": b}):
        _, d_p = f(p, x)
        z = np.cos(w * x + b)
        np.testing.assert_allclose(d_p["w"], [np.sum(z * x)], rtol=1e-13)
        np.testing.assert_allclose(d_p["b"], z, rtol=1e-13)
    with pytest.raises(srcgrad.TransformError, match=r"no element 'b' \(it has 'w', 'c'\)"):
        f({"w": w, "c": b}, x)  # the function itself raises KeyError


VIEWS = {
    "reshape": lambda a, b: np.sum(a.reshape(3) * b),
    "transpose": lambda a, b: np.sum(a.T * b),
    "slice": lambda a, b: np.sum(a[0:3] * b),
    "ravel": lambda a, b: np.sum(np.ravel(a) * b),
    "squeeze": lambda a, b: np.sum(np.squeeze(a) * b),
}
VIEW_SOURCE = "\n".join(
    f"def {name}(a, b):\n    return np.sum({body} * b)\n" for name, body in
    [("reshape", "a.reshape(3)"), ("transpose", "a.T"), ("slice", "a[0:3]"),
     ("ravel", "np.ravel(a)"), ("squeeze", "np.squeeze(a)")])


@pytest.mark.parametrize("name", list(VIEWS))
def test_a_gradient_is_never_a_view_of_an_input(name: str, module_dir):
    module = import_source("import numpy as np\n\n" + VIEW_SOURCE, module_dir, "views")
    f = srcgrad.grad(getattr(module, name))
    a, b = np.array([1.0, 2.0, 3.0]), np.array([10.0, 20.0, 30.0])
    for _ in range(2):  # the first call, then the path specialised to its shapes
        value, grads = f(a, b)
        assert value == VIEWS[name](a, b)
        assert not np.shares_memory(grads.b, a) and not np.shares_memory(grads.a, b)
        np.testing.assert_array_equal(grads.b, a)  # d/db sum(view(a) * b) = view(a)
        kept = grads.b.copy()
        a -= 0.1 * grads.a  # an SGD step on a, in place
        np.testing.assert_array_equal(grads.b, kept)


SHADOWING = """
import numpy as np


def slice(a, b):  # hides the builtin the generated code indexes with
    return np.sum(a[0:3] * b)


def range(n):  # hides the builtin the generated loops call
    return n


def len(a):
    return 0


def loop(a, b):
    total = 0.0
    for i in [0, 1]:
        total = total + np.sum(a[i:i + 2] * b[0:2])
    return total
"""


def test_module_globals_named_like_builtins_do_not_reach_the_generated_code(module_dir):
    module = import_source(SHADOWING, module_dir, "shadowing")
    a, b = np.arange(4.0), np.array([1.0, 2.0, 3.0])
    value, grads = srcgrad.grad(module.slice)(a, b)
    assert value == 8.0
    np.testing.assert_array_equal(grads.a, [1.0, 2.0, 3.0, 0.0])
    np.testing.assert_array_equal(grads.b, [0.0, 1.0, 2.0])
    value, grads = srcgrad.grad(module.loop)(a, b)
    assert value == (0 * 1 + 1 * 2) + (1 * 1 + 2 * 2)
    np.testing.assert_array_equal(grads.a, [1.0, 3.0, 2.0, 0.0])
    np.testing.assert_array_equal(grads.b, [1.0, 3.0, 0.0])


HELPERS = """
import numpy as np


def helper(x):
    return x * 2.0


def loss(x):
    return np.sum(helper(x)) + 1.0


def scaled(x):
    return 3.0 * x


def scaled_derive(x):
    return 3.0


def with_rule(x):
    return scaled(x) * x
"""


def test_a_helper_redefined_after_the_first_call_is_read_again(module_dir):
    """A notebook runs a cell again: the module's `helper` is a new function. The generated
    code checks that the functions it was built from are still the module's, and if not is
    built again (and the decorated object then calls the new code)."""
    module = import_source(HELPERS, module_dir, "helpers")
    f = srcgrad.grad(module.loss)
    hessian = srcgrad.hessian(module.loss)
    x = np.array([1.0, 3.0])
    assert f(x)[0] == 2 * 4.0 + 1.0
    np.testing.assert_array_equal(f(x)[1].x, [2.0, 2.0])
    again = import_source("def helper(x):\n    return x * x\n\n\ndef scaled(x):\n    return "
                          "5.0 * x\n\n\ndef scaled_derive(x):\n    return 5.0\n", module_dir,
                          "helpers_again")
    module.helper = again.helper  # the cell, run again
    for _ in range(2):  # rebuilt once, then the new code runs directly
        value, grads = f(x)
        assert value == 1.0 + 9.0 + 1.0
        np.testing.assert_array_equal(grads.x, 2 * x)
    np.testing.assert_array_equal(hessian(x)[2][0][0], 2 * np.eye(2))
    assert f.function is type(f).__call__  # the object calls the rebuilt function itself
    g = srcgrad.grad(module.with_rule)
    assert g(2.0) == (12.0, (12.0,))  # 3x * x
    module.scaled, module.scaled_derive = again.scaled, again.scaled_derive
    assert g(2.0) == (20.0, (20.0,))
