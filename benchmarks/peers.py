"""Adapters that run one workload through one tool: srcgrad, the hand-written floor, the peers.

Each tool answers the same question for a workload: the value and the gradients with respect to
the workload's first ``n_wrt`` parameters, in parameter order. A peer differentiates the very
code srcgrad reads, re-bound to its own NumPy-like module (`rebind`): JAX sees ``jax.numpy``
where the code says ``np`` or ``math``, autograd sees ``autograd.numpy``, and so on. Nothing is
rewritten for a peer except where the peer cannot run the code as written, and every such case
is said in the row's note (micrograd has no array type, and no ``sin`` or ``tanh``).

Every import of a peer is guarded: a missing or broken peer raises `Unsupported`, which the run
reports as "skipped: <reason>", never as an error. Choices that decide what a call costs:

- Inputs are converted to the tool's own types once, outside the timed call (`Tool.convert`),
  as a program using that tool keeps its parameters and data: JAX arrays placed on the device,
  float64 torch tensors (parameters with ``requires_grad``), micrograd ``Value`` objects. The
  exception is a scalar workload (W1, W7): each call is a new point given as a Python float, so
  making a torch tensor or a micrograd ``Value`` from it is part of the call.
- A call returns what the tool returns (JAX arrays, tensors); converting them to NumPy for the
  gradient check (`Tool.canonical`) is not timed.
- JAX runs in float64 (``jax_enable_x64``) and every call ends in ``block_until_ready``, since
  JAX dispatches asynchronously. XLA's CPU thread pool is limited (``XLA_FLAGS``), and torch
  runs on one thread, like the single-threaded BLAS the run pins.
- Tangent's on-disk cache of generated code is switched off (``TANGENT_DISK_CACHE=0``), so that
  its first call (W6) measures the transform, as srcgrad's does.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import importlib.util
import math
import os
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

import srcgrad
from benchmarks.workloads import DT, STEPS, Workload

# XLA reads its flags once, when JAX first creates its CPU client: set before any JAX import.
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")

MICROGRAD_RECURSION_LIMIT = 20 * STEPS + 1000  # micrograd's backward recurses once per node


class Unsupported(Exception):
    """The tool cannot run this workload (not installed, or rejects the code): the reason is
    reported in the row as "skipped: <reason>"."""


def rebind(function: Callable[..., Any], **names: Any) -> Callable[..., Any]:
    """The same code object with some globals replaced: how a peer runs code written for NumPy.

    ``rebind(f, np=jax.numpy)`` is ``f`` with every ``np.`` meaning ``jax.numpy.``; its source
    (for Tangent) is still ``f``'s, since the code object is shared.
    """
    new = types.FunctionType(function.__code__, {**function.__globals__, **names},
                             function.__name__, function.__defaults__, function.__closure__)
    new.__kwdefaults__ = function.__kwdefaults__
    new.__qualname__ = function.__qualname__
    return new


def leaves(tree: Any) -> list[np.ndarray]:
    """The numbers of a (nested) result as float64 NumPy arrays, depth first (tensors, JAX
    arrays and micrograd values included)."""
    if isinstance(tree, (tuple, list)):
        return [leaf for part in tree for leaf in leaves(part)]
    if hasattr(tree, "detach"):  # a torch tensor
        tree = tree.detach().numpy()
    return [np.asarray(tree, dtype=np.float64)]


def _first_line(error: BaseException) -> str:
    """``Type: first line of the message`` (peers' messages run to many lines of advice)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


@contextlib.contextmanager
def guarded(tool: str) -> Iterator[None]:
    """Turn any failure of a peer while preparing a workload into `Unsupported`.

    Output a peer prints (Tangent prints suggestions) goes to stderr, so that ``--json`` keeps
    stdout clean.
    """
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    except Unsupported:
        raise
    except Exception as error:
        raise Unsupported(f"{tool}: {_first_line(error)}") from error


def _import(module: str, distribution: str) -> types.ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as error:
        if importlib.util.find_spec(module.split(".")[0]) is None:
            raise Unsupported(f"{distribution} is not installed (pip install -e '.[bench]')"
                              ) from error
        raise Unsupported(f"{distribution} does not import: {_first_line(error)}") from error
    except Exception as error:  # old peers break in odd ways on new Pythons
        raise Unsupported(f"{distribution} does not import: {_first_line(error)}") from error


class Tool:
    """One column of the comparison: how to prepare, call and read back one workload.

    A call is ``build(workload, function)(*convert(workload, args))``; `canonical` maps its
    result to ``(value, gradients)`` for the check. Subclasses override what differs.
    """

    name = ""
    distribution: str | None = None  # for the version in the report
    applies_to: tuple[str, ...] | None = None  # workload keys; None: all
    value_only = False  # the plain function: checked on its value alone
    memory_invisible: str | None = None  # why tracemalloc cannot see this tool's memory

    def load(self) -> None:
        """Import the tool (raise `Unsupported` if it is missing or broken)."""

    def version(self) -> str | None:
        if self.distribution is None:
            return None
        try:
            return importlib.metadata.version(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            return None

    def unsupported(self, workload: Workload) -> str | None:
        """Why this tool does not run ``workload`` at all (None: it does)."""
        return None

    def slow(self, workload: Workload) -> str | None:
        """Why ``--quick`` skips this row (None: it is quick enough)."""
        return None

    def convert(self, workload: Workload, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return args

    def build(self, workload: Workload, function: Callable[..., Any]) -> Callable[..., Any]:
        raise NotImplementedError

    def canonical(self, result: Any) -> tuple[Any, Any]:
        return result

    def note(self, workload: Workload) -> str:
        """What the reader must know about this row (rewrites, settings)."""
        return ""


# -- the floor and srcgrad ---------------------------------------------------------------------

class HandWritten(Tool):
    name = "hand-written (NumPy/math)"

    def build(self, workload: Workload, function: Callable[..., Any]) -> Callable[..., Any]:
        return workload.by_hand


class PlainCall(Tool):
    """W1's second baseline: the undifferentiated function itself, value only."""

    name = "plain function call (value only)"
    applies_to = ("W1",)
    value_only = True

    def build(self, workload: Workload, function: Callable[..., Any]) -> Callable[..., Any]:
        assert workload.plain is not None
        return workload.plain

    def canonical(self, result: Any) -> tuple[Any, Any]:
        return result, ()


class Srcgrad(Tool):
    name = "srcgrad"
    distribution = "srcgrad"
    backend = "numpy"

    def build(self, workload: Workload, function: Callable[..., Any]) -> Callable[..., Any]:
        names = function.__code__.co_varnames[:workload.n_wrt]
        try:
            return srcgrad.grad(function, wrt=tuple(names), backend=self.backend)
        except srcgrad.TransformError as error:
            # The first sentence says what is unsupported; the rest is advice to the user.
            what = error.message.splitlines()[0].split(". ")[0].rstrip(".")
            where = f" ({Path(error.filename).name}, line {error.lineno})" if error.filename else ""
            raise Unsupported(f"srcgrad: {what}{where}") from error

    def version(self) -> str | None:
        return srcgrad.__version__


class SrcgradBare(Srcgrad):
    """W1 with ``wrt="a"``: the one derivative comes back bare, not in a namedtuple of one
    (whose construction costs about as much as the plain call)."""

    name = "srcgrad (`wrt=\"a\"`)"
    applies_to = ("W1",)

    def build(self, workload: Workload, function: Callable[..., Any]) -> Callable[..., Any]:
        (name,) = function.__code__.co_varnames[:workload.n_wrt]
        return srcgrad.grad(function, wrt=name)

    def canonical(self, result: Any) -> tuple[Any, Any]:
        value, derivative = result
        return value, (derivative,)

    def note(self, workload: Workload) -> str:
        return "the derivative bare"


class SrcgradFunction(SrcgradBare):
    """srcgrad as a hot scalar loop should call it (W1, W7): the generated function itself.

    ``f.function`` is the plain Python function that the decorated object runs; calling it
    skips the object's own call (CPython 3.11 charges a call of any object that is not a
    function about 60 ns, half the plain call of W1). On W1 the derivative is bare as well.
    """

    name = "srcgrad (`.function`)"
    applies_to = ("W1", "W7")

    def build(self, workload: Workload, function: Callable[..., Any]) -> Callable[..., Any]:
        self.bare = workload.n_wrt == 1
        decorated = (super().build(workload, function) if self.bare
                     else Srcgrad.build(self, workload, function))
        return decorated.function

    def canonical(self, result: Any) -> tuple[Any, Any]:
        return super().canonical(result) if self.bare else result

    def note(self, workload: Workload) -> str:
        return ("`grad(f, wrt=\"a\").function`: no object call, the derivative bare"
                if workload.n_wrt == 1 else "`grad(f).function`: no object call")


class SrcgradNumba(Srcgrad):
    """srcgrad's fused backend (issue 8) on the elementwise workloads: one compiled loop.

    Numba runs the loop on every core (``threads=None``) or on one; the peers here run on one
    thread (see the module docstring), so the one-thread row is the like-for-like comparison.
    """

    backend = "numba"
    applies_to = ("W2", "W3", "W4")
    distribution = "numba"
    memory_invisible = "Numba allocates outside tracemalloc's view"

    def __init__(self, threads: int | None) -> None:
        self.threads = threads
        self.name = ("srcgrad (numba, all cores)" if threads is None
                     else f"srcgrad (numba, {threads} thread{'s' if threads > 1 else ''})")

    def load(self) -> None:
        self.numba = _import("numba", "numba")

    def build(self, workload: Workload, function: Callable[..., Any]) -> Callable[..., Any]:
        call = super().build(workload, function)
        if self.threads is None:
            return call
        numba, threads = self.numba, self.threads

        def on_threads(*args: Any) -> Any:
            before = numba.get_num_threads()
            numba.set_num_threads(threads)
            try:
                return call(*args)
            finally:
                numba.set_num_threads(before)

        return on_threads

    def version(self) -> str | None:
        return Tool.version(self)


# -- peers -------------------------------------------------------------------------------------

class Autograd(Tool):
    """HIPS autograd: traces each call through its NumPy wrapper."""

    name = "autograd"
    distribution = "autograd"

    def load(self) -> None:
        self.autograd = _import("autograd", "autograd")
        self.anp = _import("autograd.numpy", "autograd")

    def build(self, workload: Workload, function: Callable[..., Any]) -> Callable[..., Any]:
        f = rebind(function, np=self.anp, math=self.anp)
        argnum = tuple(range(workload.n_wrt))
        if not workload.array_output:
            return self.autograd.value_and_grad(f, argnum)
        make_vjp = self.autograd.make_vjp(f, argnum)

        def value_and_vjp(*args: Any) -> tuple[Any, Any]:
            vjp, value = make_vjp(*args)
            return value, vjp(np.ones_like(value))

        return value_and_vjp


class Jax(Tool):
    """JAX's ``value_and_grad`` (``vjp`` for an array value), eagerly or under ``jax.jit``."""

    distribution = "jax"
    memory_invisible = "XLA allocates outside tracemalloc's view"

    def __init__(self, jit: bool) -> None:
        self.jit = jit
        self.name = "jax (jit)" if jit else "jax (no jit)"

    def load(self) -> None:
        self.jax = _import("jax", "jax")
        self.jax.config.update("jax_enable_x64", True)
        self.jnp = _import("jax.numpy", "jax")

    def slow(self, workload: Workload) -> str | None:
        if workload.key != "W7":
            return None
        if self.jit:
            return f"jax.jit unrolls the {STEPS}-step Python loop: compiling takes ~20 s"
        return f"eager dispatch of the {STEPS}-step Python loop: ~1 s per call"

    def note(self, workload: Workload) -> str:
        if workload.key == "W7" and self.jit:
            return f"the Python loop is unrolled into {STEPS} steps at trace time"
        return ""

    def convert(self, workload: Workload, args: tuple[Any, ...]) -> tuple[Any, ...]:
        """Arrays go to the device once; Python floats stay floats (a new point per call)."""
        return self.jax.tree_util.tree_map(
            lambda leaf: self.jnp.asarray(leaf) if isinstance(leaf, np.ndarray) else leaf, args)

    def value_and_grad(self, workload: Workload, f: Callable[..., Any]) -> Callable[..., Any]:
        jax, n = self.jax, workload.n_wrt
        if not workload.array_output:
            return jax.value_and_grad(f, argnums=tuple(range(n)))

        def value_and_vjp(*args: Any) -> tuple[Any, Any]:
            value, pullback = jax.vjp(lambda *wrt: f(*wrt, *args[n:]), *args[:n])
            return value, pullback(self.jnp.ones_like(value))

        return value_and_vjp

    def build(self, workload: Workload, function: Callable[..., Any]) -> Callable[..., Any]:
        compute = self.value_and_grad(workload, rebind(function, np=self.jnp, math=self.jnp))
        if self.jit:
            compute = self.jax.jit(compute)
        block = self.jax.block_until_ready

        def call(*args: Any) -> Any:
            return block(compute(*args))

        return call


class JaxForiLoop(Jax):
    """W7 as a JAX user writes it: ``lax.fori_loop`` instead of a Python loop (a rewrite)."""

    applies_to = ("W7",)

    def __init__(self) -> None:
        super().__init__(jit=True)
        self.name = "jax (jit, lax.fori_loop)"

    def slow(self, workload: Workload) -> str | None:
        return None

    def note(self, workload: Workload) -> str:
        return "loop rewritten as `lax.fori_loop`, not the shared code"

    def build(self, workload: Workload, function: Callable[..., Any]) -> Callable[..., Any]:
        jnp, lax = self.jnp, self.jax.lax

        def recurrence(x: Any, w: Any) -> Any:
            return lax.fori_loop(0, STEPS, lambda _, x: x + DT * jnp.sin(x) * w, x)

        return super().build(workload, recurrence)


def _torch_maximum(a: Any, b: Any) -> Any:
    """``np.maximum`` for torch, which wants tensors on both sides of ``torch.maximum``."""
    import torch

    if not isinstance(a, torch.Tensor):
        return torch.clamp_min(b, a)
    if not isinstance(b, torch.Tensor):
        return torch.clamp_min(a, b)
    return torch.maximum(a, b)


class Torch(Tool):
    """PyTorch eager autograd: ``torch.autograd.grad`` on float64 CPU tensors, one thread."""

    name = "torch"
    distribution = "torch"
    memory_invisible = "torch's C++ allocator is outside tracemalloc's view"

    def load(self) -> None:
        torch = self.torch = _import("torch", "torch")
        torch.set_num_threads(1)
        # The names the shared code uses, as torch spells them.
        self.np = types.SimpleNamespace(sin=torch.sin, exp=torch.exp, tanh=torch.tanh,
                                        sum=torch.sum, mean=torch.mean, maximum=_torch_maximum)

    def note(self, workload: Workload) -> str:
        if workload.scalar:
            return "tensors made from the floats inside each call"
        return ""

    def convert(self, workload: Workload, args: tuple[Any, ...]) -> tuple[Any, ...]:
        """Tensors once: differentiated inputs require grad (floats become 0-d tensors)."""
        if workload.scalar:
            return args

        def tensor(leaf: Any, wrt: bool) -> Any:
            if isinstance(leaf, (tuple, list)):
                return type(leaf)(tensor(part, wrt) for part in leaf)
            t = self.torch.tensor(leaf, dtype=self.torch.float64)
            return t.requires_grad_() if wrt else t

        return tuple(tensor(arg, i < workload.n_wrt) for i, arg in enumerate(args))

    def build(self, workload: Workload, function: Callable[..., Any]) -> Callable[..., Any]:
        torch, n = self.torch, workload.n_wrt
        f = rebind(function, np=self.np, math=self.np)
        autograd_grad, as_tensor = torch.autograd.grad, torch.tensor
        if workload.scalar:

            def scalar_call(*args: Any) -> tuple[Any, Any]:
                wrt = [as_tensor(a, dtype=torch.float64, requires_grad=True) for a in args[:n]]
                value = f(*wrt, *args[n:])
                return value, autograd_grad(value, wrt)

            return scalar_call

        def call(*args: Any) -> tuple[Any, Any]:
            value = f(*args)
            seed = torch.ones_like(value) if workload.array_output else None
            return value, autograd_grad(value, _flat_tensors(args[:n]), seed)

        return call


def _flat_tensors(tree: Any) -> list[Any]:
    if isinstance(tree, (tuple, list)):
        return [leaf for part in tree for leaf in _flat_tensors(part)]
    return [tree]


class Tangent(Tool):
    """Tangent (``tangent-ad``): source transformation, like srcgrad."""

    name = "tangent"
    distribution = "tangent-ad"

    def load(self) -> None:
        os.environ["TANGENT_DISK_CACHE"] = "0"
        with contextlib.redirect_stdout(sys.stderr):
            self.tangent = _import("tangent", "tangent-ad")

    def build(self, workload: Workload, function: Callable[..., Any]) -> Callable[..., Any]:
        # Tangent knows np.sin but not math.sin: the shared code's `math` is NumPy for it.
        return self.tangent.grad(rebind(function, math=np), wrt=tuple(range(workload.n_wrt)),
                                 preserve_result=True, check_dims=not workload.array_output)

    def canonical(self, result: Any) -> tuple[Any, Any]:
        *gradients, value = result  # Tangent appends the value after the gradients
        return value, gradients


# -- micrograd: scalars only, so the arrays of W5 become lists of Values --------------------------

class Micrograd(Tool):
    """Karpathy's micrograd: a scalar ``Value`` graph, built and walked in Python.

    micrograd has only ``+ * **`` and ``relu``; ``sin`` and ``tanh`` are added here in its own
    style (a closure that accumulates into ``.grad``). W5 is ported to lists of Values, as
    micrograd's own MLP demo is written.
    """

    name = "micrograd"
    distribution = "micrograd"
    memory_invisible = "scalar-only tool"

    def load(self) -> None:
        engine = _import("micrograd.engine", "micrograd")
        self.Value = engine.Value
        self.math = types.SimpleNamespace(sin=self.sin)

    def _unary(self, v: Any, value: float, slope: float) -> Any:
        out = self.Value(value, (v,))

        def _backward() -> None:
            v.grad += slope * out.grad

        out._backward = _backward
        return out

    def sin(self, v: Any) -> Any:
        return self._unary(v, math.sin(v.data), math.cos(v.data))

    def tanh(self, v: Any) -> Any:
        t = math.tanh(v.data)
        return self._unary(v, t, 1.0 - t * t)

    def unsupported(self, workload: Workload) -> str | None:
        return None if workload.scalar or workload.key == "W5" else "scalar-only: no array type"

    def slow(self, workload: Workload) -> str | None:
        return "~0.3 s per call (65,000 Values per batch)" if workload.key == "W5" else None

    def note(self, workload: Workload) -> str:
        notes = {"W1": "`sin` added in micrograd's style",
                 "W5": "ported to lists of Values; `tanh` added in micrograd's style",
                 "W7": f"`sin` added; recursion limit raised to {MICROGRAD_RECURSION_LIMIT} for "
                       "its recursive topological sort"}
        return notes.get(workload.key, "")

    def convert(self, workload: Workload, args: tuple[Any, ...]) -> tuple[Any, ...]:
        if workload.key != "W5":
            return args
        params, X, y = args
        layers = [([[self.Value(float(w)) for w in column] for column in W.T],
                   [self.Value(float(b)) for b in bias])
                  for W, bias in zip(params[::2], params[1::2], strict=True)]
        return layers, X.tolist(), y.tolist()

    def build(self, workload: Workload, function: Callable[..., Any]) -> Callable[..., Any]:
        if workload.key == "W5":
            return self.mlp_call
        if workload.key == "W7":
            sys.setrecursionlimit(max(sys.getrecursionlimit(), MICROGRAD_RECURSION_LIMIT))
        f, n, value_type = rebind(function, math=self.math), workload.n_wrt, self.Value

        def call(*args: Any) -> tuple[float, tuple[float, ...]]:
            wrt = [value_type(a) for a in args[:n]]
            out = f(*wrt, *args[n:])
            out.backward()
            return out.data, tuple(v.grad for v in wrt)

        return call

    def mlp_call(self, layers: list[Any], X: list[list[float]], y: list[float]) -> Any:
        """W5: zero the parameters' gradients, forward, backward (one training step's work)."""
        for columns, biases in layers:
            for v in (*biases, *(w for column in columns for w in column)):
                v.grad = 0.0
        losses = []
        for inputs, label in zip(X, y, strict=True):
            for depth, (columns, biases) in enumerate(layers):
                inputs = [sum((x * w for x, w in zip(inputs, column, strict=True)), b)
                          for column, b in zip(columns, biases, strict=True)]
                if depth < len(layers) - 1:
                    inputs = [self.tanh(v) for v in inputs]
            losses.append((1 - label * inputs[0]).relu())
        loss = sum(losses) * (1.0 / len(losses))
        loss.backward()
        return loss.data, layers

    def canonical(self, result: Any) -> tuple[Any, Any]:
        value, gradients = result
        if not isinstance(gradients, list):  # W1, W7: floats already
            return value, gradients
        arrays = []
        for columns, biases in gradients:
            arrays.append(np.array([[w.grad for w in column] for column in columns]).T)
            arrays.append(np.array([b.grad for b in biases]))
        return value, arrays


def all_tools() -> list[Tool]:
    """Every row of the comparison, baselines first; peers in the order of the issue."""
    return [HandWritten(), PlainCall(), Srcgrad(), SrcgradBare(), SrcgradFunction(),
            SrcgradNumba(None),
            SrcgradNumba(1),
            Autograd(), Jax(jit=False), Jax(jit=True), JaxForiLoop(), Torch(), Micrograd(),
            Tangent()]
