"""Side-table rows (run log, idempotency keys) merged by one bound statement."""

from __future__ import annotations

import duckdb

from app.destinations.duckdb import destination as duckdb_destination
from app.destinations.side_tables import merge_statement


def apply(connection: duckdb.DuckDBPyConnection, row: dict[str, object]) -> None:
    types = {
        "run_id": "text",
        "rows": "bigint",
        "started_at": "timestamp",
        "_dlt_load_id": "text",
        "_dlt_id": "text",
    }
    sql_types = {name: duckdb_destination.SQL_TYPES[kind] for name, kind in types.items()}
    statement, args = merge_statement("runs", row, "run_id", sql_types, lambda n: f'"{n}"')
    connection.execute(statement.replace("%s", "?"), args)


def test_a_row_merged_twice_is_one_row_with_the_latest_values() -> None:
    connection = duckdb.connect()
    connection.execute(
        "CREATE TABLE runs (run_id VARCHAR NOT NULL, rows BIGINT, started_at TIMESTAMPTZ, "
        "_dlt_load_id VARCHAR NOT NULL, _dlt_id VARCHAR NOT NULL)"
    )
    apply(connection, {"run_id": "a", "rows": 1, "started_at": "2026-11-30T10:00:00+00:00"})
    apply(connection, {"run_id": "b", "rows": None, "started_at": None})
    apply(connection, {"run_id": "a", "rows": 7, "started_at": "2026-11-30T11:00:00+00:00"})

    rows = connection.execute(
        "SELECT run_id, rows, hour(started_at AT TIME ZONE 'UTC') FROM runs ORDER BY run_id"
    ).fetchall()
    assert rows == [("a", 7, 11), ("b", None, None)]
    ids = connection.execute("SELECT count(DISTINCT _dlt_id) FROM runs").fetchone()
    assert ids == (2,)
