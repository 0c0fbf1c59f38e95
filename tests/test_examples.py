"""The README's demo runs and shows what it promises: values, derivatives, generated code."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_mixed_sine_demo_prints_values_derivatives_and_source():
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "mixed_sine.py"), "--quick"],
                            capture_output=True, text=True, check=False, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    rows = []
    for line in result.stdout.splitlines():
        fields = line.split()
        try:
            numbers = [float(f) for f in fields]
        except ValueError:
            continue
        if len(numbers) == 4:  # a row of the table: a, value, d/da, by hand
            rows.append(numbers)
    assert len(rows) == 5
    for a, value, derivative, by_hand in rows:
        # `a` is printed to 4 decimals: the value is checked to what that rounding allows, and
        # the derivative against the demo's independent `math` column, to the printed digits.
        assert abs(value - (math.sin(a) + 0.2 * math.sin(5 * a))) < 1e-3
        assert abs(derivative - by_hand) <= 1e-8
    assert "deviation from the hand-derived derivative = 0.0e+00" in result.stdout
    assert "def mixed_sine(a):" in result.stdout
    assert "d_a = math.cos(a_times_5) + math.cos(a)" in result.stdout
