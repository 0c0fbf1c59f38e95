"""Shared test configuration: one reproducible hypothesis profile and a directory for programs.

Why a fixed profile: CI must run the same generated programs every time, so a red run can be
replayed exactly; `derandomize=True` derives the examples from the test's name instead of a seed,
and `database=None` stops an earlier local failure from changing what CI runs.
Set HYPOTHESIS_PROFILE=explore locally to search fresh random programs instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from programs import CHECKED

settings.register_profile(
    "ci",
    deadline=None,  # srcgrad transforms each program once; the first call is not a hot path
    derandomize=True,
    database=None,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "explore",
    deadline=None,
    derandomize=False,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def module_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where generated modules are written: srcgrad reads source with inspect.getsource."""
    return tmp_path_factory.mktemp("generated_programs")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if CHECKED:
        counts = ", ".join(f"{name}: {n}" for name, n in sorted(CHECKED.items()))
        total = sum(CHECKED.values())
        # Counts checks that passed, including re-runs while hypothesis shrinks a failure.
        terminalreporter.write_line(f"srcgrad programs checked: {total} ({counts})")
