"""Regenerate the generated parts of the docs from the registry: `python docs/build_tables.py`.

tests/test_docs.py fails when a doc no longer matches what this script would write.
"""

from __future__ import annotations

from pathlib import Path

from srcgrad import rules

BEGIN = "<!-- BEGIN GENERATED: srcgrad.rules.markdown_table() -->\n"
END = "<!-- END GENERATED -->\n"
FUNCTIONS = Path(__file__).with_name("functions.md")


def render(text: str) -> str:
    """``text`` with the generated block replaced by the registry's current table."""
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return head + BEGIN + rules.markdown_table() + END + tail


if __name__ == "__main__":
    FUNCTIONS.write_text(render(FUNCTIONS.read_text()))
    print(f"wrote {FUNCTIONS}")
