"""`grad`: the decorator, and the callable object it returns.

Decoration reads and checks the source (so unsupported syntax fails at once, at the `def`).
The first call builds the graph, differentiates it and compiles the generated function; then
the object's class is pointed at that function, so later calls run it with no srcgrad code in
between. Transforms are cached per function and ``wrt``: decorating the same function again, or
calling ``grad(f)`` inside a loop, reuses the compiled code.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import weakref
from collections import namedtuple
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import codegen, fused, lower, parse, reverse, rules
from .graph import Graph, Node


@dataclass
class Transform:
    """Everything built for one function and one choice of ``wrt``."""

    function: Callable[..., Any]
    generated: codegen.Generated
    graph: FunctionGraph
    # Called with the transform that replaces this one (a helper was redefined): the
    # decorated object then calls the new function.
    on_replace: list[Callable[[Transform], None]] = field(default_factory=list)


class FunctionGraph:
    """The define-and-run graph of a decorated function (forward and adjoint nodes)."""

    def __init__(self, graph: Graph, output: Node, grads: list[Node | None], wrt: list[str],
                 first_adjoint_id: int, name: str, derived: list[Node] | None = None) -> None:
        self.graph = graph
        self.output = output
        self.grads = dict(zip(wrt, grads, strict=True))
        self.first_adjoint_id = first_adjoint_id
        self.name = name
        self.derived = derived if derived is not None else [g for g in grads if g is not None]
        # forward node id -> its adjoint node (reverse modes): what labels and tools read
        self.adjoints: dict[int, Node] = {}

    @property
    def nodes(self) -> list[Node]:
        """Nodes the value and gradients depend on, in evaluation order."""
        return self.graph.reachable(self._roots(adjoints=True))

    def _roots(self, adjoints: bool) -> list[Node]:
        return [self.output, *self.derived] if adjoints else [self.output]

    def to_dot(self, adjoints: bool = True) -> str:
        """Graphviz DOT text: forward nodes, and (unless ``adjoints=False``) the adjoints.

        Parameters are blue, the output green, adjoint nodes orange.
        """
        highlight = {self.output.id: "#c8f0c8"}
        if adjoints:
            for node in self.graph.reachable(self._roots(adjoints=True)):
                if node.id >= self.first_adjoint_id and not node.is_leaf:
                    highlight[node.id] = "#ffe0b0"
        return self.graph.to_dot(self._roots(adjoints), title=self.name, highlight=highlight)

    def __repr__(self) -> str:
        return f"<FunctionGraph of {self.name}: {len(self.nodes)} nodes>"


_CACHE: weakref.WeakKeyDictionary[Any, dict[tuple, Transform]] = weakref.WeakKeyDictionary()


SCALAR = "scalar"  # the structure of a Python float or int argument


Deriver = Callable[[lower.Lowered, tuple[str, ...], list[Node], frozenset[int]],
                   codegen.Derivation]


def gradient(lowered: lower.Lowered, wrt: tuple[str, ...], wrt_nodes: list[Node],
             scalars: frozenset[int], bare: bool = False) -> codegen.Derivation:
    """What `grad` computes: reverse mode, one gradient per parameter in ``wrt``, in a
    namedtuple; ``bare`` (``wrt`` given as one name) returns that one gradient itself."""
    graph = lowered.graph
    first_adjoint_id = len(graph.nodes)
    adjoints = reverse.share_products(
        graph, reverse.reverse(graph, lowered.output, wrt_nodes, scalars=scalars))
    grads_type = None if bare else _grads_type(lowered.parsed.identifier, wrt)
    return codegen.Derivation(
        [codegen.Section(per_parameter(lowered, wrt, adjoints.grads), "param", grads_type)],
        adjoint_of=adjoints.adjoint_of, adjoints=adjoints.of,
        phases=[(first_adjoint_id, "backward")], differentiated=list(wrt))


def build(parsed: parse.ParsedFunction, wrt: tuple[str, ...],
          structures: dict[str, lower.Structure] | None = None,
          derive: Deriver = gradient, mode: str = "grad", backend: str = "numpy",
          shapes: dict[str, Any] | None = None, bare: bool = False) -> Transform:
    """Source checked by `parse` -> graph -> derivatives (``derive``) -> compiled function.

    ``structures`` describes the first call's arguments: containers of arrays, and which
    arguments were Python scalars (`SCALAR`). Scalars among array arguments earn the generated
    function a path of its own, where factors made of them leave the broadcast sums. ``mode``
    names what ``derive`` computes, for the cache. ``shapes``, when every argument of the
    first call was a float64 array, are their shapes (see `codegen.generate`). ``bare`` asks
    `gradient` for the one gradient itself rather than a namedtuple of one.
    """
    structures = structures or {}
    original_structures, original_derive = structures, derive
    scalars = [name for name, kind in structures.items() if kind == SCALAR]
    mixed = bool(scalars) and len(scalars) < len(parsed.params)
    structures = {k: v for k, v in structures.items() if v is not None and v != SCALAR}
    key = (mode, wrt, tuple(sorted(structures.items())), tuple(scalars) if mixed else (),
           backend, bare)
    cached = _cached(parsed.fn, key)
    if cached is not None:
        return cached
    lowered = lower.lower(parsed, structures, _inner_gradient)
    graph = lowered.graph
    restructure = None
    if mode == "grad" and structures:  # the generated code calls it for other structures
        restructure = (_restructurer(parsed, wrt, derive, mode, backend, bare), structures)
    if bare:
        derive = functools.partial(derive, bare=True)
    first_derived_id = len(graph.nodes)
    wrt_nodes: list[Node] = []
    for name in wrt:
        tree = lowered.trees.get(name)
        wrt_nodes += tree.leaves() if tree is not None else [lowered.params[name]]
    try:
        derivation = derive(lowered, wrt, wrt_nodes, frozenset())
        mixed_path = None
        if mixed:
            scalar_ids = frozenset(lowered.params[name].id for name in scalars)
            mixed_path = (scalars, derive(lowered, wrt, wrt_nodes, scalar_ids))
    except rules.NoDerivativeRule as missing:
        raise parsed.error(f"srcgrad cannot differentiate this line: {missing.reason}.",
                           lineno=missing.node.lineno) from None
    built: list[Transform] = []  # this transform, for `refresh` to replace
    refresh = _refresher(parsed, wrt, original_structures, shapes, original_derive, mode,
                         backend, bare, key, built, lowered.frozen_functions)
    generated = codegen.generate(lowered, derivation, mixed_path,
                                 shapes if not mixed and not scalars else None, restructure,
                                 refresh)
    if backend == "numba" and (mixed or not scalars):  # some array to loop over
        fused_derivation = mixed_path[1] if mixed_path else derivation
        generated = fused.generate(lowered, fused_derivation, scalars if mixed else [],
                                   generated)
    first_section = derivation.sections[0]
    leaf_names = [n.hint or f"#{n.id}" for n in wrt_nodes]
    flat = [node for _, nodes in first_section.fields for node in nodes]
    grads = flat if len(flat) == len(leaf_names) else [None] * len(leaf_names)
    view = FunctionGraph(graph, lowered.output, grads, leaf_names, first_derived_id,
                         parsed.name, derivation.roots())
    view.adjoints = dict(derivation.adjoints)
    transform = Transform(generated.function, generated, view)
    built.append(transform)
    with contextlib.suppress(TypeError):  # not weak-referenceable: simply not cached
        _CACHE.setdefault(parsed.fn, {})[key] = transform
    return transform


def _refresher(parsed: parse.ParsedFunction, wrt: tuple[str, ...], structures: dict[str, Any],
               shapes: dict[str, Any] | None, derive: Deriver, mode: str, backend: str,
               bare: bool, key: tuple, built: list[Transform], frozen: dict[str, Any]
               ) -> Callable[..., Any]:
    """What a generated function calls when a module-level function it was built from has
    been redefined: the transform built again from the new source (cached in place of the
    old one), whose function the decorated objects that held the old one now call."""

    def refreshed(*args: Any, **kwargs: Any) -> Any:
        module = parsed.fn.__globals__
        if all(module.get(name) is fn for name, fn in frozen.items()):
            raise RuntimeError(f"srcgrad: {parsed.name}'s generated code found a redefined "
                               "function where none was; please report this.")
        with contextlib.suppress(TypeError, KeyError):
            _CACHE[parsed.fn].pop(key, None)
        new = build(parsed, wrt, structures, derive, mode, backend, shapes, bare)
        for retarget in built[0].on_replace if built else ():
            retarget(new)
        return new.function(*args, **kwargs)

    return refreshed


def _restructurer(parsed: parse.ParsedFunction, wrt: tuple[str, ...], derive: Deriver,
                  mode: str, backend: str, bare: bool) -> Callable[..., Any]:
    """What a generated function calls when its structured parameters come with another
    structure than at its first call: the transform for this call's (built once, cached)."""

    def restructured(*args: Any, **kwargs: Any) -> Any:
        structures, shapes = call_layout(parsed.fn, args, kwargs)
        return build(parsed, wrt, structures, derive, mode, backend, shapes,
                     bare).function(*args, **kwargs)

    return restructured


def call_layout(fn: Callable[..., Any], args: tuple, kwargs: dict, shapes: bool = True
                ) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """What a call's arguments are, as ``fn`` binds them (once): each one's structure
    (`SCALAR` for a Python float or int, defaults included), and, if ``shapes`` is asked for,
    the given arguments' shapes (see `_shapes_of`)."""
    try:
        bound = inspect.signature(fn).bind(*args, **kwargs)
    except TypeError:
        return {}, None  # the generated function raises Python's own message for this call
    given = _shapes_of(bound.arguments) if shapes else None
    bound.apply_defaults()  # a default float is a float parameter too
    return {name: SCALAR if type(value) in (float, int) else lower.structure_of(value)
            for name, value in bound.arguments.items()}, given


def _shapes_of(arguments: dict[str, Any]) -> dict[str, Any] | None:
    """Each argument's shape (a tuple of its elements' for a tuple or list of arrays, a dict
    for a dict), or None unless every argument is a float64 NumPy array or made of them."""

    def shape(value: Any) -> Any:
        if type(value) is np.ndarray and value.dtype == np.float64:
            return value.shape
        if type(value) in (tuple, list, dict) and value and lower.structure_of(value):
            parts = tuple(shape(v) for v in (
                value.values() if type(value) is dict else value))
            if None in parts:
                return None
            return dict(zip(value, parts, strict=True)) if type(value) is dict else parts
        return None

    shapes = {name: shape(value) for name, value in arguments.items()}
    return None if None in shapes.values() else shapes


def _inner_gradient(graph: Graph, output: Node, wrt: list[Node]) -> list[Node | None]:
    """The gradient of an inlined `grad` call (see `lower.lower`)."""
    return reverse.reverse(graph, output, wrt).grads


def per_parameter(lowered: lower.Lowered, names: Iterable[str], flat: list[Node | None]
                   ) -> list[tuple[str, list[Node | None]]]:
    """``flat`` (one node per differentiated leaf) split into one list per parameter."""
    fields = []
    position = 0
    for name in names:
        tree = lowered.trees.get(name)
        count = len(tree.leaves()) if tree is not None else 1
        fields.append((name, flat[position:position + count]))
        position += count
    return fields


def _cached(fn: Any, key: tuple) -> Transform | None:
    try:
        return _CACHE.get(fn, {}).get(key)
    except TypeError:
        return None


@functools.cache
def _grads_type(function_name: str, wrt: tuple[str, ...]) -> type:
    return namedtuple(f"{function_name}_grads", wrt, rename=True)


class GradFunction:
    """A function that returns ``(value, grads)``; made by `grad`.

    ``grads`` is a namedtuple with one field per differentiated parameter, in signature order,
    or the gradient itself when ``wrt`` named one parameter as a string (``bare``).
    ``.source`` is the generated Python (black-formatted), ``.graph`` the define-and-run graph,
    ``.__wrapped__`` the original function.
    """

    __wrapped__: Callable[..., Any]
    # What the generated function computes (other modes subclass with their own), and whether
    # calls may go straight to it (the same arguments as the user's function).
    _derive: Deriver = staticmethod(gradient)
    _mode = "grad"
    _direct_calls = True

    def __init__(self, fn: Callable[..., Any], wrt: tuple[str, ...] | None,
                 backend: str = "numpy", bare: bool = False) -> None:
        _check_callable(fn, self._mode)
        original = getattr(fn, "__srcgrad_transform__", None)
        if original is not None:  # `hessian(f)` of a decorated `f`: start from f's source
            if self._mode == "grad" and original._mode == "grad":
                raise TypeError(
                    f"grad() of `{original.__name__}`, which grad already made: it returns "
                    "(value, grads), not a number, so it has no gradient of its own. For "
                    f"second derivatives use srcgrad.hessian({original.__name__}) or "
                    f"srcgrad.hvp, or decorate a function returning one gradient "
                    f"(`def slope(x): return {original.__name__}(x)[1].x`).")
            fn = original.__wrapped__
        functools.update_wrapper(self, fn)
        self._parsed = parse.parse_function(fn)
        names = [p.name for p in self._parsed.params]
        self.wrt: tuple[str, ...] = _check_wrt(self._parsed.name, names, wrt)
        self._transform: Transform | None = None
        self.backend = backend
        self.bare = bare  # `wrt="a"`: the call returns (value, d_a), not (value, Grads(d_a))
        self.__srcgrad_transform__ = self

    def _build(self, structures: dict[str, Any] | None = None,
               shapes: dict[str, Any] | None = None) -> Transform:
        if self._transform is None:
            self._use(build(self._parsed, self.wrt, structures, self._derive, self._mode,
                            self.backend, shapes, self.bare))
        assert self._transform is not None
        return self._transform

    def _use(self, transform: Transform) -> None:
        """Make ``transform`` the one this object runs (first call, or a helper redefined)."""
        self._transform = transform
        transform.on_replace.append(self._use)
        if self._direct_calls:
            # From now on calling this object runs the generated function directly.
            type(self).__call__ = staticmethod(transform.function)
        if self._mode == "grad":  # generated code calling it can be differentiated too
            transform.function.__srcgrad_transform__ = self

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # The first call: its arguments tell which parameters are tuples/lists/dicts of arrays,
        # and if they are all float64 arrays, their shapes (a path specialised to them).
        structures, shapes = call_layout(self.__wrapped__, args, kwargs, self._mode == "grad")
        return self._build(self._checked(structures), shapes).function(*args, **kwargs)

    def _structures(self, args: tuple, kwargs: dict) -> dict[str, Any]:
        return self._checked(call_layout(self.__wrapped__, args, kwargs, shapes=False)[0])

    def _checked(self, structures: dict[str, Any]) -> dict[str, Any]:
        """The call's structures, if this mode takes them (`forward` refuses some)."""
        return structures

    @property
    def function(self) -> Callable[..., Any]:
        """The generated function itself (a plain Python function)."""
        return self._build().function

    @property
    def graph(self) -> FunctionGraph:
        return self._build().graph

    @property
    def source(self) -> str:
        """The generated Python source, formatted by black."""
        return _format(self._build().generated.text)

    @property
    def raw_source(self) -> str:
        """The generated source exactly as compiled (what tracebacks show)."""
        return self._build().generated.text

    def __repr__(self) -> str:
        return f"<srcgrad.grad of {self._parsed.name} w.r.t. {', '.join(self.wrt)}>"

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        if instance is None:
            return self
        return functools.partial(self, instance)


@functools.lru_cache(maxsize=64)
def _format(text: str) -> str:
    import black  # imported here: it costs ~100 ms and only readers of .source need it

    return black.format_str(text, mode=black.Mode())


def _check_callable(fn: Any, mode: str) -> None:
    """A clear `TypeError` for what srcgrad cannot read as a Python function's source."""
    what = "grad" if mode == "grad" else mode
    if isinstance(fn, (staticmethod, classmethod)):
        raise TypeError(f"{what}() got a {type(fn).__name__} object: put @{what} below "
                        f"@{type(fn).__name__}, directly on the `def`.")
    if isinstance(fn, functools.partial):
        raise TypeError(f"{what}() takes a function defined with `def`, not a functools.partial: "
                        "decorate the function itself and pass the fixed arguments when you "
                        "call it (wrt= chooses the parameters to differentiate).")
    if not callable(fn):
        raise TypeError(f"{what}() takes a function defined with `def`; got "
                        f"{type(fn).__name__} {fn!r:.40}.")
    if getattr(fn, "__code__", None) is None and rules.primitive_for(fn) is not None:
        name = getattr(fn, "__name__", repr(fn))
        raise TypeError(f"srcgrad knows the derivative of {name} already; to differentiate it, "
                        f"call it from a function of your own: "
                        f"`@{what}` over `def f(x): return {name}(x)`.")


def _check_wrt(function: str, params: list[str], wrt: Iterable[str] | str | None
               ) -> tuple[str, ...]:
    if wrt is None:
        if not params:
            raise ValueError(f"{function}() has no parameters to differentiate.")
        return tuple(params)
    if isinstance(wrt, str):
        wrt = (wrt,)
    if not isinstance(wrt, Iterable) or not all(isinstance(name, str) for name in wrt):
        raise TypeError(f"wrt={wrt!r}: name the parameters to differentiate, as a string or a "
                        f"tuple of strings (parameters of {function}: {', '.join(params)}).")
    wanted = list(wrt)
    unknown = [name for name in wanted if name not in params]
    if unknown:
        raise ValueError(f"wrt names {', '.join(map(repr, unknown))}, which "
                         f"{'is not a parameter' if len(unknown) == 1 else 'are not parameters'}"
                         f" of {function}({', '.join(params)}).")
    if len(set(wanted)) != len(wanted):
        raise ValueError(f"wrt lists a parameter twice: {wanted}.")
    if not wanted:
        raise ValueError("wrt is empty: name at least one parameter to differentiate.")
    return tuple(name for name in params if name in wanted)  # signature order


def grad(fn: Callable[..., Any] | None = None, *, wrt: Iterable[str] | str | None = None,
         backend: str = "numpy") -> Any:
    """Turn ``fn`` into a function returning ``(value, grads)``.

    Use as ``@grad`` or ``@grad(wrt=("mu", "sigma"))``. ``grads`` is a namedtuple with one field
    per differentiated parameter (all parameters by default), each shaped like its parameter.
    ``wrt="mu"``, one name as a string, returns that gradient itself: ``value, d_mu = f(...)``
    (as ``forward`` does). For an array-valued ``fn`` the gradient is that of the sum of its
    elements.

    ``backend="numba"`` (the ``numba`` extra) compiles elementwise code and its totals into one
    fused loop over the elements, in parallel on large arrays; see docs/performance.md.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}: choose one of {', '.join(map(repr, BACKENDS))}.")
    if backend == "numba" and not fused.available():
        raise ImportError("backend='numba' needs Numba: pip install 'srcgrad[numba]'.")
    if fn is None:
        return functools.partial(grad, wrt=wrt, backend=backend)
    wrt_tuple = None if wrt is None else ((wrt,) if isinstance(wrt, str) else (
        tuple(wrt) if isinstance(wrt, Iterable) else wrt))  # (else: `_check_wrt` says why)
    # A class per decorated function, so that its __call__ can become the generated function.
    cls = type(f"grad_{getattr(fn, '__name__', 'function')}", (GradFunction,), {})
    return cls(fn, wrt_tuple, backend, bare=isinstance(wrt, str))


BACKENDS = ("numpy", "numba")
