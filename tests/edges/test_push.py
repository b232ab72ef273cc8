"""app/edges/push.py without HTTP or a destination: what a push delivery is answered, read
from the outcome table for every kind of failure, and its typed reports serialised last."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import app.edges.push as push
from app.edges.events import GcsObjectEvent
from app.ops.service import RunReport, RunRequest, RunService
from core.errors import (
    BadDataError,
    DeadLetterUnavailableError,
    FerryError,
    ModelFailedError,
    ModelUnavailableError,
    SourceUnavailableError,
    outcome_of,
)
from tests.helpers import duckdb_settings, write_catalog

PIPELINES = """
pipelines:
  - {name: people, source: {uri: "gs://ferry-in/people/*.csv"}, destination: {table: people}}
"""


def report(request: RunRequest, status: str = "succeeded") -> RunReport:
    made = RunReport(request.run_id, request.pipeline, request.trigger, "duckdb", "ferry")
    return made.finish("succeeded" if status == "succeeded" else "failed")


def service_answering(tmp_path: Path, failure: FerryError | None) -> RunService:
    service = RunService(duckdb_settings(tmp_path), write_catalog(tmp_path, PIPELINES))

    def execute(request: RunRequest) -> RunReport:
        if failure is None:
            return report(request)
        failure.report = report(request, "failed")
        raise failure

    service.execute = execute  # type: ignore[method-assign]
    return service


def finalized(name: str = "people/a.csv") -> GcsObjectEvent:
    return GcsObjectEvent("ferry-in", name, 7, "OBJECT_FINALIZE", message_id="m-1")


@pytest.fixture
def parked(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Codes of the errors parked on the dead-letter topic."""
    codes: list[str] = []

    def dead_letter(topic: Any, data: bytes, attributes: Any, error: FerryError) -> bool:
        codes.append(error.code)
        return True

    monkeypatch.setattr(push, "dead_letter", dead_letter)
    return codes


def test_a_loaded_object_is_acknowledged_with_its_typed_report(
    tmp_path: Path, parked: list[str]
) -> None:
    outcome = push.handle_object_event(service_answering(tmp_path, None), finalized(), b"", {})
    assert (outcome.status, outcome.http_status, parked) == ("loaded", 200, [])
    assert isinstance(outcome.reports[0], RunReport)
    body = outcome.body()
    assert body["reports"][0]["pipeline"] == "people"
    assert body["reports"][0]["files_loaded"] == 0


@pytest.mark.parametrize(
    ("failure", "status", "http_status", "parked_codes"),
    [
        (SourceUnavailableError("503 from the bucket"), "retry", 503, []),
        (ModelUnavailableError("model 'm': lock"), "retry", 503, []),
        (ModelFailedError("model 'm': bad SQL"), "model_failed", 200, []),
        (BadDataError("row 3 is ragged"), "dead_lettered", 200, ["bad_data"]),
    ],
    ids=["retriable", "model-unavailable", "model-failed", "terminal"],
)
def test_a_failed_run_is_answered_as_the_outcome_table_says(
    tmp_path: Path,
    parked: list[str],
    failure: FerryError,
    status: str,
    http_status: int,
    parked_codes: list[str],
) -> None:
    outcome = push.handle_object_event(service_answering(tmp_path, failure), finalized(), b"", {})
    table = outcome_of(failure)
    assert (outcome.status, outcome.http_status, parked) == (status, http_status, parked_codes)
    assert outcome.http_status == table.push_status
    assert bool(parked) == table.dead_letter
    assert outcome.body()["error"]["code"] == failure.code
    assert [r.status for r in outcome.reports] == ["failed"], "the failed run's report is kept"


def test_a_terminal_failure_that_cannot_be_parked_is_nacked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unavailable(*args: Any) -> bool:
        raise DeadLetterUnavailableError("dead-letter topic unreachable")

    monkeypatch.setattr(push, "dead_letter", unavailable)
    failure = BadDataError("row 3 is ragged")
    outcome = push.handle_object_event(service_answering(tmp_path, failure), finalized(), b"", {})
    assert (outcome.status, outcome.http_status) == ("retry", 503)
    assert outcome.body()["error"]["code"] == "dead_letter_unavailable"


@pytest.mark.parametrize(
    ("event", "detail"),
    [
        (finalized("elsewhere/a.csv"), "no pipeline is configured"),
        (GcsObjectEvent("ferry-in", "people/a.csv", 7, "OBJECT_METADATA_UPDATE"), "is not loaded"),
        (
            GcsObjectEvent("ferry-in", "people/a.csv", 7, "OBJECT_DELETE"),
            "no pipeline removes rows",
        ),
    ],
    ids=["unmatched", "metadata-update", "delete-not-asked-for"],
)
def test_events_that_load_nothing_are_ignored_and_acknowledged(
    tmp_path: Path, parked: list[str], event: GcsObjectEvent, detail: str
) -> None:
    outcome = push.handle_object_event(service_answering(tmp_path, None), event, b"", {})
    assert (outcome.status, outcome.http_status, parked) == ("ignored", 200, [])
    assert detail in str(outcome.detail)


def test_a_path_traversal_name_is_refused_and_parked(tmp_path: Path, parked: list[str]) -> None:
    event = finalized("people/../../etc/a.csv")
    outcome = push.handle_object_event(service_answering(tmp_path, None), event, b"", {})
    assert (outcome.status, outcome.http_status, parked) == (
        "dead_lettered",
        200,
        ["request_invalid"],
    )
