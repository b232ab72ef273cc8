"""FastAPI dependencies, declared once."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Header, Request

from app.edges.auth import PushIdentity, PushTokenVerifier
from app.ops.service import RunService


def get_service(request: Request) -> RunService:
    service: RunService = request.app.state.service
    return service


def get_verifier(request: Request) -> Any:
    return request.app.state.verifier


ServiceDep = Annotated[RunService, Depends(get_service)]
VerifierDep = Annotated[Any, Depends(get_verifier)]


def require_runs_caller(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> PushIdentity | None:
    """The verified caller of `/runs` and the history routes; None when run auth is off."""
    verifier: PushTokenVerifier | None = request.app.state.runs_verifier
    if verifier is None:
        return None
    return verifier.verify(authorization)


RunsCaller = Depends(require_runs_caller)
"""Router-level dependency for the routes an orchestrator calls."""
