"""`POST /pubsub`: the Pub/Sub push endpoint (wrapped envelope or unwrapped payload)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse

from app.edges.auth import require_push_identity
from app.edges.deps import ServiceDep, VerifierDep
from app.edges.events import parse_push
from app.edges.push import dispatch_message, respond
from app.edges.routes.schemas import PUSH_RESPONSES

router = APIRouter(tags=["push"])


@router.post(
    "/pubsub",
    summary="Pub/Sub push: a Cloud Storage notification runs the matching pipeline",
    responses=PUSH_RESPONSES,
)
async def pubsub_push(
    request: Request,
    service: ServiceDep,
    verifier: VerifierDep,
    authorization: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    require_push_identity(verifier, authorization)
    body = await request.body()
    headers = dict(request.headers)
    return await respond(service, body, lambda: parse_push(headers, body), dispatch_message)
