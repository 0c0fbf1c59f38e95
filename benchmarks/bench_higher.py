"""Second-derivative benchmark of srcgrad: `hessian` and `hvp` next to their alternatives.

Usage::

    python benchmarks/bench_higher.py            # full run (about 20 s)
    python benchmarks/bench_higher.py --quick    # smoke run (< 10 s), fewer samples
    python benchmarks/bench_higher.py --json     # machine-readable results on stdout

Two workloads, each a module-level function below (srcgrad reads them with inspect.getsource):

1. Hessian of `ten_params`, a scalar function of 10 Python floats (sin, exp, cos, tanh,
   products, a quotient): srcgrad `hessian` (one generated function computing the value, the
   gradient and all 100 entries) against what one writes without second derivatives, central
   differences of srcgrad's gradient (20 gradient calls), and against autograd.hessian (reverse
   over reverse, on the same source run with autograd's NumPy).
2. Hessian-vector product of `robust_loss`, ``sum(log(1 + (A @ w - b)**2))`` in 1,000
   parameters (A is 500 x 1000): srcgrad `hvp` (forward over reverse) against the difference of
   two srcgrad gradients along v, against autograd's hessian_vector_product, and against one
   srcgrad gradient call: that last ratio is what an HVP costs, in gradients.

Every result is checked before anything is timed: srcgrad against the differences with rtol 1e-5
and against autograd with rtol 1e-9, each with an absolute floor of rtol times the largest entry
(entries that cancel to about zero are not failed on summation order). A disagreement is printed
loudly, recorded in ``checks`` (``--json``), and the run carries on.

Timings are ratios measured in one process, in one run: `timeit`, warm-up excluded, the sides'
samples interleaved repeat by repeat, and the **minimum** over the repeats is reported (noise
only adds time); the ratio of medians is printed too and kept in the JSON. BLAS runs on one
thread (set below, before NumPy loads it). This is a script, not a test: it never asserts.
"""

from __future__ import annotations

import os
import sys

# One BLAS thread, before NumPy loads BLAS (a value already in the environment is kept): the
# HVP workload is matrix-vector products, which would otherwise measure the core count.
BLAS_THREADS = {name: os.environ.setdefault(name, "1")
                for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
BLAS_SETTING_TOO_LATE = "numpy" in sys.modules

import argparse  # noqa: E402 - after the BLAS thread setting
import datetime  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

import srcgrad  # noqa: E402

try:  # run as `python -m benchmarks.bench_higher` from the repository root
    from benchmarks.bench_arrays import time_rows
    from benchmarks.bench_core import Row, _log, machine, markdown_table
except ImportError:  # run as `python benchmarks/bench_higher.py`: benchmarks/ is on sys.path
    from bench_arrays import time_rows
    from bench_core import Row, _log, machine, markdown_table

try:
    import autograd
    import autograd.numpy as anp
except ImportError:  # a peer, not a dependency: its rows say "skipped"
    autograd = anp = None

FD_RTOL = 1e-5  # srcgrad against central differences of its own gradient
AUTOGRAD_RTOL = 1e-9  # two exact methods
FD_STEP = 1e-5  # relative to max(1, |x|): central differences of a gradient, error O(h^2)
HVP_PARAMS, HVP_ROWS = 1000, 500
TEN_AT = (0.3, -0.7, 0.5, 1.1, -0.2, 0.8, -1.3, 0.4, 0.9, -0.6)


# -- the workloads as srcgrad reads them (no docstrings: srcgrad differentiates what it reads) ---

def ten_params(x0, x1, x2, x3, x4, x5, x6, x7, x8, x9):
    a = np.sin(x0 * x1) + np.exp(0.3 * x2 * x3)
    b = x4 * x5 * x6 + np.cos(x7 - x8) * x9
    c = np.tanh(x3 + x5) * x8 + x0 ** 2 * x9 + x1 * x6 / (1 + x4 ** 2)
    return a + b * c


def robust_loss(w, A, b):
    r = A @ w - b
    return np.sum(np.log(1 + r ** 2))


def with_numpy(fn: Callable[..., Any], module: Any) -> Callable[..., Any]:
    """``fn``'s very code with ``np`` bound to ``module`` (autograd's NumPy): the oracle runs
    the same formula as srcgrad, differentiated by autograd's own rules."""
    return types.FunctionType(fn.__code__, {"np": module}, fn.__name__)


# -- the alternatives ------------------------------------------------------------------------------

def fd_hessian(gradient: Callable[..., Any], x: tuple[float, ...]) -> np.ndarray:
    """Central differences of the gradient, one parameter at a time: 2 * len(x) gradient
    calls. Row i is d grad / d x_i."""
    rows = []
    for i, xi in enumerate(x):
        h = FD_STEP * max(1.0, abs(xi))
        up, down = list(x), list(x)
        up[i] += h
        down[i] -= h
        rows.append((np.array(gradient(*up)[1]) - np.array(gradient(*down)[1])) / (2 * h))
    return np.array(rows)


def fd_hvp(gradient: Callable[..., Any], w: np.ndarray, A: np.ndarray, b: np.ndarray,
           v: np.ndarray) -> np.ndarray:
    """H v as the central difference of the gradient along v: two gradient calls."""
    h = FD_STEP * max(1.0, float(np.max(np.abs(w)))) / float(np.max(np.abs(v)))
    return (gradient(w + h * v, A, b)[1] - gradient(w - h * v, A, b)[1]) / (2 * h)


def hvp_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """w, A, b, v for the HVP workload, from a fixed seed (residuals of order 1)."""
    rng = np.random.default_rng(7)
    A = rng.normal(size=(HVP_ROWS, HVP_PARAMS)) / np.sqrt(HVP_PARAMS)
    w = rng.normal(size=HVP_PARAMS)
    b = A @ w + rng.normal(size=HVP_ROWS)
    return w, A, b, rng.normal(size=HVP_PARAMS)


# -- measuring -------------------------------------------------------------------------------------

@dataclass
class Settings:
    """How many samples to take; ``--quick`` trades precision for a run of a few seconds."""

    repeats: int  # interleaved timeit repeats per side (the names `time_rows` reads)
    repeat_seconds: float  # wall time of one timeit repeat (sets its loop count)

    @classmethod
    def full(cls) -> Settings:
        return cls(repeats=60, repeat_seconds=0.02)

    @classmethod
    def quick(cls) -> Settings:
        return cls(repeats=7, repeat_seconds=0.01)


def check(workload: str, against: str, got: Any, expected: Any, rtol: float) -> dict[str, Any]:
    """One agreement check: ``got`` within rtol of ``expected``, with an absolute floor of rtol
    times the largest expected entry. Loud on stderr when it fails."""
    got, expected = np.asarray(got, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    scale = max(float(np.max(np.abs(expected))), 1e-300)
    same_shape = got.shape == expected.shape
    error = float(np.max(np.abs(got - expected)) / scale) if same_shape else float("inf")
    passed = same_shape and bool(np.allclose(got, expected, rtol=rtol, atol=rtol * scale))
    if not passed:
        banner = "!" * 78
        _log(f"{banner}\nMISMATCH {workload}: srcgrad vs {against} (rtol {rtol:g}): shapes "
             f"{got.shape} / {expected.shape}, max error / max entry {error:.3g}\n{banner}")
    return {"workload": workload, "against": against, "rtol": rtol, "passed": passed,
            "max_error_over_max_entry": error}


def skipped_row(label: str) -> Row:
    return Row(label, "—", "—", None, "skipped: autograd is not installed", None)


def bench_hessian(settings: Settings) -> tuple[list[Row], list[dict[str, Any]], dict[str, Any]]:
    """Hessian of ten_params: srcgrad vs 20 gradient calls, one gradient, autograd, and the
    generated function called directly (what `hessian`'s per-call dispatch costs)."""
    hessian = srcgrad.hessian(ten_params)
    gradient = srcgrad.grad(ten_params)
    x = TEN_AT
    _, _, blocks = hessian(*x)  # builds the transforms: excluded from the timings
    gradient(*x)
    ours = np.array(blocks)
    checks = [check("hessian", "central differences of srcgrad's gradient", ours,
                    fd_hessian(gradient, x), FD_RTOL)]
    namespace = {"hessian": hessian, "gradient": gradient, "fd_hessian": fd_hessian, "x": x,
                 "direct": hessian.function}
    baselines = [
        ("fd", "fd_hessian(gradient, x)",
         "Hessian, 10 floats: srcgrad `hessian` vs central differences (20 gradient calls)", None),
        ("grad", "gradient(*x)",
         "Hessian as above vs one srcgrad gradient call (the Hessian's cost in gradients)", None),
        ("direct", "direct(*x)",
         "`hessian(*x)` vs its generated function `hessian.function(*x)` (dispatch cost)", None),
    ]
    label = "Hessian as above vs autograd.hessian (reverse over reverse)"
    if autograd is not None:
        namespace["autograd_hessian"] = autograd.hessian(
            lambda v: with_numpy(ten_params, anp)(*v))
        namespace["xv"] = np.array(x)
        checks.append(check("hessian", "autograd.hessian", ours,
                            namespace["autograd_hessian"](namespace["xv"]), AUTOGRAD_RTOL))
        baselines.append(("autograd", "autograd_hessian(xv)", label, None))
    rows, detail = time_rows("hessian(*x)", baselines, namespace, settings)
    if autograd is None:
        rows.append(skipped_row(label))
    detail["n_params"] = len(x)
    return rows, checks, detail


def bench_hvp(settings: Settings) -> tuple[list[Row], list[dict[str, Any]], dict[str, Any]]:
    """HVP of robust_loss in 1,000 parameters: srcgrad vs two gradients, one gradient,
    autograd, and the generated function called directly."""
    hvp = srcgrad.hvp(robust_loss, wrt="w")
    gradient = srcgrad.grad(robust_loss, wrt="w")
    w, A, b, v = hvp_data()
    _, grads, product = hvp((w, A, b), (v,))  # builds the transforms: not timed
    checks = [
        check("hvp", "srcgrad's gradient (the hvp's own gradient output)", grads.w,
              gradient(w, A, b)[1], AUTOGRAD_RTOL),
        check("hvp", "central differences of srcgrad's gradient along v", product.w,
              fd_hvp(gradient, w, A, b, v), FD_RTOL),
    ]
    namespace = {"hvp": hvp, "gradient": gradient, "fd_hvp": fd_hvp, "w": w, "A": A, "b": b,
                 "v": v, "args": (w, A, b), "direction": (v,), "direct": hvp.function,
                 "direction_by_name": {hvp.direction_names[0]: v}}
    baselines = [
        ("fd", "fd_hvp(gradient, w, A, b, v)",
         "HVP, 1,000 params: srcgrad `hvp` vs central difference (2 gradient calls)", None),
        ("grad", "gradient(w, A, b)",
         "HVP as above vs one srcgrad gradient call (the HVP's cost in gradients)", None),
        ("direct", "direct(w, A, b, **direction_by_name)",
         "`hvp(args, v)` vs its generated function `hvp.function` (dispatch cost)", None),
    ]
    label = "HVP as above vs autograd hessian_vector_product (reverse over reverse)"
    if autograd is not None:
        namespace["autograd_hvp"] = autograd.hessian_vector_product(
            with_numpy(robust_loss, anp))
        checks.append(check("hvp", "autograd.hessian_vector_product", product.w,
                            namespace["autograd_hvp"](w, A, b, v), AUTOGRAD_RTOL))
        baselines.append(("autograd", "autograd_hvp(w, A, b, v)", label, None))
    rows, detail = time_rows("hvp(args, direction)", baselines, namespace, settings)
    if autograd is None:
        rows.append(skipped_row(label))
    detail.update(n_params=HVP_PARAMS, rows_of_A=HVP_ROWS)
    return rows, checks, detail


# -- report ----------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run (< 10 s)")
    parser.add_argument("--json", action="store_true", help="print results as JSON on stdout")
    args = parser.parse_args(argv)
    settings = Settings.quick() if args.quick else Settings.full()

    started = datetime.datetime.now(datetime.timezone.utc)
    clock = time.perf_counter()
    info = machine()
    info["blas_threads_env"] = dict(BLAS_THREADS)
    if BLAS_SETTING_TOO_LATE:
        info["blas_threads_env"]["note"] = "NumPy was loaded before the script: not applied"
    info["autograd"] = None if autograd is None else getattr(autograd, "__version__", "installed")
    rows: list[Row] = []
    checks: list[dict[str, Any]] = []
    details: dict[str, Any] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # autograd's "output seems independent of input"
        for name, bench in (("hessian", bench_hessian), ("hvp", bench_hvp)):
            _log(f"running {name} ...")
            bench_rows, bench_checks, details[name] = bench(settings)
            rows.extend(bench_rows)
            checks.extend(bench_checks)
    elapsed = time.perf_counter() - clock
    failed = [f"{c['workload']} vs {c['against']}" for c in checks if not c["passed"]]

    if args.json:
        print(json.dumps({"date": started.isoformat(timespec="seconds"),
                          "mode": "quick" if args.quick else "full", "seconds": elapsed,
                          "machine": info, "settings": asdict(settings),
                          "rows": [asdict(row) for row in rows], "checks": checks,
                          "checks_failed": failed, "details": details}, indent=2))
        return 0
    print(f"srcgrad second-derivative benchmark ({'quick' if args.quick else 'full'} run, "
          f"{started:%Y-%m-%d %H:%M} UTC, {elapsed:.0f} s)\n")
    print(markdown_table(rows))
    medians = "; ".join(f"{workload} vs {key} {ratio:.2f}×" for workload, detail in details.items()
                        for key, ratio in detail["median_ratio"].items())
    print(f"\nTimes: min of {settings.repeats} interleaved timeit repeats, warm-up excluded. "
          f"Ratios of medians: {medians}.")
    if failed:
        print("\n" + "!" * 78 + "\nWARNING: results DISAGREE: " + "; ".join(failed)
              + " (details on stderr)\n" + "!" * 78)
    else:
        print(f"All {len(checks)} agreement checks passed (rtol {FD_RTOL:g} against central "
              f"differences, {AUTOGRAD_RTOL:g} against autograd and srcgrad's own gradient).")
    print("\nMachine: " + ", ".join(f"{key} {value}" for key, value in info.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
