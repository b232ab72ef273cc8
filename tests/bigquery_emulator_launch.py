"""Start bqemulator (run by the emulator's own Python) with one fidelity fix: a failed
synchronous query (`jobs.query`) is answered with an HTTP error, as BigQuery answers it.

bqemulator 1.4.0 answers a failed `jobs.query` with `200 {"jobComplete": true, "rows": [],
"errors": [...]}`. The Google client's `query_and_wait` (what dlt's BigQuery SQL client runs)
reads that as an empty result, so a query on a missing table, or a script whose second
statement fails, "succeeds" with no rows and no error: a probe for a table that does not exist
finds it, and an INSERT that failed reports success. Tests on such an emulator could pass
while the same code fails on BigQuery. Usage: `python bigquery_emulator_launch.py start …`
(bqemulator's own arguments).
"""

from __future__ import annotations

import json
import sys
from typing import Any

STATUS_BY_REASON = {
    "notFound": (404, "NOT_FOUND"),
    "duplicate": (409, "ALREADY_EXISTS"),
    "accessDenied": (403, "PERMISSION_DENIED"),
    "backendError": (500, "INTERNAL"),
    "internalError": (500, "INTERNAL"),
}


class FailedQueriesAreErrors:
    """ASGI middleware: a 200 `jobs.query` answer that carries `errors` becomes the error."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if scope["type"] != "http" or scope["method"] != "POST" or not path.endswith("/queries"):
            await self.app(scope, receive, send)
            return
        started: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def hold(message: Any) -> None:
            if message["type"] == "http.response.start":
                started.update(message)
            else:
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, hold)
        body = b"".join(chunks)
        status = started.get("status", 500)
        headers = list(started.get("headers", []))
        failure = _failure(body) if status == 200 else None
        if failure is not None:
            status, body = failure
            headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _failure(body: bytes) -> tuple[int, bytes] | None:
    try:
        answer = json.loads(body)
    except ValueError:
        return None
    errors = answer.get("errors") if isinstance(answer, dict) else None
    if not errors or not answer.get("jobComplete"):
        return None
    first = errors[0]
    code, status = STATUS_BY_REASON.get(first.get("reason", ""), (400, "INVALID_ARGUMENT"))
    error = {"code": code, "message": first.get("message", ""), "errors": errors}
    return code, json.dumps({"error": {**error, "status": status}}).encode()


def main() -> None:
    # the emulator's own venv has these; the app's (where mypy runs) does not
    import bqemulator.server as server  # type: ignore[import-not-found]
    from bqemulator.cli import main as emulator_main  # type: ignore[import-not-found]

    build = server.create_app

    def create_app(context: Any) -> Any:
        app = build(context)
        app.add_middleware(FailedQueriesAreErrors)
        return app

    server.create_app = create_app
    sys.argv[0] = "bqemulator"
    emulator_main()


if __name__ == "__main__":
    main()
