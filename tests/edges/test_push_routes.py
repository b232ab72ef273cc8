"""Push endpoints in process: OIDC auth before anything runs, ack/nack by error class."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from fastapi.testclient import TestClient

from app.edges.server import create_app
from app.ops.idempotency import ReplayedReport
from app.ops.service import RunService
from app.run.report import RunReport
from tests.helpers import count, duckdb_settings, write_catalog
from tests.oidc import AUDIENCE, PUSHER, CertsServer, SigningKey, claims
from tests.pubsub_messages import gcs_notification, wrapped_push
from tests.service_process import run_service, stop_like_cloud_run
from tests.sources.api_server import Reply, serve

PIPELINES = """
pipelines:
  - {name: people, source: {uri: "gs://ferry-in/incoming/*.csv"}, destination: {table: people}}
"""


def build_client(tmp_path: Path, **settings: Any) -> TestClient:
    write_catalog(tmp_path, PIPELINES)
    return TestClient(create_app(duckdb_settings(tmp_path, **settings)))


def counting(client: TestClient) -> list[object]:
    """Record every run the service starts."""
    service: RunService = client.app.state.service  # type: ignore[attr-defined]
    calls: list[object] = []
    original = service.execute

    def execute(request: Any) -> RunReport | ReplayedReport:
        calls.append(request)
        return original(request)

    service.execute = execute  # type: ignore[method-assign]
    return calls


@pytest.fixture
def authed(tmp_path: Path, certs_server: CertsServer) -> Iterator[TestClient]:
    with build_client(
        tmp_path,
        push_auth_audience=AUDIENCE,
        push_auth_service_accounts=[PUSHER],
        push_auth_certs_url=certs_server.url,
    ) as client:
        yield client


def notification() -> tuple[dict[str, str], bytes]:
    return wrapped_push(*gcs_notification("ferry-in", "incoming/a.csv", 7))


@pytest.mark.parametrize(
    ("token_claims", "status", "code"),
    [
        pytest.param(None, 401, "unauthenticated", id="missing-token"),
        pytest.param(claims(exp=int(time.time()) - 600), 401, "unauthenticated", id="expired"),
        pytest.param(claims(aud="https://other"), 401, "unauthenticated", id="wrong-audience"),
        pytest.param(
            claims(email="x@evil.iam.gserviceaccount.com"), 403, "forbidden", id="wrong-account"
        ),
        pytest.param(claims(email_verified=False), 403, "forbidden", id="unverified-email"),
    ],
)
def test_bad_push_tokens_are_refused_and_nothing_runs(
    authed: TestClient,
    google_key: SigningKey,
    token_claims: dict[str, Any] | None,
    status: int,
    code: str,
) -> None:
    calls = counting(authed)
    headers, body = notification()
    if token_claims is not None:
        headers["authorization"] = f"Bearer {google_key.sign(token_claims)}"
    for path in ("/pubsub", "/"):
        response = authed.post(path, headers=headers, content=body)
        assert response.status_code == status, response.text
        assert response.json()["error"]["code"] == code
    assert calls == []


def test_forged_token_is_refused(
    authed: TestClient, other_key: SigningKey, google_key: SigningKey
) -> None:
    headers, body = notification()
    forged = other_key.sign(claims(), kid=google_key.kid)
    headers["authorization"] = f"Bearer {forged}"
    assert authed.post("/pubsub", headers=headers, content=body).status_code == 401


def test_valid_token_is_let_through(authed: TestClient, google_key: SigningKey) -> None:
    headers, body = wrapped_push(b"{}", {"kind": "not-gcs"})
    headers["authorization"] = f"Bearer {google_key.sign(claims())}"
    response = authed.post("/pubsub", headers=headers, content=body)
    assert response.status_code == 200
    assert response.json()["status"] == "ignored"


def test_malformed_envelope_without_dead_letter_topic_is_acknowledged(tmp_path: Path) -> None:
    with build_client(tmp_path) as client:
        response = client.post("/pubsub", content=b'{"message": "nope"}')
    assert response.status_code == 200, "never retried forever"
    assert response.json()["status"] == "failed_terminal"
    assert response.json()["error"]["code"] == "request_invalid"


def test_suspicious_object_name_is_refused_and_acknowledged(tmp_path: Path) -> None:
    with build_client(tmp_path) as client:
        calls = counting(client)
        headers, body = wrapped_push(*gcs_notification("ferry-in", "incoming/../../etc/x.csv", 1))
        response = client.post("/pubsub", headers=headers, content=body)
    assert response.status_code == 200
    assert response.json()["status"] == "failed_terminal"
    assert calls == []


def test_retriable_failure_is_a_nack(tmp_path: Path) -> None:
    with build_client(tmp_path) as client:
        client.app.state.service.stopping.set()  # type: ignore[attr-defined]
        headers, body = notification()
        response = client.post("/pubsub", headers=headers, content=body)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "shutting_down"


def test_unreachable_api_source_is_503_for_orchestrators(tmp_path: Path) -> None:
    from tests.emulators import free_port

    write_catalog(
        tmp_path,
        f"""
        pipelines:
          - name: api
            source: {{kind: api, base_url: "http://127.0.0.1:{free_port()}", max_attempts: 1,
                      allowed_hosts: ["127.0.0.1"]}}
            destination: {{table: items}}
        """,
    )
    with TestClient(create_app(duckdb_settings(tmp_path))) as client:
        response = client.post("/runs", json={"pipeline": "api"})
    assert response.status_code == 503
    assert response.json()["error"]["recovery"] == "retriable"


def test_sigterm_answers_503_before_the_kill_and_nothing_lands(tmp_path: Path) -> None:
    """A slow API run is in flight; SIGTERM, then SIGKILL after Cloud Run's grace period:
    the caller was answered 503 `shutting_down` (the trigger retries), the instance stopped
    by itself (not killed), and nothing of the run landed."""
    with serve() as api:
        pages = [
            Reply(
                body={"items": [{"id": n}], "next": f"{api.base_url}/items?page={n + 1}"}, delay=0.5
            )
            for n in range(60)
        ]
        api.route("/items", pages)
        (tmp_path / "pipelines.yaml").write_text(
            f"""
pipelines:
  - name: slow
    source: {{kind: api, base_url: "{api.base_url}", path: /items, data_selector: items,
              paginator: {{type: json_link, next_url_path: next}}, allowed_hosts: ["127.0.0.1"]}}
    destination: {{table: slow}}
""",
            encoding="utf-8",
        )
        env = {
            "FERRY_PIPELINES_FILE": str(tmp_path / "pipelines.yaml"),
            "FERRY_DATA_DIR": str(tmp_path / "data"),
        }
        with run_service(env, tmp_path / "service.log") as service:
            result: dict[str, Any] = {}

            def call() -> None:
                response = requests.post(
                    f"{service.base_url}/runs", json={"pipeline": "slow"}, timeout=30
                )
                result["status"], result["body"] = response.status_code, response.json()

            caller = threading.Thread(target=call)
            caller.start()
            while len(api.requests_to("/items")) < 2:  # a few pages in: mid-extract
                time.sleep(0.05)
            killed = stop_like_cloud_run(service.process)
            caller.join(timeout=30)

    assert not killed, "the instance stopped within the grace period"
    # uvicorn re-raises SIGTERM after its graceful shutdown, so -15 is a clean stop
    assert service.process.returncode in (0, -signal.SIGTERM)
    assert result["status"] == 503
    assert result["body"]["error"]["code"] == "shutting_down"
    assert count(duckdb_settings(tmp_path), "slow") == 0
