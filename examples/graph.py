"""The computation graph of the peak-separation loss, labelled with values and adjoints.

srcgrad keeps the graph it generated code from (``peak_loss.graph``). This example evaluates
that graph once, node by node with srcgrad's own primitive templates, at the starting point of
the peak-separation fit, and writes it for Graphviz:

* peak_loss.dot: the forward graph; each node shows its value and its adjoint (the derivative
  of the loss with respect to that node). Arrays show their length and range.
* peak_loss_adjoints.dot: the whole graph srcgrad differentiated, adjoint nodes (orange)
  included, each labelled with its value.
* .svg and .png of both when Graphviz's `dot` is installed (otherwise skipped, with a
  note).

The adjoints of intermediate nodes come from a textbook reverse sweep written below (srcgrad's
FunctionGraph exposes only the parameters' adjoint nodes); at the parameters they must equal
srcgrad's gradients, and the example checks that they do.

Run:  python examples/graph.py [--quick] [--out DIR]
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from common import output_dir, parser, write_summary
from peak_separation import NAMES, START, make_data, peak_loss

from srcgrad import rules, runtime
from srcgrad.graph import CONST, GLOBAL, PARAM, Node

SHAPE_ARGUMENTS = {"sum_to": (1, 2), "sum_product": (2, 3), "expand_to": (1,)}


def evaluate(nodes: list[Node], arguments: dict[str, Any], namespace: dict[str, Any]
             ) -> dict[int, Any]:
    """The value of every node, in order, by srcgrad's NumPy template for its operation."""
    values: dict[int, Any] = {}
    scope = {"np": np, "math": math, "sg": runtime}
    for node in nodes:
        if node.op == PARAM:
            values[node.id] = arguments[node.value]
        elif node.op == CONST:
            values[node.id] = node.value
        elif node.op == GLOBAL:
            values[node.id] = namespace[node.value]
        elif node.is_leaf:  # bound object
            values[node.id] = node.value
        else:
            args = [values[a.id] for a in node.args]
            for position in SHAPE_ARGUMENTS.get(node.op, ()):
                args[position] = np.shape(args[position])
            template = rules.PRIMITIVES[node.op].array
            if template == "<attrs>":
                template = node.attrs[0]
            # The template is srcgrad's own text for this operation, e.g. `np.exp(_0)`.
            code = re.sub(r"\b_(\d+)\b", r"_args[\1]", template)
            values[node.id] = eval(code, {**scope, "_args": args})
    return values


def _unbroadcast(g: Any, shape: tuple[int, ...]) -> Any:
    """Sum ``g`` down to ``shape`` (the adjoint of broadcasting)."""
    g = np.asarray(g, dtype=float)
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    for axis, size in enumerate(shape):
        if size == 1 and g.shape[axis] != 1:
            g = g.sum(axis=axis, keepdims=True)
    return g if shape else float(g)


def _vjp(node: Node, g: Any, args: list[Any], out: Any) -> list[Any]:
    """Contributions to each argument's adjoint: the chain rule for the loss's operations."""
    op = node.op
    if op == "add":
        return [g, g]
    if op == "sub":
        return [g, -g]
    if op == "mul":
        return [g * args[1], g * args[0]]
    if op == "div":
        return [g / args[1], -g * out / args[1]]
    if op == "neg":
        return [-g]
    if op == "pow":
        x, y = args
        return [g * y * x ** (y - 1), g * out * np.log(np.where(x > 0, x, 1.0))]
    if op == "exp":
        return [g * out]
    if op == "mean" and args[1] is None:
        return [np.broadcast_to(g / np.size(args[0]), np.shape(args[0])), None, None]
    if op == "sum" and args[1] is None:
        return [np.broadcast_to(g, np.shape(args[0])), None, None]
    raise NotImplementedError(f"this example's reverse sweep does not know `{op}`")


def reverse_sweep(forward: list[Node], output: Node, values: dict[int, Any]) -> dict[int, Any]:
    """d(output)/d(node) for every forward node: adjoints accumulated in reverse order."""
    adjoints: dict[int, Any] = {output.id: 1.0}
    for node in reversed(forward):
        g = adjoints.get(node.id)
        if g is None or node.is_leaf:
            continue
        args = [values[a.id] for a in node.args]
        for arg, term in zip(node.args, _vjp(node, g, args, values[node.id]), strict=True):
            if term is None or arg.op == CONST:
                continue
            term = _unbroadcast(term, np.shape(values[arg.id]))
            adjoints[arg.id] = adjoints[arg.id] + term if arg.id in adjoints else term
    return adjoints


def show(value: Any) -> str:
    """A short text for a label: a number, or an array's length and range."""
    if value is None or isinstance(value, (bool, tuple)):
        return repr(value)
    array = np.asarray(value)
    if array.ndim == 0:
        return f"{float(array):.4g}"
    return f"[{array.size}] {array.min():.3g} .. {array.max():.3g}"


def to_dot(nodes: list[Node], labels: dict[int, str], fills: dict[int, str], title: str) -> str:
    """Graphviz text in the style of srcgrad's own `to_dot`, with the labels given.

    A constant is drawn once per use, beside its user, so that a `2` used by six operations
    does not pull six edges across the picture; `axis=None` and `keepdims=False` are left out.
    """
    lines = [f'digraph "{title}" {{', "  rankdir=BT;",
             '  node [shape=box, fontname="Helvetica", fontsize=11];']
    for node in nodes:
        if node.op == CONST:
            continue
        style = f', style=filled, fillcolor="{fills[node.id]}"' if node.id in fills else ""
        lines.append(f'  n{node.id} [label="{_escape(labels[node.id])}"{style}];')
        for position, arg in enumerate(node.args):
            edge = f' [label="{position}"]' if len(node.args) > 1 else ""
            source = f"n{arg.id}"
            if arg.op == CONST:
                if arg.value is None or arg.value is False:
                    continue
                source = f"c{arg.id}_{node.id}"
                lines.append(f'  {source} [label="{_escape(repr(arg.value))}", shape=plaintext];')
            lines.append(f"  {source} -> n{node.id}{edge};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def title_of(node: Node) -> str:
    if node.op == CONST:
        return repr(node.value)
    if node.is_leaf:
        return str(node.hint)
    op = node.attrs[0].name if node.op == "call" and node.attrs else node.op
    return f"{op} {node.hint}" if node.hint else op


def render(dot_path: Path) -> list[Path]:
    """SVG and PNG from DOT with Graphviz; nothing (with a note) when `dot` is not installed."""
    dot = shutil.which("dot")
    if dot is None:
        print(f"Graphviz `dot` not found: SVG of {dot_path.name} skipped "
              f"(install graphviz, or paste the .dot into any Graphviz viewer)")
        return []
    written = []
    for kind in ("svg", "png"):
        path = dot_path.with_suffix(f".{kind}")
        subprocess.run([dot, f"-T{kind}", "-Gdpi=80", str(dot_path), "-o", str(path)],
                       check=True)
        print(f"wrote {path}")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> dict:
    options = parser(__doc__).parse_args(argv)
    out = output_dir(options.out, "graph")
    x, y = make_data()
    arguments = {"x": x, "y": y, **START}
    loss, grads = peak_loss(x, y, *(START[n] for n in NAMES))
    fg = peak_loss.graph
    namespace = peak_loss.__wrapped__.__globals__
    everything = fg.nodes
    values = evaluate(everything, arguments, namespace)
    forward = [n for n in everything if n.id < fg.first_adjoint_id]
    adjoints = reverse_sweep(forward, fg.output, values)

    gap = 0.0
    print(f"loss at the start: generated code {float(loss):.10f}, graph "
          f"{float(values[fg.output.id]):.10f}")
    print(f"{'parameter':10}{'generated':>14}{'graph':>14}{'reverse sweep':>15}")
    params = {n.value: n for n in forward if n.op == PARAM}
    for name in NAMES:
        generated = float(getattr(grads, name))
        from_graph = float(values[fg.grads[name].id])
        swept = float(adjoints[params[name].id])
        gap = max(gap, abs(from_graph - generated), abs(swept - generated))
        print(f"{name:10}{generated:14.8f}{from_graph:14.8f}{swept:15.8f}")
    print(f"largest disagreement: {gap:.1e}")

    labels = {}
    for node in forward:
        text = f"{title_of(node)}\nvalue {show(values[node.id])}"
        if node.op != CONST and node.id in adjoints:
            text += f"\nadjoint {show(adjoints[node.id])}"
        labels[node.id] = text if node.op != CONST else title_of(node)
    fills = {n.id: "#cfe8ff" if n.value in NAMES else "#eeeeee" for n in forward
             if n.op == PARAM}  # parameters blue, data grey
    fills[fg.output.id] = "#c8f0c8"
    dot_path = out / "peak_loss.dot"
    dot_path.write_text(to_dot(forward, labels, fills, "peak_loss: values and adjoints"))
    print(f"wrote {dot_path}")
    files = [dot_path]

    full_labels = {n.id: (title_of(n) if n.op == CONST else
                          f"{title_of(n)}\n{show(values[n.id])}") for n in everything}
    full_fills = dict(fills)
    for node in everything:
        if node.id >= fg.first_adjoint_id and not node.is_leaf:
            full_fills[node.id] = "#ffe0b0"
    for name, node in fg.grads.items():
        full_labels[node.id] = f"d_{name}\n{show(values[node.id])}"
    full_path = out / "peak_loss_adjoints.dot"
    full_path.write_text(to_dot(everything, full_labels, full_fills,
                                "peak_loss: forward and adjoint nodes"))
    print(f"wrote {full_path}")
    files.append(full_path)
    files += render(dot_path) + render(full_path)

    summary = {"loss": float(loss), "gradient_gap": gap, "nodes": len(everything),
               "forward_nodes": len(forward), "svg": shutil.which("dot") is not None,
               "files": [f.name for f in files]}
    write_summary(out, summary)
    return summary


if __name__ == "__main__":
    main()
