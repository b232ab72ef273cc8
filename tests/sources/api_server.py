"""A real HTTP server on 127.0.0.1 for API source tests: a routing table of canned or
computed replies per path, and a log of every request it received."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: Any = None
    """JSON-serialised unless bytes; None sends an empty body."""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    """Seconds to wait before answering (timeouts)."""


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    at: float
    """time.monotonic() when the request arrived."""


Handler = Callable[[Received], Reply]


class ApiServer:
    """Routes are exact paths (no query). A route is either a handler computing a reply
    from the request, or a sequence of replies served in order (the last one repeats)."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.routes: dict[str, Handler | list[Reply]] = {}
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer((host, 0), self._handler_class())
        self.port: int = self._httpd.server_address[1]
        self.base_url = f"http://{host}:{self.port}"

    def route(self, path: str, reply: Handler | Reply | Sequence[Reply]) -> None:
        if isinstance(reply, Reply):
            self.routes[path] = [reply]
        elif callable(reply):
            self.routes[path] = reply
        else:
            self.routes[path] = list(reply)

    def requests_to(self, path: str) -> list[Received]:
        with self._lock:
            return [request for request in self.received if request.path == path]

    def reply_to(self, request: Received) -> Reply:
        with self._lock:
            self.received.append(request)
            route = self.routes.get(request.path)
            if route is None:
                return Reply(404, {"error": "no route"})
            if callable(route):
                handler = route
            else:
                return route.pop(0) if len(route) > 1 else route[0]
        return handler(request)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class RequestHandler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                request = Received(
                    method="GET",
                    path=parts.path,
                    query=dict(parse_qsl(parts.query, keep_blank_values=True)),
                    headers={name.lower(): value for name, value in self.headers.items()},
                    at=time.monotonic(),
                )
                reply = server.reply_to(request)
                if reply.delay:
                    time.sleep(reply.delay)
                if isinstance(reply.body, bytes):
                    body = reply.body
                elif reply.body is None:
                    body = b""
                else:
                    body = json.dumps(reply.body).encode()
                headers = {"Content-Type": "application/json", **reply.headers}
                try:
                    self.send_response(reply.status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up first (timeout tests)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: tests read `ApiServer.received` instead."""

        return RequestHandler

    def start(self) -> None:
        threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@contextmanager
def serve(host: str = "127.0.0.1") -> Iterator[ApiServer]:
    server = ApiServer(host)
    server.start()
    try:
        yield server
    finally:
        server.stop()
