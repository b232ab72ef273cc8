"""dlt table hints from a pipeline's destination spec."""

from __future__ import annotations

from typing import Any

from core.lineage import REJECTS_SUFFIX, SOURCE_URI_COLUMN
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
    if destination.schema_contract == "freeze":
        hints["schema_contract"] = {"tables": "evolve", "columns": "freeze", "data_type": "freeze"}
    return hints


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
) -> Any:
    resource.apply_hints(**write_hints(destination, keyed_by_object=keyed_by_object))
    if settings.destination_kind == "bigquery":
        from dlt.destinations.adapters import bigquery_adapter

        cluster = destination.cluster or ([SOURCE_URI_COLUMN] if lineage else [])
        bigquery_adapter(
            resource,
            partition=destination.partition,  # type: ignore[arg-type]
            cluster=cluster or None,  # type: ignore[arg-type]
        )
    return resource
