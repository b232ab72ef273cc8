"""Which generation of each object the destination already holds: the object ledger.

Every file load writes one row per object generation into `_ferry_objects` (pipeline, table,
uri, generation, rows, status: loaded | emptied | deleted) *in the same dlt load* as the data,
appended (on BigQuery streamed by `insertAll`: no load job, no DML on the shared table).
A row counts only when its `_dlt_load_id` is in dlt's `_dlt_loads` with status 0, which dlt
writes after *every* job of the load finished. So a load killed halfway (data committed,
ledger or rejects not yet, or the reverse) is not "loaded": its redelivery merges over the
partial rows instead of skipping them, and nothing is lost or doubled. Unlike the lineage
columns of the data rows (the ledger before it), the entry survives whatever later loads do
to the rows: an object whose rows were all overwritten by newer changes still reads loaded.

Upgrade path: an object the ledger does not know but whose lineage rows are in the table (a
deployment from before the ledger) is read from those rows, as before.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from app.destinations.pipeline import sql_client_of
from app.destinations.registry import engine_for
from core.arrow_types import scalar
from core.lineage import (
    LOAD_ID_COLUMN,
    OBJECTS_TABLE,
    REJECTS_SUFFIX,
    SOURCE_GENERATION_COLUMN,
    SOURCE_URI_COLUMN,
)
from core.settings import Settings

QUERY_CHUNK = 500
LOADED, EMPTIED, DELETED = "loaded", "emptied", "deleted"
_RANK = {LOADED: 0, EMPTIED: 0, DELETED: 1}
"""At one generation a delete comes after the load it undoes."""


@dataclass(frozen=True)
class Ledger:
    committed: dict[str, int]
    """uri -> highest generation whose load completed."""
    present: frozenset[str]
    """uris with any rows at all (complete or from a killed load)."""
    status: dict[str, str] = field(default_factory=dict)
    """uri -> status of that highest generation (loaded | emptied | deleted)."""
    recorded_table: bool = True
    """False when `_ferry_objects` does not exist yet: the next load records every object,
    so that later reads find the table and need one query, not three."""


OBJECT_COLUMNS: dict[str, Any] = {
    "pipeline": {"data_type": "text", "nullable": False},
    "table_name": {"data_type": "text", "nullable": False},
    "uri": {"data_type": "text", "nullable": False},
    "generation": {"data_type": "bigint", "nullable": False},
    "run_id": {"data_type": "text", "nullable": False},
    "row_count": {"data_type": "bigint", "nullable": False},
    "status": {"data_type": "text", "nullable": False},
}
OBJECT_KEY = ["pipeline", "table_name", "uri", "generation", "run_id"]


def objects_hints(settings: Settings) -> dict[str, Any]:
    """Appended, never merged: rows are keyed by run, so a duplicate (a redelivery that loaded
    again, a retried insert) is harmless and readers take the highest generation. A merge was
    a DML script per push on a table every pipeline of the dataset shares (BigQuery runs 2
    and queues 20 per table); the engine says how the rows go in (BigQuery: streamed)."""
    return {
        "table_name": OBJECTS_TABLE,
        "write_disposition": "append",
        "primary_key": OBJECT_KEY,
        "merge_key": [],  # empty, not None: a table variant would keep the data table's key
        "columns": {name: {"name": name, **hint} for name, hint in OBJECT_COLUMNS.items()},
        "additional_table_hints": engine_for(settings).destination.appended_table_hints() or None,
    }


def object_row(
    pipeline: str, table: str, uri: str, generation: int, run_id: str, rows: int, status: str
) -> pa.Table:
    values: dict[str, str | int] = {
        "pipeline": pipeline,
        "table_name": table,
        "uri": uri,
        "generation": generation,
        "run_id": run_id,
        "row_count": rows,
        "status": status,
    }
    # built from Arrow scalars: Python-value conversion would import pandas (arrow_types)
    columns = [pa.repeat(scalar(value), 1) for value in values.values()]
    schema = pa.schema(
        [pa.field(name, c.type, nullable=False) for name, c in zip(values, columns, strict=True)]
    )
    return pa.Table.from_arrays(columns, schema=schema)


def read_ledger(pipeline: Any, name: str, table: str, uris: Iterable[str]) -> Ledger:
    """The object ledger of pipeline `name`'s `table`, completed by the lineage rows (append
    tables record only emptied and deleted objects; older deployments recorded none)."""
    wanted = sorted(set(uris))
    both = _read_both(pipeline, name, table, wanted)
    if both is not None:
        recorded, lineage = both
    else:  # a table missing: each read on its own, a missing one reading empty
        maybe_recorded = _read_objects(pipeline, name, table, wanted)
        recorded = maybe_recorded or {}
        lineage = read_lineage(pipeline, table, [uri for uri in wanted if uri not in recorded])
        if maybe_recorded is None:
            lineage = Ledger(lineage.committed, lineage.present, recorded_table=False)
    committed = dict(lineage.committed)
    status = dict.fromkeys(lineage.committed, LOADED)
    for uri, (generation, state) in recorded.items():
        # an append table records only emptied and deleted generations: a newer one that
        # loaded rows is told by its rows
        seen = committed.get(uri)
        if seen is None or generation >= seen:
            committed[uri], status[uri] = generation, state
    return Ledger(committed, lineage.present | frozenset(recorded), status, lineage.recorded_table)


def _read_both(
    pipeline: Any, name: str, table: str, uris: list[str]
) -> tuple[dict[str, tuple[int, str]], Ledger] | None:
    """The ledger rows and the lineage rows of `uris` in one query (on BigQuery each query is
    a job, ~0.7 s); None when either table does not exist yet."""
    from dlt.destinations.exceptions import DatabaseUndefinedRelation

    found: dict[str, tuple[int, str]] = {}
    committed: dict[str, int] = {}
    present: set[str] = set()
    if len(uris) > QUERY_CHUNK:
        return None
    if not uris:
        return found, Ledger({}, frozenset())
    try:
        with sql_client_of(pipeline) as client:
            objects = client.make_qualified_table_name(OBJECTS_TABLE)
            data = client.make_qualified_table_name(table)
            loads = client.make_qualified_table_name("_dlt_loads")
            column = client.escape_column_name
            uri, generation = column(SOURCE_URI_COLUMN), column(SOURCE_GENERATION_COLUMN)
            placeholders = ", ".join(["%s"] * len(uris))
            # identifiers come from dlt's own quoting; values are bound parameters
            query = (
                f"SELECT 'ledger' AS source, o.{column('uri')} AS uri, "  # noqa: S608
                f"o.{column('generation')} AS generation, o.{column('status')} AS status "
                f"FROM {objects} AS o "
                f"JOIN {loads} AS l ON l.load_id = o.{column(LOAD_ID_COLUMN)} "
                f"AND l.status = 0 WHERE o.{column('pipeline')} = %s "
                f"AND o.{column('table_name')} = %s AND o.{column('uri')} IN ({placeholders}) "
                f"UNION ALL SELECT 'rows' AS source, t.{uri} AS uri, "
                f"MAX(CASE WHEN l.load_id IS NOT NULL THEN t.{generation} END) AS generation, "
                f"'' AS status FROM {data} AS t "
                f"LEFT JOIN {loads} AS l ON l.load_id = t.{column(LOAD_ID_COLUMN)} "
                f"AND l.status = 0 WHERE t.{uri} IN ({placeholders}) GROUP BY t.{uri}"
            )
            rows = client.execute_sql(query, name, table, *uris, *uris) or []
    except DatabaseUndefinedRelation:
        return None
    for source, found_uri, found_generation, state in rows:
        if source == "rows":
            present.add(str(found_uri))
            if found_generation is not None:
                committed[str(found_uri)] = int(found_generation)
            continue
        entry = (int(found_generation), str(state))
        known = found.get(str(found_uri))
        if known is None or _order(entry) > _order(known):
            found[str(found_uri)] = entry
    return found, Ledger(committed, frozenset(present))


def _read_objects(
    pipeline: Any, name: str, table: str, uris: list[str]
) -> dict[str, tuple[int, str]] | None:
    """None when `_ferry_objects` does not exist."""
    from dlt.destinations.exceptions import DatabaseUndefinedRelation

    found: dict[str, tuple[int, str]] = {}
    if not uris:
        return found
    try:
        with sql_client_of(pipeline) as client:
            objects = client.make_qualified_table_name(OBJECTS_TABLE)
            loads = client.make_qualified_table_name("_dlt_loads")
            column = client.escape_column_name
            for start in range(0, len(uris), QUERY_CHUNK):
                chunk = uris[start : start + QUERY_CHUNK]
                placeholders = ", ".join(["%s"] * len(chunk))
                # identifiers come from dlt's own quoting; values are bound parameters
                query = (
                    f"SELECT o.{column('uri')}, o.{column('generation')}, "  # noqa: S608
                    f"o.{column('status')} FROM {objects} AS o "
                    f"JOIN {loads} AS l ON l.load_id = o.{column(LOAD_ID_COLUMN)} "
                    f"AND l.status = 0 WHERE o.{column('pipeline')} = %s "
                    f"AND o.{column('table_name')} = %s AND o.{column('uri')} IN ({placeholders})"
                )
                rows = client.execute_sql(query, name, table, *chunk) or []
                for uri, generation, state in rows:
                    entry = (int(generation), str(state))
                    known = found.get(str(uri))
                    if known is None or _order(entry) > _order(known):
                        found[str(uri)] = entry
    except DatabaseUndefinedRelation:
        return None
    return found


def _order(entry: tuple[int, str]) -> tuple[int, int]:
    return entry[0], _RANK.get(entry[1], 0)


def retire(pipeline: Any, table: str, uri: str, generation: int, *, inclusive: bool) -> None:
    """Delete the rows (and rejects) an object's generations up to `generation` loaded: an
    emptied newer generation (exclusive) or a deleted one (inclusive). Idempotent."""
    from dlt.destinations.exceptions import DatabaseUndefinedRelation

    operator = "<=" if inclusive else "<"
    with sql_client_of(pipeline) as client:
        for name in (table, table + REJECTS_SUFFIX):
            qualified = client.make_qualified_table_name(name)
            uri_column = client.escape_column_name(SOURCE_URI_COLUMN)
            generation_column = client.escape_column_name(SOURCE_GENERATION_COLUMN)
            try:
                client.execute_sql(
                    f"DELETE FROM {qualified} WHERE {uri_column} = %s "  # noqa: S608
                    f"AND {generation_column} {operator} %s",
                    uri,
                    generation,
                )
            except DatabaseUndefinedRelation:
                continue


def read_lineage(pipeline: Any, table: str, uris: Iterable[str]) -> Ledger:
    """Objects never loaded (or no table yet) are absent from both."""
    from dlt.destinations.exceptions import DatabaseUndefinedRelation

    wanted = sorted(set(uris))
    committed: dict[str, int] = {}
    present: set[str] = set()
    if not wanted:
        return Ledger(committed, frozenset())
    try:
        with sql_client_of(pipeline) as client:
            data = client.make_qualified_table_name(table)
            loads = client.make_qualified_table_name("_dlt_loads")
            uri = client.escape_column_name(SOURCE_URI_COLUMN)
            generation = client.escape_column_name(SOURCE_GENERATION_COLUMN)
            load_id = client.escape_column_name(LOAD_ID_COLUMN)
            for start in range(0, len(wanted), QUERY_CHUNK):
                chunk = wanted[start : start + QUERY_CHUNK]
                placeholders = ", ".join(["%s"] * len(chunk))
                # identifiers come from dlt's own quoting; values are bound parameters
                query = (
                    f"SELECT t.{uri}, MAX(CASE WHEN l.load_id IS NOT NULL "  # noqa: S608
                    f"THEN t.{generation} END) FROM {data} AS t "
                    f"LEFT JOIN {loads} AS l ON l.load_id = t.{load_id} AND l.status = 0 "
                    f"WHERE t.{uri} IN ({placeholders}) GROUP BY t.{uri}"
                )
                for found_uri, found_generation in client.execute_sql(query, *chunk) or []:
                    present.add(str(found_uri))
                    if found_generation is not None:
                        committed[str(found_uri)] = int(found_generation)
    except DatabaseUndefinedRelation:
        return Ledger({}, frozenset())
    return Ledger(committed, frozenset(present))
