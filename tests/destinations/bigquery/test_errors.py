"""BigQuery's exceptions as classify() sees them once the registry has handed core the
engine's recognition (no I/O: each exception is built as the library builds it)."""

from __future__ import annotations

import pytest
from dlt.destinations.exceptions import DatabaseTerminalException, DatabaseTransientException
from dlt.load.exceptions import LoadClientJobFailed, LoadClientJobRetry
from google.api_core import exceptions as google_errors
from google.cloud.bigquery.dbapi import exceptions as bigquery_dbapi

import app.destinations.registry  # noqa: F401 - registers each engine's errors with core
from core.errors import (
    DestinationRejectedError,
    DestinationUnavailableError,
    Party,
    SourceRejectedError,
    classify,
    outcome_of,
)
from tests.helpers import step_failed


def test_a_concurrent_create_409_already_exists_is_retriable() -> None:
    """Two first loads into a new table: the second CREATE gets 409 duplicate. dlt calls that
    reason terminal; acking it dead-letters a load that would pass on a retry."""
    conflict = google_errors.Conflict(
        "Already Exists: Table p:ferry.orders", errors=[{"reason": "duplicate"}]
    )
    wrapped = DatabaseTerminalException(bigquery_dbapi.DatabaseError(conflict))
    error = classify(step_failed("load", wrapped), pipeline="orders")
    assert isinstance(error, DestinationUnavailableError) and error.retriable
    assert error.pipeline == "orders"
    assert "409 duplicate" in error.message


OTHER_WRITERS = {
    "dml_queue": (
        "resourcesExceeded",
        "Resources exceeded during query execution: Too many DML statements outstanding "
        "against table p:ferry._ferry_objects, limit is 20.",
    ),
    "serialize": (
        "invalidQuery",
        "Could not serialize access to table p:ferry.accounts due to concurrent update",
    ),
    "aborted": (
        "invalidQuery",
        "Transaction is aborted due to concurrent update against table p:ferry.accounts",
    ),
}


@pytest.mark.parametrize("case", sorted(OTHER_WRITERS))
def test_answers_about_other_writers_are_retriable_however_dlt_wraps_them(case: str) -> None:
    """BigQuery answers 400 for a full DML queue, a DML conflict and an aborted transaction:
    passing conditions, so 503 / nack / exit 1, never a dead letter (they were terminal
    `destination_rejected`: a push was acked and its rows lost)."""
    reason, message = OTHER_WRITERS[case]
    answer = google_errors.BadRequest(message, errors=[{"reason": reason, "message": message}])
    # dlt calls these transient, retries the job, then gives up with LoadClientJobRetry
    transient = DatabaseTransientException(bigquery_dbapi.DatabaseError(answer))
    retry = LoadClientJobRetry("123.4", "accounts.abc.sql", 5, 5, str(answer), transient)
    # a job failure kept as text only (the client exception lost on the way)
    as_text = LoadClientJobFailed("123.4", "accounts.abc.sql", str(answer), RuntimeError())
    for raised_by_dlt in (answer, transient, retry, as_text):
        error = classify(step_failed("load", raised_by_dlt))
        assert isinstance(error, DestinationUnavailableError), (case, raised_by_dlt)
        outcome = outcome_of(error)
        assert (outcome.http_status, outcome.push_ack, outcome.exit_code) == (503, False, 1)
        assert "Traceback" not in error.message


def test_other_resources_exceeded_stay_terminal() -> None:
    """The same reason for a query too big for its slot: the retry needs the same again."""
    answer = google_errors.BadRequest(
        "Resources exceeded during query execution: The query could not be executed in the "
        "allotted memory.",
        errors=[{"reason": "resourcesExceeded"}],
    )
    assert isinstance(classify(answer), DestinationRejectedError)


def test_the_same_text_from_a_source_is_the_sources_answer() -> None:
    answer = google_errors.BadRequest("x due to concurrent update")
    assert isinstance(classify(answer, party=Party.SOURCE), SourceRejectedError)
