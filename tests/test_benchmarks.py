"""The side-by-side benchmark (``python -m benchmarks``) runs and accounts for every row.

Timings are never asserted: they belong to the machine. What is asserted is the report's
structure: every workload is there, and every row either passed its gradient check and has a
ratio to the hand-written baseline, or says why it was skipped. Peers missing from the
environment (CI installs only ``.[test]``: autograd, no JAX, torch, micrograd or Tangent) must
show up as skipped rows, never as errors.

srcgrad, the baselines and autograd (part of the test extra) must never disagree with the
hand-written gradients. Another peer may: Tangent 0.4.0 returns a per-sample array as the
gradient of a scalar divisor (``/ sigma ** 2``), and the benchmark's job is to report that as a
MISMATCH row, with what differs, rather than to time it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = ("W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8 (W2)", "W8 (W3)")
MUST_AGREE = ("hand-written (NumPy/math)", "plain function call (value only)", "srcgrad",
              "autograd")


def test_quick_json_report_accounts_for_every_row():
    result = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--json"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout)

    tables = {table["key"]: table["rows"] for table in report["workloads"]}
    assert tuple(tables) == WORKLOADS
    for key, rows in tables.items():
        tools = [row["tool"] for row in rows]
        assert tools[0] == "hand-written (NumPy/math)" and "srcgrad" in tools, key
        assert rows[0]["status"] == "ok" and rows[0]["ratio"] == 1.0, key
        for row in rows:
            where = f"{key} {row['tool']}: {row}"
            assert row["status"] in ("ok", "skipped", "mismatch"), where
            if row["status"] == "ok":
                assert row["check"] == "pass", where
                assert isinstance(row["ratio"], float) and row["ratio"] > 0, where
            else:
                assert isinstance(row["reason"], str) and row["reason"], where
            if row["tool"] in MUST_AGREE:
                assert row["status"] != "mismatch", where

    # srcgrad runs every workload but W7's loop (until loops land), and judges its targets.
    for key, rows in tables.items():
        ours = next(row for row in rows if row["tool"] == "srcgrad")
        if key == "W7" and ours["status"] == "skipped":
            assert ours["reason"].startswith("srcgrad: "), ours
            continue
        assert ours["status"] == "ok", ours
        assert (ours["met"] is None) == (key == "W7"), ours
    mismatched = {(key, row["tool"]) for key, rows in tables.items() for row in rows
                  if row["status"] == "mismatch"}
    assert len(report["mismatches"]) == len(mismatched)
