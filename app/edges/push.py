"""Push deliveries (Pub/Sub push, Eventarc) -> runs -> ack or nack, per the Pub/Sub contract.

2xx acknowledges; anything else is a nack and Pub/Sub redelivers. Which it is, and whether
the message is dead-lettered first, is read from the outcome table (`core.errors.outcome_of`),
never decided here: success and "nothing to do" answer 200; a terminal failure is
dead-lettered, then 200; a terminal failure after the load committed (a model) is 200 without
dead-lettering; a retriable failure is 503. Nothing keeps running after the response: Cloud
Run throttles CPU once it is sent.
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
from app.ops.service import ReplayedReport, RunReport, RunRequest, RunService
from core.errors import FerryError, RequestError, classify, outcome_of, refused_at_the_edge

log = logging.getLogger("ferry.push")

T = TypeVar("T")
Report = RunReport | ReplayedReport


@dataclass
class PushOutcome:
    status: str
    """loaded | skipped | ignored | model_failed | dead_lettered | failed_terminal | retry"""
    http_status: int = 200
    reports: list[Report] = field(default_factory=list)
    detail: str | None = None
    error: FerryError | None = None

    def response(self) -> JSONResponse:
        uris = sorted(
            {r.files[0].uri for r in self.reports if isinstance(r, RunReport) and r.files}
        )
        log.info(
            "push %s (%s)",
            self.status,
            self.http_status,
            extra={"push_status": self.status, "http_status": self.http_status, "uris": uris},
        )
        return JSONResponse(self.body(), status_code=self.http_status)

    def body(self) -> dict[str, Any]:
        """The answer's JSON: the typed reports and error serialised here, at the edge."""
        body: dict[str, Any] = {
            "status": self.status,
            "reports": [report.to_dict() for report in self.reports],
        }
        if self.detail:
            body["detail"] = self.detail
        if self.error is not None:
            body["error"] = self.error.to_dict()
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
    except (FerryError, RecursionError) as error:
        refused = refused_at_the_edge(error, "delivery")
        outcome = await run_in_threadpool(failed, service, body, {}, refused)
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
        return failed(service, message.data, message.attributes, error)
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
        return failed(service, data, attributes, refused)
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
            outcome.reports.append(service.execute(request))
        except BaseException as raw:
            error = classify(raw, pipeline=spec.name)
            if isinstance(error.report, RunReport):
                outcome.reports.append(error.report)
            return failed(service, data, attributes, error, outcome.reports)
    if all(report.status == "skipped" for report in outcome.reports):
        outcome.status = "skipped"
    return outcome


def failed(
    service: RunService,
    data: bytes,
    attributes: dict[str, str],
    error: FerryError,
    reports: list[Report] | None = None,
) -> PushOutcome:
    """The answer to a failed delivery, as the outcome table says: nack (redelivered),
    acknowledge (the input committed; only a model after it failed), or park the message on
    the dead-letter topic (if any) and acknowledge: a terminal failure is never retried forever."""
    outcome, reports = outcome_of(error), reports or []
    if not outcome.push_ack:
        log.warning("nack: %s", error, extra={"error": error.to_dict()})
        return PushOutcome("retry", outcome.push_status, reports, error=error)
    if not outcome.dead_letter:
        log.error("failed after the load committed: %s", error, extra={"error": error.to_dict()})
        return PushOutcome("model_failed", outcome.push_status, reports, error=error)
    try:
        parked = dead_letter(service.settings.dead_letter_topic, data, attributes, error)
    except FerryError as unavailable:
        return failed(service, data, attributes, unavailable, reports)
    status = "dead_lettered" if parked else "failed_terminal"
    return PushOutcome(status, outcome.push_status, reports, error=error)
