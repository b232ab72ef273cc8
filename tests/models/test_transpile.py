"""BigQuery SQL -> DuckDB: what translates, what is refused and named (pure, in-memory DuckDB)."""

from __future__ import annotations

import duckdb
import pytest

from app.destinations.warehouse import Warehouse
from app.models.transpile import check_translatable, parse_model, untranslatable
from core.errors import ConfigError

DUCKDB = Warehouse(dialect="duckdb", dataset="ferry")
BIGQUERY = Warehouse(dialect="bigquery", dataset="analytics", catalog="acme-prod")


def test_upstream_tables_come_from_the_sql_without_ctes_or_unnest() -> None:
    model = parse_model(
        "summary",
        """
        WITH rated AS (SELECT movie_id, AVG(rating) AS r FROM ratings GROUP BY movie_id)
        SELECT m.genre, x FROM rated JOIN movies AS m USING (movie_id), UNNEST([1, 2]) AS x
        """,
    )
    assert model.upstream == {"ratings", "movies"}


def test_tables_resolve_to_the_configured_dataset_on_both_engines() -> None:
    model = parse_model("curated", "SELECT * FROM ratings WHERE rating > 0")

    assert model.render(DUCKDB) == 'SELECT * FROM "ferry".ratings WHERE rating > 0'
    assert model.render(BIGQUERY) == (
        "SELECT * FROM `acme-prod`.`analytics`.ratings WHERE rating > 0"
    )


# (BigQuery SQL, rows on DuckDB) over a tiny table t(g, v, d): checked by running the translation
TRANSLATED = [
    ("SELECT SAFE_DIVIDE(SUM(v), 0) FROM t", [(None,)]),
    ("SELECT COUNTIF(v > 1) FROM t", [(2,)]),
    (
        "SELECT g FROM t QUALIFY ROW_NUMBER() OVER (PARTITION BY g ORDER BY v DESC) = 1 ORDER BY g",
        [("a",), ("b",)],
    ),
    ("SELECT * EXCEPT (d) FROM t ORDER BY v LIMIT 1", [("a", 1)]),
    ("SELECT FORMAT_DATE('%Y-%m', d) FROM t LIMIT 1", [("2026-11",)]),
    ("SELECT DATE_TRUNC(d, MONTH) = DATE '2026-11-01' FROM t LIMIT 1", [(True,)]),
    ("SELECT IF(v > 2, 'big', 'small') FROM t ORDER BY v", [("small",), ("small",), ("big",)]),
    ("SELECT STRING_AGG(g, ',' ORDER BY g) FROM t", [("a,a,b",)]),
    ("SELECT CAST(v AS STRING) FROM t ORDER BY v LIMIT 1", [("1",)]),
    ("SELECT ARRAY_AGG(v ORDER BY v)[OFFSET(0)] FROM t", [(1,)]),
]


@pytest.mark.parametrize(("sql", "rows"), TRANSLATED, ids=[s[7:30] for s, _ in TRANSLATED])
def test_bigquery_constructs_run_on_duckdb(sql: str, rows: list[tuple[object, ...]]) -> None:
    model = parse_model("m", sql)
    assert untranslatable(model) == []
    connection = duckdb.connect()
    connection.execute("CREATE SCHEMA ferry")
    connection.execute(
        "CREATE TABLE ferry.t AS SELECT * FROM (VALUES ('a', 1, DATE '2026-11-03'), "
        "('a', 2, DATE '2026-11-04'), ('b', 3, DATE '2026-11-05')) AS v(g, v, d)"
    )
    assert connection.execute(model.render(DUCKDB)).fetchall() == rows


@pytest.mark.parametrize(
    ("sql", "named"),
    [
        ("SELECT ARRAY_AGG(v ORDER BY v LIMIT 1) FROM t", "LIMIT inside ARRAY_AGG"),
        ("SELECT NET.HOST(url) FROM t", "function NET.HOST has no DuckDB equivalent"),
        ("SELECT FARM_FINGERPRINT(s) FROM t", "function FARM_FINGERPRINT has no DuckDB"),
        ("SELECT APPROX_TOP_COUNT(x, 3) FROM t", "APPROX_TOP_K cannot be transpiled"),
    ],
    ids=["limit-in-array-agg", "net-host", "farm-fingerprint", "approx-top-count"],
)
def test_untranslatable_constructs_are_named_with_the_model(sql: str, named: str) -> None:
    refused = "model 'top_per_group': SQL cannot run on DuckDB"
    with pytest.raises(ConfigError, match=refused) as caught:
        check_translatable(parse_model("top_per_group", sql))
    assert named in str(caught.value)
    assert caught.value.details == {"model": "top_per_group"}


@pytest.mark.parametrize(
    ("sql", "problem"),
    [
        ("SELEC genre FROM ratings", r"does not parse as BigQuery SQL \(line 1, column"),
        ("SELECT 1; SELECT 2", "exactly one SELECT"),
        ("DELETE FROM ratings WHERE true", "exactly one SELECT"),
        ("SELECT * FROM other_ds.ratings", "table 'other_ds.ratings' is qualified"),
    ],
    ids=["syntax", "two-statements", "not-a-select", "qualified-table"],
)
def test_bad_sql_is_an_error_naming_the_model(sql: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=f"model 'curated': .*{problem}"):
        parse_model("curated", sql)
