"""Checked statements -> graph: name resolution and the meaning of each call.

Runs once, at a decorated function's first call (so globals defined after the function work).
Names resolve like Python resolves them: locals, then the closure, then module globals, then
builtins. What a name holds decides what it becomes:

* a number or array in **module globals** becomes a `GLOBAL` node, read by name each time the
  generated code runs, so reassigning the global later is seen, as in plain Python;
* a number in a **closure** becomes a constant (and folds), an array a `BOUND` node;
* modules, functions and classes are static: they are followed through attributes
  (``np.sin``, ``math.pi``) and calls are looked up in the derivative registry.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import inspect
import numbers
import types
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import array_rules, rules, runtime
from .errors import MissingDerivativeError, SourceUnavailableError
from .graph import BranchBody, Graph, LoopBody, Node
from .parse import Assign, Branch, Loop, ParsedFunction, parse_function


@dataclass(frozen=True)
class _Static:
    """A value known at build time that is not a number: a module, a function, a class."""

    value: Any


@dataclass(frozen=True)
class _Local:
    """A function defined inside the one being lowered (``def`` or ``lambda``)."""

    parsed: ParsedFunction
    enclosing: Any  # the _Lowering it was defined in: its variables are the free names


@dataclass(frozen=True)
class _Method:
    """``x.sum`` before it is called: an array method bound to a value."""

    target: Node
    name: str


@dataclass(frozen=True)
class Tree:
    """A structured value (tuple, list or dict, nested): a structured parameter, whose leaves
    are `item` nodes, or the ``(value, grads)`` pair of an inlined `grad` call."""

    kind: str  # "tuple", "list" or "dict"
    keys: tuple
    children: tuple  # Node (a leaf) or Tree, one per key
    fields: tuple = ()  # a namedtuple's field names (`grads.x`)

    def leaves(self) -> list[Node]:
        out: list[Node] = []
        for child in self.children:
            out.extend(child.leaves() if isinstance(child, Tree) else [child])
        return out

    def child(self, key: Any) -> Node | Tree | None:
        for k, child in zip(self.keys, self.children, strict=True):
            if k == key and type(k) is type(key):
                return child
        return None


_MAX_INLINE_DEPTH = 8  # nested `grad` calls (third order needs 3)
Structure = Any  # None for a leaf, else (kind, keys, child structures): hashable


def mirror(graph: Graph, parent: Node, tree: Tree) -> Tree:
    """`item` nodes of ``parent`` with ``tree``'s structure (a direction beside a parameter)."""
    count = None if tree.kind == "dict" else len(tree.keys)
    children = []
    for key, child in zip(tree.keys, tree.children, strict=True):
        item = graph.apply("item", parent, attrs=(key, count))
        children.append(item if isinstance(child, Node) else mirror(graph, item, child))
    return Tree(tree.kind, tree.keys, tuple(children))


def structure_of(value: Any) -> Structure:
    """The structure srcgrad sees in an argument: containers of arrays, or a leaf."""
    return runtime.structure_of(value)


_COMPARE = {ast.Gt: "greater", ast.GtE: "greater_equal", ast.Lt: "less", ast.LtE: "less_equal",
            ast.Eq: "equal", ast.NotEq: "not_equal"}
_SEQUENCES = (ast.Tuple, ast.List)


@dataclass
class Lowered:
    """The forward graph of one function and what its generated code must be given."""

    parsed: ParsedFunction
    graph: Graph
    output: Node
    params: dict[str, Node]
    bound: dict[str, Any] = field(default_factory=dict)  # name -> object bound into the code
    live_globals: set[str] = field(default_factory=set)  # module globals read at call time
    # Module-level functions the code was built from (inlined, or called with a derivative),
    # by their global name: the generated code checks they are still those (a notebook may
    # redefine one), and if not is built again.
    frozen_functions: dict[str, Any] = field(default_factory=dict)
    trees: dict[str, Tree] = field(default_factory=dict)  # structured parameters
    floats_only: bool = True  # every global/closure value is a plain number: float path valid


Differentiate = Callable[[Graph, Node, list[Node]], list[Node | None]]


def lower(parsed: ParsedFunction, structures: dict[str, Structure] | None = None,
          differentiate: Differentiate | None = None) -> Lowered:
    """Build the forward graph of ``parsed``; ``structures`` describe structured arguments.

    ``differentiate(graph, output, wrt)`` adds gradient nodes to the graph: given, a call to
    a function decorated with `grad` is inlined as its value and gradient (so the caller can
    itself be differentiated: second and higher derivatives). It is passed in, rather than
    imported, because reverse mode comes after lowering in srcgrad's pipeline.
    """
    return _Lowering(parsed, structures or {}, differentiate).run()


def _is_plain_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _is_array_like(value: Any) -> bool:
    return isinstance(value, np.ndarray) or hasattr(value, "__array_ufunc__") or hasattr(
        value, "__array_namespace__")


class _Lowering:
    def __init__(self, parsed: ParsedFunction, structures: dict[str, Structure],
                 differentiate: Differentiate | None = None,
                 caller: _Lowering | None = None, graph: Graph | None = None) -> None:
        self.parsed = parsed
        self.structures = structures
        self.differentiate = differentiate
        fn = parsed.fn
        self.globals: dict[str, Any] = getattr(fn, "__globals__", {})
        # The module the generated code runs in: the outermost function's. An inlined
        # function's globals are read live only when they are that same module's.
        self.code_globals = caller.code_globals if caller else self.globals
        self.globals_live = self.globals is self.code_globals
        self.caller = caller
        self.depth = caller.depth + 1 if caller else 0
        self.enclosing: _Lowering | None = None  # for a local function: where it was defined
        # A loop body or a branch: the lowering it is nested in (same function, another graph),
        # and the values from outside that it takes as extra inputs, beyond the names it reads
        # (what a local function called inside reads from its definer: see `lookup`).
        self.outer: _Lowering | None = None
        self.taken: dict[int, Node] = {}  # id of the outside node -> its parameter here
        self.extra: list[tuple[Node, str]] = []  # those outside nodes, shared by both branches
        code = fn.__code__
        cells = fn.__closure__ or ()
        self.closure: dict[str, Any] = {}
        for name, cell in zip(code.co_freevars, cells, strict=True):
            # An empty cell (assigned later in the outer scope) raises ValueError: skip it.
            with contextlib.suppress(ValueError):
                self.closure[name] = cell.cell_contents
        self.graph = graph or (caller.graph if caller else Graph(rules.OPS))
        self.env: dict[str, Node | _Static] = {}
        self.result = caller.result if caller else Lowered(
            parsed, self.graph, output=None, params={})  # type: ignore[arg-type]
        self._user_functions: dict[int, rules.UserFunction] = {}
        self.fixed_lineno: int | None = None  # an inlined body: every node at the call's line
        # names only a loop body or one branch assigned -> (line, "loop" or "`if`")
        self.loop_locals: dict[str, tuple[int, str]] = {}

    def run(self) -> Lowered:
        graph = self.graph
        graph.lineno = self.parsed.lineno
        for param in self.parsed.params:
            node = graph.param(param.name)
            self.result.params[param.name] = node
            structure = self.structures.get(param.name)
            if structure is None:
                self.env[param.name] = node
            else:
                self.result.floats_only = False
                graph.lineno = None
                tree = self.tree(node, structure)
                self.env[param.name] = self.result.trees[param.name] = tree
                graph.lineno = self.parsed.lineno
        self.result.output = self.body()
        return self.result

    def body(self) -> Node:
        """Lower the statements; the returned value's node."""
        graph = self.graph
        output = None
        for stmt in self.parsed.body:
            graph.lineno = self.fixed_lineno or stmt.lineno
            if isinstance(stmt, Assign):
                self.assignment(stmt)
            elif isinstance(stmt, Loop):
                self.loop(stmt)
            elif isinstance(stmt, Branch):
                self.branch(stmt)
            else:
                output = self.expr(stmt.value)
                if not isinstance(output, Node):
                    what = _describe(output.value) if isinstance(output, _Static) else (
                        "a tuple (a `grad` function returns `(value, grads)`: unpack it, "
                        "`value, (d_x,) = f(x)`, and return one of them)")
                    raise self.parsed.error(
                        f"`{self.parsed.name}` returns {what}, not a number or array.",
                        stmt.value)
        return output

    def assignment(self, stmt: Assign) -> None:
        values = [self.expr(v) for v in stmt.values]
        for target in stmt.targets:
            if len(values) > 1:  # `a, b = b, a`: position by position
                for name, value, source in zip(target, values, stmt.values, strict=True):
                    self.assign(name, value, source)
            else:
                self.assign(target if len(target) > 1 else target[0], values[0],
                            stmt.values[0])

    def loop(self, stmt: Loop) -> None:
        """A `for` loop: its body lowered once, into a graph of its own (`graph.LoopBody`).

        Variables the body assigns that exist before the loop are *carried* from one iteration
        to the next; the values it reads from outside are *invariants*. The generated code runs
        the body as a loop, so its size does not grow with the number of iterations.
        """
        graph = self.graph
        items = self.sequence_items(stmt)
        if items is not None:
            self.unrolled(stmt, items)
            return
        bounds = [self.value(b) for b in stmt.bounds] or [graph.const(0), graph.const(0)]
        for sequence in stmt.sequences[1:]:  # zip stops at the shortest, as Python's does
            length = self.value(ast.copy_location(
                ast.Call(ast.Name("len", ast.Load()), [sequence], []), sequence))
            bounds[0] = graph.apply("minimum", bounds[0], length,  # builtin min: ints stay ints
                                    attrs=(rules.PYTHON_SPELLING,))
        if len(bounds) == 1:
            bounds = [graph.const(0), bounds[0]]
        if len(bounds) == 2:
            bounds.append(graph.const(1))
        assigned, read = _loop_names(stmt)
        carried = [name for name in assigned if name in self.env]
        self.loop_locals.update((name, (stmt.lineno, "loop")) for name in assigned
                                if name not in self.env)
        self.loop_locals[stmt.target] = (stmt.lineno, "loop index")
        for name in carried:
            if not isinstance(self.env[name], Node):
                raise self.parsed.error(f"`{name}` holds a tuple/list/dict or a function; a "
                                        "loop can carry numbers and arrays only.",
                                        lineno=stmt.lineno)
        body_graph = Graph(rules.OPS)
        body_graph.lineno = self.fixed_lineno or stmt.lineno
        inner = _Lowering(self.parsed, {}, self.differentiate, caller=self, graph=body_graph)
        inner.depth = self.depth
        inner.fixed_lineno = self.fixed_lineno  # an inlined body: all at the call's line
        inner.outer = self
        index = body_graph.param(stmt.target)
        inner.env[stmt.target] = index
        carried_params = [body_graph.param(name) for name in carried]
        inner.env.update(zip(carried, carried_params, strict=True))
        invariants: list[Node] = []  # the values outside
        invariant_params: list[Node] = []
        for name in read:
            if name in inner.env:
                continue
            value = self.env[name] if name in self.env else self.lookup(name)
            if value is None:
                continue
            if isinstance(value, Node):
                invariants.append(value)
                invariant_params.append(body_graph.param(name))
                inner.env[name] = invariant_params[-1]
            elif isinstance(value, Tree):
                raise self.parsed.error(f"The loop reads the structured value `{name}`; unpack "
                                        "it before the loop (`W, b = params`).",
                                        lineno=stmt.lineno)
            else:
                inner.env[name] = value  # a function or module: known now
        condition = None
        if stmt.condition is not None:  # evaluated first in each iteration: its nodes come first
            condition = inner.value(stmt.condition)
        for part in stmt.body:
            body_graph.lineno = self.fixed_lineno or part.lineno
            inner.statement(part)
        outputs = []
        for name in carried:
            value = inner.env[name]
            if not isinstance(value, Node):
                raise self.parsed.error(f"The loop makes `{name}` a tuple/list/dict; a loop "
                                        "can carry numbers and arrays only.",
                                        lineno=stmt.lineno)
            outputs.append(value)
        for value, _ in inner.extra:  # what local functions called in the body read
            invariants.append(value)
            invariant_params.append(inner.taken[id(value)])
        body = LoopBody(body_graph, index, carried_params, invariant_params, outputs,
                        stmt.lineno)
        body.condition = condition
        if stmt.exit is not None:  # the `break` flag: the loop stops once it is 0
            body.exit = carried.index(stmt.exit)
        graph.lineno = self.fixed_lineno or stmt.lineno
        node = graph.apply("loop", *bounds, *(self.env[n] for n in carried), *invariants,
                           attrs=(body,))
        for k, name in enumerate(carried):
            output = graph.apply("loop_output", node, attrs=(k,), hint=name)
            body.output_nodes.append(output)
            self.env[name] = output
        if stmt.target in self.env and stmt.target not in carried:
            # Python leaves the last index in it; srcgrad does not, so reading it is refused.
            del self.env[stmt.target]
            self.loop_locals[stmt.target] = (stmt.lineno, "loop index")

    def sequence_items(self, stmt: Loop) -> list[list[Any]] | None:
        """The items of each sequence a `for` loop iterates over, when one is a list or tuple
        (a structured parameter, or written out), whose length is known now; None for a loop
        over arrays, which stays a loop."""
        if not stmt.sequences:
            return None
        values = [self.expr(s) for s in stmt.sequences]
        lengths = [len(v.children) for v in values if isinstance(v, Tree)]
        if not lengths:
            return None
        for value, node in zip(values, stmt.sequences, strict=True):
            if isinstance(value, Tree) and value.kind == "dict":
                raise self.parsed.error(
                    f"`{ast.unparse(node)}` is a dict; srcgrad loops over lists and tuples of "
                    "arrays. Loop over a list, or take the entries by key.", node)
            if isinstance(value, (_Static, _Local)):
                raise self.parsed.error(
                    f"`{ast.unparse(node)}` is {_describe(getattr(value, 'value', value))}, "
                    "not a sequence of numbers or arrays.", node)
        count = min(lengths)  # zip stops at the shortest
        items = []
        for value, node in zip(values, stmt.sequences, strict=True):
            if isinstance(value, Tree):
                items.append(list(value.children[:count]))
            else:  # an array zipped with a list: its first items (it must have as many)
                array = self.value(node)
                where = (f"`zip(..., {ast.unparse(node)}, ...)` in {self.parsed.name}, line "
                         f"{self.parsed.file_line(node)}")
                items.append([self.array_op("getitem", array, attrs=(
                    f"sg.zip_item(_0, {k}, {count}, {where!r})", repr(k)))
                    for k in range(count)])
        return items

    def _Tuple(self, node: ast.Tuple | ast.List) -> Tree:
        """``(a, b)`` or ``[W, (V, c)]`` written out: a `Tree` of its values, as a structured
        parameter would be, to loop over, unpack, index or pass to a function."""
        children = tuple(self.expr(element) for element in node.elts)
        kind = "list" if isinstance(node, ast.List) else "tuple"
        return Tree(kind, tuple(range(len(children))), children)

    _List = _Tuple

    def unrolled(self, stmt: Loop, items: list[list[Any]]) -> None:
        """A `for` loop over the items of a list or tuple, unrolled: its body lowered once per
        item, into this graph.

        Why not a loop: the items of a list of arrays may each have a shape, even a structure,
        of their own (the layers of a network), and each item gets a gradient of its own, not
        a sum over the iterations; a loop's body graph has one set of shapes and sums what it
        gives its invariants. The list's length is part of its structure, which the transform
        is built for (another length builds another), so unrolling is exact. With a `break`,
        every iteration after the first runs under ``if running_<line>:``.
        """
        graph = self.graph
        before = set(self.env)
        assigned, _ = _loop_names(stmt)
        variables = [stmt.target, *(n for t in stmt.targets for n in _names_in(t))]
        own = [*assigned, *variables]
        body = stmt.body[len(stmt.sequences):]  # without the `v = xs[i]` of an array loop
        for k in range(len(items[0])):
            graph.lineno = self.fixed_lineno or stmt.lineno
            self.bind(stmt.target, graph.const(k))
            for target, values in zip(stmt.targets, items, strict=True):
                self.assign(target if len(target) > 1 else target[0], values[k],
                            stmt.sequences[0])
            if k and stmt.exit is not None:
                guard = ast.copy_location(ast.Name(stmt.exit, ast.Load()), stmt.sequences[0])
                self.branch(Branch(guard, tuple(body), (), stmt.lineno))
            else:
                for part in body:
                    graph.lineno = self.fixed_lineno or part.lineno
                    self.statement(part)
            for name in own:  # as in a loop: the body's own names do not outlive it
                if name not in before:
                    self.env.pop(name, None)
        for name in own:
            if name not in before or name in variables:  # Python keeps the last item
                self.env.pop(name, None)
                where = "loop index" if name in variables else "loop"
                self.loop_locals[name] = (stmt.lineno, where)

    def statement(self, part: Any) -> None:
        """One statement of a loop body or a branch."""
        if isinstance(part, Loop):
            self.loop(part)
        elif isinstance(part, Branch):
            self.branch(part)
        else:
            self.assignment(part)

    def branch(self, stmt: Branch) -> None:
        """An `if` statement: each branch lowered into a graph of its own (`graph.BranchBody`).

        Its outputs are the variables either branch assigns that exist before the `if`, or
        that both branches assign; its inputs are what the branches read and the incoming
        values of those variables (a branch that leaves one alone passes it through).
        """
        graph = self.graph
        condition = self.value(stmt.test)
        then_assigned, then_read = _block_names(stmt.then)
        else_assigned, else_read = _block_names(stmt.orelse)
        assigned = list(dict.fromkeys([*then_assigned, *else_assigned]))
        outputs = [n for n in assigned if n in self.env
                   or (n in then_assigned and n in else_assigned)]
        self.loop_locals.update((n, (stmt.lineno, "`if`")) for n in assigned if n not in outputs)
        inputs: list[str] = []
        values_in: list[Node] = []  # the inputs' values outside
        statics: dict[str, Any] = {}
        for name in dict.fromkeys([*then_read, *else_read, *outputs]):
            value = self.env[name] if name in self.env else self.lookup(name)
            if isinstance(value, Node):
                inputs.append(name)
                values_in.append(value)
            elif isinstance(value, Tree):
                raise self.parsed.error(f"The `if` reads the structured value `{name}`; unpack "
                                        "it before the `if` (`W, b = params`).",
                                        lineno=stmt.lineno)
            elif value is not None:
                statics[name] = value
        graphs, params, results, inners = [], [], [], []
        extra: list[tuple[Node, str]] = []  # what local functions called in a branch read
        for block in (stmt.then, stmt.orelse):
            sub = Graph(rules.OPS)
            sub.lineno = self.fixed_lineno or stmt.lineno
            inner = _Lowering(self.parsed, {}, self.differentiate, caller=self, graph=sub)
            inner.depth = self.depth
            inner.fixed_lineno = self.fixed_lineno
            inner.outer = self
            inner.extra = extra
            inners.append(inner)
            inner.env.update(statics)
            block_params = [sub.param(name) for name in inputs]
            inner.env.update(zip(inputs, block_params, strict=True))
            for part in block:
                sub.lineno = self.fixed_lineno or part.lineno
                inner.statement(part)
            values = []
            for name in outputs:
                value = inner.env.get(name)
                if not isinstance(value, Node):
                    raise self.parsed.error(f"The `if` makes `{name}` a tuple/list/dict or a "
                                            "function; branches can assign numbers and arrays "
                                            "only.", lineno=stmt.lineno)
                values.append(value)
            graphs.append(sub)
            params.append(block_params)
            results.append(values)
        for inner, block_params in zip(inners, params, strict=True):  # the same in both
            block_params += [inner.take(value, name) for value, name in extra]
        values_in += [value for value, _ in extra]
        body = BranchBody((graphs[0], graphs[1]), (params[0], params[1]),
                          (results[0], results[1]), outputs, stmt.lineno)
        graph.lineno = self.fixed_lineno or stmt.lineno
        node = graph.apply("branch", condition, *values_in, attrs=(body,))
        for k, name in enumerate(outputs):
            output = graph.apply("branch_output", node, attrs=(k,), hint=name)
            body.output_nodes.append(output)
            self.env[name] = output

    def _IfExp(self, node: ast.IfExp) -> Node:
        """``a if c else b``: a two-branch `if` with one output (only one side is computed)."""
        hidden = "value_if"
        saved = self.env.pop(hidden, None)
        line = self.graph.lineno or 0
        self.branch(Branch(node.test, (Assign(((hidden,),), (node.body,), line),),
                           (Assign(((hidden,),), (node.orelse,), line),), line))
        value = self.env.pop(hidden)
        self.loop_locals.pop(hidden, None)
        if saved is not None:
            self.env[hidden] = saved
        return value

    def lookup(self, name: str) -> Any:
        """``name`` in the variables of the functions enclosing this one (a local function's
        free names, read when it is called, as Python does); None when none defines it.

        The value is the one in force where the call is lowered: when the call is inside a
        loop or an `if` of the function that defined the local one, its variables are that
        region's (a variable the loop updates is seen updated), and a value from outside the
        region becomes an input of it (of every region between, when they nest), so the
        result is always a node of this lowering's graph.
        """
        scope = self.enclosing
        while scope is not None:
            frame: _Lowering | None = self.view_of(scope)
            while frame is not None:  # the region where the call is, then the ones around it
                if name in frame.env:
                    return self.imported(frame, frame.env[name], name)
                scope = frame
                frame = frame.outer
            scope = scope.enclosing
        return None

    def view_of(self, scope: _Lowering) -> _Lowering:
        """The innermost lowering of ``scope``'s function that this lowering is nested in:
        ``scope`` itself, or one of its loop bodies or branches (the one the call is in)."""
        lowering: _Lowering | None = self
        while lowering is not None:
            region: _Lowering | None = lowering
            while region is not None:
                if region is scope:
                    return lowering
                region = region.outer
            lowering = lowering.caller
        return scope

    def imported(self, where: _Lowering, value: Any, name: str) -> Any:
        """``value``, found in the variables of ``where`` (this lowering or one it is nested
        in), as a value of this lowering's graph: an input of each region in between."""
        if isinstance(value, Tree):
            return Tree(value.kind, value.keys, tuple(
                self.imported(where, child, name) for child in value.children), value.fields)
        if not isinstance(value, Node) or value.graph is self.graph:
            return value
        if value.is_const:
            return self.graph.const(value.value)
        regions: list[_Lowering] = []
        lowering: _Lowering | None = self
        while lowering is not where:
            if lowering is None:  # not nested in it: refuse rather than mix graphs
                raise self.parsed.error(
                    f"`{name}` is read by a local function called away from where it was "
                    "defined, which srcgrad cannot follow; pass it as an argument.",
                    lineno=self.fixed_lineno or self.graph.lineno)
            if lowering.outer is not None:
                regions.append(lowering)
            lowering = lowering.caller
        for region in reversed(regions):  # outermost first
            value = region.take(value, name)
        return value

    def take(self, value: Node, name: str) -> Node:
        """A loop body's or branch's parameter for ``value``, a node of the enclosing graph
        that a local function called inside reads (made once per value)."""
        param = self.taken.get(id(value))
        if param is None:
            unique, n = name, 1
            while self.graph.has_param(unique):  # a name of its own: not another input's
                n += 1
                unique = f"{name}_{n}"
            param = self.taken[id(value)] = self.graph.param(unique)
            if all(value is not known for known, _ in self.extra):
                self.extra.append((value, name))
        return param

    def tree(self, parent: Node, structure: Structure) -> Tree:
        """`item` nodes for every element of a structured parameter."""
        kind, keys, children = structure
        count = None if kind == "dict" else len(keys)
        nodes = []
        for key, child in zip(keys, children, strict=True):
            item = self.graph.apply("item", parent, attrs=(key, count))
            nodes.append(item if child is None else self.tree(item, child))
        return Tree(kind, tuple(keys), tuple(nodes))

    def assign(self, target: str | tuple, value: Any, node: ast.expr) -> None:
        """Bind ``target`` (a name, or nested names unpacking a structure) to ``value``."""
        if isinstance(target, str):
            self.bind(target, value)
            return
        if not isinstance(value, Tree) or value.kind == "dict":
            raise self.parsed.error(
                "Tuple unpacking works on tuple/list parameters (`W, b = params`) and on "
                "tuples written out (`a, b = b, a`); index arrays instead (`x[0]`).", node)
        if len(target) != len(value.children):
            raise self.parsed.error(
                f"Cannot unpack {len(value.children)} values into {len(target)} names.", node)
        for name, child in zip(target, value.children, strict=True):
            self.assign(name, child, node)

    def bind(self, name: str, value: Node | _Static) -> None:
        self.env[name] = value
        if isinstance(value, Node) and value.hint is None and not value.is_leaf:
            value.hint = name

    # -- expressions ---------------------------------------------------------------------------
    def expr(self, node: ast.expr) -> Node | _Static:
        method = getattr(self, f"_{type(node).__name__}", None)
        if method is None:  # parse.py admits only the node types handled below
            raise self.parsed.error(f"srcgrad cannot differentiate this {type(node).__name__}.",
                                    node)
        return method(node)

    def value(self, node: ast.expr) -> Node:
        """``node`` evaluated to a number/array node (statics are an error here)."""
        return self._as_value(self.expr(node), node)

    def _as_value(self, result: Any, node: ast.expr) -> Node:
        if isinstance(result, Tree) and isinstance(node, _SEQUENCES):
            raise self.parsed.error(
                "A list or tuple is not a number or array here; build an array with "
                "np.stack([...]) or np.concatenate([...]), or loop over it.", node)
        if isinstance(result, Tree):
            raise self.parsed.error(
                f"`{ast.unparse(node)}` is a {result.kind} of arrays; unpack it "
                "(`W, b = params`) or index it (`params[0]`) before computing with it.", node)
        if isinstance(result, _Method):
            raise self.parsed.error(f"`{ast.unparse(node)}` is a method; call it.", node)
        if isinstance(result, _Static):
            raise self.parsed.error(
                f"{ast.unparse(node)} is {_describe(result.value)}, not a number or array; "
                "srcgrad cannot compute with it.", node)
        return result

    def _Constant(self, node: ast.Constant) -> Node:
        if not isinstance(node.value, (int, float)) or isinstance(node.value, bool):
            raise self.parsed.error(f"The constant {node.value!r} is not a real number; srcgrad "
                                    "computes with ints and floats.", node)
        return self.graph.const(node.value)

    def _Name(self, node: ast.Name) -> Node | _Static:
        name = node.id
        if name in self.env:
            return self.env[name]
        found = self.lookup(name)  # a local function reads its definer's variables
        if found is not None:
            return found
        if name in self.closure:
            return self.classify(self.closure[name], name, node, where="closure")
        if name in self.globals:
            return self.classify(self.globals[name], name, node,
                                 where="global" if self.globals_live else "closure")
        if hasattr(builtins, name):
            return self.classify(getattr(builtins, name), name, node, where="builtin")
        if name in self.loop_locals:
            line, where = self.loop_locals[name]
            if where == "loop index":
                raise self.parsed.error(
                    f"`{name}` is the variable of the loop at line {line}; srcgrad does not keep "
                    "its last value after the loop: inside the loop, copy what you need into a "
                    f"variable that exists before it (`last = {name}`).", node)
            raise self.parsed.error(
                f"`{name}` is assigned only inside the {where} at line {line}; to use it after "
                f"the {where}, give it a value before it (`{name} = 0.0`).", node)
        raise self.parsed.error(
            f"The name `{name}` is not defined (srcgrad looked in the function's locals, its "
            "closure, its module's globals and the builtins when it built the gradient at the "
            "first call). Define it before the first call.", node)

    def _Attribute(self, node: ast.Attribute) -> Node | _Static | _Method | Tree:
        base = self.expr(node.value)
        if isinstance(base, Tree):  # `grads.x` of an inlined `grad` call
            if node.attr in base.fields:
                return base.children[base.fields.index(node.attr)]
            fields = f"; it has {', '.join(base.fields)}" if base.fields else ""
            raise self.parsed.error(
                f"`{ast.unparse(node.value)}` has no field `{node.attr}`{fields}.", node)
        if isinstance(base, _Method):
            raise self.parsed.error(f"`{ast.unparse(node)}` is not supported.", node)
        if isinstance(base, Node):
            return self.value_attribute(base, node)
        try:
            value = getattr(base.value, node.attr)
        except AttributeError:
            raise self.parsed.error(
                f"{ast.unparse(node.value)} has no attribute `{node.attr}`.", node) from None
        return self.classify(value, ast.unparse(node), node, where="attribute")

    def value_attribute(self, base: Node, node: ast.Attribute) -> Node | _Method:
        """``x.T``, ``x.shape``, or a method such as ``x.sum``."""
        if node.attr == "T":
            return self.array_op("transpose", base, self.graph.const(None))
        if node.attr in array_rules.VALUE_ATTRIBUTES:
            return self.array_op("nondiff", base, attrs=(f"_0.{node.attr}",))
        if node.attr in array_rules.METHODS:
            return _Method(base, node.attr)
        raise self.parsed.error(
            f"The attribute `.{node.attr}` of a value is not supported; srcgrad knows `.T`, "
            f"`.shape`, `.size`, `.ndim` and the methods "
            f"{', '.join(sorted(array_rules.METHODS))}.", node)

    def array_op(self, op: str, *args: Node, attrs: tuple = ()) -> Node:
        """An array operation: the float fast path no longer applies."""
        self.result.floats_only = False
        return self.graph.apply(op, *args, attrs=attrs)

    def classify(self, value: Any, name: str, node: ast.AST, *, where: str) -> Node | _Static:
        """What a name or attribute holding ``value`` means in the graph."""
        if _is_plain_number(value):
            if where == "global":
                self.result.live_globals.add(name)
                if not isinstance(value, (int, float)):
                    self.result.floats_only = False
                return self.graph.global_(name)
            if isinstance(value, np.generic):
                value = value.item()
            return self.graph.const(value)
        if _is_array_like(value) and not isinstance(value, type):
            self.result.floats_only = False
            if where == "global":
                self.result.live_globals.add(name)
                return self.graph.global_(name)
            return self.graph.bound(self.bind_name(name, value), value)
        if (where == "global" and isinstance(value, types.FunctionType)
                and rules.primitive_for(value) is None and name not in CODE_BUILTINS):
            self.result.frozen_functions[name] = value  # a function of the user's
        if isinstance(value, (bool, np.bool_, str, bytes, list, tuple, dict, set)) or value is None:
            raise self.parsed.error(
                f"`{name}` is {_describe(value)}; srcgrad computes with numbers and arrays "
                "(pass it as an argument or make it a NumPy array).", node)
        return _Static(value)

    def bind_name(self, preferred: str, obj: Any) -> str:
        """A name under which ``obj`` is bound into the generated code."""
        base = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in preferred) or "bound"
        name, n = base, 1
        # Never the name of a module function the code checks is unchanged (it reads the
        # module's global of that name, which a binding of the same name would hide).
        while (name in self.result.bound and self.result.bound[name] is not obj) or (
                name in self.code_globals and self.code_globals[name] is not obj) or (
                name in self.result.frozen_functions):
            n += 1
            name = f"{base}_{n}"
        self.result.bound[name] = obj
        return name

    def _UnaryOp(self, node: ast.UnaryOp) -> Node:
        operand = self.value(node.operand)
        return operand if isinstance(node.op, ast.UAdd) else self.graph.apply("neg", operand)

    def _BinOp(self, node: ast.BinOp) -> Node:
        op = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div",
              ast.Pow: "pow", ast.MatMult: "matmul"}[type(node.op)]
        left, right = self.value(node.left), self.value(node.right)
        if op == "matmul":
            return self.array_op("matmul", left, right)
        return self.graph.apply(op, left, right)

    def _Call(self, node: ast.Call) -> Node:
        callee = self.expr(node.func)
        label = ast.unparse(node.func)
        if isinstance(callee, _Method):
            return self.method_call(callee, node, label)
        if isinstance(callee, _Local):
            return self.inline_local(callee, node, label)
        if isinstance(callee, Node):
            raise self.parsed.error(f"`{label}` is a value, not a function; it cannot be called.",
                                    node)
        fn = callee.value
        if getattr(fn, "__srcgrad_transform__", None) is not None:
            return self.inline_gradient(fn.__srcgrad_transform__, node, label)
        if fn is len and len(node.args) == 1 and not node.keywords:
            sized = self.expr(node.args[0])
            if isinstance(sized, Tree):  # a list's length is part of its structure: known now
                return self.graph.const(len(sized.children))
        if _in(fn, array_rules.NONDIFFERENTIABLE):
            return self.passthrough(fn, node, label)
        primitive = rules.primitive_for(fn)
        if isinstance(fn, np.ufunc) and primitive is not None and primitive.elementwise:
            folded = self.numpy_constant(fn, node)
            if folded is not None:
                return folded
        if primitive is not None and primitive.name in array_rules.VARIADIC:
            return self.variadic(primitive, node, label)
        if primitive is not None and primitive.signature is not None:
            return self.bound_call(primitive, self.bind_arguments(primitive, node, label, []), node)
        if (primitive is None and isinstance(fn, types.FunctionType)
                and rules.derivative_for(fn, self.globals) is None):
            return self.inline_call(fn, node, label)
        args = [self.value(a) for a in node.args]
        if _in(fn, rules.IDENTITY) and len(args) == 1 and not node.keywords:
            return args[0]
        if _in(fn, rules.LOG_WITH_BASE) and len(args) == 2 and not node.keywords:
            return self.graph.apply("div", self.graph.apply("log", args[0]),
                                    self.graph.apply("log", args[1]))
        if node.keywords:
            raise self.parsed.error(
                f"Keyword arguments to `{label}` are not supported; pass them by position.",
                node.keywords[0].value)
        if primitive is not None:
            if len(args) != primitive.arity:
                raise self.parsed.error(
                    f"`{label}` takes {primitive.arity} argument(s) in differentiated code, got "
                    f"{len(args)}.", node)
            # `srcgrad.functions.sin` and `math.sin` keep Python floats Python floats, where
            # `np.sin` returns a NumPy float64: the array path must do what the spelling does.
            python_spelled = (not isinstance(fn, np.ufunc) and primitive.name in rules.LIFTED
                              and not all(a.is_const for a in args))
            return self.graph.apply(primitive.name, *args,
                                    attrs=(rules.PYTHON_SPELLING,) if python_spelled else ())
        return self.graph.apply("call", *args, attrs=(self.user_function(fn, label, node),))

    def numpy_constant(self, fn: np.ufunc, node: ast.Call) -> Node | None:
        """``np.sin(0.5)`` folded as NumPy computes it: a float64 scalar, not a Python float.

        The difference matters: a NumPy scalar promotes a float32 array to float64, a Python
        float does not, and the generated code must give the plain function's dtype.
        """
        if node.keywords:
            return None
        args = [self.value(a) for a in node.args]
        if not args or not all(a.is_const for a in args):
            return None
        try:
            with np.errstate(all="ignore"):
                value = fn(*(a.value for a in args))
        except (TypeError, ValueError):
            return None
        if not isinstance(value, np.floating) or not np.isfinite(value):
            return None
        return self.graph.const(value)

    def bound_call(self, primitive: rules.Primitive, args: list[Node], node: ast.AST) -> Node:
        if primitive.elementwise:
            return self.graph.apply(primitive.name, *args)
        return self.array_op(primitive.name, *args)

    def bind_arguments(self, primitive: rules.Primitive, node: ast.Call, label: str,
             leading: list[Node]) -> list[Node]:
        """Arguments of a call matched to ``primitive``'s signature, defaults filled in."""
        signature = primitive.signature or ()
        values: dict[str, Node] = {}
        positional = [*leading, *(self.argument(a) for a in node.args)]
        if len(positional) > len(signature):
            raise self.parsed.error(
                f"`{label}` takes at most {len(signature) - len(leading)} positional "
                f"argument(s) here.", node)
        for param, value in zip(signature, positional, strict=False):
            values[param.name] = value
        names = {p.name for p in signature}
        for keyword in node.keywords:
            name = {"newshape": "shape", "min": "a_min", "max": "a_max"}.get(keyword.arg,
                                                                          keyword.arg)
            if name not in names or name in values:
                raise self.parsed.error(
                    f"`{label}` does not take the keyword `{keyword.arg}` in differentiated "
                    f"code (it takes {', '.join(p.name for p in signature[len(leading):])}).",
                    keyword.value)
            values[name] = self.argument(keyword.value)
        args = []
        for param in signature:
            if param.name in values:
                args.append(values[param.name])
            elif param.default is NotImplemented:
                raise self.parsed.error(f"`{label}` needs its argument `{param.name}`.", node)
            else:
                args.append(self.graph.const(param.default))
        return args

    def method_call(self, method: _Method, node: ast.Call, label: str) -> Node:
        """``x.sum(axis=1)`` as ``np.sum(x, axis=1)``; ``x.reshape(2, 3)`` packs the shape."""
        primitive = rules.PRIMITIVES[array_rules.METHODS[method.name]]
        if method.name in ("reshape", "transpose") and len(node.args) > 1:
            packed = ast.copy_location(ast.Tuple(list(node.args), ast.Load()), node.args[0])
            node = ast.copy_location(ast.Call(node.func, [packed], node.keywords), node)
        args = self.bind_arguments(primitive, node, label, [method.target])
        return self.bound_call(primitive, args, node)

    def variadic(self, primitive: rules.Primitive, node: ast.Call, label: str) -> Node:
        """``np.concatenate([a, b], axis=0)``, ``np.stack``, ``np.einsum("ij,jk->ik", a, b)``."""
        if primitive.name == "einsum":
            if node.keywords or not node.args:
                raise self.parsed.error("`einsum` takes a subscripts string and operands only.",
                                        node)
            subscripts = self.argument(node.args[0])
            if not (subscripts.is_const and isinstance(subscripts.value, str)):
                raise self.parsed.error("The einsum subscripts must be a string literal.", node)
            operands = [self.value(a) for a in node.args[1:]]
            return self.array_op("einsum", subscripts, *operands)
        if len(node.args) != 1 or not isinstance(node.args[0], _SEQUENCES):
            raise self.parsed.error(
                f"`{label}` needs a literal list or tuple of arrays as its first argument, as "
                f"in `{label}([a, b], axis=0)`.", node)
        arrays = [self.value(a) for a in node.args[0].elts]
        axis: Node = self.graph.const(0)
        for keyword in node.keywords:
            if keyword.arg != "axis":
                raise self.parsed.error(f"`{label}` takes only `axis` here.", keyword.value)
            axis = self.argument(keyword.value)
        return self.array_op(primitive.name, axis, *arrays)

    def passthrough(self, fn: Any, node: ast.Call, label: str) -> Node:
        """A call with no gradient (``np.arange``, ``len``): emitted as written."""
        args = [self.argument(a) for a in node.args]
        keywords = [self.argument(k.value) for k in node.keywords]
        spelling = label if self.spelled_globally(node.func, fn) else self.bind_name(
            getattr(fn, "__name__", "function"), fn)
        parts = [f"_{i}" for i in range(len(args))]
        parts += [f"{k.arg}=_{len(args) + i}" for i, k in enumerate(node.keywords)]
        template = f"{spelling}({', '.join(parts)})"
        return self.array_op("nondiff", *args, *keywords, attrs=(template,))

    def spelled_globally(self, func: ast.expr, fn: Any) -> bool:
        """Whether the source spelling of ``fn`` resolves to it from the module's globals."""
        root = func
        while isinstance(root, ast.Attribute):
            root = root.value
        if not isinstance(root, ast.Name) or root.id in self.env or root.id in self.closure:
            return False
        return root.id in self.globals or hasattr(builtins, root.id)

    def argument(self, node: ast.expr) -> Node:
        """A call argument: a value, or a constant such as ``None``, ``"ij->i"``, ``(0, 1)``."""
        if isinstance(node, ast.Constant):
            return self.graph.const(node.value)
        if isinstance(node, _SEQUENCES):
            items = [self.argument(e) for e in node.elts]
            if all(i.is_const for i in items):
                return self.graph.const(tuple(i.value for i in items))
            placeholders = ", ".join(f"_{i}" for i in range(len(items)))
            return self.array_op("nondiff", *items,
                                 attrs=(f"({placeholders}{',' if len(items) == 1 else ''})",))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(
                node.operand, ast.Constant):
            return self.graph.const(-node.operand.value)
        return self.value(node)

    def _Subscript(self, node: ast.Subscript) -> Node | Tree:
        container = self.expr(node.value)
        if isinstance(container, Tree):
            key = node.slice
            found = None
            if isinstance(key, ast.Constant) or _int_literal(key):
                value = ast.literal_eval(key)
                if container.kind != "dict" and type(value) is int and value < 0:
                    value += len(container.children)  # `p[-1]` counts from the end
                found = container.child(value)
            if found is None:
                raise self.parsed.error(
                    f"`{ast.unparse(node)}`: the {container.kind} parameter has no element "
                    f"{ast.unparse(key)} (it has {', '.join(map(repr, container.keys))}); "
                    "index it with a constant key.", node)
            return found
        base = self._as_value(container, node.value)
        parts: list[Node] = []

        def placeholder(expr: ast.expr) -> ast.expr:
            if isinstance(expr, ast.Constant) and (expr.value is None or isinstance(
                    expr.value, int)):
                return expr
            if isinstance(expr, ast.List) and all(map(_int_literal, expr.elts)):
                return expr  # `w[[0, -1, 2]]`: kept as written
            if isinstance(expr, ast.List):
                raise self.parsed.error(
                    "A list in an index must hold integer constants (`x[[0, -1]]`); for "
                    "computed positions index with an integer array (`x[idx]`, `x[np.arange(n)]`).",
                    expr)
            listed = self.constant_index_array(expr)
            if listed is not None:
                return listed
            if isinstance(expr, ast.UnaryOp) and isinstance(expr.operand, ast.Constant):
                return expr
            parts.append(self.value(expr))
            return ast.Name(f"_{len(parts)}", ast.Load())

        def convert(expr: ast.expr) -> tuple[ast.expr, ast.expr]:
            """(the subscript as written, the index as an object) with values as `_k`."""
            if isinstance(expr, ast.Slice):
                bounds = [placeholder(b) if b is not None else None
                          for b in (expr.lower, expr.upper, expr.step)]
                written = ast.Slice(*bounds)
                as_object = ast.Call(ast.Name("slice", ast.Load()),
                                     [b if b is not None else ast.Constant(None) for b in bounds],
                                     [])
                return written, as_object
            if isinstance(expr, ast.Tuple):
                pairs = [convert(e) for e in expr.elts]
                return (ast.Tuple([w for w, _ in pairs], ast.Load()),
                        ast.Tuple([o for _, o in pairs], ast.Load()))
            if isinstance(expr, ast.Constant) and expr.value is Ellipsis:
                return expr, expr
            value = placeholder(expr)
            return value, value

        written, as_object = convert(node.slice)
        forward = ast.unparse(ast.Subscript(ast.Name("_0", ast.Load()), written, ast.Load()))
        index = ast.unparse(_shift_placeholders(as_object, -1))
        return self.array_op("getitem", base, *parts, attrs=(forward, index))

    def constant_index_array(self, expr: ast.expr) -> ast.List | None:
        """``np.array([0, 0, 2])`` (or ``np.asarray``) in an index, as the list it is made of:
        NumPy indexes with a list of integers as with that array."""
        if not (isinstance(expr, ast.Call) and len(expr.args) == 1 and not expr.keywords
                and isinstance(expr.args[0], ast.List) and expr.args[0].elts
                and all(map(_int_literal, expr.args[0].elts))):
            return None
        callee = self.expr(expr.func)
        if isinstance(callee, _Static) and _in(callee.value, (np.array, np.asarray)):
            return expr.args[0]
        return None

    def _Compare(self, node: ast.Compare) -> Node:
        if len(node.ops) != 1:
            raise self.parsed.error("Chained comparisons (`a < b < c`) are not supported; "
                                    "nest them (`if a < b:` then `if b < c:`) or combine masks "
                                    "with np.logical_and.", node)
        if type(node.ops[0]) not in _COMPARE:
            op = {ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in"}.get(
                type(node.ops[0]), "this comparison")
            raise self.parsed.error(f"`{op}` does not compare numbers: srcgrad compares numbers "
                                    "and arrays with <, <=, >, >=, == and != (masks, with no "
                                    "gradient). Decide `is None` and membership before the "
                                    "call, outside the differentiated function.", node)
        return self.graph.apply(_COMPARE[type(node.ops[0])], self.value(node.left),
                                self.value(node.comparators[0]))

    def callee(self, fn: Any, parsed: ParsedFunction, node: ast.Call, label: str
               ) -> tuple[_Lowering, inspect.BoundArguments]:
        """A lowering of ``fn``'s body into this graph, and the call's arguments bound to its
        parameters (Python's own binding rules and messages)."""
        if self.depth >= _MAX_INLINE_DEPTH:
            raise self.parsed.error(
                f"`{label}` nests calls of Python functions more than {_MAX_INLINE_DEPTH} deep "
                "(recursion?); srcgrad differentiates a call by transforming the function it "
                "calls, so recursion is not supported: write it as a loop, or give the "
                "function a `_derive`.", node)
        try:
            bound = inspect.signature(fn).bind(*node.args, **{
                k.arg: k.value for k in node.keywords if k.arg is not None})
        except TypeError as problem:
            raise self.parsed.error(f"`{label}(...)`: {problem}.", node) from None
        callee = _Lowering(parsed, {}, self.differentiate, caller=self)
        callee.fixed_lineno = self.graph.lineno
        return callee, bound

    def inline_call(self, fn: Any, node: ast.Call, label: str) -> Node:
        """A call of a plain Python function without a derivative of its own: its body is
        lowered into this graph (so srcgrad differentiates through it), each time it is
        called, with the call's arguments."""
        try:
            parsed = _parsed(fn)
        except SourceUnavailableError as problem:
            raise self.parsed.error(f"`{label}` cannot be differentiated: {problem.message}",
                                    node, cls=MissingDerivativeError) from None
        callee, bound = self.callee(fn, parsed, node, label)
        defaults = inspect.signature(fn).parameters
        for param in parsed.params:
            if param.name in bound.arguments:
                callee.env[param.name] = self.expr(bound.arguments[param.name])
            else:
                callee.env[param.name] = self.classify(defaults[param.name].default,
                                                       param.name, node, where="closure")
        return callee.body()

    def _SumLoop(self, node: Any) -> Node:
        """``sum(expr for v in xs)`` (or max, min): a loop combining ``expr`` into a total that
        starts at 0 (or -inf, inf)."""
        hidden = self.env.get(node.total)  # the accumulator's name is the loop's alone
        self.env[node.total] = self.graph.const(node.start)
        self.loop(node.loop)
        total = self.env.pop(node.total)
        if hidden is not None:
            self.env[node.total] = hidden
        return total

    def _LocalFunction(self, node: Any) -> _Local:
        return _Local(node.parsed, self)

    def inline_local(self, local: _Local, node: ast.Call, label: str) -> Node:
        """A call of a function defined inside the differentiated one: its body lowered with
        the call's arguments, its free names read from where it was defined."""
        if self.depth >= _MAX_INLINE_DEPTH:
            raise self.parsed.error(f"`{label}` nests calls more than {_MAX_INLINE_DEPTH} deep "
                                    "(recursion?); write it as a loop.", node)
        names = [p.name for p in local.parsed.params]
        given: dict[str, ast.expr] = dict(zip(names, node.args, strict=False))
        if len(node.args) > len(names):
            raise self.parsed.error(f"`{label}` takes {len(names)} argument(s), got "
                                    f"{len(node.args)}.", node)
        for keyword in node.keywords:
            if keyword.arg not in names or keyword.arg in given:
                raise self.parsed.error(f"`{label}` got an unexpected or repeated argument "
                                        f"`{keyword.arg}`.", keyword.value)
            given[keyword.arg] = keyword.value
        missing = [n for n in names if n not in given]
        if missing:
            raise self.parsed.error(f"`{label}` is missing {', '.join(missing)} (defaults of "
                                    "local functions are not supported: pass every argument).",
                                    node)
        callee = _Lowering(local.parsed, {}, self.differentiate, caller=self)
        callee.fixed_lineno = self.graph.lineno
        callee.enclosing = local.enclosing
        for name in names:
            callee.env[name] = self.expr(given[name])
        return callee.body()

    def inline_gradient(self, transform: Any, node: ast.Call, label: str) -> Tree:
        """A call of a `grad`-decorated function: its body, lowered into this graph with the
        call's arguments, and its gradient added by reverse mode. The result is the pair
        ``(value, grads)``, unpacked or indexed by the caller like the real one."""
        if getattr(transform, "_mode", None) != "grad" or self.differentiate is None:
            raise self.parsed.error(
                f"`{label}` is a srcgrad {getattr(transform, '_mode', 'transform')} function; "
                "only functions made by `grad` can be called inside a differentiated "
                "function.", node)
        inner = transform._parsed
        callee, bound = self.callee(transform.__wrapped__, inner, node, label)
        site = (id(node), self.depth)
        params: list[Node] = []
        for param in inner.params:
            if param.name in bound.arguments:
                value = self.expr(bound.arguments[param.name])
            else:
                default = inspect.signature(transform.__wrapped__).parameters[param.name].default
                value = self.classify(default, param.name, node, where="closure")
            if not isinstance(value, Node):
                raise self.parsed.error(
                    f"`{label}` is inlined with its gradient, so its arguments must be numbers "
                    f"or arrays; `{param.name}` is not.", node)
            # A distinct node per parameter, so that f(x, x) gets two gradients, not one.
            alias = self.graph.apply("alias", value, attrs=(*site, param.name))
            callee.env[param.name] = alias
            params.append(alias)
        output = callee.body()
        wrt = [alias for param, alias in zip(inner.params, params, strict=True)
               if param.name in transform.wrt]
        grads = self.differentiate(self.graph, output, wrt)
        # The gradient has its parameter's shape, as the real call returns it.
        full = tuple(self.graph.apply("expand_to", 0.0 if g is None else g, p)
                     for g, p in zip(grads, wrt, strict=True))
        if getattr(transform, "bare", False):  # `grad(f, wrt="x")`: the gradient itself
            return Tree("tuple", (0, 1), (output, full[0]))
        return Tree("tuple", (0, 1), (output, Tree("tuple", tuple(range(len(full))), full,
                                                   fields=tuple(transform.wrt))))

    def derivative_chain(self, derive: Any, name: str, depth: int = 1) -> rules.UserFunction:
        """``derive`` as a `UserFunction`, with its own derivative (``foo_derive_derive`` or
        registered) where one exists, for second and higher derivatives."""
        own = rules.derivative_for(derive, self.globals) if depth < 4 else None
        return rules.UserFunction(
            derive, self.bind_name(getattr(derive, "__name__", f"{name}_derive"), derive),
            None if own is None else self.derivative_chain(own, name, depth + 1))

    def user_function(self, fn: Any, label: str, node: ast.AST) -> rules.UserFunction:
        """``fn`` with its derivative, ready to be called from generated code."""
        known = self._user_functions.get(id(fn))
        if known is not None:
            return known
        if not callable(fn) or isinstance(fn, type):
            raise self.parsed.error(f"`{label}` is {_describe(fn)}; srcgrad can only call "
                                    "functions here.", node)
        derive = rules.derivative_for(fn, self.globals)
        name = getattr(fn, "__name__", label)
        if derive is None:
            raise self.parsed.error(
                f"srcgrad has no derivative for `{label}`.\n{MissingDerivativeError.fixes(name)}",
                node, cls=MissingDerivativeError)
        user = rules.UserFunction(fn, self.bind_name(name, fn), self.derivative_chain(derive, name))
        self._user_functions[id(fn)] = user
        return user


_PARSED: weakref.WeakKeyDictionary[Any, ParsedFunction] = weakref.WeakKeyDictionary()
# Builtins the generated code calls by name (loops, indexing, the float path's checks, rules).
# A module function named so is bound away from the code (`codegen.shadowed_builtins`), so
# its redefinition is not checked.
CODE_BUILTINS = frozenset({"type", "float", "int", "range", "len", "reversed", "slice", "abs",
                           "min", "max", "sum", "pow", "round", "tuple", "list", "dict", "zip",
                           "enumerate", "isinstance", "Ellipsis"})


def _parsed(fn: Any) -> ParsedFunction:
    """``fn`` parsed once, however many calls of it are inlined."""
    parsed = _PARSED.get(fn)
    if parsed is None:
        parsed = _PARSED[fn] = parse_function(fn)
    return parsed


def _loop_names(stmt: Loop) -> tuple[list[str], list[str]]:
    """The names a loop's body (and a `while` loop's test) assigns and reads."""
    assigned, read = _block_names(stmt.body)
    if stmt.condition is not None:
        tested = [n.id for n in ast.walk(stmt.condition) if isinstance(n, ast.Name)]
        read = list(dict.fromkeys([*tested, *read]))
    return assigned, read


def _block_names(block: Any) -> tuple[list[str], list[str]]:
    """The names a block of statements assigns and the names it reads, in order of appearance
    (nested loops and branches included; loop variables count as assigned)."""
    assigned: list[str] = []
    read: list[str] = []

    def add(names: list[str], name: str) -> None:
        if name not in names:
            names.append(name)

    for part in block:
        if isinstance(part, Branch):
            for name in _reads(part.test):
                add(read, name)
            for inner in (part.then, part.orelse):
                inner_assigned, inner_read = _block_names(inner)
                for name in inner_read:
                    add(read, name)
                for name in inner_assigned:
                    add(assigned, name)
            continue
        if isinstance(part, Loop):
            for bound in (*part.bounds, *((part.condition,) if part.condition else ())):
                for name in _reads(bound):
                    add(read, name)
            inner_assigned, inner_read = _loop_names(part)
            for name in inner_read:
                add(read, name)
            for name in inner_assigned:
                add(assigned, name)
            continue
        for value in part.values:
            for name in _reads(value):
                add(read, name)
        for target in part.targets:
            for name in _names_in(target):
                add(assigned, name)
    return assigned, read


def _reads(expr: ast.expr) -> list[str]:
    """The names an expression reads, inside `sum(... for ...)` loops too."""
    names: list[str] = []
    for node in ast.walk(expr):
        if isinstance(node, ast.Name):
            names.append(node.id)
        elif type(node).__name__ == "SumLoop":
            inner = node.loop
            names += [n for b in inner.bounds for n in _reads(b)]
            names += [n for n in _block_names(inner.body)[1] if n != inner.target]
    return names


def _names_in(target: Any) -> list[str]:
    if isinstance(target, str):
        return [target]
    return [name for part in target for name in _names_in(part)]


def _in(obj: Any, collection: Any) -> bool:
    """``obj in collection`` for objects that may be unhashable or compare oddly (arrays)."""
    try:
        return obj in collection
    except TypeError:
        return False


def _int_literal(expr: ast.expr) -> bool:
    """Whether ``expr`` is an integer written out: ``2``, ``-1``, ``True``."""
    if isinstance(expr, ast.UnaryOp) and isinstance(expr.op, (ast.USub, ast.UAdd)):
        expr = expr.operand
        return isinstance(expr, ast.Constant) and type(expr.value) is int
    return isinstance(expr, ast.Constant) and type(expr.value) in (int, bool)


def _shift_placeholders(expr: ast.expr, offset: int) -> ast.expr:
    """``expr`` with every placeholder ``_k`` renamed ``_{k + offset}``."""
    for node in ast.walk(expr):
        if isinstance(node, ast.Name) and node.id.startswith("_") and node.id[1:].isdigit():
            node.id = f"_{int(node.id[1:]) + offset}"
    return expr


def _describe(value: Any) -> str:
    if isinstance(value, type(np)):
        return f"the module `{value.__name__}`"
    kind = type(value).__name__
    article = "an" if kind[:1].lower() in "aeiou" else "a"
    return f"{article} {kind}"
