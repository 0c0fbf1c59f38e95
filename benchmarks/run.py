"""srcgrad side by side with its peers, every workload in one run (issue 7).

Usage::

    python -m benchmarks             # full run (a few minutes), markdown tables on stdout
    python -m benchmarks --quick     # smoke run (< 20 s): fewer repeats, slow peer rows skipped
    python -m benchmarks --json      # the same results for machines

Each workload (see `benchmarks.workloads`) is run by every tool (see `benchmarks.peers`): the
hand-written NumPy/`math` derivative (the floor, ratio 1), srcgrad, and each installed peer.
A peer that is missing, or cannot run the workload, is a row saying "skipped: <reason>".

Every row first checks its value and gradients against the hand-written ones (rtol 1e-6, with
an absolute floor of 1e-9 times the largest entry of each gradient, so that entries that cancel
to about zero are not failed on summation order). A row that disagrees is reported as a
MISMATCH, in the table and the JSON, and is not timed. That first call is also the warm-up (JAX
compiles there), so it is never timed.

Steady-state times: `timeit`, the rows of one workload taking turns repeat by repeat (a slow
phase of the machine then hits every row alike), each repeat a few milliseconds long. The table
gives the **median** per call and the ratio of medians to the hand-written row; the minimum is
kept in the JSON. A row whose single call is long gets fewer repeats (at least a few), so that
one slow peer does not take the run's whole time.

W6 (first call) times decoration + transform + first call on fresh function objects, each from
a freshly imported copy of the module, median of several. W8 (peak memory) is tracemalloc's
peak during one call above what was traced before it, the median of a few calls; only tools that
allocate through NumPy are visible to it.

BLAS, XLA and torch run on one thread each (the generated code does not use threads). This is a
script, not a test: it never fails on a missed target, it reports it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# One BLAS thread, set before NumPy loads BLAS (a value already in the environment is kept), as
# in bench_arrays.py: the hand-written baselines reduce with BLAS, and a thread per core would
# measure the core count rather than the code. XLA and torch are pinned in `benchmarks.peers`.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
if __package__ in (None, ""):  # run as `python benchmarks/run.py`: the repository root on path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import dataclasses
import datetime
import importlib
import inspect
import json
import statistics
import subprocess
import time
import timeit
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks import bench_arrays, peers, workloads
from benchmarks.bench_core import _fmt_time, _log, _loop_count, fresh_modules, machine
from benchmarks.workloads import Workload

RTOL = 1e-6  # gradient check, relative
ATOL_SCALE = 1e-9  # gradient check, absolute: this times the largest entry of the gradient
FIRST_CALL_TARGET_MS = 10.0  # W6
MEMORY_TARGET = 1.5  # W8
SCALAR_TARGET = 2.5  # W1: srcgrad's time over the plain function call


@dataclasses.dataclass
class Settings:
    """How much to sample; ``--quick`` trades precision (and the slowest peer rows) for time."""

    repeats: int  # interleaved timeit repeats per row, at most
    min_repeats: int  # ... and at least, for a row whose calls are slow
    repeat_seconds: float  # length of one repeat (sets its loop count)
    row_seconds: float  # time budget of one row's repeats, which caps a slow row's repeats
    first_call_reps: int  # W6: fresh functions per tool, at most (plus one not counted)
    first_call_seconds: float  # W6: time budget per tool, which caps slow transforms
    memory_calls: int  # W8: traced calls per row (median)
    skip_slow: bool  # skip the rows a peer marks slow (seconds per call or compile)

    @classmethod
    def full(cls) -> Settings:
        return cls(repeats=41, min_repeats=5, repeat_seconds=0.01, row_seconds=4.0,
                   first_call_reps=21, first_call_seconds=5.0, memory_calls=5, skip_slow=False)

    @classmethod
    def quick(cls) -> Settings:
        return cls(repeats=7, min_repeats=3, repeat_seconds=0.002, row_seconds=0.1,
                   first_call_reps=5, first_call_seconds=0.4, memory_calls=2, skip_slow=True)


@dataclasses.dataclass
class Result:
    """One row: a tool on a workload. ``status`` is "ok", "skipped" or "mismatch"."""

    tool: str
    status: str
    reason: str | None = None  # why skipped, or what disagrees
    check: str | None = None  # "pass" or "mismatch" (None: never ran)
    note: str = ""
    median_s: float | None = None
    min_s: float | None = None
    repeats: int | None = None
    ratio: float | None = None  # median over the hand-written row's median (W8: bytes)
    ratio_min: float | None = None  # min over the hand-written row's min (less noise-prone)
    ratio_plain: float | None = None  # W1: over the plain function call's median
    peak_bytes: int | None = None  # W8
    targets: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # srcgrad's row
    met: bool | None = None  # all targets met (None: no target)

    def judge(self, target: str, met: bool) -> None:
        """Record one target of the issue for this row."""
        self.targets.append({"target": target, "met": met})
        self.met = met and self.met is not False


@dataclasses.dataclass
class Prepared:
    """A row that passed its check, ready to time: the call and its converted arguments."""

    call: Callable[..., Any]
    args: tuple[Any, ...]


# -- checking -------------------------------------------------------------------------------------

def compare(expected: tuple[Any, Any], got: tuple[Any, Any], workload: Workload,
            value_only: bool = False) -> str | None:
    """None if ``got`` (value, gradients) agrees with ``expected``, else what differs."""
    names = ["value"]
    ours, theirs = peers.leaves(got[0]), peers.leaves(expected[0])
    if not value_only:
        grads_ours, grads_theirs = peers.leaves(got[1]), peers.leaves(expected[1])
        names += gradient_names(workload, len(grads_theirs))
        ours, theirs = ours + grads_ours, theirs + grads_theirs
    if len(ours) != len(theirs):
        return f"{len(ours)} values and gradients, expected {len(theirs)}"
    problems = []
    for name, a, b in zip(names, ours, theirs, strict=True):
        if a.shape != b.shape:
            problems.append(f"{name} has shape {a.shape}, expected {b.shape}")
            continue
        atol = ATOL_SCALE * float(np.max(np.abs(b), initial=0.0))
        if not np.allclose(a, b, rtol=RTOL, atol=atol):
            worst = np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300))
            problems.append(f"{name}: max relative difference {worst:.3g}")
    return "; ".join(problems) or None


def gradient_names(workload: Workload, count: int) -> list[str]:
    """``d_<parameter>`` for each gradient entry (``d_params[i]`` inside a structure)."""
    params = workload.function.__code__.co_varnames[:workload.n_wrt]
    if count == len(params):
        return [f"d_{name}" for name in params]
    if len(params) == 1:
        return [f"d_{params[0]}[{i}]" for i in range(count)]
    return [f"gradient {i}" for i in range(count)]


# -- running one workload -----------------------------------------------------------------------

class Runner:
    """Loads each tool once and runs workloads through all of them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.tools = peers.all_tools()
        self.load_errors: dict[str, str | None] = {}
        for tool in self.tools:
            try:
                tool.load()
                self.load_errors[tool.name] = None
            except peers.Unsupported as error:
                self.load_errors[tool.name] = str(error)
        self.prepared: dict[tuple[str, str], Prepared] = {}  # (workload, tool) -> for W8

    def tools_for(self, workload: Workload) -> list[peers.Tool]:
        return [tool for tool in self.tools
                if tool.applies_to is None or workload.key in tool.applies_to]

    def skip_reason(self, tool: peers.Tool, workload: Workload) -> str | None:
        reason = self.load_errors[tool.name] or tool.unsupported(workload)
        if reason is None and self.settings.skip_slow:
            slow = tool.slow(workload)
            reason = f"--quick: {slow}" if slow else None
        return reason

    def prepare(self, tool: peers.Tool, workload: Workload, args: tuple[Any, ...],
                expected: tuple[Any, Any]) -> tuple[Result, Prepared | None]:
        """Convert, build, call once and check: a Result, and the call if it may be timed."""
        result = Result(tool.name, "skipped")
        reason = self.skip_reason(tool, workload)
        if reason:
            result.reason = reason
            return result, None
        result.note = tool.note(workload)
        try:
            with peers.guarded(tool.name):
                converted = tool.convert(workload, args)
                call = tool.build(workload, workload.function)
                got = tool.canonical(call(*converted))
        except peers.Unsupported as error:
            result.reason = str(error)
            return result, None
        problem = compare(expected, got, workload, tool.value_only)
        if problem:
            result.status, result.check, result.reason = "mismatch", "mismatch", problem
            _log(f"{'!' * 78}\nMISMATCH {workload.key} {tool.name}: {problem}\n{'!' * 78}")
            return result, None
        result.status, result.check = "ok", "pass"
        return result, Prepared(call, converted)

    def time_workload(self, workload: Workload) -> list[Result]:
        """Check every tool on ``workload``, then time those that passed, interleaved."""
        _log(f"running {workload.key} ...")
        args = workload.make_args()
        expected = workload.by_hand(*args)
        results, timed = [], {}
        for tool in self.tools_for(workload):
            result, prepared = self.prepare(tool, workload, args, expected)
            results.append(result)
            if prepared:
                timed[len(results) - 1] = prepared
                self.prepared[workload.key, tool.name] = prepared
        samples = interleaved(timed, self.settings)
        for index, times in samples.items():
            result = results[index]
            result.median_s, result.min_s = statistics.median(times), min(times)
            result.repeats = len(times)
        set_ratios(results)
        judge_time(workload, results)
        return results


def interleaved(rows: dict[int, Prepared], settings: Settings) -> dict[int, list[float]]:
    """Seconds per call of each row; the rows take turns repeat by repeat.

    Calibration (`bench_core._loop_count`) and one more repeat are warm-up, not recorded; that
    repeat also sizes the row's number of repeats: as many as ``row_seconds`` allows, between
    ``min_repeats`` and ``repeats``.
    """
    timers, loops, repeats = {}, {}, {}
    for index, row in rows.items():
        names = [f"a{index}_{i}" for i in range(len(row.args))]
        namespace = {f"f{index}": row.call, **dict(zip(names, row.args, strict=True))}
        timers[index] = timeit.Timer(f"f{index}({', '.join(names)})", globals=namespace)
        loops[index] = _loop_count(timers[index], settings.repeat_seconds)
        one = timers[index].timeit(loops[index])
        repeats[index] = max(settings.min_repeats,
                             min(settings.repeats, int(settings.row_seconds / max(one, 1e-9))))
    samples: dict[int, list[float]] = {index: [] for index in rows}
    for turn in range(settings.repeats):
        for index, timer in timers.items():
            if turn < repeats[index]:
                samples[index].append(timer.timeit(loops[index]) / loops[index])
    return samples


def set_ratios(results: list[Result]) -> None:
    """Each timed row over the hand-written row (the first; it always runs), median over
    median and min over min; over the plain call too where there is one (W1)."""
    hand = results[0]
    plain = next((r.median_s for r in results if r.tool == peers.PlainCall.name), None)
    for result in results:
        if result.median_s is not None and result.min_s is not None:
            assert hand.median_s and hand.min_s
            result.ratio = result.median_s / hand.median_s
            result.ratio_min = result.min_s / hand.min_s
            if plain:
                result.ratio_plain = result.median_s / plain


def judge_time(workload: Workload, results: list[Result]) -> None:
    """Mark srcgrad's row against the workload's target (W1: the plain call, and every peer)."""
    ours = next(r for r in results if r.tool == peers.Srcgrad.name)
    if workload.target is None or ours.median_s is None:
        return
    if workload.key == "W1":  # both ways of calling srcgrad are judged, each on its own row
        mine = [r for r in results if r.tool.startswith("srcgrad") and r.median_s is not None]
        peer_times = [r.median_s for r in results if r.median_s is not None and r not in mine
                      and r.tool not in (peers.HandWritten.name, peers.PlainCall.name)]
        for row in mine:
            assert row.ratio_plain is not None and row.median_s is not None
            row.judge(f"≤ {SCALAR_TARGET}× the plain call", row.ratio_plain <= SCALAR_TARGET)
            row.judge("faster than every peer", all(row.median_s < t for t in peer_times))
    else:
        assert ours.ratio is not None
        ours.judge(f"≤ {workload.target}× hand-written", ours.ratio <= workload.target)
    judge_fused(workload, results, ours)


FUSED_SPEEDUP = 2.0  # issue 8: the fused backend over the NumPy backend, at least
FUSED_WORKLOADS = ("W2", "W3")


def judge_fused(workload: Workload, results: list[Result], numpy_row: Result) -> None:
    """Issue 8's targets for the fused backend on W2 and W3: at least 2× faster than the NumPy
    backend and not slower than ``jax.jit``, both in this run."""
    jit = next((r for r in results if r.tool == "jax (jit)" and r.median_s is not None), None)
    for row in results:  # the all-cores row: the "on this 2-core machine"
        if row.tool != "srcgrad (numba, all cores)" or row.median_s is None:
            continue
        if workload.key not in FUSED_WORKLOADS or numpy_row.median_s is None:
            continue
        speedup = numpy_row.median_s / row.median_s
        row.judge(f"≥ {FUSED_SPEEDUP:g}× faster than srcgrad's NumPy backend "
                  f"({speedup:.2f}×)", speedup >= FUSED_SPEEDUP)
        if jit is not None:
            row.judge(f"not slower than jax (jit) "
                      f"({row.median_s / jit.median_s:.2f}× its time)",
                      row.median_s <= jit.median_s)


# -- W6: first call -------------------------------------------------------------------------------

FIRST_CALL_SOURCE = ("import numpy as np\n\n\n" + inspect.getsource(workloads.gauss_fit)
                     + "\n\n" + inspect.getsource(bench_arrays.fit_loss_numpy))


def first_call(runner: Runner) -> list[Result]:
    """W6: decoration + transform + first call of W3, each sample on a fresh function object.

    Each sample imports a new copy of a module holding W3's code and its hand-written gradient
    (the import is not timed), so no tool finds anything cached for it. Inputs are converted
    beforehand (loading data is not a first-call cost). The tools take turns sample by sample,
    like the rows of the other workloads; a tool whose samples have used up its time budget
    stops after ``min_repeats``. The very first sample of each tool pays one-off costs of the
    process and is left out of the median; the first call's result is checked like any row.
    """
    _log("running W6 ...")
    settings, w3 = runner.settings, workloads.BY_KEY["W3"]
    args = w3.make_args()
    expected = w3.by_hand(*args)
    results, active, converted = [], {}, {}
    for tool in runner.tools_for(w3):
        result = Result(tool.name, "skipped", reason=runner.skip_reason(tool, w3))
        results.append(result)
        if result.reason is None:
            try:
                with peers.guarded(tool.name):
                    converted[len(results) - 1] = tool.convert(w3, args)
                active[len(results) - 1] = tool
            except peers.Unsupported as error:
                result.reason = str(error)
    samples: dict[int, list[float]] = {index: [] for index in active}
    rounds = settings.first_call_reps + 1
    with fresh_modules(FIRST_CALL_SOURCE, rounds * len(active)) as names:
        fresh = iter(names)
        for _ in range(rounds):
            for index, tool in list(active.items()):
                taken = samples[index]
                if len(taken) > settings.min_repeats and sum(taken) > settings.first_call_seconds:
                    continue
                result = results[index]
                module = importlib.import_module(next(fresh))
                try:
                    with peers.guarded(tool.name):
                        elapsed, got = one_first_call(tool, w3, module, converted[index])
                except peers.Unsupported as error:
                    result.reason = str(error)
                    del active[index]
                    continue
                if not taken:  # the first call of each tool is checked
                    problem = compare(expected, got, w3, tool.value_only)
                    if problem:
                        result.status, result.check, result.reason = "mismatch", "mismatch", problem
                        del active[index]
                        continue
                taken.append(elapsed)
    for index in active:
        result, taken = results[index], samples[index][1:]
        result.status, result.check = "ok", "pass"
        result.median_s, result.min_s = statistics.median(taken), min(taken)
        result.repeats = len(taken)
    set_ratios(results)
    ours = next(r for r in results if r.tool == peers.Srcgrad.name)
    if ours.median_s is not None:
        ours.judge(f"≤ {FIRST_CALL_TARGET_MS:g} ms", ours.median_s * 1e3 <= FIRST_CALL_TARGET_MS)
    return results


def one_first_call(tool: peers.Tool, w3: Workload, module: Any,
                   args: tuple[Any, ...]) -> tuple[float, tuple[Any, Any]]:
    """Seconds of ``tool``'s build + first call on ``module``'s copy of W3, and its result."""
    workload = dataclasses.replace(w3, function=module.gauss_fit, by_hand=module.fit_loss_numpy)
    start = time.perf_counter()
    out = tool.build(workload, workload.function)(*args)
    elapsed = time.perf_counter() - start
    return elapsed, tool.canonical(out)


# -- W8: peak memory ------------------------------------------------------------------------------

def peak_memory(runner: Runner) -> list[tuple[str, list[Result]]]:
    """W8: tracemalloc peak of one call of W2 and of W3 per tool, against the hand-written."""
    _log("running W8 ...")
    tables = []
    for key in ("W2", "W3"):
        workload = workloads.BY_KEY[key]
        results = []
        for tool in runner.tools_for(workload):
            result = Result(tool.name, "skipped")
            results.append(result)
            prepared = runner.prepared.get((key, tool.name))
            result.reason = (runner.skip_reason(tool, workload) or tool.memory_invisible
                             or (None if prepared else f"did not pass its {key} check"))
            if result.reason or prepared is None:
                continue
            result.peak_bytes, _ = bench_arrays.peak_bytes(
                lambda p=prepared: p.call(*p.args), runner.settings.memory_calls)
            result.status, result.check = "ok", "pass"
        hand = results[0].peak_bytes
        for result in results:
            if result.peak_bytes is not None and hand:
                result.ratio = result.peak_bytes / hand
        ours = next(r for r in results if r.tool == peers.Srcgrad.name)
        if ours.ratio is not None:
            ours.judge(f"≤ {MEMORY_TARGET}× hand-written", ours.ratio <= MEMORY_TARGET)
        tables.append((f"W8 ({key})", results))
    return tables


# -- report ---------------------------------------------------------------------------------------

TITLES = {
    "W6": "first call: decoration + transform + first gradient of W3, fresh function (median)",
    "W8 (W2)": "peak memory (tracemalloc) of one W2 call: mixed sine over 1e6 elements",
    "W8 (W3)": "peak memory (tracemalloc) of one W3 call: Gaussian fit over 1e5 samples",
}


def _fmt_ratio(ratio: float | None) -> str:
    return "—" if ratio is None else f"{ratio:.2f}×"


def _status_cell(result: Result) -> str:
    if result.status == "ok":
        text = "pass"
        for target in result.targets:
            text += f"; target {target['target']}: " + ("met" if target["met"] else "**MISSED**")
    elif result.status == "mismatch":
        text = f"**MISMATCH**: {result.reason}"
    else:
        text = f"skipped: {result.reason}"
    return text + (f" ({result.note})" if result.note else "")


def markdown(key: str, title: str, results: list[Result]) -> str:
    """One workload's table: a row per tool, ratios to the hand-written row."""
    memory = key.startswith("W8")
    plain = any(r.ratio_plain is not None for r in results)
    head = ["tool", "peak memory" if memory else "median", "ratio to hand-written"]
    head += [] if memory else ["(of minima)"]
    head += ["ratio to plain call"] if plain else []
    lines = [f"### {key}: {title}", "", "| " + " | ".join([*head, "check / status"]) + " |",
             "|---|" + "---:|" * (len(head) - 1) + "---|"]
    for r in results:
        amount = bench_arrays._fmt_bytes(r.peak_bytes) if r.peak_bytes is not None else (
            _fmt_time(r.median_s) if r.median_s is not None else "—")
        cells = [r.tool, amount, _fmt_ratio(r.ratio)]
        cells += [] if memory else [_fmt_ratio(r.ratio_min)]
        cells += [_fmt_ratio(r.ratio_plain)] if plain else []
        lines.append("| " + " | ".join([*cells, _status_cell(r)]) + " |")
    return "\n".join(lines)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True, cwd=Path(__file__).resolve().parent)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "srcgrad"],
                               capture_output=True, text=True, check=True,
                               cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() + (" (srcgrad/ modified)" if dirty else "")


def run(settings: Settings) -> tuple[dict[str, Any], list[tuple[str, str, list[Result]]]]:
    """All workloads, in the order of the issue: (machine and peers info, tables)."""
    bench_arrays.warm_allocator()  # temporaries reused from the heap, as in bench_arrays
    runner = Runner(settings)
    info = machine()
    info["git_commit"] = _git_commit()
    info["blas_threads_env"] = {name: os.environ.get(name)
                                for name in bench_arrays.BLAS_THREAD_VARIABLES}
    info["XLA_FLAGS"] = os.environ.get("XLA_FLAGS")
    info["tracemalloc_sees_numpy"] = bench_arrays.tracemalloc_sees_numpy()
    info["tools"] = {tool.name: tool.version() if runner.load_errors[tool.name] is None
                     else f"skipped: {runner.load_errors[tool.name]}" for tool in runner.tools}
    tables: list[tuple[str, str, list[Result]]] = []
    for workload in workloads.WORKLOADS:
        if workload.key == "W7":
            tables.append(("W6", TITLES["W6"], first_call(runner)))
        tables.append((workload.key, workload.title, runner.time_workload(workload)))
    tables.extend((key, TITLES[key], results) for key, results in peak_memory(runner))
    return info, tables


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run (< 20 s)")
    parser.add_argument("--json", action="store_true", help="print results as JSON on stdout")
    args = parser.parse_args(argv)
    settings = Settings.quick() if args.quick else Settings.full()
    started = datetime.datetime.now(datetime.timezone.utc)
    clock = time.perf_counter()
    info, tables = run(settings)
    elapsed = time.perf_counter() - clock
    info["load_average_at_end"] = f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else None
    targets = [{"workload": key, "row": r.tool, **target}
               for key, _, results in tables for r in results for target in r.targets]
    mismatches = [f"{key} {r.tool}: {r.reason}"
                  for key, _, results in tables for r in results if r.status == "mismatch"]
    if args.json:
        print(json.dumps({
            "date": started.isoformat(timespec="seconds"),
            "mode": "quick" if args.quick else "full", "seconds": elapsed, "machine": info,
            "settings": dataclasses.asdict(settings), "rtol": RTOL,
            "workloads": [{"key": key, "title": title,
                           "rows": [dataclasses.asdict(r) for r in results]}
                          for key, title, results in tables],
            "targets": targets, "mismatches": mismatches}, indent=2))
        return 0
    print(f"srcgrad vs peers ({'quick' if args.quick else 'full'} run, "
          f"{started:%Y-%m-%d %H:%M} UTC, {elapsed:.0f} s)\n")
    for key, title, results in tables:
        print(markdown(key, title, results) + "\n")
    print(f"Times: median of up to {settings.repeats} interleaved timeit repeats per row, "
          f"warm-up excluded. Every row's value and gradients were checked against the "
          f"hand-written ones first (rtol {RTOL:g}).")
    if mismatches:
        print("\n" + "!" * 78 + "\nGRADIENT MISMATCHES:\n  " + "\n  ".join(mismatches)
              + "\n" + "!" * 78)
    print(f"Load average: {info['load_average_at_start']} (1, 5, 15 min) at the start, "
          f"{info['load_average_at_end']} (1 min) at the end, which includes this run (about 1)."
          " Other load inflates medians more than minima, hence both ratios.")
    print("\nTargets: " + "; ".join(
        f"{t['workload']} {t['row']} {t['target']}: {'met' if t['met'] else 'MISSED'}"
        for t in targets))
    print("\nMachine: " + ", ".join(f"{key} {value}" for key, value in info.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
