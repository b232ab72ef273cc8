"""Push deliveries (Pub/Sub push, Eventarc) -> runs -> ack or nack, per the Pub/Sub contract.

2xx acknowledges; anything else is a nack and Pub/Sub redelivers. So: success, "nothing to
do" and terminal failures (after dead-lettering) answer 200; retriable failures answer 503.
Nothing keeps running after the response: Cloud Run throttles CPU once it is sent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from app.edges.events import GcsObjectEvent, PubSubMessage, gcs_event_from_message
from app.ops.deadletter import dead_letter
from app.ops.service import RunService
from app.run.request import RunRequest
from core.errors import (
    FerryError,
    ModelFailedError,
    ModelUnavailableError,
    RequestError,
    classify,
    outcome_of,
)

log = logging.getLogger("ferry.push")

NACK_STATUS = 503
T = TypeVar("T")


@dataclass
class PushOutcome:
    status: str
    """loaded | skipped | ignored | model_failed | dead_lettered | failed_terminal | retry"""
    http_status: int = 200
    reports: list[dict[str, Any]] = field(default_factory=list)
    detail: str | None = None
    error: dict[str, Any] | None = None

    def response(self) -> JSONResponse:
        uris = sorted(
            {str(r.get("files", [{}])[0].get("uri")) for r in self.reports if r.get("files")}
        )
        log.info(
            "push %s (%s)",
            self.status,
            self.http_status,
            extra={"push_status": self.status, "http_status": self.http_status, "uris": uris},
        )
        return JSONResponse(self.body(), status_code=self.http_status)

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"status": self.status, "reports": self.reports}
        if self.detail:
            body["detail"] = self.detail
        if self.error:
            body["error"] = self.error
        return body


async def respond(
    service: RunService,
    body: bytes,
    parse: Callable[[], T],
    dispatch: Callable[[RunService, T, bytes], PushOutcome],
) -> JSONResponse:
    """Parse at the edge (a malformed delivery is terminal), then run off the event loop."""
    try:
        parsed = parse()
    except RecursionError:
        # parsing never recurses unboundedly on purpose; a delivery that makes it is bad input
        refused = RequestError("the delivery is nested too deeply to read")
        outcome = await run_in_threadpool(terminal, service, body, {}, refused)
    except FerryError as error:
        outcome = await run_in_threadpool(terminal, service, body, {}, error)
    else:
        outcome = await run_in_threadpool(dispatch, service, parsed, body)
    return outcome.response()


def dispatch_message(service: RunService, message: PubSubMessage, body: bytes) -> PushOutcome:
    return handle_message(service, message)


def dispatch_cloudevent(
    service: RunService, event: GcsObjectEvent | PubSubMessage | None, body: bytes
) -> PushOutcome:
    if event is None:
        return PushOutcome("ignored", detail="this CloudEvent type is not handled")
    if isinstance(event, GcsObjectEvent):
        return handle_object_event(service, event, body, {})
    return handle_message(service, event)


def handle_message(service: RunService, message: PubSubMessage) -> PushOutcome:
    try:
        event = gcs_event_from_message(message)
    except FerryError as error:
        return terminal(service, message.data, message.attributes, error)
    if event is None:
        log.info("ignored message %s: not a Cloud Storage notification", message.message_id)
        return PushOutcome("ignored", detail="not a Cloud Storage notification")
    return handle_object_event(service, event, message.data, message.attributes)


def handle_object_event(
    service: RunService, event: GcsObjectEvent, data: bytes, attributes: dict[str, str]
) -> PushOutcome:
    if not (event.is_finalize or event.is_delete):
        log.info("ignored %s for %s", event.event_type, event.uri)
        return PushOutcome("ignored", detail=f"event type {event.event_type} is not loaded")
    if event.is_suspicious_name:
        refused = RequestError(f"object name '{event.name}' contains a path traversal form")
        return terminal(service, data, attributes, refused)
    pipelines = service.catalog.match_uri(event.uri)
    if event.is_delete:
        # only pipelines that asked for it remove a deleted object's rows
        pipelines = [spec for spec in pipelines if spec.removes_deleted_rows]
        if not pipelines or event.generation is None:
            log.info("ignored %s for %s", event.event_type, event.uri)
            return PushOutcome("ignored", detail=f"no pipeline removes rows of {event.uri}")
    if not pipelines:
        log.warning("ignored %s: no pipeline is configured for it", event.uri)
        return PushOutcome("ignored", detail=f"no pipeline is configured for {event.uri}")
    outcome = PushOutcome("loaded")
    for spec in pipelines:
        request = RunRequest(
            pipeline=spec.name,
            source_uri=event.uri,
            generation=event.generation,
            trigger="pubsub" if event.message_id else "eventarc",
            object_deleted=event.is_delete,
        )
        try:
            outcome.reports.append(service.execute(request).to_dict())
        except BaseException as raw:
            error = classify(raw, pipeline=spec.name)
            if error.report is not None:
                outcome.reports.append(error.report.to_dict())
            if isinstance(error, ModelFailedError | ModelUnavailableError):
                # the object loaded and committed; only a model after it failed, and a
                # redelivery would find the object loaded and build nothing: acknowledge
                log.error("model failed after %s loaded: %s", event.uri, error)
                return PushOutcome("model_failed", 200, outcome.reports, error=error.to_dict())
            if error.retriable:
                log.warning("nack %s: %s", event.uri, error, extra={"error": error.to_dict()})
                return PushOutcome("retry", NACK_STATUS, outcome.reports, error=error.to_dict())
            return terminal(service, data, attributes, error, outcome.reports)
    if all(report.get("status") == "skipped" for report in outcome.reports):
        outcome.status = "skipped"
    return outcome


def terminal(
    service: RunService,
    data: bytes,
    attributes: dict[str, str],
    error: FerryError,
    reports: list[dict[str, Any]] | None = None,
) -> PushOutcome:
    """Never retried forever: park it on the dead-letter topic (if any), then acknowledge."""
    assert outcome_of(error).push_ack
    try:
        parked = dead_letter(service.settings.dead_letter_topic, data, attributes, error)
    except FerryError as unavailable:
        return PushOutcome("retry", NACK_STATUS, reports or [], error=unavailable.to_dict())
    return PushOutcome(
        "dead_lettered" if parked else "failed_terminal",
        200,
        reports or [],
        error=error.to_dict(),
    )
