"""Toy two-class data sets and a mini-batch loader, for the examples and their tests.

Everything is seeded and returns plain NumPy: ``X`` of shape (n, 2) float64, ``y`` of shape
(n,) int64 with labels 0 and 1, exactly half of each (the odd sample, if any, goes to class 1).
The generators are small enough to read, so a test can know the truth it is checking against:
each leaves a gap between the classes that its default ``noise`` rarely crosses, so a good
classifier can reach well above 97% test accuracy with the defaults.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

__all__ = ["DataLoader", "make_circles", "make_linear", "make_moons", "make_xor",
           "train_test_split"]


def _counts(n: int) -> tuple[int, int]:
    if n < 2:
        raise ValueError(f"need at least 2 samples, got {n}")
    return n // 2, n - n // 2


def _finish(points: list[np.ndarray], rng: np.random.Generator, noise: float
            ) -> tuple[np.ndarray, np.ndarray]:
    """Stack the classes, add Gaussian noise, shuffle (so any prefix has both classes)."""
    X = np.concatenate(points)
    y = np.concatenate([np.full(len(p), label, dtype=np.int64) for label, p in enumerate(points)])
    X = X + noise * rng.standard_normal(X.shape)
    order = rng.permutation(len(y))
    return X[order], y[order]


def make_moons(n: int = 200, noise: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved half circles (class 0 on top, class 1 below), as in scikit-learn."""
    rng = np.random.default_rng(seed)
    n0, n1 = _counts(n)
    t0 = rng.uniform(0.0, math.pi, n0)
    t1 = rng.uniform(0.0, math.pi, n1)
    upper = np.stack([np.cos(t0), np.sin(t0)], axis=1)
    lower = np.stack([1.0 - np.cos(t1), 0.5 - np.sin(t1)], axis=1)
    return _finish([upper, lower], rng, noise)


def make_circles(n: int = 200, noise: float = 0.1, factor: float = 0.5, seed: int = 0
                 ) -> tuple[np.ndarray, np.ndarray]:
    """A ring of radius 1 (class 0) around a ring of radius ``factor`` (class 1)."""
    if not 0.0 < factor < 1.0:
        raise ValueError(f"factor must be in (0, 1), got {factor}")
    rng = np.random.default_rng(seed)
    n0, n1 = _counts(n)
    t0 = rng.uniform(0.0, 2 * math.pi, n0)
    t1 = rng.uniform(0.0, 2 * math.pi, n1)
    outer = np.stack([np.cos(t0), np.sin(t0)], axis=1)
    inner = factor * np.stack([np.cos(t1), np.sin(t1)], axis=1)
    return _finish([outer, inner], rng, noise)


def make_xor(n: int = 200, noise: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Four square clusters: class 1 where the coordinates' signs differ (x0 * x1 < 0).

    Coordinates are at least 0.2 away from the axes before noise, so no linear model can
    separate the classes but a small MLP can, nearly perfectly.
    """
    rng = np.random.default_rng(seed)
    classes = []
    for label, count in enumerate(_counts(n)):
        magnitude = rng.uniform(0.2, 1.0, (count, 2))
        s0 = rng.choice([-1.0, 1.0], count)
        s1 = -s0 if label else s0
        classes.append(magnitude * np.stack([s0, s1], axis=1))
    return _finish(classes, rng, noise)


def make_linear(n: int = 200, noise: float = 0.1, seed: int = 0
                ) -> tuple[np.ndarray, np.ndarray]:
    """Two classes either side of the line x0 + x1 = 0, with a gap of 0.3 between them."""
    rng = np.random.default_rng(seed)
    normal = np.array([1.0, 1.0]) / math.sqrt(2.0)
    along = np.array([1.0, -1.0]) / math.sqrt(2.0)
    classes = []
    for label, count in enumerate(_counts(n)):
        distance = rng.uniform(0.15, 1.2, count) * (1.0 if label else -1.0)
        offset = rng.uniform(-1.2, 1.2, count)
        classes.append(distance[:, None] * normal + offset[:, None] * along)
    return _finish(classes, rng, noise)


def train_test_split(X: np.ndarray, y: np.ndarray, test_fraction: float = 0.25, seed: int = 0
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``X_train, X_test, y_train, y_test``, split at random (seeded).

    The test part has ``round(test_fraction * n)`` samples, clamped to ``1 .. n - 1`` so that
    neither part is ever empty (4 samples with ``test_fraction=0.9`` give 1 to train on, 3 to
    test). Fewer than 2 samples cannot be split: ValueError, as for a fraction outside (0, 1)
    or ``X`` and ``y`` of different lengths.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    n = len(y)
    if len(X) != n:
        raise ValueError(f"X has {len(X)} rows but y has {n}")
    if n < 2:
        raise ValueError(f"need at least 2 samples to split into a training and a test part, "
                         f"got {n}")
    order = np.random.default_rng(seed).permutation(n)
    n_test = min(max(1, round(test_fraction * n)), n - 1)
    test, train = order[:n_test], order[n_test:]
    return X[train], X[test], y[train], y[test]


class DataLoader:
    """Mini-batches of ``(X, y)``; iterate once per epoch.

    With ``shuffle`` the order is redrawn every epoch from one generator seeded by ``seed``, so
    a run is reproducible yet epochs differ. The last batch may be smaller than
    ``batch_size``: every sample is seen once per epoch.
    """

    def __init__(self, X: np.ndarray, y: np.ndarray, batch_size: int = 32,
                 shuffle: bool = True, seed: int = 0) -> None:
        if len(X) != len(y):
            raise ValueError(f"X has {len(X)} rows but y has {len(y)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.X, self.y = X, y
        self.batch_size = batch_size
        self.shuffle = shuffle
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return -(-len(self.y) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        n = len(self.y)
        order = self._rng.permutation(n) if self.shuffle else np.arange(n)
        for start in range(0, n, self.batch_size):
            batch = order[start:start + self.batch_size]
            yield self.X[batch], self.y[batch]
