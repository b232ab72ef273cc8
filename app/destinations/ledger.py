"""Which generation of each object the destination already holds, read from the rows themselves.

The lineage columns of the destination table are the ledger. A row counts as loaded only
when its `_dlt_load_id` is in dlt's `_dlt_loads` with status 0, which dlt writes after
*every* job of the load finished. So a load killed halfway (data committed, rejects or
state not yet) is not "loaded": its redelivery merges over the partial rows instead of
skipping them, and nothing is lost or doubled.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from core.lineage import LOAD_ID_COLUMN, SOURCE_GENERATION_COLUMN, SOURCE_URI_COLUMN

QUERY_CHUNK = 500


@dataclass(frozen=True)
class Ledger:
    committed: dict[str, int]
    """uri -> highest generation whose load completed."""
    present: frozenset[str]
    """uris with any rows at all (complete or from a killed load)."""


def read_ledger(pipeline: Any, table: str, uris: Iterable[str]) -> Ledger:
    """Objects never loaded (or no table yet) are absent from both."""
    from dlt.destinations.exceptions import DatabaseUndefinedRelation

    wanted = sorted(set(uris))
    committed: dict[str, int] = {}
    present: set[str] = set()
    if not wanted:
        return Ledger(committed, frozenset())
    try:
        with pipeline.sql_client() as client:
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
