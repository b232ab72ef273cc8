"""DuckDB's part of building models: how a statement runs, what the dataset holds, how a
checked table is swapped in, and which functions a translated model calls that DuckDB lacks.

The same function names as bigquery/models.py; app/models/materialize.py calls them through
the registry.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from typing import Any

from app.destinations.warehouse import Relation, Warehouse
from core.settings import Settings

VALIDATION_WAREHOUSE = Warehouse(dialect="duckdb", dataset="ferry")
"""What a model is rendered into when it is validated (no settings needed)."""


def warehouse(settings: Settings) -> Warehouse:
    return Warehouse(dialect="duckdb", dataset=settings.dataset_name)


def run(client: Any, sql: str, location: str | None) -> list[tuple[Any, ...]]:
    """Run one statement through the dlt SQL client; its rows (none for DDL/DML)."""
    return [tuple(row) for row in client.execute_sql(sql) or []]


def relation_kind(client: Any, warehouse: Warehouse, name: str) -> Relation | None:
    """Whether `name` exists in the dataset, as a table or a view."""
    rows = client.execute_sql(
        "SELECT table_type FROM information_schema.tables "
        "WHERE table_schema = %s AND table_name = %s",
        warehouse.dataset,
        name,
    )
    if not rows:
        return None
    return "view" if rows[0][0] == "VIEW" else "table"


def columns(client: Any, warehouse: Warehouse, name: str) -> list[str]:
    rows = client.execute_sql(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
        warehouse.dataset,
        name,
    )
    return [str(row[0]) for row in rows or []]


def swap(
    client: Any, warehouse: Warehouse, temporary: str, name: str, location: str | None
) -> None:
    """Put the checked table `temporary` in place of `name`."""
    from sqlglot import exp

    existing = relation_kind(client, warehouse, name)
    # DDL is transactional in DuckDB: readers see the old table or the new, never none
    with client.begin_transaction():
        if existing:
            run(client, f"DROP {existing.upper()} {warehouse.name(name)}", location)
        run(
            client,
            f"ALTER TABLE {warehouse.name(temporary)} RENAME TO "
            f"{exp.to_identifier(name, quoted=True).sql(dialect='duckdb')}",
            location,
        )


def append_rows(client: Any, warehouse: Warehouse, name: str, rows: list[dict[str, Any]]) -> bool:
    """No streaming inserts on DuckDB: the caller INSERTs (a local statement)."""
    return False


def unknown_functions(sql: str) -> list[str]:
    """Functions the DuckDB SQL calls that DuckDB does not have, by DuckDB's own parser."""
    parsed = _duckdb().cursor().execute("SELECT json_serialize_sql(?)", [sql]).fetchone()
    tree = json.loads(parsed[0])
    if tree.get("error"):
        return [f"the DuckDB translation does not parse: {tree.get('error_message')}"]
    known = _duckdb_functions()
    problems: list[str] = []
    for schema, function in _function_calls(tree):
        if schema not in ("", "main") or function.lower() not in known:
            spelled = f"{schema}.{function}" if schema else function
            problem = f"function {spelled.upper()} has no DuckDB equivalent"
            if problem not in problems:
                problems.append(problem)
    return problems


def _function_calls(node: Any) -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        if isinstance(node.get("function_name"), str):
            yield str(node.get("schema") or ""), node["function_name"]
        for value in node.values():
            yield from _function_calls(value)
    elif isinstance(node, list):
        for value in node:
            yield from _function_calls(value)


@cache
def _duckdb() -> Any:
    import duckdb

    return duckdb.connect(":memory:")


@cache
def _duckdb_functions() -> frozenset[str]:
    query = "SELECT DISTINCT function_name FROM duckdb_functions()"
    rows = _duckdb().cursor().execute(query).fetchall()
    return frozenset(str(row[0]).lower() for row in rows)
