"""app/ops/run_events.py: the event of a run is read from its typed report (pure); every
run, succeeded or failed, is recorded and told; a publish failure never fails the run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import app.ops.run_events as run_events
from app.ops.runlog import RunLog
from app.run.report import RunReport
from core.errors import BadDataError
from tests.helpers import duckdb_settings


def finished(status: str = "succeeded") -> RunReport:
    report = RunReport("r-1", "people", "pubsub", "duckdb", "ferry", tables={"people": 3})
    report.rows_loaded = 3
    return report.finish("succeeded" if status == "succeeded" else "failed")


def test_the_event_of_a_failed_run_names_its_error() -> None:
    error = BadDataError("row 3 is ragged", pipeline="people")
    event = run_events.run_event(finished("failed"), error)
    assert (event["run_id"], event["status"], event["rows_loaded"]) == ("r-1", "failed", 3)
    assert event["error"] == {
        "code": "bad_data",
        "message": "row 3 is ragged",
        "recovery": "terminal",
    }
    assert run_events.event_attributes(event) == {
        "pipeline": "people",
        "status": "failed",
        "run_id": "r-1",
        "error_code": "bad_data",
    }


def test_a_publish_failure_is_logged_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    class Unreachable:
        def publish(self, *args: Any, **kwargs: Any) -> Any:
            raise ConnectionError("no route")

    monkeypatch.setattr(run_events, "_publisher", lambda: Unreachable())
    assert run_events.publish_run_event("projects/p/topics/runs", finished()) is None


def test_a_failure_is_recorded_with_its_report_and_one_without_a_run_is_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = duckdb_settings(tmp_path, run_events_topic="projects/p/topics/runs")
    told: list[tuple[str, str | None]] = []
    monkeypatch.setattr(
        run_events,
        "publish_run_event",
        lambda topic, report, error=None: told.append((report.run_id, error and error.code)),
    )

    def failing_run() -> RunReport:
        failure = BadDataError("row 3 is ragged")
        failure.report = finished("failed")
        raise failure

    with pytest.raises(BadDataError):
        run_events.run_and_tell(settings, failing_run)
    run_events.after_run(settings, BadDataError("no run started"))
    assert told == [("r-1", "bad_data")]
    assert [r["status"] for r in RunLog(settings).recent()] == ["failed"]
