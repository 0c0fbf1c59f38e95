"""Regenerate the generated parts of the docs: `python docs/build_tables.py`.

The functions table in docs/functions.md comes from the registry; the generated code shown in
README.md comes from transforming examples/mixed_sine.py, and the fused loop shown in
docs/fused.md from examples/fused_fit.py (this needs Numba). tests/test_docs.py fails when a doc
no longer matches what this script would write.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from srcgrad import rules

BEGIN = "<!-- BEGIN GENERATED: srcgrad.rules.markdown_table() -->\n"
END = "<!-- END GENERATED -->\n"
SOURCE_BEGIN = "<!-- BEGIN GENERATED: print(mixed_sine.source) -->\n"
FUNCTIONS = Path(__file__).with_name("functions.md")
ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
FUSED = Path(__file__).with_name("fused.md")
FUSED_BEGIN = "<!-- BEGIN GENERATED: print(fused_loss.source) -->\n"


def _replace(text: str, begin: str, body: str) -> str:
    head, rest = text.split(begin, 1)
    _, tail = rest.split(END, 1)
    return head + begin + body + END + tail


def render(text: str) -> str:
    """``text`` with the generated block replaced by the registry's current table."""
    return _replace(text, BEGIN, rules.markdown_table())


def _example(name: str) -> object:
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def mixed_sine_source() -> str:
    """The generated source of examples/mixed_sine.py, with a machine-independent path."""
    module = _example("mixed_sine")
    module.mixed_sine(0.5)
    return module.mixed_sine.source.replace(str(ROOT / "examples"), "examples")


def fused_source() -> str:
    """The fused loop of examples/fused_fit.py (float parameters, array data)."""
    import sys

    sys.path.insert(0, str(ROOT / "examples"))  # the example imports its sibling `common`
    try:
        module = _example("fused_fit")
    finally:
        sys.path.remove(str(ROOT / "examples"))
    x, y = module.make_data(100)
    module.fused_loss(x, y, 0.1, 1.0, 1.0)
    return module.fused_loss.source.replace(str(ROOT / "examples"), "examples")


def render_fused(text: str) -> str:
    """docs/fused.md with the printed fused loop brought up to date."""
    return _replace(text, FUSED_BEGIN, "```python\n" + fused_source() + "```\n")


def render_readme(text: str) -> str:
    """README.md with the printed generated code of the demo brought up to date."""
    return _replace(text, SOURCE_BEGIN, "```python\n" + mixed_sine_source() + "```\n")


if __name__ == "__main__":
    FUNCTIONS.write_text(render(FUNCTIONS.read_text()))
    README.write_text(render_readme(README.read_text()))
    FUSED.write_text(render_fused(FUSED.read_text()))
    print(f"wrote {FUNCTIONS}, {README} and {FUSED}")
