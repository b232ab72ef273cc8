"""The demo as scripts/demo.sh runs it: `main.py run orders` builds the example models and
prints them in its report; the models reach the run event and the history page (pure)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.edges.cli import main
from app.edges.routes.history import RunSummary, render_runs_page
from app.models.report import ModelReport
from app.ops.run_events import run_event
from app.run.report import RunReport
from tests.edges.test_cli import ferry
from tests.helpers import REPO, duckdb_settings, query


def test_the_demo_prints_its_models_in_the_report(tmp_path: Path) -> None:
    result = ferry(["run", "orders"], tmp_path, FERRY_RUN_LOG="false")

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [(m["name"], m["status"]) for m in report["models"]] == [
        ("orders_curated", "built"),
        ("country_daily_sales", "built"),
        ("top_order_per_country", "built"),
    ]
    curated, summary, _view = report["models"]
    settings = duckdb_settings(tmp_path)  # the same data dir the process used
    sales = "select count(*) from ferry.orders where status in ('paid', 'shipped')"
    assert [(curated["rows"],)] == query(settings, sales)
    assert [(summary["rows"],)] == query(settings, "select count(*) from ferry.country_daily_sales")
    top = "select count(*) = count(distinct country) from ferry.top_order_per_country"
    assert query(settings, top) == [(True,)]


def failed_model_report() -> RunReport:
    failed = {"code": "model_failed", "message": "boom", "recovery": "terminal"}
    report = RunReport(
        run_id="20261121T101500-3f9c2a1b",
        pipeline="orders",
        trigger="http",
        destination="duckdb",
        dataset="ferry",
        tables={"orders": 3},
        seconds={"total": 1.5, "models": 0.5},
        models=[
            ModelReport("a", "table", status="failed", seconds=0.2, error=failed),
            ModelReport("b", "view", status="skipped", reason="upstream model a not built"),
        ],
    )
    error = {"code": "model_failed", "message": "model 'a': boom", "recovery": "terminal"}
    return report.finish("failed", error)


def test_models_reach_the_run_event_and_the_history_page() -> None:
    report = failed_model_report()

    event = run_event(report)
    page = render_runs_page([RunSummary.of(report.to_dict())])

    assert event["error"]["code"] == "model_failed"
    assert event["models"] == [
        {
            "name": "a",
            "status": "failed",
            "rows": None,
            "seconds": 0.2,
            "error_code": "model_failed",
        },
        {"name": "b", "status": "skipped", "rows": None, "seconds": 0.0, "error_code": None},
    ]
    assert '<tr class="models" data-run-id="20261121T101500-3f9c2a1b">' in page
    assert '<span class="badge failed">failed</span>' in page
    assert '<span class="badge skipped">skipped</span>' in page


def test_validate_lists_the_models_and_what_they_read(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FERRY_PIPELINES_FILE", str(REPO / "examples" / "lake" / "pipelines.yaml"))
    monkeypatch.setenv("FERRY_DESTINATION", "duckdb")

    assert main(["validate"]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert lines[-2:] == [
        "model ratings_curated: incremental <- ratings",
        "model top_movie_per_genre: table <- movies, ratings_curated",
    ]
