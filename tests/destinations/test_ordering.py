"""The ordered-merge conditions on their own: which staged changes enter the merge and which
destination rows it deletes, run in plain DuckDB the way dlt's delete-insert embeds them."""

from __future__ import annotations

from collections.abc import Iterator

import duckdb
import pytest

from app.destinations.ordering import ordered_merge, tombstone_merge

COLUMNS = "id BIGINT, seq BIGINT, _ferry_source_uri TEXT, _ferry_source_generation BIGINT"


def quoted(name: str) -> str:
    return f'"{name}"'


@pytest.fixture
def db() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect()
    for table in ("held", "staged", "tomb"):
        connection.execute(f"CREATE TABLE {table} ({COLUMNS})")
    connection.execute(
        "INSERT INTO held VALUES (1, 10, 'a', 1), (2, 10, 'a', 1), (3, 10, 'b', 5), (4, 10, 'b', 5)"
    )
    connection.execute("INSERT INTO tomb VALUES (5, 30, 'c', 1)")
    yield connection
    connection.close()


def entering(db: duckdb.DuckDBPyConnection) -> list[int]:
    order = ordered_merge(
        table="held", tombstones="tomb", primary_key=["id"], sequence="seq", escape=quoted
    )
    # dlt aliases the staged table as `s` in its delete, and not at all in its insert
    rows = db.execute(
        f"SELECT id FROM staged AS s WHERE {order.source_filter} ORDER BY id"
    ).fetchall()
    return [int(r[0]) for r in rows]


def test_only_changes_newer_than_the_table_and_the_tombstones_enter(
    db: duckdb.DuckDBPyConnection,
) -> None:
    db.execute(
        "INSERT INTO staged VALUES "
        "(1, 11, 'x', 9),"  # newer than held: enters
        "(2, 9, 'x', 9),"  # older than held, from another object: out
        "(3, 10, 'x', 9),"  # as old as held: out (already applied)
        "(4, 7, 'b', 6),"  # older, but the held row is this object's older generation: enters
        "(5, 20, 'x', 9),"  # older than its tombstone: out
        "(6, 1, 'x', 9)"  # a key the table never saw: enters
    )

    assert entering(db) == [1, 4, 6]


def test_the_scope_deletes_keys_that_enter_and_rows_the_load_replaces(
    db: duckdb.DuckDBPyConnection,
) -> None:
    db.execute("INSERT INTO staged VALUES (1, 11, 'x', 9), (2, 9, 'x', 9), (7, 1, 'b', 6)")
    order = ordered_merge(
        table="held", tombstones="tomb", primary_key=["id"], sequence="seq", escape=quoted
    )
    assert order.destination_scope is not None
    scope = order.destination_scope.format(staging_table="staged")

    db.execute(f"DELETE FROM held WHERE {scope}")

    left = [int(r[0]) for r in db.execute("SELECT id FROM held ORDER BY id").fetchall()]
    # 1: a newer change entered; 3 and 4: object b is reloaded at a newer generation
    assert left == [2]


def test_tombstones_keep_the_latest_delete(db: duckdb.DuckDBPyConnection) -> None:
    db.execute("INSERT INTO staged VALUES (5, 25, 'x', 9), (5, 31, 'x', 9)")
    order = tombstone_merge(tombstones="tomb", primary_key=["id"], sequence="seq", escape=quoted)

    rows = db.execute(f"SELECT seq FROM staged WHERE {order.source_filter} ORDER BY seq").fetchall()

    assert rows == [(31,)]
