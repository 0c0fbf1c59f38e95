"""Reverse mode: the adjoint graph of a forward graph.

The adjoint of a node ``n`` is d(sum of the outputs)/dn. Walking the forward nodes from the
output back to the parameters, each node's adjoint is the sum of what its users send it, and it
sends each active argument ``adjoint * partial`` (the partials come from `srcgrad.rules`). The
adjoint nodes go into the same hash-consed graph as the forward nodes, so a derivative that needs
``exp(x)`` or ``cos(x)`` shares the forward computation instead of repeating it.

**Broadcasting is handled here, once, for every edge**: when an argument may be smaller than
the operation's result (``mu`` in ``x - mu``), the contribution is wrapped in ``sum_to``, which
sums it back to the argument's shape at run time. Static *shape classes* (the set of
non-constant leaves a value's shape can depend on) prove most edges need no ``sum_to`` at all:
``x * 0.2`` has the shape of ``x``. The float fast path drops ``sum_to`` entirely.

An adjoint value is kept in the *broadcast-compatible* form: anything that broadcasts to the
node's shape and then equals the true adjoint. The seed is the scalar ``1.0`` rather than an
array of ones; ``sum_to`` knows to multiply by the size of axes it is asked to sum but the value
does not have.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import rules
from .array_rules import NONDIFFERENTIABLE_OPS
from .graph import REGIONS, Graph, Node
from .shapes import ShapeClasses


@dataclass
class Adjoints:
    """Gradients of one output with respect to some parameters."""

    grads: list[Node | None]  # one per parameter; None: the output does not depend on it
    adjoint_of: dict[int, Node]  # adjoint node id -> the forward node it is the adjoint of
    of: dict[int, Node]  # forward node id -> its adjoint


def reverse(graph: Graph, output: Node | list[Node], wrt: list[Node], *,
            broadcasting: bool = True, scalars: frozenset[int] = frozenset(),
            seed: Node | list[Node] | None = None) -> Adjoints:
    """Add the adjoint computation of ``output`` w.r.t. ``wrt`` to ``graph``.

    ``scalars`` names leaves known to be scalars on the path this serves: their shape class is
    empty, like a constant's, so factors made of them leave broadcast sums. ``seed`` is the
    adjoint of the output (default 1: the gradient of the sum of its elements); a
    vector-Jacobian product passes a parameter. Several outputs take one seed each (a loop
    body's carried variables, seeded with their adjoints at the end of an iteration).
    """
    outputs = output if isinstance(output, list) else [output]
    seeds = seed if isinstance(seed, list) else [seed or graph.const(1.0)]
    forward = graph.reachable(outputs)
    wanted = {node.id for node in wrt}
    active: set[int] = set()
    for node in forward:
        if node.id in wanted or any(arg.id in active for arg in node.args):
            active.add(node.id)
    shapes = ShapeClasses(scalars)

    contributions: dict[int, list[Node]] = {}
    user_lines: dict[int, list[int | None]] = {}
    for out, out_seed in zip(outputs, seeds, strict=True):
        contributions.setdefault(out.id, []).append(out_seed)
        user_lines.setdefault(out.id, []).append(out.lineno)
    adjoints: dict[int, Node] = {}  # forward node id -> its adjoint
    adjoint_of: dict[int, Node] = {}
    for node in reversed(forward):
        terms = contributions.get(node.id)
        if node.op in ("loop", "branch") and node.id in active:  # from its outputs' adjoints
            graph.lineno = node.lineno
            region_vjp = _loop_vjp if node.op == "loop" else _branch_vjp
            terms_out = region_vjp(graph, node, adjoints, active)
            for arg, term in zip(node.args, terms_out, strict=True):
                if arg.id in active and term is not None:
                    contributions.setdefault(arg.id, []).append(term)
                    user_lines.setdefault(arg.id, []).append(node.lineno)
            continue
        if node.id not in active or not terms:
            continue
        # An adjoint is complete at the earliest line that uses the node: attribute it there.
        graph.lineno = min((line for line in user_lines.get(node.id, ()) if line is not None),
                           default=node.lineno)
        adjoint = graph.add_all(terms)
        adjoints[node.id] = adjoint
        adjoint_of.setdefault(adjoint.id, node)
        if node.is_leaf or node.op in ("loop_output", "branch_output"):  # see the regions above
            continue
        graph.lineno = node.lineno
        primitive = rules.PRIMITIVES[node.op]
        if primitive.vjp is None and primitive.partials is None and not _zero_derivative(node):
            raise rules.NoDerivativeRule(node, _no_rule(node))
        if primitive.vjp is not None:  # array primitive: contributions come shaped already
            if primitive.needs_full_adjoint:
                adjoint = graph.apply("expand_to", adjoint, node)
            terms_out = primitive.vjp(adjoint, *node.args, out=node)
        else:
            terms_out = tuple(
                None if partial is None else graph.apply("mul", adjoint, partial)
                for partial in rules.partials_of(node))
        # A term sent to several arguments (`b + t` sends its adjoint to both) is computed
        # once and summed per argument, rather than fused into a product-and-sum for each.
        shared = {t.id for t in terms_out if t is not None
                  and sum(1 for u in terms_out if u is t) > 1}
        for arg, term in zip(node.args, terms_out, strict=True):
            if arg.id not in active or term is None:
                continue
            if (primitive.vjp is None and broadcasting and len(node.args) > 1
                    and not shapes.of(node) <= shapes.of(arg)):
                term = _reduce(graph, shapes, term, arg, node, fuse=term.id not in shared)
            contributions.setdefault(arg.id, []).append(term)
            user_lines.setdefault(arg.id, []).append(node.lineno)
    grads = [adjoints.get(node.id) for node in wrt]
    return Adjoints(grads, adjoint_of, adjoints)


def share_products(graph: Graph, adjoints: Adjoints) -> Adjoints:
    """``Σ r·e`` as the sum of the product ``r·e`` when the backward pass makes that product
    anyway (for ``Σ r·e·d``, say): one pass over the data fewer, and ``r`` and ``e`` die at the
    product, so it can take their memory. The nodes that read a rewritten sum are rebuilt.

    Graphs with loops or branches are left as they are (their bodies are graphs of their own).
    """
    roots = [g for g in adjoints.grads if g is not None]
    reachable = graph.reachable(roots)
    if any(n.op in REGIONS for n in reachable):
        return adjoints
    made_anyway = {n.id for n in reachable}
    new: dict[int, Node] = {}
    for node in reachable:
        if node.is_leaf:
            continue
        args = tuple(new.get(a.id, a) for a in node.args)
        graph.lineno = node.lineno
        product = graph.existing("mul", *args[:2]) if node.op == "sum_product" else None
        if product is not None and product.id in made_anyway:
            made = graph.apply("sum_to", product, *args[2:])
        elif args != node.args:
            made = graph.apply(node.op, *args, attrs=node.attrs, hint=node.hint)
        else:
            continue
        new[node.id] = made
    if not new:
        return adjoints
    adjoint_of = dict(adjoints.adjoint_of)
    for old_id, made in new.items():
        if old_id in adjoints.adjoint_of:
            adjoint_of.setdefault(made.id, adjoints.adjoint_of[old_id])
    return Adjoints([None if g is None else new.get(g.id, g) for g in adjoints.grads],
                    adjoint_of, {k: new.get(v.id, v) for k, v in adjoints.of.items()})



def _reduce(graph: Graph, shapes: ShapeClasses, term: Node, x: Node, n: Node,
            fuse: bool = True) -> Node:
    """``sum_to(term, x, n)``, with factors no bigger than ``x`` applied after the sum.

    Summing ``g * s`` over the axes ``x`` was broadcast along, where ``s`` is constant along
    them (its shape class is within ``x``'s), is ``sum(g) * s``: one full-size pass fewer.
    """

    def small(node: Node) -> bool:
        return shapes.of(node) <= shapes.of(x)

    if term.op == "neg":
        return graph.apply("neg", _reduce(graph, shapes, term.args[0], x, n))
    if term.op == "div" and small(term.args[1]):
        return graph.apply("div", _reduce(graph, shapes, term.args[0], x, n), term.args[1])
    if term.op == "mul":
        factors = _factors(term)
        outside = [f for f in factors if small(f)]
        inside = [f for f in factors if not small(f)]
        if outside and inside:
            # Latest first: the adjoint factor, then the forward values nearest to it, so that
            # sums sharing those (`Σ r·e`, `Σ r·e·d`, `Σ r·e·d²`) share the product `r·e`.
            inside.sort(key=lambda f: -f.id)
            summed = _reduce(graph, shapes, _product(graph, inside), x, n)
            return _product(graph, [*outside, summed])
        for i, factor in enumerate(factors):  # g * (u / s) -> sum(g * u) / s
            if factor.op == "div" and small(factor.args[1]):
                rest = [*factors[:i], factor.args[0], *factors[i + 1:]]
                rest.sort(key=lambda f: -f.id)  # as above: shared products first
                summed = _reduce(graph, shapes, _product(graph, rest), x, n)
                return graph.apply("div", summed, factor.args[1])
    if fuse and term.op == "mul" and not any(a.is_const for a in term.args):
        return graph.apply("sum_product", *term.args, x, n)
    return graph.apply("sum_to", term, x, n)


def _factors(node: Node) -> list[Node]:
    """The factors of a (nested) product."""
    if node.op == "mul":
        return [*_factors(node.args[0]), *_factors(node.args[1])]
    return [node]


def _product(graph: Graph, factors: list[Node]) -> Node:
    result = factors[0]
    for factor in factors[1:]:
        result = graph.apply("mul", result, factor)
    return result


@dataclass
class LoopBackward:
    """One iteration of a loop, backwards: the adjoint graph of its body (`graph.LoopBody`).

    ``seeds`` are parameters of the body graph standing for the carried variables' adjoints at
    the end of an iteration; ``carried`` are their adjoints at its start (None: zero) and
    ``invariants`` what one iteration adds to the invariants' adjoints.
    """

    seeds: list[Node]
    carried: list[Node | None]
    invariants: list[Node | None]
    adjoint_of: dict[int, Node]
    first_adjoint_id: int
    # Forward over reverse (`forward._loop_backward_tangent`): names of the tangents of the
    # adjoint nodes, with the pattern they follow.
    tangent_of: list[dict[int, Node]] = field(default_factory=list)
    pattern: str = "{}_dot"


def _loop_vjp(graph: Graph, node: Node, adjoints: dict[int, Node], active: set[int]
              ) -> tuple:
    """Contributions of a `loop` node to its arguments: a `loop_backward` node that runs the
    body's adjoint over the iterations in reverse (bounds get none). Carried variables pass
    their adjoint from one iteration to the one before; an invariant that does not depend on
    a differentiated parameter gets no adjoint at all (data indexed per sample, say)."""
    body = node.attrs[0]
    finals = [adjoints.get(output.id) for output in body.output_nodes]
    if all(g is None for g in finals):
        return (None,) * len(node.args)
    count = len(body.carried)
    wanted = tuple(arg.id in active for arg in node.args[3 + count:])
    backward = body.backward.get(wanted) if body.backward else None
    if backward is None:
        sub = body.graph
        seeds = [sub.param(f"<adjoint of {p.value}>") for p in body.carried]
        first = len(sub.nodes)
        invariants = [p for p, w in zip(body.invariants, wanted, strict=True) if w]
        inner = reverse(sub, list(body.outputs), [*body.carried, *invariants], seed=seeds)
        found = iter(inner.grads[count:])
        backward = LoopBackward(seeds, inner.grads[:count],
                                [next(found) if w else None for w in wanted],
                                inner.adjoint_of, first)
        body.backward = {**(body.backward or {}), wanted: backward}
    backward_node = graph.apply("loop_backward", node, *node.args[:3],
                                *(graph.const(0.0) if g is None else g for g in finals),
                                *node.args[3:], attrs=(body, wanted))
    outs = [graph.apply("loop_adjoint", backward_node, attrs=(k,)) for k in range(count)]
    outs += [graph.apply("loop_adjoint", backward_node, attrs=(count + j,))
             if g is not None else None  # wanted, but the body gives it no gradient
             for j, g in enumerate(backward.invariants)]
    return (None, None, None, *outs)


@dataclass
class BranchBackward:
    """The adjoints of an `if`'s two branches: per branch, the seeds standing for its outputs'
    adjoints and what each input receives (None: nothing)."""

    seeds: tuple[list[Node], list[Node]]
    inputs: tuple[list[Node | None], list[Node | None]]
    adjoint_of: tuple[dict[int, Node], dict[int, Node]]
    tangent_of: list[dict[int, Node]] = field(default_factory=list)  # as in `LoopBackward`
    pattern: str = "{}_dot"


def _branch_vjp(graph: Graph, node: Node, adjoints: dict[int, Node], active: set[int]
                ) -> tuple:
    """Contributions of a `branch` node to its inputs: a `branch_backward` node that runs the
    adjoint of the branch taken (the condition gets none)."""
    body = node.attrs[0]
    finals = [adjoints.get(output.id) for output in body.output_nodes]
    if all(g is None for g in finals):
        return (None,) * len(node.args)
    wanted = tuple(arg.id in active for arg in node.args[1:])
    backward = body.backward.get(wanted)
    if backward is None:
        seeds, inputs, named = [], [], []
        for sub, params, outputs in zip(body.graphs, body.inputs, body.outputs, strict=True):
            branch_seeds = [sub.param(f"<adjoint of {name}>") for name in body.names]
            targets = [p for p, w in zip(params, wanted, strict=True) if w]
            inner = reverse(sub, list(outputs), targets, seed=branch_seeds) if outputs else None
            found = iter(inner.grads if inner else [])
            seeds.append(branch_seeds)
            inputs.append([next(found) if w else None for w in wanted])
            named.append(inner.adjoint_of if inner else {})
        backward = BranchBackward((seeds[0], seeds[1]), (inputs[0], inputs[1]),
                                  (named[0], named[1]))
        body.backward[wanted] = backward
    # Only the condition and the inputs: the forward branch is recomputed only where the
    # adjoint reads its values.
    backward_node = graph.apply("branch_backward", node.args[0],
                                *(graph.const(0.0) if g is None else g for g in finals),
                                *node.args[1:], attrs=(body, wanted))
    return (None, *(graph.apply("branch_adjoint", backward_node, attrs=(k,))
                    if a is not None or b is not None else None
                    for k, (a, b) in enumerate(zip(*backward.inputs, strict=True))))


def _zero_derivative(node: Node) -> bool:
    """Whether ``node`` passes no gradient by nature (a mask, a comparison, an element of a
    structured parameter), as opposed to lacking a rule."""
    if node.op == "item":  # an element of a (nested) structured parameter, not of a result
        while node.op == "item":
            node = node.args[0]
        return node.is_leaf
    return node.op == "call" or node.op in NONDIFFERENTIABLE_OPS


def _no_rule(node: Node) -> str:
    if node.op in ("loop_adjoint", "branch_adjoint"):  # a gradient inlined with its regions
        kind = "a loop" if node.op == "loop_adjoint" else "an `if`"
        return (f"this calls a gradient whose function has {kind}, and differentiating such a "
                "gradient again in reverse mode is not supported yet. Take this derivative in "
                "forward mode instead: srcgrad.forward(f, wrt=...) or srcgrad.jvp(f)")
    if node.op.endswith("_backward"):
        name = rules.numpy_spelling(node.op.removesuffix("_backward"))
        return (f"second derivatives through `{name}` in reverse mode are not supported yet "
                f"(its gradient, `{node.op}`, has no reverse rule); use srcgrad.hvp or "
                "srcgrad.hessian, which differentiate gradients in forward mode")
    return f"`{node.op}` has no reverse-mode derivative rule"
