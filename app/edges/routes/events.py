"""`POST /`: Eventarc CloudEvents (storage finalized, or Pub/Sub messagePublished)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse

from app.edges.auth import require_push_identity
from app.edges.deps import ServiceDep, VerifierDep
from app.edges.events import is_cloudevent, parse_cloudevent
from app.edges.push import dispatch_cloudevent, respond
from app.edges.routes.schemas import PUSH_RESPONSES
from core.errors import RequestError

router = APIRouter(tags=["push"])


@router.post(
    "/",
    summary="Eventarc CloudEvent (binary or structured mode)",
    responses=PUSH_RESPONSES,
)
async def cloudevent(
    request: Request,
    service: ServiceDep,
    verifier: VerifierDep,
    authorization: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    require_push_identity(verifier, authorization)
    headers = dict(request.headers)
    if not is_cloudevent(headers):
        # not an Eventarc delivery (e.g. an orchestrator's run body): a 200 "dead-lettered"
        # would read as success to a caller that checks for 2xx
        raise RequestError(
            "POST / takes Eventarc CloudEvents (ce-* headers or content-type "
            "application/cloudevents+json); to run a pipeline, POST /runs with "
            '{"pipeline": ...} or {"source": ...}'
        )
    body = await request.body()
    return await respond(
        service, body, lambda: parse_cloudevent(headers, body), dispatch_cloudevent
    )
