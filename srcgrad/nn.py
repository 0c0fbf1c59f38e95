"""Initialisers and losses for small networks trained with srcgrad.

The losses are plain NumPy functions inside srcgrad's subset, so ``grad(nn.mse)`` works as
is. Each also has a ``<name>_derive`` beside it, which is how srcgrad differentiates a call of
a user function from inside another decorated function: the loss body is not inlined, its
gradient comes from the derivative written here (the tests check both against autograd).
Each partial is shaped like its argument, as the inlined body's would be: where the arguments
broadcast against each other (an ``(n, 1)`` prediction and an ``(n,)`` target), it is summed
over the broadcast axes. ``softmax_cross_entropy``'s integer labels get a zero partial: they
are indices, not numbers a loss varies smoothly with.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .runtime import sum_to

__all__ = ["accuracy", "he_init", "hinge", "hinge_derive", "mlp_init", "mse", "mse_derive",
           "softmax_cross_entropy", "softmax_cross_entropy_derive", "xavier_init"]


# --- initialisers ------------------------------------------------------------------------------
def he_init(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    """Normal weights with variance 2 / fan_in (He et al., 2015).

    Keeps the variance of activations constant through ReLU layers, which zero half their
    inputs; without it a deep ReLU net's signal shrinks or blows up layer by layer.
    """
    return rng.standard_normal((fan_in, fan_out)) * math.sqrt(2.0 / fan_in)


def xavier_init(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    """Uniform weights with variance 2 / (fan_in + fan_out) (Glorot & Bengio, 2010).

    The balance between forward and backward variance suits tanh and sigmoid layers.
    """
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, (fan_in, fan_out))


def mlp_init(sizes: Sequence[int], seed: int = 0, init: str = "he") -> tuple[np.ndarray, ...]:
    """Parameters ``(W1, b1, W2, b2, ...)`` of an MLP with layer widths ``sizes``.

    A flat tuple, because a decorated loss unpacks it in one line (``W1, b1, W2, b2 = params``)
    and its gradient comes back as a tuple in the same order. Biases start at zero.
    """
    if len(sizes) < 2:
        raise ValueError(f"an MLP needs at least an input and an output size, got {sizes}")
    initialise = {"he": he_init, "xavier": xavier_init}.get(init)
    if initialise is None:
        raise ValueError(f"init must be 'he' or 'xavier', got {init!r}")
    rng = np.random.default_rng(seed)
    params: list[np.ndarray] = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        params += [initialise(rng, fan_in, fan_out), np.zeros(fan_out)]
    return tuple(params)


# --- losses --------------------------------------------------------------------------------------
def mse(pred: Any, target: Any) -> Any:
    """Mean squared error between arrays of one shape."""
    return np.mean((pred - target) ** 2)


def mse_derive(pred: Any, target: Any) -> tuple[Any, Any]:
    """Partials of `mse` with respect to ``pred`` and ``target``, each shaped like it."""
    diff = pred - target
    scaled = 2.0 * diff / np.size(diff)  # the mean is over the broadcast shape
    return _shaped_like(scaled, pred), _shaped_like(-scaled, target)


def _shaped_like(partial: Any, argument: Any) -> Any:
    """``partial`` (of the broadcast shape) summed over the axes ``argument`` was broadcast
    along: the argument's own partial, as srcgrad's backward pass reduces it (`sum_to`)."""
    shape = np.shape(argument)
    if np.shape(partial) == shape:
        return partial
    reduced = sum_to(partial, shape, np.shape(partial))
    return float(reduced) if isinstance(argument, (int, float)) else reduced


def hinge(scores: Any, y: Any) -> Any:
    """Max-margin loss ``mean(max(0, 1 - y * score))`` for labels ``y`` in {-1, +1}.

    Zero once every sample is on its side with a margin of 1; what micrograd's demo trains.
    """
    return np.mean(np.maximum(0.0, 1.0 - y * scores))


def hinge_derive(scores: Any, y: Any) -> tuple[Any, Any]:
    """Partials of `hinge` with respect to ``scores`` and ``y``, each shaped like it."""
    active = (1.0 - y * scores > 0.0).astype(float)
    scale = -active / np.size(active)  # the mean is over the broadcast shape
    return _shaped_like(scale * y, scores), _shaped_like(scale * scores, y)


def softmax_cross_entropy(logits: Any, labels: Any) -> Any:
    """Mean cross-entropy of integer ``labels`` under ``softmax(logits)``, logits (n, classes).

    The maximum is subtracted first, so large logits do not overflow ``exp``.
    """
    z = logits - np.max(logits, axis=1, keepdims=True)
    logp = z - np.log(np.sum(np.exp(z), axis=1, keepdims=True))
    return -np.mean(logp[np.arange(len(labels)), labels])


def softmax_cross_entropy_derive(logits: Any, labels: Any) -> tuple[Any, float]:
    """Partial of `softmax_cross_entropy`: ``(softmax(logits) - onehot(labels)) / n``.

    Shaped like ``logits``. Labels that broadcast against the row indices (an ``(n, 1)``
    column picks every label for every row, as the loss's own indexing does) are counted
    entry by entry, so the partial stays that of the loss as written.
    """
    z = logits - np.max(logits, axis=1, keepdims=True)
    p = np.exp(z)
    p /= np.sum(p, axis=1, keepdims=True)
    rows, cols = np.broadcast_arrays(np.arange(len(labels)), labels)
    if rows.ndim == 1:  # the usual (n,) labels: one entry per row
        p[rows, cols] -= 1.0
        return p / rows.size, 0.0
    per_row = np.bincount(rows.ravel(), minlength=len(p))  # entries averaged, per row
    p *= per_row[:, None]
    np.add.at(p, (rows.ravel(), cols.ravel()), -1.0)
    return p / rows.size, 0.0


def accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of correct predictions: argmax over columns, or the sign of a single score.

    ``labels`` are class indices for 2-D scores; for 1-D scores, 0/1 or -1/+1 labels.
    """
    scores = np.asarray(scores)
    labels = np.asarray(labels)
    if scores.ndim == 2 and scores.shape[1] > 1:
        predicted = np.argmax(scores, axis=1)
    else:
        positive = scores.reshape(-1) > 0
        predicted = np.where(positive, 1, -1 if labels.min() < 0 else 0)
    return float(np.mean(predicted == labels))
