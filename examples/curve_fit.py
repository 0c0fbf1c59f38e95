"""Fit a Gaussian s * exp(-(x - mu)^2 / (2 sigma^2)) to noisy samples by least squares.

Three scalar parameters, two hundred data points: srcgrad generates a path for exactly this mix
(Python floats for the parameters, a NumPy array for the data), where the parameters' factors
leave the sums. Writes fit.gif (the curve converging), loss.png and summary.json.

Run:  python examples/curve_fit.py [--quick] [--out DIR]
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from common import output_dir, parser, pyplot, save, save_gif, snapshot_steps, write_summary

from srcgrad import grad
from srcgrad.optim import Adam

TRUTH = {"mu": 0.7, "sigma": 0.9, "s": 2.0}
START = {"mu": -1.5, "sigma": 2.0, "s": 1.0}
NOISE = 0.05  # standard deviation of the noise: the loss cannot go below its square


def gaussian(x: np.ndarray, mu: float, sigma: float, s: float) -> np.ndarray:
    """The model, also used (undifferentiated) for plotting."""
    return s * np.exp(-((x - mu) ** 2) / (2 * sigma**2))


@grad(wrt=("mu", "sigma", "s"))
def fit_loss(x, y, mu, sigma, s):
    """Mean squared error of the Gaussian with parameters (mu, sigma, s) against the data."""
    model = s * np.exp(-((x - mu) ** 2) / (2 * sigma**2))
    return np.mean((model - y) ** 2)


def make_data(n: int = 200, noise: float = NOISE, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Samples of the true Gaussian on [-4, 4] with Gaussian noise."""
    x = np.linspace(-4.0, 4.0, n)
    rng = np.random.default_rng(seed)
    return x, gaussian(x, **TRUTH) + noise * rng.standard_normal(n)


def fit(x: np.ndarray, y: np.ndarray, start: dict[str, float], steps: int, lr: float = 0.05
        ) -> tuple[dict[str, float], list[float], list[tuple[float, float, float]]]:
    """Adam on (mu, sigma, s); returns the fitted parameters, the loss per step, the path."""
    params = (start["mu"], start["sigma"], start["s"])
    optimizer = Adam(lr=lr)
    losses, path = [], [params]
    for _ in range(steps):
        loss, grads = fit_loss(x, y, *params)
        params = optimizer.step(params, tuple(grads))
        losses.append(float(loss))
        path.append(params)
    return dict(zip(("mu", "sigma", "s"), params, strict=True)), losses, path


def main(argv: Sequence[str] | None = None) -> dict:
    options = parser(__doc__).parse_args(argv)
    out = output_dir(options.out, "curve_fit")
    x, y = make_data()
    steps = 300
    began = time.perf_counter()
    fitted, losses, path = fit(x, y, START, steps)
    seconds = time.perf_counter() - began
    print(f"{steps} Adam steps in {seconds * 1e3:.1f} ms "
          f"({seconds / steps * 1e6:.1f} us per step: value, gradient and Adam's update)")
    print(f"{'':8}{'truth':>10}{'fitted':>10}{'error':>9}")
    for name, true in TRUTH.items():
        print(f"{name:8}{true:10.4f}{fitted[name]:10.4f}{abs(fitted[name] / true - 1):9.2%}")

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.semilogy(np.arange(1, steps + 1), losses, label="loss")
    ax.axhline(NOISE**2, ls="--", color="0.4", lw=1, label="noise variance")
    ax.legend()
    ax.set(xlabel="Adam step", ylabel="mean squared error", title="Gaussian fit: loss")
    files = [save(fig, out / "loss.png")]

    frames = snapshot_steps(steps, 15 if options.quick else 45)
    grid = np.linspace(-4, 4, 400)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(x, y, ".", ms=3, color="0.6", label="data")
    ax.plot(grid, gaussian(grid, **TRUTH), "--", color="0.3", lw=1, label="truth")
    (line,) = ax.plot(grid, gaussian(grid, *path[0]), color="C3", lw=2, label="fit")
    caption = ax.set_title("")
    ax.set(xlabel="x", ylim=(-0.3, 2.4))
    ax.legend(loc="upper left")

    def draw(i: int) -> None:
        step = frames[i]
        line.set_ydata(gaussian(grid, *path[step]))
        mu, sigma, s = path[step]
        caption.set_text(f"step {step}: mu={mu:.3f}, sigma={sigma:.3f}, s={s:.3f}")

    files.append(save_gif(fig, draw, len(frames), out / "fit.gif"))
    summary = {"truth": TRUTH, "fitted": fitted, "final_loss": losses[-1], "steps": steps,
               "seconds": seconds, "files": [f.name for f in files]}
    write_summary(out, summary)
    return summary


if __name__ == "__main__":
    main()
