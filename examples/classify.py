"""Train a small MLP classifier on a 2-D toy data set and draw its decision boundary.

The network is 2 -> hidden -> hidden -> 2 with ReLUs and a softmax cross-entropy loss, written
as plain NumPy in one decorated function; srcgrad supplies its gradient, srcgrad.optim's SGD
(with momentum and weight decay) applies it, srcgrad.data supplies the points and mini-batches.
A quarter of the points are held out to measure test accuracy.

Writes, per data set: <name>_boundary.png (final boundary, train and test points),
<name>_training.png (loss and accuracy per epoch), <name>_epochs.png (the boundary as it forms)
and with --graphviz <name>_loss.dot (+ .svg when Graphviz's `dot` is installed); with
--dataset all also all_boundaries.png. summary.json holds accuracies and learned weights.

Examples:
  python examples/classify.py --dataset moons
  python examples/classify.py --dataset all --out /tmp/classify
  python examples/classify.py --dataset xor --hidden 8 --epochs 200 --lr 0.05 --graphviz
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from common import output_dir, parser, pyplot, save, write_summary

from srcgrad import data, grad, nn
from srcgrad.optim import SGD

DATASETS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {
    "linear": data.make_linear, "xor": data.make_xor, "moons": data.make_moons,
    "circles": data.make_circles}
SAMPLES = 800  # per data set, before the train/test split
WEIGHT_DECAY = 1e-4


@grad(wrt=("params",))
def classifier_loss(params, X, y):
    """Softmax cross-entropy of a 2-hidden-layer ReLU network on a batch (X, y)."""
    W1, b1, W2, b2, W3, b3 = params
    h1 = np.maximum(0.0, X @ W1 + b1)
    h2 = np.maximum(0.0, h1 @ W2 + b2)
    return nn.softmax_cross_entropy(h2 @ W3 + b3, y)


def logits(params: Sequence[np.ndarray], X: np.ndarray) -> np.ndarray:
    """The network's class scores (no gradient needed: plain NumPy)."""
    W1, b1, W2, b2, W3, b3 = params
    h1 = np.maximum(0.0, X @ W1 + b1)
    return np.maximum(0.0, h1 @ W2 + b2) @ W3 + b3


def probability(params: Sequence[np.ndarray], X: np.ndarray) -> np.ndarray:
    """P(class 1 | x), for shading the plane."""
    z = logits(params, X)
    return 1.0 / (1.0 + np.exp(z[:, 0] - z[:, 1]))


def progress(epochs: int, label: str, quiet: bool) -> Any:
    """A tqdm bar over epochs, or a plain fallback when tqdm is not installed."""
    try:
        from tqdm import tqdm
    except ImportError:
        tqdm = None
    if tqdm is not None and not quiet:
        return tqdm(total=epochs, desc=label, unit="epoch")

    class Plain:
        def __init__(self) -> None:
            self.n = 0
            self.postfix = ""

        def update(self, k: int = 1) -> None:
            self.n += k
            if not quiet and (self.n % max(1, epochs // 10) == 0 or self.n == epochs):
                print(f"{label}: epoch {self.n}/{epochs} {self.postfix}")

        def set_postfix_str(self, text: str) -> None:
            self.postfix = text

        def close(self) -> None:
            pass

    return Plain()


def train(name: str, options: Any) -> dict[str, Any]:
    """Train on one data set; returns accuracies, history, parameters and snapshots."""
    X, y = DATASETS[name](n=SAMPLES, seed=options.seed)
    X_train, X_test, y_train, y_test = data.train_test_split(X, y, 0.25, seed=options.seed)
    params = nn.mlp_init([2, options.hidden, options.hidden, 2], seed=options.seed)
    optimizer = SGD(lr=options.lr, momentum=options.momentum, weight_decay=WEIGHT_DECAY)
    loader = data.DataLoader(X_train, y_train, options.batch_size, shuffle=True,
                             seed=options.seed)
    history: dict[str, list[float]] = {"loss": [], "train": [], "test": []}
    shown = sorted({1, max(1, options.epochs // 10), max(1, options.epochs // 3),
                    options.epochs})
    snapshots = {}
    bar = progress(options.epochs, f"{name:>7}", options.quiet)
    began = time.perf_counter()
    for epoch in range(1, options.epochs + 1):
        total = 0.0
        for X_batch, y_batch in loader:
            loss, (g,) = classifier_loss(params, X_batch, y_batch)
            params = optimizer.step(params, g)
            total += float(loss) * len(y_batch)
        history["loss"].append(total / len(y_train))
        history["train"].append(nn.accuracy(logits(params, X_train), y_train))
        history["test"].append(nn.accuracy(logits(params, X_test), y_test))
        if epoch in shown:
            snapshots[epoch] = params
        bar.set_postfix_str(f"loss {history['loss'][-1]:.4f}  train {history['train'][-1]:.3f}"
                            f"  test {history['test'][-1]:.3f}")
        bar.update(1)
    bar.close()
    seconds = time.perf_counter() - began
    return {"name": name, "params": params, "history": history, "snapshots": snapshots,
            "seconds": seconds, "train": (X_train, y_train), "test": (X_test, y_test),
            "test_accuracy": history["test"][-1], "train_accuracy": history["train"][-1]}


RESOLUTION = {"full": 200, "quick": 90}  # grid points per side of a decision-boundary image


def _plane(X: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A square window around the points (so every panel has the same shape) as a grid."""
    centre = (X.min(axis=0) + X.max(axis=0)) / 2
    half = float(np.max(X.max(axis=0) - X.min(axis=0))) / 2 + 0.3
    axis = np.linspace(-half, half, steps)
    gx, gy = np.meshgrid(centre[0] + axis, centre[1] + axis)
    return gx, gy, np.stack([gx.ravel(), gy.ravel()], axis=1)


def draw_boundary(ax: Any, params: Sequence[np.ndarray], result: dict[str, Any],
                  title: str, test_points: bool = True, resolution: int = 200) -> None:
    """Shade P(class 1), draw the 0.5 contour and the points (test points as crosses)."""
    X_train, y_train = result["train"]
    X_test, y_test = result["test"]
    gx, gy, grid = _plane(np.concatenate([X_train, X_test]), resolution)
    p = probability(params, grid).reshape(gx.shape)
    ax.contourf(gx, gy, p, levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.4)
    ax.contour(gx, gy, p, levels=[0.5], colors="k", linewidths=1.5)
    colours = np.array(["#1f5fa8", "#b2182b"])
    ax.scatter(*X_train.T, c=colours[y_train], s=9, edgecolors="white", linewidths=0.3)
    if test_points:
        ax.scatter(*X_test.T, c=colours[y_test], s=22, marker="x", linewidths=1.0)
    ax.set(title=title, xticks=[], yticks=[], aspect="equal")
    ax.grid(False)


def plots(result: dict[str, Any], out: Path, resolution: int) -> list[Path]:
    """The three pictures of one trained data set."""
    plt = pyplot()
    name, history = result["name"], result["history"]
    fig, ax = plt.subplots(figsize=(5, 5))
    draw_boundary(ax, result["params"], result,
                  f"{name}: test accuracy {result['test_accuracy']:.3f}", resolution=resolution)
    files = [save(fig, out / f"{name}_boundary.png")]

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    epochs = np.arange(1, len(history["loss"]) + 1)
    left.semilogy(epochs, history["loss"])
    left.set(xlabel="epoch", ylabel="cross-entropy (train)", title=f"{name}: loss")
    right.plot(epochs, history["train"], label="train")
    right.plot(epochs, history["test"], label="test")
    right.set(xlabel="epoch", ylabel="accuracy", ylim=(0.4, 1.02), title=f"{name}: accuracy")
    right.legend(loc="lower right")
    files.append(save(fig, out / f"{name}_training.png"))

    snapshots = result["snapshots"]
    fig, axes = plt.subplots(1, len(snapshots), figsize=(3 * len(snapshots), 3.2))
    for ax, (epoch, params) in zip(np.atleast_1d(axes), snapshots.items(), strict=True):
        draw_boundary(ax, params, result, f"epoch {epoch}", test_points=False,
                      resolution=resolution)
    files.append(save(fig, out / f"{name}_epochs.png", dpi=80))
    return files


def montage(results: list[dict[str, Any]], out: Path, resolution: int) -> Path:
    """All data sets' final boundaries side by side."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(results), figsize=(3.3 * len(results), 3.5))
    for ax, result in zip(np.atleast_1d(axes), results, strict=True):
        draw_boundary(ax, result["params"], result,
                      f"{result['name']}: test {result['test_accuracy']:.3f}",
                      resolution=resolution)
    return save(fig, out / "all_boundaries.png", dpi=90)


def graphviz(out: Path, name: str) -> list[Path]:
    """The loss's computation graph as DOT, and SVG when Graphviz's `dot` is on the PATH."""
    dot_path = out / f"{name}_loss.dot"
    dot_path.write_text(classifier_loss.graph.to_dot())
    print(f"wrote {dot_path}")
    written = [dot_path]
    dot = shutil.which("dot")
    if dot is None:
        print("Graphviz `dot` not found: SVG skipped (the .dot file opens in any Graphviz "
              "viewer)")
        return written
    svg_path = dot_path.with_suffix(".svg")
    subprocess.run([dot, "-Tsvg", str(dot_path), "-o", str(svg_path)], check=True)
    print(f"wrote {svg_path}")
    return [*written, svg_path]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = parser(__doc__)
    p.add_argument("--dataset", choices=[*DATASETS, "all"], default="moons",
                   help="which data set (default: moons; all: the four in turn)")
    p.add_argument("--epochs", type=int, default=None,
                   help="passes over the training set (default 100; 25 with --quick)")
    p.add_argument("--lr", type=float, default=0.05, help="learning rate (default 0.05)")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default 0.9)")
    p.add_argument("--batch-size", type=int, default=32, help="mini-batch size (default 32)")
    p.add_argument("--hidden", type=int, default=16,
                   help="width of each of the two hidden layers (default 16)")
    p.add_argument("--seed", type=int, default=0, help="seed for data, weights and batches")
    p.add_argument("--graphviz", action="store_true",
                   help="also write the loss's computation graph (.dot, .svg if possible)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--no-plots", action="store_true",
                   help="train and report only: no images (summary.json is still written)")
    options = p.parse_args(argv)
    if options.epochs is None:
        options.epochs = 25 if options.quick else 100
    out = output_dir(options.out, "classify")
    resolution = RESOLUTION["quick" if options.quick else "full"]
    names = list(DATASETS) if options.dataset == "all" else [options.dataset]
    results, files = [], []
    for name in names:
        result = train(name, options)
        results.append(result)
        print(f"{name}: train accuracy {result['train_accuracy']:.3f}, test accuracy "
              f"{result['test_accuracy']:.3f}, {options.epochs} epochs in "
              f"{result['seconds']:.2f} s")
        if not options.no_plots:
            files += plots(result, out, resolution)
    if len(results) > 1 and not options.no_plots:
        files.append(montage(results, out, resolution))
    if options.graphviz:
        files += graphviz(out, names[-1])
    summary = {
        "options": {k: v for k, v in vars(options).items() if k != "out"},
        "datasets": {r["name"]: {"test_accuracy": r["test_accuracy"],
                                 "train_accuracy": r["train_accuracy"],
                                 "seconds": r["seconds"], "params": list(r["params"])}
                     for r in results},
        "files": [f.name for f in files]}
    write_summary(out, summary)
    return summary


if __name__ == "__main__":
    main()
