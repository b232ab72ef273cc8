"""The one bridge from library exceptions to ferry's errors: the status/reason table, and
classify() on the exception types the pinned dlt, Google clients and requests raise (each
engine's own exceptions: tests/destinations/<engine>/test_errors.py).

No I/O: every exception is built as the library builds it.
"""

from __future__ import annotations

import errno
import traceback

import pytest
import requests
from dlt.common.schema.exceptions import DataValidationError
from dlt.destinations.exceptions import DatabaseTerminalException, DatabaseTransientException
from dlt.load.exceptions import LoadClientJobFailed
from google.api_core import exceptions as google_errors

from core.errors import (
    DestinationAccessDeniedError,
    DestinationRejectedError,
    DestinationUnavailableError,
    FerryError,
    Party,
    QuotaExceededError,
    RetriableError,
    SchemaContractError,
    SourceAccessDeniedError,
    SourceNotFoundError,
    SourceRejectedError,
    SourceUnavailableError,
    TransformError,
    classify,
    error_for_status,
    outcome_of,
)
from tests.helpers import assert_clean, raised, step_failed

# --- the table ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "reason", "source", "destination"),
    [
        (400, None, SourceRejectedError, DestinationRejectedError),
        (401, None, SourceAccessDeniedError, DestinationAccessDeniedError),
        (403, None, SourceAccessDeniedError, DestinationAccessDeniedError),
        (403, "accessDenied", SourceAccessDeniedError, DestinationAccessDeniedError),
        (403, "rateLimitExceeded", QuotaExceededError, QuotaExceededError),
        (403, "quotaExceeded", QuotaExceededError, QuotaExceededError),
        (403, "userRateLimitExceeded", QuotaExceededError, QuotaExceededError),
        (404, None, SourceNotFoundError, DestinationRejectedError),
        (408, None, SourceUnavailableError, DestinationUnavailableError),
        (409, None, SourceUnavailableError, DestinationUnavailableError),
        (409, "duplicate", SourceUnavailableError, DestinationUnavailableError),
        (410, None, SourceNotFoundError, DestinationRejectedError),
        (413, None, SourceRejectedError, DestinationRejectedError),
        (422, None, SourceRejectedError, DestinationRejectedError),
        (400, "resourcesExceeded", SourceRejectedError, DestinationRejectedError),
        (429, None, QuotaExceededError, QuotaExceededError),
        (500, None, SourceUnavailableError, DestinationUnavailableError),
        (500, "backendError", SourceUnavailableError, DestinationUnavailableError),
        (503, None, SourceUnavailableError, DestinationUnavailableError),
    ],
    ids=lambda value: str(value) if value is not None else "-",
)
def test_one_table_maps_status_and_reason_for_both_sides(
    status: int,
    reason: str | None,
    source: type[FerryError],
    destination: type[FerryError],
) -> None:
    assert error_for_status(status, reason, party=Party.SOURCE) is source
    assert error_for_status(status, reason, party=Party.DESTINATION) is destination


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
def test_retriable_statuses_are_nacked_and_exit_1(status: int) -> None:
    error = error_for_status(status)("x")
    outcome = outcome_of(error)
    assert error.retriable and not outcome.push_ack and outcome.exit_code == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 413, 422])
def test_terminal_statuses_are_acked_and_exit_2(status: int) -> None:
    error = error_for_status(status)("x")
    outcome = outcome_of(error)
    assert not error.retriable and outcome.push_ack and outcome.exit_code == 2


# --- classify: Google ----------------------------------------------------------------------


def test_a_403_with_a_rate_limit_reason_is_retriable() -> None:
    limited = google_errors.Forbidden(
        "Exceeded rate limits: too many table update operations",
        errors=[{"reason": "rateLimitExceeded"}],
    )
    error = classify(DatabaseTerminalException(limited))
    assert isinstance(error, QuotaExceededError) and error.retriable


def test_a_403_without_a_reason_is_terminal_access_denied() -> None:
    error = classify(google_errors.Forbidden("Access Denied: Dataset p:ferry"))
    assert isinstance(error, DestinationAccessDeniedError) and not error.retriable


def test_the_party_picks_the_class_for_a_google_404() -> None:
    missing = google_errors.NotFound("No such object: b/x.csv")
    assert isinstance(classify(missing, party=Party.SOURCE), SourceNotFoundError)
    assert isinstance(classify(missing), DestinationRejectedError)


# --- classify: dlt wrappers ----------------------------------------------------------------


def test_an_unknown_job_failure_is_terminal_like_dlt_says_and_named_by_its_cause() -> None:
    cause = raised(ValueError("cannot cast 'abc' to INT64"))
    failed_message = "".join(traceback.format_exception(cause))
    failed = LoadClientJobFailed("123.4", "orders.abc.parquet", failed_message, cause)
    error = classify(step_failed("load", failed))
    assert isinstance(error, DestinationRejectedError)
    assert error.message == "ValueError: cannot cast 'abc' to INT64"
    assert_clean(error)


def test_a_transient_database_error_is_retriable() -> None:
    error = classify(DatabaseTransientException(RuntimeError("connection dropped")))
    assert isinstance(error, DestinationUnavailableError)


def test_a_schema_contract_violation_is_terminal() -> None:
    violation = DataValidationError(
        "ferry_orders", "orders", "extra", "columns", "freeze", {}, {"columns": "freeze"}
    )
    error = classify(step_failed("normalize", violation))
    assert isinstance(error, SchemaContractError) and not error.retriable


def test_a_ferry_error_inside_a_dlt_step_wins() -> None:
    own = TransformError("step 2 (cast): column 'qty' is not an integer")
    extraction = RuntimeError("extraction of resource `orders` caused an exception")
    extraction.__cause__ = own
    assert classify(step_failed("extract", extraction), pipeline="orders") is own
    assert own.pipeline == "orders"


# --- classify: requests, the OS, the unknown -----------------------------------------------


def test_requests_errors_use_the_same_table() -> None:
    response = requests.Response()
    response.status_code = 429
    assert isinstance(classify(requests.HTTPError(response=response)), QuotaExceededError)
    assert isinstance(
        classify(requests.ConnectionError("refused"), party=Party.SOURCE), SourceUnavailableError
    )


def test_a_name_too_long_is_terminal() -> None:
    too_long = OSError(errno.ENAMETOOLONG, "File name too long", "in/" + "x" * 5000)
    error = classify(too_long)
    assert isinstance(error, SourceNotFoundError) and not error.retriable
    assert len(error.message) < 400


def test_an_unknown_error_is_retriable() -> None:
    error = classify(KeyError("surprise"))
    assert type(error) is RetriableError and error.retriable


def test_a_message_never_carries_a_traceback() -> None:
    cause = raised(RuntimeError("boom"))
    text = "Job failed with message: " + "".join(traceback.format_exception(cause))
    error = FerryError(text)
    assert error.message == "Job failed with message"
    assert_clean(error)


# --- helpers -------------------------------------------------------------------------------
