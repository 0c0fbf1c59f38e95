"""Fit a Gaussian to millions of noisy samples held as a chunked Dask array.

The loss and its srcgrad gradient are the ones of curve_fit.py; only the data differ: a
`dask.array` of 4 million samples in 16 chunks (200,000 in 8 with --quick). The generated code
runs on it unchanged and returns lazy dask results; each step evaluates the loss and its three
gradients in one `dask.compute` call, which computes each chunk's contribution in parallel and
adds them up, then Adam updates the three Python floats. With --workers N the chunks are
computed on a local `dask.distributed` cluster of N workers instead of Dask's threads.
Writes fit.png (data, truth, fit and the loss per step) and summary.json.

Run:  python examples/dask_fit.py [--quick] [--out DIR] [--workers N] [--stream]
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np
from common import output_dir, parser, pyplot, save, write_summary

from srcgrad import grad
from srcgrad.optim import Adam

TRUTH = {"mu": 0.7, "sigma": 0.9, "s": 2.0}
START = {"mu": -1.5, "sigma": 2.0, "s": 1.0}
NOISE = 0.05  # standard deviation of the noise: the loss cannot go below its square


@grad(wrt=("mu", "sigma", "s"))
def fit_loss(x, y, mu, sigma, s):
    """Mean squared error of the Gaussian with parameters (mu, sigma, s) against the data."""
    model = s * np.exp(-((x - mu) ** 2) / (2 * sigma**2))
    return np.mean((model - y) ** 2)


def make_data(n: int, chunks: int, seed: int = 0) -> tuple[da.Array, da.Array]:
    """Samples of the true Gaussian on [-4, 4] with noise, generated chunk by chunk by Dask.

    Nothing is computed here: each chunk is drawn where and when it is needed, so the data
    never exist in one piece (and can exceed one machine's memory).
    """
    rng = da.random.default_rng(seed)
    size = -(-n // chunks)  # ceiling division: `chunks` chunks
    x = rng.uniform(-4.0, 4.0, n, chunks=size)
    y = TRUTH["s"] * da.exp(-((x - TRUTH["mu"]) ** 2) / (2 * TRUTH["sigma"] ** 2))
    return x, y + NOISE * rng.standard_normal(n, chunks=size)


def steps_shown(steps: int, progress: bool) -> Iterator[int]:
    """``range(steps)``, with a tqdm progress bar when asked for and installed."""
    if progress:
        try:
            from tqdm import tqdm
        except ImportError:
            print("(install tqdm for a progress bar)")
        else:
            yield from tqdm(range(steps), desc="Adam steps", unit="step", mininterval=0.5)
            return
    yield from range(steps)


def fit(x: Any, y: Any, start: dict[str, float], steps: int, lr: float = 0.1,
        progress: bool = False) -> tuple[dict[str, float], list[float]]:
    """Adam on (mu, sigma, s) over dask (or NumPy) data; the fitted parameters, loss per step.

    ``fit_loss`` returns a lazy dask value and lazy 0-d dask gradients; `dask.compute` on both
    at once evaluates the shared graph once (the model is computed once per chunk, not once for
    the value and again per gradient). Adam then gets plain floats.
    """
    params = (start["mu"], start["sigma"], start["s"])
    optimizer = Adam(lr=lr)
    losses = []
    for _ in steps_shown(steps, progress):
        loss, grads = dask.compute(*fit_loss(x, y, *params))
        params = optimizer.step(params, tuple(float(g) for g in grads))
        losses.append(float(loss))
    return dict(zip(("mu", "sigma", "s"), params, strict=True)), losses


@contextlib.contextmanager
def scheduler(workers: int) -> Iterator[str]:
    """A local `dask.distributed` cluster for the block when ``workers`` > 0, else Dask's
    default threaded scheduler. While a `Client` is open, every `dask.compute` runs on it."""
    if workers <= 0:
        yield "Dask's threaded scheduler"
        return
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=False,
                      dashboard_address=":0") as cluster, Client(cluster):
        yield f"a local distributed cluster of {workers} workers"


def main(argv: Sequence[str] | None = None) -> dict:
    p = parser(__doc__)
    p.add_argument("--workers", type=int, default=0,
                   help="start a local dask.distributed cluster with this many workers")
    p.add_argument("--stream", action="store_true",
                   help="do not keep the data in memory: every step draws the chunks again, "
                        "as it would read data larger than memory from disk")
    options = p.parse_args(argv)
    out = output_dir(options.out, "dask_fit")
    n, chunks, steps = (100_000, 4, 120) if options.quick else (4_000_000, 16, 200)
    x, y = make_data(n, chunks)
    with scheduler(options.workers) as where:
        if not options.stream:
            x, y = dask.persist(x, y)  # drawn once, kept chunk by chunk in (worker) memory
        print(f"{n:,} samples in {x.numblocks[0]} chunks of {x.chunks[0][0]:,}, on {where}")
        began = time.perf_counter()
        fitted, losses = fit(x, y, START, steps, progress=True)
        seconds = time.perf_counter() - began
        sample_x, sample_y = dask.compute(x[:3000], y[:3000])  # a few points for the picture
    print(f"{steps} Adam steps in {seconds:.1f} s ({seconds / steps * 1e3:.0f} ms per step: "
          f"value and gradient over all chunks, and Adam's update)")
    print(f"{'':8}{'truth':>10}{'fitted':>10}{'error':>9}")
    for name, true in TRUTH.items():
        print(f"{name:8}{true:10.4f}{fitted[name]:10.4f}{abs(fitted[name] / true - 1):9.2%}")

    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    grid = np.linspace(-4, 4, 400)

    def gaussian(mu: float, sigma: float, s: float) -> np.ndarray:
        return s * np.exp(-((grid - mu) ** 2) / (2 * sigma**2))

    left.plot(sample_x, sample_y, ".", ms=2, color="0.7", label=f"data (3,000 of {n:,})")
    left.plot(grid, gaussian(**TRUTH), "--", color="0.3", lw=1, label="truth")
    left.plot(grid, gaussian(**fitted), color="C3", lw=2, label="fit")
    left.set(xlabel="x", ylim=(-0.3, 2.4), title=f"Gaussian fit over {chunks} dask chunks")
    left.legend(loc="upper left")
    right.semilogy(np.arange(1, steps + 1), losses, label="loss")
    right.axhline(NOISE**2, ls="--", color="0.4", lw=1, label="noise variance")
    right.set(xlabel="Adam step", ylabel="mean squared error", title="loss")
    right.legend()
    files = [save(fig, out / "fit.png")]
    summary = {"truth": TRUTH, "fitted": fitted, "final_loss": losses[-1], "steps": steps,
               "samples": n, "chunks": chunks, "seconds": seconds,
               "files": [f.name for f in files]}
    write_summary(out, summary)
    return summary


if __name__ == "__main__":
    main()
