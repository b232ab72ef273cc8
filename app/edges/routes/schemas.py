"""Response shapes shared by the routes, so the OpenAPI document says what really comes back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from app.ops.service import RunReport


@dataclass
class RunReportBody(RunReport):
    """A run report as the routes answer it: RunReport's own fields (inherited, so the
    OpenAPI document cannot drift from the dataclass) and what `RunReport.to_dict()` adds.
    Only a schema: the routes answer `to_dict()` of the typed report."""

    rows_filtered: int = 0
    """Rows read that a transform step or a check left out (neither loaded nor rejected)."""
    files_loaded: int = 0
    """Files whose rows this run loaded."""
    files_skipped: int = 0
    """Files seen but not loaded (each file's status says why)."""
    replayed: bool | None = None
    """True: a repeated idempotency key, answered with the first run's report."""


class ErrorDetail(BaseModel):
    code: str
    message: str
    recovery: Literal["terminal", "retriable"]
    pipeline: str | None = None
    run_id: str | None = None
    details: dict[str, Any] | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail
    report: RunReportBody | None = None


class PushResponse(BaseModel):
    status: Literal[
        "loaded", "skipped", "ignored", "model_failed", "dead_lettered", "failed_terminal", "retry"
    ]
    reports: list[RunReportBody]
    detail: str | None = None
    error: ErrorDetail | None = None


ERROR_STATUSES = (400, 401, 403, 404, 413, 422, 424, 429, 500, 503)
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in ERROR_STATUSES
}
HTML_ROUTE_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    # FastAPI files a `model` under the route's own media type (text/html for a page), but
    # errors are JSON on every route: declare that content type explicitly
    status: {
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
    }
    for status in ERROR_STATUSES
}
PUSH_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    200: {"model": PushResponse, "description": "acknowledged"},
    # a run's retriable failure is a PushResponse; certificates that cannot be fetched to
    # verify the caller's token (before any run) answer the common ErrorResponse
    503: {
        "model": PushResponse | ErrorResponse,
        "description": "retriable failure: nacked, redelivered",
    },
}
