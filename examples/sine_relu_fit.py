"""Fit sin(x) on [-pi, pi] with a sum of 30 ReLUs: f(x) = sum_i a_i relu(w_i x + b_i) + c.

A one-hidden-layer network written as one line of NumPy. Each ReLU contributes a kink at
x = -b_i / w_i; training moves the kinks to where the sine bends most. Writes fit.png
(the fit, its ReLU pieces and kinks), fit.gif, loss.png and summary.json.

Run:  python examples/sine_relu_fit.py [--quick] [--out DIR]
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from common import output_dir, parser, pyplot, save, save_gif, snapshot_steps, write_summary

from srcgrad import grad, nn
from srcgrad.optim import Adam

UNITS = 30


@grad(wrt=("params",))
def relu_loss(params, x, y):
    """Mean squared error of the ReLU sum against sin on the sample points."""
    w, b, a, c = params
    hidden = np.maximum(0.0, x[:, None] * w + b)
    return nn.mse(hidden @ a + c, y)


def predict(params: tuple[np.ndarray, ...], x: np.ndarray) -> np.ndarray:
    w, b, a, c = params
    return np.maximum(0.0, x[:, None] * w + b) @ a + c


def init(seed: int = 0) -> tuple[np.ndarray, ...]:
    """Kinks spread evenly at random over the interval, half the units facing each way."""
    rng = np.random.default_rng(seed)
    w = rng.choice([-1.0, 1.0], UNITS)
    knots = rng.uniform(-np.pi, np.pi, UNITS)
    return w, -w * knots, 0.1 * rng.standard_normal(UNITS), np.zeros(1)


def train(steps: int, seed: int = 0, n: int = 200, lr: float = 0.01
          ) -> tuple[tuple[np.ndarray, ...], list[float], dict[int, tuple[np.ndarray, ...]], float]:
    """Adam, full batch; returns the parameters, the loss per step, snapshots and the time.

    The step size decays linearly to a tenth: at a constant rate Adam keeps kicking the fit
    out of the narrow valley it finds (visible as spikes in the loss).
    """
    x = np.linspace(-np.pi, np.pi, n)
    y = np.sin(x)
    params = init(seed)
    optimizer = Adam(lr=lr)
    keep = set(snapshot_steps(steps, 40))
    losses, snapshots = [], {0: params}
    began = time.perf_counter()
    for step in range(1, steps + 1):
        optimizer.lr = lr * (1.0 - 0.9 * step / steps)
        loss, (g,) = relu_loss(params, x, y)
        params = optimizer.step(params, g)
        losses.append(float(loss))
        if step in keep:
            snapshots[step] = params
    return params, losses, snapshots, time.perf_counter() - began


def main(argv: Sequence[str] | None = None) -> dict:
    options = parser(__doc__).parse_args(argv)
    out = output_dir(options.out, "sine_relu_fit")
    steps = 3000
    params, losses, snapshots, seconds = train(steps)
    grid = np.linspace(-np.pi, np.pi, 1001)  # finer than the training points: no overfit hiding
    error = float(np.max(np.abs(predict(params, grid) - np.sin(grid))))
    print(f"{steps} Adam steps in {seconds:.2f} s; final training MSE {losses[-1]:.2e}; "
          f"largest error on a fine grid {error:.3f}")

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.semilogy(np.arange(1, steps + 1), losses)
    ax.set(xlabel="Adam step", ylabel="mean squared error", title=f"sin with {UNITS} ReLUs: loss")
    files = [save(fig, out / "loss.png")]

    w, b, a, _ = params
    fig, ax = plt.subplots(figsize=(6.5, 4))
    pieces = a * np.maximum(0.0, grid[:, None] * w + b)
    ax.plot(grid, pieces, color="C0", lw=0.7, alpha=0.35)
    ax.plot(grid, np.sin(grid), "--", color="0.3", lw=1, label="sin x")
    ax.plot(grid, predict(params, grid), color="C3", lw=2, label=f"sum of {UNITS} ReLUs")
    knots = -b / w
    inside = np.abs(knots) <= np.pi
    ax.plot(knots[inside], predict(params, knots[inside]), "k|", ms=12, label="kinks")
    ax.set(xlabel="x", ylim=(-1.6, 1.6), title="thin lines: the individual a_i relu(w_i x + b_i)")
    ax.legend(loc="upper left")
    files.append(save(fig, out / "fit.png"))

    steps_shown = sorted(snapshots) if not options.quick else sorted(snapshots)[::4]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(grid, np.sin(grid), "--", color="0.3", lw=1, label="sin x")
    (line,) = ax.plot(grid, predict(snapshots[0], grid), color="C3", lw=2, label="ReLU sum")
    (marks,) = ax.plot([], [], "k|", ms=10)
    caption = ax.set_title("")
    ax.set(xlabel="x", ylim=(-1.6, 1.6))
    ax.legend(loc="upper left")

    def draw(i: int) -> None:
        p = snapshots[steps_shown[i]]
        line.set_ydata(predict(p, grid))
        k = -p[1] / p[0]
        k = k[np.abs(k) <= np.pi]
        marks.set_data(k, predict(p, k))
        caption.set_text(f"step {steps_shown[i]}")

    files.append(save_gif(fig, draw, len(steps_shown), out / "fit.gif"))
    summary = {"units": UNITS, "steps": steps, "final_mse": losses[-1], "max_error": error,
               "seconds": seconds, "params": params, "files": [f.name for f in files]}
    write_summary(out, summary)
    return summary


if __name__ == "__main__":
    main()
