"""Attacks on the service and the runner, end to end: forged push tokens, SSRF through config,
requests and redirects, injected identifiers and object names, path traversal, and a canary
secret hunted through every log, error, report, working file and destination table.

Nothing here leaves 127.0.0.0/8: the `jail` fixture refuses (and records) any other connect,
so a broken guard shows up as a recorded attempt, never as traffic to a metadata server.
"""

from __future__ import annotations

import errno
import gzip
import json
import logging
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import duckdb
import pytest
from dlt.common.versioned_state import decompress_state
from fastapi.testclient import TestClient

from app.edges.server import create_app
from app.run import runner as app_runner
from app.run.catalog import Catalog
from app.run.report import RunReport
from app.run.runner import RunRequest, run
from core.errors import ConfigError, FerryError
from core.settings import Settings
from tests.emulators import GcsEmulator
from tests.helpers import count, duckdb_settings, query, write_catalog
from tests.oidc import AUDIENCE, PUSHER, CertsServer, SigningKey, claims
from tests.pubsub_messages import gcs_notification, storage_cloudevent_binary, wrapped_push
from tests.service_process import run_service
from tests.sources.api_server import ApiServer, Received, Reply, serve

CANARY = "canary-5f2e9c"
CANARY_ENV = "FERRY_TEST_CANARY_TOKEN"
BUCKET = "ferry-in"
PUSH_PIPELINES = f"""
pipelines:
  - {{name: people, source: {{uri: "gs://{BUCKET}/incoming/*.csv"}},
      destination: {{table: people}}}}
"""
PEOPLE_CSV = b"id,name\n1,ada\n2,grace\n3,linus\n"


# --- shared fixtures and helpers ------------------------------------------------------------


@dataclass
class Jail:
    """Connect attempts to anything outside loopback, refused before a packet leaves."""

    attempts: list[str] = field(default_factory=list)


@pytest.fixture
def jail(monkeypatch: pytest.MonkeyPatch) -> Jail:
    state = Jail()
    original = socket.socket.connect

    def connect(sock: socket.socket, address: Any) -> None:
        host = str(address[0]) if isinstance(address, tuple) else str(address)
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not (
            host.startswith("127.") or host in ("::1", "::ffff:127.0.0.1", "localhost")
        ):
            state.attempts.append(host)
            raise OSError(errno.ENETUNREACH, f"test jail: {host} is not loopback")
        original(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return state


@dataclass
class RunLog:
    """Every runner call the service made (patched into app.run.runner, which the service
    imports on its first run)."""

    requests: list[RunRequest] = field(default_factory=list)


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> RunLog:
    log = RunLog()

    def recording_run(request: RunRequest, *args: Any, **kwargs: Any) -> RunReport:
        log.requests.append(request)
        return run(request, *args, **kwargs)

    monkeypatch.setattr(app_runner, "run", recording_run)
    return log


def run_dirs(settings: Settings) -> list[Path]:
    root = settings.data_dir / "runs"
    return sorted(root.iterdir()) if root.exists() else []


@pytest.fixture
def api() -> Iterator[ApiServer]:
    with serve() as server:
        yield server


def api_catalog(folder: Path, base_url: str, **source: Any) -> Catalog:
    spec: dict[str, Any] = {
        "kind": "api",
        "base_url": base_url,
        "path": "/items",
        "max_attempts": 1,
    }
    spec.update(source)
    document = {
        "pipelines": [
            {"name": "api", "source": spec, "destination": {"table": "items"}},
        ]
    }
    return write_catalog(folder, json.dumps(document))


def items(request: Received) -> Reply:
    return Reply(body=[{"id": 1, "name": "one"}, {"id": 2, "name": "two"}])


# --- push tokens ----------------------------------------------------------------------------


def upload(gcs: GcsEmulator, bucket: str, name: str, data: bytes) -> int:
    gcs.client().bucket(bucket).blob(name).upload_from_string(data)
    stored = gcs.client().bucket(bucket).get_blob(name)
    assert stored is not None
    return int(stored.generation)


@pytest.fixture
def landing(gcs_env: GcsEmulator, unique_name: str) -> str:
    gcs_env.client().create_bucket(unique_name)
    return unique_name


def push_settings(tmp_path: Path, gcs: GcsEmulator | None, **overrides: Any) -> Settings:
    if gcs is not None:
        overrides |= {"storage_emulator_host": gcs.endpoint, "gcs_project": "test-project"}
    return duckdb_settings(tmp_path, **overrides)


def both_deliveries(
    bucket: str, name: str, generation: int
) -> list[tuple[str, dict[str, str], bytes]]:
    """The same object event as a Pub/Sub push and as an Eventarc CloudEvent."""
    pubsub_headers, pubsub_body = wrapped_push(*gcs_notification(bucket, name, generation))
    event_headers, event_body = storage_cloudevent_binary(bucket, name, generation)
    return [("/pubsub", pubsub_headers, pubsub_body), ("/", event_headers, event_body)]


def unsigned_token() -> str:
    import base64

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'kid': 'google-key-1'})}.{part(claims())}."


TokenMaker = Callable[[SigningKey, SigningKey], str | None]

BAD_TOKENS: list[Any] = [
    pytest.param(lambda g, o: None, 401, "unauthenticated", id="missing"),
    pytest.param(lambda g, o: "not-a-jwt", 401, "unauthenticated", id="garbage"),
    pytest.param(
        lambda g, o: o.sign(claims(), kid=g.kid), 401, "unauthenticated", id="forged-google-kid"
    ),
    pytest.param(lambda g, o: o.sign(claims()), 401, "unauthenticated", id="forged-unknown-kid"),
    pytest.param(lambda g, o: unsigned_token(), 401, "unauthenticated", id="alg-none"),
    pytest.param(
        lambda g, o: g.sign(claims(iat=int(time.time()) - 7200, exp=int(time.time()) - 600)),
        401,
        "unauthenticated",
        id="expired",
    ),
    pytest.param(
        lambda g, o: g.sign(claims(aud="https://attacker.example/pubsub")),
        401,
        "unauthenticated",
        id="wrong-audience",
    ),
    pytest.param(
        lambda g, o: g.sign(claims(iss="https://evil.example")),
        401,
        "unauthenticated",
        id="wrong-issuer",
    ),
    pytest.param(
        lambda g, o: g.sign(claims(email="intruder@other.iam.gserviceaccount.com")),
        403,
        "forbidden",
        id="wrong-account",
    ),
    pytest.param(
        lambda g, o: g.sign(claims(email_verified=False)), 403, "forbidden", id="unverified-email"
    ),
]


@pytest.mark.emulators
@pytest.mark.parametrize(("make_token", "status", "code"), BAD_TOKENS)
def test_bad_push_token_is_refused_and_nothing_runs(
    tmp_path: Path,
    gcs_env: GcsEmulator,
    landing: str,
    certs_server: CertsServer,
    google_key: SigningKey,
    other_key: SigningKey,
    runs: RunLog,
    make_token: TokenMaker,
    status: int,
    code: str,
) -> None:
    generation = upload(gcs_env, landing, "incoming/a.csv", PEOPLE_CSV)
    write_catalog(tmp_path, PUSH_PIPELINES.replace(BUCKET, landing))
    settings = push_settings(
        tmp_path,
        gcs_env,
        push_auth_audience=AUDIENCE,
        push_auth_service_accounts=[PUSHER],
        push_auth_certs_url=certs_server.url,
    )
    token = make_token(google_key, other_key)
    with TestClient(create_app(settings)) as client:
        for path, headers, body in both_deliveries(landing, "incoming/a.csv", generation):
            if token is not None:
                headers["authorization"] = f"Bearer {token}"
            response = client.post(path, headers=headers, content=body)
            assert response.status_code == status, (path, response.text)
            assert response.json()["error"]["code"] == code
            assert token is None or token not in response.text
    assert runs.requests == [] and run_dirs(settings) == []
    assert count(settings, "people") == 0


@pytest.mark.emulators
def test_good_push_token_loads_the_same_deliveries(
    tmp_path: Path,
    gcs_env: GcsEmulator,
    landing: str,
    certs_server: CertsServer,
    google_key: SigningKey,
) -> None:
    """The control for the refusals above: the same setup with a valid token does load."""
    generation = upload(gcs_env, landing, "incoming/a.csv", PEOPLE_CSV)
    write_catalog(tmp_path, PUSH_PIPELINES.replace(BUCKET, landing))
    settings = push_settings(
        tmp_path,
        gcs_env,
        push_auth_audience=AUDIENCE,
        push_auth_service_accounts=[PUSHER],
        push_auth_certs_url=certs_server.url,
    )
    good = f"Bearer {google_key.sign(claims())}"
    with TestClient(create_app(settings)) as client:
        statuses = [
            client.post(path, headers={**headers, "authorization": good}, content=body).json()
            for path, headers, body in both_deliveries(landing, "incoming/a.csv", generation)
        ]
    assert [s["status"] for s in statuses] == ["loaded", "skipped"], statuses
    assert count(settings, "people") == 3


# --- notifications the service must not act on ---------------------------------------------


def test_notification_for_an_unconfigured_bucket_is_ignored(tmp_path: Path, runs: RunLog) -> None:
    write_catalog(tmp_path, PUSH_PIPELINES)
    settings = duckdb_settings(tmp_path)
    with TestClient(create_app(settings)) as client:
        for path, headers, body in both_deliveries("someone-elses-bucket", "incoming/a.csv", 3):
            response = client.post(path, headers=headers, content=body)
            assert response.status_code == 200, response.text
            assert response.json()["status"] == "ignored"
            assert "someone-elses-bucket" in response.json()["detail"]
    assert runs.requests == [] and run_dirs(settings) == []
    assert count(settings, "people") == 0


TRAVERSAL_NAMES = [
    pytest.param("incoming/../../etc/passwd.csv", id="dotdot"),
    pytest.param("incoming/../incoming/a.csv", id="dotdot-back-inside"),
    pytest.param("incoming/%2e%2e/%2e%2e/etc/passwd.csv", id="encoded-dots"),
    pytest.param("incoming/%2E%2E%2Fsecret.csv", id="encoded-dots-and-slash"),
    pytest.param("incoming/..%2f..%2fsecret.csv", id="encoded-slash"),
    pytest.param("incoming/%252e%252e/secret.csv", id="double-encoded"),
    pytest.param("incoming\\..\\..\\secret.csv", id="backslashes"),
    pytest.param("incoming/..%5csecret.csv", id="encoded-backslash"),
    pytest.param("/etc/passwd", id="absolute"),
    pytest.param("incoming/./a.csv", id="dot-segment"),
    pytest.param("incoming/a.csv\x00.txt", id="nul"),
]


@pytest.mark.parametrize("name", TRAVERSAL_NAMES)
def test_traversal_object_name_in_a_notification_is_refused_unread(
    tmp_path: Path, runs: RunLog, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    import sources.files

    opened: list[str] = []
    for reader in ("get_object", "list_objects", "open_stream", "open_seekable"):
        original = getattr(sources.files, reader, None)
        if original is None:
            continue

        def record(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            opened.append(str(args[0]))
            return _original(*args, **kwargs)

        monkeypatch.setattr(sources.files, reader, record)
    write_catalog(tmp_path, PUSH_PIPELINES)
    settings = duckdb_settings(tmp_path)
    with TestClient(create_app(settings)) as client:
        for path, headers, body in both_deliveries(BUCKET, name, 5):
            response = client.post(path, headers=headers, content=body)
            assert response.status_code == 200, "terminal: acknowledged, never redelivered"
            assert response.json()["status"] == "failed_terminal", response.text
            assert response.json()["error"]["code"] == "request_invalid"
    assert runs.requests == [] and opened == [] and run_dirs(settings) == []
    assert count(settings, "people") == 0


# --- /runs source overrides -------------------------------------------------------------------


@pytest.fixture
def local_catalog(tmp_path: Path) -> Catalog:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.csv").write_text("id,name\n1,ada\n", encoding="utf-8")
    (tmp_path / "secret.csv").write_text("id,name\n666,secret\n", encoding="utf-8")
    return write_catalog(
        tmp_path,
        f"""
        pipelines:
          - {{name: local, source: {{uri: "data/*.csv"}}, destination: {{table: local}}}}
          - {{name: people, source: {{uri: "gs://{BUCKET}/incoming/*.csv"}},
              destination: {{table: people}}}}
        """,
    )


@pytest.mark.parametrize(
    ("body", "status"),
    [
        pytest.param(
            {"pipeline": "people", "source": "gs://other-bucket/incoming/a.csv"},
            400,
            id="other-bucket",
        ),
        pytest.param(
            {"pipeline": "people", "source": f"gs://{BUCKET}x/incoming/a.csv"},
            400,
            id="bucket-name-prefix",
        ),
        pytest.param(
            {"pipeline": "people", "source": f"gs://{BUCKET}/elsewhere/a.csv"},
            400,
            id="other-prefix",
        ),
        pytest.param(
            {"pipeline": "people", "source": f"gs://{BUCKET}/incoming-x/a.csv"},
            400,
            id="prefix-lookalike",
        ),
        pytest.param(
            {"pipeline": "people", "source": f"gs://{BUCKET}/incoming/../x/a.csv"},
            400,
            id="gcs-dotdot",
        ),
        pytest.param(
            {"pipeline": "people", "source": f"gs://{BUCKET}/incoming/*/../../x.csv"},
            400,
            id="gcs-glob-dotdot",
        ),
        pytest.param(
            {"pipeline": "people", "source": f"gs://{BUCKET}/incoming/%2e%2e/a.csv"},
            400,
            id="gcs-encoded-dotdot",
        ),
        pytest.param(
            {"pipeline": "people", "source": "gs://other-bucket/**"}, 400, id="other-bucket-glob"
        ),
        pytest.param({"pipeline": "local", "source": "../secret.csv"}, 400, id="local-dotdot"),
        pytest.param(
            {"pipeline": "local", "source": "data/../secret.csv"}, 400, id="local-inner-dotdot"
        ),
        pytest.param(
            {"pipeline": "local", "source": "data/*/../../secret.csv"}, 400, id="local-glob-dotdot"
        ),
        pytest.param(
            {"pipeline": "local", "source": "data/%2e%2e/secret.csv"},
            400,
            id="local-encoded-dotdot",
        ),
        pytest.param({"pipeline": "local", "source": "{secret}"}, 400, id="local-absolute"),
        pytest.param({"pipeline": "local", "source": "/etc/passwd"}, 400, id="etc-passwd"),
        pytest.param(
            {"pipeline": "local", "source": f"gs://{BUCKET}/incoming/a.csv"}, 400, id="local-to-gcs"
        ),
        pytest.param({"source": "gs://other-bucket/a.csv"}, 404, id="source-alone-other-bucket"),
        pytest.param({"source": "../secret.csv"}, 404, id="source-alone-dotdot"),
    ],
)
def test_source_override_outside_the_pipeline_is_refused(
    tmp_path: Path, local_catalog: Catalog, body: dict[str, str], status: int
) -> None:
    secret = tmp_path / "secret.csv"
    body = {key: value.replace("{secret}", str(secret)) for key, value in body.items()}
    settings = duckdb_settings(tmp_path)
    with TestClient(create_app(settings)) as client:
        response = client.post("/runs", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["recovery"] == "terminal"
    assert count(settings, "local") == 0 and count(settings, "people") == 0


# --- SSRF -------------------------------------------------------------------------------------


def test_loopback_base_url_without_allowed_hosts_is_refused_unsent(
    tmp_path: Path, api: ApiServer, jail: Jail
) -> None:
    api.route("/items", items)
    catalog = api_catalog(tmp_path, api.base_url)
    settings = duckdb_settings(tmp_path)

    with pytest.raises(FerryError) as raised:
        run(RunRequest("api"), settings, catalog)

    assert raised.value.code == "request_invalid" and not raised.value.retriable
    assert "allowed_hosts" in str(raised.value)
    assert api.received == [] and jail.attempts == []
    assert count(settings, "items") == 0
    # the control: listing the host lets the same pipeline through
    allowed = api_catalog(tmp_path, api.base_url, allowed_hosts=["127.0.0.1"])
    assert run(RunRequest("api"), settings, allowed).rows_loaded == 2


@pytest.mark.parametrize(
    "base_url",
    [
        pytest.param("http://localhost:{port}", id="localhost"),
        pytest.param("http://LOCALHOST.:{port}", id="localhost-upper-dot"),
        pytest.param("http://127.1:{port}", id="short-loopback"),
        pytest.param("http://2130706433:{port}", id="decimal-loopback"),
        pytest.param("http://0x7f.0.0.1:{port}", id="hex-loopback"),
        pytest.param("http://0.0.0.0:{port}", id="unspecified"),
        pytest.param("http://[::1]:{port}", id="ipv6-loopback"),
        pytest.param("http://[::ffff:127.0.0.1]:{port}", id="ipv4-mapped-loopback"),
        pytest.param("http://169.254.169.254/computeMetadata/v1", id="metadata-ip"),
        pytest.param("http://metadata.google.internal/computeMetadata/v1", id="metadata-name"),
        pytest.param("http://Metadata.Google.Internal./", id="metadata-name-variant"),
        pytest.param("http://metadata/computeMetadata/v1", id="metadata-short"),
        pytest.param("http://[::ffff:169.254.169.254]/", id="mapped-metadata"),
        pytest.param("http://[::ffff:a9fe:a9fe]/", id="mapped-metadata-hex"),
        pytest.param("http://[64:ff9b::a9fe:a9fe]/", id="nat64-metadata"),
        pytest.param("http://[fe80::1]/", id="ipv6-link-local"),
        pytest.param("http://[fd00::1]/", id="ipv6-unique-local"),
        pytest.param("http://10.0.0.1/", id="private-10"),
        pytest.param("http://172.16.0.1/", id="private-172"),
        pytest.param("http://192.168.0.1/", id="private-192"),
        pytest.param("http://100.64.0.1/", id="carrier-nat"),
        pytest.param("http://user:pw@169.254.169.254@127.0.0.1:{port}/", id="userinfo-trick"),
    ],
)
def test_internal_base_url_is_refused_through_the_service(
    tmp_path: Path, api: ApiServer, jail: Jail, base_url: str
) -> None:
    api.route("/items", items)
    api_catalog(tmp_path, base_url.replace("{port}", str(api.port)))
    settings = duckdb_settings(tmp_path)
    with TestClient(create_app(settings)) as client:
        response = client.post("/runs", json={"pipeline": "api"})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "request_invalid" and error["recovery"] == "terminal"
    assert api.received == [] and jail.attempts == []
    assert count(settings, "items") == 0


class CountingServer:
    """A plain HTTP server on another loopback address (127.0.0.2) that counts requests."""

    def __init__(self, host: str) -> None:
        hits = self.hits = [0]

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits[0] += 1
                body = b'[{"id": 99, "name": "internal"}]'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> CountingServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def internal() -> Iterator[CountingServer]:
    with CountingServer("127.0.0.2") as server:
        yield server


@pytest.mark.parametrize(
    "location",
    [
        pytest.param("http://169.254.169.254/computeMetadata/v1/?recursive=true", id="metadata"),
        pytest.param("http://metadata.google.internal/computeMetadata/v1/", id="metadata-name"),
        pytest.param("http://[::ffff:169.254.169.254]/latest/meta-data/", id="mapped-metadata"),
        pytest.param("{internal}/items", id="other-loopback-address"),
        pytest.param("http://localhost:{port}/items", id="same-server-other-name"),
        pytest.param("file:///etc/passwd", id="file-scheme"),
        pytest.param("ftp://127.0.0.1/items", id="ftp-scheme"),
    ],
)
@pytest.mark.parametrize("where", ["first-page", "next-page"])
def test_redirect_or_next_link_to_an_internal_host_is_refused(
    tmp_path: Path,
    api: ApiServer,
    internal: CountingServer,
    jail: Jail,
    location: str,
    where: str,
) -> None:
    target = location.replace("{internal}", internal.url).replace("{port}", str(api.port))
    if where == "first-page":
        api.route("/items", Reply(302, None, {"Location": target}))
        catalog = api_catalog(tmp_path, api.base_url, allowed_hosts=["127.0.0.1"])
    else:
        api.route("/items", Reply(body={"items": [{"id": 1, "name": "one"}], "next": target}))
        catalog = api_catalog(
            tmp_path,
            api.base_url,
            allowed_hosts=["127.0.0.1"],
            data_selector="items",
            paginator={"type": "json_link", "next_url_path": "next"},
        )
    settings = duckdb_settings(tmp_path)

    with pytest.raises(FerryError) as raised:
        run(RunRequest("api"), settings, catalog)

    assert raised.value.code == "request_invalid", raised.value.to_dict()
    assert not raised.value.retriable
    assert internal.hits == [0] and jail.attempts == []
    assert len(api.requests_to("/items")) == 1
    assert count(settings, "items") == 0


def test_request_params_cannot_move_the_host_or_path(
    tmp_path: Path, api: ApiServer, internal: CountingServer, jail: Jail
) -> None:
    api.route("/items", items)
    api_catalog(tmp_path, api.base_url, allowed_hosts=["127.0.0.1"], params={"page_size": "2"})
    settings = duckdb_settings(tmp_path)
    attempts = {
        "url": "http://169.254.169.254/computeMetadata/v1/",
        "base_url": internal.url,
        "host": "metadata.google.internal",
        "path": "/admin",
        "Host": "127.0.0.2",
        "../../admin": "x",
        "page_size": "1",
    }
    with TestClient(create_app(settings)) as client:
        response = client.post("/runs", json={"pipeline": "api", "params": attempts})
        # `source` narrows file pipelines; on an API pipeline it is refused, not ignored
        override = client.post("/runs", json={"pipeline": "api", "source": f"{internal.url}/items"})
    assert response.status_code == 200, response.text
    assert override.status_code == 400, override.text
    assert override.json()["error"]["code"] == "request_invalid"
    received = api.requests_to("/items")
    assert len(api.received) == len(received) == 1
    # the overrides arrive as ordinary query parameters, nothing more
    assert received[0].query == attempts
    assert internal.hits == [0] and jail.attempts == []


@pytest.mark.parametrize(
    "base_url",
    [
        "file:///etc/passwd",
        "ftp://files.example.com/data",
        "gopher://127.0.0.1:70/",
        "javascript:alert(1)",
        "//169.254.169.254/",
        "169.254.169.254/latest",
        " http://169.254.169.254/",
    ],
)
def test_base_url_with_another_scheme_is_a_config_error(tmp_path: Path, base_url: str) -> None:
    with pytest.raises(ConfigError) as raised:
        api_catalog(tmp_path, base_url)
    assert "pipeline 'api', field source.base_url" in str(raised.value)


# --- identifiers and injected names ---------------------------------------------------------


@pytest.mark.parametrize(
    ("destination", "field_name"),
    [
        pytest.param({"table": "orders; drop table x"}, "destination.table", id="semicolon"),
        pytest.param({"table": "a-b"}, "destination.table", id="dash"),
        pytest.param({"table": "`people`"}, "destination.table", id="backticks"),
        pytest.param({"table": '"people"'}, "destination.table", id="double-quotes"),
        pytest.param({"table": "people'--"}, "destination.table", id="single-quote"),
        pytest.param({"table": "ferry.people"}, "destination.table", id="qualified"),
        pytest.param({"table": "a b"}, "destination.table", id="space"),
        pytest.param({"table": "1st"}, "destination.table", id="leading-digit"),
        pytest.param({"table": ""}, "destination.table", id="empty"),
        pytest.param({"table": "x" * 200}, "destination.table", id="too-long"),
        pytest.param({"table": "t\u0000"}, "destination.table", id="nul"),
        pytest.param(
            {"table": "ok", "write_disposition": "merge", "primary_key": ["id; drop table x"]},
            "destination.primary_key",
            id="primary-key",
        ),
        pytest.param(
            {"table": "ok", "write_disposition": "merge", "merge_key": ["a`b"]},
            "destination.merge_key",
            id="merge-key",
        ),
        pytest.param({"table": "ok", "cluster": ['c"']}, "destination.cluster", id="cluster"),
        pytest.param(
            {"table": "ok", "partition": "day); drop table x; --"},
            "destination.partition",
            id="partition",
        ),
    ],
)
def test_injected_identifier_in_config_is_a_config_error(
    tmp_path: Path, destination: dict[str, Any], field_name: str
) -> None:
    document = {
        "pipelines": [{"name": "orders", "source": {"uri": "in/*.csv"}, "destination": destination}]
    }
    with pytest.raises(ConfigError) as raised:
        write_catalog(tmp_path, json.dumps(document))
    assert f"pipeline 'orders', field {field_name}" in str(raised.value)


# gcp-storage-emulator builds mediaLink from the raw name and urlparse() then cuts the path at
# ';', so the emulator cannot serve a name with ';' (real GCS escapes it): the local-file test
# below carries the ';' forms, this one the quotes.
INJECTED_NAME = "incoming/x' OR '1'='1\" -- DROP TABLE people.csv"


@pytest.mark.emulators
def test_object_name_with_sql_is_loaded_as_data(
    tmp_path: Path, gcs_env: GcsEmulator, landing: str, runs: RunLog
) -> None:
    generation = upload(gcs_env, landing, INJECTED_NAME, PEOPLE_CSV)
    write_catalog(tmp_path, PUSH_PIPELINES.replace(BUCKET, landing))
    settings = push_settings(tmp_path, gcs_env)
    uri = f"gs://{landing}/{INJECTED_NAME}"
    with TestClient(create_app(settings)) as client:
        path, headers, body = both_deliveries(landing, INJECTED_NAME, generation)[0]
        first = client.post(path, headers=headers, content=body)
        # the redelivery finds the name in the ledger (a bound parameter) and loads nothing
        again = client.post(path, headers=headers, content=body)
        key = "k'; DROP TABLE _ferry_idempotency;--"
        by_source = client.post("/runs", json={"source": uri, "idempotency_key": key})
        replay = client.post("/runs", json={"source": uri, "idempotency_key": key})

    assert first.status_code == 200 and first.json()["status"] == "loaded", first.text
    assert again.status_code == 200 and again.json()["status"] == "skipped", again.text
    assert by_source.status_code == 200 and by_source.json()["status"] == "skipped"
    assert replay.status_code == 200 and replay.json()["replayed"] is True
    rows = query(
        settings,
        "select id, name, _ferry_source_uri, _ferry_source_generation "
        "from ferry.people order by id",
    )
    assert rows == [
        (1, "ada", uri, generation),
        (2, "grace", uri, generation),
        (3, "linus", uri, generation),
    ]
    assert len(runs.requests) == 3


def test_local_file_name_with_sql_is_loaded_as_data(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    name = "x'; DROP TABLE people;--.csv"
    (folder / name).write_bytes(PEOPLE_CSV)
    (folder / 'y"); DELETE FROM people; --.csv').write_bytes(b"id,name\n4,barbara\n")
    catalog = write_catalog(
        tmp_path,
        """
        pipelines:
          - {name: people, source: {uri: "in/*.csv"}, destination: {table: people}}
        """,
    )
    settings = duckdb_settings(tmp_path)

    assert run(RunRequest("people"), settings, catalog).rows_loaded == 4
    assert run(RunRequest("people"), settings, catalog).status == "skipped"

    rows = query(settings, "select id, name from ferry.people order by id")
    assert rows == [(1, "ada"), (2, "grace"), (3, "linus"), (4, "barbara")]


# --- the canary secret ------------------------------------------------------------------------


def secret_api(api: ApiServer) -> None:
    """/ok needs the canary bearer token; /denied and /broken echo what they got (as some real
    APIs do), so any ferry code that surfaces a response body would leak the token."""

    def ok(request: Received) -> Reply:
        if request.headers.get("authorization") != f"Bearer {CANARY}":
            return Reply(401, {"error": "bad token"})
        return Reply(body=[{"id": 1, "name": "one"}, {"id": 2, "name": "two"}])

    def denied(request: Received) -> Reply:
        header = request.headers.get("authorization", "")
        return Reply(401, {"error": f"token {header} is revoked"}, {"WWW-Authenticate": header})

    def broken(request: Received) -> Reply:
        header = request.headers.get("authorization", "")
        return Reply(500, {"error": f"upstream failed for {header}"}, {"X-Debug": header})

    api.route("/ok", ok)
    api.route("/denied", denied)
    api.route("/broken", broken)


def secret_pipelines(folder: Path, base_url: str) -> Path:
    source = {
        "kind": "api",
        "base_url": base_url,
        "allowed_hosts": ["127.0.0.1"],
        "auth": {"type": "bearer", "token_env": CANARY_ENV},
        "max_attempts": 2,
    }
    document = {
        "pipelines": [
            {
                "name": name,
                "source": {**source, "path": f"/{name}", "params": {"q": "x"}},
                "destination": {"table": f"items_{name}"},
            }
            for name in ("ok", "denied", "broken")
        ]
    }
    path = folder / "pipelines.yaml"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def files_with_canary(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        try:
            data = path.read_bytes()
        except OSError:
            continue  # removed while we walked
        texts = [data]
        if data[:2] == b"\x1f\x8b":
            texts.append(gzip.decompress(data))
        if any(CANARY.encode() in text for text in texts):
            found.append(str(path))
    return found


def tables_with_canary(database: Path) -> list[str]:
    found = []
    with duckdb.connect(str(database), read_only=True) as connection:
        tables = connection.execute(
            "select table_schema, table_name from information_schema.tables"
        ).fetchall()
        for schema_name, table in tables:
            rows = connection.execute(f'select * from "{schema_name}"."{table}"').fetchall()
            text = repr(rows)
            if table == "_dlt_pipeline_state":
                columns = [c[0] for c in connection.description or []]
                state = columns.index("state")
                text += repr([decompress_state(row[state]) for row in rows])
            if CANARY in text:
                found.append(f"{schema_name}.{table}")
    return found


def test_canary_token_never_leaks_from_a_run(
    tmp_path: Path,
    api: ApiServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret_api(api)
    monkeypatch.setenv(CANARY_ENV, CANARY)
    settings = duckdb_settings(tmp_path)
    catalog = write_catalog(tmp_path, secret_pipelines(tmp_path, api.base_url).read_text())
    caplog.set_level(logging.DEBUG)
    for name in ("dlt", "urllib3", "sources", "ferry", "app"):
        caplog.set_level(logging.DEBUG, logger=name)

    leaked: list[str] = []
    scanned = [0]

    def scan_working_dirs(report: RunReport) -> None:
        scanned[0] += 1
        leaked.extend(files_with_canary(settings.data_dir))

    # a failing run never reaches a progress checkpoint: scan each working dir as it is removed
    original_rmtree = shutil.rmtree

    def scanning_rmtree(path: Any, *args: Any, **kwargs: Any) -> None:
        if settings.data_dir in Path(path).parents and Path(path).exists():
            scanned[0] += 1
            leaked.extend(files_with_canary(Path(path)))
        original_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", scanning_rmtree)

    report = run(RunRequest("ok"), settings, catalog, progress=scan_working_dirs)
    assert report.rows_loaded == 2
    surfaces = [json.dumps(report.to_dict())]
    for name, code in (("denied", "source_access_denied"), ("broken", "source_unavailable")):
        with pytest.raises(FerryError) as raised:
            run(RunRequest(name), settings, catalog, progress=scan_working_dirs)
        error = raised.value
        assert error.code == code, error.to_dict()
        surfaces += [str(error), repr(error), json.dumps(error.to_dict(), default=str)]
        assert error.report is not None
        surfaces.append(json.dumps(error.report.to_dict(), default=str))

    assert len(api.requests_to("/ok")) == 1 and len(api.requests_to("/broken")) == 2
    assert all(r.headers["authorization"] == f"Bearer {CANARY}" for r in api.received)
    assert scanned[0] >= 4
    assert caplog.records, "logging was captured"
    surfaces += [record.getMessage() for record in caplog.records]
    surfaces += [json.dumps(vars(record), default=str) for record in caplog.records]
    surfaces.append(caplog.text)
    assert [text for text in surfaces if CANARY in text] == []
    assert leaked == []
    assert tables_with_canary(settings.resolved_duckdb_path) == []


def test_canary_token_never_leaks_from_the_service(tmp_path: Path, api: ApiServer) -> None:
    secret_api(api)
    pipelines = secret_pipelines(tmp_path, api.base_url)
    env = {
        "FERRY_PIPELINES_FILE": str(pipelines),
        "FERRY_DATA_DIR": str(tmp_path / "data"),
        "FERRY_LOG_LEVEL": "DEBUG",
        CANARY_ENV: CANARY,
    }
    import requests

    answers: dict[str, tuple[int, str]] = {}
    with run_service(env, tmp_path / "service.log") as service:
        for name in ("ok", "denied", "broken"):
            response = requests.post(
                f"{service.base_url}/runs",
                json={"pipeline": name, "idempotency_key": f"canary-check-{name}"},
                timeout=60,
            )
            answers[name] = (response.status_code, response.text)
        logs = service.log_path.read_text(encoding="utf-8", errors="replace")

    assert {name: status for name, (status, _) in answers.items()} == {
        "ok": 200,
        "denied": 424,
        "broken": 503,
    }
    assert any('"severity": "DEBUG"' in line for line in logs.splitlines()), "DEBUG was on"
    assert all(r.headers["authorization"] == f"Bearer {CANARY}" for r in api.received)
    assert [name for name, (_, text) in answers.items() if CANARY in text] == []
    assert CANARY not in logs
    assert files_with_canary(tmp_path / "data") == []
    assert tables_with_canary(duckdb_settings(tmp_path).resolved_duckdb_path) == []
