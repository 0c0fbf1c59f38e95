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
from .graph import PARAM, BranchBody, Graph, LoopBody, Node
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
    """Names for a loop (or `if`) forward mode made: the tangent nodes of its body graph(s),
    each with the body node it is the tangent of, and the name pattern (``{}_dot``)."""

    tangent_of: list[dict[int, Node]]  # one per body graph (a loop has one, an `if` two)
    pattern: str


REGION_OPS = ("loop", "branch")
REVERSE_REGION_OPS = ("loop_backward", "loop_adjoint", "branch_backward", "branch_adjoint")


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
    slots: dict[int, dict[int, int]] = {}  # new region id -> {output: output of its tangent}
    for node in graph.reachable([r for r in roots if r is not None]):
        if node.id in seeds:
            tangent[node.id] = graph.lift(seeds[node.id])
            continue
        if node.is_leaf:
            continue
        graph.lineno = node.lineno
        args = tuple(value.get(arg.id, arg) for arg in node.args)
        incoming = tuple(tangent.get(arg.id) for arg in node.args)
        if node.op in REGION_OPS and any(t is not None for t in incoming[1:]):
            made = (_loop_tangent if node.op == "loop" else _branch_tangent)(
                graph, node, args, incoming, pattern)
            if made is not None:
                region, outputs = made
                value[node.id] = region
                slots[region.id] = outputs
                tangent[node.id] = region  # a marker: its outputs' tangents are in `slots`
                continue
        if any(a is not b for a, b in zip(args, node.args, strict=True)):
            value[node.id] = graph.apply(node.op, *args, attrs=node.attrs, hint=node.hint)
        current = value.get(node.id, node)
        if node.op in REGION_OPS:  # only its bounds or its condition moved: no tangent
            continue
        if node.op in ("loop_output", "branch_output"):
            slot = slots.get(current.args[0].id, {}).get(node.attrs[0])
            if slot is not None:
                result = graph.apply(node.op, current.args[0], attrs=(slot,))
                tangent[node.id] = result
                tangent_of.setdefault(result.id, current)
            continue
        if all(t is None for t in incoming):
            continue
        result = _tangent(graph, current, incoming, shapes)
        if result is None:
            continue
        tangent[node.id] = result
        if result.id >= first_new and not result.is_leaf:
            tangent_of.setdefault(result.id, current)
    return Tangents(tangent, tangent_of, value)


def _loop_tangent(graph: Graph, node: Node, args: tuple[Node, ...],
                  incoming: tuple[Node | None, ...], pattern: str
                  ) -> tuple[Node, dict[int, int]] | None:
    """A loop that carries each carried value and its tangent: the body's tangents come from
    this same forward mode run over the body graph (its own parameters seeded by tangent
    parameters), so no tape is needed and the loop stays a loop.

    A carried value has a tangent if it starts with one or if one iteration makes it depend
    on one that has (``s = s + a * x`` gives ``s`` a tangent from ``a``'s). Returns the new
    `loop` node and, per carried value that has a tangent, the output holding it; None if no
    carried value has one (the loop's inputs moved only its bounds or its condition).
    """
    body: LoopBody = node.attrs[0]
    count = len(body.carried)
    initial_t = incoming[3:3 + count]
    invariant_t = incoming[3 + count:]
    sources = {p.id for p, t in zip(body.invariants, invariant_t, strict=True) if t is not None}
    active = [t is not None for t in initial_t]
    while True:  # to a fixed point: a carried value may gain a tangent after some iterations
        sources |= {p.id for p, a in zip(body.carried, active, strict=True) if a}
        reached = _depends(body.graph, body.outputs, sources)
        grown = [a or r for a, r in zip(active, reached, strict=True)]
        if grown == active:
            break
        active = grown
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
    passed = [t is not None and not t.is_const for t in invariant_t]
    invariant_params = [_tangent_param(sub, p, pattern, taken)
                        for p, pass_ in zip(body.invariants, passed, strict=True) if pass_]
    seeds.update(zip([p.id for p, pass_ in zip(body.invariants, passed, strict=True) if pass_],
                     invariant_params, strict=True))
    seeds.update((p.id, sub.const(t.value)) for p, t in zip(body.invariants, invariant_t,
                                                            strict=True)
                 if t is not None and t.is_const)
    roots = [*body.outputs, body.condition]
    inner = forward(sub, roots, seeds, ShapeClasses(), pattern)
    outputs = [inner.primal(o) for o in body.outputs]
    tangent_outputs = [inner.get(o) or sub.const(0.0)
                       for o, a in zip(body.outputs, active, strict=True) if a]
    new_body = LoopBody(sub, body.index, [*body.carried, *carried_t],
                        [*body.invariants, *invariant_params], [*outputs, *tangent_outputs],
                        body.lineno)
    new_body.condition = None if body.condition is None else inner.primal(body.condition)
    new_body.forward = LoopForward([inner.tangent_of], pattern)
    initial = [graph.const(0.0) if t is None else t
               for t, a in zip(initial_t, active, strict=True) if a]
    region = graph.apply("loop", *args[:3 + count], *initial, *args[3 + count:],
                         *(t for t, pass_ in zip(invariant_t, passed, strict=True) if pass_),
                         attrs=(new_body,))
    positions = [k for k, a in enumerate(active) if a]
    new_body.output_nodes = [graph.apply("loop_output", region, attrs=(k,),
                                         hint=body.carried[k].value if k < count else None)
                             for k in range(count + len(positions))]
    return region, {k: count + j for j, k in enumerate(positions)}


def _branch_tangent(graph: Graph, node: Node, args: tuple[Node, ...],
                    incoming: tuple[Node | None, ...], pattern: str
                    ) -> tuple[Node, dict[int, int]] | None:
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
    return region, {k: count + j for j, k in enumerate(positions)}


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
    """Whether each output depends on any of ``sources`` (conservatively: through any
    argument, comparisons included)."""
    depends: dict[int, bool] = {}
    for node in graph.reachable(outputs):
        depends[node.id] = node.id in sources or any(depends[a.id] for a in node.args)
    return [depends[o.id] for o in outputs]


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
    if node.op in REVERSE_REGION_OPS:
        raise rules.NoDerivativeRule(node, "second derivatives (hvp, hessian) through a `for` "
                                     "or `while` loop or an `if` are not supported yet; use "
                                     "srcgrad.grad (reverse mode) for the gradient, or finite "
                                     "differences of srcgrad.grad for its derivative")
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
