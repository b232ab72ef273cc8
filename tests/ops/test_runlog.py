"""app/ops/runlog.py: one `_ferry_runs` row per run (merged on run_id), read back newest first
and filtered; the row's typed columns come from the report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.ops.runlog import RunLog, run_row
from tests.helpers import duckdb_settings


def report(run_id: str, status: str, started_at: str, **extra: Any) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "pipeline": "people",
        "status": status,
        "trigger": "http",
        "started_at": started_at,
        "seconds": {"total": 1.25},
        **extra,
    }


def test_a_row_carries_the_report_and_its_error_code() -> None:
    failed = report("r-1", "failed", "2026-12-01T00:00:00+00:00", error={"code": "bad_data"})
    row = run_row(failed)
    assert (row["run_id"], row["status"], row["error_code"]) == ("r-1", "failed", "bad_data")
    assert (row["seconds_total"], row["rows_loaded"]) == (1.25, 0)


def test_runs_are_read_back_newest_first_filtered_and_merged(tmp_path: Path) -> None:
    log = RunLog(duckdb_settings(tmp_path))
    assert log.record(report("r-1", "succeeded", "2026-12-01T00:00:00+00:00"))
    assert log.record(report("r-2", "failed", "2026-12-02T00:00:00+00:00"))
    assert log.record(report("r-2", "failed", "2026-12-02T00:00:00+00:00")), "a merge"
    assert [r["run_id"] for r in log.recent()] == ["r-2", "r-1"]
    assert [r["run_id"] for r in log.recent(status="succeeded")] == ["r-1"]
    assert log.get("r-2") is not None and log.get("r-3") is None
