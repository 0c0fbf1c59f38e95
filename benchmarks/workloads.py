"""The workloads of the side-by-side benchmark (issue 7), each as plain code and by hand.

Every workload is one plain Python function, written once, at module level: srcgrad reads its
source with `inspect`, and so does Tangent. The peers differentiate the *same code object*,
re-bound to their own NumPy-like module (see `benchmarks.peers.rebind`), the way a user ports a
NumPy function by changing one import. Beside each function sits the hand-written value and
gradient that a competent person would write with NumPy or `math`: the floor every tool is
measured against.

The W3 and W5 code and their hand-written gradients are those of `bench_arrays.py` (the array
benchmark), imported rather than repeated so that both benchmarks measure the same thing.

No docstrings inside the differentiated functions: srcgrad differentiates exactly what it reads.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks import bench_arrays
from benchmarks.bench_core import X0, numpy_value_and_derivative

BATCH = 10**6  # W2: elements of the mixed sine (the row label says 1e6)
PEAK_SAMPLES = 100_000  # W4: samples of the two-peak spectrum
PEAKS_AT = (-0.4, 0.6, 1.1, 0.5, 0.5, 0.8)  # W4: m1, s1, a1, m2, s2, a2 where grads are taken
STEPS = 1000  # W7: steps of the recurrence
DT = 0.01  # W7: step size
RECURRENCE_AT = (0.3, 0.8)  # W7: x0, w


# -- the code every tool differentiates ---------------------------------------------------------

# W1: one scalar, value and derivative, with `math` (the plain call is the stricter baseline).
def mixed_sine(a):
    return math.sin(a) + 0.2 * math.sin(a * 5)


# W2: the same over an array, spelled with NumPy as array code is.
def mixed_sine_array(a):
    return np.sin(a) + 0.2 * np.sin(a * 5)


# W3: least-squares fit of one Gaussian (the array benchmark's `fit_loss`, undecorated here so
# that W6 can import it fresh and time the decoration itself).
def gauss_fit(mu, sigma, s, x, y):
    return np.sum((s * np.exp(-(x - mu) ** 2 / sigma ** 2) - y) ** 2)


# W4: two overlapping Gaussian peaks fitted together, to separate them: 6 parameters.
def two_peaks(m1, s1, a1, m2, s2, a2, x, y):
    model = a1 * np.exp(-(x - m1) ** 2 / s1 ** 2) + a2 * np.exp(-(x - m2) ** 2 / s2 ** 2)
    return np.sum((model - y) ** 2)


# W5: the array benchmark's 2-16-16-1 tanh network with the hinge loss, batch of 100.
mlp_hinge = bench_arrays.mlp_hinge_loss.__wrapped__


# W7: a scalar recurrence, written as the natural loop (srcgrad's generated code loops too).
def recurrence(x, w):
    for _ in range(STEPS):
        x = x + DT * math.sin(x) * w
    return x


# -- the same by hand ---------------------------------------------------------------------------

def mixed_sine_by_hand(a: float) -> tuple[float, tuple[float]]:
    """W1 by hand with `math`: ``5 * a`` once; d/da = cos(a) + cos(5a)."""
    a5 = 5 * a
    return math.sin(a) + 0.2 * math.sin(a5), (math.cos(a) + math.cos(a5),)


def mixed_sine_array_by_hand(a: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray]]:
    """W2 by hand: the core benchmark's NumPy version (``5 * x`` once, sums in place)."""
    value, derivative = numpy_value_and_derivative(a)
    return value, (derivative,)


def _gaussian(x: np.ndarray, m: float, s: float) -> tuple[np.ndarray, np.ndarray]:
    """``d = x - m`` and ``e = exp(-d²/s²)``, with one temporary (the exponent, in place)."""
    d = x - m
    e = d * d
    e *= -1.0 / (s * s)
    np.exp(e, out=e)
    return d, e


def _peak_gradient(r: np.ndarray, d: np.ndarray, e: np.ndarray, a: float,
                   s: float) -> tuple[float, float, float]:
    """dL/dm, dL/ds, dL/da of ``L = Σ r²`` for one peak ``a·e`` of the model; overwrites ``e``.

    With u = r·e: dL/da = 2 Σ u, dL/dm = (4a/s²) Σ u·d, dL/ds = (4a/s³) Σ u·d².
    """
    e *= r
    d_a = 2.0 * np.sum(e)
    e *= d
    c = 4.0 * a / (s * s)
    return c * np.sum(e), c / s * (e @ d), d_a


def two_peaks_by_hand(m1: float, s1: float, a1: float, m2: float, s2: float, a2: float,
                      x: np.ndarray, y: np.ndarray) -> tuple[float, tuple[float, ...]]:
    """W4 by hand: each peak's ``x - m`` and exponential once, residual in place, dot products."""
    d1, e1 = _gaussian(x, m1, s1)
    d2, e2 = _gaussian(x, m2, s2)
    r = a1 * e1
    r -= y
    r += a2 * e2
    value = r @ r
    return value, (*_peak_gradient(r, d1, e1, a1, s1), *_peak_gradient(r, d2, e2, a2, s2))


def recurrence_by_hand(x: float, w: float) -> tuple[float, tuple[float, float]]:
    """W7 by hand: the forward loop keeps each step's two local partials, the backward loop
    multiplies them out (x' = x + DT·sin(x)·w: ∂x'/∂x = 1 + DT·w·cos x, ∂x'/∂w = DT·sin x)."""
    partials = []
    for _ in range(STEPS):
        step = DT * math.sin(x)
        partials.append((1.0 + DT * w * math.cos(x), step))
        x += step * w
    d_x, d_w = 1.0, 0.0
    for d_step, d_weight in reversed(partials):
        d_w += d_x * d_weight
        d_x *= d_step
    return x, (d_x, d_w)


# -- data ---------------------------------------------------------------------------------------

def two_peaks_data() -> tuple[np.ndarray, np.ndarray]:
    """A spectrum of two overlapping peaks (true m, s, a: -0.5, 0.7, 1.0 and 0.6, 0.4, 0.7)."""
    rng = np.random.default_rng(2)
    x = rng.uniform(-3.0, 3.0, PEAK_SAMPLES)
    y = (np.exp(-(x + 0.5) ** 2 / 0.7 ** 2) + 0.7 * np.exp(-(x - 0.6) ** 2 / 0.4 ** 2)
         + 0.02 * rng.standard_normal(PEAK_SAMPLES))
    return x, y


def _mlp_arguments() -> tuple[Any, ...]:
    params, X, _, labels = bench_arrays.mlp_data()
    return params, X, labels


# -- the list -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Workload:
    """One timed workload: the code to differentiate, its inputs, and its hand-written gradient.

    The first ``n_wrt`` parameters of ``function`` are differentiated; the rest are data. Every
    call returns ``(value, gradients)`` in parameter order.
    """

    key: str
    title: str
    function: Callable[..., Any]
    n_wrt: int
    make_args: Callable[[], tuple[Any, ...]]
    by_hand: Callable[..., Any]
    target: float | None = None  # srcgrad's time over the hand-written time, at most
    scalar: bool = False  # Python floats in and out: micrograd's domain
    array_output: bool = False  # the value is an array; gradients are of the sum of it
    plain: Callable[..., Any] | None = None  # also timed: the plain function (value only)


WORKLOADS: tuple[Workload, ...] = (
    Workload("W1", "mixed sine `sin(a) + 0.2*sin(5a)`, value + derivative of one float",
             mixed_sine, 1, lambda: (X0,), mixed_sine_by_hand, 2.5, scalar=True,
             plain=mixed_sine),
    Workload("W2", "mixed sine over 1e6 float64 elements (per-element derivatives)",
             mixed_sine_array, 1, lambda: (np.linspace(-np.pi, np.pi, BATCH),),
             mixed_sine_array_by_hand, 1.2, array_output=True),
    Workload("W3", "Gaussian curve-fit loss, 1e5 samples, 3 float parameters",
             gauss_fit, 3, lambda: (*bench_arrays.FIT_AT, *bench_arrays.fit_data()),
             bench_arrays.fit_loss_numpy, 1.2),
    Workload("W4", "two-Gaussian peak separation, 1e5 samples, 6 float parameters",
             two_peaks, 6, lambda: (*PEAKS_AT, *two_peaks_data()), two_peaks_by_hand, 1.2),
    Workload("W5", "MLP 2-16-16-1 (tanh), hinge loss, batch of 100, 6 parameter arrays",
             mlp_hinge, 1, _mlp_arguments, bench_arrays.mlp_hinge_loss_numpy, 1.2),
    Workload("W7", f"scalar recurrence `x = x + dt*sin(x)*w`, {STEPS} steps, d/dx0 and d/dw",
             recurrence, 2, lambda: RECURRENCE_AT, recurrence_by_hand, scalar=True),
)
"""The steady-state workloads. W6 (first call of W3) and W8 (peak memory of W2 and W3) reuse
W3 and W2, in `benchmarks.run`."""

BY_KEY = {workload.key: workload for workload in WORKLOADS}
