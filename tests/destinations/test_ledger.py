"""The ledger query against rows planted in DuckDB by hand: no dlt run, no emulator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from app.destinations.ledger import QUERY_CHUNK, objects_hints, read_lineage
from app.destinations.pipeline import run_pipeline_for
from core.settings import Settings
from tests.helpers import duckdb_settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return duckdb_settings(tmp_path)


@pytest.fixture
def pipeline(settings: Settings) -> Iterator[Any]:
    with run_pipeline_for("ledger", settings, "ledger-test") as created:
        yield created


def plant(settings: Settings, rows: list[tuple[str, int, str]], loads: dict[str, int]) -> None:
    """Rows (uri, generation, load id) in ferry.orders, and `_dlt_loads` (load id -> status)."""
    path = settings.resolved_duckdb_path
    path.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(path)) as connection:
        connection.execute("create schema if not exists ferry")
        connection.execute(
            "create table ferry.orders (_ferry_source_uri text, "
            "_ferry_source_generation bigint, _dlt_load_id text, id bigint)"
        )
        connection.execute("create table ferry._dlt_loads (load_id text, status bigint)")
        connection.executemany("insert into ferry.orders values (?, ?, ?, 1)", rows)
        connection.executemany("insert into ferry._dlt_loads values (?, ?)", list(loads.items()))


def test_no_table_yet_is_an_empty_ledger(pipeline: Any) -> None:
    ledger = read_lineage(pipeline, "orders", ["gs://b/a.csv"])
    assert ledger.committed == {} and ledger.present == frozenset()


def test_only_completed_loads_count(settings: Settings, pipeline: Any) -> None:
    plant(
        settings,
        [
            ("gs://b/a.csv", 1, "l1"),
            ("gs://b/a.csv", 2, "l2"),  # a newer generation, completed
            ("gs://b/b.csv", 5, "l3"),  # a load killed before `_dlt_loads` said so
            ("gs://b/c.csv", 7, "l4"),  # a load that is in `_dlt_loads` but not complete
            ("gs://b/other.csv", 9, "l1"),  # not asked for
        ],
        {"l1": 0, "l2": 0, "l4": 1},
    )
    ledger = read_lineage(pipeline, "orders", ["gs://b/a.csv", "gs://b/b.csv", "gs://b/c.csv"])
    assert ledger.committed == {"gs://b/a.csv": 2}
    assert ledger.present == {"gs://b/a.csv", "gs://b/b.csv", "gs://b/c.csv"}


def test_many_uris_are_asked_in_chunks(settings: Settings, pipeline: Any) -> None:
    uris = [f"gs://b/{index:05}.csv" for index in range(QUERY_CHUNK * 2 + 3)]
    plant(settings, [(uri, 1, "l1") for uri in uris], {"l1": 0})
    ledger = read_lineage(pipeline, "orders", uris)
    assert len(ledger.committed) == len(uris)


def test_a_uri_with_quotes_is_a_bound_value(settings: Settings, pipeline: Any) -> None:
    uri = "gs://b/x'); drop table ferry.orders; --.csv"
    plant(settings, [(uri, 3, "l1")], {"l1": 0})
    assert read_lineage(pipeline, "orders", [uri]).committed == {uri: 3}


@pytest.mark.parametrize(
    ("kind", "extra"),
    [("duckdb", None), ("bigquery", {"x-insert-api": "streaming"})],
    ids=["duckdb-appends", "bigquery-streams"],
)
def test_the_ledger_is_appended_never_merged(tmp_path: Path, kind: str, extra: Any) -> None:
    """`_ferry_objects` is shared by every pipeline of the dataset: a merge per push was DML
    in its queue; appended rows (keyed by run, the reader takes the highest) need none."""

    settings = duckdb_settings(tmp_path, destination=kind, bigquery_project="p")
    hints = objects_hints(settings)
    assert hints["write_disposition"] == "append"
    assert hints["additional_table_hints"] == extra
