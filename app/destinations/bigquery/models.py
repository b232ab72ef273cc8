"""BigQuery's part of building models: how a statement runs, what the dataset holds, how a
checked table is swapped in, and which functions a model calls that BigQuery lacks (none:
models are written in its dialect).

The same function names as duckdb/models.py; app/models/materialize.py calls them through
the registry. Statements run as query jobs of the google-cloud-bigquery client (jobs.insert,
then wait): the emulator answers the DB-API's jobs.query path with success even when a
statement fails, which would hide a failing model.
"""

from __future__ import annotations

from typing import Any

from app.destinations.bigquery.streaming import stream_rows
from app.destinations.warehouse import Relation, Warehouse
from core.settings import Settings

VALIDATION_WAREHOUSE = Warehouse(dialect="bigquery", dataset="ferry", catalog="project")
"""What a model is rendered into when it is validated (no settings needed)."""


def warehouse(settings: Settings) -> Warehouse:
    return Warehouse(
        dialect="bigquery", dataset=settings.dataset_name, catalog=settings.bigquery_project
    )


def run(client: Any, sql: str, location: str | None) -> list[tuple[Any, ...]]:
    """Run one statement as a query job in the dataset's `location`; its rows. Failures raise."""
    job = client.native_connection.query(sql, location=location)
    return [tuple(row.values()) for row in job.result()]


def relation_kind(client: Any, warehouse: Warehouse, name: str) -> Relation | None:
    """Whether `name` exists in the dataset, as a table or a view."""
    from google.api_core.exceptions import NotFound

    try:
        table_type = client.native_connection.get_table(_ref(warehouse, name)).table_type
    except NotFound:
        return None
    return "view" if table_type == "VIEW" else "table"


def columns(client: Any, warehouse: Warehouse, name: str) -> list[str]:
    return [
        field.name for field in client.native_connection.get_table(_ref(warehouse, name)).schema
    ]


def swap(
    client: Any, warehouse: Warehouse, temporary: str, name: str, location: str | None
) -> None:
    """Put the checked table `temporary` in place of `name`: one atomic `CREATE OR REPLACE
    TABLE .. AS SELECT * FROM <temporary>` (a view of that name goes first)."""
    from sqlglot import exp

    if relation_kind(client, warehouse, name) == "view":
        run(client, f"DROP VIEW {warehouse.name(name)}", location)
    select = exp.select("*").from_(warehouse.table(temporary))
    run(client, warehouse.create(name, select, "table"), location)


def append_rows(client: Any, warehouse: Warehouse, name: str, rows: list[dict[str, Any]]) -> bool:
    """Stream `rows` into `name` (streaming.py: no job, no DML in the table's queue); False
    when the table does not exist yet (the caller creates it and INSERTs)."""
    import uuid

    return stream_rows(client, _ref(warehouse, name), rows, [uuid.uuid4().hex for _ in rows])


def unknown_functions(sql: str) -> list[str]:
    """Models are BigQuery SQL: what sqlglot re-prints from its parse is all BigQuery has."""
    return []


def _ref(warehouse: Warehouse, name: str) -> str:
    return f"{warehouse.catalog}.{warehouse.dataset}.{name}"
