"""Small tables ferry keeps beside the data (idempotency keys, the run log): one row merged
in by its own little dlt pipeline, and rows read back with bound parameters."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.destinations.pipeline import destination_lock, run_pipeline_for
from core.settings import Settings

if TYPE_CHECKING:
    from dlt.common.schema.typing import TColumnSchema


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


def select(
    settings: Settings, pipeline: str, table: str, query: str, args: list[Any]
) -> list[tuple[Any, ...]]:
    """Run `query` with `{table}` replaced by the qualified table; [] when it does not exist.

    The query text comes from ferry's own code; every value is a bound parameter.
    """
    from dlt.destinations.exceptions import DatabaseUndefinedRelation

    with run_pipeline_for(pipeline, settings, f"{pipeline.strip('_')}-read") as dlt_pipeline:
        try:
            with destination_lock(settings), dlt_pipeline.sql_client() as client:
                qualified = client.make_qualified_table_name(table)
                rows = client.execute_sql(query.format(table=qualified), *args)
        except DatabaseUndefinedRelation:
            return []
    return list(rows or [])
