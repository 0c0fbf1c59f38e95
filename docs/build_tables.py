"""Regenerate the generated parts of the docs: `python docs/build_tables.py`.

The functions table in docs/functions.md comes from the registry; the generated code shown in
README.md comes from transforming examples/mixed_sine.py. tests/test_docs.py fails when a doc
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


def _replace(text: str, begin: str, body: str) -> str:
    head, rest = text.split(begin, 1)
    _, tail = rest.split(END, 1)
    return head + begin + body + END + tail


def render(text: str) -> str:
    """``text`` with the generated block replaced by the registry's current table."""
    return _replace(text, BEGIN, rules.markdown_table())


def mixed_sine_source() -> str:
    """The generated source of examples/mixed_sine.py, with a machine-independent path."""
    spec = importlib.util.spec_from_file_location("mixed_sine", ROOT / "examples" / "mixed_sine.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.mixed_sine(0.5)
    return module.mixed_sine.source.replace(str(ROOT / "examples"), "examples")


def render_readme(text: str) -> str:
    """README.md with the printed generated code of the demo brought up to date."""
    return _replace(text, SOURCE_BEGIN, "```python\n" + mixed_sine_source() + "```\n")


if __name__ == "__main__":
    FUNCTIONS.write_text(render(FUNCTIONS.read_text()))
    README.write_text(render_readme(README.read_text()))
    print(f"wrote {FUNCTIONS} and {README}")
