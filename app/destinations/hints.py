"""dlt table hints from a pipeline's destination spec (pure), and the destination's own
adapter (BigQuery partition/cluster) on top."""

from __future__ import annotations

from typing import Any

from app.destinations.ordering import OrderedMerge
from app.destinations.registry import engine_for
from core.lineage import DELETED_AT_COLUMN, REJECTS_SUFFIX, SOURCE_URI_COLUMN, TOMBSTONES_SUFFIX
from core.settings import Settings
from core.spec import DestinationSpec


def key_columns(destination: DestinationSpec) -> tuple[str, ...]:
    return (*destination.primary_key, *destination.merge_key)


def write_hints(destination: DestinationSpec, *, keyed_by_object: bool) -> dict[str, Any]:
    """Write disposition and keys; file loads keyed by object so a reload replaces its rows."""
    disposition = destination.write_disposition
    primary_key = list(destination.primary_key)
    merge_key = list(destination.merge_key)
    if keyed_by_object and disposition != "replace" and not merge_key:
        # rows of a re-delivered or newer generation replace that object's earlier rows
        disposition, merge_key = "merge", [SOURCE_URI_COLUMN]
    hints: dict[str, Any] = {"write_disposition": disposition}
    if disposition == "merge":
        hints["write_disposition"] = {"disposition": "merge", "strategy": "delete-insert"}
        hints["primary_key"] = primary_key or None
        hints["merge_key"] = merge_key or None
    return {**hints, **_contract(destination)}


def _contract(destination: DestinationSpec) -> dict[str, Any]:
    if destination.schema_contract == "freeze":
        return {"schema_contract": {"tables": "evolve", "columns": "freeze", "data_type": "freeze"}}
    return {}


def ordered_hints(order: OrderedMerge) -> dict[str, Any]:
    """A delete-insert merge on the primary key, filtered and scoped (column hints apart)."""
    disposition: dict[str, Any] = {
        "disposition": "merge",
        "strategy": "delete-insert",
        "source_filter": order.source_filter,
    }
    if order.destination_scope:
        disposition["destination_scope"] = order.destination_scope
    return {
        "write_disposition": disposition,
        "primary_key": list(order.primary_key),
        "merge_key": [],
    }


def ordered_columns(order: OrderedMerge, *, hard_delete: bool = False) -> dict[str, Any]:
    """Latest sequence first within a load; with `hard_delete` a delete mark removes the key.

    Given to the table's own items only: dlt copies a resource's column hints into every table
    variant it yields (rejects, ledger), which lack these columns."""
    columns: dict[str, Any] = {order.sequence: {"name": order.sequence, "dedup_sort": "desc"}}
    if hard_delete:
        columns[DELETED_AT_COLUMN] = {
            "name": DELETED_AT_COLUMN,
            "data_type": "timestamp",
            "nullable": True,
            "hard_delete": True,
        }
    return columns


def tombstone_hints(destination: DestinationSpec, order: OrderedMerge) -> dict[str, Any]:
    return {
        "table_name": destination.table + TOMBSTONES_SUFFIX,
        **ordered_hints(order),
        "columns": ordered_columns(order),
    }


def rejects_hints(destination: DestinationSpec, *, keyed_by_object: bool) -> dict[str, Any]:
    """The rejects table follows its data table: reloading an object replaces its rejects."""
    hints = write_hints(destination, keyed_by_object=keyed_by_object)
    hints.pop("schema_contract", None)
    if hints.get("primary_key") or hints.get("merge_key"):
        hints["primary_key"] = []  # an empty list clears the data table's key for this table
        hints["merge_key"] = [SOURCE_URI_COLUMN] if keyed_by_object else None
        if not keyed_by_object:
            hints["write_disposition"] = "append"
    return {"table_name": destination.table + REJECTS_SUFFIX, **hints}


def apply_hints(
    resource: Any,
    destination: DestinationSpec,
    settings: Settings,
    *,
    lineage: bool,
    keyed_by_object: bool,
    order: OrderedMerge | None = None,
    adapt: bool = True,
) -> Any:
    """`adapt=False`: the engine's table hints go on the data table's own items instead
    (`data_table_hints`), for a resource that also yields other tables (ledger, rejects)."""
    if order is not None:
        resource.apply_hints(**ordered_hints(order), **_contract(destination))
    else:
        resource.apply_hints(**write_hints(destination, keyed_by_object=keyed_by_object))
    if not adapt:
        return resource
    return engine_for(settings).destination.adapt(resource, destination, lineage=lineage)


def data_table_hints(
    destination: DestinationSpec, settings: Settings, *, lineage: bool
) -> dict[str, Any]:
    """The engine's own hints of the data table (BigQuery: partition and cluster columns), to
    be given to that table's items only. On the resource, dlt would copy their column hints
    into every table the resource yields (`_ferry_objects`, rejects), which lack those
    columns: dlt then warns, every load, that they received no data."""
    import dlt

    probe = engine_for(settings).destination.adapt(
        dlt.resource([], name=destination.table), destination, lineage=lineage
    )
    schema = probe.compute_table_schema()
    table_hints = {key: value for key, value in schema.items() if key.startswith("x-")}
    return {"columns": dict(schema.get("columns") or {}), "additional_table_hints": table_hints}


def merged_columns(*hints: dict[str, Any]) -> dict[str, Any]:
    """Column hints of several sources, merged per column."""
    merged: dict[str, Any] = {}
    for columns in hints:
        for name, hint in columns.items():
            merged[name] = {**merged.get(name, {}), **hint}
    return merged
