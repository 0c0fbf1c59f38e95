"""benchmarks/bench_higher.py runs in quick mode and accounts for every row and every check.

Timings are never asserted: they belong to the machine. What is asserted is that the script
runs, that each workload has every row it promises with a positive ratio (autograd is part of
the test extra, so its rows must be timed, not skipped), and above all that every agreement
check passed: a benchmark of wrong Hessians would be worthless.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINES = ("fd", "grad", "direct", "autograd")  # per workload, in the script's order
CHECKS = {
    ("hessian", "central differences of srcgrad's gradient"),
    ("hessian", "autograd.hessian"),
    ("hvp", "srcgrad's gradient (the hvp's own gradient output)"),
    ("hvp", "central differences of srcgrad's gradient along v"),
    ("hvp", "autograd.hessian_vector_product"),
}


def test_quick_json_report_has_every_row_and_every_check_passed():
    result = subprocess.run([sys.executable, "benchmarks/bench_higher.py", "--quick", "--json"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout)

    assert report["mode"] == "quick"
    assert report["machine"]["blas_threads_env"]["OPENBLAS_NUM_THREADS"] is not None
    checks = {(c["workload"], c["against"]): c for c in report["checks"]}
    assert set(checks) == CHECKS
    failed = [c for c in report["checks"] if not c["passed"]]
    assert not failed, failed
    assert report["checks_failed"] == []
    for check in report["checks"]:
        assert check["max_error_over_max_entry"] <= check["rtol"] * 2, check

    rows = report["rows"]
    assert len(rows) == 2 * len(BASELINES)
    for row in rows:
        assert isinstance(row["ratio"], float) and row["ratio"] > 0, row
        assert row["srcgrad_s"] > 0 and row["baseline_s"] > 0, row
    for workload in ("hessian", "hvp"):
        detail = report["details"][workload]
        assert tuple(detail["median_ratio"]) == BASELINES, detail
        assert set(detail["min_s"]) == {"srcgrad", *BASELINES}, detail
    assert report["details"]["hessian"]["n_params"] == 10
    assert report["details"]["hvp"]["n_params"] == 1000
