"""Every way a function can be rejected, and that each rejection says where and what to do."""

from __future__ import annotations

import functools
import inspect
import math

import numpy as np
import pytest

import srcgrad
from srcgrad import MissingDerivativeError, SourceUnavailableError, TransformError, grad
from srcgrad.functions import sin

NAME = "a string"  # a global of the wrong kind


def transform(fn, *args):
    """Decorate and call: errors may come at decoration (syntax) or first call (names)."""
    return grad(fn)(*(args or (1.0,) * len(inspect.signature(fn).parameters)))


def line_of(fn, text):
    """The file line number of the first line of ``fn`` containing ``text``."""
    lines, first = inspect.getsourcelines(fn)
    for offset, line in enumerate(lines):
        if text in line:
            return first + offset
    raise AssertionError(f"{text!r} not in {fn.__name__}")


def check_error(fn, cls, line_text, *phrases, args=()):
    """``fn`` is rejected with ``cls``, pointing at the line containing ``line_text``."""
    with pytest.raises(cls) as info:
        transform(fn, *args)
    error = info.value
    assert error.filename == __file__
    assert error.lineno == line_of(fn, line_text)
    message = str(error)
    assert f'File "{__file__}", line {error.lineno}' in message
    assert line_text in message  # the offending line is quoted
    assert "^" in message  # with a caret under the construct
    for phrase in phrases:
        assert phrase in message, f"{phrase!r} not in:\n{message}"
    return error


def uses_with(a):
    with open(__file__):
        b = a
    return b


def uses_try(a):
    try:
        b = a
    except ValueError:
        b = 0
    return b


def uses_yield(a):
    yield a


def uses_global(a):
    global NAME
    return a


def uses_del(a):
    b = a
    del b
    return a


def uses_if(a):
    if a > 0:
        return -a
    return a


def uses_for(a):
    for scale in sorted((1.0, 2.0)):
        a = a * scale
    return a


def branches_in_loop(a):
    for _ in range(3):
        while a > 1:
            a = a / 2
            return a
    return a


def uses_floordiv(a):
    return a // 2


def returns_tuple(a):
    return a, a


def chained_compare(a):
    return a * (0 < a < 1)


def unknown_method(a):
    return a.cumsum()


def return_not_last(a):
    return a
    b = a  # noqa: F841 - unreachable on purpose


def no_return(a):
    b = a  # noqa: F841


def star_args(*a):
    return a


def unpack_other(a):
    b, c = a
    return b


def keyword_to_primitive(a):
    return np.power(a, 2, dtype=np.float64)


def undefined_name(a):
    return a * NOT_DEFINED_ANYWHERE  # noqa: F821


def string_global(a):
    return a * NAME


def unknown_keyword(a):
    return np.sum(a, axs=0)


def string_constant(a):
    return a * "x"


_namespace: dict = {}
exec("def opaque(x):\n    return x + 1\n", _namespace)  # no source: srcgrad cannot look inside
opaque = _namespace["opaque"]


def calls_without_derivative(a):
    b = 2 * a
    return opaque(b)


@grad
def inner(a):
    return a * a


def calls_decorated(a):
    return inner(a)


@pytest.mark.parametrize(
    ("fn", "line_text", "phrases"),
    [
        (uses_with, "with open", ["`with` statement", "Move the `with` block"]),
        (uses_try, "try:", ["`try` statement"]),
        (uses_global, "global NAME", ["`global` declaration"]),
        (uses_del, "del b", ["`del` statement"]),
        (uses_if, "return -a", ["`return` inside an `if`", "assign the result to a name"]),
        (uses_for, "for scale in", ["loops over `range(...)`", "`enumerate(xs)`"]),
        (branches_in_loop, "return a", ["`return` inside a loop", "`break`"]),
        (uses_floordiv, "a // 2", ["operator `//`"]),
        (returns_tuple, "return a, a", ["Return one number or array"]),
        (return_not_last, "return a", ["must be the last statement"]),
        (no_return, "def no_return", ["must end with `return"]),
        (star_args, "def star_args", ["`*a`"]),
    ],
)
def test_unsupported_syntax_is_reported_at_decoration(fn, line_text, phrases):
    with pytest.raises(TransformError) as info:
        grad(fn)  # no call needed: checked when decorated
    assert info.value.lineno == line_of(fn, line_text)
    check_error(fn, TransformError, line_text, *phrases)


def test_yield_is_reported():
    check_error(uses_yield, TransformError, "yield a", "`yield`", "generators")


@pytest.mark.parametrize(
    ("fn", "line_text", "phrases"),
    [
        (keyword_to_primitive, "dtype=np.float64", ["Keyword arguments to `np.power`"]),
        (undefined_name, "NOT_DEFINED_ANYWHERE", ["`NOT_DEFINED_ANYWHERE` is not defined"]),
        (string_global, "a * NAME", ["`NAME` is a str"]),
        (string_constant, '"x"', ["not a real number"]),
        (unpack_other, "b, c = a", ["Tuple unpacking works on tuple/list parameters"]),
        (chained_compare, "0 < a < 1", ["Chained comparisons", "nest them"]),
        (unknown_method, "a.cumsum()", ["attribute `.cumsum`", "reshape"]),
        (unknown_keyword, "axs=0", ["does not take the keyword `axs`"]),
        (calls_decorated, "inner(a)", ["returns a tuple", "value, (d_x,) = f(x)"]),
    ],
)
def test_name_and_call_errors_are_reported_at_first_call(fn, line_text, phrases):
    check_error(fn, TransformError, line_text, *phrases)


def test_missing_derivative_names_the_function_and_both_fixes():
    error = check_error(
        calls_without_derivative,
        MissingDerivativeError,
        "opaque(b)",
        "`opaque` cannot be differentiated",
        "keeps no source",
        "opaque_derive",
        "srcgrad.register(opaque",
    )
    assert isinstance(error, TransformError)
    assert error.col is not None


def test_source_unavailable_for_exec_defined_function():
    namespace: dict = {}
    exec("def made(a):\n    return a * 2\n", namespace)
    with pytest.raises(SourceUnavailableError) as info:
        grad(namespace["made"])
    message = str(info.value)
    assert "cannot read the source of 'made'" in message
    assert "made_derive" in message and "srcgrad.register" in message


def test_source_unavailable_for_builtin():
    with pytest.raises(SourceUnavailableError, match="not a Python function") as info:
        grad(math.gcd)
    assert "gcd_derive" in str(info.value)
    # A function srcgrad knows: say how to differentiate it, not how to register it.
    for known in (math.sin, np.sin):
        with pytest.raises(TypeError, match=r"knows the derivative of sin already.*return sin"):
            grad(known)


def _times(x, a):
    return x * a


def test_what_grad_cannot_read_is_a_clear_type_error():
    with pytest.raises(TypeError, match=r"not a functools\.partial"):
        grad(functools.partial(_times, a=3.0))
    with pytest.raises(TypeError, match="defined with `def`; got int 3"):
        grad(3)
    with pytest.raises(TypeError, match="put @grad below @staticmethod"):
        grad(staticmethod(_times))
    with pytest.raises(TypeError, match=r"wrt=0: name the param.*\(parameters of _times: x, a\)"):
        grad(_times, wrt=0)
    with pytest.raises(TypeError, match=r"returns \(value, grads\), not a number.*hessian"):
        grad(grad(_times))
    assert srcgrad.hessian(grad(_times))(2.0, 3.0)[2][0][1] == 1.0  # d2(xa)/dx da, from f


def _is_none(x, y):
    return x * (y is None)


def _member(x):
    return x * (x in (1.0, 2.0))


@pytest.mark.parametrize("fn, op", [(_is_none, "is"), (_member, "in")])
def test_is_and_in_are_named_in_their_error(fn, op):
    with pytest.raises(TransformError, match=f"`{op}` does not compare numbers"):
        grad(fn)(1.5, 2.0) if fn is _is_none else grad(fn)(1.5)


def test_check_grad_rejects_what_it_cannot_use():
    with pytest.raises(TypeError, match="takes the function to check first"):
        srcgrad.check_grad(None, 1.0)
    for bad in ({"step": 0}, {"rtol": -1}, {"atol": -0.5}):
        with pytest.raises(ValueError, match="step must be positive"):
            srcgrad.check_grad(_times, 1.0, 2.0, **bad)


def test_wrong_arity_for_a_primitive():
    def too_many(a):
        return sin(a, a)

    check_error(too_many, TransformError, "sin(a, a)", "takes 1 argument(s)")


def test_errors_are_not_raw_internal_exceptions():
    # A selection of broken inputs: every one must surface as TransformError, never KeyError etc.
    for fn in (uses_with, calls_without_derivative, undefined_name, unknown_method):
        with pytest.raises(TransformError):
            transform(fn)


def test_register_rejects_non_callables():
    with pytest.raises(TypeError, match="not callable"):
        srcgrad.register(3, lambda x: x)
    with pytest.raises(TypeError, match="must be callable"):
        srcgrad.register(opaque, 3)
