"""`check_grad`: srcgrad's gradients against central finite differences, entry by entry.

The numeric side perturbs each element of each differentiated parameter by ``±h`` in float64
and evaluates the *original* function (the sum of its outputs), so it shares nothing with the
code being checked. A failure raises `GradientMismatch` with a table of the worst entries, and
``report="path.csv"`` writes every compared entry so a failure can be inspected or plotted.
"""

from __future__ import annotations

import csv
import functools
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .transform import GradFunction, grad


@dataclass(frozen=True)
class Entry:
    """One compared gradient element."""

    parameter: str  # e.g. "mu", or "params[0]" for an element of a structured parameter
    index: tuple[int, ...]
    srcgrad: float
    numeric: float

    @property
    def abs_error(self) -> float:
        return abs(self.srcgrad - self.numeric)

    @property
    def rel_error(self) -> float:
        scale = max(abs(self.srcgrad), abs(self.numeric))
        return self.abs_error / scale if scale else 0.0


@dataclass
class GradientReport:
    """Every compared entry, and whether all were within ``atol + rtol * |numeric|``."""

    entries: list[Entry]
    rtol: float
    atol: float
    failures: list[Entry] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def max_abs_error(self) -> float:
        return max((e.abs_error for e in self.entries), default=0.0)

    @property
    def max_rel_error(self) -> float:
        return max((e.rel_error for e in self.entries), default=0.0)

    def table(self, limit: int = 10) -> str:
        """The worst entries (failures first, by absolute error) as a text table."""
        worst = sorted(self.entries, key=lambda e: (e not in self.failures, -e.abs_error))
        lines = [f"{'parameter':<16} {'index':<12} {'srcgrad':>14} {'numeric':>14} "
                 f"{'abs err':>10} {'rel err':>10}"]
        for e in worst[:limit]:
            mark = "  <-- mismatch" if e in self.failures else ""
            lines.append(f"{e.parameter:<16} {e.index!s:<12} {e.srcgrad:>14.7g} "
                         f"{e.numeric:>14.7g} {e.abs_error:>10.3g} {e.rel_error:>10.3g}{mark}")
        return "\n".join(lines)

    def write_csv(self, path: str) -> None:
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["parameter", "index", "srcgrad", "numeric", "abs_error",
                             "rel_error", "ok"])
            for e in self.entries:
                writer.writerow([e.parameter, " ".join(map(str, e.index)), repr(e.srcgrad),
                                 repr(e.numeric), repr(e.abs_error), repr(e.rel_error),
                                 e not in self.failures])

    def __str__(self) -> str:
        verdict = "passed" if self.passed else f"{len(self.failures)} mismatches"
        return (f"check_grad: {len(self.entries)} entries, {verdict} (rtol={self.rtol}, "
                f"atol={self.atol}; max abs error {self.max_abs_error:.3g})\n{self.table()}")


class GradientMismatch(AssertionError):
    """srcgrad's gradient and the finite-difference estimate disagree."""

    def __init__(self, report: GradientReport) -> None:
        self.report = report
        super().__init__(str(report))


def check_grad(f: Callable[..., Any], *args: Any, rtol: float = 1e-5, atol: float = 1e-7,
               step: float = 1e-6, wrt: Any = None, report: str | None = None,
               **kwargs: Any) -> GradientReport:
    """Compare ``f``'s srcgrad gradients at ``args`` with central finite differences.

    ``f`` is a plain function or one decorated with `grad`; or a `hessian` function, whose
    blocks are compared with central differences of srcgrad's gradient. Each element ``x`` of each
    differentiated parameter is perturbed by ``h = step * max(1, |x|)``. Raises
    `GradientMismatch` when any entry differs by more than ``atol + rtol * |numeric|``;
    returns the `GradientReport` otherwise. ``report`` names a CSV file for every entry.
    """
    from .modes import HessianFunction  # modes builds on this module's neighbours

    if not callable(f):
        raise TypeError(f"check_grad() takes the function to check first; got {f!r:.40}.")
    if not step > 0 or not rtol >= 0 or not atol >= 0:
        raise ValueError(f"check_grad(): step must be positive and rtol, atol not negative "
                         f"(got step={step}, rtol={rtol}, atol={atol}).")
    if isinstance(f, HessianFunction):
        entries = _hessian_entries(f, args, kwargs, step)
    else:
        asked = None if wrt is None else ((wrt,) if isinstance(wrt, str) else tuple(wrt))
        # A decorated f is checked as it is, unless `wrt` asks for other parameters.
        reuse = isinstance(f, GradFunction) and f._mode == "grad" and asked in (None, f.wrt)
        decorated = f if reuse else grad(
            getattr(f, "__wrapped__", f), wrt=wrt if wrt is not None else getattr(f, "wrt", None))
        plain = decorated.__wrapped__
        _, grads = decorated(*args, **kwargs)
        bound = inspect.signature(plain).bind(*args, **kwargs)
        bound.apply_defaults()
        entries = []
        for name in decorated.wrt:
            gradient = grads if decorated.bare else getattr(grads, name)
            for label, path, analytic in _leaves(name, bound.arguments[name], gradient):
                analytic = np.asarray(analytic, dtype=np.float64)
                for index in np.ndindex(analytic.shape):
                    numeric = _central_difference(_summed(plain), bound, name, path, index, step)
                    entries.append(Entry(label, index, float(analytic[index]), float(numeric)))
    result = GradientReport(entries, rtol, atol)
    result.failures = [e for e in entries if not e.abs_error <= atol + rtol * abs(e.numeric)]
    if report is not None:
        result.write_csv(report)
    if result.failures:
        raise GradientMismatch(result)
    return result


def _hessian_entries(f: Any, args: tuple, kwargs: dict, step: float) -> list[Entry]:
    """Hessian blocks against central differences of srcgrad's own gradient (the lower order,
    itself checkable against differences of the function). A tuple, list or dict parameter
    is checked block by block, one per pair of leaves (see docs/modes.md)."""
    _, _, blocks = f(*args, **kwargs)
    gradient = grad(f.__wrapped__, wrt=f.wrt)
    bound = inspect.signature(f.__wrapped__).bind(*args, **kwargs)
    bound.apply_defaults()
    entries = []
    for i, name in enumerate(f.wrt):
        for j, other in enumerate(f.wrt):
            for label, path, row in _leaves(name, bound.arguments[name], blocks[i][j]):
                shape = np.shape(_get(bound.arguments[name], path))
                for other_label, other_path, block in _leaves(other, bound.arguments[other],
                                                              row):
                    analytic = np.asarray(block, dtype=np.float64)
                    for index in np.ndindex(shape):
                        numeric = np.asarray(_central_difference(
                            functools.partial(_gradient_entry, gradient, j, other_path), bound,
                            name, path, index, step))
                        for inner in np.ndindex(numeric.shape):
                            entries.append(Entry(f"H[{label}][{other_label}]", index + inner,
                                                 float(analytic[index + inner]),
                                                 float(numeric[inner])))
    return entries


def _gradient_entry(gradient: Callable[..., Any], j: int, path: tuple, **arguments: Any
                    ) -> Any:
    return np.asarray(_get(gradient(**arguments)[1][j], path), dtype=np.float64)


def _summed(plain: Callable[..., Any]) -> Callable[..., float]:
    """The function whose gradient srcgrad gives: the sum of ``plain``'s outputs."""
    return lambda **arguments: float(np.sum(plain(**arguments)))


def _leaves(name: str, value: Any, gradient: Any, path: tuple = ()
            ) -> Iterator[tuple[str, tuple, Any]]:
    """(label, path into the argument, gradient) for every leaf of a possibly nested value."""
    if isinstance(value, dict):
        for key in value:
            yield from _leaves(name, value[key], gradient[key], (*path, key))
    elif isinstance(value, (tuple, list)) and isinstance(gradient, (tuple, list)):
        for i, (item, g) in enumerate(zip(value, gradient, strict=True)):
            yield from _leaves(name, item, g, (*path, i))
    else:
        label = name + "".join(f"[{key!r}]" for key in path)
        yield label, path, gradient


def _central_difference(function: Callable[..., Any], bound: inspect.BoundArguments, name: str,
                        path: tuple, index: tuple[int, ...], step: float) -> Any:
    """d function / d (element ``index`` of the argument ``name``, at ``path`` inside it)."""
    original = np.array(_get(bound.arguments[name], path), dtype=np.float64)
    h = step * max(1.0, abs(float(original[index])))

    def evaluate(delta: float) -> Any:
        leaf = original.copy()
        leaf[index] += delta * h
        arguments = dict(bound.arguments)
        arguments[name] = _replace(arguments[name], path, leaf if leaf.ndim else float(leaf))
        return function(**arguments)

    return (evaluate(1.0) - evaluate(-1.0)) / (2.0 * h)


def _get(value: Any, path: tuple) -> Any:
    for key in path:
        value = value[key]
    return value


def _replace(value: Any, path: tuple, leaf: Any) -> Any:
    """``value`` with the element at ``path`` replaced by ``leaf`` (containers rebuilt)."""
    if not path:
        return leaf
    key, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {k: _replace(v, rest, leaf) if k == key else v for k, v in value.items()}
    items = [_replace(v, rest, leaf) if i == key else v for i, v in enumerate(value)]
    return type(value)(items) if isinstance(value, list) else tuple(items)
