"""The HTTP service in process: /runs, errors as JSON with stable codes, limits, docs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.edges.server import create_app
from tests.helpers import count, duckdb_settings, write_catalog


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.csv").write_text("id,name\n1,a\n2,b\n", encoding="utf-8")
    (tmp_path / "data" / "b.csv").write_text("id,name\n3,c\n", encoding="utf-8")
    write_catalog(
        tmp_path,
        """
        pipelines:
          - {name: people, source: {uri: "data/*.csv"}, destination: {table: people}}
        """,
    )
    app = create_app(duckdb_settings(tmp_path, max_request_bytes=4096))
    with TestClient(app) as test_client:
        yield test_client


def settings_of(client: TestClient):  # type: ignore[no-untyped-def]
    return client.app.state.service.settings  # type: ignore[attr-defined]


def test_run_by_name_returns_the_report(client: TestClient) -> None:
    response = client.post("/runs", json={"pipeline": "people"})
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["status"] == "succeeded"
    assert report["tables"] == {"people": 3}
    assert report["trigger"] == "http"
    assert count(settings_of(client), "people") == 3


def test_run_by_source_only_picks_the_matching_pipeline(client: TestClient) -> None:
    response = client.post("/runs", json={"source": "data/b.csv"})
    assert response.status_code == 200, response.text
    assert response.json()["pipeline"] == "people"
    assert response.json()["rows_loaded"] == 1


def test_repeated_idempotency_key_replays_the_first_report(client: TestClient) -> None:
    first = client.post("/runs", json={"pipeline": "people", "idempotency_key": "k-1"})
    again = client.post("/runs", json={"pipeline": "people"}, headers={"Idempotency-Key": "k-1"})
    assert again.status_code == 200
    assert again.json()["run_id"] == first.json()["run_id"]
    assert again.json()["replayed"] is True
    assert count(settings_of(client), "people") == 3


def test_idempotency_key_survives_a_restart(client: TestClient, tmp_path: Path) -> None:
    first = client.post("/runs", json={"pipeline": "people", "idempotency_key": "k-2"})
    restarted = create_app(settings_of(client))  # a new instance: empty memory
    with TestClient(restarted) as other:
        again = other.post("/runs", json={"pipeline": "people", "idempotency_key": "k-2"})
    assert again.json()["run_id"] == first.json()["run_id"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        pytest.param({"pipeline": "nope"}, 404, "pipeline_not_found", id="unknown-pipeline"),
        pytest.param({"source": "gs://elsewhere/x.csv"}, 404, "pipeline_not_found", id="no-match"),
        pytest.param(
            {"pipeline": "people", "source": "../secrets/x.csv"},
            400,
            "request_invalid",
            id="override-outside-pattern",
        ),
        pytest.param({}, 400, "request_invalid", id="nothing-named"),
        pytest.param({"pipeline": 3, "extra": 1}, 400, "request_invalid", id="bad-body"),
        pytest.param(
            {"pipeline": "people", "source": "data/missing.csv"},
            404,
            "source_not_found",
            id="missing-object",
        ),
    ],
)
def test_errors_are_json_with_a_stable_code(
    client: TestClient, body: dict[str, object], status: int, code: str
) -> None:
    response = client.post("/runs", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert error["recovery"] == "terminal"


def test_bad_data_error_carries_pipeline_and_run_id(client: TestClient, tmp_path: Path) -> None:
    (tmp_path / "data" / "c.csv").write_text("id,name\n4,d,extra\n", encoding="utf-8")
    response = client.post("/runs", json={"pipeline": "people"})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "bad_data"
    assert error["pipeline"] == "people"
    assert error["run_id"]
    assert response.json()["report"]["status"] == "failed"
    assert count(settings_of(client), "people") == 0, "nothing of the failed run is visible"


def test_body_over_the_limit_is_413(client: TestClient) -> None:
    response = client.post(
        "/runs", content=b"x" * 5000, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_health_and_docs(client: TestClient) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/runs", "/pubsub", "/", "/healthz"} <= set(paths)


def test_a_body_without_a_json_content_type_is_told_so(client: TestClient) -> None:
    """Issue 22 #4: `curl -d '{...}'` sends a form content type; the answer names the header."""
    response = client.post(
        "/runs",
        content=b'{"pipeline": "people"}',
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert "Content-Type: application/json" in message
    assert "application/x-www-form-urlencoded" in message
    # with the header, the same body runs
    assert client.post("/runs", json={"pipeline": "people"}).status_code == 200
