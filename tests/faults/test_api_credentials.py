"""Attacks on the API source's credentials and host checks (issue 14): a next-page link or a
redirect that carries the token to another host, and a DNS answer that changes between the
guard's lookup and the connect (rebinding)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from app.run.catalog import Catalog
from app.run.runner import RunRequest, run
from core.errors import FerryError
from tests.helpers import count, duckdb_settings, write_catalog
from tests.sources.api_server import ApiServer, Reply, serve

TOKEN_ENV = "FERRY_TEST_API_TOKEN"
TOKEN = "secret-token-7d1"


@pytest.fixture
def api() -> Iterator[ApiServer]:
    with serve() as server:
        yield server


@pytest.fixture
def other() -> Iterator[ApiServer]:
    """Another host (127.0.0.2): a different origin from `api`."""
    with serve("127.0.0.2") as server:
        yield server


def catalog(folder: Path, base_url: str, **source: Any) -> Catalog:
    spec: dict[str, Any] = {
        "kind": "api",
        "base_url": base_url,
        "path": "/items",
        "max_attempts": 1,
        "data_selector": "items",
        "paginator": {"type": "json_link", "next_url_path": "next"},
    }
    spec.update(source)
    document = {"pipelines": [{"name": "api", "source": spec, "destination": {"table": "items"}}]}
    return write_catalog(folder, json.dumps(document))


def page(ids: list[int], next_url: str | None = None) -> Reply:
    return Reply(body={"items": [{"id": i} for i in ids], "next": next_url})


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    return TOKEN


BEARER = {"type": "bearer", "token_env": TOKEN_ENV}


def test_next_link_to_an_unlisted_host_is_refused_and_gets_no_token(
    tmp_path: Path, api: ApiServer, other: ApiServer, token: str
) -> None:
    api.route("/items", page([1, 2], f"{other.base_url}/steal"))
    other.route("/steal", page([3]))
    settings = duckdb_settings(tmp_path)
    pipelines = catalog(tmp_path, api.base_url, allowed_hosts=["127.0.0.1"], auth=BEARER)

    with pytest.raises(FerryError) as raised:
        run(RunRequest("api"), settings, pipelines)

    assert raised.value.code == "request_invalid" and not raised.value.retriable
    assert "127.0.0.2" in str(raised.value) and "allowed_hosts" in str(raised.value)
    assert other.received == []
    assert api.requests_to("/items")[0].headers["authorization"] == f"Bearer {token}"
    assert count(settings, "items") == 0


def test_next_link_to_a_listed_host_is_followed_without_the_token(
    tmp_path: Path, api: ApiServer, other: ApiServer, token: str
) -> None:
    api.route("/items", page([1, 2], f"{other.base_url}/more"))
    other.route("/more", page([3, 4], f"{api.base_url}/items2"))
    api.route("/items2", page([5]))
    settings = duckdb_settings(tmp_path)
    pipelines = catalog(
        tmp_path, api.base_url, allowed_hosts=["127.0.0.1", "127.0.0.2"], auth=BEARER
    )

    report = run(RunRequest("api"), settings, pipelines)

    assert report.rows_loaded == 5 and count(settings, "items") == 5
    assert [r.headers.get("authorization") for r in other.received] == [None]
    # back on base_url's origin, the token is sent again
    assert api.requests_to("/items2")[0].headers["authorization"] == f"Bearer {token}"


def test_same_host_other_port_is_another_origin(tmp_path: Path, api: ApiServer, token: str) -> None:
    with serve() as second:
        api.route("/items", page([1], f"{second.base_url}/more"))
        second.route("/more", page([2]))
        settings = duckdb_settings(tmp_path)
        report = run(
            RunRequest("api"),
            settings,
            catalog(tmp_path, api.base_url, allowed_hosts=["127.0.0.1"], auth=BEARER),
        )
        assert report.rows_loaded == 2
        assert [r.headers.get("authorization") for r in second.received] == [None]


def test_redirect_to_another_host_drops_an_api_key_header(
    tmp_path: Path, api: ApiServer, other: ApiServer, token: str
) -> None:
    # requests strips only `Authorization` on a cross-host redirect, not X-Api-Key
    api.route("/items", Reply(302, None, {"Location": f"{other.base_url}/items"}))
    other.route("/items", page([1, 2]))
    settings = duckdb_settings(tmp_path)
    auth = {"type": "api_key", "name": "X-Api-Key", "location": "header", "token_env": TOKEN_ENV}
    pipelines = catalog(tmp_path, api.base_url, allowed_hosts=["127.0.0.1", "127.0.0.2"], auth=auth)

    report = run(RunRequest("api"), settings, pipelines)

    assert report.rows_loaded == 2 and count(settings, "items") == 2
    assert api.requests_to("/items")[0].headers["x-api-key"] == token
    assert "x-api-key" not in other.requests_to("/items")[0].headers


# --- DNS rebinding ----------------------------------------------------------------------------

REBIND_HOST = "rebind.ferry-test.example"
PUBLIC_ADDRESS = "93.184.216.34"


@dataclass
class Dns:
    """Scripted answers for `REBIND_HOST` (the last one repeats) and the answers given."""

    script: list[str]
    answers: list[str] = field(default_factory=list)


@pytest.fixture
def rebinding_dns(monkeypatch: pytest.MonkeyPatch) -> Dns:
    """`REBIND_HOST` answers a public address on its first lookup and loopback after.

    Nothing ever connects to the public address: the loopback answer is the attack.
    """
    dns = Dns([PUBLIC_ADDRESS, "127.0.0.1"])
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != REBIND_HOST:
            return real(host, port, *args, **kwargs)
        address = dns.script.pop(0) if len(dns.script) > 1 else dns.script[0]
        dns.answers.append(address)
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port or 0))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return dns


def test_dns_rebinding_cannot_reach_loopback(
    tmp_path: Path, api: ApiServer, rebinding_dns: Dns
) -> None:
    api.route("/items", page([1, 2]))
    settings = duckdb_settings(tmp_path)
    pipelines = catalog(tmp_path, f"http://{REBIND_HOST}:{api.port}")

    with pytest.raises(FerryError) as raised:
        run(RunRequest("api"), settings, pipelines)

    assert raised.value.code == "request_invalid" and not raised.value.retriable
    assert "127.0.0.1" in str(raised.value)
    assert rebinding_dns.answers[:2] == [PUBLIC_ADDRESS, "127.0.0.1"]
    assert api.received == []
    assert count(settings, "items") == 0


def test_a_listed_host_still_connects_by_name(
    tmp_path: Path, api: ApiServer, rebinding_dns: Dns
) -> None:
    rebinding_dns.script[:] = ["127.0.0.1"]
    api.route("/items", page([1, 2]))
    settings = duckdb_settings(tmp_path)
    pipelines = catalog(tmp_path, f"http://{REBIND_HOST}:{api.port}", allowed_hosts=[REBIND_HOST])

    assert run(RunRequest("api"), settings, pipelines).rows_loaded == 2
    assert api.requests_to("/items")[0].headers["host"] == f"{REBIND_HOST}:{api.port}"
