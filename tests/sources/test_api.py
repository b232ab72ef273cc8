"""The API source against a real HTTP server on 127.0.0.1 (tests/sources/api_server.py)."""

from __future__ import annotations

import base64
import logging
import socket
import traceback
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dlt
import duckdb
import pyarrow as pa
import pytest
from dlt.extract import DltResource
from requests import PreparedRequest, Request
from requests.exceptions import ConnectionError as RequestsConnectionError

from core.errors import (
    BadDataError,
    ConfigError,
    FerryError,
    QuotaExceededError,
    RequestError,
    SourceAccessDeniedError,
    SourceNotFoundError,
    SourceRejectedError,
    SourceUnavailableError,
)
from core.spec import ApiSource
from sources.api import api_pages, check_url
from sources.api.guard import GuardedAdapter
from sources.api.helpers import error_for_status, merge_params, retry_after_seconds, safe_url
from tests.sources.api_server import ApiServer, Received, Reply, serve

CANARY = "canary-s3cr3t-9f2c7e"


@pytest.fixture
def server() -> Iterator[ApiServer]:
    with serve() as running:
        yield running


def fast_pages(spec: ApiSource, name: str, params: Mapping[str, str] | None = None) -> DltResource:
    """api_pages with test-sized backoff: 10 ms doubling, at most 2 s between attempts."""
    return api_pages(
        spec, resource_name=name, params=params, backoff_factor=0.01, max_retry_delay=2.0
    )


def make_spec(server: ApiServer, path: str, **fields: Any) -> ApiSource:
    fields.setdefault("paginator", "single_page")
    fields.setdefault("allowed_hosts", ["127.0.0.1"])
    fields.setdefault("max_attempts", 3)
    return ApiSource(base_url=server.base_url, path=path, **fields)


def pages_of(resource: DltResource) -> list[list[dict[str, Any]]]:
    """Each page as the resource yields it (a bare resource flattens pages when iterated)."""
    seen: list[list[dict[str, Any]]] = []

    @dlt.transformer(name="collect")
    def collect(page: list[dict[str, Any]]) -> Iterator[dict[str, int]]:
        seen.append(page)
        yield {"n": len(page)}

    list(resource | collect)
    return seen


def chain(error: BaseException) -> list[BaseException]:
    """The error and its causes as a traceback would print them."""
    found: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in found:
        found.append(current)
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
    return found


def raised(resource: DltResource) -> FerryError:
    """The FerryError that iterating `resource` raises (dlt wraps it)."""
    with pytest.raises(Exception) as caught:
        list(resource)
    for error in chain(caught.value):
        if isinstance(error, FerryError):
            return error
    raise AssertionError(f"no FerryError in {caught.value!r}")


def items(start: int, stop: int) -> list[dict[str, Any]]:
    return [{"id": n, "name": f"item {n}"} for n in range(start, stop)]


# --- pure helpers ----------------------------------------------------------------------

RESOLVES = {
    "api.example.com": ["93.184.216.34"],
    "v6.example.com": ["2606:2800:220:1:248:1893:25c8:1946"],
    "evil.example.com": ["127.0.0.1"],
    "rebind.example.com": ["93.184.216.34", "10.0.0.7"],
    "meta.example.com": ["169.254.169.254"],
    "mapped.example.com": ["::ffff:169.254.169.254"],
}


def fake_resolve(host: str) -> list[str]:
    return RESOLVES[host]


@pytest.mark.parametrize(
    "url",
    [
        "https://api.example.com/v1/items",
        "http://api.example.com:8080/x?y=1",
        "https://API.EXAMPLE.COM./x",
        "https://v6.example.com/",
        "https://93.184.216.34/",
        "https://172.32.0.1/",
        "https://[2606:4700:4700::1111]/",
    ],
    ids=["https", "http-port", "upper-trailing-dot", "ipv6-name", "ipv4", "outside-172-16", "v6"],
)
def test_check_url_allows_public_hosts(url: str) -> None:
    check_url(url, [], fake_resolve)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://127.8.9.10:9000/",
        "http://10.1.2.3/",
        "http://172.16.0.1/",
        "http://172.31.255.255/",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://0.0.0.0/",
        "http://100.64.0.1/",
        "http://224.0.0.1/",
        "http://[::1]/",
        "http://[::]/",
        "http://[fe80::1]/",
        "http://[fc00::1]/",
        "http://[::ffff:169.254.169.254]/",
        "http://[::ffff:7f00:1]/",
        "http://[::169.254.169.254]/",
        "http://[64:ff9b::a9fe:a9fe]/",
        "http://[2002:a9fe:a9fe::1]/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://METADATA.GOOGLE.INTERNAL./",
        "http://metadata/",
        "http://localhost:8080/",
        "http://app.localhost/",
        "http://evil.example.com/",
        "http://rebind.example.com/",
        "http://meta.example.com/",
        "http://mapped.example.com/",
    ],
    ids=[
        "loopback",
        "loopback-8",
        "10-8",
        "172-16-low",
        "172-16-high",
        "192-168",
        "metadata-ip",
        "unspecified",
        "cgnat",
        "multicast",
        "v6-loopback",
        "v6-unspecified",
        "v6-link-local",
        "v6-unique-local",
        "v4-mapped-metadata",
        "v4-mapped-loopback",
        "v4-compatible-metadata",
        "nat64-metadata",
        "6to4-metadata",
        "metadata-name",
        "metadata-name-upper-dot",
        "metadata-short",
        "localhost",
        "dot-localhost",
        "name-to-loopback",
        "name-any-private",
        "name-to-metadata",
        "name-to-mapped",
    ],
)
def test_check_url_refuses_internal_hosts(url: str) -> None:
    with pytest.raises(RequestError, match="allowed_hosts"):
        check_url(url, [], fake_resolve)


@pytest.mark.parametrize(
    "url",
    ["ftp://api.example.com/x", "file:///etc/passwd", "gopher://api.example.com/", "http:///x"],
    ids=["ftp", "file", "gopher", "no-host"],
)
def test_check_url_refuses_other_schemes_and_missing_hosts(url: str) -> None:
    with pytest.raises(RequestError):
        check_url(url, ["api.example.com"], fake_resolve)


@pytest.mark.parametrize(
    "url", ["http://2130706433/", "http://0177.0.0.1/", "http://0x7f.1/"], ids=str
)
def test_check_url_resolves_numeric_host_forms(url: str) -> None:
    with pytest.raises(RequestError, match=r"127\.0\.0\.1"):
        check_url(url, [])


def test_check_url_allowed_hosts_pass_but_keep_the_scheme_rule() -> None:
    check_url("http://127.0.0.1:8080/x", ["127.0.0.1"], fake_resolve)
    check_url("http://localhost/x", ["LOCALHOST"], fake_resolve)
    check_url("http://[::1]:9/", ["[::1]"], fake_resolve)
    with pytest.raises(RequestError):
        check_url("ftp://127.0.0.1/x", ["127.0.0.1"], fake_resolve)
    with pytest.raises(RequestError):
        check_url("http://127.0.0.2/x", ["127.0.0.1"], fake_resolve)


def test_guarded_adapter_turns_an_unresolvable_host_into_a_connection_error() -> None:
    def no_dns(host: str) -> list[str]:
        raise socket.gaierror("no such host")

    prepared: PreparedRequest = Request("GET", "https://nowhere.example/x?key=1").prepare()
    with pytest.raises(RequestsConnectionError, match=r"nowhere\.example/x$"):
        GuardedAdapter([], resolve=no_dns).send(prepared)


def test_merge_params_overrides_and_adds_but_not_the_cursor() -> None:
    assert merge_params({"a": 1, "b": "x"}, {"b": "y", "c": "z"}) == {"a": 1, "b": "y", "c": "z"}
    assert merge_params({"a": 1}, None) == {"a": 1}
    with pytest.raises(RequestError, match="since"):
        merge_params({}, {"since": "2020"}, cursor_param="since")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("7", 7.0),
        (" 12 ", 12.0),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),
        ("soon", None),
    ],
    ids=["absent", "seconds", "spaces", "http-date", "date-in-past", "garbage"],
)
def test_retry_after_seconds(header: str | None, expected: float | None) -> None:
    now = 1445412480.0  # Wed, 21 Oct 2015 07:28:00 GMT
    assert retry_after_seconds(header, now=now) == expected


def test_safe_url_drops_credentials_query_and_fragment() -> None:
    assert safe_url("https://u:p@api.example.com:8443/v1/x?key=s#f") == (
        "https://api.example.com:8443/v1/x"
    )
    assert safe_url("http://[::1]:9/x?y=1") == "http://[::1]:9/x"
    assert safe_url("http://host:notaport/") == "<malformed URL>"


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, SourceRejectedError),
        (401, SourceAccessDeniedError),
        (403, SourceAccessDeniedError),
        (404, SourceNotFoundError),
        (410, SourceNotFoundError),
        (409, SourceUnavailableError),
        (422, SourceRejectedError),
        (429, QuotaExceededError),
        (500, SourceUnavailableError),
        (503, SourceUnavailableError),
    ],
    ids=str,
)
def test_error_for_status(status: int, error: type[FerryError]) -> None:
    assert error_for_status(status) is error


# --- auth ----------------------------------------------------------------------------


def requires(header: str, value: str) -> Any:
    def handler(request: Received) -> Reply:
        if request.headers.get(header.lower()) != value:
            return Reply(401, {"error": "unauthorized"})
        return Reply(200, {"data": items(0, 2)})

    return handler


def test_bearer_token_from_env(server: ApiServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_TOKEN", CANARY)
    server.route("/b", requires("Authorization", f"Bearer {CANARY}"))
    spec = make_spec(server, "/b", auth={"type": "bearer", "token_env": "T_TOKEN"})
    assert list(fast_pages(spec, "b")) == items(0, 2)


def test_api_key_header(server: ApiServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_KEY", CANARY)
    server.route("/k", requires("X-Api-Key", CANARY))
    auth = {"type": "api_key", "token_env": "T_KEY", "name": "X-Api-Key"}
    spec = make_spec(server, "/k", auth=auth)
    assert list(fast_pages(spec, "k")) == items(0, 2)


def test_api_key_query(server: ApiServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_KEY", CANARY)

    def handler(request: Received) -> Reply:
        if request.query.get("appid") != CANARY:
            return Reply(401, {"error": "unauthorized"})
        return Reply(200, {"data": items(0, 2)})

    server.route("/q", handler)
    auth = {"type": "api_key", "token_env": "T_KEY", "name": "appid", "location": "query"}
    spec = make_spec(server, "/q", auth=auth, params={"lang": "en"})
    assert list(fast_pages(spec, "q")) == items(0, 2)
    assert server.requests_to("/q")[0].query == {"lang": "en", "appid": CANARY}


def test_http_basic(server: ApiServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_USER", "ferry")
    monkeypatch.setenv("T_PASS", CANARY)
    expected = "Basic " + base64.b64encode(f"ferry:{CANARY}".encode()).decode()
    server.route("/basic", requires("Authorization", expected))
    auth = {"type": "http_basic", "username_env": "T_USER", "password_env": "T_PASS"}
    spec = make_spec(server, "/basic", auth=auth)
    assert list(fast_pages(spec, "basic")) == items(0, 2)


def test_missing_secret_env_var_is_a_config_error(
    server: ApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("T_ABSENT", raising=False)
    spec = make_spec(server, "/b", auth={"type": "bearer", "token_env": "T_ABSENT"})
    with pytest.raises(ConfigError, match="T_ABSENT"):
        api_pages(spec, resource_name="b")
    assert server.received == []


def test_wrong_credentials_are_access_denied_without_retries(
    server: ApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("T_TOKEN", "wrong")
    server.route("/b", requires("Authorization", "Bearer right"))
    spec = make_spec(server, "/b", auth={"type": "bearer", "token_env": "T_TOKEN"})
    error = raised(fast_pages(spec, "b"))
    assert isinstance(error, SourceAccessDeniedError)
    assert "'b'" in str(error) and "/b" in str(error)
    assert len(server.received) == 1


# --- pagination ------------------------------------------------------------------------


def test_header_link_pagination(server: ApiServer) -> None:
    def handler(request: Received) -> Reply:
        page = int(request.query.get("page", "1"))
        headers = {}
        if page < 3:
            headers["Link"] = f'<{server.base_url}/link?page={page + 1}>; rel="next"'
        return Reply(200, items(page * 10, page * 10 + 2), headers)

    server.route("/link", handler)
    spec = make_spec(server, "/link", paginator={"type": "header_link"})
    pages = pages_of(fast_pages(spec, "link"))
    assert pages == [items(10, 12), items(20, 22), items(30, 32)]


def test_json_link_pagination(server: ApiServer) -> None:
    def handler(request: Received) -> Reply:
        page = int(request.query.get("page", "1"))
        following = f"{server.base_url}/json?page={page + 1}" if page < 2 else None
        return Reply(200, {"results": items(page, page + 1), "next": following})

    server.route("/json", handler)
    paginator = {"type": "json_link", "next_url_path": "next"}
    spec = make_spec(server, "/json", paginator=paginator, data_selector="results")
    assert pages_of(fast_pages(spec, "json")) == [items(1, 2), items(2, 3)]


def test_cursor_pagination(server: ApiServer) -> None:
    cursors = {"": ("c1", items(0, 2)), "c1": ("c2", items(2, 4)), "c2": (None, items(4, 5))}

    def handler(request: Received) -> Reply:
        following, records = cursors[request.query.get("cursor", "")]
        return Reply(200, {"data": records, "meta": {"next": following}})

    server.route("/cur", handler)
    paginator = {"type": "cursor", "cursor_path": "meta.next", "cursor_param": "cursor"}
    spec = make_spec(server, "/cur", paginator=paginator, data_selector="data")
    assert list(fast_pages(spec, "cur")) == items(0, 5)
    assert [r.query.get("cursor") for r in server.requests_to("/cur")] == [None, "c1", "c2"]


def test_offset_pagination(server: ApiServer) -> None:
    rows = items(0, 5)

    def handler(request: Received) -> Reply:
        offset, limit = int(request.query["offset"]), int(request.query["limit"])
        return Reply(200, {"rows": rows[offset : offset + limit], "total": len(rows)})

    server.route("/off", handler)
    paginator = {"type": "offset", "limit": 2, "total_path": "total"}
    spec = make_spec(server, "/off", paginator=paginator, data_selector="rows")
    pages = pages_of(fast_pages(spec, "off"))
    assert pages == [rows[0:2], rows[2:4], rows[4:5]]
    assert [r.query["offset"] for r in server.requests_to("/off")] == ["0", "2", "4"]


def test_page_number_pagination(server: ApiServer) -> None:
    def handler(request: Received) -> Reply:
        page = int(request.query["page"])
        return Reply(200, {"items": items(page * 100, page * 100 + 1), "pages": 3})

    server.route("/pn", handler)
    paginator = {"type": "page_number", "base_page": 1, "total_path": "pages"}
    spec = make_spec(server, "/pn", paginator=paginator, data_selector="items")
    records = list(fast_pages(spec, "pn"))
    assert [r["id"] for r in records] == [100, 200, 300]


def test_nested_data_selector_and_param_overrides(server: ApiServer) -> None:
    server.route("/nested", Reply(200, {"data": {"items": items(0, 3)}, "count": 3}))
    spec = make_spec(server, "/nested", data_selector="data.items", params={"a": "1", "b": "2"})
    resource = fast_pages(spec, "nested", params={"b": "20", "c": "3"})
    assert list(resource) == items(0, 3)
    assert server.requests_to("/nested")[0].query == {"a": "1", "b": "20", "c": "3"}


@pytest.mark.parametrize(
    "paginator",
    [{"type": "no_such_paginator"}, {"type": "offset"}, {"type": "cursor", "bogus": 1}],
    ids=["unknown-type", "missing-limit", "unknown-option"],
)
def test_invalid_paginator_config_is_a_config_error(
    server: ApiServer, paginator: dict[str, Any]
) -> None:
    with pytest.raises(ConfigError, match="paginator"):
        fast_pages(make_spec(server, "/x", paginator=paginator), "x")


def test_non_json_body_is_bad_data(server: ApiServer) -> None:
    server.route("/html", Reply(200, b"<html>oops</html>", {"Content-Type": "text/html"}))
    error = raised(fast_pages(make_spec(server, "/html"), "html"))
    assert isinstance(error, BadDataError)


# --- incremental -----------------------------------------------------------------------


class Events:
    """An API of events filtered by `since` (inclusive, like many real APIs)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(self, start: int, stop: int) -> None:
        self.rows += [{"id": n, "updated": 1000 + n} for n in range(start, stop)]

    def __call__(self, request: Received) -> Reply:
        since = int(request.query.get("since", "0"))
        return Reply(200, {"data": [row for row in self.rows if row["updated"] >= since]})


def incremental_spec(server: ApiServer) -> ApiSource:
    incremental = {"cursor_path": "updated", "param": "since", "initial_value": 1000}
    return make_spec(server, "/events", data_selector="data", incremental=incremental)


def make_pipeline(tmp_path: Path, workdir: str) -> dlt.Pipeline:
    return dlt.pipeline(
        pipeline_name="api_incremental",
        pipelines_dir=str(tmp_path / workdir),
        destination=dlt.destinations.duckdb(str(tmp_path / "x.duckdb")),
        dataset_name="t",
    )


def loaded_ids(tmp_path: Path, table: str) -> list[int]:
    with duckdb.connect(str(tmp_path / "x.duckdb")) as con:
        rows = con.execute(f"select id from t.{table} order by id").fetchall()
    return [int(row[0]) for row in rows]


def test_incremental_sends_last_value_and_loads_only_new_records(
    server: ApiServer, tmp_path: Path
) -> None:
    events = Events()
    server.route("/events", events)
    events.add(0, 3)
    spec = incremental_spec(server)

    make_pipeline(tmp_path, "warm").run(fast_pages(spec, "events"))
    assert loaded_ids(tmp_path, "events") == [0, 1, 2]

    events.add(3, 5)
    make_pipeline(tmp_path, "warm").run(fast_pages(spec, "events"))
    assert loaded_ids(tmp_path, "events") == [0, 1, 2, 3, 4]

    # a cold instance: fresh working dir, state restored from the destination
    events.add(5, 6)
    make_pipeline(tmp_path, "cold").run(fast_pages(spec, "events"))
    assert loaded_ids(tmp_path, "events") == [0, 1, 2, 3, 4, 5]

    sent = [r.query.get("since") for r in server.requests_to("/events")]
    assert sent == ["1000", "1002", "1004"]


def test_incremental_survives_a_piped_transformer(server: ApiServer, tmp_path: Path) -> None:
    events = Events()
    server.route("/events", events)
    events.add(0, 2)
    spec = incremental_spec(server)

    @dlt.transformer(name="events_arrow")
    def to_arrow(page: list[dict[str, Any]]) -> Iterator[pa.Table]:
        yield pa.Table.from_pylist(page)

    for workdir in ("one", "two"):
        pipeline = make_pipeline(tmp_path, workdir)
        pipeline.run(fast_pages(spec, "events") | to_arrow)
        events.add(len(events.rows), len(events.rows) + 2)

    assert loaded_ids(tmp_path, "events_arrow") == [0, 1, 2, 3]
    assert [r.query.get("since") for r in server.requests_to("/events")] == ["1000", "1001"]


def test_overriding_the_cursor_param_is_refused(server: ApiServer) -> None:
    with pytest.raises(RequestError, match="since"):
        api_pages(incremental_spec(server), resource_name="events", params={"since": "0"})


# --- retries and error mapping ---------------------------------------------------------


def test_429_retry_after_is_honoured(server: ApiServer) -> None:
    server.route(
        "/limited", [Reply(429, {"e": "slow down"}, {"Retry-After": "1"}), Reply(200, items(0, 1))]
    )
    assert list(fast_pages(make_spec(server, "/limited"), "l")) == items(0, 1)
    first, second = server.requests_to("/limited")
    assert second.at - first.at >= 0.9, "the retry waited for Retry-After"


def test_retry_after_longer_than_the_max_delay_fails_at_once(server: ApiServer) -> None:
    server.route("/limited", Reply(429, {"e": "come back later"}, {"Retry-After": "3600"}))
    error = raised(fast_pages(make_spec(server, "/limited"), "l"))
    assert isinstance(error, QuotaExceededError) and error.retriable
    assert "3600" in str(error)
    assert len(server.received) == 1, "no wait and no second attempt"


def test_503_bursts_then_success(server: ApiServer) -> None:
    server.route("/flaky", [Reply(503), Reply(503), Reply(502), Reply(200, items(0, 2))])
    spec = make_spec(server, "/flaky", max_attempts=5)
    assert list(fast_pages(spec, "flaky")) == items(0, 2)
    assert len(server.received) == 4


def test_persistent_500_is_unavailable_after_max_attempts(server: ApiServer) -> None:
    server.route("/down", Reply(500, {"e": "boom"}))
    error = raised(fast_pages(make_spec(server, "/down"), "down"))
    assert isinstance(error, SourceUnavailableError)
    assert "'down'" in str(error) and "/down" in str(error)
    assert len(server.received) == 3


def test_404_is_not_found(server: ApiServer) -> None:
    error = raised(fast_pages(make_spec(server, "/missing"), "m"))
    assert isinstance(error, SourceNotFoundError)
    assert len(server.received) == 1


def test_other_4xx_is_a_terminal_source_rejection(server: ApiServer) -> None:
    server.route("/bad", Reply(400, {"e": "bad param"}))
    error = raised(fast_pages(make_spec(server, "/bad"), "bad"))
    assert isinstance(error, SourceRejectedError) and not error.retriable
    assert len(server.received) == 1


def test_connection_refused_is_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    spec = ApiSource(
        base_url=f"http://127.0.0.1:{port}", path="/x", allowed_hosts=["127.0.0.1"], max_attempts=2
    )
    error = raised(fast_pages(spec, "gone"))
    assert isinstance(error, SourceUnavailableError)
    assert "ConnectionError" in str(error)


def test_slow_response_times_out_as_unavailable(server: ApiServer) -> None:
    server.route("/slow", Reply(200, items(0, 1), delay=0.6))
    spec = make_spec(server, "/slow", timeout_seconds=0.2, max_attempts=1)
    error = raised(fast_pages(spec, "slow"))
    assert isinstance(error, SourceUnavailableError)
    assert "Timeout" in str(error)


# --- host guard ------------------------------------------------------------------------


def test_guard_refuses_a_host_not_allowed(server: ApiServer) -> None:
    server.route("/x", Reply(200, items(0, 1)))
    spec = make_spec(server, "/x", allowed_hosts=[])
    error = raised(fast_pages(spec, "x"))
    assert isinstance(error, RequestError) and not error.retriable
    assert "'x'" in str(error) and "127.0.0.1" in str(error)
    assert server.received == []


def test_guard_refuses_a_redirect_to_the_metadata_server(server: ApiServer) -> None:
    location = "http://169.254.169.254/computeMetadata/v1/"
    server.route("/go", Reply(302, None, {"Location": location}))
    error = raised(fast_pages(make_spec(server, "/go"), "go"))
    assert isinstance(error, RequestError)
    assert "169.254.169.254" in str(error)
    assert len(server.received) == 1


def test_guard_allows_a_redirect_within_allowed_hosts(server: ApiServer) -> None:
    server.route("/old", Reply(301, None, {"Location": f"{server.base_url}/new"}))
    server.route("/new", Reply(200, items(0, 1)))
    assert list(fast_pages(make_spec(server, "/old"), "r")) == items(0, 1)


def test_guard_refuses_a_next_page_link_to_a_private_host(server: ApiServer) -> None:
    server.route("/p", Reply(200, {"results": items(0, 1), "next": "http://10.0.0.5/p?page=2"}))
    spec = make_spec(server, "/p", paginator={"type": "json_link"}, data_selector="results")
    error = raised(fast_pages(spec, "p"))
    assert isinstance(error, RequestError)
    assert "10.0.0.5" in str(error)


# --- secrets -------------------------------------------------------------------------


def test_secret_never_appears_in_errors_or_logs(
    server: ApiServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("T_KEY", CANARY)
    # INFO, as in production: urllib3 logs each request line (query string included) at DEBUG
    caplog.set_level(logging.INFO)
    auth = {"type": "api_key", "token_env": "T_KEY", "name": "appid", "location": "query"}
    server.route("/denied", Reply(401))
    server.route("/down", Reply(503))
    server.route("/go", Reply(302, None, {"Location": "http://169.254.169.254/"}))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    specs = [
        make_spec(server, "/denied", auth=auth),
        make_spec(server, "/down", auth=auth),
        make_spec(server, "/missing", auth=auth),
        make_spec(server, "/go", auth=auth),
        make_spec(server, "/x", auth=auth, allowed_hosts=[]),
        ApiSource.model_validate(
            {
                "base_url": f"http://127.0.0.1:{closed_port}",
                "auth": auth,
                "allowed_hosts": ["127.0.0.1"],
                "max_attempts": 2,
            }
        ),
    ]
    for spec in specs:
        with pytest.raises(Exception) as caught:
            list(fast_pages(spec, "secret"))
        assert any(isinstance(part, FerryError) for part in chain(caught.value))
        for part in chain(caught.value):
            assert CANARY not in str(part) and CANARY not in repr(part)
            if isinstance(part, FerryError):
                assert CANARY not in repr(part.to_dict())
        assert CANARY not in "".join(traceback.format_exception(caught.value))
    assert any(r.query.get("appid") == CANARY for r in server.received)
    assert CANARY not in caplog.text
