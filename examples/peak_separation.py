"""Separate two overlapping Gaussian peaks from their noisy sum (six parameters).

The measured signal looks like one lopsided bump; least squares on a two-peak model recovers
each peak's centre, width and height. Writes separation.gif (both components converging),
loss.png, result.png and summary.json; prints the recovered parameters next to the truth.

Run:  python examples/peak_separation.py [--quick] [--out DIR]
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from common import output_dir, parser, pyplot, save, save_gif, snapshot_steps, write_summary

from srcgrad import grad
from srcgrad.optim import Adam

NAMES = ("mu1", "sigma1", "s1", "mu2", "sigma2", "s2")
TRUTH = {"mu1": -0.6, "sigma1": 0.5, "s1": 1.0, "mu2": 0.5, "sigma2": 0.7, "s2": 0.6}
START = {"mu1": -1.5, "sigma1": 1.0, "s1": 0.5, "mu2": 1.5, "sigma2": 1.0, "s2": 0.5}
NOISE = 0.005


def peak(x: np.ndarray, mu: float, sigma: float, s: float) -> np.ndarray:
    """One Gaussian peak (for plotting; the loss spells the model out for srcgrad)."""
    return s * np.exp(-((x - mu) ** 2) / (2 * sigma**2))


@grad(wrt=NAMES)
def peak_loss(x, y, mu1, sigma1, s1, mu2, sigma2, s2):
    """Mean squared error of a two-peak model against the measured signal."""
    first = s1 * np.exp(-((x - mu1) ** 2) / (2 * sigma1**2))
    second = s2 * np.exp(-((x - mu2) ** 2) / (2 * sigma2**2))
    return np.mean((first + second - y) ** 2)


def make_data(truth: dict[str, float] = TRUTH, n: int = 300, noise: float = NOISE,
              seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The sum of the two true peaks on [-3, 3], with Gaussian noise."""
    x = np.linspace(-3.0, 3.0, n)
    clean = (peak(x, truth["mu1"], truth["sigma1"], truth["s1"])
             + peak(x, truth["mu2"], truth["sigma2"], truth["s2"]))
    return x, clean + noise * np.random.default_rng(seed).standard_normal(n)


def fit(x: np.ndarray, y: np.ndarray, start: dict[str, float] = START, steps: int = 1500,
        lr: float = 0.02) -> tuple[dict[str, float], list[float], list[tuple[float, ...]]]:
    """Adam on all six parameters; returns the fit, the loss per step and the path taken."""
    params = tuple(start[name] for name in NAMES)
    optimizer = Adam(lr=lr)
    losses, path = [], [params]
    for _ in range(steps):
        loss, grads = peak_loss(x, y, *params)
        params = optimizer.step(params, tuple(grads))
        losses.append(float(loss))
        path.append(params)
    return dict(zip(NAMES, params, strict=True)), losses, path


def relative_errors(fitted: dict[str, float], truth: dict[str, float]) -> dict[str, float]:
    """|fitted / truth - 1| per parameter: the issue's 5% criterion."""
    return {name: abs(fitted[name] / truth[name] - 1.0) for name in NAMES}


def main(argv: Sequence[str] | None = None) -> dict:
    options = parser(__doc__).parse_args(argv)
    out = output_dir(options.out, "peak_separation")
    x, y = make_data()
    steps = 1500
    began = time.perf_counter()
    fitted, losses, path = fit(x, y, steps=steps)
    seconds = time.perf_counter() - began
    errors = relative_errors(fitted, TRUTH)
    print(f"{steps} Adam steps in {seconds * 1e3:.0f} ms")
    print(f"{'':8}{'truth':>9}{'fitted':>9}{'error':>8}")
    for name in NAMES:
        print(f"{name:8}{TRUTH[name]:9.4f}{fitted[name]:9.4f}{errors[name]:8.2%}")
    print(f"largest relative error: {max(errors.values()):.2%}")

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.semilogy(np.arange(1, steps + 1), losses, label="loss")
    ax.axhline(NOISE**2, ls="--", color="0.4", lw=1, label="noise variance")
    ax.set(xlabel="Adam step", ylabel="mean squared error", title="Peak separation: loss")
    ax.legend()
    files = [save(fig, out / "loss.png")]

    grid = np.linspace(-3, 3, 400)

    def panel(ax: object, p: tuple[float, ...]) -> list:
        a, b = peak(grid, *p[:3]), peak(grid, *p[3:])
        return [ax.plot(grid, a, color="C0", lw=2, label="peak 1")[0],
                ax.plot(grid, b, color="C1", lw=2, label="peak 2")[0],
                ax.plot(grid, a + b, color="C3", lw=1.5, label="sum")[0]]

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(x, y, ".", ms=3, color="0.6", label="measured")
    for key, colour in (("1", "C0"), ("2", "C1")):
        ax.plot(grid, peak(grid, TRUTH["mu" + key], TRUTH["sigma" + key], TRUTH["s" + key]),
                ":", color=colour, lw=1.5)
    panel(ax, tuple(fitted[n] for n in NAMES))
    ax.set(xlabel="x", title=f"recovered peaks (dotted: truth); worst error "
                             f"{max(errors.values()):.1%}")
    ax.legend(loc="upper right")
    files.append(save(fig, out / "result.png"))

    frames = snapshot_steps(steps, 15 if options.quick else 50)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(x, y, ".", ms=3, color="0.6", label="measured")
    lines = panel(ax, path[0])
    caption = ax.set_title("")
    ax.set(xlabel="x", ylim=(-0.15, 1.35))
    ax.legend(loc="upper right")

    def draw(i: int) -> None:
        p = path[frames[i]]
        a, b = peak(grid, *p[:3]), peak(grid, *p[3:])
        for line, values in zip(lines, (a, b, a + b), strict=True):
            line.set_ydata(values)
        caption.set_text(f"step {frames[i]}: centres {p[0]:.2f} and {p[3]:.2f}")

    files.append(save_gif(fig, draw, len(frames), out / "separation.gif"))
    summary = {"truth": TRUTH, "fitted": fitted, "relative_errors": errors,
               "final_loss": losses[-1], "steps": steps, "seconds": seconds,
               "files": [f.name for f in files]}
    write_summary(out, summary)
    return summary


if __name__ == "__main__":
    main()
