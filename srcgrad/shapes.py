"""Static shape classes: which edges of the graph can broadcast.

A node's **shape class** is the set of non-constant leaves its shape can depend on. A node's
shape is the broadcast of its class's shapes, so a node whose class lies within ``x``'s class
has a shape that broadcasts to ``x``'s. Reverse mode uses this to skip ``sum_to`` on edges that
cannot broadcast, forward mode to skip ``expand_to`` on tangents already at full shape.
"""

from __future__ import annotations

from . import rules
from .graph import CONST, Node


class ShapeClasses:
    """For each node, the non-constant leaves its shape may depend on (memoised).

    A node's shape is the broadcast of its class's shapes, so a node whose class is a subset of
    ``x``'s class broadcasts to ``x``'s shape. Non-elementwise nodes (reductions, products,
    backward helpers) are a class of their own: nothing is assumed about their shape.
    """

    def __init__(self, scalars: frozenset[int] = frozenset()) -> None:
        self._memo: dict[int, frozenset[int]] = {i: frozenset() for i in scalars}

    def of(self, node: Node) -> frozenset[int]:
        known = self._memo.get(node.id)
        if known is not None:
            return known
        if node.op == CONST:
            result: frozenset[int] = frozenset()
        elif node.op in ("sum_to", "sum_product"):
            result = self.of(node.args[-2])  # summed down to x's shape (or smaller)
        elif node.op in ("expand_to", "reduce_to"):
            result = self.of(node.args[1])
        elif node.is_leaf or not _elementwise(node):
            # Its shape is its own. That includes user functions: `foo_derive` may describe a
            # function of an array that returns a scalar (a loss), not only elementwise ones.
            result = frozenset({node.id})
        else:
            result = frozenset().union(*(self.of(a) for a in node.args))
        self._memo[node.id] = result
        return result

    def same_shape(self, node: Node, like: Node) -> None:
        """Declare ``node`` to have ``like``'s shape (a tangent parameter beside its primal)."""
        self._memo[node.id] = self.of(like)


def _elementwise(node: Node) -> bool:
    primitive = rules.PRIMITIVES.get(node.op)
    return primitive is not None and primitive.elementwise
