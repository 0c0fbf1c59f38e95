"""Core benchmark of srcgrad: what a gradient costs next to the code you would write by hand.

Usage::

    python benchmarks/bench_core.py            # full run (about 15 s)
    python benchmarks/bench_core.py --quick    # smoke run (< 10 s), fewer samples
    python benchmarks/bench_core.py --json     # machine-readable results on stdout

Every workload is the "mixed sine" ``sin(a) + 0.2 * sin(a * 5)``, small enough that srcgrad's
own overheads (call dispatch, the float fast path, the transform itself) are what is measured.

Results are reported as **ratios** to a baseline measured in the same process, in the same run,
with the samples of the two sides interleaved: absolute seconds depend on the machine and are
printed as secondary information only. This is a script, not a test: it never asserts, it
reports whether each target was met.

1. Scalar: ``f(0.7)`` (value and gradient) against the plain undecorated function
   ``f.__wrapped__(0.7)`` (value only, same source, same `srcgrad.functions.sin`), and against a
   plain version calling `math.sin` directly (the stricter baseline). Target: <= 2.5x.
2. Batched: ``f(x)`` on 1e6 float64 elements against hand-written NumPy computing the same value
   and derivative. Target: <= 1.2x. The two results are checked to agree first.
3. First call: decoration + transform + first call of a fresh function object, median in ms.
   Target: <= 10 ms. The first read of ``.source`` (which imports black) is reported apart.

Plus, in subprocesses: the import time of srcgrad (against importing NumPy alone) and a check
that neither ``import srcgrad`` nor a first call imports black.

Steady-state timings (1, 2) use `timeit`, warm-up excluded, and report the **minimum** over the
repeats: timing noise on a shared machine only ever adds time, so the minimum is the best
estimate of the code's own cost (the median is kept in the JSON output). One-off costs (3,
imports) are reported as the **median**, since each sample is a single cold event.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import importlib
import importlib.metadata
import inspect
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

import srcgrad
from srcgrad import grad
from srcgrad.functions import sin

SCALAR_TARGET = 2.5  # max ratio, scalar value+gradient vs plain function
BATCHED_TARGET = 1.2  # max ratio, batched value+gradient vs hand-written NumPy
FIRST_CALL_TARGET_MS = 10.0  # max median ms, decoration + transform + first call
BATCH_SIZE = 10**6  # the row label says 1e6
X0 = 0.7


# The workload. No docstrings inside: srcgrad differentiates exactly what it reads.
def mixed_sine(a):
    return sin(a) + 0.2 * sin(a * 5)


def mixed_sine_math(a):
    return math.sin(a) + 0.2 * math.sin(a * 5)


def numpy_value_and_derivative(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What a competent person writes by hand: ``5 * x`` once, sums in place (no extra arrays).

    d/dx [sin(x) + 0.2 sin(5x)] = cos(x) + cos(5x).
    """
    x5 = x * 5.0
    value = np.sin(x5)
    value *= 0.2
    value += np.sin(x)
    derivative = np.cos(x5)
    derivative += np.cos(x)
    return value, derivative


# The same workload as a stand-alone module: `grad` reads source with inspect.getsource, so a
# fresh function object needs a real file (an exec'd string has no retrievable source).
FRESH_MODULE_SOURCE = "from srcgrad.functions import sin\n\n\n" + inspect.getsource(mixed_sine)

# A second function, so that `.source` can be timed once more without black's import.
PROBE_MODULE_SOURCE = FRESH_MODULE_SOURCE + "\n\ndef other(a):\n    return sin(a) * a\n"

# Run in a fresh interpreter: sys.argv[1] is a directory holding the module `probe_module`.
PROBE_SCRIPT = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
import srcgrad
after_import = "black" in sys.modules
import numpy as np
import probe_module
f = srcgrad.grad(probe_module.mixed_sine)
f(0.7)
f(np.linspace(0.0, 1.0, 7))
after_calls = "black" in sys.modules
t0 = time.perf_counter()
f.source
first_source = time.perf_counter() - t0
g = srcgrad.grad(probe_module.other)
g(0.7)
t0 = time.perf_counter()
g.source
second_source = time.perf_counter() - t0
print(json.dumps({"black_after_import": after_import, "black_after_calls": after_calls,
                  "black_after_source": "black" in sys.modules,
                  "first_source_s": first_source, "second_source_s": second_source}))
"""


@dataclass
class Settings:
    """How many samples to take; ``--quick`` trades precision for a run of a few seconds."""

    scalar_repeats: int
    batched_repeats: int
    first_call_reps: int
    subprocess_reps: int
    probe_reps: int
    repeat_seconds: float  # wall time of one timeit repeat (sets its loop count)

    @classmethod
    def full(cls) -> Settings:
        return cls(scalar_repeats=50, batched_repeats=30, first_call_reps=20, subprocess_reps=10,
                   probe_reps=5, repeat_seconds=0.02)

    @classmethod
    def quick(cls) -> Settings:
        return cls(scalar_repeats=15, batched_repeats=7, first_call_reps=7, subprocess_reps=3,
                   probe_reps=1, repeat_seconds=0.01)


@dataclass
class Row:
    """One line of the results table. Times in seconds; ``met`` is None for information rows."""

    workload: str
    srcgrad: str
    baseline: str
    ratio: float | None
    target: str
    met: bool | None
    srcgrad_s: float | None = None
    baseline_s: float | None = None


# -- timing helpers ------------------------------------------------------------------------------

def _loop_count(timer: timeit.Timer, seconds: float) -> int:
    """Loops per repeat so that one repeat lasts about ``seconds`` (like timeit's autorange)."""
    number = 1
    while True:
        elapsed = timer.timeit(number)
        if elapsed >= seconds / 10:
            return max(1, round(number * seconds / elapsed))
        number *= 10


def interleaved_timings(statements: dict[str, str], namespace: dict[str, Any], repeats: int,
                        repeat_seconds: float) -> dict[str, list[float]]:
    """Seconds per execution of each statement, ``repeats`` samples each.

    The statements take turns repeat by repeat, so a slow phase of the machine (another
    process, frequency scaling) hits every side of a ratio alike instead of one side only.
    Calibration doubles as warm-up and is not recorded.
    """
    timers = {name: timeit.Timer(stmt, globals=namespace) for name, stmt in statements.items()}
    loops = {name: _loop_count(timer, repeat_seconds) for name, timer in timers.items()}
    samples: dict[str, list[float]] = {name: [] for name in timers}
    for _ in range(repeats):
        for name, timer in timers.items():
            samples[name].append(timer.timeit(loops[name]) / loops[name])
    return samples


def _fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1e-6:
        return f"{seconds * 1e9:.0f} ns"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.2f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- workloads -----------------------------------------------------------------------------------

def bench_scalar(settings: Settings) -> tuple[list[Row], dict[str, Any]]:
    """Steady-state ``f(0.7)`` against the plain function it was made from."""
    f = grad(mixed_sine)
    value, (da,) = f(X0)  # builds the transform: excluded from the timings
    expected = (mixed_sine_math(X0), math.cos(X0) + math.cos(5 * X0))
    agree = math.isclose(value, expected[0]) and math.isclose(da, expected[1])
    if not agree:
        _log(f"MISMATCH scalar: srcgrad {(value, da)} vs expected {expected}")
    samples = interleaved_timings(
        {"srcgrad": "f(x)", "wrapped": "plain(x)", "math": "plain_math(x)"},
        {"f": f, "plain": f.__wrapped__, "plain_math": mixed_sine_math, "x": X0},
        settings.scalar_repeats, settings.repeat_seconds)
    best = {name: min(times) for name, times in samples.items()}
    rows = []
    for key, label, target in (
            ("wrapped", "scalar `f(0.7)` vs `f.__wrapped__(0.7)`", f"≤ {SCALAR_TARGET}×"),
            ("math", "scalar `f(0.7)` vs plain `math.sin` version",
             f"≤ {SCALAR_TARGET}× (stricter)")):
        ratio = best["srcgrad"] / best[key]
        rows.append(Row(label, _fmt_time(best["srcgrad"]), _fmt_time(best[key]), ratio, target,
                        ratio <= SCALAR_TARGET, best["srcgrad"], best[key]))
    detail = {"agree": agree, "statistic": "min",
              "min_s": best, "median_s": {k: statistics.median(v) for k, v in samples.items()}}
    return rows, detail


def bench_batched(settings: Settings) -> tuple[list[Row], dict[str, Any]]:
    """``f(x)`` on 1e6 float64 elements against hand-written NumPy value and derivative."""
    f = grad(mixed_sine)
    x = np.linspace(-np.pi, np.pi, BATCH_SIZE)
    values, grads = f(x)
    value, derivative = numpy_value_and_derivative(x)
    agree = bool(np.allclose(values, value) and np.allclose(grads.a, derivative))
    if not agree:
        _log("MISMATCH batched: srcgrad and hand-written NumPy disagree "
             f"(max |dv| {np.max(np.abs(values - value)):.3g}, "
             f"max |dg| {np.max(np.abs(grads.a - derivative)):.3g})")
    samples = interleaved_timings(
        {"srcgrad": "f(x)", "numpy": "hand(x)"},
        {"f": f, "hand": numpy_value_and_derivative, "x": x},
        settings.batched_repeats, max(settings.repeat_seconds, 0.05))
    best = {name: min(times) for name, times in samples.items()}
    ratio = best["srcgrad"] / best["numpy"]
    row = Row("batched `f(x)`, 1e6 float64 vs hand-written NumPy",
              _fmt_time(best["srcgrad"]), _fmt_time(best["numpy"]), ratio,
              f"≤ {BATCHED_TARGET}×", ratio <= BATCHED_TARGET, best["srcgrad"], best["numpy"])
    detail = {"agree": agree, "statistic": "min", "n": BATCH_SIZE,
              "min_s": best, "median_s": {k: statistics.median(v) for k, v in samples.items()}}
    return [row], detail


@contextlib.contextmanager
def fresh_modules(source: str, count: int) -> Iterator[list[str]]:
    """``count`` importable modules holding ``source``, each under a unique name.

    Each import yields a new function object, which srcgrad has never seen, so its transform is
    built from scratch. The files live in a temporary directory, removed afterwards along with
    the modules and the sys.path entry.
    """
    with tempfile.TemporaryDirectory(prefix="srcgrad-bench-") as directory:
        names = [f"_srcgrad_bench_fresh_{os.getpid()}_{i}" for i in range(count)]
        for name in names:
            Path(directory, f"{name}.py").write_text(source)
        sys.path.insert(0, directory)
        importlib.invalidate_caches()
        try:
            yield names
        finally:
            sys.path.remove(directory)
            for name in names:
                sys.modules.pop(name, None)


def bench_first_call(settings: Settings) -> tuple[list[Row], dict[str, Any]]:
    """``grad(fn)`` + the first call, on fresh function objects (module import not timed).

    The first sample pays one-off costs of the process (srcgrad's lazily used code paths, caches
    of `ast` and `inspect`); it is reported apart and excluded from the median.
    """
    samples, cpu_samples = [], []
    with fresh_modules(FRESH_MODULE_SOURCE, settings.first_call_reps + 1) as names:
        for name in names:
            module = importlib.import_module(name)
            start, cpu_start = time.perf_counter(), time.process_time()
            f = grad(module.mixed_sine)
            f(X0)
            samples.append(time.perf_counter() - start)
            cpu_samples.append(time.process_time() - cpu_start)
    first, rest = samples[0], samples[1:]
    median = statistics.median(rest)
    # CPU time is not inflated when other processes take the CPU away mid-sample; a wall median
    # far above it means the machine was busy, not that the transform got slower.
    cpu_median = statistics.median(cpu_samples[1:])
    row = Row("first call: `grad(fn)` + transform + `f(0.7)`, fresh function (median)",
              _fmt_time(median), "—", None, f"≤ {FIRST_CALL_TARGET_MS:g} ms",
              median * 1e3 <= FIRST_CALL_TARGET_MS, median)
    detail = {"statistic": "median", "median_s": median, "min_s": min(rest),
              "max_s": max(rest), "very_first_in_process_s": first, "reps": len(rest),
              "cpu_median_s": cpu_median,
              "samples_ms": [round(sample * 1e3, 3) for sample in rest]}
    return [row], detail


# -- subprocess measurements ---------------------------------------------------------------------

def _python(*args: str) -> subprocess.CompletedProcess[str]:
    """Run a fresh interpreter with this environment (OPENBLAS_CORETYPE etc. passed unchanged)."""
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, check=True)


def _wall(code: str) -> float:
    start = time.perf_counter()
    _python("-c", code)
    return time.perf_counter() - start


_IMPORTTIME = re.compile(r"^import time:\s*(\d+)\s*\|\s*(\d+)\s*\|( *)(\S+)\s*$")


def _own_import_seconds() -> float:
    """srcgrad's cumulative import time with NumPy already imported (``-X importtime``)."""
    result = _python("-X", "importtime", "-c", "import numpy; import srcgrad")
    for line in result.stderr.splitlines():
        match = _IMPORTTIME.match(line)
        if match and match[4] == "srcgrad" and len(match[3]) == 1:
            return int(match[2]) * 1e-6
    raise RuntimeError("no 'srcgrad' line in -X importtime output")


def bench_imports(settings: Settings) -> tuple[list[Row], dict[str, Any]]:
    """Wall time of ``python -c "import srcgrad"`` against ``python -c "import numpy"``.

    Both include interpreter start-up; srcgrad depends on NumPy, so the NumPy-only process is
    the floor. ``-X importtime`` gives srcgrad's own share separately. Information only: no
    target was set for it.
    """
    walls: dict[str, list[float]] = {"srcgrad": [], "numpy": [], "python": []}
    for _ in range(settings.subprocess_reps):  # interleaved, like the timeit workloads
        walls["srcgrad"].append(_wall("import srcgrad"))
        walls["numpy"].append(_wall("import numpy"))
        walls["python"].append(_wall("pass"))
    median = {name: statistics.median(times) for name, times in walls.items()}
    own = statistics.median(_own_import_seconds() for _ in range(settings.subprocess_reps))
    row = Row("`python -c \"import srcgrad\"` vs `import numpy` (wall, median)",
              _fmt_time(median["srcgrad"]), _fmt_time(median["numpy"]),
              median["srcgrad"] / median["numpy"], "info", None,
              median["srcgrad"], median["numpy"])
    detail = {"statistic": "median", "wall_s": median, "srcgrad_own_importtime_s": own}
    return [row], detail


def bench_black(settings: Settings) -> tuple[list[Row], dict[str, Any]]:
    """black must stay out of ``import srcgrad`` and of calls; only ``.source`` may import it."""
    probes = []
    with tempfile.TemporaryDirectory(prefix="srcgrad-bench-") as directory:
        Path(directory, "probe_module.py").write_text(PROBE_MODULE_SOURCE)
        for _ in range(settings.probe_reps):
            probes.append(json.loads(_python("-c", PROBE_SCRIPT, directory).stdout))
    not_imported = not any(p["black_after_import"] or p["black_after_calls"] for p in probes)
    sanity = all(p["black_after_source"] for p in probes)  # the check can see black at all
    first = statistics.median(p["first_source_s"] for p in probes)
    second = statistics.median(p["second_source_s"] for p in probes)
    rows = [
        Row("black imported by `import srcgrad` + first calls (float, array)?",
            "no" if not_imported else "YES", "—", None, "no", not_imported),
        Row("first `.source` read (imports black + formats), median", _fmt_time(first),
            "—", None, "info", None, first),
        Row("later `.source` read of another function (formats only)", _fmt_time(second),
            "—", None, "info", None, second),
    ]
    detail = {"black_not_imported": not_imported, "check_sees_black_after_source": sanity,
              "first_source_s": first, "second_source_s": second, "probes": probes}
    if not sanity:
        _log("WARNING: black was not in sys.modules even after .source; the check is blind")
    return rows, detail


# -- report --------------------------------------------------------------------------------------

def machine() -> dict[str, Any]:
    """What the figures depend on."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "numpy": np.__version__,
        "srcgrad": srcgrad.__version__,
        "srcgrad_source_sha256": _source_digest(),
        "black": _version("black"),
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        # Other work on the machine inflates timings; ratios suffer less, but say so.
        "load_average_at_start": (" / ".join(f"{load:.2f}" for load in os.getloadavg())
                                  if hasattr(os, "getloadavg") else None),
    }


def _source_digest() -> str:
    """Short hash of srcgrad's .py files: identifies the code measured, commit or not."""
    digest = hashlib.sha256()
    for path in sorted(Path(srcgrad.__file__).parent.rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)  # without importing it
    except importlib.metadata.PackageNotFoundError:
        return None


def markdown_table(rows: list[Row]) -> str:
    lines = ["| workload | srcgrad | baseline | ratio | target | met? |",
             "|---|---:|---:|---:|---|---|"]
    for row in rows:
        ratio = "—" if row.ratio is None else f"{row.ratio:.2f}×"
        met = "—" if row.met is None else ("yes" if row.met else "**NO**")
        lines.append(f"| {row.workload} | {row.srcgrad} | {row.baseline} | {ratio} "
                     f"| {row.target} | {met} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run (< 10 s)")
    parser.add_argument("--json", action="store_true", help="print results as JSON on stdout")
    args = parser.parse_args(argv)
    settings = Settings.quick() if args.quick else Settings.full()

    started = datetime.datetime.now(datetime.timezone.utc)
    clock = time.perf_counter()
    info = machine()
    rows: list[Row] = []
    details: dict[str, Any] = {}
    # Subprocess checks and first calls go before anything in this process builds a transform,
    # so the "very first transform" sample really is the first one.
    for name, bench in (("imports", bench_imports), ("black", bench_black),
                        ("first_call", bench_first_call), ("scalar", bench_scalar),
                        ("batched", bench_batched)):
        _log(f"running {name} ...")
        bench_rows, details[name] = bench(settings)
        rows.extend(bench_rows)
    elapsed = time.perf_counter() - clock

    missed = [row.workload for row in rows if row.met is False]
    if args.json:
        print(json.dumps({"date": started.isoformat(timespec="seconds"),
                          "mode": "quick" if args.quick else "full", "seconds": elapsed,
                          "machine": info, "settings": asdict(settings),
                          "rows": [asdict(row) for row in rows], "details": details,
                          "targets_missed": missed}, indent=2))
        return 0
    print(f"srcgrad core benchmark ({'quick' if args.quick else 'full'} run, "
          f"{started:%Y-%m-%d %H:%M} UTC, {elapsed:.0f} s)\n")
    print(markdown_table(rows))
    first = details["first_call"]
    print(f"\nSteady state: min of {settings.scalar_repeats} (scalar) / "
          f"{settings.batched_repeats} (batched) timeit repeats, warm-up excluded. "
          f"First call: median of {first['reps']} fresh functions "
          f"(range {_fmt_time(first['min_s'])}–{_fmt_time(first['max_s'])}, median CPU time "
          f"{_fmt_time(first['cpu_median_s'])}; the very first transform in the process took "
          f"{_fmt_time(first['very_first_in_process_s'])}).")
    print(f"srcgrad's own import time on top of NumPy (-X importtime): "
          f"{_fmt_time(details['imports']['srcgrad_own_importtime_s'])}; "
          f"bare interpreter start: {_fmt_time(details['imports']['wall_s']['python'])}.")
    for name in ("scalar", "batched"):
        if not details[name]["agree"]:
            print(f"WARNING: {name} results do not agree with the baseline (see stderr).")
    print("\nMachine: " + ", ".join(f"{key} {value}" for key, value in info.items()))
    print("\nTargets missed: " + ("; ".join(missed) if missed else "none"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
