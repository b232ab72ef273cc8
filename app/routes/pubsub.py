"""`POST /pubsub`: the Pub/Sub push endpoint (wrapped envelope or unwrapped payload)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from app.auth import require_push_identity
from app.deps import ServiceDep, VerifierDep
from app.errors import FerryError
from app.events import parse_push
from app.push import handle_message, terminal

router = APIRouter(tags=["push"])


@router.post(
    "/pubsub",
    summary="Pub/Sub push: a Cloud Storage notification runs the matching pipeline",
    responses={503: {"description": "retriable failure: the message is nacked"}},
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
    try:
        message = parse_push(headers, body)
    except FerryError as error:
        outcome = await run_in_threadpool(terminal, service, body, {}, error)
    else:
        outcome = await run_in_threadpool(handle_message, service, message)
    return outcome.response()
