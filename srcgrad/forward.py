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

from dataclasses import dataclass

from . import rules
from .array_rules import NONDIFFERENTIABLE_OPS
from .graph import Graph, Node
from .shapes import ShapeClasses


@dataclass
class Tangents:
    """Tangents of the nodes some roots depend on, in one direction."""

    of: dict[int, Node]  # node id -> its tangent (absent: zero)
    tangent_of: dict[int, Node]  # tangent node id -> the node it is the tangent of (names)

    def get(self, node: Node | None) -> Node | None:
        return None if node is None else self.of.get(node.id)


def forward(graph: Graph, roots: list[Node | None], seeds: dict[int, Node],
            shapes: ShapeClasses) -> Tangents:
    """Add the tangents of ``roots`` to ``graph``, given the tangents of some leaves.

    ``seeds`` maps a leaf's id to its tangent (a constant, or a direction parameter declared to
    ``shapes`` with `ShapeClasses.same_shape`). Raises `rules.NoDerivativeRule` for an operation
    with no forward rule, naming the node.
    """
    first_new = len(graph.nodes)
    tangent: dict[int, Node] = {}
    tangent_of: dict[int, Node] = {}
    for node in graph.reachable([r for r in roots if r is not None]):
        if node.id in seeds:
            tangent[node.id] = graph.lift(seeds[node.id])
            continue
        if node.is_leaf:
            continue
        incoming = tuple(tangent.get(arg.id) for arg in node.args)
        if all(t is None for t in incoming):
            continue
        graph.lineno = node.lineno
        result = _tangent(graph, node, incoming, shapes)
        if result is None:
            continue
        tangent[node.id] = result
        if result.id >= first_new and not result.is_leaf:
            tangent_of.setdefault(result.id, node)
    return Tangents(tangent, tangent_of)


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
    if node.op in ("loop", "loop_output", "branch", "branch_output"):
        raise rules.NoDerivativeRule(node, "forward mode through a `for` loop or an `if` is not "
                                     "supported yet; use srcgrad.grad (reverse mode), which "
                                     "supports both")
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
