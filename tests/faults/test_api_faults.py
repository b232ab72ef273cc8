"""Source API faults, through the runner into DuckDB, against the local test API server:
rate limits, 5xx bursts, refusals, slow pages, dropped connections and overlapping pages.
Every case counts the rows in the destination and the requests the server saw."""

from __future__ import annotations

import functools
import json
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest

import sources.api
from app.run.catalog import Catalog
from app.run.runner import RunRequest, run
from core.errors import (
    FerryError,
    QuotaExceededError,
    SourceAccessDeniedError,
    SourceNotFoundError,
    SourceUnavailableError,
    outcome_of,
)
from core.settings import Settings
from tests.helpers import count, duckdb_settings, query, write_catalog
from tests.sources.api_server import ApiServer, Received, Reply

PAGE_SIZE = 10
PAGES = 3
ROWS = PAGE_SIZE * PAGES


# --- a server that can also drop a connection ------------------------------------------


@dataclass(frozen=True)
class Drop(Reply):
    """Close the connection with a TCP reset instead of answering.

    `body_bytes` None: before anything is sent; n: after the headers (with the full
    Content-Length) and the first n bytes of the body.
    """

    body_bytes: int | None = None


def reset(connection: socket.socket) -> None:
    """Close with RST, not FIN: what a crashed proxy or a dropped NAT entry looks like."""
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    connection.close()


class FaultyApiServer(ApiServer):
    """ApiServer whose routes may also answer `Drop(...)`."""

    def __init__(self) -> None:
        self._current = threading.local()  # the reply of the request this thread serves
        super().__init__()

    def reply_to(self, request: Received) -> Reply:
        reply = super().reply_to(request)
        self._current.reply = reply
        return reply

    def _handler_class(self) -> Any:
        current = self._current
        base = super()._handler_class()

        class DroppingHandler(base):  # type: ignore[misc,valid-type]
            def send_response(self, code: int, message: str | None = None) -> None:
                reply = getattr(current, "reply", None)
                if isinstance(reply, Drop) and reply.body_bytes is None:
                    self._drop()
                super().send_response(code, message)

            def end_headers(self) -> None:
                super().end_headers()
                reply = getattr(current, "reply", None)
                if isinstance(reply, Drop) and reply.body_bytes is not None:
                    self.wfile.write(json.dumps(reply.body).encode()[: reply.body_bytes])
                    self._drop()

            def _drop(self) -> None:
                current.reply = None
                self.close_connection = True
                reset(self.connection)
                # the base handler takes this for a client that went away, and stops
                raise ConnectionResetError

        return DroppingHandler


@pytest.fixture
def server() -> Iterator[FaultyApiServer]:
    running = FaultyApiServer()
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The runner's API source with test-sized backoff: 10 ms doubling, at most 2 s."""
    monkeypatch.setattr(
        sources.api,
        "api_pages",
        functools.partial(sources.api.api_pages, backoff_factor=0.01, max_retry_delay=2.0),
    )


# --- an API of items, page by page -------------------------------------------------------


def items(start: int, stop: int) -> list[dict[str, Any]]:
    return [{"id": n, "name": f"item {n}"} for n in range(start, stop)]


def page_reply(page: int, pages: int = PAGES) -> Reply:
    start = (page - 1) * PAGE_SIZE
    return Reply(200, {"items": items(start, start + PAGE_SIZE), "pages": pages})


class Pages:
    """`/items?page=N`: the items of page N; `faults[N]` are served first, one per request."""

    def __init__(self, faults: dict[int, list[Reply]] | None = None) -> None:
        self.faults = faults or {}

    def __call__(self, request: Received) -> Reply:
        page = int(request.query.get("page", "1"))
        pending = self.faults.get(page)
        if pending:
            return pending.pop(0)
        return page_reply(page)


def api_catalog(
    tmp_path: Path,
    server: ApiServer,
    *,
    max_attempts: int = 3,
    timeout_seconds: float = 10.0,
    paginator: str = "{type: page_number, base_page: 1, total_path: pages}",
) -> Catalog:
    return write_catalog(
        tmp_path,
        f"""
        pipelines:
          - name: items
            source:
              kind: api
              base_url: {server.base_url}
              path: /items
              paginator: {paginator}
              data_selector: items
              max_attempts: {max_attempts}
              timeout_seconds: {timeout_seconds}
              allowed_hosts: [127.0.0.1]
            destination: {{table: items, write_disposition: merge, primary_key: [id]}}
        """,
    )


def pages_requested(server: ApiServer) -> list[int]:
    return [int(r.query.get("page", "1")) for r in server.requests_to("/items")]


def loaded(settings: Settings) -> tuple[int, int]:
    """(rows, distinct ids) in the destination table."""
    if not count(settings, "items"):
        return 0, 0
    ((rows, distinct),) = query(settings, "select count(*), count(distinct id) from ferry.items")
    return int(rows), int(distinct)


def failing_run(catalog: Catalog, settings: Settings) -> FerryError:
    with pytest.raises(FerryError) as caught:
        run(RunRequest("items"), settings, catalog)
    return caught.value


# --- rate limits ---------------------------------------------------------------------------


def test_429_with_retry_after_is_waited_out_and_rows_are_exact(
    tmp_path: Path, server: FaultyApiServer
) -> None:
    """Production retry settings: the Retry-After of the API sets the pace."""
    limited = Reply(429, {"error": "slow down"}, {"Retry-After": "1"})
    server.route("/items", Pages({2: [limited]}))
    settings = duckdb_settings(tmp_path)

    report = run(RunRequest("items"), settings, api_catalog(tmp_path, server))

    assert pages_requested(server) == [1, 2, 2, 3]
    first, retry = server.requests_to("/items")[1:3]
    assert 0.9 <= retry.at - first.at < 3.0
    assert report.rows_read == report.rows_loaded == ROWS
    assert loaded(settings) == (ROWS, ROWS)


@pytest.mark.parametrize(
    ("reply", "error_class"),
    [
        (Reply(429, {"error": "quota"}, {"Retry-After": "3600"}), QuotaExceededError),
        (
            Reply(
                429,
                {"error": "quota"},
                {"Retry-After": formatdate(time.time() + 3600, usegmt=True)},
            ),
            QuotaExceededError,
        ),
        (Reply(503, {"error": "maintenance"}, {"Retry-After": "120"}), SourceUnavailableError),
    ],
    ids=["429-seconds", "429-http-date", "503-seconds"],
)
def test_a_retry_after_beyond_the_wait_limit_aborts_at_once_as_retriable(
    tmp_path: Path, server: FaultyApiServer, reply: Reply, error_class: type[FerryError]
) -> None:
    """Production settings wait at most 30 s between attempts: a longer Retry-After fails
    the run now (a nack / exit 1 / 503) instead of holding the worker until it times out."""
    server.route("/items", Pages({2: [reply] * 5}))
    settings = duckdb_settings(tmp_path)
    catalog = api_catalog(tmp_path, server, max_attempts=5)

    error = failing_run(catalog, settings)

    # no wait and no second attempt: the page with the long Retry-After was asked for once
    assert pages_requested(server).count(2) == 1
    assert isinstance(error, error_class) and error.retriable
    assert "Retry-After" in str(error)
    outcome = outcome_of(error)
    # one status table everywhere: a 429 is a quota error (429), a 5xx unavailable (503)
    assert (outcome.http_status, outcome.push_ack, outcome.exit_code) == (
        reply.status,
        False,
        1,
    )
    assert pages_requested(server) == [1, 2], "no second attempt at the limited page"
    assert loaded(settings) == (0, 0), "page 1 is not half-loaded"


# --- 5xx -------------------------------------------------------------------------------------


@pytest.mark.usefixtures("fast_retries")
def test_bursts_of_5xx_are_retried_and_rows_are_exact(
    tmp_path: Path, server: FaultyApiServer
) -> None:
    burst = [Reply(500), Reply(502), Reply(503), Reply(504)]
    server.route("/items", Pages({1: burst[:2], 2: burst[1:], 3: burst[:1]}))
    settings = duckdb_settings(tmp_path)

    report = run(RunRequest("items"), settings, api_catalog(tmp_path, server, max_attempts=5))

    assert pages_requested(server) == [1, 1, 1, 2, 2, 2, 2, 3, 3]
    assert report.rows_read == report.rows_loaded == ROWS
    assert loaded(settings) == (ROWS, ROWS)


@pytest.mark.usefixtures("fast_retries")
def test_5xx_outlasting_the_attempts_is_retriable_and_the_rerun_is_exact(
    tmp_path: Path, server: FaultyApiServer
) -> None:
    pages = Pages({3: [Reply(503)] * 4})
    server.route("/items", pages)
    settings = duckdb_settings(tmp_path)
    catalog = api_catalog(tmp_path, server, max_attempts=4)

    error = failing_run(catalog, settings)

    assert isinstance(error, SourceUnavailableError) and error.retriable
    assert pages_requested(server) == [1, 2, 3, 3, 3, 3], "exactly max_attempts at page 3"
    assert loaded(settings) == (0, 0), "pages 1 and 2 are not half-loaded"
    rerun = run(RunRequest("items"), settings, catalog)
    assert rerun.rows_loaded == ROWS
    assert loaded(settings) == (ROWS, ROWS)


# --- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize("page", [1, 3], ids=["first-page", "mid-pagination"])
@pytest.mark.parametrize(
    ("status", "error_class"),
    [(401, SourceAccessDeniedError), (403, SourceAccessDeniedError), (404, SourceNotFoundError)],
    ids=["401", "403", "404"],
)
def test_refusals_are_terminal_without_a_retry_storm(
    tmp_path: Path,
    server: FaultyApiServer,
    status: int,
    error_class: type[FerryError],
    page: int,
) -> None:
    """Production retry settings and 5 attempts: still one request to the refused page."""
    server.route("/items", Pages({page: [Reply(status, {"error": "no"})] * 5}))
    settings = duckdb_settings(tmp_path)
    catalog = api_catalog(tmp_path, server, max_attempts=5)

    error = failing_run(catalog, settings)

    assert pages_requested(server).count(page) == 1, "a refused page is never asked again"
    assert isinstance(error, error_class) and not error.retriable
    assert f"HTTP {status}" in str(error)
    assert outcome_of(error).push_ack, "terminal: acked (dead-lettered), not redelivered"
    assert pages_requested(server) == list(range(1, page + 1))
    assert loaded(settings) == (0, 0)


# --- slow pages and dropped connections ----------------------------------------------------


@pytest.mark.usefixtures("fast_retries")
def test_a_page_slower_than_the_timeout_fails_retriably_and_the_rerun_is_exact(
    tmp_path: Path, server: FaultyApiServer
) -> None:
    slow = page_reply(2)
    slow = Reply(slow.status, slow.body, delay=1.5)
    server.route("/items", Pages({2: [slow, slow]}))
    settings = duckdb_settings(tmp_path)
    catalog = api_catalog(tmp_path, server, max_attempts=2, timeout_seconds=0.3)

    error = failing_run(catalog, settings)

    assert isinstance(error, SourceUnavailableError) and error.retriable
    assert "Timeout" in str(error)
    assert pages_requested(server) == [1, 2, 2]
    first, retry = server.requests_to("/items")[1:]
    assert retry.at - first.at < 1.5, "the timeout fired: the slow reply was not awaited"
    assert loaded(settings) == (0, 0)
    for _ in range(2):  # the rerun, and a rerun of the rerun: merged, never duplicated
        rerun = run(RunRequest("items"), settings, catalog)
        assert rerun.rows_loaded == ROWS
        assert loaded(settings) == (ROWS, ROWS)


@pytest.mark.usefixtures("fast_retries")
def test_one_slow_page_is_retried_within_the_run(tmp_path: Path, server: FaultyApiServer) -> None:
    slow = page_reply(2)
    server.route("/items", Pages({2: [Reply(slow.status, slow.body, delay=1.0)]}))
    settings = duckdb_settings(tmp_path)
    report = run(RunRequest("items"), settings, api_catalog(tmp_path, server, timeout_seconds=0.3))
    assert pages_requested(server) == [1, 2, 2, 3]
    assert report.rows_loaded == ROWS
    assert loaded(settings) == (ROWS, ROWS)


DROPS = {
    "reset-before-reply": Drop(),
    "reset-mid-body": Drop(200, page_reply(2).body, body_bytes=40),
}


@pytest.mark.usefixtures("fast_retries")
@pytest.mark.parametrize("drop", list(DROPS), ids=list(DROPS))
def test_a_connection_reset_once_mid_pagination_is_retried(
    tmp_path: Path, server: FaultyApiServer, drop: str
) -> None:
    server.route("/items", Pages({2: [DROPS[drop]]}))
    settings = duckdb_settings(tmp_path)
    report = run(RunRequest("items"), settings, api_catalog(tmp_path, server))
    assert pages_requested(server) == [1, 2, 2, 3]
    assert report.rows_read == report.rows_loaded == ROWS
    assert loaded(settings) == (ROWS, ROWS)


@pytest.mark.usefixtures("fast_retries")
@pytest.mark.parametrize("drop", list(DROPS), ids=list(DROPS))
def test_connection_resets_outlasting_the_attempts_fail_retriably_and_the_rerun_is_exact(
    tmp_path: Path, server: FaultyApiServer, drop: str
) -> None:
    pages = Pages({2: [DROPS[drop]] * 3})
    server.route("/items", pages)
    settings = duckdb_settings(tmp_path)
    catalog = api_catalog(tmp_path, server, max_attempts=3)

    error = failing_run(catalog, settings)

    assert isinstance(error, SourceUnavailableError) and error.retriable
    assert pages_requested(server) == [1, 2, 2, 2]
    assert loaded(settings) == (0, 0), "page 1 is not half-loaded"
    for _ in range(2):
        rerun = run(RunRequest("items"), settings, catalog)
        assert rerun.rows_loaded == ROWS
        assert loaded(settings) == (ROWS, ROWS)


# --- overlapping pages ---------------------------------------------------------------------


def overlapping(rows: list[dict[str, Any]], overlap: int) -> Callable[[Received], Reply]:
    """Offset pages that each repeat the last `overlap` rows of the page before (an API
    whose data shifts while it is paged, or a sloppy offset)."""

    def handler(request: Received) -> Reply:
        offset, limit = int(request.query["offset"]), int(request.query["limit"])
        start = max(0, offset - overlap)
        return Reply(200, {"items": rows[start : offset + limit], "total": len(rows)})

    return handler


def test_overlapping_pages_are_deduplicated_by_the_primary_key(
    tmp_path: Path, server: FaultyApiServer
) -> None:
    rows = items(0, 95)
    server.route("/items", overlapping(rows, overlap=3))
    settings = duckdb_settings(tmp_path)
    catalog = api_catalog(
        tmp_path, server, paginator="{type: offset, limit: 10, total_path: total}"
    )

    report = run(RunRequest("items"), settings, catalog)
    again = run(RunRequest("items"), settings, catalog)

    pages = len(server.requests_to("/items")) // 2
    assert pages == 10
    assert report.rows_read == len(rows) + 3 * (pages - 1), "the API did send duplicates"
    assert loaded(settings) == (len(rows), len(rows))
    assert again.rows_read == report.rows_read
    assert loaded(settings) == (len(rows), len(rows)), "a rerun merges onto the same keys"
    assert query(settings, "select min(id), max(id) from ferry.items") == [(0, 94)]
