"""Optimizers that apply srcgrad gradients to structured parameters.

A srcgrad gradient has the structure of its parameter: a tuple, list or dict (nested) of
arrays, or a lone array or float. The optimizers here walk that structure, keep their state
(velocities, moments) per leaf, matched by the leaf's path (a dict's keys, not their order),
and return *new* parameters of the same structure, each leaf of its parameter's type (an
integer array becomes float64, as in NumPy's ``p - lr * g``; float32 stays float32)::

    opt = Adam(lr=0.01)
    for epoch in range(100):
        value, (g,) = loss(params, X, y)
        params = opt.step(params, g)

Returning new values rather than updating in place is deliberate: parameters may be Python
floats (a curve fit's ``mu``), which cannot be mutated, and a functional update never aliases
an array the caller still holds. The update rules follow PyTorch's, so numbers can be compared.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["SGD", "Adam", "Optimizer", "tree_leaves", "tree_map"]


def tree_map(fn: Callable[..., Any], tree: Any, *others: Any) -> Any:
    """``fn`` applied leaf by leaf to ``tree`` and the trees in ``others`` (same structure).

    Containers are tuples (namedtuples too), lists and dicts; anything else is a leaf. A
    mismatch in structure raises ValueError instead of silently pairing the wrong leaves.
    """
    if isinstance(tree, dict):
        for other in others:
            if not isinstance(other, dict) or other.keys() != tree.keys():
                raise ValueError(f"structure mismatch: dict keys {sorted(tree)} vs {other!r}")
        return {k: tree_map(fn, v, *(o[k] for o in others)) for k, v in tree.items()}
    if isinstance(tree, (tuple, list)):
        for other in others:
            if not isinstance(other, (tuple, list)) or len(other) != len(tree):
                raise ValueError(f"structure mismatch: {type(tree).__name__} of {len(tree)} "
                                 f"vs {type(other).__name__}")
        items = [tree_map(fn, *parts) for parts in zip(tree, *others, strict=True)]
        if isinstance(tree, list):
            return items
        return type(tree)(*items) if hasattr(tree, "_fields") else tuple(items)
    return fn(tree, *others)


def tree_leaves(tree: Any) -> list[Any]:
    """The leaves of ``tree`` in the order `tree_map` visits them."""
    leaves: list[Any] = []
    tree_map(leaves.append, tree)
    return leaves


def _like(value: Any, param: Any) -> Any:
    """The updated ``value`` in the type of ``param``, as NumPy's ``p - lr * g`` would give it.

    A float array keeps its dtype (float32 stays float32), an integer or boolean array becomes
    float64 (a step must not truncate ``[1, 2, 3] - 0.15`` back to integers), a NumPy floating
    scalar keeps its type (``np.float32`` stays ``np.float32``), a Python int or float becomes
    a float.
    """
    if isinstance(param, np.ndarray):
        dtype = param.dtype if param.dtype.kind in "fc" else np.float64
        return np.asarray(value, dtype=dtype)
    if isinstance(param, np.generic):
        return param.dtype.type(value) if param.dtype.kind in "fc" else np.float64(value)
    if isinstance(param, (float, int)) and not isinstance(param, bool):
        return float(value)
    return value


class Optimizer:
    """Common bookkeeping: a learning rate, a step counter and per-leaf state.

    Subclasses implement `_update` for one leaf. State is created lazily from the first
    parameters seen and keyed by each leaf's path (dict keys and sequence positions from the
    root), so a dict may come back with its keys in another order; any other change of
    structure between steps is a ValueError.
    """

    def __init__(self, lr: float) -> None:
        if lr <= 0:
            raise ValueError(f"learning rate must be positive, got {lr}")
        self.lr = lr
        self.t = 0  # steps taken
        self._state: dict[tuple, dict[str, Any]] | None = None

    def step(self, params: Any, grads: Any) -> Any:
        """One update; returns new parameters with the structure of ``params``.

        Nothing is updated in place: the leaves of ``params`` are left as they were, and each
        new leaf has its parameter's type (see `_like`: float32 stays float32, an integer
        array becomes float64). A leaf's state (momentum, moments) belongs to its path in the
        structure, so ``{"a": ..., "b": ...}`` and ``{"b": ..., "a": ...}`` share it key by key.
        """
        paths = _leaf_paths(params)
        if self._state is None:
            self._state = {path: {} for path in paths}
        elif set(paths) != set(self._state):
            raise ValueError(f"parameters changed structure: leaves at {_describe(paths)}, "
                             f"the optimizer holds state for {_describe(list(self._state))}")
        tree_map(lambda p, g: None, params, grads)  # a mismatch raises before any state moves
        self.t += 1
        position = iter(paths)

        def update(p: Any, g: Any) -> Any:
            state = self._state[next(position)]  # type: ignore[index]
            if g is None:  # a parameter the loss does not depend on
                g = 0.0
            return _like(self._update(np.asarray(p, dtype=float), np.asarray(g, dtype=float),
                                      state), p)

        return tree_map(update, params, grads)

    def _update(self, p: np.ndarray, g: np.ndarray, state: dict[str, Any]) -> np.ndarray:
        raise NotImplementedError


def _leaf_paths(tree: Any, path: tuple = ()) -> list[tuple]:
    """The path of each leaf of ``tree``, in the order `tree_map` visits them: a dict entry
    adds its key, a tuple or list item its index (tagged, so ``{0: x}`` differs from ``[x]``)."""
    if isinstance(tree, dict):
        return [leaf for k, v in tree.items() for leaf in _leaf_paths(v, (*path, ("key", k)))]
    if isinstance(tree, (tuple, list)):
        return [leaf for i, v in enumerate(tree) for leaf in _leaf_paths(v, (*path, ("item", i)))]
    return [path]


def _describe(paths: list[tuple]) -> str:
    def one(path: tuple) -> str:
        return "".join(f"[{k!r}]" for _, k in path) or "the root"
    shown = ", ".join(one(p) for p in paths[:6])
    return f"{len(paths)} leaves ({shown}{', ...' if len(paths) > 6 else ''})"


class SGD(Optimizer):
    """Stochastic gradient descent with momentum and (L2) weight decay.

    ``g = grad + weight_decay * p``; ``v = momentum * v + g``; ``p = p - lr * v``. With
    ``momentum=0`` this is plain gradient descent. Weight decay here is the coupled L2 form:
    it is the gradient of ``weight_decay / 2 * |p|^2`` added to the loss.
    """

    def __init__(self, lr: float = 0.01, momentum: float = 0.0,
                 weight_decay: float = 0.0) -> None:
        super().__init__(lr)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.momentum = momentum
        self.weight_decay = weight_decay

    def _update(self, p: np.ndarray, g: np.ndarray, state: dict[str, Any]) -> np.ndarray:
        if self.weight_decay:
            g = g + self.weight_decay * p
        if self.momentum:
            v = state.get("velocity")
            v = g if v is None else self.momentum * v + g
            state["velocity"] = v
            g = v
        return p - self.lr * g


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015): per-coordinate step sizes from running moment estimates.

    Useful where gradients differ in scale by orders of magnitude between parameters, as for
    a Gaussian's centre and width. Moments start at zero and are bias-corrected by
    ``1 - beta**t``, so the first steps are not shrunk towards zero.
    """

    def __init__(self, lr: float = 0.001, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        super().__init__(lr)
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.weight_decay = weight_decay

    def _update(self, p: np.ndarray, g: np.ndarray, state: dict[str, Any]) -> np.ndarray:
        if self.weight_decay:
            g = g + self.weight_decay * p
        m = self.beta1 * state.get("m", 0.0) + (1.0 - self.beta1) * g
        v = self.beta2 * state.get("v", 0.0) + (1.0 - self.beta2) * g * g
        state["m"], state["v"] = m, v
        m_hat = m / (1.0 - math.pow(self.beta1, self.t))
        v_hat = v / (1.0 - math.pow(self.beta2, self.t))
        return p - self.lr * m_hat / (np.sqrt(v_hat) + self.eps)
