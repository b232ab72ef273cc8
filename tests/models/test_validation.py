"""A pipelines file's `models:` is validated at start; every problem names the model (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.run.catalog import load_catalog
from core.errors import ConfigError
from tests.helpers import REPO, write_catalog

PIPELINES = """
pipelines:
  - {name: ratings, source: {uri: "raw/*.csv"}, destination: {table: ratings}}
  - {name: movies, source: {uri: "movies/*.csv"}, destination: {table: movies}}
"""


def catalog_with(tmp_path: Path, models: str):  # type: ignore[no-untyped-def]
    return write_catalog(tmp_path, PIPELINES + "models:\n" + models)


def test_the_examples_validate_with_their_models_in_dependency_order() -> None:
    lake = load_catalog(REPO / "examples" / "lake" / "pipelines.yaml").models
    demo = load_catalog(REPO / "examples" / "pipelines.yaml").models

    assert lake.graph.order == ("ratings_curated", "top_movie_per_genre")
    assert lake.queries["top_movie_per_genre"].upstream == {"ratings_curated", "movies"}
    assert demo.graph.order[0] == "orders_curated"
    assert set(demo.graph.downstream_of(["orders"])) == set(demo.specs)


@pytest.mark.parametrize(
    ("models", "problem"),
    [
        (
            "  - {name: curated, sql: 'SELECT * FROM ratingz'}\n",
            r"model 'curated': reads table 'ratingz', which no pipeline loads and no model "
            r"builds \(known: curated, movies, ratings\)",
        ),
        (
            "  - {name: a, sql: 'SELECT * FROM b'}\n  - {name: b, sql: 'SELECT * FROM a'}\n",
            r"models read each other in a cycle: (a -> b -> a|b -> a -> b)",
        ),
        (
            "  - {name: top, sql: 'SELECT FARM_FINGERPRINT(title) FROM movies'}\n",
            r"model 'top': SQL cannot run on DuckDB .*function FARM_FINGERPRINT has no DuckDB",
        ),
        (
            "  - {name: top, sql: 'SELECT genre, FROM WHERE movies'}\n",
            r"model 'top': SQL does not parse as BigQuery SQL \(line 1, column \d+\)",
        ),
        (
            "  - {name: movies, sql: 'SELECT * FROM ratings'}\n",
            r"model 'movies': a pipeline already loads a table of this name",
        ),
        (
            "  - {name: _dlt_loads, sql: 'SELECT * FROM ratings'}\n",
            r"model '_dlt_loads': names starting with _dlt or _ferry are reserved",
        ),
        (
            "  - {name: curated, sql_file: models/missing.sql}\n",
            r"model 'curated': cannot read sql_file .*missing\.sql",
        ),
        (
            "  - {name: curated, materialization: incremental,\n"
            "     sql: 'SELECT user_id, COUNT(*) AS n FROM ratings GROUP BY user_id'}\n",
            r"model 'curated': materialization 'incremental' without unique_key appends the "
            r"rows of new loads, .* and it has GROUP BY",
        ),
        (
            "  - {name: curated, sql: 'SELECT 1', materialization: snapshot}\n",
            r"model 'curated', field materialization: Input should be 'table', 'view' or "
            r"'incremental'",
        ),
        (
            "  - {name: curated, sql: 'SELECT 1', checks: {fresh: 1}}\n",
            r"model 'curated': unknown key 'fresh' in checks",
        ),
    ],
    ids=[
        "unknown-table",
        "cycle",
        "untranslatable",
        "syntax",
        "name-of-a-loaded-table",
        "reserved-name",
        "missing-sql-file",
        "incremental-append-over-an-aggregate",
        "unknown-materialization",
        "unknown-check",
    ],
)
def test_invalid_models_fail_at_start_naming_the_model(
    tmp_path: Path, models: str, problem: str
) -> None:
    with pytest.raises(ConfigError, match=problem):
        catalog_with(tmp_path, models)


def test_sql_files_resolve_beside_the_pipelines_file_and_children_of_loaded_tables_are_known(
    tmp_path: Path,
) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "rejected.sql").write_text(
        "SELECT COUNT(*) AS n FROM ratings__rejects", encoding="utf-8"
    )
    catalog = catalog_with(tmp_path, "  - {name: rejected, sql_file: models/rejected.sql}\n")

    assert catalog.models.queries["rejected"].upstream == {"ratings__rejects"}
    assert catalog.models.graph.downstream_of(["ratings__rejects"]) == ["rejected"]
