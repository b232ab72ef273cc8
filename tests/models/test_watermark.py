"""app/models/watermark.py and incremental.py without a destination: when an incremental
model may read only the loads above its mark, and which SELECTs may at all."""

from __future__ import annotations

import pytest

from app.destinations.warehouse import Warehouse
from app.models.incremental import incremental_select, reads_whole
from app.models.transpile import parse_model
from app.models.watermark import UpstreamNow, Watermark, Watermarks, whole_because

MARK = Watermark("events", "1700000002.5", 10, 2, "1700000002.5", "abc")
NOW = UpstreamNow("1700000003.1", 14, 10, 2, 3, "1700000002.5")


@pytest.mark.parametrize(
    ("mark", "now", "definition", "full_refresh", "reason"),
    [
        (MARK, NOW, "abc", False, None),
        (MARK, NOW, "abc", True, "a full refresh was asked for"),
        (None, NOW, "abc", False, "it has no record of a previous build"),
        (MARK, NOW, "new", False, "its SQL or unique_key changed"),
        (
            MARK,
            UpstreamNow("1700000003.1", 14, 10, 2, 3, "1700000003.1"),
            "abc",
            False,
            "its table changed since its last recorded build",
        ),
        (
            MARK,
            UpstreamNow("1700000003.1", 13, 9, 2, 3, "1700000002.5"),
            "abc",
            False,
            "rows of events loaded before its last build were deleted or replaced since",
        ),
        (
            MARK,
            UpstreamNow("1700000003.1", 15, 11, 2, 3, "1700000002.5"),
            "abc",
            False,
            "rows of events loaded before its last build were deleted or replaced since",
        ),
        (
            MARK,
            UpstreamNow("1700000003.1", 14, 10, 3, 4, "1700000002.5"),
            "abc",
            False,
            "a load of an id older than its last build committed since",
        ),
    ],
    ids=[
        "only-new-loads",
        "full-refresh",
        "first-build",
        "sql-changed",
        "rows-without-a-mark",
        "rows-deleted",
        "rows-appeared-below-the-mark",
        "late-load",
    ],
)
def test_when_a_build_reads_everything(
    mark: Watermark | None,
    now: UpstreamNow,
    definition: str,
    full_refresh: bool,
    reason: str | None,
) -> None:
    assert whole_because(mark, now, definition, full_refresh) == reason


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("SELECT id, amount * 2 AS a FROM events WHERE amount > 0", None),
        ("SELECT e.id, tag FROM events AS e CROSS JOIN UNNEST(e.tags) AS tag", None),
        ("SELECT kind, COUNT(*) AS n FROM events GROUP BY kind", "it has GROUP BY"),
        ("SELECT MAX(id) AS m FROM events", "it has an aggregate (MAX)"),
        ("SELECT * FROM events QUALIFY ROW_NUMBER() OVER (ORDER BY id) = 1", "it has QUALIFY"),
        ("SELECT DISTINCT kind FROM events", "it has DISTINCT"),
        ("SELECT * FROM events JOIN users USING (user_id)", "it reads 2 tables (events, users)"),
        (
            "SELECT * FROM events WHERE day > CURRENT_DATE()",
            "it calls CURRENT_DATE, which depends on when it runs",
        ),
        ("SELECT * FROM curated", "it reads model curated, whose rows carry no load id"),
        ("WITH e AS (SELECT * FROM events) SELECT * FROM e", "it has a WITH clause"),
    ],
)
def test_which_selects_can_read_only_new_loads(sql: str, reason: str | None) -> None:
    assert reads_whole(parse_model("m", sql), frozenset({"curated"})) == reason


def test_the_upstream_is_read_between_the_marks_and_each_row_keeps_its_load_id() -> None:
    query = parse_model("m", "SELECT e.id FROM events AS e WHERE e.amount > 0")
    rendered = Warehouse("duckdb", "ferry").render(
        incremental_select(query, Warehouse("duckdb", "ferry"), "1.5", "2.5")
    )
    assert rendered == (
        'SELECT e.id, "e"."_dlt_load_id" AS "_ferry_load_id" FROM (SELECT * FROM "ferry".events '
        'WHERE "_dlt_load_id" > \'1.5\' AND "_dlt_load_id" <= \'2.5\') AS "e" WHERE e.amount > 0'
    )


def test_marks_are_appended_and_the_newest_row_per_model_counts_over_an_old_table() -> None:
    """`_ferry_model_loads` only gets rows appended (a MERGE or DELETE per build is DML on a
    table every pipeline of the dataset shares); a table from before (one row per model)
    reads the same, and a forgotten mark is a newer row that reads as none."""
    import duckdb

    connection = duckdb.connect()
    connection.execute("CREATE SCHEMA ds")
    connection.execute(
        "CREATE TABLE ds._ferry_model_loads (model VARCHAR, upstream VARCHAR, load_id VARCHAR, "
        "upstream_rows BIGINT, loads BIGINT, model_load_id VARCHAR, definition VARCHAR, "
        "run_id VARCHAR)"
    )
    connection.execute(
        "INSERT INTO ds._ferry_model_loads VALUES "
        "('m', 'events', '1.0', 1, 1, '1.0', 'abc', '20261201T000000-ffffffff')"
    )
    marks = Watermarks(
        lambda sql: connection.execute(sql).fetchall(),
        Warehouse("duckdb", "ds"),
        lambda name: "table",
        lambda name, rows: False,
    )
    assert marks.read("m") == Watermark("events", "1.0", 1, 1, "1.0", "abc")
    marks.write("m", MARK, "20261206T000000-bbbbbbbb")
    assert marks.read("m") == MARK
    marks.forget("m", "20261206T000001-aaaaaaaa")
    assert marks.read("m") is None
    marks.write("m", MARK, "20261206T000002-cccccccc")
    assert marks.read("m") == MARK
    assert marks.read("other") is None
    assert connection.execute("SELECT COUNT(*) FROM ds._ferry_model_loads").fetchall() == [(4,)]
