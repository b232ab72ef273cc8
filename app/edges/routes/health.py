"""Liveness for Cloud Run startup and liveness probes."""

from __future__ import annotations

from fastapi import APIRouter

from app.edges.deps import ServiceDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(service: ServiceDep) -> dict[str, object]:
    return {
        "status": "stopping" if service.stopping.is_set() else "ok",
        "pipelines": sorted(service.catalog.pipelines),
        "destination": service.settings.destination_kind,
    }
