"""Generated documentation matches the code it documents."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from srcgrad import rules

DOCS = Path(__file__).resolve().parent.parent / "docs"


def load_builder():
    spec = importlib.util.spec_from_file_location("build_tables", DOCS / "build_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_functions_table_is_current():
    builder = load_builder()
    text = (DOCS / "functions.md").read_text()
    assert builder.render(text) == text, "run: python docs/build_tables.py"


def test_readme_shows_the_current_generated_code():
    builder = load_builder()
    text = (DOCS.parent / "README.md").read_text()
    assert builder.render_readme(text) == text, "run: python docs/build_tables.py"


def test_fused_doc_shows_the_current_fused_loop():
    pytest.importorskip("numba")
    builder = load_builder()
    text = (DOCS / "fused.md").read_text()
    assert builder.render_fused(text) == text, "run: python docs/build_tables.py"


def test_table_lists_every_primitive_with_its_spellings():
    rows = {name: spellings for name, spellings, _ in rules.derivative_table()}
    assert set(rows) == set(rules.primitive_names()) | set(rules.primitive_names("array"))
    assert "numpy.sum" in rows["sum"] and "operator.matmul" in rows["matmul"]
    assert "numpy.sin" in rows["sin"] and "math.sin" in rows["sin"]
    assert "builtins.abs" in rows["abs"]
    assert rules.primitive_for(np.arctan2).name == "arctan2"
