"""The one error hierarchy of ferry, and the table that says how each error is recovered from.

Every error is either *terminal* (retrying cannot help: bad config, bad data, a missing
object) or *retriable* (network, 5xx, quota: the same request may succeed later). The
edges (CLI, HTTP routes, Pub/Sub push) never decide this themselves: they read `outcome_of`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


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


EXIT_OK = 0
EXIT_RETRIABLE = 1
EXIT_TERMINAL = 2


class FerryError(Exception):
    """Root of every error ferry raises on purpose."""

    recovery: Recovery = Recovery.TERMINAL
    code: str = "ferry_error"
    http_status: int = 500

    def __init__(
        self,
        message: str,
        *,
        pipeline: str | None = None,
        run_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
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
    """A request (HTTP body, CLI arguments, override) is malformed or not allowed."""

    code = "request_invalid"
    http_status = 400


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
    """The destination refused the load for a reason retrying cannot fix."""

    code = "destination_rejected"
    http_status = 422


class ModelFailedError(TerminalError):
    """A post-load SQL model did not build (its SQL failed on the destination). The load
    before it stays committed and the model's previous table stays in place; fix the SQL,
    then `python main.py build MODEL` (or `POST /runs {"models": [...]}`)."""

    code = "model_failed"
    http_status = 422


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
    previous table is in place and the load before it committed; build it again later."""

    code = "model_unavailable"
    http_status = 503


class QuotaExceededError(RetriableError):
    code = "quota_exceeded"
    http_status = 429


def outcome_of(error: FerryError) -> Outcome:
    """The single table from an error to its HTTP status, push ack and exit code."""
    if error.retriable:
        return Outcome(http_status=error.http_status, push_ack=False, exit_code=EXIT_RETRIABLE)
    return Outcome(http_status=error.http_status, push_ack=True, exit_code=EXIT_TERMINAL)


def classify(error: BaseException, *, pipeline: str | None = None) -> FerryError:
    """Turn anything a library raised into a FerryError with the right recovery."""
    if isinstance(error, FerryError):
        if pipeline and not error.pipeline:
            error.pipeline = pipeline
        return error
    inner = _unwrap(error)
    if inner is not error:
        return classify(inner, pipeline=pipeline)
    text = f"{type(error).__name__}: {error}"
    status = _http_status(error)
    if status is not None:
        if status in (408, 429) or status >= 500:
            kind: type[FerryError] = QuotaExceededError if status == 429 else RetriableError
            return kind(f"remote service answered {status}: {text}", pipeline=pipeline)
        if status == 404:
            return SourceNotFoundError(text, pipeline=pipeline)
        if status in (401, 403):
            return SourceAccessDeniedError(text, pipeline=pipeline)
        return DestinationRejectedError(text, pipeline=pipeline)
    if _is_transient(error):
        return DestinationUnavailableError(text, pipeline=pipeline)
    if _is_schema_contract(error):
        return SchemaContractError(text, pipeline=pipeline)
    if _is_terminal_library_error(error):
        return DestinationRejectedError(text, pipeline=pipeline)
    # unknown failures are retried: a bug shows up as repeated nacks, never as lost data
    return RetriableError(f"unexpected error: {text}", pipeline=pipeline)


def _unwrap(error: BaseException) -> BaseException:
    """dlt wraps a step's real failure (PipelineStepFailed.exception, __cause__)."""
    wrapped = getattr(error, "exception", None)
    if isinstance(wrapped, BaseException):
        return wrapped
    if type(error).__name__ in ("PipelineStepFailed", "ResourceExtractionError"):
        cause = error.__cause__ or error.__context__
        if cause is not None:
            return cause
    return error


def _http_status(error: BaseException) -> int | None:
    code = getattr(error, "code", None)
    if isinstance(code, int) and 100 <= code < 600 and "google" in type(error).__module__:
        return code
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def _is_transient(error: BaseException) -> bool:
    names = {cls.__name__ for cls in type(error).__mro__}
    if names & {"TransientException", "ConnectionError", "TimeoutError", "Timeout"}:
        return True
    text = str(error)
    # DuckDB allows one writing process: another run holding the file is a passing condition
    return "Could not set lock on file" in text or "Conflicting lock" in text


def _is_schema_contract(error: BaseException) -> bool:
    return type(error).__name__ == "DataValidationError"


def _is_terminal_library_error(error: BaseException) -> bool:
    names = {cls.__name__ for cls in type(error).__mro__}
    return bool(names & {"TerminalException", "DestinationTerminalException"})
