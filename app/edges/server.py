"""The HTTP service (Cloud Run): app factory, error responses, body limit, graceful stop."""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.edges.headers import SecurityHeaders, TraceContext
from app.ops.service import RunService, prepare_for_concurrent_runs
from core.errors import (
    FerryError,
    InternalError,
    RequestError,
    RequestTooLargeError,
    ShuttingDownError,
    error_for_status,
    outcome_of,
    refused_at_the_edge,
)
from core.problems import problems_of
from core.settings import Settings, load_settings

log = logging.getLogger("ferry.server")

HEALTH_PATHS = frozenset({"/healthz"})
"""Answered before the shared imports are done: they run no pipeline."""
SHUTDOWN_WRITE_SECONDS = 5.0
"""At shutdown, how long the run-log rows still waiting may take to be written."""


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; settings default to the environment (tests pass their own)."""
    from app.edges.auth import PushTokenVerifier, warn_if_runs_are_open
    from app.edges.routes import events, health, history, pubsub, runs

    settings = settings or load_settings()
    # validate the whole pipelines file at start: a bad deploy fails here, not per request
    service = RunService.from_settings(settings)
    # FastAPI's docs pages load Swagger UI / ReDoc from a CDN: off on Cloud Run by default
    docs = settings.docs_enabled

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # the shared imports run while the socket opens and /healthz answers; RunsReady holds
        # every other request until they are done
        threading.Thread(target=prepare_for_concurrent_runs, name="ferry-preload").start()
        yield
        await asyncio.to_thread(service.close, SHUTDOWN_WRITE_SECONDS)

    app = FastAPI(
        lifespan=lifespan,
        title="ferry",
        description="ELT worker for Cloud Run: GCS / HTTP API -> pandas -> dlt -> BigQuery",
        version="0.1.0",
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
    )
    app.state.service = service
    app.state.verifier = PushTokenVerifier.from_settings(settings)
    certs_cache = app.state.verifier.certs_cache if app.state.verifier else None
    app.state.runs_verifier = PushTokenVerifier.for_runs(settings, certs_cache)
    warn_if_runs_are_open(settings)
    app.include_router(health.router)
    app.include_router(runs.router)
    app.include_router(history.router)
    app.include_router(pubsub.router)
    app.include_router(events.router)
    app.add_exception_handler(FerryError, _ferry_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(HTTPException, _http_error)
    # outside every middleware (Starlette's last resort) and, through CatchAll, inside them
    # so the answer still carries the security headers
    app.add_exception_handler(Exception, _unexpected_error)
    app.add_middleware(RunsReady)
    app.add_middleware(CatchAll, stopping=service.stopping)
    app.add_middleware(BodyLimit, limit=settings.max_request_bytes)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(TraceContext, project=settings.trace_project)
    return app


async def _ferry_error(request: Request, error: Exception) -> JSONResponse:
    """Every error answer of the HTTP routes: the status read from the outcome table."""
    assert isinstance(error, FerryError)
    body: dict[str, Any] = {"error": error.to_dict()}
    if error.report is not None:
        body["report"] = error.report.to_dict()
    status = outcome_of(error).http_status
    level = logging.ERROR if status >= 500 else logging.WARNING
    log.log(
        level,
        "%s %s -> %s: %s",
        request.method,
        request.url.path,
        status,
        error,
        extra={"error": error.to_dict()},
    )
    return JSONResponse(body, status_code=status)


async def _invalid_request(request: Request, error: Exception) -> JSONResponse:
    """FastAPI's body and query validation: a RequestError like any other malformed request,
    so `request_invalid` is one status (the table's 400), not FastAPI's 422 here and 400 there."""
    assert isinstance(error, RequestValidationError)
    found = problems_of(error.errors())
    problems = [{"field": p.field, "problem": p.message} for p in found]
    message = "; ".join(str(p) for p in found)
    content_type = request.headers.get("content-type", "")
    if _body_not_json(error) and "json" not in content_type.lower():
        # curl -d sends application/x-www-form-urlencoded: the JSON is then never parsed
        sent = f"'{content_type}'" if content_type else "none"
        message = (
            "the body must be JSON sent with the header 'Content-Type: application/json' "
            f"(Content-Type sent: {sent})"
        )
    return await _ferry_error(request, RequestError(message, details={"problems": problems}))


def _body_not_json(error: RequestValidationError) -> bool:
    """The body as a whole is not an object (FastAPI read it as text or bytes)."""
    return any(
        tuple(e["loc"]) == ("body",) and e["type"] in ("model_attributes_type", "dict_type")
        for e in error.errors()
    )


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    """FastAPI's own refusals (unparsable JSON body, unknown path, wrong method) in the same
    `{"error": ...}` shape as every other error, as the OpenAPI document declares."""
    assert isinstance(error, HTTPException)
    status = error.status_code
    headers = dict(error.headers or {})
    if status == 405:
        # Starlette names only the methods of the first route on the path; /runs has two
        headers["Allow"] = ", ".join(_allowed_methods(request))
    body = {
        "error": {
            "code": "request_invalid" if status == 400 else f"http_{status}",
            "message": str(error.detail),
            "recovery": error_for_status(status).recovery.value,
        }
    }
    return JSONResponse(body, status_code=status, headers=headers)


def _allowed_methods(request: Request) -> list[str]:
    """Every method the OpenAPI document declares on the request's path."""
    methods: set[str] = set()
    for template, operations in request.app.openapi().get("paths", {}).items():
        pattern = re.sub(r"\\\{[^}]*\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, request.url.path):
            methods |= {method.upper() for method in operations}
    return sorted(methods)


async def _unexpected_error(request: Request, error: Exception) -> JSONResponse:
    """Anything no other handler took: the documented JSON shape, never a plain-text 500.
    The traceback goes to the log only; the body says no more than one clean sentence."""
    if isinstance(error, FerryError | RecursionError):
        return await _ferry_error(request, refused_at_the_edge(error, "request"))
    log.error(
        "%s %s -> 500: unexpected %s",
        request.method,
        request.url.path,
        type(error).__name__,
        exc_info=error,
    )
    bug = InternalError("unexpected error; the details are in the service log")
    return JSONResponse({"error": bug.to_dict()}, status_code=outcome_of(bug).http_status)


def _shut_down() -> ShuttingDownError:
    return ShuttingDownError(
        "the instance shut down before this request finished (its load, if any, committed; "
        "a model build was abandoned and is rebuilt by the next run); retry"
    )


class RunsReady:
    """Every request but the health check waits until runs may overlap (the shared imports
    done: app/run/runner.py's `preload`), so concurrent first requests never race a lazy
    import; /healthz answers before, so the instance is up while pandas still imports."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.ready = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.ready and scope["type"] == "http" and scope["path"] not in HEALTH_PATHS:
            await asyncio.to_thread(prepare_for_concurrent_runs)
            self.ready = True
        await self.app(scope, receive, send)


class CatchAll:
    """An exception no handler took becomes the documented JSON 500 here, inside the other
    middlewares; Starlette's own last resort answers outside them (without their headers)."""

    def __init__(self, app: ASGIApp, stopping: threading.Event | None = None) -> None:
        self.app = app
        self.stopping = stopping

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except asyncio.CancelledError:
            # the grace period after SIGTERM ran out while this request still ran (a model
            # build: no checkpoint inside it): uvicorn cancels it, and would answer a
            # plain-text 500. Answer what every other shutdown answers instead.
            if started or self.stopping is None or not self.stopping.is_set():
                raise
            response = await _ferry_error(Request(scope), _shut_down())
            await response(scope, receive, send)
        except Exception as error:
            if started:  # too late for another answer: the server closes the connection
                raise
            response = await _unexpected_error(Request(scope), error)
            await response(scope, receive, send)


class BodyLimit:
    """413 for bodies over the limit, by Content-Length or while streaming (chunked)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._too_large(send)
            return
        # read the (chunked or unknown-length) body up to the limit before the app sees it,
        # so an oversized body is a 413 everywhere, not a body-parsing error in a route
        messages: list[Message] = []
        seen = 0
        while True:
            message = await receive()
            messages.append(message)
            seen += len(message.get("body", b""))
            if seen > self.limit:
                await self._too_large(send)
                return
            if message["type"] != "http.request" or not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send) -> None:
        refused = RequestTooLargeError(f"request body is over the {self.limit}-byte limit")
        response = JSONResponse(
            {"error": refused.to_dict()}, status_code=outcome_of(refused).http_status
        )
        await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


def serve(host: str, port: int, settings: Settings | None = None) -> None:
    """uvicorn on $PORT. SIGTERM: stop accepting, abandon runs cleanly, exit within grace."""
    import uvicorn

    settings = settings or load_settings()
    app = create_app(settings)
    service: RunService = app.state.service
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
        proxy_headers=True,
    )

    class FerryServer(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if sig == signal.SIGTERM:
                log.warning("SIGTERM: finishing or abandoning in-flight runs")
            service.stop()
            super().handle_exit(sig, frame)

    FerryServer(config).run()
