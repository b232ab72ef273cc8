"""What an outside review found at the edges and in error mapping (issue 14), reproduced.

Each test failed before its fix: a destination out-of-memory retried for ever with dlt's
traceback in every answer, a 20,000-column file loaded for minutes, a 5,000-character name
was retriable, an API pipeline with nothing loaded yet answered 503 on its second run, the
OpenAPI document under-declared /ui/runs and OPTIONS /runs, POST / with an orchestrator body
answered 200 "dead_lettered", and deeply nested JSON escaped as a plain-text 500.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.edges.server import create_app
from app.ops.runlog import RunLog
from app.ops.service import RunService
from app.run.runner import RunRequest, run
from core.errors import BadDataError, outcome_of
from core.settings import Settings
from tests.helpers import count, duckdb_settings, query, write_catalog
from tests.sources.api_server import Reply, serve

LEAK_MARKS = ("Traceback", 'File "', "site-packages", "\\n")
"""What a Python traceback leaves in text (JSON-escaped newlines included)."""

WIDE = """
pipelines:
  - {name: wide, source: {uri: "in/*.csv"}, destination: {table: wide}}
"""


def wide_csv(folder: Path, columns: int, rows: int) -> Path:
    (folder / "in").mkdir(exist_ok=True)
    path = folder / "in" / "wide.csv"
    with path.open("w", encoding="utf-8") as out:
        out.write(",".join(f"c{n}" for n in range(columns)) + "\n")
        for row in range(rows):
            out.write(",".join(str((row + 1) * n % 97) for n in range(columns)) + "\n")
    return path


def leaks(text: str) -> list[str]:
    return [mark for mark in LEAK_MARKS if mark in text]


# --- a destination out of memory: terminal, and no traceback anywhere ------------------------


def test_a_destination_out_of_memory_is_terminal_and_its_traceback_never_leaks(
    tmp_path: Path,
) -> None:
    """dlt retries the load job, then raises with the job's formatted traceback (install paths)
    in its message. Before: retriable (503, nack, exit 1) and that traceback in the HTTP body,
    `_ferry_runs`, GET /runs and /ui/runs."""
    write_catalog(tmp_path, WIDE)
    wide_csv(tmp_path, columns=200, rows=10)
    starved = duckdb_settings(tmp_path, duckdb_memory_limit="1MB")

    with TestClient(create_app(starved)) as client:
        response = client.post("/runs", json={"pipeline": "wide"})
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"]["code"] == "destination_rejected"
    assert body["error"]["recovery"] == "terminal"
    assert "out of memory" in body["error"]["message"]
    assert body["report"]["error"] == body["error"]

    # at 1 MB the run log's own load starves too: record the same report as the service
    # does after a run, with memory to spare, and read it back through every surface
    settings = duckdb_settings(tmp_path)
    assert RunLog(settings).record(body["report"])
    run_id = body["report"]["run_id"]
    with TestClient(create_app(settings)) as client:
        listed = client.get("/runs").json()
        single = client.get(f"/runs/{run_id}").json()
        page = client.get("/ui/runs").text
    (recorded,) = query(settings, "select report from ferry._ferry_runs")
    assert [run["run_id"] for run in listed["runs"]] == [run_id]
    surfaces = {
        "POST /runs": json.dumps(body),
        "GET /runs": json.dumps(listed),
        f"GET /runs/{run_id}": json.dumps(single),
        "_ferry_runs": json.dumps(json.loads(recorded[0])),
        # the page is HTML over many lines: its error text must be clean
        "/ui/runs": page.split('class="msg">', 1)[1].split("<", 1)[0],
    }
    assert {name: leaks(text) for name, text in surfaces.items() if leaks(text)} == {}
    assert count(settings, "wide") == 0


# --- a file wider than the destination takes ---------------------------------------------------


def test_a_20000_column_csv_is_terminal_bad_data_before_loading(tmp_path: Path) -> None:
    """Before: minutes of normalizing, DuckDB out of memory, retried 5 times, failed as
    retriable (so push and orchestrators retried it for ever)."""
    catalog = write_catalog(tmp_path, WIDE)
    wide_csv(tmp_path, columns=20_000, rows=3)
    settings = duckdb_settings(tmp_path)

    with pytest.raises(BadDataError) as raised:
        run(RunRequest("wide"), settings, catalog)

    error = raised.value
    assert not error.retriable and outcome_of(error).push_ack and outcome_of(error).exit_code == 2
    assert "20000 columns is beyond the limit of 10000" in error.message
    assert error.report is not None and error.report.to_dict()["status"] == "failed"
    assert count(settings, "wide") == 0


def test_the_column_limit_is_a_setting(tmp_path: Path) -> None:
    catalog = write_catalog(tmp_path, WIDE)
    wide_csv(tmp_path, columns=60, rows=2)

    with pytest.raises(BadDataError, match="60 columns is beyond the limit of 50"):
        run(RunRequest("wide"), duckdb_settings(tmp_path, max_columns=50), catalog)

    report = run(RunRequest("wide"), duckdb_settings(tmp_path, max_columns=60), catalog)
    assert report.rows_loaded == 2


# --- a name no file can have ---------------------------------------------------------------


def test_a_5000_character_object_name_is_terminal(tmp_path: Path) -> None:
    """Before: a retriable `OSError: [Errno 36] File name too long`, retried for ever."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_text("id\n1\n", encoding="utf-8")
    write_catalog(
        tmp_path, 'pipelines:\n  - {name: p, source: {uri: "in/*.csv"}, destination: {table: p}}\n'
    )
    settings = duckdb_settings(tmp_path)
    name = "in/" + "x" * 5000 + ".csv"

    with TestClient(create_app(settings)) as client:
        response = client.post("/runs", json={"pipeline": "p", "source": name})

    assert response.status_code == 404, response.text
    error = response.json()["error"]
    assert (error["code"], error["recovery"]) == ("source_not_found", "terminal")
    assert len(error["message"]) < 600
    assert count(settings, "p") == 0


# --- schemathesis' findings ------------------------------------------------------------------


def test_an_api_pipeline_that_loaded_nothing_yet_runs_again_without_a_503(
    tmp_path: Path,
) -> None:
    """Before: the second run failed with dlt's TableNotFound as a retriable 503, since the
    first run stored a schema without the table."""
    with serve() as api:
        api.route("/items", Reply(200, {"items": []}))
        write_catalog(
            tmp_path,
            f"""
            pipelines:
              - name: items
                source:
                  kind: api
                  base_url: {api.base_url}
                  path: /items
                  paginator: single_page
                  data_selector: items
                  allowed_hosts: [127.0.0.1]
                  incremental: {{cursor_path: id, param: since, initial_value: 0}}
                destination: {{table: items, write_disposition: merge, primary_key: [id]}}
            """,
        )
        settings = duckdb_settings(tmp_path)
        with TestClient(create_app(settings)) as client:
            statuses = [client.post("/runs", json={"pipeline": "items"}) for _ in range(3)]
            assert [r.status_code for r in statuses] == [200, 200, 200], statuses[-1].text

            api.route("/items", Reply(200, {"items": [{"id": 1}, {"id": 2}]}))
            loaded = client.post("/runs", json={"pipeline": "items"})
        assert loaded.status_code == 200, loaded.text
    assert loaded.json()["rows_loaded"] == 2
    assert count(settings, "items") == 2


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_text("id\n1\n", encoding="utf-8")
    write_catalog(
        tmp_path,
        'pipelines:\n  - {name: people, source: {uri: "gs://ferry-in/in/*.csv"}, '
        "destination: {table: people}}\n",
    )
    return create_app(duckdb_settings(tmp_path))


def test_ui_runs_declares_the_json_error_it_answers(app: FastAPI) -> None:
    """Before: the error was declared as text/html (FastAPI files a model under the route's
    media type), so the JSON error did not conform."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operation = schema["/ui/runs"]["GET"]
    case = operation.Case(query={"limit": 0})
    response = case.call()
    assert response.status_code == 400
    assert response.headers["content-type"][0].startswith("application/json")
    case.validate_response(
        response,
        checks=[content_type_conformance, response_schema_conformance, status_code_conformance],
    )


def test_options_on_runs_lists_get_and_post(app: FastAPI) -> None:
    """Before: `Allow: POST` (Starlette names the methods of the first route on the path)."""
    with TestClient(app) as client:
        response = client.options("/runs")
        single = client.put("/runs/abc")
    assert response.status_code == 405
    assert {m.strip() for m in response.headers["allow"].split(",")} >= {"GET", "POST"}
    assert response.json()["error"]["code"] == "http_405"
    assert single.status_code == 405 and single.headers["allow"] == "GET"


def test_an_orchestrator_body_on_root_is_a_400_that_points_at_runs(app: FastAPI) -> None:
    """Before: 200 `dead_lettered`/`failed_terminal`, which an orchestrator reads as success."""
    settings: Settings = app.state.service.settings
    with TestClient(app) as client:
        response = client.post("/", json={"source": "gs://ferry-in/in/a.csv"})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "request_invalid" and "POST /runs" in error["message"]
    assert count(settings, "people") == 0


# --- parse failures and the unexpected --------------------------------------------------------

DEEP_ARRAY = b"[" * 100_000 + b"]" * 100_000
DEEP_MESSAGE = b'{"message": ' + b'{"a":' * 50_000 + b"1" + b"}" * 50_001
CLOUDEVENT_HEADERS = {
    "ce-id": "1",
    "ce-source": "//pubsub.googleapis.com/projects/p/topics/t",
    "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
    "ce-specversion": "1.0",
    "content-type": "application/json",
}


@pytest.mark.parametrize(
    ("path", "headers", "body"),
    [
        ("/pubsub", {"content-type": "application/json"}, DEEP_ARRAY),
        ("/pubsub", {"content-type": "application/json"}, DEEP_MESSAGE),
        ("/", {"content-type": "application/cloudevents+json"}, DEEP_ARRAY),
        ("/", CLOUDEVENT_HEADERS, DEEP_MESSAGE),
        ("/runs", {"content-type": "application/json"}, DEEP_ARRAY),
    ],
    ids=["pubsub-array", "pubsub-object", "structured-cloudevent", "binary-cloudevent", "runs"],
)
def test_deeply_nested_json_is_a_terminal_request_error(
    app: FastAPI, path: str, headers: dict[str, str], body: bytes
) -> None:
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post(path, headers=headers, content=body)
    assert response.headers["content-type"].startswith("application/json"), response.text
    answer = response.json()
    if path == "/runs":
        assert response.status_code == 400
    else:  # a push: acknowledged (terminal), never a nack that brings it back
        assert response.status_code == 200 and answer["status"] == "failed_terminal"
    assert answer["error"]["code"] == "request_invalid"
    assert answer["error"]["recovery"] == "terminal"


def test_an_unexpected_error_answers_the_documented_json_shape(
    app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: RunService, request: Any) -> dict[str, Any]:
        raise ZeroDivisionError("a bug, with a secret-looking detail")

    monkeypatch.setattr(RunService, "execute", broken)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/runs", json={"pipeline": "people"})
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.json() == {
        "error": {
            "code": "internal_error",
            "message": "unexpected error; the details are in the service log",
            "recovery": "retriable",
        }
    }
