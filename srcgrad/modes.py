"""Forward mode, directional derivatives, Hessians and Jacobians: the modes beyond `grad`.

Each mode is a *deriver*: from the forward graph of a function it adds the nodes of what the
mode computes and describes what the generated function returns (`codegen.Derivation`). The
rest (parsing, lowering, code generation, the cache, ``.source``) is `grad`'s machinery.

* `forward` and `jvp`: forward mode (`srcgrad.forward`), tangents pushed from the parameters.
* `hvp`: forward over reverse. The gradient is a graph like any other, so pushing a tangent
  through it gives the Hessian times that tangent in one sweep, without forming the Hessian.
* `hessian`: for scalar parameters, one such sweep per parameter, all in one generated
  function; for array parameters, one Hessian-vector product per entry.
* `jacobian`: one forward sweep per input entry or one reverse sweep per output entry,
  whichever is fewer.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections import namedtuple
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from . import codegen, lower, reverse
from .forward import Tangents
from .forward import forward as push_tangents
from .graph import PARAM, Node
from .parse import python_identifier
from .shapes import ShapeClasses
from .transform import SCALAR, GradFunction, gradient, per_parameter


# --- derivers: graph -> what the generated function returns ---------------------------------------
def _directions(lowered: lower.Lowered, wrt: tuple[str, ...], shapes: ShapeClasses,
                pattern: str) -> tuple[list[str], dict[int, Node], dict[str, lower.Tree]]:
    """A direction parameter beside each differentiated parameter (``a_dot`` beside ``a``),
    with ``a``'s structure; returns their names, the seeds they give and their trees."""
    graph = lowered.graph
    # Not the parameters srcgrad added itself: a second path (the mixed one) must reuse them.
    taken = set(lowered.params) | {n.hint for n in graph.nodes if n.hint and n.op != PARAM} | set(
        lowered.live_globals) | set(lowered.bound)
    names: list[str] = []
    seeds: dict[int, Node] = {}
    trees: dict[str, lower.Tree] = {}
    for name in wrt:
        direction_name = codegen._fresh(pattern.format(name), taken)
        taken.add(direction_name)
        names.append(direction_name)
        direction = graph.param(direction_name)
        primal_tree = lowered.trees.get(name)
        if primal_tree is not None:
            trees[direction_name] = lower.mirror(graph, direction, primal_tree)
            pairs = zip(primal_tree.leaves(), trees[direction_name].leaves(), strict=True)
        else:
            pairs = zip([lowered.params[name]], [direction], strict=True)
        for primal, leaf in pairs:
            seeds[primal.id] = leaf
            shapes.same_shape(leaf, primal)
    return names, seeds, trees


def directional(lowered: lower.Lowered, wrt: tuple[str, ...], wrt_nodes: list[Node],
                scalars: frozenset[int]) -> codegen.Derivation:
    """`jvp`: the value's derivative along given directions, one per parameter in ``wrt``."""
    graph = lowered.graph
    shapes = ShapeClasses(scalars)
    names, seeds, trees = _directions(lowered, wrt, shapes, "{}_dot")
    first_tangent_id = len(graph.nodes)
    tangents = push_tangents(graph, [lowered.output], seeds, shapes)
    return codegen.Derivation(
        [codegen.Section([("value_dot", [tangents.get(lowered.output)])], "value")],
        tangent_of=tangents.tangent_of, extra_params=names, extra_trees=trees,
        phases=[(first_tangent_id, "tangent")], differentiated=list(wrt),
        value=tangents.primal(lowered.output), restated=tangents.value)


def per_parameter_tangents(lowered: lower.Lowered, wrt: tuple[str, ...], wrt_nodes: list[Node],
                           scalars: frozenset[int]) -> codegen.Derivation:
    """`forward`: d value / d p for each ``p`` in ``wrt``, seeding p's tangent with 1."""
    graph = lowered.graph
    shapes = ShapeClasses(scalars)
    first_tangent_id = len(graph.nodes)
    fields: list[tuple[str, list[Node | None]]] = []
    tangent_of: dict[int, Node] = {}
    patterns: dict[int, str] = {}
    value, restated = lowered.output, {}
    for name, node in zip(wrt, wrt_nodes, strict=True):
        tangents = push_tangents(graph, [lowered.output], {node.id: graph.const(1.0)}, shapes,
                                 f"d{{}}_d{name}")
        fields.append((f"dvalue_d{name}", [tangents.get(lowered.output)]))
        if value is lowered.output:  # the first region that carries a tangent gives it
            value, restated = tangents.primal(lowered.output), tangents.value
        for tangent_id, primal in tangents.tangent_of.items():
            if tangent_id not in tangent_of:
                tangent_of[tangent_id] = primal
                patterns[tangent_id] = f"d{{}}_d{name}"
    container = _tuple_type(lowered.parsed.name, "tangents", wrt) if len(wrt) > 1 else None
    if container is not None:
        fields = [(name, nodes) for name, (_, nodes) in zip(wrt, fields, strict=True)]
    return codegen.Derivation(
        [codegen.Section(fields, "value", container, "Tangents")], tangent_of=tangent_of,
        tangent_names=patterns, phases=[(first_tangent_id, "tangent")],
        differentiated=list(wrt), value=value, restated=restated)


def hessian_vector(lowered: lower.Lowered, wrt: tuple[str, ...], wrt_nodes: list[Node],
                   scalars: frozenset[int]) -> codegen.Derivation:
    """`hvp`: the gradient, and its derivative along given directions (forward over reverse)."""
    graph = lowered.graph
    gradients = gradient(lowered, wrt, wrt_nodes, scalars)
    grads = [node for _, nodes in gradients.sections[0].fields for node in nodes]
    shapes = ShapeClasses(scalars)
    names, seeds, trees = _directions(lowered, wrt, shapes, "{}_dot")
    first_tangent_id = len(graph.nodes)
    tangents = push_tangents(graph, [lowered.output, *grads], seeds, shapes)
    products = [tangents.get(g) for g in grads]
    grads_type = gradients.sections[0].container
    return codegen.Derivation(
        [_restated(gradients.sections[0], tangents),
         codegen.Section(per_parameter(lowered, wrt, products), "param", grads_type)],
        adjoint_of=_restated_names(gradients.adjoint_of, tangents),
        adjoints=gradients.adjoints, tangent_of=tangents.tangent_of, extra_params=names,
        extra_trees=trees, phases=[*gradients.phases, (first_tangent_id, "second order")],
        differentiated=list(wrt), value=tangents.primal(lowered.output),
        restated=tangents.value)


def _restated(section: codegen.Section, tangents: Tangents) -> codegen.Section:
    """``section`` with each node replaced by the one forward mode restated it as (a gradient
    computed by the backward loop that runs over the loop carrying tangents)."""
    fields = [(name, [None if n is None else tangents.primal(n) for n in nodes])
              for name, nodes in section.fields]
    return dataclasses.replace(section, fields=fields)


def _restated_names(adjoint_of: dict[int, Node], tangents: Tangents) -> dict[int, Node]:
    """``adjoint_of`` extended to the restated adjoints, so they keep their names (``d_x``)."""
    named = dict(adjoint_of)
    for old_id, node in tangents.value.items():
        if old_id in adjoint_of:
            named.setdefault(node.id, tangents.primal(adjoint_of[old_id]))
    return named


def hessian_blocks(lowered: lower.Lowered, wrt: tuple[str, ...], wrt_nodes: list[Node],
                   scalars: frozenset[int]) -> codegen.Derivation:
    """`hessian` of scalar parameters: the gradient, then one tangent sweep per parameter
    through it, all in one function (shared subexpressions computed once)."""
    graph = lowered.graph
    gradients = gradient(lowered, wrt, wrt_nodes, scalars)
    grads = [node for _, nodes in gradients.sections[0].fields for node in nodes]
    shapes = ShapeClasses(scalars)
    first_tangent_id = len(graph.nodes)
    rows: list[tuple[str, list[Node | None]]] = []
    tangent_of: dict[int, Node] = {}
    patterns: dict[int, str] = {}
    first: Tangents | None = None
    for name, node in zip(wrt, wrt_nodes, strict=True):
        tangents = push_tangents(graph, [lowered.output, *grads], {node.id: graph.const(1.0)},
                                 shapes, f"{{}}_d_{name}")
        first = first or tangents
        rows.append((name, [tangents.get(g) for g in grads]))
        for tangent_id, primal in tangents.tangent_of.items():
            if tangent_id not in tangent_of:
                tangent_of[tangent_id] = primal
                patterns[tangent_id] = f"{{}}_d_{name}"
    value, restated = lowered.output, {}
    adjoint_of = gradients.adjoint_of
    section = gradients.sections[0]
    if first is not None:  # the value and gradient come from the regions the first sweep made
        value, restated = first.primal(lowered.output), first.value
        adjoint_of = _restated_names(adjoint_of, first)
        section = _restated(section, first)
    return codegen.Derivation(
        [section, codegen.Section(rows, "rows")],
        adjoint_of=adjoint_of, adjoints=gradients.adjoints, tangent_of=tangent_of,
        tangent_names=patterns,
        phases=[*gradients.phases, (first_tangent_id, "second order")],
        differentiated=list(wrt), value=value, restated=restated)


def cotangent(lowered: lower.Lowered, wrt: tuple[str, ...], wrt_nodes: list[Node],
              scalars: frozenset[int]) -> codegen.Derivation:
    """A vector-Jacobian product: reverse mode seeded with a given adjoint of the value."""
    graph = lowered.graph
    taken = {n.hint for n in graph.nodes if n.hint and n.op != PARAM} | set(lowered.params)
    seed_name = codegen._fresh("d_value", taken)
    seed = graph.param(seed_name)
    first_adjoint_id = len(graph.nodes)
    adjoints = reverse.reverse(graph, lowered.output, wrt_nodes, scalars=scalars, seed=seed)
    grads_type = _tuple_type(lowered.parsed.name, "grads", wrt)
    return codegen.Derivation(
        [codegen.Section(per_parameter(lowered, wrt, adjoints.grads), "param", grads_type)],
        adjoint_of=adjoints.adjoint_of, adjoints=adjoints.of, extra_params=[seed_name],
        phases=[(first_adjoint_id, "backward")], differentiated=list(wrt))


@functools.cache
def _tuple_type(function_name: str, what: str, fields: tuple[str, ...]) -> type:
    return namedtuple(f"{python_identifier(function_name)}_{what}", fields, rename=True)


# --- the public objects ---------------------------------------------------------------------------
class ForwardFunction(GradFunction):
    """A function returning ``(value, dvalue_dp)``: forward mode (made by `forward`)."""

    _derive = staticmethod(per_parameter_tangents)
    _mode = "forward"

    def _structures(self, args: tuple, kwargs: dict) -> dict[str, Any]:
        structures = super()._structures(args, kwargs)
        for name in self.wrt:
            if structures.get(name) not in (None, SCALAR):
                raise TypeError(
                    f"forward() differentiates with respect to numbers and arrays; {name!r} is "
                    "a tuple/list/dict: use srcgrad.jvp(f) with a direction of the same "
                    "structure.")
        return structures


class _DirectionFunction(GradFunction):
    """Shared by `jvp` and `hvp`: called as ``f(args, directions)``."""

    _direct_calls = False

    def __call__(self, args: Iterable[Any], directions: Iterable[Any]  # type: ignore[override]
                 ) -> Any:
        args = tuple(args)
        directions = tuple(directions)
        if len(directions) != len(self.wrt):
            raise TypeError(f"{self.__name__}: give one direction per differentiated parameter "
                            f"({', '.join(self.wrt)}); got {len(directions)}.")
        function = self._build(self._structures(args, {})).function
        return function(*args, **dict(zip(self.direction_names, directions, strict=True)))

    @property
    def direction_names(self) -> list[str]:
        return self._build().generated.extra_params


class JVPFunction(_DirectionFunction):
    """``f(args, tangents) -> (value, directional derivative)``; made by `jvp`."""

    _derive = staticmethod(directional)
    _mode = "jvp"


class HVPFunction(_DirectionFunction):
    """``f(args, v) -> (value, grads, Hv)``; made by `hvp`."""

    _derive = staticmethod(hessian_vector)
    _mode = "hvp"


class _VJPFunction(GradFunction):
    _derive = staticmethod(cotangent)
    _mode = "vjp"
    _direct_calls = False


class HessianFunction(GradFunction):
    """``f(*args) -> (value, grads, H)``; made by `hessian`.

    Scalar parameters: one generated function computes every block (``.source`` shows it).
    Array parameters: one Hessian-vector product per entry of each parameter.
    """

    _derive = staticmethod(hessian_blocks)
    _mode = "hessian"
    _direct_calls = False

    def __init__(self, fn: Callable[..., Any], wrt: tuple[str, ...] | None) -> None:
        super().__init__(fn, wrt)
        self._products = HVPFunction(fn, self.wrt)
        self.mode_used: str | None = None  # "blocks" or "products", after a call

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._transform is not None and not kwargs and all(
                type(a) in (float, int) for a in args):
            self.mode_used = "blocks"  # the common case, without binding the signature
            return self._transform.function(*args)
        bound = _bound_arguments(self.__wrapped__, args, kwargs)
        if all(_is_scalar(bound[name]) for name in self.wrt):
            self.mode_used = "blocks"
            return self._build(self._structures(args, kwargs)).function(*args, **kwargs)
        self.mode_used = "products"
        return self._by_products(tuple(bound.values()), [bound[name] for name in self.wrt])

    @property
    def function(self) -> Callable[..., Any]:
        """This object: which generated function runs depends on the arguments (see class)."""
        return self

    @property
    def source(self) -> str:
        """The generated code the last call ran: every block at once (scalar parameters) or
        the Hessian-vector product applied to each basis vector (arrays)."""
        return self._products.source if self.mode_used == "products" else super().source

    def _by_products(self, args: tuple, params: list[Any]) -> Any:
        arrays = [np.asarray(p, dtype=np.result_type(np.asarray(p).dtype, np.float32))
                  for p in params]
        zeros = [np.zeros_like(a) for a in arrays]
        value = grads = None
        rows: list[list[list[Any]]] = [[[] for _ in arrays] for _ in arrays]
        for i, array in enumerate(arrays):
            for k in range(array.size):
                direction = list(zeros)
                basis = np.zeros_like(array)
                basis.flat[k] = 1.0
                direction[i] = basis
                value, grads, products = self._products(args, direction)
                for j, product in enumerate(products):
                    rows[i][j].append(np.asarray(product))
        blocks = tuple(
            tuple(_block(rows[i][j], arrays[i].shape + arrays[j].shape)
                  for j in range(len(arrays)))
            for i in range(len(arrays)))
        if value is None:  # every parameter is empty
            value, grads = GradFunction(self.__wrapped__, self.wrt)(*args)
        return value, grads, blocks


class JacobianFunction:
    """``f(*args) -> (value, J)``: J has one field per parameter, shaped ``value.shape +
    parameter.shape``; made by `jacobian`.

    The rule: forward mode when the parameters have fewer entries in all than the value
    (one forward sweep per parameter entry gives a column), else reverse mode (one reverse
    sweep per value entry gives a row). A scalar-valued function takes one reverse sweep.
    """

    def __init__(self, fn: Callable[..., Any], wrt: tuple[str, ...] | None) -> None:
        self._columns = JVPFunction(fn, wrt)
        self._rows = _VJPFunction(fn, wrt)
        functools.update_wrapper(self, self._columns.__wrapped__)
        self.wrt = self._columns.wrt
        self.mode_used: str | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        bound = _bound_arguments(self.__wrapped__, args, kwargs)
        args = tuple(bound.values())
        params = [np.asarray(bound[name], dtype=float) for name in self.wrt]
        value, _ = self._columns(args, [np.zeros_like(p) for p in params])
        out_shape = np.shape(value)
        inputs = sum(p.size for p in params)
        outputs = int(np.prod(out_shape))
        jacobians: list[np.ndarray] = []
        if inputs <= outputs:
            self.mode_used = "forward"
            for i, p in enumerate(params):
                columns = []
                for k in range(p.size):
                    direction = [np.zeros_like(q) for q in params]
                    direction[i].flat[k] = 1.0
                    columns.append(np.broadcast_to(self._columns(args, direction)[1], out_shape))
                block = np.stack(columns, axis=-1) if columns else np.zeros((*out_shape, 0))
                jacobians.append(block.reshape(out_shape + p.shape))
        else:
            self.mode_used = "reverse"
            function = self._rows._build(self._rows._structures(args, {})).function
            rows: list[list[np.ndarray]] = [[] for _ in params]
            seed_name = self._rows._build().generated.extra_params[0]
            for m in range(outputs):
                seed = np.zeros(out_shape)
                seed.flat[m] = 1.0
                _, grads = function(*args, **{seed_name: seed if out_shape else 1.0})
                for i, g in enumerate(grads):
                    rows[i].append(np.asarray(g))
            jacobians = [np.stack(r).reshape(out_shape + p.shape) for r, p in zip(
                rows, params, strict=True)]
        container = _tuple_type(self.__name__, "jacobians", self.wrt)
        return value, container(*(j if j.shape else float(j) for j in jacobians))

    @property
    def source(self) -> str:
        """The generated function the last call used (tangents, or adjoints per row)."""
        chosen = self._rows if self.mode_used == "reverse" else self._columns
        return chosen.source


def _block(columns: list[Any], shape: tuple[int, ...]) -> Any:
    """One Hessian block from its columns: a float for two scalar parameters."""
    block = np.stack(columns).reshape(shape) if columns else np.zeros(shape)
    return float(block) if block.ndim == 0 else block


def _bound_arguments(fn: Callable[..., Any], args: tuple, kwargs: dict) -> dict[str, Any]:
    """Every argument of a call by name, defaults filled in (modes call with them in order)."""
    bound = inspect.signature(fn).bind(*args, **kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


# --- the API --------------------------------------------------------------------------------------
def _decorator(cls: type) -> Callable[..., Any]:
    def make(fn: Callable[..., Any] | None = None, *,
             wrt: Iterable[str] | str | None = None) -> Any:
        if fn is None:
            return functools.partial(make, wrt=wrt)
        wrt_tuple = None if wrt is None else ((wrt,) if isinstance(wrt, str) else tuple(wrt))
        if issubclass(cls, GradFunction):  # a class per function: see `grad`
            own = type(f"{cls.__name__}_{getattr(fn, '__name__', 'function')}", (cls,), {})
            return own(fn, wrt_tuple)
        return cls(fn, wrt_tuple)

    return make


forward = _decorator(ForwardFunction)
forward.__doc__ = """Forward mode: ``forward(f, wrt="a")(*args) -> (value, dvalue_da)``.

For an array ``a`` the tangent of ``a`` is all ones, so an elementwise ``f`` gets its
per-element derivative. Several ``wrt`` names give a namedtuple of tangents, one per name.
"""
jvp = _decorator(JVPFunction)
jvp.__doc__ = """Jacobian-vector product: ``jvp(f)(args, tangents) -> (value, derivative)``.

``args`` is the tuple of f's arguments, ``tangents`` one direction per differentiated
parameter (shaped, or structured, like it); the result is the derivative of the value along
that direction, shaped like the value.
"""
hvp = _decorator(HVPFunction)
hvp.__doc__ = """Hessian-vector product: ``hvp(f)(args, v) -> (value, grads, Hv)``.

Forward mode over the reverse-mode gradient: the Hessian is never formed. ``v`` has one
direction per differentiated parameter; ``Hv`` is shaped like ``grads``.
"""
hessian = _decorator(HessianFunction)
hessian.__doc__ = """Hessian: ``hessian(f)(*args) -> (value, grads, H)``.

``H[i][j]`` holds the second derivatives for parameters i and j: a float for two scalars,
shape ``S_i + S_j`` for arrays of shapes ``S_i`` and ``S_j``.
"""
jacobian = _decorator(JacobianFunction)
jacobian.__doc__ = JacobianFunction.__doc__
