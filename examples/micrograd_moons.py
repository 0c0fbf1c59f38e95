"""micrograd's demo with srcgrad: a 2-16-16-1 MLP separates two moons, 100% training accuracy.

As in micrograd's demo.ipynb: 100 points with labels -1/+1, ReLU layers, the max-margin loss
mean(relu(1 - y * score)) plus 1e-4 * L2 on every parameter, 100 full-batch gradient steps
with the step size decaying from 1.0 to 0.1. The loss below is the whole model, in NumPy.

For comparison the same step runs in a micrograd-style engine written here (a `Value` per
scalar, a graph per step, backward by topological sort): same initial weights, so its loss and
gradients must agree with srcgrad's to rounding, and its time per step shows the speed-up
(measured with the garbage collector paused, which is generous to the baseline: its closures
form cycles the collector would otherwise chase, making it 3-7x slower still).
Writes boundary.png, training.png, speed.png and summary.json.

Run:  python examples/micrograd_moons.py [--quick] [--out DIR]
"""

from __future__ import annotations

import gc
import itertools
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from common import output_dir, parser, pyplot, save, write_summary

from srcgrad import data, grad, nn
from srcgrad.optim import SGD

SIZES = (2, 16, 16, 1)
ALPHA = 1e-4
STEPS = 100


@grad(wrt=("params",))
def svm_loss(params, X, y):
    """Max-margin loss of the MLP on all points, plus the L2 penalty micrograd's demo uses."""
    W1, b1, W2, b2, W3, b3 = params
    h1 = np.maximum(0.0, X @ W1 + b1)
    h2 = np.maximum(0.0, h1 @ W2 + b2)
    scores = (h2 @ W3 + b3)[:, 0]
    data_loss = nn.hinge(scores, y)  # mean(relu(1 - y * scores))
    l2 = (np.sum(W1 * W1) + np.sum(b1 * b1) + np.sum(W2 * W2) + np.sum(b2 * b2)
          + np.sum(W3 * W3) + np.sum(b3 * b3))
    return data_loss + 1e-4 * l2


def scores_of(params: Sequence[np.ndarray], X: np.ndarray) -> np.ndarray:
    """The MLP's score per point (plain NumPy: for accuracy and the picture)."""
    W1, b1, W2, b2, W3, b3 = params
    h1 = np.maximum(0.0, X @ W1 + b1)
    return (np.maximum(0.0, h1 @ W2 + b2) @ W3 + b3)[:, 0]


def init(seed: int) -> tuple[np.ndarray, ...]:
    """micrograd's initialisation: weights uniform in [-1, 1], biases zero."""
    rng = np.random.default_rng(seed)
    params: list[np.ndarray] = []
    for fan_in, fan_out in itertools.pairwise(SIZES):
        params += [rng.uniform(-1.0, 1.0, (fan_in, fan_out)), np.zeros(fan_out)]
    return tuple(params)


def moons(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """micrograd's data: 100 points, noise 0.1, labels -1 and +1."""
    X, labels = data.make_moons(n=100, noise=0.1, seed=seed)
    return X, 2.0 * labels - 1.0


# --- the baseline: a scalar engine in the style of micrograd ----------------------------------
class Value:
    """One scalar with its gradient and the closure that propagates it (micrograd's design)."""

    __slots__ = ("_backward", "_children", "data", "grad")

    def __init__(self, data: float, children: tuple[Value, ...] = ()) -> None:
        self.data = data
        self.grad = 0.0
        self._backward = _nothing
        self._children = children

    def __add__(self, other: Value | float) -> Value:
        other = other if isinstance(other, Value) else Value(other)
        out = Value(self.data + other.data, (self, other))

        def backward() -> None:
            self.grad += out.grad
            other.grad += out.grad

        out._backward = backward
        return out

    def __mul__(self, other: Value | float) -> Value:
        other = other if isinstance(other, Value) else Value(other)
        out = Value(self.data * other.data, (self, other))

        def backward() -> None:
            self.grad += other.data * out.grad
            other.grad += self.data * out.grad

        out._backward = backward
        return out

    def relu(self) -> Value:
        out = Value(self.data if self.data > 0 else 0.0, (self,))

        def backward() -> None:
            self.grad += (out.data > 0) * out.grad

        out._backward = backward
        return out

    __radd__ = __add__
    __rmul__ = __mul__

    def __neg__(self) -> Value:
        return self * -1.0

    def __sub__(self, other: Value | float) -> Value:
        return self + (-other)

    def __rsub__(self, other: float) -> Value:
        return other + (-self)

    def backward(self) -> None:
        order: list[Value] = []
        seen: set[int] = set()
        stack: list[tuple[Value, bool]] = [(self, False)]
        while stack:  # iterative topological sort: the graph is too deep for recursion
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
            elif id(node) not in seen:
                seen.add(id(node))
                stack.append((node, True))
                stack.extend((child, False) for child in node._children)
        self.grad = 1.0
        for node in reversed(order):
            node._backward()


def _nothing() -> None:
    pass


def scalar_step(weights: list[list[list[Value]]], biases: list[list[Value]], X: np.ndarray,
                y: np.ndarray) -> Value:
    """micrograd's loss on Values: forward pass over every point, then backward."""
    parameters = _flat(weights, biases)
    for v in parameters:
        v.grad = 0.0
    margins = []
    for x, label in zip(X.tolist(), y.tolist(), strict=True):
        activations: list[Any] = x
        for depth, (W, b) in enumerate(zip(weights, biases, strict=True)):
            last = depth == len(weights) - 1
            outputs = []
            for j in range(len(b)):
                total = b[j]
                for i, a in enumerate(activations):
                    total = total + W[i][j] * a
                outputs.append(total if last else total.relu())
            activations = outputs
        margins.append((1.0 - label * activations[0]).relu())
    data_loss = sum(margins, Value(0.0)) * (1.0 / len(margins))
    loss = data_loss + ALPHA * sum((v * v for v in parameters), Value(0.0))
    loss.backward()
    return loss


def scalar_update(weights: list, biases: list, lr: float) -> None:
    for v in _flat(weights, biases):
        v.data -= lr * v.grad


def _flat(weights: list, biases: list) -> list[Value]:
    return ([v for W in weights for row in W for v in row]
            + [v for b in biases for v in b])


def as_values(params: Sequence[np.ndarray]) -> tuple[list, list]:
    """The same weights as Values (nested lists), so both engines start from one point."""
    weights = [[[Value(float(w)) for w in row] for row in W] for W in params[0::2]]
    biases = [[Value(float(b)) for b in bias] for bias in params[1::2]]
    return weights, biases


def scalar_grads(weights: list, biases: list) -> list[np.ndarray]:
    """The scalar engine's gradients as arrays shaped like srcgrad's, for the comparison."""
    out = []
    for W, b in zip(weights, biases, strict=True):
        out += [np.array([[v.grad for v in row] for row in W]), np.array([v.grad for v in b])]
    return out


def main(argv: Sequence[str] | None = None) -> dict:
    p = parser(__doc__)
    p.add_argument("--seed", type=int, default=0, help="seed for the data and the weights")
    options = p.parse_args(argv)
    out = output_dir(options.out, "micrograd_moons")
    X, y = moons(options.seed)
    params = init(options.seed)

    # The same step both ways, from the same weights: values and gradients must agree.
    weights, biases = as_values(params)
    scalar_runs = 1 if options.quick else 3
    scalar_seconds = 0.0
    for run in range(scalar_runs):
        gc.collect()
        gc.disable()  # fair to the baseline: its closures make cycles the collector would chase
        began = time.perf_counter()
        scalar_loss = scalar_step(weights, biases, X, y)
        scalar_update(weights, biases, 1.0)
        scalar_seconds += time.perf_counter() - began
        gc.enable()
        if run == 0:
            first_grads = scalar_grads(weights, biases)
            first_loss = scalar_loss.data
    scalar_seconds /= scalar_runs
    loss, (g,) = svm_loss(params, X, y)  # also compiles: timed below, not here
    gap = max(float(np.max(np.abs(a - b))) for a, b in zip(g, first_grads, strict=True))
    print(f"loss at the start: srcgrad {float(loss):.12f}, scalar engine "
          f"{first_loss:.12f}; largest gradient difference {gap:.1e}")

    optimizer = SGD(lr=1.0)
    history: dict[str, list[float]] = {"loss": [], "accuracy": []}
    srcgrad_seconds = 0.0
    for k in range(STEPS):
        began = time.perf_counter()
        optimizer.lr = 1.0 - 0.9 * k / STEPS  # micrograd's schedule
        loss, (g,) = svm_loss(params, X, y)
        params = optimizer.step(params, g)
        srcgrad_seconds += time.perf_counter() - began
        history["loss"].append(float(loss))
        history["accuracy"].append(float(np.mean((scores_of(params, X) > 0) == (y > 0))))
    srcgrad_seconds /= STEPS
    accuracy = history["accuracy"][-1]
    print(f"after {STEPS} steps: loss {history['loss'][-1]:.4f}, training accuracy "
          f"{accuracy:.0%}")
    print(f"time per step (value, gradient, update): scalar engine "
          f"{scalar_seconds * 1e3:.1f} ms, srcgrad {srcgrad_seconds * 1e6:.0f} us: "
          f"{scalar_seconds / srcgrad_seconds:.0f}x faster")

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    lo, hi = X.min(axis=0) - 0.5, X.max(axis=0) + 0.5
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 250), np.linspace(lo[1], hi[1], 250))
    s = scores_of(params, np.stack([gx.ravel(), gy.ravel()], axis=1)).reshape(gx.shape)
    ax.contourf(gx, gy, s > 0, levels=[-0.5, 0.5, 1.5], colors=["#9ecae1", "#fcbba1"],
                alpha=0.8)
    ax.contour(gx, gy, s, levels=[-1, 0, 1], colors="k", linewidths=[0.6, 1.5, 0.6],
               linestyles=["--", "-", "--"])
    ax.scatter(*X.T, c=np.where(y > 0, "#b2182b", "#1f5fa8"), s=25, edgecolors="white")
    ax.set(title=f"2-16-16-1 MLP, max-margin loss: training accuracy {accuracy:.0%}",
           aspect="equal", xticks=[], yticks=[])
    ax.grid(False)
    files = [save(fig, out / "boundary.png")]

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    left.plot(history["loss"])
    left.set(xlabel="step", ylabel="loss", title="max-margin loss + L2")
    right.plot(history["accuracy"])
    right.set(xlabel="step", ylabel="training accuracy", ylim=(0.4, 1.02), title="accuracy")
    files.append(save(fig, out / "training.png"))

    fig, ax = plt.subplots(figsize=(6, 2.2))
    times = [srcgrad_seconds * 1e3, scalar_seconds * 1e3]
    ax.barh(["srcgrad", "scalar Values\n(micrograd-style)"], times, color=["C3", "0.6"])
    for row, ms in enumerate(times):
        ax.text(ms * 1.15, row, f"{ms:.3g} ms", va="center")
    ax.set_xscale("log")
    ax.set_xlim(0.01, times[1] * 20)
    ax.set(xlabel="milliseconds per training step (log scale)",
           title=f"same step, {scalar_seconds / srcgrad_seconds:.0f}x faster")
    files.append(save(fig, out / "speed.png"))

    summary = {"train_accuracy": accuracy, "final_loss": history["loss"][-1],
               "scalar_step_seconds": scalar_seconds, "srcgrad_step_seconds": srcgrad_seconds,
               "speedup": scalar_seconds / srcgrad_seconds, "gradient_gap": gap,
               "seed": options.seed, "params": list(params), "files": [f.name for f in files]}
    write_summary(out, summary)
    return summary


if __name__ == "__main__":
    main()
