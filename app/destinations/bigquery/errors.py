"""Which BigQuery exceptions mean what. The same function names as duckdb/errors.py; the
registry hands both to core.errors, which tries them on every exception it classifies
(before its own table of HTTP statuses and Google reasons).

The API's own errors (google.api_core) are HTTP answers, recognised by core for every Google
client; what is BigQuery's alone is the DB-API wrapper dlt's SQL client raises, and the
answers that say other writers of the same table got in the way: 400s whose reason
(`resourcesExceeded`, `invalidQuery`) core's table would call terminal, but which pass once
those writers are done."""

from __future__ import annotations

from typing import Final

from core.errors import DestinationUnavailableError, FerryError, Party, describe, google_reason

_OTHER_WRITERS: Final = (
    # 400 resourcesExceeded: at most 20 mutating DML statements queue per table
    "Too many DML statements outstanding against table",
    # 400 invalidQuery "Could not serialize access to table T due to concurrent update", and
    # an aborted multi-statement transaction, "Transaction is aborted due to concurrent update"
    "due to concurrent update",
)
"""Message texts of BigQuery's answers about other writers of the table (a reason alone
cannot tell them: another resourcesExceeded is a query too big for its slot, terminal)."""


def recognise(error: BaseException, party: Party) -> FerryError | None:
    """A full DML queue, a DML conflict or an aborted transaction: retriable (503 / nack /
    exit 1), whether the API error itself arrives or only its text (dlt keeps a failed
    job's message, not always its exception)."""
    from dlt.common.exceptions import TerminalException
    from google.api_core import exceptions as google_errors

    if party is not Party.DESTINATION or not _other_writers(str(error)):
        return None
    if isinstance(error, google_errors.GoogleAPICallError):
        reason = google_reason(error)
        answered = f"{error.code} {reason}" if reason else str(error.code)
        return DestinationUnavailableError(
            f"destination answered {answered} (other writers of the table; retry): "
            f"{describe(error)}"
        )
    if isinstance(error, TerminalException):
        return DestinationUnavailableError(
            f"other writers of the table got in the way (retry): {describe(error)}"
        )
    return None


def _other_writers(text: str) -> bool:
    return any(message in text for message in _OTHER_WRITERS)


def unwrap(error: BaseException) -> BaseException | None:
    """The API exception inside a google.cloud.bigquery.dbapi error (it is put in args[0])."""
    from google.cloud.bigquery.dbapi import exceptions as bigquery_dbapi

    if isinstance(error, bigquery_dbapi.Error) and error.args:
        inner = error.args[0]
        return inner if isinstance(inner, BaseException) else None
    return None
