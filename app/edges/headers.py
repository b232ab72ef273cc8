"""Header middleware: security headers on every response (no MIME sniffing, no referrer, and
a CSP that lets nothing load or frame the response unless a route sets a narrower one), and
the request's trace header bound to its log lines."""

from __future__ import annotations

import base64
import hashlib

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core import log_context

API_CSP = "default-src 'none'; frame-ancestors 'none'"
"""JSON answers load nothing and are never framed."""

DOCS_PATHS = ("/docs", "/redoc")
"""FastAPI's docs pages load their scripts from a CDN; they keep no CSP of ours (and are off
on Cloud Run unless FERRY_DOCS=true)."""


def page_csp(*inline_styles: str) -> str:
    """A strict CSP for a self-contained HTML page: only its own inline styles (by hash), no
    scripts, no images or fonts, forms only to itself, never framed."""
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()}'"
        for style in inline_styles
    )
    return (
        f"default-src 'none'; style-src {hashes}; form-action 'self'; base-uri 'none'; "
        "frame-ancestors 'none'"
    )


class SecurityHeaders:
    """ASGI middleware: adds the headers unless the route already set them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        docs = str(scope.get("path", "")).startswith(DOCS_PATHS)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "no-referrer")
                if not docs:
                    headers.setdefault("Content-Security-Policy", API_CSP)
                    headers.setdefault("X-Frame-Options", "DENY")
            await send(message)

        await self.app(scope, receive, with_headers)


class TraceContext:
    """ASGI middleware: every log line of a request carries its trace (from
    `X-Cloud-Trace-Context` or `traceparent`), so Cloud Logging groups them."""

    def __init__(self, app: ASGIApp, project: str | None) -> None:
        self.app = app
        self.project = project

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.project:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        fields = log_context.trace_fields(
            self.project, headers.get("x-cloud-trace-context"), headers.get("traceparent")
        )
        with log_context.bound(**fields):
            await self.app(scope, receive, send)
