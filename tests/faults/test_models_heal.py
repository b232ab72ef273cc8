"""Models heal themselves (issue 19): a model whose build failed retriably is rebuilt by any
later run, even one that loads nothing (a redelivery of the same object)."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from fastapi.testclient import TestClient

from app.edges.server import create_app
from core.failpoints import ENV
from tests.helpers import count, duckdb_settings, write_catalog
from tests.service_process import run_service


def test_a_model_that_failed_retriably_is_rebuilt_by_the_redelivery(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.csv").write_text("id\n1\n2\n3\n", encoding="utf-8")
    write_catalog(
        tmp_path,
        f"""
        pipelines:
          - name: rows
            source: {{uri: "{folder}/*.csv", columns: {{id: int64}}}}
            destination: {{table: app_rows}}
        models:
          - {{name: doubled, sql: "SELECT id * 2 AS twice FROM app_rows"}}
        """,
    )
    settings = duckdb_settings(tmp_path)
    body = {"pipeline": "rows", "source": str(folder / "a.csv")}
    with TestClient(create_app(settings)) as client:
        monkeypatch.setenv(ENV, "model_build:raise")
        failed = client.post("/runs", json=body)
        monkeypatch.delenv(ENV)
        doubled_after_failure = count(settings, "doubled")
        again = client.post("/runs", json=body)
        settled = client.post("/runs", json=body)

    assert failed.status_code == 503, failed.text
    assert failed.json()["error"]["code"] == "model_unavailable"
    assert count(settings, "app_rows") == 3, "the load committed"
    assert doubled_after_failure == 0
    assert again.status_code == 200, again.text
    assert [f["status"] for f in again.json()["files"]] == ["already_loaded"]
    assert [(m["name"], m["status"]) for m in again.json()["models"]] == [("doubled", "built")]
    assert count(settings, "doubled") == 3
    assert settled.json()["models"] == [], "built from its current inputs: nothing to do"


def test_sigterm_during_a_model_build_answers_the_json_503(tmp_path: Path) -> None:
    """The grace period runs out while a model builds (no checkpoint inside a build):
    uvicorn cancels the request, and the answer is the JSON 503 of every other shutdown,
    not uvicorn's plain-text 500."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.csv").write_text("id\n1\n", encoding="utf-8")
    write_catalog(
        tmp_path,
        f"""
        pipelines:
          - name: rows
            source: {{uri: "{folder}/*.csv"}}
            destination: {{table: app_rows}}
        models:
          - {{name: doubled, sql: "SELECT id * 2 AS twice FROM app_rows"}}
        """,
    )
    env = {
        "FERRY_PIPELINES_FILE": str(tmp_path / "pipelines.yaml"),
        "FERRY_DATA_DIR": str(tmp_path / "data"),
        "FERRY_SHUTDOWN_GRACE_SECONDS": "1",
        ENV: "model_build:hang",
    }
    answers: list[requests.Response] = []
    with run_service(env, tmp_path / "service.log") as service:
        caller = threading.Thread(
            target=lambda: answers.append(
                requests.post(f"{service.base_url}/runs", json={"pipeline": "rows"}, timeout=120)
            )
        )
        caller.start()
        deadline = time.monotonic() + 60
        while not any(line.get("message") == "build model doubled" for line in service.logs()):
            assert time.monotonic() < deadline, service.log_path.read_text()[-3000:]
            time.sleep(0.1)
        service.process.send_signal(signal.SIGTERM)
        caller.join(timeout=60)
        service.process.kill()  # the abandoned build's thread would outlive the grace

    assert len(answers) == 1
    assert answers[0].status_code == 503, answers[0].text
    assert answers[0].headers["content-type"] == "application/json"
    assert answers[0].json()["error"]["code"] == "shutting_down"


def test_a_model_error_names_the_model_and_its_own_line_never_the_data(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    hostile = "<img src=x onerror=alert(1)>"
    (folder / "a.csv").write_text(f"id,code\n1,7\n2,{hostile}\n", encoding="utf-8")
    write_catalog(
        tmp_path,
        f"""
        pipelines:
          - name: rows
            source: {{uri: "{folder}/*.csv", columns: {{code: string}}}}
            destination: {{table: app_rows}}
        models:
          - name: codes
            sql: |
              SELECT
                id,
                CAST(code AS INT64) AS code
              FROM app_rows
        """,
    )
    settings = duckdb_settings(tmp_path)
    with TestClient(create_app(settings)) as client:
        response = client.post("/runs", json={"pipeline": "rows"})

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "model_failed"
    message = error["message"]
    assert message.startswith("model 'codes': ")
    assert "line 3 of its SQL: CAST(code AS INT64) AS code" in message, message
    assert "<img" not in response.text
    for leaked in ("CREATE", "__ferry_", '"ferry".'):
        assert leaked not in message, message
    assert hostile in caplog.text, "the value itself is in the log"


def test_an_idempotency_key_reused_with_another_body_is_422(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.csv").write_text("id\n1\n", encoding="utf-8")
    write_catalog(
        tmp_path,
        f"""
        pipelines:
          - name: rows
            source: {{uri: "{folder}/*.csv"}}
            destination: {{table: app_rows}}
        models:
          - {{name: first, sql: "SELECT id FROM app_rows", build_after_load: false}}
          - {{name: second, sql: "SELECT id + 1 AS n FROM app_rows", build_after_load: false}}
        """,
    )
    settings = duckdb_settings(tmp_path)
    headers = {"Idempotency-Key": "nightly-2026-12-06"}
    with TestClient(create_app(settings)) as client:
        assert client.post("/runs", json={"pipeline": "rows"}).status_code == 200
        built = client.post("/runs", json={"models": ["first"]}, headers=headers)
        replayed = client.post("/runs", json={"models": ["first"]}, headers=headers)
        other = client.post("/runs", json={"models": ["second"]}, headers=headers)

    assert built.status_code == 200, built.text
    assert replayed.json()["replayed"] is True
    assert "idempotency_request" not in replayed.json()
    assert other.status_code == 422, other.text
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert "another request body" in other.json()["error"]["message"]
    assert count(settings, "second") == 0, "the second build never ran"


@pytest.mark.parametrize(
    "body", [{"pipeline": "rows"}, {"models": ["ids"]}], ids=["load run", "build run"]
)
def test_a_run_waits_for_the_duckdb_writer_a_bounded_time_and_says_so(
    tmp_path: Path, body: dict[str, Any]
) -> None:
    """A model build (here: anything holding DuckDB's one writer) no longer makes a push or a
    build wait as long as it runs: past FERRY_DUCKDB_LOCK_WAIT_SECONDS the run is retriable,
    and its report says how long it waited."""
    from app.destinations.pipeline import destination_lock

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.csv").write_text("id\n1\n", encoding="utf-8")
    write_catalog(
        tmp_path,
        f"""
        pipelines:
          - name: rows
            source: {{uri: "{folder}/*.csv"}}
            destination: {{table: app_rows}}
        models:
          - {{name: ids, sql: "SELECT id FROM app_rows", build_after_load: false}}
        """,
    )
    settings = duckdb_settings(tmp_path, duckdb_lock_wait_seconds=0.5)
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with destination_lock(settings):
            holding.set()
            release.wait(60)

    holder = threading.Thread(target=hold)
    with TestClient(create_app(settings)) as client:
        if "models" in body:  # the build's input is loaded first
            assert client.post("/runs", json={"pipeline": "rows"}).status_code == 200
        holder.start()
        assert holding.wait(30)
        try:
            blocked = client.post("/runs", json=body)
        finally:
            release.set()
            holder.join(30)
        after = client.post("/runs", json=body)

    assert blocked.status_code == 503, blocked.text
    assert blocked.json()["error"]["code"] == "destination_unavailable"
    assert "FERRY_DUCKDB_LOCK_WAIT_SECONDS" in blocked.json()["error"]["message"]
    assert "lock_wait" in blocked.json()["report"]["seconds"]
    assert after.status_code == 200, after.text
    assert count(settings, "app_rows") == 1
