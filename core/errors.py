"""The one error hierarchy of ferry, and the table that says how each error is recovered from.

Every error is either *terminal* (retrying cannot help: bad config, bad data, a missing
object) or *retriable* (network, 5xx, quota: the same request may succeed later). The
edges (CLI, HTTP routes, Pub/Sub push, Eventarc, drain) never decide this themselves: every
answer (HTTP status, ack or nack, dead letter, exit code) is read from `outcome_of`, which
tests/core/test_outcomes.py pins for every error class.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Protocol

log = logging.getLogger("ferry.errors")


class Recovery(StrEnum):
    TERMINAL = "terminal"
    RETRIABLE = "retriable"


@dataclass(frozen=True)
class Outcome:
    """How one error class is answered at each edge."""

    http_status: int
    """Status for `POST /runs` (orchestrator calls)."""
    push_ack: bool
    """True: acknowledge the Pub/Sub message (terminal: dead-letter it first); False: nack."""
    exit_code: int
    """Exit code of `python main.py run`."""
    dead_letter: bool
    """True: park the message on the dead-letter topic before acknowledging it (a terminal
    failure of the input itself). False for a nack, and for a failure after the input's load
    committed (a model): replaying the input would load nothing."""

    @property
    def push_status(self) -> int:
        """Status for a push delivery (Pub/Sub, Eventarc): any 2xx acknowledges, and every
        nack is the same 503 (the body says which error)."""
        return 200 if self.push_ack else 503


EXIT_OK = 0
EXIT_RETRIABLE = 1
EXIT_TERMINAL = 2


class RunReportLike(Protocol):
    """What an error knows of the run it ended: app/run/report.py's RunReport, which core
    cannot import (core imports nothing of ours)."""

    def to_dict(self) -> dict[str, Any]: ...


class FerryError(Exception):
    """Root of every error ferry raises on purpose."""

    recovery: Recovery = Recovery.TERMINAL
    code: str = "ferry_error"
    http_status: int = 500
    report: RunReportLike | None = None
    """The failed run's report, set by the runner; only an edge serialises it (beside
    `to_dict()`, never inside it)."""
    after_commit: bool = False
    """Raised after the run's load committed (a model step): the input is in the destination,
    so a terminal failure is acknowledged without dead-lettering the input."""

    def __init__(
        self,
        message: str,
        *,
        pipeline: str | None = None,
        run_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        message = without_traceback(message)
        super().__init__(message)
        self.message = message
        self.pipeline = pipeline
        self.run_id = run_id
        self.details = details or {}

    @property
    def retriable(self) -> bool:
        return self.recovery is Recovery.RETRIABLE

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "recovery": self.recovery.value,
        }
        if self.pipeline:
            body["pipeline"] = self.pipeline
        if self.run_id:
            body["run_id"] = self.run_id
        if self.details:
            body["details"] = self.details
        return body

    def __str__(self) -> str:
        where = f"pipeline '{self.pipeline}': " if self.pipeline else ""
        return f"{where}{self.message}"


class TerminalError(FerryError):
    """Retrying the same input cannot succeed; fix the config or the data."""

    recovery = Recovery.TERMINAL
    code = "terminal_error"
    http_status = 422


class RetriableError(FerryError):
    """A passing failure; the same request may succeed later."""

    recovery = Recovery.RETRIABLE
    code = "retriable_error"
    http_status = 503


# --- terminal -------------------------------------------------------------------------


class ConfigError(TerminalError):
    """The pipelines file or the settings are invalid."""

    code = "config_invalid"
    http_status = 500


class UnknownPipelineError(TerminalError):
    code = "pipeline_not_found"
    http_status = 404


class RunNotFoundError(TerminalError):
    """No run with this id is in the run log (`GET /runs/{run_id}`)."""

    code = "run_not_found"
    http_status = 404


class RequestError(TerminalError):
    """A request (HTTP body, CLI arguments, override) is malformed or not allowed. One status
    for every way a request can be wrong: FastAPI's own body validation (its 422) too."""

    code = "request_invalid"
    http_status = 400


class IdempotencyKeyReusedError(RequestError):
    """An idempotency key came back with another request than the one it first named: the
    IETF Idempotency-Key draft answers 422 (the first run is never replayed for it). Its own
    code: `request_invalid` is 400 everywhere, and a code has one answer."""

    code = "idempotency_key_reused"
    http_status = 422


class RequestTooLargeError(RequestError):
    """The request body is over FERRY_MAX_REQUEST_BYTES."""

    code = "request_too_large"
    http_status = 413


class SourceNotFoundError(TerminalError):
    """The file, object, bucket or API resource does not exist."""

    code = "source_not_found"
    http_status = 404


class UnauthenticatedError(TerminalError):
    """The caller's bearer token is missing, malformed, unsigned by Google, expired, or for
    another audience or issuer. A caller must get a new token; resending this one cannot pass."""

    code = "unauthenticated"
    http_status = 401


class ForbiddenError(TerminalError):
    """The caller's token is valid but its identity (email) is not allowed to call ferry."""

    code = "forbidden"
    http_status = 403


class SourceAccessDeniedError(TerminalError):
    """The source refused our credentials (401/403): retrying will not help."""

    code = "source_access_denied"
    http_status = 424


class SourceRejectedError(TerminalError):
    """The source refused the request itself (a 4xx other than auth, not-found, conflict or
    rate limit): the same request is refused again."""

    code = "source_rejected"
    http_status = 422


class BadDataError(TerminalError):
    """The input cannot be read as declared (malformed rows, wrong types, bad encoding)."""

    code = "bad_data"
    http_status = 422


class TransformError(TerminalError):
    """A transform step failed; names the pipeline, the step and the column."""

    code = "transform_failed"
    http_status = 422


class SchemaContractError(TerminalError):
    """The data breaks the pipeline's frozen schema contract."""

    code = "schema_contract_violated"
    http_status = 422


class QualityCheckError(TerminalError):
    """A data-quality gate failed: the file is not loaded (and quarantined if configured)."""

    code = "quality_check_failed"
    http_status = 422


class DestinationRejectedError(TerminalError):
    """The destination refused the load for a reason retrying cannot fix (including running
    out of memory on this one load: the same load needs the same memory again)."""

    code = "destination_rejected"
    http_status = 422


class DestinationAccessDeniedError(TerminalError):
    """The destination refused our credentials (401/403 without a rate-limit reason)."""

    code = "destination_access_denied"
    http_status = 424


class ModelFailedError(TerminalError):
    """A post-load SQL model did not build (its SQL failed on the destination). The load
    before it stays committed and the model's previous table stays in place; fix the SQL,
    then `python main.py build MODEL` (or `POST /runs {"models": [...]}`)."""

    code = "model_failed"
    http_status = 422
    after_commit = True


class ModelCheckError(ModelFailedError):
    """A model built, but a check on its rows failed: the new rows were not swapped in."""

    code = "model_check_failed"
    http_status = 422


# --- retriable ------------------------------------------------------------------------


class SourceUnavailableError(RetriableError):
    """The source could not be reached or answered 5xx/429."""

    code = "source_unavailable"
    http_status = 503


class DestinationUnavailableError(RetriableError):
    """The destination could not be reached, answered 5xx, or is locked by another writer."""

    code = "destination_unavailable"
    http_status = 503


class AuthUnavailableError(RetriableError):
    """The public keys that verify callers' tokens could not be fetched: a nack lets
    Pub/Sub redeliver once they can."""

    code = "auth_unavailable"
    http_status = 503


class ShuttingDownError(RetriableError):
    """The instance got SIGTERM; the run was abandoned before anything committed."""

    code = "shutting_down"
    http_status = 503


class DeadLetterUnavailableError(RetriableError):
    """A terminal failure could not be parked on the dead-letter topic: keep the message."""

    code = "dead_letter_unavailable"
    http_status = 503


class ModelUnavailableError(RetriableError):
    """The destination failed while a model was building (network, 5xx, lock): the model's
    previous table is in place and the load before it committed; build it again later.

    Like any retriable error it is nacked: the redelivery finds the input loaded, and it is
    that later run which can rebuild the stale model (issue 19, "models heal themselves")."""

    code = "model_unavailable"
    http_status = 503
    after_commit = True


class QuotaExceededError(RetriableError):
    code = "quota_exceeded"
    http_status = 429


class InternalError(RetriableError):
    """A bug: an exception no handler expected reached an HTTP edge. Retried (never lost
    data); the details go to the log only."""

    code = "internal_error"
    http_status = 500


def outcome_of(error: FerryError) -> Outcome:
    """The single table from an error to its HTTP status, push ack, dead letter and exit code."""
    if error.retriable:
        return Outcome(
            http_status=error.http_status,
            push_ack=False,
            exit_code=EXIT_RETRIABLE,
            dead_letter=False,
        )
    return Outcome(
        http_status=error.http_status,
        push_ack=True,
        exit_code=EXIT_TERMINAL,
        dead_letter=not error.after_commit,
    )


def refused_at_the_edge(error: FerryError | RecursionError, what: str) -> FerryError:
    """What an edge answers for an error raised while it parses its input, before any run:
    a FerryError as it is; a RecursionError means input nested too deeply to read, which
    only untrusted input does (terminal: never a nack that brings it back)."""
    if isinstance(error, FerryError):
        return error
    return RequestError(f"the {what} is nested too deeply to read")


# --- HTTP status / Google error reason -> error class: the one table -------------------


class Party(StrEnum):
    """Who answered: the same status means a different error class on each side."""

    SOURCE = "source"
    DESTINATION = "destination"


class Condition(StrEnum):
    """What an HTTP answer says about retrying, whoever sent it."""

    REJECTED = "rejected"
    """The request itself is wrong (terminal)."""
    DENIED = "denied"
    """Our credentials were refused (terminal)."""
    NOT_FOUND = "not_found"
    """The thing asked for does not exist (terminal)."""
    CONFLICT = "conflict"
    """Already exists / concurrent update: another writer got there first (retriable)."""
    QUOTA = "quota"
    """Rate limit or quota (retriable)."""
    UNAVAILABLE = "unavailable"
    """Timeout or server error (retriable)."""


STATUS_CONDITIONS: Final[Mapping[int, Condition]] = {
    400: Condition.REJECTED,
    401: Condition.DENIED,
    403: Condition.DENIED,
    404: Condition.NOT_FOUND,
    408: Condition.UNAVAILABLE,
    409: Condition.CONFLICT,
    410: Condition.NOT_FOUND,
    412: Condition.CONFLICT,
    429: Condition.QUOTA,
}
"""Statuses with their own condition; any other 5xx is unavailable, any other 4xx rejected."""

REASON_CONDITIONS: Final[Mapping[str, Condition]] = {
    # Google APIs answer some quota errors with 403 (BigQuery, Cloud Storage) or 400: the
    # reason, not the status, says a later attempt passes
    "rateLimitExceeded": Condition.QUOTA,
    "userRateLimitExceeded": Condition.QUOTA,
    "quotaExceeded": Condition.QUOTA,
    "jobRateLimitExceeded": Condition.QUOTA,
    "RATE_LIMIT_EXCEEDED": Condition.QUOTA,
    "RESOURCE_EXHAUSTED": Condition.QUOTA,
    "backendError": Condition.UNAVAILABLE,
    "internalError": Condition.UNAVAILABLE,
    "badGateway": Condition.UNAVAILABLE,
    # 409 "Already Exists": a concurrent first load created the table or dataset first
    "duplicate": Condition.CONFLICT,
    # one job needing more than the destination gives it needs the same again on a retry
    "resourcesExceeded": Condition.REJECTED,
}
"""Google error reasons (``errors[].reason`` or ``ErrorInfo.reason``) that win over the status."""

ERROR_CLASSES: Final[Mapping[Condition, tuple[type[FerryError], type[FerryError]]]] = {
    Condition.REJECTED: (SourceRejectedError, DestinationRejectedError),
    Condition.DENIED: (SourceAccessDeniedError, DestinationAccessDeniedError),
    Condition.NOT_FOUND: (SourceNotFoundError, DestinationRejectedError),
    Condition.CONFLICT: (SourceUnavailableError, DestinationUnavailableError),
    Condition.QUOTA: (QuotaExceededError, QuotaExceededError),
    Condition.UNAVAILABLE: (SourceUnavailableError, DestinationUnavailableError),
}
"""Condition -> (error class when a source answered, when the destination answered)."""


def condition_of(status: int, reason: str | None = None) -> Condition:
    if reason is not None and reason in REASON_CONDITIONS:
        return REASON_CONDITIONS[reason]
    if status in STATUS_CONDITIONS:
        return STATUS_CONDITIONS[status]
    return Condition.UNAVAILABLE if status >= 500 else Condition.REJECTED


def error_for_status(
    status: int, reason: str | None = None, *, party: Party = Party.SOURCE
) -> type[FerryError]:
    """The error class, named for how to recover, of an HTTP error answer."""
    source_class, destination_class = ERROR_CLASSES[condition_of(status, reason)]
    return source_class if party is Party.SOURCE else destination_class


# --- anything a library raised -> FerryError ---------------------------------------------

MESSAGE_CHARS: Final = 300
"""Longest message taken from a library exception (a name or a SQL text can be huge)."""
_TRACEBACK: Final = "Traceback (most recent call last)"


def without_traceback(message: str) -> str:
    """The message up to any Python traceback in it (dlt puts whole tracebacks in its
    messages); tracebacks go to the log only, never into a response or the run log."""
    cut = message.find(_TRACEBACK)
    if cut < 0:
        return message
    kept = message[:cut].rstrip(" :\n")
    return kept or "the library raised an error (details in the log)"


def one_sentence(text: str) -> str:
    """First non-empty line of a library message, without traceback, clipped."""
    lines = [line.strip() for line in without_traceback(text).splitlines() if line.strip()]
    first = lines[0] if lines else ""
    return first if len(first) <= MESSAGE_CHARS else first[:MESSAGE_CHARS] + "..."


def classify(
    error: BaseException, *, pipeline: str | None = None, party: Party = Party.DESTINATION
) -> FerryError:
    """Turn anything a library raised into a FerryError with the right recovery.

    dlt wraps the real failure (a step in `PipelineStepFailed`, a job's client exception in
    `LoadClientJob*`, a driver error in `DatabaseException`); the innermost exception that is
    recognised decides, else the nearest dlt terminal/transient marker outside it. Library
    types are recognised with isinstance, imported here (on failure) to keep start-up cheap.
    `party` says who answered an HTTP error that carries no side of its own.
    """
    found = error if isinstance(error, FerryError) else _from_library(error, party)
    if pipeline and not found.pipeline:
        found.pipeline = pipeline
    return found


def _from_library(error: BaseException, party: Party) -> FerryError:
    found = recognise(error, party=party)
    if found is None:
        # unknown failures are retried: a bug shows up as repeated nacks, never as lost data
        found = RetriableError(f"unexpected error: {describe(_chain(error)[-1])}")
    # the traceback goes to the log, once, and never into a message
    log.warning("%s <- %s", found, type(error).__name__, exc_info=error)
    return found


Recogniser = Callable[[BaseException, Party], FerryError | None]
"""A FerryError for a library exception of a type it knows, else None."""
Unwrapper = Callable[[BaseException], BaseException | None]
"""The exception a library exception wraps, else None."""

_engine_recognisers: list[Recogniser] = []
_engine_unwrappers: list[Unwrapper] = []


def register_engine_errors(recognise: Recogniser, unwrap: Unwrapper) -> None:
    """Add a destination engine's error recognition (its `errors.py`; the registry in
    app/destinations adds every engine's when imported). Core imports nothing of ours, so it
    knows the engines' libraries only through what is registered. Idempotent."""
    if recognise not in _engine_recognisers:
        _engine_recognisers.append(recognise)
    if unwrap not in _engine_unwrappers:
        _engine_unwrappers.append(unwrap)


def recognise(error: BaseException, *, party: Party = Party.DESTINATION) -> FerryError | None:
    """classify() for exceptions of a known type; None for anything else."""
    chain = _chain(error)
    # a dlt wrapper recognised only by its terminal/transient marker is described by what
    # it wraps: its own message repeats that, with a traceback
    cause = describe(chain[-1])
    for inner in reversed(chain):
        found = _recognise(inner, party, cause)
        if found is not None:
            return found
    return None


def describe(error: BaseException) -> str:
    """`Type: first sentence` of a library exception, for a FerryError's message."""
    text = one_sentence(str(error))
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _chain(error: BaseException) -> list[BaseException]:
    """`error` and what it wraps, outermost first; stops at a FerryError."""
    chain = [error]
    while not isinstance(chain[-1], FerryError):
        inner = _wrapped(chain[-1])
        if inner is None or any(inner is seen for seen in chain):
            break
        chain.append(inner)
    return chain


def _wrapped(error: BaseException) -> BaseException | None:
    from dlt.destinations.exceptions import DatabaseException
    from dlt.load.exceptions import LoadClientJobException, LoadPackageAborted
    from dlt.pipeline.exceptions import PipelineStepFailed

    inner: object = None
    if isinstance(error, PipelineStepFailed):
        inner = error.exception
    elif isinstance(error, LoadClientJobException):
        inner = error.client_exception
    elif isinstance(error, LoadPackageAborted):
        inner = error.job_exception
    elif isinstance(error, DatabaseException):
        inner = error.dbapi_exception
    else:
        # a destination engine's own wrapper (BigQuery's DB-API error)
        inner = next(
            (found for unwrap in _engine_unwrappers if (found := unwrap(error)) is not None),
            None,
        )
    if isinstance(inner, BaseException):
        return inner
    return error.__cause__


def _recognise(error: BaseException, party: Party, cause: str) -> FerryError | None:
    """A FerryError for an exception type we know, else None."""
    if isinstance(error, FerryError):
        return error
    # an engine knows its own answers better than the status table does (BigQuery's 400s
    # about other writers of a table are passing conditions): engines first
    for recognise in (*_engine_recognisers, _recognise_http, _recognise_os):
        found = recognise(error, party)
        if found is not None:
            return found
    return _recognise_dlt(error, cause)


def _recognise_http(error: BaseException, party: Party) -> FerryError | None:
    from google.api_core import exceptions as google_errors
    from google.auth import exceptions as auth_errors
    from requests import exceptions as http_errors

    text = describe(error)
    if isinstance(error, google_errors.GoogleAPICallError) and isinstance(error.code, int):
        status, reason = error.code, google_reason(error)
        kind = error_for_status(status, reason, party=party)
        answered = f"{status} {reason}" if reason else str(status)
        return kind(f"{party.value} answered {answered}: {text}")
    if isinstance(error, http_errors.HTTPError) and error.response is not None:
        status = error.response.status_code
        return error_for_status(status, party=party)(f"{party.value} answered {status}: {text}")
    if isinstance(error, auth_errors.DefaultCredentialsError | auth_errors.RefreshError):
        return ERROR_CLASSES[Condition.DENIED][party is Party.DESTINATION](text)
    if isinstance(
        error,
        google_errors.RetryError
        | auth_errors.TransportError
        | http_errors.ConnectionError
        | http_errors.Timeout
        | http_errors.ChunkedEncodingError
        | ConnectionError
        | TimeoutError,
    ):
        return ERROR_CLASSES[Condition.UNAVAILABLE][party is Party.DESTINATION](text)
    return None


def google_reason(error: BaseException) -> str | None:
    """The reason of a Google API error: ErrorInfo's, else the first of ``errors[]``."""
    reason = getattr(error, "reason", None)
    if isinstance(reason, str) and reason:
        return reason
    for item in getattr(error, "errors", None) or []:
        if isinstance(item, dict) and isinstance(item.get("reason"), str):
            return str(item["reason"])
    return None


def _recognise_dlt(error: BaseException, cause: str) -> FerryError | None:
    from dlt.common.exceptions import TerminalException, TransientException
    from dlt.common.schema.exceptions import DataValidationError

    if isinstance(error, DataValidationError):
        return SchemaContractError(describe(error))
    if isinstance(error, TransientException):
        return DestinationUnavailableError(cause)
    if isinstance(error, TerminalException):
        return DestinationRejectedError(cause)
    return None


# names no file can have: retrying the same name fails the same way
_TERMINAL_ERRNOS: Final = frozenset({errno.ENAMETOOLONG, errno.ENOTDIR, errno.ELOOP})


def _recognise_os(error: BaseException, party: Party) -> FerryError | None:
    if isinstance(error, FileNotFoundError):
        return SourceNotFoundError(describe(error))
    if isinstance(error, PermissionError):
        return SourceAccessDeniedError(describe(error))
    if isinstance(error, OSError) and error.errno in _TERMINAL_ERRNOS:
        return SourceNotFoundError(f"no such file can exist: {describe(error)}")
    return None
