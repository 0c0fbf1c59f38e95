"""The code base stays `ruff` clean (configuration in pyproject.toml)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is part of the test extra")
def test_ruff_clean():
    folders = ("srcgrad", "tests", "benchmarks", "examples", "docs")
    targets = [folder for folder in folders if (ROOT / folder).exists()]
    result = subprocess.run(["ruff", "check", *targets], cwd=ROOT, capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
