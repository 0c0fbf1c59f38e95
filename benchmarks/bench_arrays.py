"""Array benchmark of srcgrad: gradients of array programs next to hand-written NumPy.

Usage::

    python benchmarks/bench_arrays.py            # full run (about 15 s)
    python benchmarks/bench_arrays.py --quick    # smoke run (< 10 s), fewer samples
    python benchmarks/bench_arrays.py --json     # machine-readable results on stdout

Two workloads, each a module-level function below (srcgrad reads them with inspect.getsource),
each compared with the value-and-gradient code a competent person writes by hand:

1. Gaussian curve fit: ``sum((s * exp(-(x - mu)**2 / sigma**2) - y)**2)`` over 100,000
   samples, gradient in the three Python-float parameters ``mu``, ``sigma``, ``s``. The
   hand-written baseline computes ``x - mu`` and the exponential once, works in place and
   reduces with dot products. Target: <= 1.2x. For information: a plainer NumPy version (no
   in-place updates, ``np.sum`` of products), and the same pair timed in a fresh process whose
   allocator was not warmed (see `warm_allocator`), where temporaries cost page faults.
2. MLP: a 2-16-16-1 tanh network, mean squared error on a batch of 100, gradient in ``params``
   (a tuple of 6 arrays). Baseline: textbook NumPy backprop (``h.T @ g``, in-place ``*=``).
   Target: <= 1.5x. The same network with a hinge loss (``np.maximum``) is reported for
   information.
3. Peak memory of one value-and-gradient call of each workload, against the hand-written one.
   Target: <= 1.5x.

Both sides are checked to agree first (``np.allclose(rtol=1e-9, atol=0)`` on the value and
every gradient); a disagreement is printed loudly and recorded, and the run carries on.

Timings are ratios measured in one process, in one run: `timeit`, warm-up excluded, srcgrad and
baseline samples interleaved repeat by repeat, and the **minimum** over the repeats is reported
(noise only adds time; the median ratio is printed too and kept in the JSON). Peak memory is
`tracemalloc`'s peak during one call, minus what was traced just before it: the call's
temporaries and its results, not its inputs. NumPy reports its array buffers to tracemalloc, so
that figure covers array data as well as Python objects (checked at start-up). It is the median
over a few calls, after warm-up. BLAS is limited to one thread (see below). This is a script,
not a test: it never asserts.
"""

from __future__ import annotations

import os
import sys

# One BLAS thread, set before NumPy loads BLAS (a value already in the environment is kept).
# The hand-written baselines reduce with `@` (BLAS ddot/dgemm); with a thread per core they
# would measure the machine's core count rather than the code, and BLAS threads spinning
# against other load make their timings erratic. srcgrad's generated code does not thread.
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
for _variable in BLAS_THREAD_VARIABLES:
    os.environ.setdefault(_variable, "1")
BLAS_SETTING_TOO_LATE = "numpy" in sys.modules  # imported from a process that had NumPy loaded

import argparse  # noqa: E402 - after the BLAS thread setting
import datetime  # noqa: E402
import gc  # noqa: E402
import hashlib  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from srcgrad import grad  # noqa: E402

try:  # run as `python -m benchmarks.bench_arrays` from the repository root
    from benchmarks.bench_core import (
        Row,
        _fmt_time,
        _log,
        interleaved_timings,
        machine,
        markdown_table,
    )
except ImportError:  # run as `python benchmarks/bench_arrays.py`: benchmarks/ is on sys.path
    from bench_core import Row, _fmt_time, _log, interleaved_timings, machine, markdown_table

FIT_TARGET = 1.2  # max time ratio, curve-fit value+gradient vs hand-written NumPy
MLP_TARGET = 1.5  # max time ratio, MLP value+gradient vs hand-written backprop
MEMORY_TARGET = 1.5  # max peak-memory ratio, either workload
FIT_SAMPLES = 100_000  # the row label says 1e5
MLP_BATCH = 100
MLP_SIZES = (2, 16, 16, 1)
FIT_AT = (0.2, 0.9, 1.3)  # mu, sigma, s where the gradient is taken (the data use 0.3, 0.8, 1.5)
RTOL = 1e-9


# -- the workloads as srcgrad sees them (no docstrings: srcgrad differentiates what it reads) ---

@grad(wrt=("mu", "sigma", "s"))
def fit_loss(mu, sigma, s, x, y):
    return np.sum((s * np.exp(-(x - mu) ** 2 / sigma ** 2) - y) ** 2)


@grad(wrt=("params",))
def mlp_loss(params, X, y):
    W1, b1, W2, b2, W3, b3 = params
    h1 = np.tanh(X @ W1 + b1)
    h2 = np.tanh(h1 @ W2 + b2)
    out = h2 @ W3 + b3
    return np.mean((out[:, 0] - y) ** 2)


@grad(wrt=("params",))
def mlp_hinge_loss(params, X, y):
    W1, b1, W2, b2, W3, b3 = params
    h1 = np.tanh(X @ W1 + b1)
    h2 = np.tanh(h1 @ W2 + b2)
    out = h2 @ W3 + b3
    return np.mean(np.maximum(0, 1 - y * out[:, 0]))


# -- the same by hand ------------------------------------------------------------------------------

def fit_loss_numpy(mu, sigma, s, x, y):
    """Value and gradient of the curve-fit loss, written for speed: three full-size arrays.

    With d = x - mu, e = exp(-d²/σ²), r = s·e - y and L = Σ r²:
    dL/ds = 2 Σ r·e, dL/dμ = (4s/σ²) Σ r·e·d, dL/dσ = (4s/σ³) Σ r·e·d².
    """
    d = x - mu
    inv_var = 1.0 / (sigma * sigma)
    e = d * d
    e *= -inv_var
    np.exp(e, out=e)
    r = s * e
    r -= y
    value = r @ r
    r *= e  # r·e from here on
    d_s = 2.0 * np.sum(r)
    r *= d  # r·e·d
    c = 4.0 * s * inv_var
    return value, (c * np.sum(r), c / sigma * (r @ d), d_s)


def fit_loss_plain_numpy(mu, sigma, s, x, y):
    """The same, written the obvious way: one expression per quantity, no in-place updates."""
    d = x - mu
    e = np.exp(-d ** 2 / sigma ** 2)
    r = s * e - y
    value = np.sum(r ** 2)
    g = 2 * r * s * e
    return value, (np.sum(g * 2 * d / sigma ** 2), np.sum(g * 2 * d ** 2 / sigma ** 3),
                   np.sum(2 * r * e))


def _backprop(W2, W3, X, h1, h2, g_out):
    """Gradients of the 2-16-16-1 tanh network from the adjoint ``g_out`` (batch, 1) of its
    output, reusing the forward activations."""
    d_W3 = h2.T @ g_out
    d_b3 = g_out.sum(axis=0)
    g2 = g_out @ W3.T
    g2 *= 1.0 - h2 * h2
    d_W2 = h1.T @ g2
    d_b2 = g2.sum(axis=0)
    g1 = g2 @ W2.T
    g1 *= 1.0 - h1 * h1
    d_W1 = X.T @ g1
    d_b1 = g1.sum(axis=0)
    return d_W1, d_b1, d_W2, d_b2, d_W3, d_b3


def mlp_loss_numpy(params, X, y):
    """Mean squared error of the network and its gradient, by textbook backprop."""
    W1, b1, W2, b2, W3, b3 = params
    h1 = np.tanh(X @ W1 + b1)
    h2 = np.tanh(h1 @ W2 + b2)
    out = h2 @ W3 + b3
    r = out[:, 0] - y
    n = y.shape[0]
    value = (r @ r) / n
    return value, _backprop(W2, W3, X, h1, h2, (2.0 / n) * r[:, None])


def mlp_hinge_loss_numpy(params, X, y):
    """Mean hinge loss of the network and its (sub)gradient, by textbook backprop."""
    W1, b1, W2, b2, W3, b3 = params
    h1 = np.tanh(X @ W1 + b1)
    h2 = np.tanh(h1 @ W2 + b2)
    out = h2 @ W3 + b3
    margin = 1.0 - y * out[:, 0]
    active = margin > 0
    n = y.shape[0]
    value = np.sum(margin[active]) / n
    g_out = np.where(active, -y, 0.0) / n
    return value, _backprop(W2, W3, X, h1, h2, g_out[:, None])


# -- data ------------------------------------------------------------------------------------------

def fit_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.uniform(-3.0, 3.0, FIT_SAMPLES)
    y = 1.5 * np.exp(-(x - 0.3) ** 2 / 0.8 ** 2) + 0.05 * rng.standard_normal(FIT_SAMPLES)
    return x, y


def mlp_data() -> tuple[tuple[np.ndarray, ...], np.ndarray, np.ndarray, np.ndarray]:
    """Parameters (scaled Gaussian init), inputs, a regression target and ±1 labels."""
    rng = np.random.default_rng(1)
    params = []
    for fan_in, fan_out in itertools.pairwise(MLP_SIZES):
        params.append(rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in))
        params.append(0.1 * rng.standard_normal(fan_out))
    X = rng.standard_normal((MLP_BATCH, MLP_SIZES[0]))
    target = np.tanh(X[:, 0] * X[:, 1])
    labels = np.where(X[:, 0] * X[:, 1] > 0, 1.0, -1.0)
    return tuple(params), X, target, labels


# -- measuring -------------------------------------------------------------------------------------

@dataclass
class Settings:
    """How many samples to take; ``--quick`` trades precision for a run of a few seconds."""

    repeats: int  # interleaved timeit repeats per side
    repeat_seconds: float  # wall time of one timeit repeat (sets its loop count)
    memory_calls: int  # traced calls per side; the median peak is reported

    # Many short repeats rather than a few long ones: a repeat of a few ms is often not
    # interrupted at all, so on a shared machine the minimum still finds the code's own cost.
    @classmethod
    def full(cls) -> Settings:
        return cls(repeats=200, repeat_seconds=0.005, memory_calls=7)

    @classmethod
    def quick(cls) -> Settings:
        return cls(repeats=40, repeat_seconds=0.005, memory_calls=3)


def _leaves(tree: Any) -> list[Any]:
    """The numbers and arrays of a (value, gradients) result, depth first."""
    if isinstance(tree, (tuple, list)):
        return [leaf for part in tree for leaf in _leaves(part)]
    return [tree]


def check_agreement(name: str, got: Any, expected: Any) -> bool:
    """srcgrad's ``(value, grads)`` against the hand-written one, leaf by leaf; loud if not."""
    ours, theirs = _leaves(got), _leaves(expected)
    problems = []
    if len(ours) != len(theirs):
        problems.append(f"{len(ours)} values vs {len(theirs)}")
    for i, (a, b) in enumerate(zip(ours, theirs, strict=False)):  # lengths checked above
        if np.shape(a) != np.shape(b):
            problems.append(f"leaf {i}: shape {np.shape(a)} vs {np.shape(b)}")
        elif not np.allclose(a, b, rtol=RTOL, atol=0.0):
            worst = np.max(np.abs(np.subtract(a, b)) / np.maximum(np.abs(b), 1e-300))
            problems.append(f"leaf {i}: max relative difference {worst:.3g}")
    if problems:
        banner = "!" * 78
        _log(f"{banner}\nMISMATCH {name}: srcgrad and hand-written NumPy disagree "
             f"(rtol {RTOL:g}):\n  " + "\n  ".join(problems) + f"\n{banner}")
    return not problems


def warm_allocator() -> None:
    """Allocate and free one 16 MB block, so that later temporaries are reused, not re-mapped.

    glibc's malloc raises its mmap threshold to the size of the largest block freed so far
    (up to 32 MB): after this, the fit's 0.8 MB temporaries come from the heap and are reused
    call after call. Without it, they are mapped fresh and the kernel zeroes every page on first
    touch, a cost set by the process's allocation history rather than by the code. A long-lived
    numerical program is usually in the warm state; the cold one is measured apart, in a fresh
    process (`bench_fit_cold`).
    """
    block = np.ones(2 * 10**6)
    del block


def tracemalloc_sees_numpy() -> bool:
    """Whether NumPy's array buffers show up in tracemalloc (they do since NumPy 1.13)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        block = np.ones(10**6)
        seen = tracemalloc.get_traced_memory()[1] - before >= block.nbytes
        del block
    finally:
        tracemalloc.stop()
    return seen


def peak_bytes(call: Callable[[], Any], calls: int) -> tuple[int, list[int]]:
    """Median tracemalloc peak of ``call()`` above the memory traced just before it.

    Counts everything the call allocates and holds at its worst moment: temporaries, and the
    results it returns (equal in size on both sides). The inputs exist beforehand and do not
    count. One untraced call first, so that one-off allocations (a transform, caches) stay out.
    """
    call()
    gc.collect()
    samples = []
    tracemalloc.start()
    try:
        for _ in range(calls):
            before = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            result = call()
            samples.append(tracemalloc.get_traced_memory()[1] - before)
            del result
    finally:
        tracemalloc.stop()
    return int(statistics.median(samples)), samples


def page_faults_per_call(call: Callable[[], Any], calls: int) -> float | None:
    """Minor page faults per call: fresh pages the kernel had to map (and zero) for it.

    Large temporaries often come straight from the kernel (the allocator returns big blocks
    to it when they are freed), so this counts the cost of allocating them, which the
    interpreter's own memory accounting does not show. None where `resource` is missing.
    """
    try:
        import resource
    except ImportError:
        return None
    call()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(calls):
        call()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / calls


def _fmt_bytes(count: float) -> str:
    if count < 10_000:
        return f"{count:.0f} B"
    if count < 10_000_000:
        return f"{count / 1e3:.1f} kB"
    return f"{count / 1e6:.2f} MB"


def _source_digest(f: Any) -> str:
    """Short hash of the code srcgrad generated for ``f`` (it changes as srcgrad does)."""
    return hashlib.sha256(f.raw_source.encode()).hexdigest()[:12]


def time_rows(srcgrad: str, baselines: list[tuple[str, str, str, float | None]],
              namespace: dict[str, Any], settings: Settings) -> tuple[list[Row], dict[str, Any]]:
    """Interleaved timings of the statement ``srcgrad`` and of each baseline statement.

    ``baselines`` holds (key, statement, row label, target or None for information): one row
    each, with the ratio of srcgrad's time to that baseline's.
    """
    statements = {"srcgrad": srcgrad} | {key: stmt for key, stmt, _, _ in baselines}
    samples = interleaved_timings(statements, namespace, settings.repeats,
                                  settings.repeat_seconds)
    best = {name: min(times) for name, times in samples.items()}
    median = {name: statistics.median(times) for name, times in samples.items()}
    rows = []
    for key, _, label, target in baselines:
        ratio = best["srcgrad"] / best[key]
        rows.append(Row(label, _fmt_time(best["srcgrad"]), _fmt_time(best[key]), ratio,
                        "info" if target is None else f"≤ {target}×",
                        None if target is None else ratio <= target,
                        best["srcgrad"], best[key]))
    detail = {"statistic": "min", "min_s": best, "median_s": median,
              "median_ratio": {key: median["srcgrad"] / median[key] for key, *_ in baselines}}
    return rows, detail


def memory_row(label: str, ours: Callable[[], Any], theirs: Callable[[], Any],
               settings: Settings) -> tuple[Row, dict[str, Any]]:
    ours_bytes, ours_samples = peak_bytes(ours, settings.memory_calls)
    theirs_bytes, theirs_samples = peak_bytes(theirs, settings.memory_calls)
    ratio = ours_bytes / theirs_bytes
    row = Row(label, _fmt_bytes(ours_bytes), _fmt_bytes(theirs_bytes), ratio,
              f"≤ {MEMORY_TARGET}×", ratio <= MEMORY_TARGET)
    detail = {"statistic": "median tracemalloc peak above the start of the call (bytes)",
              "srcgrad_bytes": ours_bytes, "baseline_bytes": theirs_bytes,
              "srcgrad_samples": ours_samples, "baseline_samples": theirs_samples,
              "srcgrad_page_faults_per_call": page_faults_per_call(ours, 20),
              "baseline_page_faults_per_call": page_faults_per_call(theirs, 20)}
    return row, detail


# Run in a fresh interpreter (sys.argv[1]: this directory; sys.argv[2]: repeats). The only large
# blocks freed before the timing are the data set's 0.8 MB temporaries, as in a script that
# loads its data and starts fitting.
COLD_SCRIPT = """
import json, resource, sys
sys.path.insert(0, sys.argv[1])
import bench_arrays as b
x, y = b.fit_data()
mu, sigma, s = b.FIT_AT
ns = {"f": b.fit_loss, "hand": b.fit_loss_numpy, "mu": mu, "sigma": sigma, "s": s, "x": x,
      "y": y}
samples = b.interleaved_timings({"srcgrad": "f(mu, sigma, s, x, y)",
                                 "hand": "hand(mu, sigma, s, x, y)"}, ns, int(sys.argv[2]), 0.005)
faults = {k: b.page_faults_per_call(lambda k=k: ns[k](mu, sigma, s, x, y), 20)
          for k in ("f", "hand")}
print(json.dumps({"min_s": {k: min(v) for k, v in samples.items()}, "faults": faults}))
"""


# -- workloads -------------------------------------------------------------------------------------

def bench_fit(settings: Settings) -> tuple[list[Row], list[Row], dict[str, Any]]:
    """Curve fit: time rows, memory row, details."""
    x, y = fit_data()
    mu, sigma, s = FIT_AT
    result = fit_loss(mu, sigma, s, x, y)  # builds the transform: excluded from everything
    agree = (check_agreement("curve fit", result, fit_loss_numpy(mu, sigma, s, x, y))
             & check_agreement("curve fit (plain NumPy)", result,
                               fit_loss_plain_numpy(mu, sigma, s, x, y)))
    namespace = {"f": fit_loss, "hand": fit_loss_numpy, "plain": fit_loss_plain_numpy,
                 "mu": mu, "sigma": sigma, "s": s, "x": x, "y": y}
    rows, detail = time_rows("f(mu, sigma, s, x, y)", [
        ("hand", "hand(mu, sigma, s, x, y)",
         "Gaussian fit, 1e5 samples, value+grad (3 float params) vs hand-written NumPy",
         FIT_TARGET),
        ("plain", "plain(mu, sigma, s, x, y)",
         "Gaussian fit as above vs plain NumPy (no in-place updates, `np.sum`)", None),
    ], namespace, settings)
    memory, detail["memory"] = memory_row(
        "peak memory: Gaussian fit value+grad vs hand-written NumPy",
        lambda: fit_loss(mu, sigma, s, x, y), lambda: fit_loss_numpy(mu, sigma, s, x, y),
        settings)
    detail["memory"]["plain_numpy_bytes"], _ = peak_bytes(
        lambda: fit_loss_plain_numpy(mu, sigma, s, x, y), settings.memory_calls)
    detail.update(agree=agree, n=FIT_SAMPLES, generated_sha256=_source_digest(fit_loss))
    cold_row, detail["cold"] = bench_fit_cold(settings)
    return [*rows, cold_row], [memory], detail


def bench_fit_cold(settings: Settings) -> tuple[Row, dict[str, Any]]:
    """The fit timed in a fresh process whose allocator was not warmed (information)."""
    result = subprocess.run(
        [sys.executable, "-c", COLD_SCRIPT, str(Path(__file__).resolve().parent),
         str(settings.repeats)], capture_output=True, text=True, check=True)
    cold = json.loads(result.stdout)
    best = cold["min_s"]
    ratio = best["srcgrad"] / best["hand"]
    row = Row("Gaussian fit as above, fresh process, allocator not warmed (temporaries "
              "page-fault)", _fmt_time(best["srcgrad"]), _fmt_time(best["hand"]), ratio, "info",
              None, best["srcgrad"], best["hand"])
    return row, {"statistic": "min", "min_s": best, "page_faults_per_call": cold["faults"]}


def bench_mlp(settings: Settings) -> tuple[list[Row], list[Row], dict[str, Any]]:
    """MLP, mean squared error (and hinge loss, for information): time rows, memory row."""
    params, X, target, labels = mlp_data()
    agree = (check_agreement("MLP (MSE)", mlp_loss(params, X, target),
                             mlp_loss_numpy(params, X, target))
             & check_agreement("MLP (hinge)", mlp_hinge_loss(params, X, labels),
                               mlp_hinge_loss_numpy(params, X, labels)))
    namespace = {"f": mlp_loss, "hand": mlp_loss_numpy, "f_hinge": mlp_hinge_loss,
                 "hand_hinge": mlp_hinge_loss_numpy, "params": params, "X": X, "t": target,
                 "labels": labels}
    rows, detail = time_rows("f(params, X, t)", [
        ("hand", "hand(params, X, t)",
         "MLP 2-16-16-1, batch 100, MSE value+grad (6 arrays) vs hand-written backprop",
         MLP_TARGET),
    ], namespace, settings)
    hinge_rows, detail["hinge"] = time_rows("f_hinge(params, X, labels)", [
        ("hand", "hand_hinge(params, X, labels)",
         "MLP as above with hinge loss (`np.maximum`) vs hand-written backprop", None),
    ], namespace, settings)
    memory, detail["memory"] = memory_row(
        "peak memory: MLP (MSE) value+grad vs hand-written backprop",
        lambda: mlp_loss(params, X, target), lambda: mlp_loss_numpy(params, X, target),
        settings)
    detail.update(agree=agree, batch=MLP_BATCH, sizes=MLP_SIZES,
                  generated_sha256=_source_digest(mlp_loss))
    return [*rows, *hinge_rows], [memory], detail


# -- report ----------------------------------------------------------------------------------------

def _busy(info: dict[str, Any]) -> str | None:
    """A warning when other work was running at start (timings then carry more noise)."""
    cpus = info.get("cpus_usable") or info.get("cpu_count") or 1
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if load < 0.5 * cpus:
        return None
    return (f"1-minute load average {load:.2f} on {cpus} CPUs at the end of the run: other "
            f"processes competed for the CPU, so times are noisy (ratios, interleaved, less so).")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run (< 10 s)")
    parser.add_argument("--json", action="store_true", help="print results as JSON on stdout")
    args = parser.parse_args(argv)
    settings = Settings.quick() if args.quick else Settings.full()

    started = datetime.datetime.now(datetime.timezone.utc)
    clock = time.perf_counter()
    info = machine()
    info["blas_threads_env"] = {name: os.environ.get(name) for name in BLAS_THREAD_VARIABLES}
    if BLAS_SETTING_TOO_LATE:
        info["blas_threads_env"]["note"] = "NumPy was loaded before the script: not applied"
    info["tracemalloc_sees_numpy"] = tracemalloc_sees_numpy()
    warm_allocator()
    if not info["tracemalloc_sees_numpy"]:
        _log("WARNING: NumPy's buffers do not show in tracemalloc; memory rows are not "
             "meaningful")
    time_table: list[Row] = []
    memory_table: list[Row] = []
    details: dict[str, Any] = {}
    for name, bench in (("fit", bench_fit), ("mlp", bench_mlp)):
        _log(f"running {name} ...")
        bench_time, bench_memory, details[name] = bench(settings)
        time_table.extend(bench_time)
        memory_table.extend(bench_memory)
    elapsed = time.perf_counter() - clock
    rows = time_table + memory_table

    missed = [row.workload for row in rows if row.met is False]
    disagree = [name for name, detail in details.items() if not detail["agree"]]
    if args.json:
        print(json.dumps({"date": started.isoformat(timespec="seconds"),
                          "mode": "quick" if args.quick else "full", "seconds": elapsed,
                          "machine": info, "settings": asdict(settings),
                          "rows": [asdict(row) for row in rows], "details": details,
                          "results_disagree": disagree, "targets_missed": missed}, indent=2))
        return 0
    print(f"srcgrad array benchmark ({'quick' if args.quick else 'full'} run, "
          f"{started:%Y-%m-%d %H:%M} UTC, {elapsed:.0f} s)\n")
    print(markdown_table(rows))
    fit, mlp = details["fit"], details["mlp"]
    print(f"\nTimes: min of {settings.repeats} interleaved timeit repeats, warm-up excluded. "
          f"Median ratios: fit {fit['median_ratio']['hand']:.2f}× "
          f"(plain NumPy {fit['median_ratio']['plain']:.2f}×), "
          f"MLP {mlp['median_ratio']['hand']:.2f}×, "
          f"hinge {mlp['hinge']['median_ratio']['hand']:.2f}×.")
    print(f"Memory: median tracemalloc peak of {settings.memory_calls} calls above the memory "
          f"traced before each call (temporaries + results, not inputs). Plain NumPy fit: "
          f"{_fmt_bytes(fit['memory']['plain_numpy_bytes'])}.")
    if fit["memory"]["srcgrad_page_faults_per_call"] is not None:
        cold = fit["cold"]["page_faults_per_call"]
        print("Minor page faults per call (srcgrad / hand-written): fit "
              f"{fit['memory']['srcgrad_page_faults_per_call']:.0f} / "
              f"{fit['memory']['baseline_page_faults_per_call']:.0f} (fresh process: "
              f"{cold['f']:.0f} / {cold['hand']:.0f}), MLP "
              f"{mlp['memory']['srcgrad_page_faults_per_call']:.0f} / "
              f"{mlp['memory']['baseline_page_faults_per_call']:.0f}.")
    if disagree:
        print("\n" + "!" * 78 + "\nWARNING: srcgrad and hand-written NumPy DISAGREE for: "
              + ", ".join(disagree) + " (details on stderr)\n" + "!" * 78)
    else:
        print(f"Values and gradients agree with the hand-written versions "
              f"(np.allclose, rtol {RTOL:g}, atol 0).")
    busy = _busy(info)
    if busy:
        print(f"WARNING: {busy}")
    print("\nMachine: " + ", ".join(f"{key} {value}" for key, value in info.items()))
    print("\nTargets missed: " + ("; ".join(missed) if missed else "none"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
