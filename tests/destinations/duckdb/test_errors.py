"""DuckDB's exceptions as classify() sees them once the registry has handed core the
engine's recognition (no I/O: each exception is built as the library builds it)."""

from __future__ import annotations

import traceback

import duckdb
from dlt.destinations.exceptions import DatabaseTransientException
from dlt.load.exceptions import LoadClientJobRetry

import app.destinations.registry  # noqa: F401 - registers each engine's errors with core
from core.errors import DestinationRejectedError, DestinationUnavailableError, classify
from tests.helpers import assert_clean, raised, step_failed


def test_a_destination_out_of_memory_is_terminal_and_has_no_traceback() -> None:
    """dlt retries the job and then raises LoadClientJobRetry, whose message carries the
    job's formatted traceback (install paths)."""
    oom = raised(duckdb.OutOfMemoryException("Out of Memory Error: failed to allocate 16 KiB"))
    failed_message = "".join(traceback.format_exception(oom))
    retry = LoadClientJobRetry("123.4", "orders.abc.parquet", 5, 5, failed_message, oom)
    error = classify(step_failed("load", retry))
    assert isinstance(error, DestinationRejectedError) and not error.retriable
    assert "out of memory" in error.message
    assert_clean(error)


def test_a_duckdb_lock_conflict_is_retriable_without_reading_the_message() -> None:
    locked = duckdb.IOException('IO Error: Could not set lock on file "x.duckdb"')
    assert isinstance(classify(DatabaseTransientException(locked)), DestinationUnavailableError)
