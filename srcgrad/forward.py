"""Forward mode: the tangent graph of a graph.

The tangent of a node ``n`` in a direction ``v`` is dn/dp · v: how ``n`` moves when the
parameters move along ``v``. Walking the nodes in evaluation order, each node's tangent is built
from its arguments' tangents:

* elementwise primitives and user functions use the **same partials** as reverse mode
  (`rules.partials_of`): tangent = sum of ``partial * tangent of the argument``;
* array primitives (reductions, products, shape changes, indexing) have a forward rule of their
  own in the table (`Primitive.jvp`), which receives tangents at their argument's full shape;
* piecewise-constant operations (comparisons, masks, ``floor``) have tangent zero.

Tangent nodes go into the same hash-consed graph, so a tangent that needs ``cos(x)`` shares the
forward pass's. Because adjoint nodes are graph nodes too, running this over a gradient gives
Hessian-vector products (forward over reverse) with no extra machinery.

A tangent is kept, like an adjoint, in broadcast-compatible form: the seed of a scalar
direction is the constant ``1.0``, not an array of ones. Rules that need the full shape get it
through ``expand_to``, inserted only where shape classes cannot prove it unnecessary.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import rules
from .array_rules import NONDIFFERENTIABLE_OPS
from .graph import PARAM, REGION_VALUES, REGIONS, BranchBody, Graph, LoopBody, Node
from .shapes import ShapeClasses


@dataclass
class Tangents:
    """Tangents of the nodes some roots depend on, in one direction.

    Forward mode through a loop or an `if` makes a new region that computes each value *and*
    its tangent in one pass, so the nodes after it are restated over the new region's outputs
    (hash-consing keeps every node that does not depend on a region as it was). ``value`` maps
    each restated node to the node that now computes it: a mode returns ``primal(output)``, so
    the generated code runs each loop once, not once for the value and again for the tangent.
    """

    of: dict[int, Node]  # node id -> its tangent (absent: zero)
    tangent_of: dict[int, Node]  # tangent node id -> the node it is the tangent of (names)
    value: dict[int, Node] = field(default_factory=dict)  # node id -> the node restating it

    def get(self, node: Node | None) -> Node | None:
        return None if node is None else self.of.get(node.id)

    def primal(self, node: Node) -> Node:
        """The node that computes ``node``'s value alongside the tangents."""
        return self.value.get(node.id, node)


@dataclass
class LoopForward:
    """What forward mode made of a loop (or an `if`): names for the tangent nodes of its body
    graph(s), each with the body node it is the tangent of, and the name pattern (``{}_dot``).

    For a loop that a backward loop also runs over (forward over reverse), ``inner`` holds the
    tangents of the body's adjoint nodes too, and ``seeds`` the body parameter standing for
    each adjoint seed's tangent: `_loop_backward_tangent` builds on them.
    """

    tangent_of: list[dict[int, Node]]  # one per body graph (a loop has one, an `if` two)
    pattern: str
    inner: Tangents | None = None
    seeds: dict[int, Node] = field(default_factory=dict)


@dataclass
class _Region:
    """A region forward mode made: the node, and for each output of the region it replaces,
    which of its own outputs holds that output's value and which its tangent."""

    node: Node
    tangents: dict[int, int]  # output -> the output holding its tangent (absent: zero)
    values: dict[int, int] = field(default_factory=dict)  # output -> its value (absent: same)


def forward(graph: Graph, roots: list[Node | None], seeds: dict[int, Node],
            shapes: ShapeClasses, pattern: str = "{}_dot") -> Tangents:
    """Add the tangents of ``roots`` to ``graph``, given the tangents of some leaves.

    ``seeds`` maps a leaf's id to its tangent (a constant, or a direction parameter declared to
    ``shapes`` with `ShapeClasses.same_shape`). ``pattern`` names the tangents a loop or an `if`
    carries (``x_dot``). Raises `rules.NoDerivativeRule` for an operation with no forward rule,
    naming the node.
    """
    first_new = len(graph.nodes)
    tangent: dict[int, Node] = {}
    tangent_of: dict[int, Node] = {}
    value: dict[int, Node] = {}  # restated nodes (see `Tangents`)
    regions: dict[int, _Region] = {}  # new region id -> what it holds
    order = graph.reachable([r for r in roots if r is not None])
    backward_users = {n.args[0].id for n in order if n.op == "loop_backward"}
    for node in order:
        if node.id in seeds:
            tangent[node.id] = graph.lift(seeds[node.id])
            continue
        if node.is_leaf:
            continue
        graph.lineno = node.lineno
        args = tuple(value.get(arg.id, arg) for arg in node.args)
        incoming = tuple(tangent.get(arg.id) for arg in node.args)
        made = None
        if node.op == "loop" and (node.id in backward_users  # its tape must hold tangents
                                  or any(t is not None for t in incoming[3:])):
            made = _loop_tangent(graph, node, args, incoming, pattern,
                                 full=node.id in backward_users)
        elif node.op == "branch" and any(t is not None for t in incoming[1:]):
            made = _branch_tangent(graph, node, args, incoming, pattern)
        elif node.op == "loop_backward" and any(t is not None for t in incoming):
            made = _loop_backward_tangent(graph, node, args, incoming)
        elif node.op == "branch_backward" and any(t is not None for t in incoming[1:]):
            made = _branch_backward_tangent(graph, node, args, incoming, pattern)
        if made is not None:
            value[node.id] = made.node
            regions[made.node.id] = made
            # A marker: its outputs' tangents are in `regions`.
            tangent[node.id] = tangent[made.node.id] = made.node
            continue
        if node.op in REGION_VALUES:  # an output of a region: renumbered, tangent from it
            region = value.get(node.args[0].id, node.args[0])
            k = node.attrs[0]
            known = regions.get(region.id)
            if region is not node.args[0]:
                position = known.values.get(k, k) if known else k
                value[node.id] = graph.apply(node.op, region, attrs=(position,), hint=node.hint)
            slot = known.tangents.get(k) if known else None
            if slot is not None:
                result = graph.apply(node.op, region, attrs=(slot,))
                tangent[node.id] = tangent[value.get(node.id, node).id] = result
                tangent_of.setdefault(result.id, value.get(node.id, node))
            continue
        if any(a is not b for a, b in zip(args, node.args, strict=True)):
            value[node.id] = graph.apply(node.op, *args, attrs=node.attrs, hint=node.hint)
        current = value.get(node.id, node)
        if node.op in REGIONS:  # only its bounds or its condition moved: no tangent
            continue
        if all(t is None for t in incoming):
            continue
        if current is not node:  # restated: its arguments may be in another order (`a * b`)
            incoming = tuple(tangent.get(arg.id) for arg in current.args)
        result = _tangent(graph, current, incoming, shapes)
        if result is None:
            continue
        tangent[node.id] = tangent[current.id] = result
        if result.id >= first_new and not result.is_leaf:
            tangent_of.setdefault(result.id, current)
    return Tangents(tangent, tangent_of, value)


def _loop_tangent(graph: Graph, node: Node, args: tuple[Node, ...],
                  incoming: tuple[Node | None, ...], pattern: str, full: bool = False
                  ) -> _Region | None:
    """A loop that carries each carried value and its tangent: the body's tangents come from
    this same forward mode run over the body graph (its own parameters seeded by tangent
    parameters), so no tape is needed and the loop stays a loop.

    A carried value has a tangent if it starts with one or if one iteration makes it depend
    on one that has (``s = s + a * x`` gives ``s`` a tangent from ``a``'s). Returns the new
    `loop` node and, per carried value that has a tangent, the output holding it; None if no
    carried value has one (the loop's inputs moved only its bounds or its condition).

    ``full``: a backward loop runs over this one (forward over reverse), and its tangent needs
    every carried value's and every invariant's tangent in the body, zero or not, so the two
    loops agree on one layout: the tape saves each carried value and its tangent.
    """
    body: LoopBody = node.attrs[0]
    count = len(body.carried)
    initial_t = incoming[3:3 + count]
    invariant_t = incoming[3 + count:]
    sources = {p.id for p, t in zip(body.invariants, invariant_t, strict=True) if t is not None}
    active = _carried_with_tangents(body, [full or t is not None for t in initial_t], sources)
    if not any(active):
        return None
    sub = body.graph
    taken = {n.value for n in sub.nodes if n.op == PARAM}
    carried_t = [_tangent_param(sub, p, pattern, taken)
                 for p, a in zip(body.carried, active, strict=True) if a]
    seeds = dict(zip([p.id for p, a in zip(body.carried, active, strict=True) if a],
                     carried_t, strict=True))
    # An invariant's tangent enters the body as a parameter, unless it is a constant (the
    # seed 1.0 of `forward`): then the body uses the constant, and `w * 1.0` is `w`.
    passed = [full or (t is not None and not t.is_const) for t in invariant_t]
    invariant_params = [_tangent_param(sub, p, pattern, taken)
                        for p, pass_ in zip(body.invariants, passed, strict=True) if pass_]
    seeds.update(zip([p.id for p, pass_ in zip(body.invariants, passed, strict=True) if pass_],
                     invariant_params, strict=True))
    seeds.update((p.id, sub.const(t.value)) for p, t, pass_ in zip(
        body.invariants, invariant_t, passed, strict=True)
        if t is not None and t.is_const and not pass_)
    roots = [*body.outputs, body.condition]
    adjoint_seeds: dict[int, Node] = {}
    if full:  # the adjoint nodes of every backward loop over this one, and their seeds
        for backward in (body.backward or {}).values():
            roots += [g for g in (*backward.carried, *backward.invariants) if g is not None]
            for seed in backward.seeds:
                if seed.id not in adjoint_seeds:
                    adjoint_seeds[seed.id] = _tangent_param(sub, seed, pattern, taken)
        seeds.update(adjoint_seeds)
    inner = forward(sub, roots, seeds, ShapeClasses(), pattern)
    outputs = [inner.primal(o) for o in body.outputs]
    tangent_outputs = [inner.get(o) or sub.const(0.0)
                       for o, a in zip(body.outputs, active, strict=True) if a]
    new_body = LoopBody(sub, body.index, [*body.carried, *carried_t],
                        [*body.invariants, *invariant_params], [*outputs, *tangent_outputs],
                        body.lineno)
    new_body.condition = None if body.condition is None else inner.primal(body.condition)
    new_body.exit = body.exit  # the `break` flag keeps its place among the carried values
    new_body.forward = LoopForward([inner.tangent_of], pattern, inner if full else None,
                                   adjoint_seeds)
    initial = [graph.const(0.0) if t is None else t
               for t, a in zip(initial_t, active, strict=True) if a]
    region = graph.apply("loop", *args[:3 + count], *initial, *args[3 + count:],
                         *(graph.const(0.0) if t is None else t
                           for t, pass_ in zip(invariant_t, passed, strict=True) if pass_),
                         attrs=(new_body,))
    positions = [k for k, a in enumerate(active) if a]
    new_body.output_nodes = [graph.apply("loop_output", region, attrs=(k,),
                                         hint=body.carried[k].value if k < count else None)
                             for k in range(count + len(positions))]
    return _Region(region, {k: count + j for j, k in enumerate(positions)})


def _loop_backward_tangent(graph: Graph, node: Node, args: tuple[Node, ...],
                           incoming: tuple[Node | None, ...]) -> _Region:
    """Forward over reverse through a loop: a backward loop over the loop `_loop_tangent`
    made (``full``), whose tape gives each iteration's carried values and their tangents. It
    passes back each carried value's adjoint and that adjoint's tangent, and sums each
    invariant's adjoint and that adjoint's tangent, all from the tangents already taken of the
    body's adjoint nodes (`LoopForward.inner`).

    Its outputs follow the new body's layout: the carried values, their tangents, the
    invariants, their tangents; the slot of ``x_dot`` carries the tangent of ``d_x``.
    """
    body, wanted = node.attrs
    region = args[0]
    new_body: LoopBody = region.attrs[0]
    made: LoopForward = new_body.forward
    if made is None or made.inner is None:  # the loop did not move: only the seeds did
        raise rules.NoDerivativeRule(node, _NOT_YET)
    inner = made.inner
    backward = body.backward[wanted]
    count, invariants = len(body.carried), len(body.invariants)
    finals_t = incoming[4:4 + count]

    def value_of(g: Node | None) -> Node | None:
        return None if g is None else inner.primal(g)

    adjoint_of = {inner.primal(graph_node).id: inner.primal(forward_node)
                  for graph_node, forward_node in _nodes(body.graph, backward.adjoint_of)}
    tangents = [None if g is None else inner.get(g) for g in (*backward.carried,
                                                              *backward.invariants)]
    combined = type(backward)(
        [*backward.seeds, *(made.seeds[s.id] for s in backward.seeds)],
        [*map(value_of, backward.carried), *tangents[:count]],
        [*map(value_of, backward.invariants), *tangents[count:]],
        adjoint_of, backward.first_adjoint_id)
    combined.tangent_of, combined.pattern = [inner.tangent_of], made.pattern
    wanted_both = (*wanted, *wanted)
    new_body.backward = {**(new_body.backward or {}), wanted_both: combined}
    new_node = graph.apply("loop_backward", region, *region.args[:3], *args[4:4 + count],
                           *(graph.const(0.0) if t is None else t for t in finals_t),
                           *region.args[3:], attrs=(new_body, wanted_both))
    values = {count + j: 2 * count + j for j in range(invariants)}
    slots = {k: count + k for k in range(count)}
    slots.update((count + j, 2 * count + invariants + j) for j in range(invariants))
    return _Region(new_node, slots, values)


def _branch_backward_tangent(graph: Graph, node: Node, args: tuple[Node, ...],
                             incoming: tuple[Node | None, ...], pattern: str) -> _Region:
    """Forward over reverse through an `if`: the adjoint of the branch taken and, beside it,
    that adjoint's tangent (forward mode over the branch's adjoint nodes, seeded by tangent
    parameters for its inputs and its outputs' adjoints). Its inputs are the old ones and
    their tangents, its outputs each input's adjoint and that adjoint's tangent."""
    body, wanted = node.attrs
    backward = body.backward[wanted]
    count = len(body.names)
    seeds_out, inputs_out, adjoint_of, tangent_of, params_out = [], [], [], [], []
    for b, (sub, params) in enumerate(zip(body.graphs, body.inputs, strict=True)):
        taken = {n.value for n in sub.nodes if n.op == PARAM}
        params_t = [_tangent_param(sub, p, pattern, taken) for p in params]
        seeds_t = [_tangent_param(sub, s, pattern, taken) for s in backward.seeds[b]]
        seeds = {p.id: t for p, t in zip([*params, *backward.seeds[b]], [*params_t, *seeds_t],
                                          strict=True)}
        grads = backward.inputs[b]
        inner = forward(sub, [g for g in grads if g is not None], seeds, ShapeClasses(),
                        pattern)
        seeds_out.append([*backward.seeds[b], *seeds_t])
        inputs_out.append([*(None if g is None else inner.primal(g) for g in grads),
                           *(None if g is None else inner.get(g) for g in grads)])
        adjoint_of.append({inner.primal(n).id: inner.primal(f)
                           for n, f in _nodes(sub, backward.adjoint_of[b])})
        tangent_of.append(inner.tangent_of)
        params_out.append([*params, *params_t])
    # Only its backward is ever emitted: the outputs stay the old ones (never read).
    new_body = BranchBody(body.graphs, (params_out[0], params_out[1]), body.outputs,
                          [*body.names, *(pattern.format(n) for n in body.names)], body.lineno)
    combined = type(backward)((seeds_out[0], seeds_out[1]), (inputs_out[0], inputs_out[1]),
                              (adjoint_of[0], adjoint_of[1]))
    combined.tangent_of, combined.pattern = tangent_of, pattern
    wanted_both = (*wanted, *wanted)
    new_body.backward[wanted_both] = combined
    zero = graph.const(0.0)
    new_node = graph.apply("branch_backward", args[0], *args[1:1 + count],
                           *(zero if t is None else t for t in incoming[1:1 + count]),
                           *args[1 + count:], *(zero if t is None else t
                                                for t in incoming[1 + count:]),
                           attrs=(new_body, wanted_both))
    inputs = len(body.inputs[0])
    return _Region(new_node, {k: inputs + k for k in range(inputs)})


def _nodes(sub: Graph, table: dict[int, Node]) -> list[tuple[Node, Node]]:
    """``table`` (node id -> node) as pairs of nodes of ``sub``."""
    return [(sub.nodes[i], n) for i, n in table.items()]


_NOT_YET = ("second derivatives (hvp, hessian) through this loop are not supported yet; use "
            "srcgrad.grad (reverse mode) for the gradient, or finite differences of "
            "srcgrad.grad for its derivative")


def _branch_tangent(graph: Graph, node: Node, args: tuple[Node, ...],
                    incoming: tuple[Node | None, ...], pattern: str
                    ) -> _Region | None:
    """An `if` whose branches compute each output and its tangent (each branch's tangents
    from forward mode over its graph), so only the branch taken runs, as in the value.

    Returns the new `branch` node and, per output with a tangent in either branch, the output
    holding it (a branch that gives it none gives zero); None if no output has one.
    """
    body: BranchBody = node.attrs[0]
    inputs_t = incoming[1:]
    passed = [t is not None and not t.is_const for t in inputs_t]
    made = []
    for sub, params, outputs in zip(body.graphs, body.inputs, body.outputs, strict=True):
        taken = {n.value for n in sub.nodes if n.op == PARAM}
        tangent_params = [_tangent_param(sub, p, pattern, taken)
                          for p, pass_ in zip(params, passed, strict=True) if pass_]
        seeds = {p.id: t for p, t in zip(
            [p for p, pass_ in zip(params, passed, strict=True) if pass_], tangent_params,
            strict=True)}
        seeds.update((p.id, sub.const(t.value)) for p, t in zip(params, inputs_t, strict=True)
                     if t is not None and t.is_const)  # as in a loop: constants stay constants
        inner = forward(sub, list(outputs), seeds, ShapeClasses(), pattern)
        made.append((sub, tangent_params, inner))
    outputs_active = [any(inner.get(o) is not None for (_, _, inner), o in zip(made, pair,
                                                                             strict=True))
                      for pair in zip(*body.outputs, strict=True)]
    if not any(outputs_active):
        return None
    inputs, outputs = [], []
    for (sub, tangent_params, inner), params, results in zip(made, body.inputs, body.outputs,
                                                            strict=True):
        inputs.append([*params, *tangent_params])
        outputs.append([*(inner.primal(o) for o in results),
                        *(inner.get(o) or sub.const(0.0)
                          for o, a in zip(results, outputs_active, strict=True) if a)])
    names = [*body.names, *(pattern.format(name)
                            for name, a in zip(body.names, outputs_active, strict=True) if a)]
    new_body = BranchBody(body.graphs, (inputs[0], inputs[1]), (outputs[0], outputs[1]), names,
                          body.lineno)
    new_body.forward = LoopForward([inner.tangent_of for _, _, inner in made], pattern)
    region = graph.apply("branch", *args,
                         *(t for t, pass_ in zip(inputs_t, passed, strict=True) if pass_),
                         attrs=(new_body,))
    new_body.output_nodes = [graph.apply("branch_output", region, attrs=(k,),
                                         hint=name if k < len(body.names) else None)
                             for k, name in enumerate(names)]
    count = len(body.names)
    positions = [k for k, a in enumerate(outputs_active) if a]
    return _Region(region, {k: count + j for j, k in enumerate(positions)})


def _tangent_param(sub: Graph, param: Node, pattern: str, taken: set[str]) -> Node:
    """A parameter of a body graph standing for ``param``'s tangent (``x_dot``), never one of
    the body's own parameters even if the source has a variable of that name."""
    base = name = pattern.format(param.value)
    n = 1
    while name in taken:
        n += 1
        name = f"{base}_{n}"
    taken.add(name)
    return sub.param(name)


def _depends(graph: Graph, outputs: list[Node], sources: set[int]) -> list[bool]:
    """Whether each output may have a tangent when ``sources`` have one: through any argument
    but as forward mode sees it, so a comparison, a loop's bounds and an `if`'s condition pass
    none, and each output of a region depends on what that output's own body reads (a loop's
    `break` flag does not gain a tangent because the loop's sum has one)."""
    depends: dict[int, bool] = {}
    region_outputs: dict[int, list[bool]] = {}
    for node in graph.reachable(outputs):
        if node.id in sources:
            depends[node.id] = True
        elif node.is_leaf or node.op in NONDIFFERENTIABLE_OPS:
            depends[node.id] = False
        elif node.op in ("loop_output", "branch_output"):
            depends[node.id] = region_outputs[node.args[0].id][node.attrs[0]]
        elif node.op == "loop":
            body = node.attrs[0]
            count = len(body.carried)
            active = [depends[a.id] for a in node.args[3:3 + count]]
            inner = {p.id for p, a in zip(body.invariants, node.args[3 + count:], strict=True)
                     if depends[a.id]}
            region_outputs[node.id] = _carried_with_tangents(body, active, inner)
            depends[node.id] = any(region_outputs[node.id])
        elif node.op == "branch":
            body = node.attrs[0]
            found = [_depends(sub, list(results), {p.id for p, a in zip(
                params, node.args[1:], strict=True) if depends[a.id]})
                for sub, params, results in zip(body.graphs, body.inputs, body.outputs,
                                                strict=True)]
            region_outputs[node.id] = [a or b for a, b in zip(*found, strict=True)]
            depends[node.id] = any(region_outputs[node.id])
        else:
            depends[node.id] = any(depends[a.id] for a in node.args)
    return [depends[o.id] for o in outputs]


def _carried_with_tangents(body: LoopBody, active: list[bool], sources: set[int]) -> list[bool]:
    """Which carried values of a loop have tangents: those that start with one, and to a fixed
    point those one iteration makes depend on one that has, or on an invariant in
    ``sources``."""
    while True:
        reached = _depends(body.graph, body.outputs, sources | {
            p.id for p, a in zip(body.carried, active, strict=True) if a})
        grown = [a or r for a, r in zip(active, reached, strict=True)]
        if grown == active:
            return active
        active = grown


def _tangent(graph: Graph, node: Node, incoming: tuple[Node | None, ...],
             shapes: ShapeClasses) -> Node | None:
    if node.op in NONDIFFERENTIABLE_OPS:
        return None  # piecewise constant (a mask, a comparison, floor): derivative zero
    primitive = rules.PRIMITIVES[node.op]
    if primitive.jvp is not None:
        if primitive.full_tangents:
            incoming = tuple(
                t if t is None or shapes.of(arg) <= shapes.of(t)
                else graph.apply("expand_to", t, arg)
                for arg, t in zip(node.args, incoming, strict=True))
        return primitive.jvp(incoming, *node.args, out=node)
    if node.op == "item":  # an element of a structured tangent
        return graph.apply("item", incoming[0], attrs=node.attrs)
    if primitive.partials is None and node.op != "call":
        raise rules.NoDerivativeRule(node, _no_rule(node))
    terms = [graph.apply("mul", partial, t)
             for partial, t in zip(rules.partials_of(node), incoming, strict=True)
             if partial is not None and t is not None]
    if not terms:
        return None
    total = graph.add_all(terms)
    if node.op == "call":  # `foo_derive` may describe a scalar function of an array argument
        total = graph.apply("reduce_to", total, node)
    return total


def _no_rule(node: Node) -> str:
    if node.op.endswith("_backward"):
        name = rules.numpy_spelling(node.op.removesuffix("_backward"))
        return (f"second derivatives through `{name}` are not supported yet (its gradient, "
                f"`{node.op}`, has no derivative rule)")
    return f"`{node.op}` has no forward-mode derivative rule"
