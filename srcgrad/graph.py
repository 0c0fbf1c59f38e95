"""The IR: a hash-consed DAG of operations, built once per decorated function.

A `Node` is one value: a parameter, a constant, a module global read at call time, or an
operation applied to other nodes. `Graph.apply` is the only way to make an operation node, and
it does three things before creating one:

* **constant folding**: an operation whose arguments are all constants is evaluated now;
* **algebraic peepholes**: ``x * 1 -> x``, ``x + 0 -> x``, ``x * (1 / y) -> x / y``, ...
  (each exact in floating point or a pure re-association of constants);
* **hash-consing**: an identical operation on identical arguments returns the existing node, so
  ``(a - b) * (a - b)`` holds one ``a - b`` and the generated code computes it once.

Nodes are numbered in creation order, and a node is always created after its arguments, so
sorting by number is a topological order: the code generator needs nothing more.

The graph knows nothing about derivatives or code: operation semantics (arity, folding,
commutativity) come from an `OpTable` given at construction, which `srcgrad.rules` provides.
Forward mode, control flow and array operations extend it by adding operations, not by
changing this module.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

# Leaf kinds: values that come from outside the graph.
PARAM = "param"  # a parameter of the user's function
CONST = "const"  # a number known when the graph is built (literals, math.pi, closure numbers)
GLOBAL = "global"  # a module global, read by name when the generated code runs (stays live)
BOUND = "bound"  # an object bound once into the generated code (a closure array, say)
LEAVES = frozenset({PARAM, CONST, GLOBAL, BOUND})

# Control-flow regions: the nodes that run a loop or an `if` (statements of their own in the
# generated code), and the nodes that read what one assigned.
REGIONS = frozenset({"loop", "loop_backward", "branch", "branch_backward"})
REGION_VALUES = frozenset({"loop_output", "loop_adjoint", "branch_output", "branch_adjoint"})


class OpSpec(Protocol):
    """What the graph needs to know about an operation (a `rules.Primitive` satisfies it)."""

    name: str
    commutative: bool
    fold: Callable[..., Any] | None  # evaluates the operation on constants; None: never folded


class Node:
    """One value in the graph. Create nodes through `Graph`, never directly."""

    __slots__ = ("args", "attrs", "graph", "hint", "id", "lineno", "op", "value")

    def __init__(
        self,
        graph: Graph,
        op: str,
        args: tuple[Node, ...],
        attrs: tuple = (),
        value: Any = None,
        hint: str | None = None,
        lineno: int | None = None,
    ) -> None:
        self.graph = graph
        self.id = len(graph.nodes)
        self.op = op
        self.args = args
        self.attrs = attrs
        self.value = value
        self.hint = hint
        self.lineno = lineno

    @property
    def is_const(self) -> bool:
        return self.op == CONST

    @property
    def is_leaf(self) -> bool:
        return self.op in LEAVES

    def __repr__(self) -> str:
        if self.op == CONST:
            return f"Node#{self.id}(const {self.value!r})"
        if self.op in LEAVES:
            return f"Node#{self.id}({self.op} {self.value})"
        args = ", ".join(f"#{a.id}" for a in self.args)
        return f"Node#{self.id}({self.op}({args}){' ' + self.hint if self.hint else ''})"

    # Operator overloads let derivative rules read as mathematics: `1 - out * out`.
    def __add__(self, other: Any) -> Node:
        return self.graph.apply("add", self, other)

    def __radd__(self, other: Any) -> Node:
        return self.graph.apply("add", other, self)

    def __sub__(self, other: Any) -> Node:
        return self.graph.apply("sub", self, other)

    def __rsub__(self, other: Any) -> Node:
        return self.graph.apply("sub", other, self)

    def __mul__(self, other: Any) -> Node:
        return self.graph.apply("mul", self, other)

    def __rmul__(self, other: Any) -> Node:
        return self.graph.apply("mul", other, self)

    def __truediv__(self, other: Any) -> Node:
        return self.graph.apply("div", self, other)

    def __rtruediv__(self, other: Any) -> Node:
        return self.graph.apply("div", other, self)

    def __pow__(self, other: Any) -> Node:
        return self.graph.apply("pow", self, other)

    def __rpow__(self, other: Any) -> Node:
        return self.graph.apply("pow", other, self)

    def __neg__(self) -> Node:
        return self.graph.apply("neg", self)

    __hash__ = object.__hash__


class LoopBody:
    """The body of a `for` loop: a graph of its own, run once per iteration.

    Its parameters are the loop index, the *carried* variables (their values at the start of an
    iteration) and the *invariants* (values from outside the loop it reads); its outputs are the
    carried variables' values at the end of the iteration. In the enclosing graph a `loop` node
    takes the bounds, the carried variables' initial values and the invariants, and
    `loop_output` nodes give the final values. Reverse mode adds `backward`: the adjoint graph
    of one iteration, run in a loop of its own over the iterations in reverse. Forward mode
    makes a new body over the same graph, carrying each value and its tangent (`forward`).
    """

    def __init__(self, graph: Graph, index: Node, carried: list[Node], invariants: list[Node],
                 outputs: list[Node], lineno: int | None) -> None:
        self.graph = graph
        self.index = index
        self.carried = carried
        self.invariants = invariants
        self.outputs = outputs
        self.lineno = lineno
        self.output_nodes: list[Node] = []  # the `loop_output` nodes, in the enclosing graph
        self.condition: Node | None = None  # a `while` loop's test, at an iteration's start
        self.exit: int | None = None  # the carried `break` flag: the loop stops once it is 0
        self.backward: Any = None  # set by reverse mode (`reverse.LoopBackward`)
        self.forward: Any = None  # names of its tangents, when forward mode made it

    def __repr__(self) -> str:
        return f"<loop body: {len(self.graph.nodes)} nodes>"


class BranchBody:
    """The two branches of an `if`: a graph each, with the same inputs and outputs.

    In the enclosing graph a `branch` node takes the condition and the inputs (every value the
    branches read, and the incoming values of the variables they assign); `branch_output`
    nodes give the variables after the `if`. Only the branch taken runs, forward and backward.
    """

    def __init__(self, graphs: tuple[Graph, Graph], inputs: tuple[list[Node], list[Node]],
                 outputs: tuple[list[Node], list[Node]], names: list[str],
                 lineno: int | None) -> None:
        self.graphs = graphs
        self.inputs = inputs
        self.outputs = outputs
        self.names = names  # the variables assigned, one per output
        self.lineno = lineno
        self.output_nodes: list[Node] = []
        self.backward: dict[tuple, Any] = {}  # set by reverse mode, per differentiated inputs
        self.forward: Any = None  # names of its tangents, when forward mode made it

    def __repr__(self) -> str:
        return f"<if: {len(self.graphs[0].nodes)} and {len(self.graphs[1].nodes)} nodes>"


def _const_key(value: Any) -> tuple:
    # 1, 1.0 and True hash alike and 0.0 == -0.0; a constant's identity is its type and repr.
    return (CONST, type(value).__name__, repr(value))


@dataclass
class Graph:
    """A hash-consed DAG. ``ops`` maps operation names to their `OpSpec`."""

    ops: Mapping[str, OpSpec]

    def __post_init__(self) -> None:
        self.nodes: list[Node] = []
        self._table: dict[tuple, Node] = {}
        self.lineno: int | None = None  # source line attached to nodes created now

    # -- leaves -------------------------------------------------------------------------------
    def _leaf(self, key: tuple, op: str, value: Any, hint: str | None) -> Node:
        node = self._table.get(key)
        if node is None:
            node = Node(self, op, (), value=value, hint=hint, lineno=self.lineno)
            self.nodes.append(node)
            self._table[key] = node
        return node

    def const(self, value: Any) -> Node:
        """The constant ``value`` (a Python number)."""
        return self._leaf(_const_key(value), CONST, value, None)

    def param(self, name: str) -> Node:
        return self._leaf((PARAM, name), PARAM, name, name)

    def has_param(self, name: str) -> bool:
        """Whether the graph has a parameter called ``name`` (`param` would return it)."""
        return (PARAM, name) in self._table

    def global_(self, name: str) -> Node:
        return self._leaf((GLOBAL, name), GLOBAL, name, name)

    def bound(self, name: str, obj: Any) -> Node:
        return self._leaf((BOUND, name, id(obj)), BOUND, obj, name)

    def lift(self, value: Any) -> Node:
        """``value`` as a node: nodes pass through, numbers become constants."""
        if isinstance(value, Node):
            return value
        return self.const(value)

    # -- operations ---------------------------------------------------------------------------
    def apply(self, op: str, *args: Any, attrs: tuple = (), hint: str | None = None) -> Node:
        """The node for ``op(*args)``: folded, simplified or shared where possible."""
        nodes = tuple(self.lift(a) for a in args)
        spec = self.ops[op]
        if nodes and all(a.op == CONST for a in nodes) and not attrs:
            folded = _try_fold(spec, [a.value for a in nodes])
            if folded is not None:
                return self.const(folded)
        simpler = _simplify(self, op, nodes)
        if simpler is not None:
            return simpler
        if spec.commutative:  # one canonical order: `0.2 * sin_t`, but `x + 1`
            const_first = op == "mul"
            nodes = tuple(sorted(nodes, key=lambda n: (n.is_const != const_first, n.id)))
        key = (op, tuple(a.id for a in nodes), attrs)
        node = self._table.get(key)
        if node is None:
            node = Node(self, op, nodes, attrs=attrs, hint=hint, lineno=self.lineno)
            self.nodes.append(node)
            self._table[key] = node
        elif hint and node.hint is None:
            node.hint = hint
        return node

    def existing(self, op: str, *args: Node) -> Node | None:
        """The node for ``op(*args)`` if the graph already has it (none is made)."""
        if self.ops[op].commutative:
            args = tuple(sorted(args, key=lambda n: (n.is_const != (op == "mul"), n.id)))
        return self._table.get((op, tuple(a.id for a in args), ()))

    def add_all(self, terms: Iterable[Node]) -> Node:
        """The sum of ``terms`` (at least one)."""
        total: Node | None = None
        for term in terms:
            total = term if total is None else self.apply("add", total, term)
        if total is None:
            raise ValueError("add_all needs at least one term")
        return total

    # -- views ---------------------------------------------------------------------------------
    def reachable(self, roots: Iterable[Node]) -> list[Node]:
        """Every node some root depends on, in topological (creation) order."""
        seen: set[int] = set()
        stack = list(roots)
        while stack:
            node = stack.pop()
            if node.id in seen:
                continue
            seen.add(node.id)
            stack.extend(node.args)
        return [n for n in self.nodes if n.id in seen]

    def to_dot(
        self,
        roots: Iterable[Node],
        *,
        title: str = "srcgrad",
        highlight: Mapping[int, str] | None = None,
    ) -> str:
        """Graphviz DOT text of the nodes ``roots`` depend on.

        Nodes are labelled with their operation and the source name they were assigned to;
        ``highlight`` maps node ids to a fill colour (the caller marks adjoints, outputs).
        """
        highlight = highlight or {}
        lines = [
            f'digraph "{_dot_escape(title)}" {{',
            "  rankdir=BT;",
            '  node [shape=box, fontname="Helvetica"];',
        ]
        for node in self.reachable(roots):
            label = _dot_label(node)
            style = ""
            if node.id in highlight:
                style = f', style=filled, fillcolor="{highlight[node.id]}"'
            elif node.op == PARAM:
                style = ', style=filled, fillcolor="#cfe8ff"'
            elif node.op == CONST:
                style = ", shape=plaintext"
            lines.append(f'  n{node.id} [label="{_dot_escape(label)}"{style}];')
            for position, arg in enumerate(node.args):
                edge_label = f' [label="{position}"]' if len(node.args) > 1 else ""
                lines.append(f"  n{arg.id} -> n{node.id}{edge_label};")
        lines.append("}")
        return "\n".join(lines) + "\n"


def _dot_label(node: Node) -> str:
    if node.op == CONST:
        return repr(node.value)
    if node.op in LEAVES:
        return f"{node.op} {node.hint}"
    op = node.op
    if op == "call" and node.attrs:
        op = node.attrs[0].label
    return f"{op}\n{node.hint}" if node.hint else op


def _dot_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _try_fold(spec: OpSpec, values: list[Any]) -> Any:
    """``spec`` evaluated on constant ``values``, or None when that is not a plain number."""
    if spec.fold is None or not all(_is_number(v) for v in values):
        return None
    try:
        result = spec.fold(*values)
    except (ArithmeticError, ValueError, TypeError):
        return None  # leave it to run time, where NumPy semantics give inf/nan
    if isinstance(result, bool) or not isinstance(result, (int, float)):
        return None
    if isinstance(result, float) and not math.isfinite(result):
        return None
    return result


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_const(node: Node, value: float) -> bool:
    return node.op == CONST and node.value == value and not isinstance(node.value, bool)


def _simplify(graph: Graph, op: str, args: tuple[Node, ...]) -> Node | None:
    """An equivalent, cheaper node for ``op(*args)``, or None.

    Each rewrite is exact in IEEE arithmetic for finite values, as accurate or better
    (``x * (1 / z) -> x / z``), or only re-associates two constants (``2 * (3 * x) -> 6 * x``).
    Rewrites that would change a result's shape are not made: ``x * 0`` stays, because it still
    broadcasts like ``x``.
    """
    rule = _PEEPHOLES.get(op)
    return rule(graph, *args) if rule else None


def _simplify_add(graph: Graph, x: Node, y: Node) -> Node | None:
    if _is_const(y, 0):
        return x
    if _is_const(x, 0):
        return y
    if y.op == "neg":
        return graph.apply("sub", x, y.args[0])
    if x.op == "neg":
        return graph.apply("sub", y, x.args[0])
    return None


def _simplify_sub(graph: Graph, x: Node, y: Node) -> Node | None:
    if _is_const(y, 0):
        return x
    if _is_const(x, 0):
        return graph.apply("neg", y)
    if y.op == "neg":
        return graph.apply("add", x, y.args[0])
    return None


def _simplify_mul(graph: Graph, x: Node, y: Node) -> Node | None:
    if x.op == CONST and y.op != CONST:  # constants on the left: `0.2 * sin_t`
        x, y = y, x
    if _is_const(y, 1):
        return x
    if _is_const(y, -1):
        return graph.apply("neg", x)
    if y.op == CONST and x.op == "mul" and x.args[0].op == CONST:
        return graph.apply("mul", graph.const(x.args[0].value * y.value), x.args[1])
    if y.op == CONST and x.op == "neg":
        return graph.apply("mul", graph.const(-y.value), x.args[0])
    if y.op == "div" and _is_const(y.args[0], 1):  # x * (1 / z) -> x / z
        return graph.apply("div", x, y.args[1])
    if x.op == "div" and _is_const(x.args[0], 1):
        return graph.apply("div", y, x.args[1])
    if y.op == "neg":
        return graph.apply("neg", graph.apply("mul", x, y.args[0]))
    if x.op == "neg":
        return graph.apply("neg", graph.apply("mul", x.args[0], y))
    return None


def _simplify_div(graph: Graph, x: Node, y: Node) -> Node | None:
    if _is_const(y, 1):
        return x
    if _is_const(y, -1):
        return graph.apply("neg", x)
    if x.op == "neg":  # -(a) / y -> a / (-y): exact, and a scalar y makes the negation free
        return graph.apply("div", x.args[0], graph.apply("neg", y))
    return None


def _simplify_neg(graph: Graph, x: Node) -> Node | None:
    if x.op == "neg":
        return x.args[0]
    if x.op == "sub":
        return graph.apply("sub", x.args[1], x.args[0])
    return None


def _simplify_pow(graph: Graph, x: Node, y: Node) -> Node | None:
    if _is_const(y, 1):
        return x
    return None


def _simplify_sum_backward(graph: Graph, g: Node, x: Node, axis: Node, keep: Node) -> Node | None:
    # A constant adjoint of a full sum is already in broadcast-compatible form for x.
    if g.op == CONST and axis.op == CONST and axis.value is None:
        return g
    return None


_PEEPHOLES: dict[str, Callable[..., Node | None]] = {
    "sum_backward": _simplify_sum_backward,
    "add": _simplify_add,
    "sub": _simplify_sub,
    "mul": _simplify_mul,
    "div": _simplify_div,
    "neg": _simplify_neg,
    "pow": _simplify_pow,
}
