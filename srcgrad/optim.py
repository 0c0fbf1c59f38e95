"""Optimizers that apply srcgrad gradients to structured parameters.

A srcgrad gradient has the structure of its parameter: a tuple, list or dict (nested) of
arrays, or a lone array or float. The optimizers here walk that structure, keep their state
(velocities, moments) per leaf, and return *new* parameters of the same structure::

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
    parameters seen and keyed by leaf position, so the structure must not change between steps.
    """

    def __init__(self, lr: float) -> None:
        if lr <= 0:
            raise ValueError(f"learning rate must be positive, got {lr}")
        self.lr = lr
        self.t = 0  # steps taken
        self._state: list[dict[str, Any]] | None = None

    def step(self, params: Any, grads: Any) -> Any:
        """One update; returns new parameters with the structure of ``params``."""
        count = len(tree_leaves(params))
        if self._state is None:
            self._state = [{} for _ in range(count)]
        elif len(self._state) != count:
            raise ValueError(f"parameters changed structure: {count} leaves, "
                             f"the optimizer holds state for {len(self._state)}")
        self.t += 1
        position = iter(range(count))

        def update(p: Any, g: Any) -> Any:
            state = self._state[next(position)]  # type: ignore[index]
            if g is None:  # a parameter the loss does not depend on
                g = 0.0
            return _like(self._update(np.asarray(p, dtype=float), np.asarray(g, dtype=float),
                                      state), p)

        return tree_map(update, params, grads)

    def _update(self, p: np.ndarray, g: np.ndarray, state: dict[str, Any]) -> np.ndarray:
        raise NotImplementedError


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
