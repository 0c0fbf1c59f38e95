"""Helpers for the array tests: programs from source text, inputs, and two independent oracles.

Why source text: srcgrad reads a function's source with `inspect.getsource`, so every program
must live in a real file. A test writes the program as text (a `def f(...)` using `np`); `program`
writes it to a module once per session (cached by text) and imports it twice:
  * under ``import numpy as np``: the plain function, for values and central finite differences,
    and the function srcgrad differentiates;
  * under ``import autograd.numpy as np``: the same text run by autograd, an independent
    reverse-mode implementation with its own derivative rules (or a separate reference text where
    autograd lacks a spelling).
`check` then asserts srcgrad's value, gradient structure, shapes, dtypes and numbers against both
oracles. Nothing expected is ever produced by srcgrad.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import autograd
import autograd.numpy as anp
import numpy as np
from hypothesis import strategies as st
from support import central_difference, import_source

import srcgrad

_MODULES: dict[tuple[str, str], ModuleType] = {}
_PROGRAMS: dict[tuple[str, str | None], Program] = {}

HEADERS = {"numpy": "import numpy as np\n\n", "autograd": "import autograd.numpy as np\n\n"}

# Tolerances. srcgrad and autograd evaluate the same mathematics in a different order, so in
# float64 they agree to rounding; central differences carry O(h^2) truncation and O(eps/h)
# cancellation error. float32 results are compared with the float64 reference.
AUTOGRAD_RTOL = {np.float64: 1e-9, np.float32: 2e-3}
FD_RTOL = {np.float64: 1e-5, np.float32: 2e-3}
ATOL_FRACTION = {np.float64: 1e-8, np.float32: 2e-4}  # of the gradient's largest magnitude
FD_ATOL_FRACTION = 1e-6


def load_module(source: str, directory: Path, flavour: str) -> ModuleType:
    """`source` under a numpy or autograd header, written to `directory` once and imported."""
    key = (source, flavour)
    if key not in _MODULES:
        _MODULES[key] = import_source(HEADERS[flavour] + source, directory, "srcgrad_array_case")
    return _MODULES[key]


@dataclass
class Program:
    """One test function `f` as plain NumPy, as srcgrad output, and as autograd's twin."""

    source: str
    plain: Callable[..., Any]
    reference: Callable[..., Any] | None
    params: tuple[str, ...]
    _grads: dict[tuple[str, ...] | None, Any] = field(default_factory=dict)

    def grad(self, wrt: tuple[str, ...] | None = None) -> Any:
        if wrt not in self._grads:
            self._grads[wrt] = (
                srcgrad.grad(self.plain) if wrt is None else srcgrad.grad(wrt=wrt)(self.plain)
            )
        return self._grads[wrt]


def program(
    source: str, directory: Path, reference: str | None = None, *, autograd_ok: bool = True
) -> Program:
    """The function `f` defined by `source` (see the module docstring).

    `reference` replaces the text autograd runs (same signature), for spellings autograd lacks;
    `autograd_ok=False` when autograd cannot differentiate the operation at all.
    """
    key = (source, reference if autograd_ok else "<no autograd>")
    if key not in _PROGRAMS:
        plain = load_module(source, directory, "numpy").f
        twin = None
        if autograd_ok:
            twin = load_module(reference or source, directory, "autograd").f
        params = tuple(inspect.signature(plain).parameters)
        _PROGRAMS[key] = Program(source, plain, twin, params)
    return _PROGRAMS[key]


# --- inputs --------------------------------------------------------------------------------------


def spread(rng: np.random.Generator, shape: Sequence[int], scale: float = 2.0) -> np.ndarray:
    """Distinct values in about [-scale, scale], pairwise >= step/2 apart, >= step/4 from 0.

    A shuffled grid with jitter: random-looking, yet never a tie (max/min), never at abs's kink,
    so central differences with a 1e-6 step never straddle a kink.
    """
    n = max(1, int(np.prod(shape, dtype=np.int64)))
    step = 2 * scale / n
    grid = (rng.permutation(n) - n / 2 + 0.5) * step
    jitter = rng.uniform(-step / 4, step / 4, size=n)
    return np.asarray((grid + jitter).reshape(shape))


def positive(
    rng: np.random.Generator, shape: Sequence[int], low: float = 0.5, high: float = 1.5
) -> np.ndarray:
    return np.asarray(rng.uniform(low, high, size=tuple(shape)))


def signed(
    rng: np.random.Generator, shape: Sequence[int], low: float = 0.5, high: float = 1.5
) -> np.ndarray:
    """Magnitudes in [low, high] with random signs: well away from 0."""
    return np.asarray(positive(rng, shape, low, high) * rng.choice([-1.0, 1.0], size=tuple(shape)))


def reduced_shape(shape: Sequence[int], axis: Any, keepdims: bool) -> tuple[int, ...]:
    return np.sum(np.zeros(shape), axis=axis, keepdims=keepdims).shape


# --- strategies ----------------------------------------------------------------------------------

seeds = st.integers(0, 2**32 - 1)
dtypes = st.sampled_from([np.float64, np.float32])


def shapes(
    min_ndim: int = 0, max_ndim: int = 3, min_side: int = 1, max_side: int = 4
) -> st.SearchStrategy[tuple[int, ...]]:
    return st.lists(st.integers(min_side, max_side), min_size=min_ndim, max_size=max_ndim).map(
        tuple
    )


@st.composite
def axes(draw: Any, ndim: int, *, allow_none: bool = True, max_len: int | None = None) -> Any:
    """None, an int axis (possibly negative), or a tuple of distinct axes in any order/sign."""
    kinds = ["int", "tuple"] if ndim else []
    if allow_none or not ndim:
        kinds.append("none")
    kind = draw(st.sampled_from(kinds))
    if kind == "none":
        return None
    if kind == "int":
        return draw(st.integers(-ndim, ndim - 1))
    chosen = draw(st.permutations(range(ndim)))
    size = draw(st.integers(1, min(ndim, max_len or ndim)))
    return tuple(a - ndim if draw(st.booleans()) else a for a in chosen[:size])


@st.composite
def broadcast_pair(draw: Any, max_ndim: int = 3) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Two shapes that broadcast together: size-1 dims and missing leading dims on either side."""
    result = draw(shapes(1, max_ndim, 2, 4))  # sides >= 2: every 1 below is a broadcast

    def operand() -> tuple[int, ...]:
        drop = draw(st.integers(0, len(result)))
        kept = result[drop:]
        return tuple(1 if draw(st.booleans()) else side for side in kept)

    return operand(), operand()


# --- the check -----------------------------------------------------------------------------------


def total(value: Any) -> float:
    return float(np.sum(np.asarray(value, dtype=np.float64)))


def central_differences(fn: Callable[..., Any], args: dict[str, Any], name: str) -> Any:
    """d sum(fn(**args)) / d args[name], one element at a time, in float64."""
    return central_difference(lambda shifted: total(fn(**dict(args, **{name: shifted}))),
                              args[name])


def autograd_gradient(reference: Callable[..., Any], args: dict[str, Any], name: str) -> Any:
    names = list(args)

    def summed(*values: Any) -> Any:
        return anp.sum(reference(*values))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "output seems independent of input"
        return autograd.grad(summed, names.index(name))(*args.values())


def as_float64(value: Any) -> Any:
    return cast(value, np.float64)


def cast(value: Any, dtype: Any) -> Any:
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        return value.astype(dtype)
    if isinstance(value, np.floating):
        return np.dtype(dtype).type(value)
    return value


def assert_close(actual: Any, expected: Any, rtol: float, atol_fraction: float, what: str) -> None:
    expected = np.asarray(expected, dtype=np.float64)
    scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
    np.testing.assert_allclose(
        np.asarray(actual, dtype=np.float64),
        expected,
        rtol=rtol,
        atol=atol_fraction * scale,
        err_msg=what,
    )


def check(
    prog: Program,
    args: dict[str, Any],
    wrt: tuple[str, ...] | None = None,
    *,
    dtype: Any = np.float64,
    no_reference: Iterable[str] = (),
    fd: bool = True,
    zero: Iterable[str] = (),
) -> Any:
    """srcgrad's `(value, grads)` of `prog` at `args` against the plain value, autograd, and FD.

    `args` are float64 (or integer/bool) values in parameter order; with `dtype=np.float32` the
    float arrays are rounded to float32 for srcgrad, and the references run in float64 on the
    rounded values. `no_reference`: parameters autograd is not asked about (a mask's source has
    no path to the output in autograd); `zero`: parameters whose gradient must be exactly 0.
    Returns srcgrad's grads.
    """
    assert tuple(args) == prog.params, (tuple(args), prog.params)
    dtype = np.dtype(dtype).type
    call_args = {k: cast(v, dtype) for k, v in args.items()}
    ref_args = {k: as_float64(v) for k, v in call_args.items()}
    names = wrt if wrt is not None else prog.params
    context = f"\n{prog.source}\nargs: {call_args!r}"

    value, grads = prog.grad(wrt)(*call_args.values())
    expected_value = prog.plain(*call_args.values())
    assert np.shape(value) == np.shape(expected_value), context
    assert np.result_type(value) == np.result_type(expected_value), (
        f"value dtype {np.result_type(value)} != {np.result_type(expected_value)}{context}"
    )
    assert_close(
        value, expected_value, AUTOGRAD_RTOL[dtype], ATOL_FRACTION[dtype], f"value{context}"
    )

    assert tuple(grads._fields) == tuple(names), (grads._fields, names)
    zero = set(zero)
    for name in names:
        g, arg = getattr(grads, name), call_args[name]
        where = f"d{name}{context}"
        if isinstance(arg, np.ndarray):
            assert isinstance(g, np.ndarray), f"{type(g)}: {where}"
            assert g.shape == arg.shape, f"shape {g.shape} != {arg.shape}: {where}"
            want = arg.dtype if arg.dtype.kind == "f" else np.dtype(np.float64)
            assert g.dtype == want, f"dtype {g.dtype} != {want}: {where}"
        elif isinstance(arg, np.generic):  # a NumPy scalar in, a NumPy scalar of its type out
            assert type(g) is type(arg), f"{type(g)} is not {type(arg)}: {where}"
        else:
            assert type(g) is float, f"{type(g)}: {where}"
        assert np.all(np.isfinite(g)), where
        if name in zero:
            assert np.all(np.asarray(g) == 0), f"not zero: {g!r} {where}"
        if fd:  # first: when autograd disagrees too, its message then points at autograd
            expected = central_differences(prog.plain, ref_args, name)
            fd_atol = FD_ATOL_FRACTION if dtype is np.float64 else ATOL_FRACTION[dtype]
            assert_close(
                g, expected, FD_RTOL[dtype], fd_atol, f"against central differences: {where}"
            )
        if prog.reference is not None and name not in no_reference:
            expected = autograd_gradient(prog.reference, ref_args, name)
            assert_close(
                g,
                expected,
                AUTOGRAD_RTOL[dtype],
                ATOL_FRACTION[dtype],
                f"against autograd: {where}",
            )
    return grads
