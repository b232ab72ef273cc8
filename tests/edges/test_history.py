"""Run history: every run lands in `_ferry_runs` in the destination and is read back by
`GET /runs`, `GET /runs/{id}` and the `/ui/runs` page, across restarts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.edges.routes.history import RunSummary, render_runs_page
from app.edges.server import create_app
from app.ops.runlog import TABLE, RunLog
from core.settings import Settings
from tests.helpers import count, duckdb_settings, write_catalog

EVIL_FILE = "<img src=x onerror=alert(1)>.csv"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    (tmp_path / "data" / "people").mkdir(parents=True)
    (tmp_path / "data" / "broken").mkdir()
    (tmp_path / "data" / "people" / "a.csv").write_text("id,name\n1,a\n2,b\n", encoding="utf-8")
    # a ragged row: bad_data, and a file name that would run script if not escaped
    (tmp_path / "data" / "broken" / EVIL_FILE).write_text("id,name\n1,a,x\n", encoding="utf-8")
    write_catalog(
        tmp_path,
        """
        pipelines:
          - {name: people, source: {uri: "data/people/*.csv"}, destination: {table: people}}
          - {name: broken, source: {uri: "data/broken/*.csv"}, destination: {table: broken}}
        """,
    )
    return duckdb_settings(tmp_path)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def run_both(client: TestClient) -> tuple[dict[str, Any], dict[str, Any]]:
    ok = client.post("/runs", json={"pipeline": "people"})
    assert ok.status_code == 200, ok.text
    bad = client.post("/runs", json={"pipeline": "broken"})
    assert bad.status_code == 422, bad.text
    return ok.json(), bad.json()["report"]


def test_runs_are_listed_newest_first_with_status_and_rows(client: TestClient) -> None:
    ok, bad = run_both(client)
    response = client.get("/runs")
    assert response.status_code == 200, response.text
    runs = response.json()["runs"]
    assert [r["run_id"] for r in runs] == [bad["run_id"], ok["run_id"]]
    failed, succeeded = runs
    assert succeeded["status"] == "succeeded"
    assert succeeded["pipeline"] == "people"
    assert succeeded["tables"] == {"people": 2}
    assert succeeded["rows_loaded"] == 2
    assert succeeded["trigger"] == "http"
    assert succeeded["seconds_total"] > 0
    assert succeeded["error_code"] is None
    assert failed["status"] == "failed"
    assert failed["pipeline"] == "broken"
    assert failed["rows_loaded"] == 0
    assert failed["error_code"] == "bad_data"
    assert EVIL_FILE in failed["error_message"]


def test_run_by_id_returns_the_full_report(client: TestClient) -> None:
    ok, bad = run_both(client)
    assert client.get(f"/runs/{ok['run_id']}").json() == ok
    failed = client.get(f"/runs/{bad['run_id']}").json()
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "bad_data"
    assert failed["files"] == bad["files"]


@pytest.mark.parametrize(
    ("query", "pipelines"),
    [
        pytest.param("pipeline=people", ["people"], id="by-pipeline"),
        pytest.param("status=failed", ["broken"], id="by-status"),
        pytest.param("pipeline=people&status=failed", [], id="both"),
        pytest.param("limit=1", ["broken"], id="limit"),
    ],
)
def test_filters(client: TestClient, query: str, pipelines: list[str]) -> None:
    run_both(client)
    runs = client.get(f"/runs?{query}").json()["runs"]
    assert [r["pipeline"] for r in runs] == pipelines


def test_history_survives_a_restart(client: TestClient, settings: Settings) -> None:
    ok, bad = run_both(client)
    with TestClient(create_app(settings)) as restarted:  # a new instance: nothing in memory
        runs = restarted.get("/runs").json()["runs"]
        assert {r["run_id"] for r in runs} == {ok["run_id"], bad["run_id"]}
        assert restarted.get(f"/runs/{ok['run_id']}").json()["tables"] == {"people": 2}


def test_unknown_run_is_404_run_not_found(client: TestClient) -> None:
    before = client.get("/runs/20260101T000000-deadbeef")  # no table yet
    run_both(client)
    after = client.get("/runs/20260101T000000-deadbeef")
    for response in (before, after):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "run_not_found"


def test_no_runs_yet_is_an_empty_list(client: TestClient) -> None:
    assert client.get("/runs").json() == {"runs": []}
    assert "No runs recorded yet" in client.get("/ui/runs").text


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=501", "status=exploded"], ids=["zero", "over-max", "status"]
)
def test_bad_query_is_400_like_every_malformed_request(client: TestClient, query: str) -> None:
    response = client.get(f"/runs?{query}")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "request_invalid"


def test_page_lists_runs_and_escapes_what_it_shows(client: TestClient) -> None:
    ok, _ = run_both(client)
    response = client.get("/ui/runs?pipeline=&status=")  # what the page's own form sends
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert page.count('<tr class="run"') == 2
    assert f'data-run-id="{ok["run_id"]}"' in page
    assert '<span class="badge succeeded">succeeded</span>' in page
    assert '<span class="badge failed">failed</span>' in page
    assert "people: 2</span>" in page
    assert "bad_data" in page
    assert "<img" not in page, "the file name in the error message must be escaped"
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "<script" not in page and "http" not in page.split("</style>")[0], "self-contained"


def test_page_escapes_reflected_filters(client: TestClient) -> None:
    run_both(client)
    page = client.get("/ui/runs", params={"pipeline": '"><script>alert(1)</script>'}).text
    assert "<script>" not in page
    assert "&quot;&gt;&lt;script&gt;" in page


def test_render_escapes_every_field() -> None:
    evil = "<script>alert('x')</script>"
    run = RunSummary(
        run_id=evil,
        pipeline=evil,
        status="failed",
        trigger=evil,
        started_at=evil,
        tables={evil: 1},
        error_code=evil,
        error_message=f'" onmouseover="{evil}',
    )
    page = render_runs_page([run], pipeline=evil)
    assert "<script>" not in page
    assert 'onmouseover="' not in page
    assert page.count("&lt;script&gt;") >= 6


def test_recording_a_run_twice_keeps_one_row(settings: Settings) -> None:
    report: dict[str, Any] = {
        "run_id": "20260101T000000-aaaaaaaa",
        "pipeline": "people",
        "status": "succeeded",
        "trigger": "cli",
        "started_at": "2026-01-01T00:00:00+00:00",
        "finished_at": "2026-01-01T00:00:01+00:00",
        "tables": {"people": 2},
        "rows_loaded": 2,
        "seconds": {"total": 1.0},
    }
    log = RunLog(settings)
    assert log.record(report)
    assert log.record(report)
    assert count(settings, TABLE) == 1
    assert log.get(report["run_id"]) == report


def test_a_destination_that_cannot_record_does_not_raise(tmp_path: Path) -> None:
    (tmp_path / "not-a-file").mkdir()
    broken = duckdb_settings(tmp_path, duckdb_path=tmp_path / "not-a-file")
    assert RunLog(broken).record({"run_id": "r", "pipeline": "p", "status": "failed"}) is False


def test_run_log_off_records_nothing(settings: Settings) -> None:
    quiet = settings.model_copy(update={"run_log": False})
    with TestClient(create_app(quiet)) as client:
        run_both(client)
        assert client.get("/runs").json() == {"runs": []}
    assert count(settings, TABLE) == 0


def test_history_is_in_the_openapi_document(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"get", "post"} <= set(paths["/runs"])
    assert "404" in paths["/runs/{run_id}"]["get"]["responses"]
    assert "text/html" in paths["/ui/runs"]["get"]["responses"]["200"]["content"]
