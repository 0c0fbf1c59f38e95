"""srcgrad: automatic differentiation by source transformation.

``@srcgrad.grad`` reads a plain Python function's source, builds a hash-consed graph of it,
differentiates that graph in reverse mode and emits a new Python function that returns the value
and the gradients, on Python floats (fast path) and NumPy arrays (batched, broadcasting).
"""

from . import data, functions, nn, optim
from .check import GradientMismatch, GradientReport, check_grad
from .errors import MissingDerivativeError, SourceUnavailableError, TransformError
from .modes import forward, hessian, hvp, jacobian, jvp
from .rules import register
from .transform import GradFunction, grad

__all__ = [
    "GradFunction",
    "GradientMismatch",
    "GradientReport",
    "MissingDerivativeError",
    "SourceUnavailableError",
    "TransformError",
    "check_grad",
    "data",
    "forward",
    "functions",
    "grad",
    "hessian",
    "hvp",
    "jacobian",
    "jvp",
    "nn",
    "optim",
    "register",
]
__version__ = "0.1.0"
