"""BigQuery's exceptions as classify() sees them once the registry has handed core the
engine's recognition (no I/O: each exception is built as the library builds it)."""

from __future__ import annotations

from dlt.destinations.exceptions import DatabaseTerminalException
from google.api_core import exceptions as google_errors
from google.cloud.bigquery.dbapi import exceptions as bigquery_dbapi

import app.destinations.registry  # noqa: F401 - registers each engine's errors with core
from core.errors import DestinationUnavailableError, classify
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
