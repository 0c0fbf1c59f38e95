"""Graph -> Python source -> compiled function.

One graph is emitted twice inside one generated function: a **float path** (Python floats and
the `math` module, taken when every argument is a Python float or int) and an **array path**
(NumPy ufuncs with broadcasting, and ``sum_to`` on edges that may broadcast). The float path is
wrapped in ``try``: if `math` refuses an input that NumPy answers with inf or nan, the call
falls through to the array path, so both paths give the same answer.

Readability rules, so the output reads like code a person would write:

* a node gets its own statement when it has a name (a source variable, ``d_<name>`` for an
  adjoint), is used more than once, or is returned; any other node is inlined into its single
  user, so ``sin(a) + 0.2 * sin(a * 5)`` stays one line;
* comments give the source line each block of statements comes from, forward and backward;
* nothing is emitted that the returned values do not need.

Statements are built as `ast` nodes and printed with `ast.unparse`; comments and layout are
added around them. `black` formats the text only when a person asks for ``.source``.
"""

from __future__ import annotations

import ast
import builtins
import keyword
import linecache
import re
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np

from . import rules, runtime, static
from .graph import BOUND, CONST, GLOBAL, PARAM, REGION_VALUES, REGIONS, Node
from .lower import CODE_BUILTINS, Lowered, Tree

# Names the templates in `srcgrad.rules` use for the modules they call.
_TEMPLATE_MODULES = ("np", "math", "sg")


@dataclass
class Section:
    """One element of the generated function's result, after the value.

    ``fields`` pairs a name with the nodes of that field: one node, or a structured parameter's
    leaves. ``like`` says whose shape each field takes: ``"param"`` (the field's name is a
    parameter: a gradient), ``"value"`` (a tangent of the value) or ``"rows"`` (a matrix of
    blocks: field ``i`` holds row ``i``, entry ``j`` shaped like parameter ``j``). With a
    ``container`` (a namedtuple type) the fields are returned in it, else the single field bare.
    """

    fields: list[tuple[str, list[Node | None]]]
    like: str = "param"
    container: type | None = None
    label: str = "Grads"  # the name the container is bound under in the generated code


@dataclass
class Derivation:
    """What a generated function returns and how its derived values are named."""

    sections: list[Section]
    adjoint_of: dict[int, Node] = field(default_factory=dict)  # named d_<x>
    adjoints: dict[int, Node] = field(default_factory=dict)  # forward node id -> its adjoint
    tangent_of: dict[int, Node] = field(default_factory=dict)  # named <x>_dot ...
    tangent_names: dict[int, str] = field(default_factory=dict)  # ... or by this pattern
    extra_params: list[str] = field(default_factory=list)  # directions: keyword-only params
    extra_trees: dict[str, Tree] = field(default_factory=dict)  # structured directions
    phases: list[tuple[int, str]] = field(default_factory=list)  # (first node id, comment word)
    differentiated: list[str] = field(default_factory=list)  # parameters given derivatives
    # Forward mode through a loop or an `if` computes the value in the region it makes (so the
    # loop runs once): the node returned as the value, and node id -> the node it restates.
    value: Node | None = None
    restated: dict[int, Node] = field(default_factory=dict)

    def roots(self) -> list[Node]:
        nodes: list[Node] = []
        for section in self.sections:
            for _, entry in section.fields:
                nodes += [n for n in entry if n is not None]
        return nodes


@dataclass
class Generated:
    """The generated function and everything needed to show or rebuild it."""

    function: Callable[..., Any]
    text: str  # exactly what was compiled (and what tracebacks show)
    filename: str  # the linecache key of ``text``
    extra_params: list[str] = field(default_factory=list)  # keyword-only directions


def generate(lowered: Lowered, derivation: Derivation,
             mixed: tuple[list[str], Derivation] | None = None,
             shapes: dict[str, Any] | None = None,
             restructure: tuple[Callable[..., Any], dict[str, Any]] | None = None,
             refresh: Callable[..., Any] | None = None) -> Generated:
    """Emit, compile and return the function that computes ``lowered``'s value and what
    ``derivation`` describes (gradients, tangents, Hessian blocks).

    ``mixed`` adds a path for calls whose named parameters are Python floats while the others
    are arrays (a fit: scalar parameters, array data), with derivatives built knowing that.

    ``shapes`` (parameter name -> the first call's shape, a tuple of them for a structured
    parameter), given when every argument was a float64 array, adds a path for calls shaped
    the same, on which broadcasting is resolved here (see `srcgrad.static`).

    ``restructure`` is a function to call instead, with the call's arguments, when structured
    parameters (tuples, lists, dicts of arrays) come with another structure than the one
    given for them (the first call's), which the generated code unpacks.

    ``refresh`` is a function to call instead, with the call's arguments, when a module-level
    function the code was built from is no longer what that global name holds (redefined).
    """
    emitter = _Emitter(lowered, derivation, mixed, shapes, restructure, refresh)
    text, factory_name, bindings = emitter.module_text()
    function, filename = compile_generated(lowered, text, factory_name, bindings, "srcgrad")
    return Generated(function, text, filename, list(derivation.extra_params))


def compile_generated(lowered: Lowered, text: str, factory: str, bindings: dict[str, Any],
                      label: str) -> tuple[Callable[..., Any], str]:
    """Compile generated module ``text`` and call its ``factory`` with ``bindings``: the
    function, with the user's defaults and module, and the name tracebacks show for it."""
    parsed = lowered.parsed
    filename = f"<{label}: {parsed.name} from {parsed.filename}:{parsed.lineno}>"
    lines = text.splitlines(keepends=True)
    linecache.cache[filename] = (len(text), None, lines, filename)
    namespace: dict[str, Any] = {}
    code = compile(text, filename, "exec")
    exec(code, parsed.fn.__globals__, namespace)  # globals stay the module's: read live
    function = namespace[factory](**bindings)
    function.__name__ = parsed.name  # (the factory's may differ: see `_Emitter.local_name`)
    function.__defaults__ = getattr(parsed.fn, "__defaults__", None)
    function.__kwdefaults__ = getattr(parsed.fn, "__kwdefaults__", None)
    function.__module__ = getattr(parsed.fn, "__module__", None)
    return function, filename


def shadowed_builtins(parsed: Any, bindings: dict[str, Any], params: Sequence[str], code: str
                      ) -> dict[str, Any]:
    """The builtins ``code`` calls that the user's module hides with globals of its own (a
    function named ``slice``): bound into the factory, so the code still reaches the builtins."""
    module = getattr(parsed.fn, "__globals__", {})
    return {name: getattr(builtins, name) for name in sorted(CODE_BUILTINS)
            if name in module and name not in bindings and name not in params
            and re.search(rf"(?<![\w.]){name}\b", code)}


@cache
def _template(text: str) -> tuple[ast.expr, dict[str, int]]:
    """A rules template parsed once, with how often each placeholder occurs."""
    expr = ast.parse(text, mode="eval").body
    counts: dict[str, int] = {}
    for node in ast.walk(expr):
        if isinstance(node, ast.Name) and node.id.startswith("_") and node.id[1:].isdigit():
            counts[node.id] = counts.get(node.id, 0) + 1
    return expr, counts


def _instantiate(node: Any, args: list[ast.expr], modules: dict[str, str]) -> Any:
    """A fresh copy of a template's tree with ``_0``, ``_1`` ... replaced by ``args`` and the
    module names by the ones bound in the generated code. (Much cheaper than deepcopy plus a
    transformer: this runs for every operation of every generated function.)"""
    if isinstance(node, ast.Name):
        if node.id.startswith("_") and node.id[1:].isdigit():
            # Shared, not copied: the tree is only printed. A template that repeats a
            # placeholder gets a name or constant there (see `_needs_names`), never a subtree.
            return args[int(node.id[1:])]
        return ast.Name(modules.get(node.id, node.id), node.ctx)
    if isinstance(node, list):
        return [_instantiate(item, args, modules) for item in node]
    if not isinstance(node, ast.AST):
        return node
    fresh = node.__class__.__new__(node.__class__)
    for name in node._fields:
        setattr(fresh, name, _instantiate(getattr(node, name, None), args, modules))
    return fresh


def _literal(value: Any) -> ast.expr:
    if isinstance(value, float) and (value < 0 or (value == 0 and str(value).startswith("-"))):
        return ast.UnaryOp(ast.USub(), ast.Constant(-value))
    if isinstance(value, int) and value < 0:
        return ast.UnaryOp(ast.USub(), ast.Constant(-value))
    return ast.Constant(value)


def _float_literal(value: Any) -> ast.expr:
    return _literal(float(value))


class _Emitter:
    def __init__(self, lowered: Lowered, derivation: Derivation,
                 mixed: tuple[list[str], Derivation] | None = None,
                 shapes: dict[str, Any] | None = None,
                 restructure: tuple[Callable[..., Any], dict[str, Any]] | None = None,
                 refresh: Callable[..., Any] | None = None) -> None:
        self.mixed = mixed
        self.shapes = shapes
        self.restructure = restructure if restructure and restructure[1] else None
        self.lowered = lowered
        self.parsed = lowered.parsed
        self.derivation = derivation
        self.wrt = derivation.differentiated
        self.trees = {**lowered.trees, **derivation.extra_trees}
        # The signature's parameters, then the directions (tangents) some modes take.
        self.param_names = [p.name for p in self.parsed.params] + derivation.extra_params
        # No name the code assigns may hide a builtin it calls (`slice(0, 3)`, `type(a)`).
        taken = (set(self.param_names) | set(lowered.live_globals) | set(lowered.bound)
                 | set(lowered.frozen_functions) | _BUILTIN_NAMES)
        hints = {n.hint for n in lowered.graph.nodes if n.hint}
        # The generated function's name inside its factory: the user's, unless a builtin's.
        # (A lambda's `<lambda>`, not an identifier, becomes `lambda_fn`: see `identifier`.)
        ident = self.parsed.identifier
        self.local_name = (ident if ident == self.parsed.name and ident not in _BUILTIN_NAMES
                           else _fresh(f"{ident}_grad" if ident in _BUILTIN_NAMES else ident,
                                       taken | hints))
        taken.add(self.local_name)
        self.helpers: dict[str, str] = {}
        for helper in (*_TEMPLATE_MODULES, "SCALARS", "tuple_new", _NAMESPACE):
            self.helpers[helper] = _fresh(helper, taken | hints)
            taken.add(self.helpers[helper])
        # The paths' `type(a) in SCALARS` checks: the builtin, under another name if a
        # parameter is called `type`.
        self.helpers["type"] = ("type" if "type" not in self.param_names
                                else _fresh("type_of", taken | hints))
        taken.add(self.helpers["type"])
        self.containers: dict[int, str] = {}  # id of a namedtuple type -> its bound name
        for section in derivation.sections:
            if section.container is not None and id(section.container) not in self.containers:
                name = _fresh(section.label, taken | hints)
                self.containers[id(section.container)] = name
                self.helpers[name] = name
                taken.add(name)
        if self.restructure is not None:  # the guard of `_structure_guard`
            for helper in ("restructured", "STRUCTURES"):
                self.helpers[helper] = _fresh(helper, taken | hints)
                taken.add(self.helpers[helper])
        # The guard of `_freshness_guard`: each module function as it was at the first call.
        self.refresh = refresh if refresh and lowered.frozen_functions else None
        self.frozen: dict[str, str] = {}  # global name -> the name its first value is bound as
        if self.refresh is not None:
            self.helpers["refreshed"] = _fresh("refreshed", taken | hints)
            taken.add(self.helpers["refreshed"])
            for name in sorted(lowered.frozen_functions):
                self.frozen[name] = _fresh(f"{name}_at_first_call", taken | hints)
                taken.add(self.frozen[name])
        # The generated function's own name, for the array path's retry with NumPy floats.
        self.again = _fresh(f"{ident}_again", taken | hints)
        taken.add(self.again)
        self.reserved = taken  # names no statement may take
        # Node id -> the node it restates (forward mode through a region: see Derivation).
        self.restated_from = {new.id: old for old, new in derivation.restated.items()}

    # -- the module ------------------------------------------------------------------------------
    def module_text(self) -> tuple[str, str, dict[str, Any]]:
        parsed = self.parsed
        fn = parsed.fn
        bindings: dict[str, Any] = {
            self.helpers["np"]: runtime.np,
            self.helpers["math"]: __import__("math"),
            self.helpers["sg"]: runtime,
            self.helpers["SCALARS"]: runtime.SCALARS,
        }
        for section in self.derivation.sections:
            if section.container is not None:
                bindings[self.containers[id(section.container)]] = section.container
        if self.containers:  # only a namedtuple result needs it
            bindings[self.helpers["tuple_new"]] = tuple.__new__
        if self.helpers["type"] != "type":
            bindings[self.helpers["type"]] = type
        if self.refresh is not None:
            bindings[self.helpers["refreshed"]] = self.refresh
            for name, bound in self.frozen.items():
                bindings[bound] = self.lowered.frozen_functions[name]
        if self.restructure is not None:
            callback, expected = self.restructure
            bindings[self.helpers["restructured"]] = callback
            bindings[self.helpers["STRUCTURES"]] = tuple(expected.values())
        bindings.update(self.lowered.bound)
        signature, default_bindings = self._signature(fn)
        bindings.update(default_bindings)
        factory = _fresh(f"make_{parsed.identifier}", self.reserved | set(bindings)
                         | CODE_BUILTINS)
        live = sorted(self.lowered.live_globals)
        live_note = f" Module globals ({', '.join(live)}) are read when `{parsed.name}` runs." \
            if live else ""
        out = [
            f"# Generated by srcgrad from {parsed.filename}, line {parsed.lineno}.",
            f"def {factory}({', '.join(bindings)}):",
            f'    """Binds srcgrad\'s helpers into `{parsed.name}` once.{live_note}"""',
            "",
            f"    def {self.local_name}({signature}):",
            f'        """{self._summary()} of `{parsed.name}` '
            f'({_short(parsed.filename)}, line {parsed.lineno}).',
            "",
            *self._returns(),
            '        """',
            *self._freshness_guard(),
        ]
        if self.lowered.floats_only:
            condition = " and ".join(
                f"{self.helpers['type']}({p}) in {self.helpers['SCALARS']}"
                for p in self.param_names) or "True"
            out.append(f"        if {condition}:")
            out.append("            try:")
            out.append("                # Fast path: Python floats and the math module.")
            out += self._body(scalar=True, indent=" " * 16)[0]
            out.append(f"            except {_FALLBACK}:")
            out.append("                # math refused an input: redo as NumPy scalars (inf/nan)")
            for param in self.param_names:
                out.append(f"                {param} = {self.helpers['np']}.float64({param})")
        if self.mixed is not None:  # (never with a static path: that takes arrays only)
            out += self._structure_guard()
            scalars, derivation = self.mixed
            arrays = [p for p in self.param_names if p not in scalars]
            body, in_place = self._body(scalar=False, indent=" " * 16, derivation=derivation,
                                        in_place=_InPlace(scalars, arrays, self.lowered),
                                        arrays=arrays)
            condition = " and ".join(f"{self.helpers['type']}({p}) in {self.helpers['SCALARS']}"
                                     for p in scalars)
            if in_place:  # buffers are reused only when every array is float64 (see _InPlace)
                condition += f" and {self.helpers['sg']}.float64_arrays({', '.join(arrays)})"
            out.append(f"        if {condition}:")
            out.append("            try:")
            out.append(f"                # Scalar {', '.join(scalars)}, array data: factors made "
                       "of scalars are applied after the sums.")
            if in_place:
                out.append("                # Float64 data: a temporary's memory is reused (out=) "
                           "once it is not needed.")
            out += self._array_arguments(" " * 16, skip=set(scalars))
            out += body
            out.append("            except ArithmeticError:")
            out.append("                # A Python float divided by zero: redo as NumPy scalars "
                       "(inf/nan)")
            for param in scalars:
                out.append(f"                {param} = {self.helpers['np']}.float64({param})")
        known = self._static_shapes()
        if known is not None:
            shapes = tuple(self.shapes[p] for p in self.param_names)
            out.append(f"        if {self.helpers['sg']}.shaped_as({shapes!r}, "
                       f"{', '.join(self.param_names)}):")
            out.append("            # Float64 arrays shaped as at the first call: broadcasting "
                       "resolved in advance.")
            out += self._body(scalar=False, indent=" " * 12, static=known)[0]
        if self.mixed is None:  # (shaped_as above has checked the structure)
            out += self._structure_guard()
        out.append("        # Array path: NumPy ufuncs with broadcasting.")
        out.append("        try:")
        out += self._array_arguments(" " * 12)
        out += self._body(scalar=False, indent=" " * 12, arrays=self.param_names)[0]
        out += self._retry()
        out.append("")
        out.append(f"    {self.again} = {self.local_name}")
        out.append(f"    return {self.local_name}")
        hidden = shadowed_builtins(parsed, bindings, self.param_names, "\n".join(out[2:]))
        if hidden:  # the factory takes them too
            bindings.update(hidden)
            out[1] = f"def {factory}({', '.join(bindings)}):"
        return "\n".join(out) + "\n", factory, bindings

    def _freshness_guard(self) -> list[str]:
        """A call after one of the module's functions this code inlined or calls was redefined
        (a notebook cell run again) goes to a transform built from the new definition."""
        if self.refresh is None:
            return []
        changed = " or ".join(f"{name} is not {bound}" for name, bound in self.frozen.items())
        return [f"        if {changed}:",
                f"            # {', '.join(self.frozen)} redefined since the first call: built "
                "again",
                f"            return {self.helpers['refreshed']}"
                f"({', '.join(self._call_arguments())})"]

    def _structure_guard(self) -> list[str]:
        """A call whose tuples, lists or dicts of arrays are not shaped as at the first call
        (another length, other keys) goes to a transform of its own."""
        if self.restructure is None:
            return []
        structured = list(self.restructure[1])
        call = self._call_arguments()
        return [f"        if {self.helpers['sg']}.structures({', '.join(structured)}) != "
                f"{self.helpers['STRUCTURES']}:",
                f"            # {', '.join(structured)}: another structure than at the first "
                "call, another transform",
                f"            return {self.helpers['restructured']}({', '.join(call)})"]

    def _call_arguments(self, wrap: str = "") -> list[str]:
        """The parameters passed on as the signature takes them (positionally, or by keyword),
        each as ``wrap(p)`` if given."""
        positional = [p.name for p in self.parsed.params if p.kind == "positional"]
        value = (lambda p: f"{wrap}({p})") if wrap else (lambda p: p)
        return [value(p) for p in positional] + [
            f"{p}={value(p)}" for p in self.param_names if p not in positional]

    def _retry(self) -> list[str]:
        """The array path's ``except``: Python arithmetic on a float parameter raised (division
        by zero, overflow); the call is redone with the Python floats made NumPy floats, which
        give inf and nan as NumPy does (kept otherwise: a Python float keeps float32 arrays
        float32)."""
        sg = self.helpers["sg"]
        names = ", ".join(self.param_names)
        call = self._call_arguments(f"{sg}.numpy_float")
        return ["        except ArithmeticError:",
                "            # A Python float divided by zero: redo with NumPy floats (inf/nan)",
                f"            if not {sg}.any_float({names}):",
                "                raise",
                f"            return {self.again}({', '.join(call)})"]

    def _static_shapes(self) -> dict[int, static.Static] | None:
        """Every node's `static.Static`, given the first call's shapes, or None: no path
        specialised to them (not all arrays, or loops and branches, which it does not cover)."""
        if self.shapes is None or set(self.shapes) != set(self.param_names) or any(
                n.op in REGIONS for n in self.lowered.graph.nodes):
            return None
        leaves: dict[int, tuple[int, ...]] = {}

        def flat(shape: Any, tree: Any) -> None:
            shapes = shape.values() if isinstance(shape, dict) else shape  # first call's order
            for child_shape, child in zip(shapes, tree.children, strict=True):
                if isinstance(child, Node):
                    leaves[child.id] = child_shape
                else:
                    flat(child_shape, child)

        for name in self.param_names:
            if name in self.trees:
                flat(self.shapes[name], self.trees[name])
            else:
                leaves[self.lowered.params[name].id] = self.shapes[name]
        return static.infer(self.lowered.graph.nodes, leaves)

    def _namespace_lines(self, indent: str, arrays: Sequence[str]) -> list[str]:
        """``xp = sg.namespace(x, y)``: what an array path calls NumPy's functions on.

        NumPy itself for NumPy arrays and for arrays NumPy dispatches (Dask, CuPy), else the
        arrays' own array-API namespace under NumPy's names, so that the templates of
        `srcgrad.rules`, written as NumPy calls, serve every array library. A name of its own
        rather than a local ``np``: the float path's fallback still needs the module.
        """
        return [f"{indent}# NumPy, or the array-API namespace of arrays NumPy cannot take",
                f"{indent}{self.helpers[_NAMESPACE]} = {self.helpers['sg']}.namespace("
                f"{', '.join(arrays)})"]

    def _array_arguments(self, indent: str, skip: set[str] = frozenset()) -> list[str]:
        """Check (and convert lists) for the array path: `x = sg.as_array(x, ...)`."""
        lines = []
        for param in self.param_names:
            if param in self.trees or param in skip:
                continue  # a tuple/list/dict of arrays: its elements are used as they are
            differentiated = param in self.wrt
            lines.append(f"{indent}{param} = {self.helpers['sg']}.as_array({param}, {param!r}, "
                         f"{self.parsed.name!r}, {differentiated})")
        return lines

    def _signature(self, fn: Any) -> tuple[str, dict[str, Any]]:
        bindings: dict[str, Any] = {}
        defaults = list(getattr(fn, "__defaults__", None) or ())
        kwdefaults = dict(getattr(fn, "__kwdefaults__", None) or {})
        positional = [p for p in self.parsed.params if p.kind == "positional"]
        keyword_only = [p for p in self.parsed.params if p.kind == "keyword"]
        first_default = len(positional) - len(defaults)
        parts = []

        def render(name: str, value: Any) -> str:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return f"{name}={ast.unparse(_literal(value))}"
            bound = _fresh(f"{name}_default", self.reserved | set(bindings))
            bindings[bound] = value
            return f"{name}={bound}"

        for i, param in enumerate(positional):
            parts.append(render(param.name, defaults[i - first_default])
                         if i >= first_default else param.name)
        if keyword_only or self.derivation.extra_params:
            parts.append("*")
            for param in keyword_only:
                parts.append(render(param.name, kwdefaults[param.name])
                             if param.name in kwdefaults else param.name)
            parts += self.derivation.extra_params  # directions, always passed by keyword
        return ", ".join(parts), bindings

    def _summary(self) -> str:
        likes = {section.like for section in self.derivation.sections}
        if likes == {"value"}:
            return "Value and directional derivative"
        if "rows" in likes:
            return "Value, gradient and Hessian"
        if len(self.derivation.sections) > 1:
            return "Value, gradient and Hessian-vector product"
        return "Value and gradient"

    def _returns(self) -> list[str]:
        """The docstring lines that say what the function returns."""
        shown = ["value"]
        for section in self.derivation.sections:
            names = ", ".join(name for name, _ in section.fields)
            if section.like == "rows":
                shown.append(f"H with H[i][j] = d2 value / (d p_i d p_j), p = ({names})")
            elif section.container is not None:
                shown.append(f"{self.containers[id(section.container)]}({names})")
            elif section.like == "param":  # `wrt="a"`: the one gradient itself
                shown.append(f"d_{names}")
            else:
                shown.append(names)
        lines = [f"        Returns ({', '.join(shown)})."]
        if self.derivation.adjoint_of:
            lines += ["        d_<name> is the derivative of the value (summed over its elements,",
                      "        for an array) with respect to <name>."]
        if self.derivation.tangent_names:
            lines += ["        d<name>_d<p> and <name>_d_<p> are derivatives of <name> with "
                      "respect to <p>."]
        elif self.derivation.tangent_of:
            lines += ["        <name>_dot is the derivative of <name> along the direction given."]
        return lines

    # -- one path ----------------------------------------------------------------------------------
    def _body(self, *, scalar: bool, indent: str, derivation: Derivation | None = None,
              in_place: _InPlace | None = None, arrays: Sequence[str] = (),
              static: dict[int, static.Static] | None = None) -> tuple[list[str], bool]:
        """The lines of one path, and whether any of them writes into a dying temporary.

        An array path that calls a NumPy function starts by binding the namespace of
        ``arrays``; one that is operators and ``sg.`` helpers only does without.
        """
        path = _Path(self, scalar, derivation or self.derivation, static=static)
        pairs = path.emit()
        statements = [stmt for _, stmt in pairs]
        result = ast.Return(path.result())
        # On arrays, free each temporary after its last use: fewer live arrays means a lower
        # peak and memory the allocator can reuse instead of faulting in fresh pages.
        frees = {} if scalar else _last_uses(statements, result, self._locals(path))
        if in_place is not None and in_place.possible:
            # Second pass: a statement may write into a temporary that dies there. That path
            # runs on float64 NumPy arrays only (`sg.float64_arrays`), so it calls NumPy.
            path.in_place = in_place.prepare(path, frees, statements)
            path.numpy = self.helpers["np"]
            first = pairs, statements, result, frees
            pairs = path.emit()
            statements = [stmt for _, stmt in pairs]
            result = ast.Return(path.result())
            frees = _last_uses(statements, result, self._locals(path))
            if not in_place.used:  # nothing written in place: the namespace's code
                pairs, statements, result, frees = first
                path.in_place = None
        nodes = [node for node, _ in pairs]
        lines: list[str] = []
        if not scalar and any(n.id == self.helpers[_NAMESPACE]
                              for stmt in (*statements, result) for n in _names(stmt)):
            lines += self._namespace_lines(indent, arrays)  # (in place, it calls NumPy)
        last_comment = None
        for index, (node, stmt) in enumerate(zip(nodes, statements, strict=True)):
            comment = self._comment(node)
            if comment and comment != last_comment:
                lines.append(f"{indent}# {comment}")
                last_comment = comment
            lines.append(textwrap.indent(ast.unparse(stmt), indent))
            if frees.get(index):
                lines.append(f"{indent}del {', '.join(frees[index])}")
        lines.append(indent + ast.unparse(result))
        return lines, bool(path.in_place and path.in_place.used)

    def _locals(self, path: _Path) -> set[str]:
        """Names the path's statements assign (never parameters, globals or bindings)."""
        assigned = set()
        for node in path.statements:
            if node.op != PARAM:
                assigned.add(path.names[node.id])
        for item in path.items.values():
            assigned.add(path.names[item.id])
        return assigned - set(self.param_names) - self.reserved

    def _comment(self, node: Node) -> str | None:
        if node.lineno is None or node.op == PARAM:
            return None
        text = self.parsed.source_lines.get(node.lineno, "").strip()
        phase = None
        node_id = self.restated_from.get(node.id, node.id)  # a value forward mode restated
        for first_id, word in self.derivation.phases:
            if node_id >= first_id:
                phase = word
        if phase:
            return f"line {node.lineno}, {phase}: {text}"
        return f"line {node.lineno}: {text}"


_FALLBACK = "(ArithmeticError, ValueError)"
_BUILTIN_NAMES = frozenset(dir(builtins))
_NAMESPACE = "xp"  # the array paths' name for NumPy or the arrays' namespace (_namespace_lines)
_SHAPE_ARGS = {"sum_to": (1, 2), "sum_product": (2, 3), "expand_to": (1,),  # shape-only args
               "reduce_to": (1,)}
_INFIX = {"add": "plus", "sub": "minus", "mul": "times", "div": "over", "pow": "pow"}


def _names(tree: ast.AST) -> list[ast.Name]:
    """The `ast.Name` nodes in ``tree``: what `ast.walk` finds, in a third of its time (the
    generated statements are walked three times a path, a tenth of the first call's cost)."""
    found = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if type(node) is ast.Name:
            found.append(node)
            continue
        for attribute in node._fields:
            value = getattr(node, attribute, None)
            if isinstance(value, ast.AST):
                stack.append(value)
            elif type(value) is list:
                stack.extend(item for item in value if isinstance(item, ast.AST))
    return found


def _last_uses(statements: list[ast.stmt], result: ast.stmt, deletable: set[str]
               ) -> dict[int, list[str]]:
    """For each statement index, the deletable names last read there (not read by ``result``)."""
    last: dict[str, int] = {}
    for index, stmt in enumerate(statements):
        for node in _names(stmt.value if isinstance(stmt, ast.Assign) else stmt):
            if node.id in deletable:
                last[node.id] = index
    returned = {n.id for n in _names(result)}
    frees: dict[int, list[str]] = {}
    for name, index in last.items():
        if name not in returned:
            frees.setdefault(index, []).append(name)
    return {index: sorted(names) for index, names in frees.items()}


def _variadic_template(op: str, callee: str, count: int) -> str:
    """Templates of calls whose argument count varies: concatenate, stack, einsum, helpers."""
    if op in ("concatenate", "stack"):  # args: axis, *arrays
        arrays = ", ".join(f"_{i}" for i in range(1, count))
        return f"{callee}(({arrays}{',' if count == 2 else ''}), axis=_0)"
    return f"{callee}({', '.join(f'_{i}' for i in range(count))})"


# Ops whose value may be their first argument's memory: NumPy views (a reshape, a transpose, a
# basic slice, and their adjoints), and helpers that return their argument when the shapes
# already agree.
_MAY_VIEW = frozenset({"sum_to", "expand_to", "alias", "reshape", "transpose", "squeeze",
                       "ravel", "expand_dims", "getitem", "reshape_backward",
                       "transpose_backward"})


def _may_alias_input(node: Node) -> bool:
    """Whether ``node``'s value may be an array the caller owns (an input, or a user's result),
    or a view of one: the gradient with respect to ``b`` of ``a.reshape(3) * b`` is a view of
    ``a``, which an optimizer's ``a -= lr * d_a`` would change under the caller's feet."""
    if node.op == "sum_product":
        return False  # always a new array or a scalar
    while node.op in _MAY_VIEW:
        node = node.args[0]
    return node.op in (PARAM, GLOBAL, BOUND, "call", "item")




def _region_name(op: str, body: Any, k: int, hint: str | None = None) -> str:
    """`x` for a loop's final x, `d_x` / `d_w_loop` for what its backward loop gives;
    `x` after an `if`, `d_w_if` for what the backward `if` gives."""
    if op == "branch_output":
        return hint or body.names[k]
    if op == "branch_adjoint":
        return f"d_{body.inputs[0][k].value}_if"
    if op == "loop_output":
        return hint or body.carried[k].value
    names = [p.value for p in (*body.carried, *body.invariants)]
    return f"d_{names[k]}" if k < len(body.carried) else f"d_{names[k]}_loop"


def _adjoint_names(backward: Any, adjoint_of: dict[int, Node], graph_index: int
                   ) -> Derivation:
    """How the adjoints in a backward region are named (``d_x``), and their tangents
    (``d_x_dot``) when forward mode over reverse made it."""
    tangent_of = backward.tangent_of[graph_index] if backward.tangent_of else {}
    return Derivation([], adjoint_of=adjoint_of, tangent_of=tangent_of,
                      tangent_names=dict.fromkeys(tangent_of, backward.pattern))


def _tangent_names(body: Any, graph_index: int) -> Derivation:
    """How the tangents in a region forward mode made are named (``x_dot``): nothing to
    return, only names, for body graph ``graph_index`` (a loop has one, an `if` two)."""
    made = body.forward
    if made is None:
        return Derivation([])
    tangent_of = made.tangent_of[graph_index]
    return Derivation([], tangent_of=tangent_of,
                      tangent_names=dict.fromkeys(tangent_of, made.pattern))


def _rebind(names: list[str], values: list[ast.expr]) -> ast.stmt:
    """``x = new_x``, or ``x, v = new_x, new_v`` (all new values computed before any rebinds)."""
    if len(names) == 1:
        return ast.Assign([ast.Name(names[0], ast.Store())], values[0], lineno=0)
    return ast.Assign([ast.Tuple([ast.Name(n, ast.Store()) for n in names], ast.Store())],
                      ast.Tuple(values, ast.Load()), lineno=0)


def _fresh(base: str, taken: set[str]) -> str:
    name, n = base, 1
    while name in taken or keyword.iskeyword(name):
        n += 1
        name = f"{base}_{n}"
    return name


def _short(filename: str) -> str:
    return filename.replace("\\", "/").rsplit("/", 1)[-1]


# Elementwise operations that can write their result into an argument's memory (`out=`).
_UFUNCS = {"add": "add", "sub": "subtract", "mul": "multiply", "div": "divide",
           "neg": "negative", "pow": "power", "exp": "exp", "log": "log", "sin": "sin",
           "cos": "cos", "tan": "tan", "tanh": "tanh", "sinh": "sinh", "cosh": "cosh",
           "sqrt": "sqrt", "square": "square", "abs": "absolute", "expm1": "expm1",
           "log1p": "log1p", "arctan": "arctan"}
_MATMUL_BACKWARD = frozenset({"matmul_backward_a", "matmul_backward_b", "dot_backward_a",
                              "dot_backward_b"})
# Operations that read an array without keeping a view of it.
_READERS = frozenset({*_UFUNCS, "sum", "mean", "max", "min", "prod", "sum_product", "matmul",
                      "dot", "norm"})
_FLOAT64_REDUCTIONS = frozenset({"sum", "mean", "max", "min", "sum_product", "sum_to"})


class _InPlace:
    """Which temporaries a path may overwrite, and where it did.

    A statement may write its result into the memory of an argument that (1) an elementwise
    operation of this function made, so it is a fresh array no caller sees; (2) is read for the
    last time by that statement, and only once in it; (3) was never viewed (indexed, reshaped,
    passed through ``sum_to``, which may return it); (4) has the result's shape, by shape
    classes. Dtypes are the fourth risk: the path using this is taken only when every array
    argument is a float64 array of at least one dimension (`runtime.float64_arrays`) and the
    scalars are Python numbers, so every operand written over is float64 and stays float64.
    """

    def __init__(self, scalars: list[str], arrays: list[str], lowered: Lowered) -> None:
        self.scalars = set(scalars)
        self.arrays = set(arrays)
        self.possible = bool(arrays) and not lowered.trees and not any(
            n.op in ("loop", "branch") for n in lowered.graph.nodes)  # regions: keep it simple
        self.used = False

    def prepare(self, path: _Path, frees: dict[int, list[str]], statements: list[ast.stmt]
                ) -> _InPlace:
        from collections import Counter

        from .shapes import ShapeClasses

        self.dying = {i: set(names) for i, names in frees.items()}
        self.reads = [Counter(n.id for n in _names(s) if isinstance(n.ctx, ast.Load))
                      for s in statements]
        graph = path.emitter.lowered.graph  # `param` finds the existing leaf, directions too
        self.shapes = ShapeClasses(frozenset(graph.param(p).id for p in self.scalars))
        self.array_ids = frozenset(graph.param(p).id for p in self.arrays)
        order, _ = path._walk([path.resolve(path.output)]
                              + [path.resolve(g) for g in path.derivation.roots()])
        self.viewed = {arg.id for node in order
                       for position, arg in enumerate(path.args_of(node))
                       if node.op not in _READERS
                       and position not in _SHAPE_ARGS.get(node.op, ())}  # shapes only
        self.buffers: dict[int, str] = {}  # node id -> the buffer its value was written into
        self._exact: dict[int, bool] = {}
        self._array: dict[int, bool] = {}
        return self

    def float64(self, path: _Path, node: Node) -> bool:
        """Whether ``node`` is a float64 array or a Python number on this path."""
        known = self._exact.get(node.id)
        if known is None:
            if node.op == PARAM:
                known = node.value in self.arrays or node.value in self.scalars
            elif node.op == CONST:
                known = type(node.value) in (int, float, np.float64)
            elif node.op in _UFUNCS and not node.attrs:
                known = all(self.float64(path, a) for a in path.args_of(node))
            elif node.op in _FLOAT64_REDUCTIONS:
                known = all(self.float64(path, a) for a in path.args_of(node)[:2]
                            if not a.is_const)
            else:
                known = False
            self._exact[node.id] = known
        return known

    def array(self, path: _Path, node: Node) -> bool:
        """Whether ``node`` is surely an array: an array parameter, or elementwise of one. (Not
        through ``sum_to`` and the like: ``sum_to(1.0, ...)`` may stay the number 1.0.)"""
        known = self._array.get(node.id)
        if known is None:
            known = node.value in self.arrays if node.op == PARAM else (
                node.op in _UFUNCS and not node.attrs
                and any(self.array(path, a) for a in path.args_of(node)))
            self._array[node.id] = known
        return known

    def rewrite(self, path: _Path, node: Node, args: list[ast.expr]) -> ast.expr | None:
        """``np.<ufunc>(*args, out=<dying temporary>)``, or None to compute as usual."""
        ufunc = _UFUNCS.get(node.op)
        if ufunc is None or node.attrs or not self.float64(path, node):
            return None
        statement = path.current_statement
        operands = path.args_of(node)
        for position, arg in enumerate(operands):
            buffer = self.buffers.get(arg.id)
            name = path.names.get(arg.id)
            if buffer is None and name is not None and (
                    name in self.dying.get(statement, ()) and self.reads[statement][name] == 1
                    and arg.op in _UFUNCS and arg.id not in self.viewed
                    and self.shapes.of(arg) & self.array_ids and self.array(path, arg)):
                buffer = name
            if buffer is None:
                continue
            out: ast.expr = ast.Name(buffer, ast.Load())
            if not self.shapes.of(node) <= self.shapes.of(arg):
                # The result may be bigger than the buffer (`a - y`, y another array): reuse
                # it only if, at run time, the other operands fit in it.
                others = [args[i] for i in range(len(args)) if i != position]
                if arg.id in self.buffers or not all(
                        isinstance(o, (ast.Name, ast.Constant)) for o in others):
                    continue
                sg = ast.Name(path.helpers["sg"], ast.Load())
                out = ast.Call(ast.Attribute(sg, "fits", ast.Load()), [out, *others], [])
            else:
                self.buffers[node.id] = buffer
            self.dying.setdefault(statement, set()).discard(buffer)  # one writer per buffer
            self.used = True
            if ufunc == "power" and path.resolve(node.args[1]).is_const and path.resolve(
                    node.args[1]).value == 2:
                ufunc, args = "square", args[:1]
            call = ast.Attribute(ast.Name(path.helpers["np"], ast.Load()), ufunc, ast.Load())
            return ast.Call(call, args, [ast.keyword("out", out)])
        return None


@dataclass
class _LoopScope:
    """What a loop body's path needs from the path around it."""

    graph: Any  # the body's graph (`graph.LoopBody.graph`)
    roots: list[Node]
    param_names: dict[int, str]  # body parameters -> the names the enclosing code uses
    taken: set[str]  # names the enclosing path uses: the body must not reuse them


class _Path:
    """The statements of one path (float or array) over the shared graph."""

    static: dict[int, static.Static] | None = None

    def __init__(self, emitter: _Emitter, scalar: bool, derivation: Derivation, *,
                 body: _LoopScope | None = None,
                 static: dict[int, static.Static] | None = None) -> None:
        # On a path specialised to the first call's shapes: every node's (see srcgrad.static).
        self.static = static
        self.emitter = emitter
        self.scalar = scalar
        self.in_place: _InPlace | None = None
        self.current_statement = 0
        self.helpers = emitter.helpers
        # What the templates' `np.` calls go through: the module on floats, the namespace of
        # the arguments (`_namespace_lines`) on arrays. A loop body inherits it by its path.
        self.numpy = emitter.helpers["np" if scalar or static else _NAMESPACE]
        lowered = emitter.lowered
        self.derivation = derivation
        # A loop body is a path of its own over the body's graph, inside the enclosing path.
        self.graph = body.graph if body else lowered.graph
        self.output = None if body else (derivation.value or lowered.output)
        self.tapes: dict[int, list[str]] = {}  # loop body id -> its carried values' tapes
        roots = ([self.resolve(r) for r in body.roots] if body else
                 [self.resolve(self.output)] + [self.resolve(g) for g in derivation.roots()])
        order, uses = self._walk(roots)
        self.names: dict[int, str] = {}
        taken = set(body.taken) if body else set(emitter.reserved)
        self.taken = taken
        nodes = self.graph.nodes
        # On this path: derived node id -> (the node it derives from, name pattern).
        self.derived: dict[int, tuple[Node, str]] = {}
        for table, pattern in ((derivation.adjoint_of, "d_{}"), (derivation.tangent_of, "{}_dot")):
            for derived_id, forward in table.items():
                own = derivation.tangent_names.get(derived_id, pattern)
                self.derived.setdefault(self.resolve(nodes[derived_id]).id, (forward, own))
        # Arguments used only for their shape (by sum_to, expand_to) are read once, as
        # `<name>_shape`, right after they are computed, so the array can be freed early.
        self.shape_refs: list[int] = []
        for node in order:
            for position in () if self.scalar else _SHAPE_ARGS.get(node.op, ()):
                arg = self.resolve(node.args[position])
                if not arg.is_const and arg.id not in self.shape_refs and (
                        self.shape(arg) is None):
                    self.shape_refs.append(arg.id)
        need_name = self._needs_names(order, uses, roots) | {
            i for i in self.shape_refs if not nodes[i].is_leaf}
        self._counter = 0
        self.statements: list[Node] = []
        unpacked = {n.args[0].id for n in order if n.op == "item" and n.attrs[1] is not None}
        for node in order:
            if node.op == PARAM and body and node.id in body.param_names:
                self.names[node.id] = body.param_names[node.id]
            elif node.op == PARAM or node.op == GLOBAL:
                self.names[node.id] = node.value
                if node.id in unpacked:  # `W1, b1 = params`
                    self.statements.append(node)
            elif node.op in REGION_VALUES:  # assigned by their loop or `if`
                self.names[node.id] = _fresh(self._loop_value_name(node), taken)
                taken.add(self.names[node.id])
            elif node.op in REGIONS:
                self.names[node.id] = _fresh("region", taken)  # a statement, never a value
                taken.add(self.names[node.id])
                self.statements.append(node)
            elif node.op == BOUND:
                self.names[node.id] = node.hint
            elif node.op == CONST:
                continue
            elif node.op == "item" and node.attrs[1] is not None:
                parent = self.names.get(node.args[0].id, "partials")
                self.names[node.id] = _fresh(node.hint or f"{parent}_{node.attrs[0]}", taken)
                taken.add(self.names[node.id])
                if node.id in unpacked:
                    self.statements.append(node)
            elif node.id in need_name or node.op == "item":
                self.names[node.id] = _fresh(self._suggest(node, order), taken)
                taken.add(self.names[node.id])
                self.statements.append(node)
        self.items = {n.id: n for n in order if n.op == "item" and n.attrs[1] is not None}
        self.shape_names: dict[int, str] = {}
        for node_id in self.shape_refs:
            self.shape_names[node_id] = _fresh(f"{self.names[node_id]}_shape", taken)
            taken.add(self.shape_names[node_id])

    def _loop_value_name(self, node: Node) -> str:
        return _region_name(node.op, node.args[0].attrs[0], node.attrs[0], node.hint)

    # -- structure -------------------------------------------------------------------------------
    def resolve(self, node: Node) -> Node:
        """The node that computes ``node`` on this path (``sum_to`` is the identity on floats,
        and with static shapes wherever the shapes agree)."""
        while node.op == "alias" or (self.scalar and node.op in ("sum_to", "expand_to",
                                                                   "reduce_to")) or (
                self.static is not None and self._static_identity(node)):
            node = node.args[0]
        return node

    def shape(self, node: Node) -> tuple[int, ...] | None:
        """``node``'s shape where it is known when the code is generated (static shapes)."""
        if self.static is None:
            return None
        return self.static.get(node.id, static.UNKNOWN).shape

    def _static_identity(self, node: Node) -> bool:
        """Whether ``sum_to``/``expand_to`` returns its argument as it is, by static shapes."""
        if node.op == "sum_to":
            shape = self.shape(node.args[1])
            return shape is not None and shape == self.shape(node.args[2])
        if node.op == "expand_to":
            shape = self.shape(node.args[0])
            return shape is not None and shape == self.shape(node.args[1])
        return False

    def _f64_array(self, node: Node) -> bool:
        """Whether ``node`` is a float64 NumPy array (of at least one dimension), statically."""
        known = self.static.get(node.id, static.UNKNOWN) if self.static else static.UNKNOWN
        return known.kind == "f64" and bool(known.shape)

    def _static_compute(self, node: Node, args: list[ast.expr]) -> ast.expr | None:
        """What a helper comes to with the shapes known: ``v.sum(axis=0)`` for a bias's
        ``sum_to``, ``g @ b.T`` for a matmul adjoint, ``x.sum() / n`` for a mean (NumPy's
        mean is that sum divided by the count: the same bits); None to call it as usual."""
        op = node.op
        shapes = [self.shape(a) for a in node.args]

        def method(value: ast.expr, name: str, axes: tuple[int, ...] | None) -> ast.expr:
            keywords = [] if axes is None else [ast.keyword("axis", ast.Constant(
                axes[0] if len(axes) == 1 else axes))]
            return ast.Call(ast.Attribute(value, name, ast.Load()), [], keywords)

        def leading(v: tuple[int, ...], x: tuple[int, ...], n: tuple[int, ...]
                    ) -> tuple[int, ...] | None:
            lead = len(n) - len(x)
            return tuple(range(lead)) if lead > 0 and v == n and n[lead:] == x else None

        if op == "sum_to" and None not in shapes[:3]:
            axes = leading(*shapes[:3])
            if axes is not None and self._f64_array(node.args[0]):
                return method(args[0], "sum", axes)
        elif op == "sum_product" and None not in shapes[:4]:
            a, b, x, n = shapes[:4]
            arrays = self._f64_array(node.args[0]) and self._f64_array(node.args[1])
            product = ast.BinOp(args[0], ast.Mult(), args[1])
            if x == () and a == b == n and arrays:
                np_name = ast.Name(self.helpers["np"], ast.Load())
                return ast.Call(ast.Attribute(np_name, "vdot", ast.Load()), args[:2], [])
            if x == n:
                return product
            axes = leading(static.broadcast(a, b), x, n)
            if axes is not None and (self._f64_array(node.args[0])
                                     or self._f64_array(node.args[1])):
                return method(product, "sum", axes)
        elif op in _MATMUL_BACKWARD and (
                len(shapes[1] or ()) == len(shapes[2] or ()) == 2):
            g, a, b = args
            if op in ("matmul_backward_a", "dot_backward_a"):
                return ast.BinOp(g, ast.MatMult(), ast.Attribute(b, "T", ast.Load()))
            return ast.BinOp(ast.Attribute(a, "T", ast.Load()), ast.MatMult(), g)
        elif op == "mean_backward" and shapes[1] is not None:
            g, _, axis, keep = self.args_of(node)
            if axis.is_const and axis.value is None and keep.is_const and keep.value is False:
                size = int(np.prod(shapes[1]))
                if g.is_const and type(g.value) in (int, float):
                    return _literal(g.value / size)
                return ast.BinOp(args[0], ast.Div(), ast.Constant(size))
        elif op in ("mean", "sum") and self._f64_array(node.args[0]):
            _, axis, keep = self.args_of(node)
            if axis.is_const and axis.value is None and keep.is_const and keep.value is False:
                total = method(args[0], "sum", None)
                if op == "sum":
                    return total
                return ast.BinOp(total, ast.Div(), ast.Constant(int(np.prod(shapes[0]))))
        return None

    def args_of(self, node: Node) -> tuple[Node, ...]:
        if self.scalar and node.op == "sum_product":  # on floats, just the product
            return tuple(self.resolve(a) for a in node.args[:2])
        return tuple(self.resolve(a) for a in node.args)

    def _walk(self, roots: list[Node]) -> tuple[list[Node], dict[int, int]]:
        seen: dict[int, Node] = {}
        uses: dict[int, int] = {}
        stack = list(roots)
        while stack:
            node = stack.pop()
            if node.id in seen:
                continue
            seen[node.id] = node
            for arg in self.args_of(node):
                uses[arg.id] = uses.get(arg.id, 0) + 1
                stack.append(arg)
        return sorted(seen.values(), key=lambda n: n.id), uses

    def _needs_names(self, order: list[Node], uses: dict[int, int], roots: list[Node]) -> set[int]:
        names = self.derived
        need = {r.id for r in roots}
        for node in order:
            if node.op in ("loop", "loop_backward"):  # read by name inside the loop
                need.update(a.id for a in self.args_of(node)[4 if node.op == "loop_backward"
                                                            else 3:] if not a.is_leaf)
            if node.op in ("branch", "branch_backward"):  # the condition, and what it reads
                need.update(a.id for a in self.args_of(node) if not a.is_leaf)
            if node.is_leaf or node.op == "item":
                continue
            if node.hint or node.id in names or uses.get(node.id, 0) > 1 or node.op in (
                    "call", "sum_to", "sum_product", "reduce_to"):
                need.add(node.id)
            template = self._template_text(node)
            if template:
                _, counts = _template(template)
                for position, arg in enumerate(self.args_of(node)):
                    if counts.get(f"_{position}", 0) > 1 and not arg.is_leaf:
                        need.add(arg.id)  # a template that repeats an argument needs a name
        return need

    def _suggest(self, node: Node, order: list[Node]) -> str:
        if node.hint:
            return node.hint
        if self.output is not None and node is self.resolve(self.output):
            return "value"
        derived = self.derived.get(node.id)
        if derived is not None:
            forward, pattern = derived
            forward = self.resolve(forward)  # the adjoint of `alias(x)` is named after x
            return pattern.format(self.names.get(forward.id) or self._describe(forward))
        return self._describe(node)

    def _describe(self, node: Node) -> str:
        """A short name saying what ``node`` computes (``a_times_5``, ``cos_t``), else ``tN``."""
        if node.hint:
            return node.hint
        if node.op == "call":
            user = node.attrs[0]
            return f"{user.name}_value" if user.derivative else f"{user.name}_partials"
        words = [self._word(a) for a in self.args_of(node)]
        if node.op in ("add", "mul") and len(words) == 2 and words[0] and words[0][0].isdigit():
            words.reverse()  # `a_times_5`, not `5_times_a`
        name = None
        if None not in words:
            if node.op in _INFIX and len(words) == 2:
                if node.op == "pow" and words[1] == "2":
                    name = f"{words[0]}_sq"
                else:
                    name = f"{words[0]}_{_INFIX[node.op]}_{words[1]}"
            elif len(words) == 1:
                name = f"{node.op}_{words[0]}"
        if name and name[0].isalpha() and len(name) <= 24:
            return name
        self._counter += 1
        return f"t{self._counter}"

    def _word(self, node: Node) -> str | None:
        if node.op == CONST:
            value = node.value
            if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
                return str(int(value)).replace("-", "minus")
            return None
        return self.names.get(node.id)

    def _template_text(self, node: Node) -> str | None:
        if node.op in ("call", "item") or node.is_leaf:
            return None
        primitive = rules.PRIMITIVES[node.op]
        if not self.scalar and node.attrs == (rules.PYTHON_SPELLING,):
            arguments = ", ".join(f"_{i}" for i in range(len(node.args)))
            return f"sg.{rules.LIFTED[node.op]}({arguments})"
        text = primitive.scalar_template(self.args_of(node)) if self.scalar else primitive.array
        if text == "<attrs>":  # indexing and pass-through calls carry their own template
            return node.attrs[0]
        if text.endswith("(*)"):  # a variable number of arguments
            return _variadic_template(node.op, text[:-3], len(node.args))
        return text

    # -- expressions -----------------------------------------------------------------------------
    def expr(self, node: Node) -> ast.expr:
        """``node`` as an expression: its name if it has one, else inlined."""
        node = self.resolve(node)
        if node.op == CONST:
            if isinstance(node.value, np.generic):  # a NumPy scalar keeps its type: np.float64(.5)
                numpy_type = ast.Attribute(ast.Name(self.helpers["np"], ast.Load()),
                                           type(node.value).__name__, ast.Load())
                return ast.Call(numpy_type, [_literal(node.value.item())], [])
            return _literal(node.value)
        name = self.names.get(node.id)
        if name is not None:
            return ast.Name(name, ast.Load())
        return self.compute(node)

    def compute(self, node: Node) -> ast.expr:
        """The expression that computes ``node`` from its arguments."""
        if self.scalar and node.op in ("mul", "neg", "add", "sub") and all(
                a.is_const and type(a.value) in (int, float) for a in self.args_of(node)):
            # `200.0 * sum_to(1.0, ...)` is a constant on floats: print it folded.
            return _literal(float(rules.PRIMITIVES[node.op].fold(
                *(a.value for a in self.args_of(node)))))
        if self.scalar and node.op == "mul":  # `sum_to(1.0, ...) * x` is `x` on floats
            left, right = self.args_of(node)
            for one, other in ((left, right), (right, left)):
                if one.op == CONST and one.value == 1 and not other.is_const:
                    return self.expr(other)
        if not self.scalar and node.op == "sum":  # np.sum(v ** 2) as a dot product
            x, axis, keep = self.args_of(node)
            square = (x.op == "pow" and self.resolve(x.args[1]).is_const
                      and self.resolve(x.args[1]).value == 2) or (
                x.op == "mul" and self.resolve(x.args[0]) is self.resolve(x.args[1]))
            if (square and x.id not in self.names and axis.is_const and axis.value is None
                    and keep.is_const and keep.value is False):
                sg = ast.Name(self.helpers["sg"], ast.Load())
                return ast.Call(ast.Attribute(sg, "sum_squares", ast.Load()),
                                [self.expr(x.args[0])], [])
        args = [self.expr(a) for a in self.args_of(node)]
        if self.in_place is not None:
            rewritten = self.in_place.rewrite(self, node, args)
            if rewritten is not None:
                return rewritten
        for position in () if self.scalar else _SHAPE_ARGS.get(node.op, ()):
            arg = self.resolve(node.args[position])
            shape = self.shape(arg)
            args[position] = (ast.Tuple([], ast.Load()) if arg.is_const
                              else ast.Constant(shape) if shape is not None
                              else ast.Name(self.shape_names[arg.id], ast.Load()))
        if self.static is not None:
            specialised = self._static_compute(node, args)
            if specialised is not None:
                return specialised
        if node.op == "item":  # an element of a dict parameter: `params["W"]`
            return ast.Subscript(args[0], ast.Constant(node.attrs[0]), ast.Load())
        if node.op == "call":
            return ast.Call(ast.Name(node.attrs[0].name, ast.Load()), args, [])
        template, _ = _template(self._template_text(node))
        modules = {m: self.helpers[m] for m in _TEMPLATE_MODULES}
        modules["np"] = self.numpy
        expr = _instantiate(template, args, modules)
        primitive = rules.PRIMITIVES[node.op]
        if isinstance(expr, ast.Call) and primitive.signature:  # drop `axis=None` and the like
            defaults = {p.name: p.default for p in primitive.signature}
            expr.keywords = [k for k in expr.keywords if not (
                isinstance(k.value, ast.Constant) and k.arg in defaults
                and type(k.value.value) is type(defaults[k.arg])
                and k.value.value == defaults[k.arg])]
        return expr

    def emit(self) -> list[tuple[Node, ast.stmt]]:
        """(source node, statement) pairs: each statement, then any shape it must capture."""
        np_name = self.numpy

        def capture(node: Node) -> tuple[Node, ast.stmt]:
            shape = ast.Call(ast.Attribute(ast.Name(np_name, ast.Load()), "shape", ast.Load()),
                             [ast.Name(self.names[node.id], ast.Load())], [])
            return node, ast.Assign([ast.Name(self.shape_names[node.id], ast.Store())], shape,
                                    lineno=0)

        graph_nodes = self.graph.nodes
        pairs = [capture(graph_nodes[i]) for i in self.shape_refs if graph_nodes[i].is_leaf]
        for node in self.statements:
            self.current_statement = len(pairs)
            if self.in_place is not None:  # buffers pass only between nodes of one statement
                self.in_place.buffers.clear()
            made = self.statement(node)
            pairs += [(node, s) for s in made] if isinstance(made, list) else [(node, made)]
            if node.op in REGIONS:  # what the loop or `if` assigned, by its shape
                pairs += [capture(n) for n in self.graph.nodes
                          if n.op in REGION_VALUES and n.args[0] is node
                          and n.id in self.shape_names]
            targets = [node, *(n for n in self.items.values() if n.args[0].id == node.id)]
            pairs += [capture(t) for t in targets
                      if t.id in self.shape_names and not t.is_leaf]
        return pairs

    def statement(self, node: Node) -> ast.stmt:
        if node.op == "loop":
            return self.forward_loop(node)
        if node.op == "loop_backward":
            return self.backward_loop(node)
        if node.op == "branch":
            return self.forward_branch(node)
        if node.op == "branch_backward":
            return self.backward_branch(node)
        items = [n for n in self.items.values() if n.args[0].id == node.id]
        if items:  # `d_x, d_y = foo_derive(x, y)` or `W1, b1 = params`
            by_index = {n.attrs[0]: self.names[n.id] for n in items}
            target: ast.expr = ast.Tuple(
                [ast.Name(by_index.get(i, "_"), ast.Store()) for i in range(items[0].attrs[1])],
                ast.Store())
        else:
            target = ast.Name(self.names[node.id], ast.Store())
        if node.is_leaf or (node.op == "item" and node.attrs[1] is not None):
            value: ast.expr = ast.Name(self.names[node.id], ast.Load())  # unpack it: `W, b = p`
        else:
            value = self.compute(node)
        return ast.Assign([target], value, lineno=0)

    # -- loops ----------------------------------------------------------------------------------
    def _name(self, node: Node, hint: str, before: list[ast.stmt]) -> str:
        """A name holding ``node``'s value (a constant gets one, assigned in ``before``)."""
        node = self.resolve(node)
        if node.id in self.names:
            return self.names[node.id]
        name = _fresh(hint, self.taken)
        self.taken.add(name)
        before.append(ast.Assign([ast.Name(name, ast.Store())], self.expr(node), lineno=0))
        return name

    def _range(self, node: Node, first: int) -> ast.expr:
        start, stop, step = (self.expr(a) for a in self.args_of(node)[first:first + 3])
        args = [stop] if (isinstance(start, ast.Constant) and start.value == 0
                          and isinstance(step, ast.Constant) and step.value == 1) else [
            start, stop, step]
        return ast.Call(ast.Name("range", ast.Load()), args, [])

    def _body_path(self, roots: list[Node], graph: Any, param_names: dict[int, str],
                   derivation: Derivation) -> _Path:
        taken = self.taken | set(self.names.values()) | set(getattr(self, "shape_names", {}
                                                                    ).values())
        scope = _LoopScope(graph, roots, param_names, taken)
        inner = _Path(self.emitter, self.scalar, derivation, body=scope)
        self.taken |= set(inner.names.values()) | set(inner.shape_names.values())
        return inner

    def forward_loop(self, node: Node) -> list[ast.stmt]:
        """``for i in range(...):`` the body, carried values rebound at each iteration's end,
        and saved on a tape first when a backward loop will need them."""
        body = node.attrs[0]
        args = self.args_of(node)
        count = len(body.carried)
        before: list[ast.stmt] = []
        carried = self._region_value_names(node, "loop_output", count)
        for name, initial in zip(carried, args[3:3 + count], strict=True):
            before.append(ast.Assign([ast.Name(name, ast.Store())], self.expr(initial),
                                     lineno=0))
        invariants = [self._name(a, p.value, before)
                      for a, p in zip(args[3 + count:], body.invariants, strict=True)]
        index = _fresh(body.index.value, self.taken)
        self.taken.add(index)
        names = {body.index.id: index}
        names.update((p.id, n) for p, n in zip(body.carried, carried, strict=True))
        names.update((p.id, n) for p, n in zip(body.invariants, invariants, strict=True))
        roots = list(body.outputs) + ([body.condition] if body.condition is not None else [])
        inner = self._body_path(roots, body.graph, names, _tangent_names(body, 0))
        if body.index.id not in inner.names:  # the body does not read the index
            index = "_"
        loop_body: list[ast.stmt] = []
        if body.backward:  # the backward loop restores them, last first
            tapes = [_fresh(f"{name}_tape", self.taken) for name in carried]
            self.taken.update(tapes)
            self.tapes[id(body)] = tapes
            before += [ast.Assign([ast.Name(t, ast.Store())], ast.List([], ast.Load()),
                                  lineno=0) for t in tapes]
            loop_body += [ast.Expr(ast.Call(ast.Attribute(ast.Name(t, ast.Load()), "append",
                                                          ast.Load()),
                                            [ast.Name(n, ast.Load())], []))
                          for t, n in zip(tapes, carried, strict=True)]
        statements = [stmt for _, stmt in inner.emit()]
        if body.condition is not None:  # `while`: test first, then save and run the body
            test_name = inner.names.get(body.condition.id)
            split = next((i + 1 for i, s in enumerate(statements) if isinstance(s, ast.Assign)
                          and any(isinstance(t, ast.Name) and t.id == test_name
                                  for t in s.targets)), 0)
            always = body.condition.is_const and bool(body.condition.value)
            stop = [] if always else [  # `while True:` tests nothing
                ast.If(ast.UnaryOp(ast.Not(), inner.expr(body.condition)), [ast.Break()], [])]
            loop_body = [*statements[:split], *stop, *loop_body, *statements[split:]]
            loop_body += self._next_iteration(body, carried, inner)
            return [*before, ast.While(ast.Constant(True), loop_body, [])]
        loop_body += statements
        loop_body += self._next_iteration(body, carried, inner)
        loop = ast.For(ast.Name(index, ast.Store()), self._range(node, 0), loop_body, [],
                       lineno=0)
        return [*before, loop]

    @staticmethod
    def _next_iteration(body: Any, carried: list[str], inner: _Path) -> list[ast.stmt]:
        """The carried values rebound for the next iteration, and after a `break` (its flag
        cleared), the end of the loop."""
        out = [_rebind(carried, [inner.expr(o) for o in body.outputs])]
        if body.exit is not None:
            flag = ast.Name(carried[body.exit], ast.Load())
            out.append(ast.If(ast.UnaryOp(ast.Not(), flag), [ast.Break()], []))
        return out

    def backward_loop(self, node: Node) -> list[ast.stmt]:
        """The body's adjoint run over the iterations in reverse: carried values restored
        from the tape, the carried adjoints passed back, the invariants' adjoints summed."""
        body, wanted = node.attrs
        backward = body.backward[wanted]
        args = self.args_of(node)
        count = len(body.carried)
        finals = args[4:4 + count]
        outer_invariants = args[4 + 2 * count:]
        named = self._region_value_names(node, "loop_adjoint", count + len(body.invariants))
        adjoint_names = named[:count]
        # Invariants that are not differentiated get nothing to sum.
        sums = [None if g is None else name
                for g, name in zip(backward.invariants, named[count:], strict=True)]
        before: list[ast.stmt] = [
            ast.Assign([ast.Name(n, ast.Store())], self.expr(f), lineno=0)
            for n, f in zip(adjoint_names, finals, strict=True)]
        before += [ast.Assign([ast.Name(n, ast.Store())], _float_literal(0.0), lineno=0)
                   for n in sums if n is not None]
        invariants = [self._name(a, p.value, before)
                      for a, p in zip(outer_invariants, body.invariants, strict=True)]
        index = _fresh(body.index.value, self.taken)
        restored = [_fresh(p.value, self.taken | {index}) for p in body.carried]
        self.taken.update([index, *restored])
        names = {body.index.id: index}
        names.update((p.id, n) for p, n in zip(body.carried, restored, strict=True))
        names.update((p.id, n) for p, n in zip(body.invariants, invariants, strict=True))
        names.update((s.id, n) for s, n in zip(backward.seeds, adjoint_names, strict=True))
        roots = [g for g in (*backward.carried, *backward.invariants) if g is not None]
        inner = self._body_path(roots, body.graph, names,
                                _adjoint_names(backward, backward.adjoint_of, 0))
        if body.index.id not in inner.names:  # the adjoint does not read the index
            index = "_"
        tapes = self.tapes[id(body)]
        loop_body: list[ast.stmt] = [
            ast.Assign([ast.Name(r, ast.Store())], ast.Call(ast.Attribute(
                ast.Name(t, ast.Load()), "pop", ast.Load()), [], []), lineno=0)
            for r, t in zip(restored, tapes, strict=True)]
        loop_body += [stmt for _, stmt in inner.emit()]
        # One assignment: the sums may read a carried adjoint this iteration replaces.
        targets = list(adjoint_names)
        values = [_float_literal(0.0) if g is None else inner.expr(g) for g in backward.carried]
        for name, g in zip(sums, backward.invariants, strict=True):
            if name is not None and g is not None:
                targets.append(name)
                values.append(ast.BinOp(ast.Name(name, ast.Load()), ast.Add(), inner.expr(g)))
        loop_body.append(_rebind(targets, values))
        if body.condition is not None:  # `while`: as many steps back as the tape holds
            steps = ast.Call(ast.Name("range", ast.Load()), [ast.Call(
                ast.Name("len", ast.Load()), [ast.Name(tapes[0], ast.Load())], [])], [])
        elif body.exit is not None:  # a `break` may have ended it early: the steps it made
            made = ast.Call(ast.Name("len", ast.Load()), [ast.Name(tapes[0], ast.Load())], [])
            steps = ast.Call(ast.Name("reversed", ast.Load()), [ast.Subscript(
                self._range(node, 1), ast.Slice(None, made), ast.Load())], [])
        else:
            steps = ast.Call(ast.Name("reversed", ast.Load()), [self._range(node, 1)], [])
        loop = ast.For(ast.Name(index, ast.Store()), steps, loop_body, [], lineno=0)
        return [*before, loop]

    def _region_value_names(self, node: Node, op: str, count: int) -> list[str]:
        """Names of a region's outputs (`branch_output`...), read afterwards or not."""
        outputs = {n.attrs[0]: n for n in self.graph.nodes
                   if n.op == op and n.args[0] is node}
        names = []
        for k in range(count):
            output = outputs.get(k)
            if output is not None and output.id in self.names:
                names.append(self.names[output.id])
                continue
            name = _fresh(_region_name(op, node.attrs[0], k, output.hint if output else None),
                          self.taken)
            if output is not None:
                self.names[output.id] = name
            self.taken.add(name)
            names.append(name)
        return names

    def forward_branch(self, node: Node) -> list[ast.stmt]:
        """``if c: <then> else: <else>``, each branch ending by assigning the outputs."""
        body = node.attrs[0]
        args = self.args_of(node)
        before: list[ast.stmt] = []
        inputs = [self._name(a, p.value, before)
                  for a, p in zip(args[1:], body.inputs[0], strict=True)]
        outputs = self._region_value_names(node, "branch_output", len(body.names))
        blocks = []
        for b, (sub, params, results) in enumerate(zip(body.graphs, body.inputs, body.outputs,
                                                      strict=True)):
            names = {p.id: n for p, n in zip(params, inputs, strict=True)}
            inner = self._body_path(list(results), sub, names, _tangent_names(body, b))
            block = [stmt for _, stmt in inner.emit()]
            if outputs:
                block.append(_rebind(outputs, [inner.expr(r) for r in results]))
            blocks.append(block or [ast.Pass()])
        return [*before, ast.If(self.expr(args[0]), blocks[0], blocks[1])]

    def backward_branch(self, node: Node) -> list[ast.stmt]:
        """The adjoint of the branch the forward pass took: same condition, its own code."""
        body, wanted = node.attrs
        backward = body.backward[wanted]
        args = self.args_of(node)
        count = len(body.names)
        before: list[ast.stmt] = []
        finals = [self._name(a, f"d_{name}", before)
                  for a, name in zip(args[1:1 + count], body.names, strict=True)]
        inputs = [self._name(a, p.value, before)
                  for a, p in zip(args[1 + count:], body.inputs[0], strict=True)]
        given = [k for k in range(len(inputs))
                 if backward.inputs[0][k] is not None or backward.inputs[1][k] is not None]
        all_names = self._region_value_names(node, "branch_adjoint", len(inputs))
        blocks = []
        for b, (sub, params) in enumerate(zip(body.graphs, body.inputs, strict=True)):
            names = {p.id: n for p, n in zip(params, inputs, strict=True)}
            names.update((s.id, n) for s, n in zip(backward.seeds[b], finals, strict=True))
            grads = backward.inputs[b]
            roots = [grads[k] for k in given if grads[k] is not None]
            inner = self._body_path(roots, sub, names,
                                    _adjoint_names(backward, backward.adjoint_of[b], b))
            block = [stmt for _, stmt in inner.emit()]
            if given:
                block.append(_rebind([all_names[k] for k in given],
                                     [_float_literal(0.0) if grads[k] is None
                                      else inner.expr(grads[k]) for k in given]))
            blocks.append(block or [ast.Pass()])
        return [*before, ast.If(self.expr(args[0]), blocks[0], blocks[1])]

    def final_grad(self, grad: Node | None, like: ast.expr, param: Node | None = None
                   ) -> ast.expr:
        """``sg.grad_like(d_x, x)``: the gradient at ``x``'s shape and floating dtype.

        With static shapes, a gradient known to be a float64 array this function made, at the
        shape of parameter ``param`` (a float64 array there), is returned as it is.
        """
        value = _float_literal(0.0) if grad is None else self.expr(grad)
        if grad is not None and param is not None and self.static is not None:
            known = self.static.get(self.resolve(grad).id, static.UNKNOWN)
            if (known.fresh and known.kind == "f64" and known.shape
                    and known.shape == self.shape(param)
                    and not _may_alias_input(self.resolve(grad))):
                return value
        call_args = [value, like]
        if grad is not None and _may_alias_input(grad):
            call_args.append(ast.Constant(True))  # never hand back the caller's own array
        sg = ast.Name(self.helpers["sg"], ast.Load())
        return ast.Call(ast.Attribute(sg, "grad_like", ast.Load()), call_args, [])

    def tree_grad(self, tree: Any, flat: Any) -> ast.expr:
        """The gradient of a structured parameter, as a literal of the same structure."""
        parts = []
        for child in tree.children:
            if isinstance(child, Node):
                like = self.expr(child) if child.id in self.names else self.compute(child)
                parts.append(self.final_grad(next(flat), like, child))
            else:
                parts.append(self.tree_grad(child, flat))
        if tree.kind == "dict":
            return ast.Dict([ast.Constant(k) for k in tree.keys], parts)
        if tree.kind == "list":
            return ast.List(parts, ast.Load())
        return ast.Tuple(parts, ast.Load())

    def result(self) -> ast.expr:
        """``value, Grads(d_a, d_b)``, and whatever else the derivation returns."""
        parts = [self.expr(self.output)]
        for section in self.derivation.sections:
            fields = [self.field(section, name, nodes) for name, nodes in section.fields]
            if section.like == "rows":  # a matrix of blocks: a tuple of rows
                parts.append(ast.Tuple(fields, ast.Load()))
                continue
            if section.container is None:
                parts.append(fields[0])
                continue
            # `tuple_new(Grads, (...))` (tuple.__new__) builds the namedtuple without its
            # Python-level __new__, which costs more than the whole derivative of a small
            # function.
            container = self.emitter.containers[id(section.container)]
            parts.append(ast.Call(ast.Name(self.helpers["tuple_new"], ast.Load()),
                                  [ast.Name(container, ast.Load()),
                                   ast.Tuple(fields, ast.Load())], []))
        return ast.Tuple(parts, ast.Load())

    def field(self, section: Section, name: str, nodes: list[Node | None]) -> ast.expr:
        """One field of a section, shaped like its parameter (or the value)."""
        if section.like == "rows":  # row `name` of a matrix of blocks: one entry per parameter
            params = [p for p, _ in section.fields]
            return ast.Tuple([self.field(Section([], "param"), param, [node])
                              for param, node in zip(params, nodes, strict=True)], ast.Load())
        trees = self.emitter.trees
        if section.like == "param" and name in trees:  # its gradient has its structure
            return self.tree_grad(trees[name], iter(nodes))
        grad = nodes[0]
        like: ast.expr = (self.expr(self.output) if section.like == "value"
                          else ast.Name(name, ast.Load()))
        if not self.scalar:
            return self.final_grad(grad, like, self.emitter.lowered.params.get(name)
                                   if section.like == "param" else None)
        if grad is None:
            return _float_literal(0.0)
        grad = self.resolve(grad)
        if grad.op == CONST:
            return _float_literal(grad.value)
        if grad.is_leaf:
            return ast.Call(ast.Name("float", ast.Load()), [self.expr(grad)], [])
        return self.expr(grad)
