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
import numbers
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import rules
from .errors import MissingDerivativeError
from .graph import Graph, Node
from .parse import Assign, ParsedFunction


@dataclass(frozen=True)
class _Static:
    """A value known at build time that is not a number: a module, a function, a class."""

    value: Any


@dataclass
class Lowered:
    """The forward graph of one function and what its generated code must be given."""

    parsed: ParsedFunction
    graph: Graph
    output: Node
    params: dict[str, Node]
    bound: dict[str, Any] = field(default_factory=dict)  # name -> object bound into the code
    live_globals: set[str] = field(default_factory=set)  # module globals read at call time
    floats_only: bool = True  # every global/closure value is a plain number: float path valid


def lower(parsed: ParsedFunction) -> Lowered:
    """Build the forward graph of ``parsed``."""
    return _Lowering(parsed).run()


def _is_plain_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _is_array_like(value: Any) -> bool:
    return isinstance(value, np.ndarray) or hasattr(value, "__array_ufunc__") or hasattr(
        value, "__array_namespace__")


class _Lowering:
    def __init__(self, parsed: ParsedFunction) -> None:
        self.parsed = parsed
        fn = parsed.fn
        self.globals: dict[str, Any] = getattr(fn, "__globals__", {})
        code = fn.__code__
        cells = fn.__closure__ or ()
        self.closure: dict[str, Any] = {}
        for name, cell in zip(code.co_freevars, cells, strict=True):
            # An empty cell (assigned later in the outer scope) raises ValueError: skip it.
            with contextlib.suppress(ValueError):
                self.closure[name] = cell.cell_contents
        self.graph = Graph(rules.OPS)
        self.env: dict[str, Node | _Static] = {}
        self.result = Lowered(parsed, self.graph, output=None, params={})  # type: ignore[arg-type]
        self._user_functions: dict[int, rules.UserFunction] = {}

    def run(self) -> Lowered:
        graph = self.graph
        graph.lineno = self.parsed.lineno
        for param in self.parsed.params:
            node = graph.param(param.name)
            self.env[param.name] = node
            self.result.params[param.name] = node
        for stmt in self.parsed.body:
            graph.lineno = stmt.lineno
            if isinstance(stmt, Assign):
                values = [self.expr(v) for v in stmt.values]
                for names in stmt.targets:
                    for name, value in zip(names, values if len(names) > 1 else values[:1],
                                           strict=True):
                        self.bind(name, value)
            else:
                output = self.expr(stmt.value)
                if isinstance(output, _Static):
                    raise self.parsed.error(
                        f"`{self.parsed.name}` returns {_describe(output.value)}, not a number "
                        "or array.", stmt.value)
                self.result.output = output
        return self.result

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
        result = self.expr(node)
        if isinstance(result, _Static):
            raise self.parsed.error(
                f"{ast.unparse(node)} is {_describe(result.value)}, not a number or array; "
                "srcgrad cannot compute with it.", node)
        return result

    def _Constant(self, node: ast.Constant) -> Node:
        return self.graph.const(node.value)

    def _Name(self, node: ast.Name) -> Node | _Static:
        name = node.id
        if name in self.env:
            return self.env[name]
        if name in self.closure:
            return self.classify(self.closure[name], name, node, where="closure")
        if name in self.globals:
            return self.classify(self.globals[name], name, node, where="global")
        if hasattr(builtins, name):
            return self.classify(getattr(builtins, name), name, node, where="builtin")
        raise self.parsed.error(
            f"The name `{name}` is not defined (srcgrad looked in the function's locals, its "
            "closure, its module's globals and the builtins when it built the gradient at the "
            "first call). Define it before the first call.", node)

    def _Attribute(self, node: ast.Attribute) -> Node | _Static:
        base = self.expr(node.value)
        if isinstance(base, Node):
            raise self.parsed.error(
                f"Attributes of values (`.{node.attr}`) are not supported yet; only attributes "
                "of modules such as `np.sin` or `math.pi`.", node)
        try:
            value = getattr(base.value, node.attr)
        except AttributeError:
            raise self.parsed.error(
                f"{ast.unparse(node.value)} has no attribute `{node.attr}`.", node) from None
        return self.classify(value, ast.unparse(node), node, where="attribute")

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
        if isinstance(value, (bool, np.bool_, str, bytes, list, tuple, dict, set)) or value is None:
            raise self.parsed.error(
                f"`{name}` is {_describe(value)}; srcgrad computes with numbers and arrays "
                "(pass it as an argument or make it a NumPy array).", node)
        return _Static(value)

    def bind_name(self, preferred: str, obj: Any) -> str:
        """A name under which ``obj`` is bound into the generated code."""
        base = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in preferred) or "bound"
        name, n = base, 1
        while (name in self.result.bound and self.result.bound[name] is not obj) or (
                name in self.globals and self.globals[name] is not obj):
            n += 1
            name = f"{base}_{n}"
        self.result.bound[name] = obj
        return name

    def _UnaryOp(self, node: ast.UnaryOp) -> Node:
        operand = self.value(node.operand)
        return operand if isinstance(node.op, ast.UAdd) else self.graph.apply("neg", operand)

    def _BinOp(self, node: ast.BinOp) -> Node:
        op = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div",
              ast.Pow: "pow"}[type(node.op)]
        return self.graph.apply(op, self.value(node.left), self.value(node.right))

    def _Call(self, node: ast.Call) -> Node:
        callee = self.expr(node.func)
        label = ast.unparse(node.func)
        if isinstance(callee, Node):
            raise self.parsed.error(f"`{label}` is a value, not a function; it cannot be called.",
                                    node)
        fn = callee.value
        args = [self.value(a) for a in node.args]
        if fn in rules.IDENTITY and len(args) == 1 and not node.keywords:
            return args[0]
        if fn in rules.LOG_WITH_BASE and len(args) == 2 and not node.keywords:
            return self.graph.apply("div", self.graph.apply("log", args[0]),
                                    self.graph.apply("log", args[1]))
        if node.keywords:
            raise self.parsed.error(
                f"Keyword arguments to `{label}` are not supported yet; pass them by position.",
                node.keywords[0].value)
        primitive = rules.primitive_for(fn)
        if primitive is not None:
            if len(args) != primitive.arity:
                raise self.parsed.error(
                    f"`{label}` takes {primitive.arity} argument(s) in differentiated code, got "
                    f"{len(args)}.", node)
            return self.graph.apply(primitive.name, *args)
        return self.graph.apply("call", *args, attrs=(self.user_function(fn, label, node),))

    def user_function(self, fn: Any, label: str, node: ast.AST) -> rules.UserFunction:
        """``fn`` with its derivative, ready to be called from generated code."""
        known = self._user_functions.get(id(fn))
        if known is not None:
            return known
        if getattr(fn, "__srcgrad_transform__", None) is not None:
            raise self.parsed.error(
                f"`{label}` is itself decorated with @srcgrad.grad; calling one differentiated "
                "function from another is not supported yet. Call the undecorated function "
                f"(`{label}.__wrapped__`) and give it a `_derive`, or inline its body.", node)
        if not callable(fn) or isinstance(fn, type):
            raise self.parsed.error(f"`{label}` is {_describe(fn)}; srcgrad can only call "
                                    "functions here.", node)
        derive = rules.derivative_for(fn, self.globals)
        name = getattr(fn, "__name__", label)
        if derive is None:
            raise self.parsed.error(
                f"srcgrad has no derivative for `{label}`.\n{MissingDerivativeError.fixes(name)}",
                node, cls=MissingDerivativeError)
        derivative = rules.UserFunction(derive, self.bind_name(
            getattr(derive, "__name__", f"{name}_derive"), derive))
        user = rules.UserFunction(fn, self.bind_name(name, fn), derivative)
        self._user_functions[id(fn)] = user
        return user


def _describe(value: Any) -> str:
    if isinstance(value, type(np)):
        return f"the module `{value.__name__}`"
    kind = type(value).__name__
    article = "an" if kind[:1].lower() in "aeiou" else "a"
    return f"{article} {kind}"
