"""Ordered merges: the SQL conditions that make a merge keep, per key, the latest change.

dlt's `delete-insert` merge takes two conditions (dlt >= 1.31): a `source_filter` on the
staged rows (the merge source) and a `destination_scope` selecting the destination rows the
merge deletes before it inserts. Both are part of the data table's merge, so the check "is
what the table holds for this key newer?" reads what that table and its tombstones held when
the merge ran. That is the in-order answer only because loads of one table never overlap:
each holds the table's writer from its last check to its last commit (writers.py), so it
sees every earlier load whole (data, tombstones, ledger), never one half-committed. Within
the staged rows dlt's `dedup_sort` keeps the latest change per key.

A staged row (key k, sequence s, object u, generation g) enters the merge unless
  * the table holds k at a sequence >= s from another object, or from an older copy of u
    that this load does not replace (a row of u at generation <= g is being replaced), or
  * a tombstone holds k at a sequence > s (a delete newer than this change).
The merge deletes the table rows whose key is in the merge source, and the rows of every
object this load reloads (same object, generation <= the staged one): an object's newer
generation replaces what its older one still owns.

Every column inside a subquery is renamed (`_ferry_*`), so the unqualified key and sequence
columns of the condition resolve to the staged row (or, in the scope, the destination row)
without knowing the alias dlt gives those tables. Pure (no I/O), but for `merge_order`, which
asks the destination whether the tombstones table exists yet.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from app.destinations.pipeline import known_to_exist, remember_exists, sql_client_of
from core.lineage import SOURCE_GENERATION_COLUMN, SOURCE_URI_COLUMN, TOMBSTONES_SUFFIX
from core.settings import Settings
from core.spec import DestinationSpec

Escape = Callable[[str], str]


@dataclass(frozen=True)
class OrderedMerge:
    """What a table's merge hints need: its keys, sequence and the two SQL conditions."""

    primary_key: tuple[str, ...]
    sequence: str
    source_filter: str
    destination_scope: str | None


def _key_match(alias: str, keys: Sequence[str]) -> str:
    return " AND ".join(f"{alias}._ferry_k{i} = {key}" for i, key in enumerate(keys))


def _renamed_keys(keys: Sequence[str]) -> str:
    return ", ".join(f"{key} AS _ferry_k{i}" for i, key in enumerate(keys))


def newer_held(
    table: str, keys: Sequence[str], sequence: str, escape: Escape, *, by_object: bool
) -> str:
    """True when `table` holds a staged row's key at the same or a later sequence.

    `by_object`: rows of the staged row's own object at a generation <= its own do not count
    (the load replaces them)."""
    uri, generation = escape(SOURCE_URI_COLUMN), escape(SOURCE_GENERATION_COLUMN)
    columns = [_renamed_keys(keys), f"{sequence} AS _ferry_seq"]
    replaced = ""
    if by_object:
        columns += [f"{uri} AS _ferry_uri", f"{generation} AS _ferry_gen"]
        replaced = (
            f" AND NOT (_ferry_held._ferry_uri = {uri} AND _ferry_held._ferry_gen <= {generation})"
        )
    # identifiers only, quoted by the destination's own client: no values are spliced in
    return (
        f"EXISTS (SELECT 1 FROM (SELECT {', '.join(columns)} FROM {table}) AS _ferry_held"  # noqa: S608
        f" WHERE {_key_match('_ferry_held', keys)} AND _ferry_held._ferry_seq >= {sequence}"
        f"{replaced})"
    )


def newer_tombstone(tombstones: str, keys: Sequence[str], sequence: str) -> str:
    """True when a delete later than the staged row's change is recorded for its key."""
    return (
        f"EXISTS (SELECT 1 FROM (SELECT {_renamed_keys(keys)}, {sequence} AS _ferry_seq"  # noqa: S608
        f" FROM {tombstones}) AS _ferry_tomb WHERE {_key_match('_ferry_tomb', keys)}"
        f" AND _ferry_tomb._ferry_seq > {sequence})"
    )


def ordered_merge(
    *,
    table: str,
    tombstones: str | None,
    primary_key: Sequence[str],
    sequence: str,
    escape: Escape,
) -> OrderedMerge:
    """The data table's conditions. `table` and `tombstones` are qualified names; `tombstones`
    is None when the table keeps none (yet)."""
    keys = [escape(key) for key in primary_key]
    seq = escape(sequence)
    uri, generation = escape(SOURCE_URI_COLUMN), escape(SOURCE_GENERATION_COLUMN)
    source_filter = f"NOT {newer_held(table, keys, seq, escape, by_object=True)}"
    if tombstones:
        source_filter += f" AND NOT {newer_tombstone(tombstones, keys, seq)}"
    # `{staging_table}` is dlt's placeholder for the staged table
    in_merge_source = (
        f"EXISTS (SELECT 1 FROM (SELECT {_renamed_keys(keys)} FROM {{staging_table}}"  # noqa: S608
        f" WHERE {source_filter}) AS _ferry_new WHERE {_key_match('_ferry_new', keys)})"
    )
    reloaded_object = (
        f"EXISTS (SELECT 1 FROM (SELECT {uri} AS _ferry_uri, MAX({generation}) AS _ferry_gen"  # noqa: S608
        f" FROM {{staging_table}} GROUP BY {uri}) AS _ferry_reloaded"
        f" WHERE _ferry_reloaded._ferry_uri = {uri}"
        f" AND _ferry_reloaded._ferry_gen >= {generation})"
    )
    scope = f"{in_merge_source} OR {reloaded_object}"
    return OrderedMerge(tuple(primary_key), sequence, source_filter, scope)


def tombstone_merge(
    *, tombstones: str, primary_key: Sequence[str], sequence: str, escape: Escape
) -> OrderedMerge:
    """Tombstones keep the latest delete per key (the merge never lowers one)."""
    keys = [escape(key) for key in primary_key]
    source_filter = "NOT " + newer_held(tombstones, keys, escape(sequence), escape, by_object=False)
    return OrderedMerge(tuple(primary_key), sequence, source_filter, None)


def merge_order(
    pipeline: Any, destination: DestinationSpec, settings: Settings
) -> tuple[OrderedMerge, OrderedMerge | None, bool]:
    """The ordered-merge conditions of `destination`'s table (and of its tombstones, when
    deletes are hard), with the destination's own quoting and naming, and whether the data
    table's conditions consult the tombstones (only once that table exists: the caller
    re-checks under the table's writer when they do not). The caller holds the destination
    lock."""
    from dlt.common.normalizers.naming.snake_case import NamingConvention

    naming = NamingConvention()
    keys = [naming.normalize_identifier(key) for key in destination.primary_key]
    sequence = naming.normalize_identifier(destination.sequence or SOURCE_GENERATION_COLUMN)
    hard = destination.cdc is not None and destination.cdc.deletes == "hard"
    consulted = hard and tombstones_exist(pipeline, destination.table, settings)
    with sql_client_of(pipeline) as client:
        table = client.make_qualified_table_name(destination.table)
        tombstones_table = client.make_qualified_table_name(destination.table + TOMBSTONES_SUFFIX)
        escape = client.escape_column_name
        order = ordered_merge(
            table=table,
            tombstones=tombstones_table if consulted else None,
            primary_key=keys,
            sequence=sequence,
            escape=escape,
        )
        tombstones = (
            tombstone_merge(
                tombstones=tombstones_table, primary_key=keys, sequence=sequence, escape=escape
            )
            if hard
            else None
        )
    return order, tombstones, consulted


def tombstones_exist(pipeline: Any, table: str, settings: Settings) -> bool:
    """Whether `<table>__tombstones` exists yet (its first delete creates it). A yes is
    remembered (pipeline.known_to_exist: a table is rarely dropped, and a run that fails
    forgets it); a no is asked again each time."""
    from dlt.destinations.exceptions import DatabaseUndefinedRelation

    with sql_client_of(pipeline) as client:
        qualified = client.make_qualified_table_name(table + TOMBSTONES_SUFFIX)
        if known_to_exist(settings, qualified):
            return True
        try:
            client.execute_sql(f"SELECT 1 FROM {qualified} WHERE 1 = 0")  # noqa: S608
        except DatabaseUndefinedRelation:
            return False
    remember_exists(settings, qualified)
    return True
