"""Models on the BigQuery emulator: the same SQL as on DuckDB, built after loads, in order;
a failing model keeps its previous table; `build` on demand."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app.run.catalog import load_catalog
from app.run.request import MODELS_RUN
from app.run.runner import RunRequest, run
from core.errors import FerryError
from core.settings import Settings
from tests.emulators import BigQueryEmulator
from tests.helpers import REPO, write_catalog

pytestmark = pytest.mark.emulators

DAY_2 = "dt=2026-11-02"


@pytest.fixture
def settings(
    tmp_path: Path,
    bigquery_env: BigQueryEmulator,
    unique_name: str,
) -> Settings:
    return Settings(
        destination="bigquery",
        bigquery_project=bigquery_env.project,
        bigquery_dataset=unique_name,
        bigquery_emulator_host=bigquery_env.endpoint,
        storage_emulator_host=None,
        data_dir=tmp_path / "data",
        run_log=False,
    )


def rows(emulator: BigQueryEmulator, settings: Settings, sql: str) -> list[tuple[object, ...]]:
    table = f"`{emulator.project}.{settings.bigquery_dataset}"
    return [
        tuple(row.values()) for row in emulator.client().query(sql.replace("`ds", table)).result()
    ]


def test_lake_models_build_after_loads_and_rebuild_when_upstream_changed(
    tmp_path: Path, settings: Settings, bigquery_env: BigQueryEmulator
) -> None:
    folder = tmp_path / "lake"
    shutil.copytree(REPO / "examples" / "lake", folder)
    shutil.move(folder / "data" / "raw" / "ratings" / DAY_2, tmp_path / DAY_2)
    catalog = load_catalog(folder / "pipelines.yaml")

    movies = run(RunRequest("movies"), settings, catalog)
    ratings = run(RunRequest("ratings"), settings, catalog)

    assert [(m.name, m.status) for m in movies.models] == [("top_movie_per_genre", "skipped")]
    assert [(m.name, m.status, m.rows) for m in ratings.models] == [
        ("ratings_curated", "built", 8),
        ("top_movie_per_genre", "built", 3),
    ]
    top = "select genre, title from `ds.top_movie_per_genre` order by genre"
    assert rows(bigquery_env, settings, top) == [
        ("Comedy", "Alpha"),
        ("Drama", "Alpha"),
        ("Sci-Fi", "Delta"),
    ]
    assert run(RunRequest("ratings"), settings, catalog).models == []

    shutil.move(tmp_path / DAY_2, folder / "data" / "raw" / "ratings" / DAY_2)
    day_two = run(RunRequest("ratings"), settings, catalog)

    assert [m.status for m in day_two.models] == ["built", "built"]
    assert rows(bigquery_env, settings, "select count(*) from `ds.ratings_curated`") == [(9,)]
    assert rows(bigquery_env, settings, top) == [
        ("Comedy", "Charlie"),
        ("Drama", "Alpha"),
        ("Sci-Fi", "Charlie"),
    ]


PEOPLE = """
pipelines:
  - name: people
    source: {uri: "data/*.csv", columns: {code: string}}
    destination: {table: people}
models:
  - name: codes
    sql: SELECT id, CAST(code AS INT64) AS code FROM people
    checks: {range: {code: {max: 100}}}
  - name: code_total
    sql: SELECT SUM(code) AS total, COUNT(*) AS n FROM codes
"""


@pytest.mark.parametrize(
    ("bad_code", "code"),
    [("500", "model_check_failed"), ("x", "model_failed")],
    ids=["check-fails", "sql-error"],
)
def test_failing_model_keeps_its_table_and_build_runs_on_demand(
    tmp_path: Path, settings: Settings, bigquery_env: BigQueryEmulator, bad_code: str, code: str
) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.csv").write_text("id,code\n1,10\n2,20\n", encoding="utf-8")
    catalog = write_catalog(tmp_path, PEOPLE)
    first = run(RunRequest("people"), settings, catalog)
    assert [m.status for m in first.models] == ["built", "built"]
    (tmp_path / "data" / "b.csv").write_text(f"id,code\n3,{bad_code}\n", encoding="utf-8")

    with pytest.raises(FerryError) as caught:
        run(RunRequest("people"), settings, catalog)

    assert caught.value.code == code
    assert caught.value.report is not None
    report = caught.value.report.to_dict()
    assert [(m["name"], m["status"]) for m in report["models"]] == [
        ("codes", "failed"),
        ("code_total", "skipped"),
    ]
    assert rows(bigquery_env, settings, "select count(*) from `ds.people`") == [(3,)]
    assert rows(bigquery_env, settings, "select id, code from `ds.codes` order by id") == [
        (1, 10),
        (2, 20),
    ]
    tables = {t.table_id for t in bigquery_env.client().list_tables(settings.bigquery_dataset)}
    assert not [t for t in tables if "__ferry_" in t], "temporary build tables are dropped"

    built = run(RunRequest(MODELS_RUN, models=("code_total",)), settings, catalog)
    assert built.status == "succeeded"
    assert [(m.name, m.status) for m in built.models] == [("code_total", "built")]
    assert rows(bigquery_env, settings, "select total, n from `ds.code_total`") == [(30, 2)]
