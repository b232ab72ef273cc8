"""Which generation of each object the destination already holds, read from the rows themselves.

The lineage columns of the destination table are the ledger: they commit in the same load as
the data, so the ledger can never claim a file whose rows are not there (no loss), and a
crash between load and acknowledgement just makes the redelivery a no-op (no duplicates).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from app.batches import SOURCE_GENERATION_COLUMN, SOURCE_URI_COLUMN

QUERY_CHUNK = 500


def loaded_generations(pipeline: Any, table: str, uris: Iterable[str]) -> dict[str, int]:
    """uri -> highest generation loaded; objects never loaded (or no table yet) are absent."""
    from dlt.destinations.exceptions import DatabaseUndefinedRelation

    wanted = sorted(set(uris))
    if not wanted:
        return {}
    found: dict[str, int] = {}
    try:
        with pipeline.sql_client() as client:
            qualified = client.make_qualified_table_name(table)
            uri_column = client.escape_column_name(SOURCE_URI_COLUMN)
            generation_column = client.escape_column_name(SOURCE_GENERATION_COLUMN)
            for start in range(0, len(wanted), QUERY_CHUNK):
                chunk = wanted[start : start + QUERY_CHUNK]
                placeholders = ", ".join(["%s"] * len(chunk))
                # identifiers come from dlt's own quoting; values are bound parameters
                query = (
                    f"SELECT {uri_column}, MAX({generation_column}) FROM {qualified} "  # noqa: S608
                    f"WHERE {uri_column} IN ({placeholders}) GROUP BY {uri_column}"
                )
                for uri, generation in client.execute_sql(query, *chunk) or []:
                    found[str(uri)] = int(generation)
    except DatabaseUndefinedRelation:
        return {}
    return found
