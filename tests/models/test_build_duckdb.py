"""Models on the embedded default (DuckDB): built after loads, in order, only when upstream
changed; failures keep the previous table; checks; `build` on demand (CLI and HTTP)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest
from fastapi.testclient import TestClient

from app.edges.cli import main
from app.edges.server import create_app
from app.models.report import ModelReport
from app.run.catalog import Catalog, load_catalog
from app.run.request import MODELS_RUN
from app.run.runner import RunRequest, run
from core.errors import FerryError, ModelCheckError, ModelFailedError, outcome_of
from core.settings import Settings
from tests.helpers import REPO, duckdb_settings, query, write_catalog

DAY_2 = "dt=2026-11-02"


def lake(tmp_path: Path) -> tuple[Catalog, Path]:
    """The lake example with only its first day of ratings; returns where day 2 waits."""
    folder = tmp_path / "lake"
    shutil.copytree(REPO / "examples" / "lake", folder)
    later = tmp_path / "later"
    shutil.move(folder / "data" / "raw" / "ratings" / DAY_2, later)
    return load_catalog(folder / "pipelines.yaml"), later


def top_per_genre(settings: Settings) -> dict[str, str]:
    rows = query(settings, "select genre, title from ferry.top_movie_per_genre")
    return dict(rows)


def statuses(models: list[ModelReport]) -> list[tuple[str, str]]:
    return [(model.name, model.status) for model in models]


def test_two_level_graph_builds_after_loads_and_rebuilds_only_when_upstream_changed(
    tmp_path: Path,
) -> None:
    catalog, day_2 = lake(tmp_path)
    settings = duckdb_settings(tmp_path, run_log=False)

    movies = run(RunRequest("movies"), settings, catalog)
    # the summary also reads ratings_curated, which no load has fed yet: skipped, not failed
    assert movies.status == "succeeded"
    assert statuses(movies.models) == [("top_movie_per_genre", "skipped")]
    assert "ratings_curated does not exist yet" in str(movies.models[0].reason)

    ratings = run(RunRequest("ratings"), settings, catalog)
    assert statuses(ratings.models) == [
        ("ratings_curated", "built"),
        ("top_movie_per_genre", "built"),
    ]
    assert [m.rows for m in ratings.models] == [8, 3]  # the 9.0 rating is not a valid star
    assert top_per_genre(settings) == {"Drama": "Alpha", "Comedy": "Alpha", "Sci-Fi": "Delta"}

    # nothing new: no load, so no model runs
    assert run(RunRequest("ratings"), settings, catalog).models == []
    assert run(RunRequest("movies"), settings, catalog).models == []

    shutil.move(day_2, tmp_path / "lake" / "data" / "raw" / "ratings" / DAY_2)
    day_two = run(RunRequest("ratings"), settings, catalog)

    assert day_two.tables == {"ratings": 2}
    assert statuses(day_two.models) == [
        ("ratings_curated", "built"),
        ("top_movie_per_genre", "built"),
    ]
    # incremental: user 1 re-rated movie 3 (updated in place), user 4 rated movie 2 (inserted)
    assert query(settings, "select count(*) from ferry.ratings_curated") == [(9,)]
    assert query(
        settings,
        "select rating, cast(dt as varchar) from ferry.ratings_curated "
        "where user_id = 1 and movie_id = 3",
    ) == [(5.0, "2026-11-02")]
    assert top_per_genre(settings) == {"Drama": "Alpha", "Comedy": "Charlie", "Sci-Fi": "Charlie"}


PEOPLE = """
pipelines:
  - name: people
    source: {uri: "data/*.csv", columns: {code: string}}
    destination: {table: people}
models:
  - name: codes
    sql: SELECT id, CAST(code AS INT64) AS code FROM people
    checks: {range: {code: {max: 100}}, not_null: [code]}
  - name: code_total
    sql: SELECT SUM(code) AS total, COUNT(*) AS n FROM codes
  - name: people_count
    materialization: view
    sql: SELECT COUNT(*) AS n FROM people
"""


def people(tmp_path: Path) -> tuple[Catalog, Settings]:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.csv").write_text("id,code\n1,10\n2,20\n", encoding="utf-8")
    return write_catalog(tmp_path, PEOPLE), duckdb_settings(tmp_path, run_log=False)


@pytest.mark.parametrize(
    ("bad_code", "error_class", "code"),
    [("x", ModelFailedError, "model_failed"), ("500", ModelCheckError, "model_check_failed")],
    ids=["sql-error", "check-fails"],
)
def test_a_failing_model_keeps_its_previous_table_and_never_undoes_the_load(
    tmp_path: Path, bad_code: str, error_class: type[FerryError], code: str
) -> None:
    catalog, settings = people(tmp_path)
    first = run(RunRequest("people"), settings, catalog)
    # dependency order: code_total reads codes; ties in name order
    assert statuses(first.models) == [
        ("codes", "built"),
        ("people_count", "built"),
        ("code_total", "built"),
    ]
    (tmp_path / "data" / "b.csv").write_text(f"id,code\n3,{bad_code}\n", encoding="utf-8")

    with pytest.raises(error_class) as caught:
        run(RunRequest("people"), settings, catalog)

    error = caught.value
    assert error.code == code
    assert outcome_of(error).exit_code == 2 and outcome_of(error).http_status == 422
    assert "model 'codes'" in str(error)
    assert error.report is not None, "the failed run's report rides on the error"
    report = error.report.to_dict()
    assert report["status"] == "failed" and report["error"]["code"] == code
    assert report["tables"] == {"people": 1} and report["load_ids"], "the load committed"
    models = {m["name"]: m for m in report["models"]}
    assert models["codes"]["status"] == "failed"
    assert models["codes"]["error"]["code"] == code
    assert models["code_total"]["status"] == "skipped"
    assert models["people_count"]["status"] == "built", "models that do not read it still build"
    # the load stays; the failed model and the one reading it keep their previous versions
    assert query(settings, "select count(*) from ferry.people") == [(3,)]
    assert query(settings, "select id, code from ferry.codes order by id") == [(1, 10), (2, 20)]
    assert query(settings, "select total, n from ferry.code_total") == [(30, 2)]
    assert query(settings, "select n from ferry.people_count") == [(3,)]
    leftovers = query(
        settings,
        "select table_name from information_schema.tables where table_name like '%__ferry_%'",
    )
    assert leftovers == [], "temporary build tables are dropped"


def test_build_on_demand_from_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    catalog, settings = people(tmp_path)
    run(RunRequest("people"), settings, catalog)
    with duckdb.connect(str(settings.resolved_duckdb_path)) as connection:
        connection.execute("DROP TABLE ferry.code_total")  # lost: build puts it back
    for name, value in {
        "FERRY_PIPELINES_FILE": str(tmp_path / "pipelines.yaml"),
        "FERRY_DATA_DIR": str(settings.data_dir),
        "FERRY_DESTINATION": "duckdb",
        "FERRY_RUN_LOG": "false",
        "FERRY_LOG_FORMAT": "json",
    }.items():
        monkeypatch.setenv(name, value)

    assert main(["build", "code_total"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["pipeline"] == "_models" and report["status"] == "succeeded"
    assert [(m["name"], m["status"]) for m in report["models"]] == [("code_total", "built")]
    assert query(settings, "select total, n from ferry.code_total") == [(30, 2)]

    assert main(["build", "codes"]) == 0  # and what reads it
    built = [m["name"] for m in json.loads(capsys.readouterr().out)["models"]]
    assert built == ["codes", "code_total"]

    assert main(["build", "nope"]) == 2
    assert "no model named nope" in capsys.readouterr().err


def test_build_over_http_is_listed_under_its_run(tmp_path: Path) -> None:
    people(tmp_path)
    settings = duckdb_settings(tmp_path, run_log=True)
    with TestClient(create_app(settings)) as client:
        loaded = client.post("/runs", json={"pipeline": "people"})
        assert loaded.status_code == 200, loaded.text
        assert len(loaded.json()["models"]) == 3

        built = client.post("/runs", json={"models": ["codes"]})
        assert built.status_code == 200, built.text
        assert [m["name"] for m in built.json()["models"]] == ["codes", "code_total"]
        mixed = client.post("/runs", json={"models": [], "pipeline": "people"})
        assert mixed.status_code == 400

        (tmp_path / "data" / "b.csv").write_text("id,code\n3,x\n", encoding="utf-8")
        failed = client.post("/runs", json={"pipeline": "people"})
        assert failed.status_code == 422, failed.text
        assert failed.json()["error"]["code"] == "model_failed"
        assert failed.json()["report"]["tables"] == {"people": 1}, "the load committed"

        runs = client.get("/runs").json()["runs"]
        assert [(m["name"], m["status"], m["error_code"]) for m in runs[0]["models"]] == [
            ("codes", "failed", "model_failed"),
            ("people_count", "built", None),
            ("code_total", "skipped", None),
        ]
        assert [m["name"] for m in runs[1]["models"]] == ["codes", "code_total"]
        assert {"status", "rows", "seconds", "error_code"} <= set(runs[1]["models"][0])
        page = client.get("/ui/runs").text
        assert page.count('<tr class="models"') == 3
        assert "code_total" in page


def test_models_left_to_build_on_demand_wait_for_build(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.csv").write_text("id,code\n1,10\n", encoding="utf-8")
    catalog = write_catalog(
        tmp_path,
        """
        pipelines:
          - {name: people, source: {uri: "data/*.csv"}, destination: {table: people}}
        models:
          - {name: nightly, sql: "SELECT COUNT(*) AS n FROM people", build_after_load: false}
          - {name: after_nightly, sql: "SELECT n * 2 AS twice FROM nightly"}
        """,
    )
    settings = duckdb_settings(tmp_path, run_log=False)

    loaded = run(RunRequest("people"), settings, catalog)
    built = run(RunRequest(MODELS_RUN, models=("nightly",)), settings, catalog)

    assert loaded.models == [], "the load reaches no model: nightly waits for build"
    assert statuses(built.models) == [("nightly", "built"), ("after_nightly", "built")]
    assert query(settings, "select twice from ferry.after_nightly") == [(2,)]


def test_a_model_failure_names_the_model_and_the_line_of_its_own_sql(tmp_path: Path) -> None:
    """Issue 22 #8: not DuckDB's quote of the translated, wrapped statement ferry ran."""
    (tmp_path / "in.csv").write_text("id,country\n1,DE\n", encoding="utf-8")
    catalog = write_catalog(
        tmp_path,
        """
        pipelines:
          - {name: p, source: {uri: in.csv}, destination: {table: orders}}
        models:
          - name: by_country
            sql: |
              SELECT
                country,
                COUNT(OrderID) AS orders
              FROM orders
              GROUP BY country
        """,
    )
    with pytest.raises(ModelFailedError) as failed:
        run(RunRequest("p"), duckdb_settings(tmp_path, run_log=False), catalog)
    message = failed.value.message
    assert message.startswith("model 'by_country': ")
    assert "OrderID" in message and message.endswith(
        "(line 3 of its SQL: COUNT(OrderID) AS orders)"
    )
    assert "CREATE" not in message and "LINE 1" not in message
