"""FastAPI dependencies, declared once."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from app.ops.service import RunService


def get_service(request: Request) -> RunService:
    service: RunService = request.app.state.service
    return service


def get_verifier(request: Request) -> Any:
    return request.app.state.verifier


ServiceDep = Annotated[RunService, Depends(get_service)]
VerifierDep = Annotated[Any, Depends(get_verifier)]
