"""Schemathesis against the app's own OpenAPI document: no 5xx, and every answer matches the
status codes and schemas the document declares.

The app runs in process (ASGI) on a temp pipelines file of small local files and a DuckDB file
in tmp, so nothing here is retriable and any 5xx is a bug. Generation is bounded
(`MAX_EXAMPLES` per operation and mode) and derandomized, so a failure repeats.
"""

from __future__ import annotations

import errno
import json
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.edges.server import create_app
from tests.helpers import duckdb_settings, write_catalog
from tests.oidc import AUDIENCE, PUSHER, CertsServer, SigningKey, claims
from tests.pubsub_messages import (
    gcs_notification,
    pubsub_cloudevent,
    storage_cloudevent_binary,
    storage_cloudevent_structured,
    unwrapped_push,
    wrapped_push,
)

MAX_EXAMPLES = 50
READ_EXAMPLES = 20
"""For the run-history reads (GET /runs...): each call reads the run log from DuckDB
(~0.2 s), and their inputs are only a few bounded query parameters."""
CHECKS = [
    not_a_server_error,
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
]
BUCKET = "ferry-in"
PIPELINES = """
pipelines:
  - {name: people, source: {uri: "in/*.csv"}, destination: {table: people}}
  - name: ids
    source: {uri: "in/a.csv"}
    destination: {table: ids, write_disposition: merge, primary_key: [id]}
"""
SETTINGS = hypothesis.settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


@dataclass
class Findings:
    """Failing examples, collected so one run reports all of them, not just the first."""

    problems: list[str] = field(default_factory=list)
    statuses: dict[str, dict[int, int]] = field(default_factory=dict)

    def check(
        self,
        label: str,
        case: Case[Any],
        response: Any,
        body: Any = None,
        checks: list[Any] | None = None,
    ) -> None:
        counts = self.statuses.setdefault(label, {})
        counts[response.status_code] = counts.get(response.status_code, 0) + 1
        try:
            case.validate_response(response, checks=checks or CHECKS)
        except Exception as failure:  # schemathesis raises a FailureGroup
            shown = body if body is not None else getattr(case, "body", None)
            first_line = str(failure).splitlines()[0] if str(failure) else ""
            self.problems.append(
                f"{label} {response.status_code}: headers={dict(case.headers or {})!r} "
                f"body={shown!r}\n  -> {response.text[:300]}\n  {first_line}"
            )


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Refuse (and fail the test on) any connect outside 127.0.0.0/8, e.g. a Google client
    looking for credentials on the metadata server."""
    attempts: list[str] = []
    original = socket.socket.connect

    def connect(sock: socket.socket, address: Any) -> None:
        host = str(address[0]) if isinstance(address, tuple) else str(address)
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not (
            host.startswith("127.") or host == "::1"
        ):
            attempts.append(host)
            raise OSError(errno.ENETUNREACH, f"test: {host} is not loopback")
        original(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    yield attempts
    assert attempts == []


def build_app(folder: Path, **settings: Any) -> FastAPI:
    data = folder / "in"
    data.mkdir(parents=True, exist_ok=True)
    (data / "a.csv").write_text("id,name\n1,ada\n2,grace\n", encoding="utf-8")
    (data / "b.csv").write_text("id,name\n3,linus\n", encoding="utf-8")
    (folder / "secret.csv").write_text("id,name\n9,secret\n", encoding="utf-8")
    write_catalog(folder, PIPELINES)
    return create_app(duckdb_settings(folder, **settings))


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    built = build_app(tmp_path_factory.mktemp("schemathesis"))
    with TestClient(built):  # runs the lifespan, as uvicorn would
        yield built


@pytest.fixture(scope="module")
def schema(app: FastAPI) -> Any:
    loaded = schemathesis.openapi.from_asgi("/openapi.json", app)
    loaded.hook(run_bodies(str(app.state.service.catalog.base_dir)))
    return loaded


def run_bodies(folder: str) -> Callable[[Any, Any], st.SearchStrategy[Any]]:
    """One generated /runs body in eight is steered to a real pipeline with a real, foreign
    or traversing source, so real runs happen too; the rest keep schemathesis' values."""
    sources = [
        None,
        "in/a.csv",
        "in/*.csv",
        f"{folder}/in/b.csv",
        "in/**",
        "../secret.csv",
        "in/../secret.csv",
        "in/%2e%2e/secret.csv",
        f"gs://{BUCKET}/incoming/a.csv",
        "gs://other-bucket/a.csv",
    ]

    def flatmap_body(context: Any, body: Any) -> st.SearchStrategy[Any]:
        if not isinstance(body, dict):
            return st.just(body)
        real = st.fixed_dictionaries(
            {
                "pipeline": st.sampled_from(["people", "ids", "nope"]),
                "source": st.sampled_from(sources),
            },
            optional={"generation": st.integers(), "params": st.just({"url": "http://x"})},
        ).map(lambda extra: {**body, **extra})
        return st.integers(0, 7).flatmap(lambda pick: real if pick == 0 else st.just(body))

    return flatmap_body


def fuzz(operation: Any, mode: GenerationMode, findings: Findings) -> None:
    """Up to `MAX_EXAMPLES` generated calls of one operation, every answer checked."""
    reads = operation.method.upper() == "GET" and operation.path != "/healthz"
    examples = READ_EXAMPLES if reads else MAX_EXAMPLES
    if reads and mode is GenerationMode.NEGATIVE:
        examples //= 2

    @given(case=operation.as_strategy(generation_mode=mode))
    @hypothesis.settings(SETTINGS, max_examples=examples)
    def exercise(case: Case[Any]) -> None:
        findings.check(operation.label, case, case.call())

    try:
        exercise()
    except hypothesis.errors.Unsatisfiable:
        # nothing to negate: an operation without parameters or body (GET /healthz)
        assert mode is GenerationMode.NEGATIVE


@pytest.mark.parametrize(
    "mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"]
)
def test_every_operation_conforms_to_the_schema(
    app: FastAPI, schema: Any, mode: GenerationMode
) -> None:
    findings = Findings()
    for result in schema.get_all_operations():
        fuzz(result.ok(), mode, findings)
    assert findings.problems == [], "\n".join(findings.problems)
    assert "POST /runs" in findings.statuses
    if mode is GenerationMode.POSITIVE:
        assert 200 in findings.statuses["POST /runs"], "some generated runs really ran"


# --- push bodies: the OpenAPI document declares none, so we bring the deliveries -------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
NAMES = st.sampled_from(
    ["incoming/a.csv", "incoming/../x.csv", "incoming/%2e%2e/x.csv", "other/a.csv", ""]
) | st.text(max_size=20)
BUCKETS = st.sampled_from([BUCKET, "elsewhere", "", "UPPER"]) | st.text(max_size=10)
GENERATIONS = st.integers(min_value=0, max_value=2**63 - 1)
ODD_GENERATIONS = st.integers(min_value=-(2**64), max_value=2**70)
KINDS = ["wrapped", "unwrapped", "binary", "structured", "ce-pubsub", "raw"]


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[str, dict[str, str], bytes]:
    """A real delivery shape with odd values, or a mangled envelope, for / or /pubsub."""
    bucket, name, generation = draw(BUCKETS), draw(NAMES), draw(GENERATIONS)
    kind = draw(st.sampled_from(KINDS))
    if kind == "raw":
        path = draw(st.sampled_from(["/pubsub", "/"]))
        body = json.dumps({"message": draw(JSON), "subscription": draw(JSON)}).encode()
        mangled = draw(st.sampled_from([body, b"", b"\xff\xfe", b"[]", b"null", body[:7]]))
        return path, {"content-type": "application/json"}, mangled
    if kind in ("binary", "structured"):
        build = storage_cloudevent_binary if kind == "binary" else storage_cloudevent_structured
        headers, body = build(bucket, name, generation)
        return "/", headers, body
    data, attributes = gcs_notification(bucket, name, generation)
    if draw(st.booleans()):
        attributes["objectGeneration"] = str(draw(ODD_GENERATIONS))
        attributes["eventType"] = draw(st.sampled_from(["OBJECT_FINALIZE", "OBJECT_DELETE", "x"]))
    if kind == "ce-pubsub":
        headers, body = pubsub_cloudevent(data, attributes)
        return "/", headers, body
    # unwrapped pushes carry attributes as headers, which only hold printable ASCII
    printable = all(value.isascii() and value.isprintable() for value in attributes.values())
    build_push = unwrapped_push if kind == "unwrapped" and printable else wrapped_push
    headers, body = build_push(data, attributes)
    return "/pubsub", headers, body


def test_push_deliveries_conform_to_the_schema(app: FastAPI, schema: Any) -> None:
    findings = Findings()
    client = TestClient(app)

    @given(delivery=deliveries())
    @SETTINGS
    def exercise(delivery: tuple[str, dict[str, str], bytes]) -> None:
        path, headers, body = delivery
        response = client.post(path, headers=headers, content=body)
        case = schema[path]["POST"].Case(headers=headers)
        findings.check(f"POST {path}", case, response, body=body)

    exercise()
    assert findings.problems == [], "\n".join(findings.problems)
    assert set(findings.statuses) == {"POST /pubsub", "POST /"}


# --- with push auth on ----------------------------------------------------------------------


def test_push_auth_answers_conform_to_the_schema(
    tmp_path: Path, certs_server: CertsServer, google_key: SigningKey, other_key: SigningKey
) -> None:
    """Generated Authorization headers (401s), bad identities (403s), and a good-looking token
    while Google's certificates cannot be fetched (503 before any run)."""
    built = build_app(
        tmp_path,
        push_auth_audience=AUDIENCE,
        push_auth_service_accounts=[PUSHER],
        push_auth_certs_url=certs_server.url,
    )
    auth_schema = schemathesis.openapi.from_asgi("/openapi.json", built)
    findings = Findings()
    tokens = [
        google_key.sign(claims(email="intruder@x.iam.gserviceaccount.com")),
        google_key.sign(claims(aud="https://elsewhere")),
        other_key.sign(claims(), kid=google_key.kid),
    ]
    headers, body = wrapped_push(*gcs_notification(BUCKET, "incoming/a.csv", 1))
    with TestClient(built) as client:
        # first, before any fetch succeeded (a cached copy would still verify)
        certs_server.status, certs_server.body = 500, b"unavailable"
        for path in ("/pubsub", "/"):
            signed = {**headers, "authorization": f"Bearer {google_key.sign(claims())}"}
            response = client.post(path, headers=signed, content=body)
            assert response.status_code == 503, response.text
            operation = auth_schema[path]["POST"]
            # a deliberate 503 (a nack): only its status and shape are checked
            conformance = [response_schema_conformance, status_code_conformance]
            case = operation.Case(headers=signed)
            findings.check(operation.label, case, response, checks=conformance)
        certs_server.status, certs_server.body = 200, None
        for path in ("/pubsub", "/"):
            operation = auth_schema[path]["POST"]
            fuzz(operation, GenerationMode.POSITIVE, findings)
            for token in tokens:
                signed = {**headers, "authorization": f"Bearer {token}"}
                response = client.post(path, headers=signed, content=body)
                findings.check(operation.label, operation.Case(headers=signed), response)

    assert findings.problems == [], "\n".join(findings.problems)
    assert {401, 403, 503} <= set(findings.statuses["POST /pubsub"])
