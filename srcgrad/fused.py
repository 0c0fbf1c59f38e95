"""The fused backend (``@grad(backend="numba")``): value and gradient as one compiled loop.

The NumPy backend evaluates a graph one operation at a time, each a pass over memory with an
array of its own. Most fitting code is elementwise arithmetic over the samples followed by sums,
and its gradient is the same again: the graph is a chain of per-element formulas and a few
totals. This backend emits that as **one loop over the elements**, whose body is the float
path's code for one element, with each total accumulated as it goes, and has Numba compile it
(in parallel over cores for large arrays). No temporary array is made, except a buffer for each
function NumPy evaluates faster than a call per element (`NUMPY_FASTER`).

Each node of the graph gets a *kind*:

* ``S``: a number (made of Python-float parameters, constants and totals);
* ``E``: one value per element (made of the array parameters, all of one shape);
* ``R``: the total of an ``E`` node (``np.sum``, ``np.mean``, and the gradient's sums of
  broadcast adjoints, ``sum_to`` and ``sum_product``).

A *stage* orders them: totals are known only after the loop that sums them, so an ``E`` node
that reads a total (``x - np.mean(x)``) runs in a second loop; so does one that reads the result
of a `NUMPY_FASTER` function, which NumPy computes on a buffer between the two loops. The kernel
is: scalars of stage 0, loop 0, scalars of stage 1, loop 1, ... Anything that is neither
elementwise nor a total (``@``, indexing, ``np.sum(axis=1)``) cannot be fused: a
`TransformError` names its line and says to use the default backend.

Calls whose arguments the kernel was not built for (arrays of different shapes, arrays where
the first call had floats, lists) run the NumPy backend's function, which the generated code
names.
"""

from __future__ import annotations

import ast
import importlib.util
import math
import textwrap
from typing import Any

import numpy as np

from . import codegen, rules, runtime
from .codegen import Derivation, Generated
from .graph import BOUND, CONST, GLOBAL, PARAM, REGION_VALUES, REGIONS, Node
from .lower import Lowered

SCALAR, ELEMENTS, TOTAL = "S", "E", "R"
# Elements from which the loop runs on every core. Measured on 2 cores (Gaussian fit): the
# parallel loop already wins at 1,000 elements (6.4 against 8.2 us) and takes half the time
# from 5,000; below, starting the threads costs more than the loop.
PARALLEL_FROM = 2_000
_SHAPE_ONLY = {"sum_to": 1, "sum_product": 2}  # the first argument that only gives a shape
_ELEMENTWISE_OPS = frozenset(
    name for name, primitive in rules.PRIMITIVES.items()
    if primitive.elementwise and primitive.scalar and primitive.scalar != "<attrs>"
    and name != "alias")
_TOTALS = frozenset({"sum", "mean"})  # reductions over every axis
# Functions NumPy evaluates several times faster than a call per element: its ufuncs use SIMD
# code where Numba calls the C library once per element. Measured on 1e5 float64 (this
# machine, NumPy 2.4, Numba 0.68): exp 64 against 544 us, log 94/489, tanh 144/1056, and
# 4-9x for the others here; sin and cos are the same both ways, so they stay in the loop.
# Their arguments are written to a buffer by one pass, the ufunc runs on the buffer in place,
# and the passes after read it.
NUMPY_FASTER = frozenset({"exp", "log", "expm1", "log1p", "log2", "log10", "tanh", "sinh",
                          "cosh", "tan", "arctan", "arcsinh"})


def available() -> bool:
    """Whether Numba is installed (the ``numba`` extra); it is imported only at the first call."""
    return importlib.util.find_spec("numba") is not None


def generate(lowered: Lowered, derivation: Derivation, scalars: list[str],
             numpy_backend: Generated) -> Generated:
    """The fused function for calls with ``scalars`` as Python numbers and the other parameters
    as arrays of one shape; other calls go to ``numpy_backend``'s function."""
    emitter = _FusedEmitter(lowered, derivation, scalars)
    made = emitter.module_text()
    if made is None:  # every result is a parameter or a constant: there is no loop to run
        return numpy_backend
    text, factory, bindings = made
    bindings[emitter.fallback_name] = numpy_backend.function
    function, filename = codegen.compile_generated(lowered, text, factory, bindings,
                                                   "srcgrad numba")
    return Generated(function, text, filename)


class _Kinds:
    """The kind and stage of every node the results need (see the module docstring)."""

    def __init__(self, lowered: Lowered, roots: list[Node], scalars: list[str]) -> None:
        self.parsed = lowered.parsed
        self.kind: dict[int, str] = {}
        self.stage: dict[int, int] = {}
        # Sums of a number broadcast over the elements: n times the number.
        self.scaled: set[int] = set()
        self.buffered: set[int] = set()  # see NUMPY_FASTER
        for node in lowered.graph.reachable(roots):
            self.kind[node.id], self.stage[node.id] = self._classify(node, scalars, lowered)

    def _classify(self, node: Node, scalars: list[str], lowered: Lowered) -> tuple[str, int]:
        if node.op == CONST:
            return SCALAR, 0
        if node.op == PARAM:
            if node.value in lowered.trees:
                raise self._refuse(node, f"a tuple, list or dict parameter (`{node.value}`); the "
                                   "loop takes numbers and arrays")
            return (SCALAR if node.value in scalars else ELEMENTS), 0
        if node.op in (GLOBAL, BOUND):
            value = (lowered.parsed.fn.__globals__.get(node.value) if node.op == GLOBAL
                     else lowered.bound.get(node.hint))
            if type(value) not in runtime.SCALARS:
                name = node.value if node.op == GLOBAL else node.hint
                raise self._refuse(node, f"`{name}`, a {type(value).__name__} from outside the "
                                   "function (only numbers are passed to the loop; pass arrays "
                                   "as parameters)")
            return SCALAR, 0  # passed to the kernel as a number at each call
        args = node.args
        kinds = [self.kind[a.id] for a in args]
        stage = max((self.stage[a.id] for a in args), default=0)
        if node.op in ("alias", "expand_to"):
            return kinds[0], stage  # the same value at every element
        if node.op in ("sum_to", "sum_product"):  # (data..., target shape, from shape)
            data = _SHAPE_ONLY[node.op]
            data_kind = ELEMENTS if ELEMENTS in kinds[:data] else SCALAR
            target, spread = kinds[data], kinds[data + 1]
            stage = max(self.stage[a.id] for a in args[:data])
            if data_kind == ELEMENTS and target != ELEMENTS:
                return TOTAL, stage + 1  # the adjoint of a broadcast: a total
            if spread == ELEMENTS and target != ELEMENTS:
                self.scaled.add(node.id)  # a number at every element: n times it
            return data_kind, stage
        if node.op in _TOTALS or node.op in ("sum_backward", "mean_backward"):
            axis, keepdims = args[-2], args[-1]
            if not (axis.is_const and axis.value is None and keepdims.is_const
                    and not keepdims.value):
                raise self._refuse(node, f"`{rules.numpy_spelling(node.op)}` over some axes "
                                   "(only totals over every element are fused)")
            if node.op in _TOTALS:
                if kinds[0] != ELEMENTS:
                    raise self._refuse(node, f"`{rules.numpy_spelling(node.op)}` of a number")
                return TOTAL, stage + 1
            return kinds[0], self.stage[args[0].id]  # the total's adjoint: one number each
        if node.op in NUMPY_FASTER and kinds[0] == ELEMENTS:
            self.buffered.add(node.id)  # NumPy's ufunc, on a buffer, between two passes
            return ELEMENTS, stage + 1
        if node.op in _ELEMENTWISE_OPS:
            return (ELEMENTS if ELEMENTS in kinds else SCALAR), stage
        raise self._refuse(node, _describe(node))

    def _refuse(self, node: Node, what: str) -> Exception:
        return self.parsed.error(
            f"backend='numba' fuses elementwise arithmetic and totals (np.sum, np.mean over "
            f"every element) of arrays of one shape; this line uses {what}. Use the default "
            "backend (backend='numpy') for this function.", lineno=node.lineno)


def _describe(node: Node) -> str:
    if node.op == "call":
        return f"a call to `{node.attrs[0].label}`"
    if node.op in REGIONS | REGION_VALUES:
        return "a loop" if node.op.startswith("loop") else "an `if`"
    return f"`{rules.numpy_spelling(node.op.removesuffix('_backward'))}`"


class _KernelPath(codegen._Path):
    """The float path's statements, for one element: parameters that are arrays read element
    ``i``, results that are arrays are written at ``i``, and totals are not the identity."""

    def __init__(self, emitter: codegen._Emitter, derivation: Derivation, kinds: _Kinds,
                 index: str, count: str) -> None:
        self.kinds = kinds
        self.index = index
        self.count = count
        super().__init__(emitter, True, derivation)
        # The templates' `sg.` helpers, compiled for one float (`srcgrad.fused_scalars`).
        self.helpers = {**emitter.helpers, "sg": emitter.helpers["numba_sg"]}

    def resolve(self, node: Node) -> Node:
        while node.op in ("alias", "expand_to", "sum_backward") or (
                node.op == "sum_to" and self.kinds.kind.get(node.id) != TOTAL
                and node.id not in self.kinds.scaled):
            node = node.args[0]
        return node

    def _needs_names(self, order: list[Node], uses: dict[int, int], roots: list[Node]) -> set[int]:
        need = super()._needs_names(order, uses, roots)
        kind = self.kinds.kind
        for node in order:
            if kind.get(node.id) == TOTAL or node.id in self.kinds.buffered:
                need.add(node.id)  # an accumulator, or a buffer
            if kind.get(node.id) in (ELEMENTS, TOTAL):
                # Numbers the loop reads are computed once, before it.
                need.update(a.id for a in self.args_of(node)
                            if kind.get(a.id) == SCALAR and not a.is_leaf)
        return need

    def compute(self, node: Node) -> ast.expr:
        if node.op == "clip":  # Numba's np.clip takes arrays only
            clip = ast.Attribute(ast.Name(self.helpers["sg"], ast.Load()), "clip", ast.Load())
            return ast.Call(clip, [self.expr(a) for a in self.args_of(node)], [])
        if node.op == "abs":  # the bare name `abs` may be the user's module's own
            fabs = ast.Attribute(ast.Name(self.helpers["math"], ast.Load()), "fabs", ast.Load())
            return ast.Call(fabs, [self.expr(node.args[0])], [])
        if node.op == "mean_backward":
            return ast.BinOp(self.expr(node.args[0]), ast.Div(), ast.Name(self.count, ast.Load()))
        if node.id in self.kinds.scaled:  # a number summed over the n elements
            return ast.BinOp(ast.Name(self.count, ast.Load()), ast.Mult(),
                             self._product(node))
        if self.kinds.kind.get(node.id) == TOTAL:  # what one element adds to the total
            return self._product(node)
        return super().compute(node)

    def _product(self, node: Node) -> ast.expr:
        """The summand of a `sum_to` (its argument) or a `sum_product` (the product)."""
        if node.op == "sum_product":
            left, right = (self.expr(self.resolve(a)) for a in node.args[:2])
            return ast.BinOp(left, ast.Mult(), right)
        return self.expr(node.args[0])

    def args_of(self, node: Node) -> tuple[Node, ...]:
        if node.op in _SHAPE_ONLY:
            return tuple(self.resolve(a) for a in node.args[:_SHAPE_ONLY[node.op]])
        if node.op in _TOTALS or node.op == "mean_backward":
            return (self.resolve(node.args[0]),)
        return super().args_of(node)


class _FusedEmitter(codegen._Emitter):
    def __init__(self, lowered: Lowered, derivation: Derivation, scalars: list[str]) -> None:
        super().__init__(lowered, derivation)
        self.scalars = scalars
        self.arrays = [p for p in self.param_names if p not in scalars]
        for helper in ("numba", "numba_sg", "numpy_backend", "serial", "parallel", "loop"):
            self.helpers[helper] = codegen._fresh(helper, self.reserved)
            self.reserved.add(self.helpers[helper])
        self.fallback_name = self.helpers["numpy_backend"]
        self.roots = [lowered.output, *derivation.roots()]
        self.kinds = _Kinds(lowered, self.roots, scalars)

    def module_text(self) -> tuple[str, str, dict[str, Any]] | None:
        from . import fused_scalars  # imports numba

        parsed = self.parsed
        h = self.helpers
        bindings: dict[str, Any] = {
            h["np"]: np, h["math"]: math, h["numba"]: fused_scalars.numba,
            h["numba_sg"]: fused_scalars,
            h["sg"]: runtime, h["SCALARS"]: runtime.SCALARS,
            h["numpy_backend"]: None,  # set by `generate`
        }
        if self.containers:  # only a namedtuple result needs it
            bindings[h["tuple_new"]] = tuple.__new__
        if h["type"] != "type":
            bindings[h["type"]] = type
        for section in self.derivation.sections:
            if section.container is not None:
                bindings[self.containers[id(section.container)]] = section.container
        bindings.update(self.lowered.bound)
        signature, default_bindings = self._signature(parsed.fn)
        bindings.update(default_bindings)
        factory = codegen._fresh(f"make_{parsed.identifier}", self.reserved | set(bindings))
        kernel = codegen._fresh(f"{parsed.identifier}_loop", self.reserved | set(bindings))
        self.reserved.add(kernel)
        kernel_lines, kernel_params, outputs = self._kernel(kernel)
        if not outputs:
            return None
        arrays = ", ".join(self.arrays)
        first = self.arrays[0]
        condition = " and ".join(
            [f"type({p}) in {h['SCALARS']}" for p in self.scalars + self.live]
            + [f"{h['sg']}.fusable({arrays})"])
        flat = ", ".join(f"{p}.ravel()" if p in self.arrays else p for p in kernel_params)
        forward = ", ".join(p.name if p.kind == "positional" else f"{p.name}={p.name}"
                            for p in parsed.params)
        out = [
            f"# Generated by srcgrad (backend='numba') from {parsed.filename}, "
            f"line {parsed.lineno}.",
            f"def {factory}({', '.join(bindings)}):",
            f'    """Compiles `{parsed.name}`\'s loop once, and binds srcgrad\'s helpers."""',
            "",
            *kernel_lines,
            "",
            f"    # Small arrays run on one thread; from {PARALLEL_FROM} elements, on every core.",
            f"    {h['serial']} = {h['numba']}.njit(error_model='numpy')({kernel})",
            f"    {h['parallel']} = {h['numba']}.njit(error_model='numpy', parallel=True)("
            f"{kernel})",
            "",
            f"    def {self.local_name}({signature}):",
            f'        """{self._summary()} of `{parsed.name}` '
            f'({codegen._short(parsed.filename)}, line {parsed.lineno}), fused.',
            "",
            *self._returns(),
            '        """',
            f"        if {condition}:",
            f"            # {self._kinds_comment()}",
            f"            {h['loop']} = ({h['parallel']} if {first}.size >= "
            f"{PARALLEL_FROM} else {h['serial']})",
            f"            {', '.join(outputs)}{',' if len(outputs) == 1 else ''} = "
            f"{h['loop']}({flat})",
            f"            return {self._result(outputs, first)}",
            "        # Other kinds of arguments: the NumPy backend's function.",
            f"        return {h['numpy_backend']}({forward})",
            "",
            f"    return {self.local_name}",
        ]
        return "\n".join(out) + "\n", factory, bindings

    def _kinds_comment(self) -> str:
        arrays = (f"{', '.join(self.arrays)}: "
                  f"{'an array' if len(self.arrays) == 1 else 'arrays of one shape'}, "
                  "flattened for the loop.")
        if not self.scalars:
            return arrays
        return f"{', '.join(self.scalars)}: number{'s' if len(self.scalars) > 1 else ''}; {arrays}"

    # -- the kernel ------------------------------------------------------------------------------
    def _kernel(self, kernel: str) -> tuple[list[str], list[str], list[str]]:
        """The loop function's lines, its parameters and the names it returns."""
        kinds = self.kinds
        taken = set(self.reserved)
        index = codegen._fresh("i", taken | set(self.param_names))
        count = codegen._fresh("n", taken | set(self.param_names) | {index})
        self.reserved |= {index, count}
        path = _KernelPath(self, self.derivation, kinds, index, count)
        names = path.names
        self._name_totals(path)
        # Array parameters and array results are read and written at element `i`.
        out_arrays: dict[int, str] = {}
        root_nodes = [path.resolve(r) for r in self.roots]
        for node in root_nodes:
            if kinds.kind[node.id] == ELEMENTS and not node.is_leaf and node.id not in out_arrays:
                out_arrays[node.id] = names[node.id]
        buffers = {}
        for node in path.statements:
            if node.id in kinds.buffered:
                if node.id in out_arrays:  # a result: its array is the buffer
                    buffers[node.id] = out_arrays[node.id]
                    continue
                if not node.hint:  # `exp_values`, not `t2`
                    names[node.id] = codegen._fresh(f"{node.op}_values", path.taken)
                    path.taken.add(names[node.id])
                buffers[node.id] = names[node.id]
        for node_id, base in {**out_arrays, **buffers}.items():
            names[node_id] = f"{base}[{index}]"
        for node in self.lowered.params.values():
            if node.id in names and kinds.kind.get(node.id) == ELEMENTS:
                names[node.id] = f"{node.value}[{index}]"
        # Outputs: each result once, in the order the wrapper unpacks them.
        outputs: list[str] = []
        self.result_names: dict[int, str] = {}
        for node in root_nodes:
            if node.id in self.result_names:
                continue
            if node.is_leaf or node.op == CONST:
                continue  # the wrapper has it
            name = out_arrays.get(node.id, buffers.get(node.id, names.get(node.id)))
            self.result_names[node.id] = name
            outputs.append(name)
        self.path = path
        self.out_arrays = {**out_arrays, **{k: v for k, v in buffers.items()
                                             if k in self.result_names}}
        self.live = live = sorted(n.value for n in self.lowered.graph.nodes
                                  if n.op == GLOBAL and n.id in kinds.kind)
        bound = sorted(n.hint for n in self.lowered.graph.nodes
                       if n.op == BOUND and n.id in kinds.kind)
        params = [p.name for p in self.parsed.params] + live + bound
        body: list[str] = []
        stages = [kinds.stage[n.id] for n in path.statements] + [0]
        last = max(stages)
        statements = list(path.statements)
        first_array = self.arrays[0]
        np_name = self.helpers["np"]
        body.append(f"{count} = {first_array}.shape[0]")
        for base in {**out_arrays, **buffers}.values():
            body.append(f"{base} = {np_name}.empty({count})")
        passes = []  # (stage, totals it sums, arrays it writes, buffers it fills)
        for stage in range(last + 1):
            totals = [n for n in statements
                      if kinds.kind[n.id] == TOTAL and kinds.stage[n.id] == stage + 1]
            written = [n for n in statements if n.id in out_arrays
                       and n.id not in buffers and kinds.stage[n.id] == stage]
            filled = [n for n in statements if n.id in buffers and kinds.stage[n.id] == stage + 1]
            passes.append((stage, totals, written, filled))
        count_passes = sum(1 for _, *work in passes if any(work))
        done = 0
        for stage, totals, written, filled in passes:
            body += self._lines(path, [n for n in statements if kinds.kind[n.id] == SCALAR
                                       and kinds.stage[n.id] == stage])
            if not (totals or written or filled):
                continue
            done += 1
            if count_passes > 1:
                body.append(f"# Pass {done} of {count_passes} over the elements"
                            + (": it reads what the pass before made." if done > 1 else "."))
            for total in totals:
                body.append(f"{names[total.id]} = 0.0")
            inner = self._loop_nodes(path, totals + written + filled)
            loop_body = self._lines(path, inner, totals=totals, filled=filled)
            body.append(f"for {index} in {self.helpers['numba']}.prange({count}):")
            body += ["    " + line for line in loop_body]
            for total in totals:
                if total.op == "mean":
                    body.append(f"{names[total.id]} /= {count}")
            if filled:
                body.append(f"# NumPy's {', '.join(sorted({n.op for n in filled}))} on whole "
                            "arrays (SIMD) beats a call per element:")
                body.append(f"with {self.helpers['numba']}.objmode():")
                body += [f"    {np_name}.{n.op}({buffers[n.id]}, out={buffers[n.id]})"
                         for n in filled]
        body.append(f"return {', '.join(outputs)}" + ("," if len(outputs) == 1 else ""))
        doc = ('"""One pass over the elements: the value and gradient of each element, and '
               'the totals."""' if count_passes <= 1 else
               f'"""{count_passes} passes over the elements: a value that reads a total (a mean), '
               'or a NumPy function\'s result, needs the pass that makes it first."""')
        lines = [f"def {kernel}({', '.join(params)}):", "    " + doc,
                 *("    " + line for line in body)]
        return [textwrap.indent(line, "    ") if line else "" for line in lines], params, outputs

    def _name_totals(self, path: _KernelPath) -> None:
        """``sum_for_d_mu``: a total that only one gradient reads is named after it."""
        graph = self.lowered.graph
        readers: dict[int, list[str]] = {}
        for section in self.derivation.sections:
            for name, nodes in section.fields:
                for node in nodes:
                    if node is None:
                        continue
                    for reached in graph.reachable([path.resolve(node)]):
                        readers.setdefault(reached.id, []).append(name)
        for node in path.statements:
            if self.kinds.kind[node.id] != TOTAL or node.hint or node is path.resolve(
                    self.lowered.output):
                continue
            fields = readers.get(node.id, [])
            if len(set(fields)) == 1 and not path.names[node.id].startswith("d_"):
                name = codegen._fresh(f"sum_for_d_{fields[0]}", path.taken)
                path.taken.add(name)
                path.names[node.id] = name

    def _loop_nodes(self, path: _KernelPath, sinks: list[Node]) -> list[Node]:
        """The named element-wise nodes the loop over ``sinks`` computes, in order."""
        kind = self.kinds.kind
        buffered = self.kinds.buffered
        wanted: set[int] = set()
        stack = list(sinks)
        while stack:
            node = stack.pop()
            for arg in path.args_of(node):
                if kind.get(arg.id) == ELEMENTS and arg.id not in wanted and (
                        arg.id not in buffered):  # a buffer is read, not computed
                    wanted.add(arg.id)
                    stack.append(arg)
        wanted |= {s.id for s in sinks}
        return [n for n in path.statements if n.id in wanted]

    def _lines(self, path: _KernelPath, nodes: list[Node], totals: list[Node] = (),
               filled: list[Node] = ()) -> list[str]:
        lines: list[str] = []
        last_comment = None
        total_ids = {t.id for t in totals}
        filled_ids = {f.id for f in filled}
        for node in nodes:
            comment = self._comment(node)
            if comment and comment != last_comment:
                lines.append(f"# {comment}")
                last_comment = comment
            if node.id in total_ids:
                stmt: ast.stmt = ast.AugAssign(ast.Name(path.names[node.id], ast.Store()),
                                               ast.Add(), path.compute(node))
            elif node.id in filled_ids:  # the function's argument, for NumPy after the pass
                stmt = ast.Assign([ast.Name(path.names[node.id], ast.Store())],
                                  path.expr(node.args[0]), lineno=0)
            else:
                stmt = path.statement(node)
            lines.append(ast.unparse(stmt))
        return lines

    def _result(self, outputs: list[str], first: str) -> str:
        """``value, Grads(...)`` from the loop's outputs, arrays back in the arguments' shape."""
        path = self.path

        def wrapped(node: Node) -> str:
            node = path.resolve(node)
            if node.op == CONST:
                return ast.unparse(codegen._float_literal(node.value))
            if node.is_leaf:
                return node.value if node.op != BOUND else node.hint
            name = self.result_names[node.id]
            if node.id in self.out_arrays:
                return f"{name.split('[')[0]}.reshape({first}.shape)"
            return name

        sg = self.helpers["sg"]
        # The loop adds in float64; the value takes the type NumPy's arithmetic on the arrays
        # gives (float32 stays float32), as the NumPy backend returns it.
        value = f"{sg}.value_like({wrapped(self.lowered.output)}, {', '.join(self.arrays)})"
        parts = [value]
        for section in self.derivation.sections:
            fields = []
            for name, nodes in section.fields:
                grad = nodes[0]
                if grad is None:
                    fields.append(f"{sg}.grad_like(0.0, {name})")
                    continue
                copy = ", True" if path.resolve(grad).is_leaf else ""
                fields.append(f"{sg}.grad_like({wrapped(grad)}, {name}{copy})")
            if section.container is None:
                parts.append(fields[0])
            else:
                container = self.containers[id(section.container)]
                parts.append(f"{self.helpers['tuple_new']}({container}, ({', '.join(fields)},))")
        return f"({', '.join(parts)})"
