"""Small tables ferry keeps beside the data (idempotency keys, the run log): one row merged
on its key, and rows read back with bound parameters.

Once this process has written a table through dlt, later rows go in as one bound MERGE
statement through a SQL client kept for the process: a dlt load per row (extract, normalize,
a load job, a staging merge) cost ~0.45 s of every push and, on BigQuery, a load job and
several queries. dlt's load stays the way a table is created or gains a column, and takes
over whenever the statement fails.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from app.destinations.pipeline import destination_lock, run_pipeline_for
from app.destinations.registry import engine_for
from core.settings import Settings

if TYPE_CHECKING:
    from dlt.common.schema.typing import TColumnSchema

log = logging.getLogger("ferry.side_tables")

DLT_COLUMNS = ("_dlt_load_id", "_dlt_id")
"""dlt's own non-null columns on every table it creates."""

_tables_written: set[tuple[Any, ...]] = set()
"""Tables this process has loaded a row into with dlt: they exist with today's columns, so
a statement can write the next rows (BigQuery's emulator accepts a MERGE into a missing
table without an error, so a failed statement alone cannot tell)."""
_clients: OrderedDict[tuple[Any, ...], tuple[Any, threading.Lock]] = OrderedDict()
KEPT_CLIENTS = 4
"""A service has one destination; a few more (tests, tools) must not pile up."""
_clients_guard = threading.Lock()


def merge_row(
    settings: Settings,
    pipeline: str,
    table: str,
    row: dict[str, Any],
    key: str,
    run_id: str,
    columns: dict[str, TColumnSchema] | None = None,
) -> None:
    """Merge one row on `key`: writing the same row twice keeps one."""
    known = _table_key(settings, pipeline, table)
    if known in _tables_written and _merge_by_statement(
        settings, pipeline, table, row, key, columns or {}
    ):
        return
    _merge_by_load(settings, pipeline, table, row, key, run_id, columns)
    _tables_written.add(known)


def append_rows(
    settings: Settings,
    pipeline: str,
    table: str,
    rows: list[dict[str, Any]],
    key: str,
    run_id: str,
    columns: dict[str, TColumnSchema] | None = None,
) -> None:
    """Write rows that readers de-duplicate on `key` (the newest `_dlt_load_id` wins): on
    BigQuery one streaming insert for all of them (one REST call, no DML on a table every
    pipeline shares); elsewhere, or while the table does not exist, `merge_row` per row."""
    destination = engine_for(settings).destination
    if destination.STREAMING_INSERTS and rows:
        load_id = f"{time.time():.6f}"
        values = [
            {**row, "_dlt_load_id": load_id, "_dlt_id": uuid.uuid4().hex[:14]} for row in rows
        ]
        try:
            with _sql_client(settings, pipeline) as client:
                ids = [str(row[key]) for row in rows]
                appended = destination.append_rows(client, table, values, ids)
        except Exception as error:
            log.debug("appending to %s failed (%s); merging instead", table, error)
            appended = False
        if appended:
            return
    for row in rows:
        merge_row(settings, pipeline, table, row, key, run_id, columns)


def appends_by_call(settings: Settings) -> bool:
    """Whether each `append_rows` is a call to a remote destination (BigQuery), so batching
    rows saves calls; on DuckDB it is a local statement."""
    return engine_for(settings).destination.STREAMING_INSERTS


def select(
    settings: Settings, pipeline: str, table: str, query: str, args: list[Any]
) -> list[tuple[Any, ...]]:
    """Run `query` with `{table}` replaced by the qualified table; [] when it does not exist.

    The query text comes from ferry's own code; every value is a bound parameter.
    """
    from dlt.destinations.exceptions import DatabaseUndefinedRelation

    try:
        with _sql_client(settings, pipeline) as client:
            qualified = client.make_qualified_table_name(table)
            rows = client.execute_sql(query.format(table=qualified), *args)
    except DatabaseUndefinedRelation:
        return []
    return list(rows or [])


def merge_statement(
    qualified: str,
    row: dict[str, Any],
    key: str,
    types: dict[str, str],
    escape: Callable[[str], str],
) -> tuple[str, list[Any]]:
    """MERGE `row` (plus dlt's own columns) into `qualified` on `key`, every value bound and
    cast to its column's SQL type (`types`); one statement on DuckDB and on BigQuery alike."""
    values = {
        **row,
        "_dlt_load_id": f"{time.time():.6f}",
        "_dlt_id": uuid.uuid4().hex[:14],
    }
    names = {name: escape(name) for name in values}
    # a NULL is written out: BigQuery's client cannot type a bound None
    selected = ", ".join(
        f"CAST({'NULL' if value is None else '%s'} AS {types[name]}) AS {names[name]}"
        for name, value in values.items()
    )
    updates = ", ".join(
        f"{quoted} = source.{quoted}"
        for name, quoted in names.items()
        if name not in (key, *DLT_COLUMNS)
    )
    statement = (
        f"MERGE INTO {qualified} AS target USING (SELECT {selected}) AS source "  # noqa: S608
        f"ON target.{names[key]} = source.{names[key]} "
        f"WHEN MATCHED THEN UPDATE SET {updates} "
        f"WHEN NOT MATCHED THEN INSERT ({', '.join(names.values())}) "
        f"VALUES ({', '.join('source.' + quoted for quoted in names.values())})"
    )
    return statement, [value for value in values.values() if value is not None]


def _merge_by_statement(
    settings: Settings,
    pipeline: str,
    table: str,
    row: dict[str, Any],
    key: str,
    columns: dict[str, TColumnSchema],
) -> bool:
    """True when the row is in; False when the statement failed (a column added since, a
    table dropped by someone else, a transient error): dlt's load then does it."""
    sql_types = engine_for(settings).destination.SQL_TYPES
    types = {
        name: sql_types[str(columns.get(name, {}).get("data_type", "text"))]
        for name in (*row, *DLT_COLUMNS)
    }
    try:
        with _sql_client(settings, pipeline) as client:
            qualified = client.make_qualified_table_name(table)
            escape = client.capabilities.escape_identifier
            statement, args = merge_statement(qualified, row, key, types, escape)
            client.execute_sql(statement, *args)
    except Exception as error:
        log.debug("merging into %s by statement failed (%s); loading with dlt", table, error)
        return False
    return True


def _merge_by_load(
    settings: Settings,
    pipeline: str,
    table: str,
    row: dict[str, Any],
    key: str,
    run_id: str,
    columns: dict[str, TColumnSchema] | None,
) -> None:
    import dlt

    with run_pipeline_for(pipeline, settings, run_id) as dlt_pipeline:
        # no dlt state row: it would cost a load job on the shared `_dlt_pipeline_state`
        # table per write, and these pipelines have no state worth keeping
        dlt_pipeline.config.restore_from_destination = False
        resource = dlt.resource([row], name=table, write_disposition="merge", primary_key=key)
        if columns:
            resource.apply_hints(columns=columns)
        dlt_pipeline.extract(resource)
        dlt_pipeline.normalize()
        with destination_lock(settings):
            dlt_pipeline.load().raise_on_failed_jobs()


def _table_key(settings: Settings, *names: str) -> tuple[Any, ...]:
    return (
        *names,
        settings.destination_kind,
        settings.dataset_name,
        str(settings.resolved_duckdb_path),
        settings.bigquery_project,
        settings.bigquery_emulator_host,
    )


@contextmanager
def _sql_client(settings: Settings, pipeline: str) -> Iterator[Any]:
    """An open dlt SQL client on the settings' dataset, one per process and pipeline: making
    one resolves dlt's whole configuration (~60 ms), opening it again costs little."""
    key = _table_key(settings, pipeline)
    with _clients_guard:
        if key not in _clients:
            with run_pipeline_for(pipeline, settings, f"{pipeline.strip('_')}-sql") as made:
                _clients[key] = (made.sql_client(), threading.Lock())
            while len(_clients) > KEPT_CLIENTS:
                _clients.popitem(last=False)
        _clients.move_to_end(key)
        client, in_use = _clients[key]
    # one client object holds one connection at a time: threads take turns
    with in_use, destination_lock(settings), client:
        yield client
