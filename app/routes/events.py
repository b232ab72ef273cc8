"""`POST /`: Eventarc CloudEvents (storage finalized, or Pub/Sub messagePublished)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from app.auth import require_push_identity
from app.deps import ServiceDep, VerifierDep
from app.errors import FerryError
from app.events import GcsObjectEvent, parse_cloudevent
from app.push import PushOutcome, handle_message, handle_object_event, terminal

router = APIRouter(tags=["push"])


@router.post(
    "/",
    summary="Eventarc CloudEvent (binary or structured mode)",
    responses={503: {"description": "retriable failure: the event is retried"}},
)
async def cloudevent(
    request: Request,
    service: ServiceDep,
    verifier: VerifierDep,
    authorization: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    require_push_identity(verifier, authorization)
    body = await request.body()
    headers = dict(request.headers)
    try:
        event = parse_cloudevent(headers, body)
    except FerryError as error:
        outcome = await run_in_threadpool(terminal, service, body, {}, error)
        return outcome.response()
    if event is None:
        outcome = PushOutcome(
            "ignored", detail=f"event type {headers.get('ce-type')} is not handled"
        )
    elif isinstance(event, GcsObjectEvent):
        outcome = await run_in_threadpool(handle_object_event, service, event, body, {})
    else:
        outcome = await run_in_threadpool(handle_message, service, event)
    return outcome.response()
