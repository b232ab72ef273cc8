"""Which DuckDB exceptions mean what. The same function names as bigquery/errors.py; the
registry hands both to core.errors, which tries them on every exception it classifies."""

from __future__ import annotations

from core.errors import (
    DestinationRejectedError,
    DestinationUnavailableError,
    FerryError,
    Party,
    describe,
)


def recognise(error: BaseException, party: Party) -> FerryError | None:
    """A FerryError for a DuckDB exception of a known type, else None."""
    import duckdb

    if isinstance(error, duckdb.OutOfMemoryException):
        return DestinationRejectedError(
            f"the destination ran out of memory on this load: {describe(error)}"
        )
    if isinstance(error, duckdb.IOException):
        # e.g. another process holds the database file's lock: a passing condition
        return DestinationUnavailableError(describe(error))
    return None


def unwrap(error: BaseException) -> BaseException | None:
    """DuckDB's exceptions wrap nothing (dlt's DatabaseException, which wraps them, is
    unwrapped by core)."""
    return None
