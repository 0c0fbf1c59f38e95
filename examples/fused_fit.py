"""Fit a Gaussian to two million samples with the fused backend (`backend="numba"`).

The same least-squares loss as curve_fit.py, decorated twice: with the default NumPy backend and
with `backend="numba"`, which compiles the value and the gradient into one loop over the samples
(no temporary arrays; every core on large data). Both fit the same data from the same start
with Adam; the example checks they agree, prints the time per step of each (measured here, in
this run) and the fused loop srcgrad generated. Writes summary.json.

Run:  python examples/fused_fit.py [--quick] [--out DIR]     (needs: pip install srcgrad[numba])
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
from common import output_dir, parser, write_summary

from srcgrad import grad
from srcgrad.optim import Adam

TRUTH = {"mu": 0.7, "sigma": 0.9, "s": 2.0}
START = {"mu": -0.5, "sigma": 1.6, "s": 1.2}
NOISE = 0.05


def fit_loss(x, y, mu, sigma, s):
    """Mean squared error of the Gaussian with parameters (mu, sigma, s) against the data."""
    model = s * np.exp(-((x - mu) ** 2) / (2 * sigma**2))
    return np.mean((model - y) ** 2)


numpy_loss = grad(fit_loss, wrt=("mu", "sigma", "s"))
fused_loss = grad(fit_loss, wrt=("mu", "sigma", "s"), backend="numba")


def make_data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Noisy samples of the true Gaussian on [-4, 4]."""
    x = np.linspace(-4.0, 4.0, n)
    rng = np.random.default_rng(seed)
    y = TRUTH["s"] * np.exp(-((x - TRUTH["mu"]) ** 2) / (2 * TRUTH["sigma"] ** 2))
    return x, y + NOISE * rng.standard_normal(n)


def fit(loss: Callable, x: np.ndarray, y: np.ndarray, steps: int
        ) -> tuple[tuple[float, ...], float, float]:
    """Adam from START; the fitted parameters, the final loss and the seconds per step."""
    params = (START["mu"], START["sigma"], START["s"])
    optimizer = Adam(lr=0.05)
    loss(x, y, *params)  # the first call builds (and, for Numba, compiles) the function
    began = time.perf_counter()
    for _ in range(steps):
        value, grads = loss(x, y, *params)
        params = optimizer.step(params, tuple(grads))
    return params, float(value), (time.perf_counter() - began) / steps


def main(argv: Sequence[str] | None = None) -> dict:
    options = parser(__doc__).parse_args(argv)
    out = output_dir(options.out, "fused_fit")
    n, steps = (100_000, 120) if options.quick else (2_000_000, 300)
    x, y = make_data(n)
    fitted_numpy, loss_numpy, step_numpy = fit(numpy_loss, x, y, steps)
    fitted_fused, loss_fused, step_fused = fit(fused_loss, x, y, steps)
    print(f"{steps} Adam steps on {n:,} samples")
    print(f"  NumPy backend: {step_numpy * 1e3:8.2f} ms per step")
    print(f"  Numba backend: {step_fused * 1e3:8.2f} ms per step "
          f"({step_numpy / step_fused:.1f}x faster, this run)")
    difference = max(abs(a - b) for a, b in zip(fitted_numpy, fitted_fused, strict=True))
    print(f"  largest difference between the two fits' parameters: {difference:.2e}")
    print(f"{'':8}{'truth':>10}{'fitted':>10}")
    for name, fitted in zip(TRUTH, fitted_fused, strict=True):
        print(f"{name:8}{TRUTH[name]:10.4f}{fitted:10.4f}")
    print("\nThe fused function srcgrad generated:\n")
    print(fused_loss.source)
    summary = {"samples": n, "steps": steps, "truth": TRUTH,
               "fitted": dict(zip(TRUTH, fitted_fused, strict=True)),
               "fitted_numpy": dict(zip(TRUTH, fitted_numpy, strict=True)),
               "final_loss": loss_fused, "final_loss_numpy": loss_numpy,
               "ms_per_step": {"numpy": step_numpy * 1e3, "numba": step_fused * 1e3}}
    write_summary(out, summary)
    return summary


if __name__ == "__main__":
    main()
