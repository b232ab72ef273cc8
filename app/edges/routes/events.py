"""`POST /`: Eventarc CloudEvents (storage finalized, or Pub/Sub messagePublished)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse

from app.edges.auth import require_push_identity
from app.edges.deps import ServiceDep, VerifierDep
from app.edges.events import parse_cloudevent
from app.edges.push import dispatch_cloudevent, respond
from app.edges.routes.schemas import PUSH_RESPONSES

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
    body = await request.body()
    headers = dict(request.headers)
    return await respond(
        service, body, lambda: parse_cloudevent(headers, body), dispatch_cloudevent
    )
