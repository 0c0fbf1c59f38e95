"""Forward mode, directional derivatives, Hessians and Jacobians: the modes beyond `grad`.

Each mode is a *deriver*: from the forward graph of a function it adds the nodes of what the
mode computes and describes what the generated function returns (`codegen.Derivation`). The
rest (parsing, lowering, code generation, the cache, ``.source``) is `grad`'s machinery.

* `forward` and `jvp`: forward mode (`srcgrad.forward`), tangents pushed from the parameters.
* `hvp`: forward over reverse. The gradient is a graph like any other, so pushing a tangent
  through it gives the Hessian times that tangent in one sweep, without forming the Hessian.
* `hessian`: for scalar parameters, one such sweep per parameter, all in one generated
  function; for array (and tuple, list, dict) parameters, one Hessian-vector product per entry.
* `jacobian`: one forward sweep per input entry or one reverse sweep per output entry,
  whichever is fewer.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
from collections import namedtuple
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from . import codegen, lower, reverse, runtime
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

    def _checked(self, structures: dict[str, Any]) -> dict[str, Any]:
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

    def __call__(self, args: Iterable[Any] = (), directions: Any = None,  # type: ignore[override]
                 ) -> Any:
        usage = (f"{self._mode}(f) is called with two tuples, the arguments of f and one "
                 f"direction per differentiated parameter ({', '.join(self.wrt)}): "
                 f"{self._mode}(f)((x, y), (dx, dy))")
        if directions is None or not isinstance(args, (tuple, list)) or not isinstance(
                directions, (tuple, list)):
            raise TypeError(usage)
        return self._call(tuple(args), {}, tuple(directions))

    def _call(self, args: tuple, kwargs: dict, directions: tuple, check: bool = True) -> Any:
        """The generated function on ``f(*args, **kwargs)`` along ``directions``; ``check``
        compares each direction with its parameter (`hessian` and `jacobian` make theirs)."""
        if len(directions) != len(self.wrt):
            raise TypeError(f"{self.__name__}: give one direction per differentiated parameter "
                            f"({', '.join(self.wrt)}); got {len(directions)}.")
        if check:
            try:
                bound = _bound_arguments(self.__wrapped__, args, kwargs).arguments
            except TypeError:
                bound = {}  # the generated function raises Python's own message for this call
            for name, direction in zip(self.wrt, directions, strict=True):
                if name in bound:
                    _check_direction(f"{self._mode} of {self.__name__}", name, bound[name],
                                     direction)
        function = self._build(self._structures(args, kwargs)).function
        return function(*args, **kwargs, **dict(zip(self.direction_names, directions,
                                                    strict=True)))

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
    Array parameters: one Hessian-vector product per entry of each parameter (of each leaf
    of a tuple, list or dict parameter: a block per pair of leaves).
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
        if all(_is_scalar(bound.arguments[name]) for name in self.wrt):
            self.mode_used = "blocks"
            return self._build(self._structures(args, kwargs)).function(*args, **kwargs)
        self.mode_used = "products"
        return self._by_products(bound, [bound.arguments[name] for name in self.wrt])

    @property
    def function(self) -> Callable[..., Any]:
        """This object: which generated function runs depends on the arguments (see class)."""
        return self

    @property
    def source(self) -> str:
        """The generated code the last call ran: every block at once (scalar parameters) or
        the Hessian-vector product applied to each basis vector (arrays)."""
        return self._products.source if self.mode_used == "products" else super().source

    def _by_products(self, bound: inspect.BoundArguments, params: list[Any]) -> Any:
        """One Hessian-vector product per entry of each leaf of each parameter: ``H[i][j]``
        has parameter i's structure, each leaf of which has parameter j's, each leaf of which
        is the block of shape ``S_a + S_b`` of the two leaves a and b."""
        args, kwargs = bound.args, bound.kwargs
        leaves = _Leaves(params)
        value = grads = None
        # columns[a][b]: the products of leaf b, one per entry of leaf a
        columns: list[list[list[Any]]] = [[[] for _ in leaves.flat] for _ in leaves.flat]
        for a, leaf in enumerate(leaves.flat):
            for k in range(_size(leaf)):
                value, grads, products = self._products._call(
                    args, kwargs, leaves.directions(a, k), check=False)
                for b, product in enumerate(leaves.split(products)):
                    columns[a][b].append(product)
        blocks = [[_block(columns[a][b], leaves.flat[a], leaves.flat[b])
                   for b in range(len(leaves.flat))] for a in range(len(leaves.flat))]
        H = tuple(
            tuple(leaves.nest(i, lambda a, j=j: leaves.nest(j, lambda b, a=a: blocks[a][b]))
                  for j in range(len(params)))
            for i in range(len(params)))
        if value is None:  # every parameter is empty
            value, grads = GradFunction(self.__wrapped__, self.wrt)(*args, **kwargs)
        return value, grads, H


class JacobianFunction:
    """``f(*args) -> (value, J)``: J has one field per parameter, shaped ``value.shape +
    parameter.shape`` (for a tuple, list or dict parameter: its structure, each leaf shaped
    ``value.shape + leaf.shape``); made by `jacobian`.

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
        args, kwargs = bound.args, bound.kwargs
        params = [bound.arguments[name] for name in self.wrt]
        leaves = _Leaves(params)
        value, _ = self._columns._call(args, kwargs, leaves.zeros(), check=False)
        out_shape = _shape(value)
        inputs = sum(_size(leaf) for leaf in leaves.flat)
        outputs = math.prod(out_shape)
        xp = runtime.namespace(value)
        blocks: list[Any] = []
        if inputs <= outputs:
            self.mode_used = "forward"
            for a, leaf in enumerate(leaves.flat):
                columns = [xp.broadcast_to(
                    _as_array(self._columns._call(args, kwargs, leaves.directions(a, k),
                                                  check=False)[1], xp), out_shape)
                    for k in range(_size(leaf))]
                block = (xp.stack(columns, axis=-1) if columns
                         else xp.zeros((*out_shape, 0), **_like(value, xp)))
                blocks.append(xp.reshape(block, out_shape + _shape(leaf)))
        else:
            self.mode_used = "reverse"
            function = self._rows._build(self._rows._structures(args, kwargs)).function
            rows: list[list[Any]] = [[] for _ in leaves.flat]
            seed_name = self._rows._build().generated.extra_params[0]
            for m in range(outputs):
                seed = _unit(value, m, xp) if out_shape else 1.0
                _, grads = function(*args, **kwargs, **{seed_name: seed})
                for a, g in enumerate(leaves.split(grads)):
                    rows[a].append(_as_array(g, xp))
            blocks = [xp.reshape(xp.stack(r), out_shape + _shape(leaf))
                      for r, leaf in zip(rows, leaves.flat, strict=True)]
        blocks = [float(b) if not _shape(b) else b for b in blocks]
        container = _tuple_type(self.__name__, "jacobians", self.wrt)
        return value, container(*(leaves.nest(i, blocks.__getitem__)
                                  for i in range(len(params))))

    @property
    def source(self) -> str:
        """The generated function the last call used (tangents, or adjoints per row)."""
        chosen = self._rows if self.mode_used == "reverse" else self._columns
        return chosen.source


class _Leaves:
    """The differentiated parameters as one flat list of leaves (arrays and numbers; a tuple,
    list or dict parameter contributes its leaves in order), and the way back: directions
    with one basis vector, and results following the parameters' structures."""

    def __init__(self, params: list[Any]) -> None:
        self.params = params
        self.flat: list[Any] = []
        self.first: list[int] = []  # where each parameter's leaves start in ``flat``
        for param in params:
            self.first.append(len(self.flat))
            self.flat.extend(_flatten(param, param))

    def zeros(self) -> tuple:
        """A direction of zeros for every parameter."""
        return self.directions(None, 0)

    def directions(self, leaf: int | None, entry: int) -> tuple:
        """One direction per parameter: zero but for entry ``entry`` of leaf ``leaf``, 1."""
        made = [_unit(x, entry, runtime.namespace(x)) if a == leaf
                else _zeros(x, runtime.namespace(x)) for a, x in enumerate(self.flat)]
        return tuple(self.nest(i, made.__getitem__) for i in range(len(self.params)))

    def split(self, results: Iterable[Any]) -> list[Any]:
        """One result per parameter (structured like it) -> one per leaf, in ``flat``'s order."""
        return [leaf for param, result in zip(self.params, results, strict=True)
                for leaf in _flatten(param, result)]

    def nest(self, i: int, leaf_value: Callable[[int], Any]) -> Any:
        """Parameter ``i``'s structure holding ``leaf_value(a)`` for each of its leaves a."""
        counter = iter(range(self.first[i], len(self.flat)))
        return _rebuild(self.params[i], lambda: leaf_value(next(counter)))


def _flatten(like: Any, value: Any) -> list[Any]:
    """The leaves of ``value``, which has ``like``'s structure, in ``like``'s order."""
    if runtime.structure_of(like) is None:
        return [value]
    keys = list(like) if isinstance(like, dict) else range(len(like))
    return [leaf for key in keys for leaf in _flatten(like[key], value[key])]


def _rebuild(like: Any, leaf: Callable[[], Any]) -> Any:
    """``like``'s structure (tuples, lists, dicts), with a new ``leaf()`` for each leaf."""
    if runtime.structure_of(like) is None:
        return leaf()
    if isinstance(like, dict):
        return {key: _rebuild(child, leaf) for key, child in like.items()}
    children = [_rebuild(child, leaf) for child in like]
    return children if isinstance(like, list) else tuple(children)


def _shape(value: Any) -> tuple:
    shape = getattr(value, "shape", None)
    return tuple(np.shape(value) if shape is None else shape)


def _size(value: Any) -> int:
    return math.prod(_shape(value))


def _like(value: Any, xp: Any) -> dict[str, Any]:
    """Keyword arguments making a new array of ``value``'s float dtype and device in ``xp``:
    integer parameters get float64 directions, float32 ones float32 ones."""
    dtype = getattr(value, "dtype", None)
    if xp is np:
        return {"dtype": np.result_type(np.float64 if dtype is None else dtype, np.float32)}
    if dtype is None or not xp.isdtype(dtype, ("real floating", "complex floating")):
        dtype = xp.float64
    device = getattr(value, "device", None)
    return {"dtype": dtype} if device is None else {"dtype": dtype, "device": device}


def _zeros(like: Any, xp: Any) -> Any:
    """A direction of zeros for ``like``: 0.0 for a number, else an array in its namespace
    (``np.zeros_like`` keeps arrays that dispatch NumPy's functions theirs: Dask, CuPy)."""
    if _is_scalar(like):
        return 0.0
    if xp is np:
        return np.zeros_like(like, **_like(like, xp))
    return xp.zeros(_shape(like), **_like(like, xp))


def _unit(like: Any, entry: int, xp: Any) -> Any:
    """Basis vector ``entry`` (in C order) of ``like``'s shape: 1.0 for a number."""
    if _is_scalar(like):
        return 1.0
    if xp is np:
        basis = _zeros(like, xp)
        basis[np.unravel_index(entry, _shape(like))] = 1.0
        return basis
    options = _like(like, xp)
    positions = xp.arange(_size(like), **({"device": options["device"]}
                                          if "device" in options else {}))
    return xp.reshape(xp.astype(positions == entry, options["dtype"]), _shape(like))


def _as_array(value: Any, xp: Any) -> Any:
    """``value`` as an array of ``xp``; arrays NumPy's functions dispatch to (NumPy's, Dask's,
    CuPy's) stay as they are, so that a lazy result is stacked lazily."""
    if xp is np:
        return value if hasattr(value, "__array_function__") else np.asarray(value)
    return xp.asarray(value)


def _block(columns: list[Any], a: Any, b: Any) -> Any:
    """The Hessian block of leaves ``a`` and ``b`` from its columns (the products of leaf b,
    one per entry of a): shape ``S_a + S_b``, a float for two numbers (or 0-d arrays)."""
    shape = _shape(a) + _shape(b)
    if shape == ():
        return float(columns[0])
    xp = runtime.namespace(a, b, *columns)
    block = (xp.reshape(xp.stack([_as_array(c, xp) for c in columns]), shape) if columns
             else xp.zeros(shape, **_like(b if runtime.namespace(b) is xp else a, xp)))
    return block


def _check_direction(where: str, path: str, param: Any, direction: Any) -> None:
    """A direction must have its parameter's structure, and each leaf its leaf's shape
    (docs/modes.md: directions are not broadcast); anything else is an error naming it."""
    what = f"{where}: the direction for parameter {path}"
    if runtime.structure_of(param) is None:
        try:
            given = _shape(direction)
        except (TypeError, ValueError):  # a ragged list, an object that is no array
            given = None
        expected = _shape(param)
        if runtime.structure_of(direction) is not None or given is None:
            raise TypeError(f"{what} must be shaped like it, {expected}; got "
                            f"{_describe(direction)}.")
        if given != expected and all(isinstance(d, int) for d in given + expected):
            raise ValueError(
                f"{what} must have its shape {expected}; got shape {given}. Directions are "
                "not broadcast: for a constant direction give an array of the parameter's "
                "shape (np.full(shape, c)).")
        return
    if isinstance(param, dict):
        if not isinstance(direction, dict) or set(direction) != set(param):
            raise TypeError(f"{what} must be a dict with its keys {list(param)}; got "
                            f"{_describe(direction)}.")
        for key in param:
            _check_direction(where, f"{path}[{key!r}]", param[key], direction[key])
        return
    if not isinstance(direction, (tuple, list)) or len(direction) != len(param):
        raise TypeError(f"{what} must be a tuple or list of {len(param)} directions, like "
                        f"it; got {_describe(direction)}.")
    for index, (leaf, along) in enumerate(zip(param, direction, strict=True)):
        _check_direction(where, f"{path}[{index}]", leaf, along)


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return f"a dict with keys {list(value)}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}"
    try:
        return f"a {type(value).__name__} of shape {_shape(value)}"
    except (TypeError, ValueError):
        return f"a {type(value).__name__}"


def _bound_arguments(fn: Callable[..., Any], args: tuple, kwargs: dict
                     ) -> inspect.BoundArguments:
    """The call bound to ``fn``'s signature, defaults filled in: ``.arguments`` by name,
    ``.args`` and ``.kwargs`` as the signature takes them (keyword-only ones by keyword)."""
    bound = inspect.signature(fn).bind(*args, **kwargs)
    bound.apply_defaults()
    return bound


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
parameter (shaped, or structured, like it: not broadcast, anything else is an error); the
result is the derivative of the value along that direction, shaped like the value.
"""
hvp = _decorator(HVPFunction)
hvp.__doc__ = """Hessian-vector product: ``hvp(f)(args, v) -> (value, grads, Hv)``.

Forward mode over the reverse-mode gradient: the Hessian is never formed. ``v`` has one
direction per differentiated parameter, shaped (or structured) like it; ``Hv`` is shaped like
``grads``.
"""
hessian = _decorator(HessianFunction)
hessian.__doc__ = """Hessian: ``hessian(f)(*args) -> (value, grads, H)``.

``H[i][j]`` holds the second derivatives for parameters i and j: a float for two scalars,
shape ``S_i + S_j`` for arrays of shapes ``S_i`` and ``S_j``. For tuple, list or dict
parameters, ``H[i][j]`` has i's structure, each leaf of which has j's, each leaf of which is
the block of the two leaves (see docs/modes.md).
"""
jacobian = _decorator(JacobianFunction)
jacobian.__doc__ = JacobianFunction.__doc__
