"""The HTTP service (Cloud Run): an app factory and `serve`."""

from __future__ import annotations

from typing import Any


def create_app() -> Any:
    from fastapi import FastAPI

    app = FastAPI(title="ferry", description="ELT worker for Cloud Run")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def serve(host: str, port: int) -> None:
    import uvicorn

    uvicorn.run(create_app(), host=host, port=port, log_config=None)
