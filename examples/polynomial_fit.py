"""Fit a cubic to noisy samples by gradient descent with momentum, and check it against the
closed-form least-squares answer.

The model is Horner's rule on a coefficient array, c0 + x (c1 + x (c2 + x c3)); the gradient
comes from srcgrad, the reference from np.linalg.lstsq. Writes fit.gif, loss.png, fit.png and
summary.json.

Run:  python examples/polynomial_fit.py [--quick] [--out DIR]
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from common import output_dir, parser, pyplot, save, save_gif, snapshot_steps, write_summary

from srcgrad import grad
from srcgrad.optim import SGD

TRUTH = np.array([0.5, -1.2, -0.8, 1.1])  # c0 + c1 x + c2 x^2 + c3 x^3


@grad(wrt=("c",))
def poly_loss(c, x, y):
    """Mean squared error of the cubic with coefficients c (lowest degree first)."""
    model = c[0] + x * (c[1] + x * (c[2] + x * c[3]))
    return np.mean((model - y) ** 2)


def cubic(c: np.ndarray, x: np.ndarray) -> np.ndarray:
    return c[0] + x * (c[1] + x * (c[2] + x * c[3]))


def make_data(truth: np.ndarray = TRUTH, n: int = 60, noise: float = 0.1, seed: int = 0
              ) -> tuple[np.ndarray, np.ndarray]:
    """Samples at random points of [-1.5, 1.5] with Gaussian noise."""
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(-1.5, 1.5, n))
    return x, cubic(truth, x) + noise * rng.standard_normal(n)


def least_squares(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The exact minimiser of the same loss, for comparison."""
    return np.linalg.lstsq(np.vander(x, 4, increasing=True), y, rcond=None)[0]


def fit(x: np.ndarray, y: np.ndarray, steps: int = 400, lr: float = 0.02, momentum: float = 0.9
        ) -> tuple[np.ndarray, list[float], list[np.ndarray]]:
    """Gradient descent with momentum from c = 0; the loss and coefficients at every step."""
    c = np.zeros(4)
    optimizer = SGD(lr=lr, momentum=momentum)
    losses, path = [], [c]
    for _ in range(steps):
        loss, (g,) = poly_loss(c, x, y)
        c = optimizer.step(c, g)
        losses.append(float(loss))
        path.append(c)
    return c, losses, path


def main(argv: Sequence[str] | None = None) -> dict:
    options = parser(__doc__).parse_args(argv)
    out = output_dir(options.out, "polynomial_fit")
    x, y = make_data()
    steps = 400
    began = time.perf_counter()
    c, losses, path = fit(x, y, steps)
    seconds = time.perf_counter() - began
    exact = least_squares(x, y)
    print(f"{steps} momentum steps in {seconds * 1e3:.0f} ms")
    print(f"{'':4}{'truth':>9}{'gradient':>10}{'lstsq':>9}")
    for k in range(4):
        print(f"c{k:<3}{TRUTH[k]:9.4f}{c[k]:10.4f}{exact[k]:9.4f}")
    gap = float(np.max(np.abs(c - exact)))
    print(f"largest difference from the closed-form least squares: {gap:.1e}")

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    minimum = float(np.mean((cubic(exact, x) - y) ** 2))
    excess = np.maximum(np.array(losses) - minimum, 1e-16)
    ax.semilogy(np.arange(1, steps + 1), excess)
    ax.set(xlabel="step (SGD, momentum 0.9)", ylabel="loss - least-squares minimum",
           title=f"Cubic fit: excess loss (minimum {minimum:.4f})")
    files = [save(fig, out / "loss.png")]

    grid = np.linspace(-1.6, 1.6, 300)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(x, y, "o", ms=4, color="0.6", label="data")
    ax.plot(grid, cubic(TRUTH, grid), "--", color="0.3", lw=1, label="truth")
    for step, alpha in ((5, 0.3), (15, 0.5), (40, 0.7)):
        ax.plot(grid, cubic(path[step], grid), color="C0", alpha=alpha, lw=1,
                label=f"step {step}")
    ax.plot(grid, cubic(c, grid), color="C3", lw=2, label=f"step {steps}")
    ax.set(xlabel="x", title="gradient descent towards the least-squares cubic")
    ax.legend(fontsize=8)
    files.append(save(fig, out / "fit.png"))

    frames = snapshot_steps(steps, 15 if options.quick else 45)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(x, y, "o", ms=4, color="0.6", label="data")
    ax.plot(grid, cubic(TRUTH, grid), "--", color="0.3", lw=1, label="truth")
    (line,) = ax.plot(grid, cubic(path[0], grid), color="C3", lw=2, label="fit")
    caption = ax.set_title("")
    ax.set(xlabel="x", ylim=(float(y.min()) - 0.5, float(y.max()) + 0.5))
    ax.legend(loc="upper left")

    def draw(i: int) -> None:
        p = path[frames[i]]
        line.set_ydata(cubic(p, grid))
        caption.set_text(f"step {frames[i]}: c = [{', '.join(f'{v:.2f}' for v in p)}]")

    files.append(save_gif(fig, draw, len(frames), out / "fit.gif"))
    summary = {"truth": TRUTH, "fitted": c, "least_squares": exact, "steps": steps,
               "seconds": seconds, "final_loss": losses[-1], "files": [f.name for f in files]}
    write_summary(out, summary)
    return summary


if __name__ == "__main__":
    main()
