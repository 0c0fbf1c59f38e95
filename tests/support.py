"""What several test modules need: programs in real files, and central differences.

srcgrad reads source with `inspect.getsource`, so every test program is written to a file and
imported; and every gradient is checked against the definition of the derivative.
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

FD_STEP = 1e-6  # relative to max(1, |x|)
_counter = itertools.count()


def import_source(text: str, directory: Path, prefix: str) -> ModuleType:
    """Write ``text`` to a fresh file in ``directory`` and import it under a unique name."""
    digest = hashlib.sha1(text.encode()).hexdigest()[:10]
    name = f"{prefix}_{next(_counter)}_{digest}"
    path = directory / f"{name}.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def central_difference(at: Callable[[Any], float], base: Any) -> Any:
    """d at(x) / dx at ``base``, one element at a time, in float64: the definition."""
    if np.ndim(base) == 0 and not isinstance(base, np.ndarray):
        h = FD_STEP * max(1.0, abs(base))
        return (at(base + h) - at(base - h)) / (2 * h)
    base = np.asarray(base, dtype=np.float64)
    result = np.empty(base.shape)
    for i in np.ndindex(base.shape):
        h = FD_STEP * max(1.0, abs(float(base[i])))
        up, down = base.copy(), base.copy()
        up[i] += h
        down[i] -= h
        result[i] = (at(up) - at(down)) / (2 * h)
    return result


# -- the training kit's losses, written with autograd.numpy (the oracles of nn's) ----------------
def oracle_mse(pred: Any, target: Any) -> Any:
    import autograd.numpy as anp

    return anp.mean((pred - target) ** 2)


def oracle_hinge(scores: Any, y: Any) -> Any:
    import autograd.numpy as anp

    return anp.mean(anp.maximum(0.0, 1.0 - y * scores))


def oracle_softmax_cross_entropy(logits: Any, labels: Any) -> Any:
    import autograd.numpy as anp

    shifted = logits - anp.max(logits, axis=1, keepdims=True)
    logp = shifted - anp.log(anp.sum(anp.exp(shifted), axis=1, keepdims=True))
    return -anp.mean(logp[anp.arange(len(labels)), labels])


def leaves(tree: Any) -> list[Any]:
    """The arrays and numbers of a tuple, list or dict (nested), in order: to compare results
    structured like parameters."""
    if isinstance(tree, dict):
        return [leaf for v in tree.values() for leaf in leaves(v)]
    if isinstance(tree, (tuple, list)):
        return [leaf for v in tree for leaf in leaves(v)]
    return [tree]
