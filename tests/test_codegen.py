"""Properties of the generated code and the graph: sharing, folding, no dead code, readability."""

from __future__ import annotations

import ast
import inspect
import math
import subprocess
import sys
import traceback

import numpy as np
import pytest

from srcgrad import grad
from srcgrad.functions import exp, log, sin

K = 0.5


def paths(fn):
    """The float-path and array-path statement lists of a generated function."""
    module = ast.parse(fn.raw_source)
    inner = next(
        n for n in ast.walk(module) if isinstance(n, ast.FunctionDef) and n.name == fn.__name__
    )
    scalar_if = next((s for s in inner.body if isinstance(s, ast.If)), None)
    result = {"array": [s for s in inner.body if not isinstance(s, (ast.If, ast.Expr))]}
    if scalar_if is not None:
        result["float"] = scalar_if.body[0].body  # if -> try -> body
    return result


def test_common_subexpressions_are_computed_once():
    @grad
    def f(a, b):
        return (a - b) * (a - b) + exp(a - b)

    for statements in paths(f).values():
        text = "\n".join(ast.unparse(s) for s in statements)
        assert text.count("a - b") == 1, text
        assert text.count("exp(") == 1, text  # d exp / dx reuses the forward exp
    assert f(3.0, 1.0)[1].a == pytest.approx(2 * 2.0 + math.exp(2.0))


def test_constants_are_folded():
    @grad
    def f(a):
        return 2 * math.pi * a + math.log(4.0) * 3

    source = f.raw_source
    assert "math.pi" not in source.split('"""')[-1].split("#")[0] or str(2 * math.pi) in source
    assert repr(2 * math.pi) in source
    assert repr(math.log(4.0) * 3) in source
    assert f(1.0) == (pytest.approx(2 * math.pi + math.log(4.0) * 3), (pytest.approx(2 * math.pi),))


def test_unused_statements_are_dropped():
    @grad
    def f(a):
        unused = exp(a) * 7.0  # noqa: F841 - dead on purpose
        also_unused = log(a)  # noqa: F841
        return a * a

    assert "exp(" not in f.raw_source and "log(" not in f.raw_source
    assert f(3.0) == (9.0, (6.0,))


def assigned_and_loaded(statements):
    assigned, loaded = [], set()
    for stmt in statements:
        for node in ast.walk(stmt):
            if isinstance(node, ast.Name):
                (
                    assigned.append(node.id)
                    if isinstance(node.ctx, ast.Store)
                    else loaded.add(node.id)
                )
    return assigned, loaded


@pytest.mark.parametrize(
    "body",
    [
        "c = sin(a) * b\n    d = c * c + tanh(c)\n    return d / (1 + b * b)",
        "a, b = b, a\n    a += b\n    a *= a\n    return exp(a - b) + K * a",
        "return sin(a) + 0.2 * sin(a * 5) + b",
    ],
)
def test_every_generated_statement_is_used(tmp_path, body):
    module = tmp_path / "mod_dead.py"
    module.write_text(
        f"from srcgrad.functions import sin, tanh, exp\nK = 0.5\ndef f(a, b):\n    {body}\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        import mod_dead

        f = grad(mod_dead.f)
        f(0.3, 0.4)
        for name, statements in paths(f).items():
            assigned, loaded = assigned_and_loaded(statements)
            params = {"a", "b"}
            dead = [n for n in assigned if n not in loaded and n not in params and n != "_"]
            assert not dead, f"{name} path assigns unused names {dead}:\n{f.raw_source}"
            computed = [n for n in assigned if n not in params]
            assert len(computed) == len(set(computed)), f"a name is assigned twice in {name}"
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("mod_dead", None)


def test_names_and_comments_point_to_the_source():
    @grad
    def loss(mu, sigma):
        diff = 1.5 - mu
        scaled = diff / sigma
        return scaled * scaled

    source = loss.source
    first = inspect.getsourcelines(loss.__wrapped__)[1]  # the decorator's line
    assert f"# line {first + 2}: diff = 1.5 - mu" in source
    assert f"# line {first + 4}, backward: return scaled * scaled" in source
    for name in ("diff =", "scaled =", "d_scaled =", "d_diff", "d_mu", "d_sigma"):
        assert name in source, name
    assert loss(1.0, 2.0)[1] == (pytest.approx(-0.25), pytest.approx(-0.0625))  # by hand


def test_source_is_black_formatted_and_raw_source_compiles():
    import black

    source = mixed(0.1) and mixed.source
    assert black.format_str(source, mode=black.Mode()) == source
    compile(mixed.raw_source, "<test>", "exec")
    # Both paths: math on floats; on arrays srcgrad.functions.sin (as `sg.sin`), because the
    # source spelled it so and it keeps Python floats Python floats where np.sin would not.
    assert "math.sin(" in source and "sg.sin(a)" in source


@grad
def mixed(a):
    return sin(a) + 0.2 * sin(a * 5)


def test_generated_code_is_registered_for_tracebacks_and_inspect():
    @grad
    def f(a):
        return a / (a - a)  # fails inside the generated code on purpose

    with pytest.raises(FloatingPointError) as info, np.errstate(all="raise"):
        f(np.float64(1.0))  # a NumPy scalar takes the array path; errstate makes 0/0 raise
    frames = traceback.extract_tb(info.tb)
    generated = [fr for fr in frames if fr.filename.startswith("<srcgrad:")]
    assert generated and generated[-1].line, "the traceback shows the generated line"
    assert "def f(a):" in inspect.getsource(f.function)


def test_black_is_imported_only_when_source_is_read():
    code = (
        "import sys, srcgrad\n"
        "from srcgrad.functions import sin\n"
        "import tests.test_codegen as m\n"
        "m.mixed(0.3)\n"
        "assert 'black' not in sys.modules, 'black imported too early'\n"
        "m.mixed.source\n"
        "assert 'black' in sys.modules\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.stdout.strip() == "ok", result.stderr


def test_graph_to_dot_labels_operations_and_source_names():
    @grad
    def f(a, b):
        diff = a - b
        return diff * diff

    dot = f.graph.to_dot()
    assert dot.startswith('digraph "f" {') and dot.rstrip().endswith("}")
    assert 'label="param a"' in dot and 'label="sub\\ndiff"' in dot
    assert dot.count('label="sub') == 1  # hash-consed: one node for both uses of diff
    forward_only = f.graph.to_dot(adjoints=False)
    assert "#ffe0b0" not in forward_only and "#ffe0b0" in dot


def test_no_temporary_files_are_written(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    @grad
    def f(a):
        return a * a

    f(2.0)
    assert f.source
    assert list(tmp_path.iterdir()) == []
    assert f.function.__code__.co_filename.startswith("<srcgrad: f from ")
