"""app/models/materialize.py on DuckDB, without the builder around it: each materialisation
builds what it says, and a failed check leaves the previous version in place."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.destinations.pipeline import run_pipeline_for
from app.destinations.registry import engine_for
from app.models.materialize import Materializer
from app.models.transpile import parse_model
from core.errors import ModelCheckError
from core.model_spec import ModelSpec
from core.settings import Settings
from tests.helpers import duckdb_settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return duckdb_settings(tmp_path, run_log=False)


@pytest.fixture
def client(settings: Settings) -> Iterator[Any]:
    with (
        run_pipeline_for("people", settings, "r-materialize") as pipeline,
        pipeline.sql_client() as sql,
    ):
        if not sql.has_dataset():
            sql.create_dataset()
        sql.execute_sql(f"CREATE TABLE {settings.dataset_name}.people (id INT, name TEXT)")
        sql.execute_sql(f"INSERT INTO {settings.dataset_name}.people VALUES (1, 'ann'), (2, 'bob')")
        yield sql


def rows(client: Any, sql: str) -> list[tuple[Any, ...]]:
    """Read through the build's own connection (DuckDB allows one configuration per file)."""
    return [tuple(row) for row in client.execute_sql(sql)]


def build(settings: Settings, client: Any, **spec: Any) -> int | None:
    model = ModelSpec(**spec)
    assert model.sql is not None
    engine = engine_for(settings).models
    materializer = Materializer(client, engine, engine.warehouse(settings), "t1")
    return materializer.build(model, parse_model(model.name, model.sql))


def test_a_table_is_built_and_counted(settings: Settings, client: Any) -> None:
    built = build(
        settings, client, name="upper_names", sql="SELECT id, UPPER(name) AS n FROM people"
    )
    assert built == 2
    assert rows(client, "select n from ferry.upper_names order by id") == [("ANN",), ("BOB",)]


def test_a_view_reads_the_table_live(settings: Settings, client: Any) -> None:
    assert (
        build(settings, client, name="v", sql="SELECT id FROM people", materialization="view")
        is None
    )
    client.execute_sql("INSERT INTO ferry.people VALUES (3, 'cy')")
    assert rows(client, "select count(*) from ferry.v") == [(3,)]


def test_a_failed_check_keeps_the_previous_table_and_leaves_no_temporary(
    settings: Settings, client: Any
) -> None:
    build(settings, client, name="names", sql="SELECT id, name FROM people")
    client.execute_sql("INSERT INTO ferry.people VALUES (1, 'again')")
    with pytest.raises(ModelCheckError, match="unique"):
        build(
            settings,
            client,
            name="names",
            sql="SELECT id, name FROM people",
            checks={"unique": ["id"]},
        )
    assert rows(client, "select count(*) from ferry.names") == [(2,)]
    tables = rows(client, "select table_name from information_schema.tables")
    assert not [name for (name,) in tables if "__ferry_" in name]


def test_an_incremental_model_merges_on_its_unique_key(settings: Settings, client: Any) -> None:
    spec = {
        "name": "latest",
        "sql": "SELECT id, name FROM people",
        "materialization": "incremental",
        "unique_key": ["id"],
    }
    assert build(settings, client, **spec) == 2
    client.execute_sql("UPDATE ferry.people SET name = 'bea' WHERE id = 2")
    client.execute_sql("INSERT INTO ferry.people VALUES (3, 'cy')")
    build(settings, client, **spec)
    assert rows(client, "select id, name from ferry.latest order by id") == [
        (1, "ann"),
        (2, "bea"),
        (3, "cy"),
    ]
