"""Which BigQuery exceptions mean what. The same function names as duckdb/errors.py; the
registry hands both to core.errors, which tries them on every exception it classifies.

The API's own errors (google.api_core) are HTTP answers, recognised by core for every Google
client; what is BigQuery's alone is the DB-API wrapper dlt's SQL client raises."""

from __future__ import annotations

from core.errors import FerryError, Party


def recognise(error: BaseException, party: Party) -> FerryError | None:
    """Nothing of BigQuery's own beyond the Google API errors core knows."""
    return None


def unwrap(error: BaseException) -> BaseException | None:
    """The API exception inside a google.cloud.bigquery.dbapi error (it is put in args[0])."""
    from google.cloud.bigquery.dbapi import exceptions as bigquery_dbapi

    if isinstance(error, bigquery_dbapi.Error) and error.args:
        inner = error.args[0]
        return inner if isinstance(inner, BaseException) else None
    return None
