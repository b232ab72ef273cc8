"""What each model was built from, so that a model whose build failed heals on a later run.

A model's inputs are the loads of the pipelines that feed it (directly or through other
models): their newest committed load id in dlt's `_dlt_loads` is the version of its inputs.
Each successful build records the version it read *before* building in `_ferry_models`. A
model whose inputs moved past its record (or that has none: never built, or its build
failed, retriably or not) is stale, and any later run — a redelivery that loads nothing, a
skipped run, `build` — rebuilds it. A load that commits while a model builds leaves the model
stale, so the next run rebuilds it again: nothing is missed.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from app.destinations.pipeline import destination_lock, sql_client_of
from app.destinations.registry import engine_for
from app.models.compile import ModelSet
from app.models.watermark import RUN_SECOND
from core.lineage import MODELS_TABLE
from core.settings import Settings

log = logging.getLogger("ferry.models")


@dataclass(frozen=True)
class Freshness:
    inputs: Mapping[str, str]
    """model -> the newest load id of the loads that feed it (absent: nothing loaded yet)."""
    built_from: Mapping[str, str] = field(default_factory=dict)
    """model -> the input version its last successful build read."""
    recorded: bool = False
    """`_ferry_models` exists."""

    def stale(self, names: Collection[str]) -> list[str]:
        return sorted(
            name
            for name in names
            if name in self.inputs
            and (name not in self.built_from or self.built_from[name] < self.inputs[name])
        )


def read_freshness(
    pipeline: Any,
    settings: Settings,
    models: ModelSet,
    loaded_by: Mapping[str, Collection[str]],
) -> Freshness:
    """`loaded_by`: table -> the dlt schema names (pipelines) whose loads write it. A change
    stops at a model left to `build` (build_after_load: false), as after a load."""
    from dlt.destinations.exceptions import DatabaseUndefinedRelation

    with destination_lock(settings), sql_client_of(pipeline) as client:
        loads = client.make_qualified_table_name("_dlt_loads")
        try:
            rows = client.execute_sql(
                f"SELECT schema_name, MAX(load_id) FROM {loads} "  # noqa: S608
                "WHERE status = 0 GROUP BY schema_name"
            )
        except DatabaseUndefinedRelation:
            return Freshness({})
        newest = {str(schema): str(load_id) for schema, load_id in rows or []}
        built_from: dict[str, str] = {}
        recorded = True
        table = client.make_qualified_table_name(MODELS_TABLE)
        try:
            # rows are appended, one per build: the newest run's row per model counts (a run
            # id starts with its second; within one second the higher version, as inputs only
            # grow)
            newest_first = f"ORDER BY SUBSTR(run_id, 1, {RUN_SECOND}) DESC, built_from DESC"
            for model, version in (
                client.execute_sql(
                    f"SELECT model, built_from FROM (SELECT model, built_from, "  # noqa: S608
                    f"ROW_NUMBER() OVER (PARTITION BY model {newest_first}) AS n "
                    f"FROM {table}) AS r WHERE n = 1"
                )
                or []
            ):
                built_from[str(model)] = str(version)
        except DatabaseUndefinedRelation:
            recorded = False
    inputs: dict[str, str] = {}
    for name in models.graph.order:
        versions = [
            newest[schema]
            for loaded in _loaded_inputs(name, models, loaded_by)
            for schema in loaded_by[loaded]
            if schema in newest
        ]
        if versions:
            inputs[name] = max(versions)
    return Freshness(inputs, built_from, recorded)


def _loaded_inputs(
    name: str, models: ModelSet, loaded_by: Mapping[str, Collection[str]]
) -> set[str]:
    """The loaded tables a model reads, through the models it reads."""
    seen: set[str] = set()
    found: set[str] = set()
    todo = [name]
    while todo:
        current = todo.pop()
        for upstream in models.graph.upstream.get(current, frozenset()):
            if upstream in models.specs:
                if models.specs[upstream].build_after_load and upstream not in seen:
                    seen.add(upstream)
                    todo.append(upstream)
                continue
            for table in loaded_by:
                if upstream == table or upstream.startswith(table + "__"):
                    found.add(table)
    return found


def record_built(
    pipeline: Any, settings: Settings, freshness: Freshness, built: Collection[str], run_id: str
) -> None:
    """Record what each built model was built from (best effort: a model left unrecorded is
    only built once more). Rows are appended, never merged: `_ferry_models` is shared by every
    pipeline of the dataset, and on BigQuery a MERGE per build is DML in the table's queue (2
    running, 20 queued); there they are streamed (`insertAll`), after the one INSERT that
    made the table. Readers keep the newest row per model, so a table from before reads right."""
    versions = {name: freshness.inputs[name] for name in sorted(built) if name in freshness.inputs}
    if not versions:
        return
    rows = [
        {"model": name, "built_from": version, "run_id": run_id}
        for name, version in versions.items()
    ]
    destination = engine_for(settings).destination
    try:
        with destination_lock(settings), sql_client_of(pipeline) as client:
            # (the BigQuery emulator answers a read of a missing table with no rows)
            if freshness.recorded and freshness.built_from:
                ids = [f"{row['model']}:{run_id}" for row in rows]
                if destination.append_rows(client, MODELS_TABLE, rows, ids):
                    return
            table = client.make_qualified_table_name(MODELS_TABLE)
            if not freshness.recorded or not freshness.built_from:
                client.execute_sql(
                    f"CREATE TABLE IF NOT EXISTS {table} "
                    "(model STRING, built_from STRING, run_id STRING)"
                )
            placeholders = ", ".join(["(%s, %s, %s)"] * len(rows))
            values = [row[column] for row in rows for column in ("model", "built_from", "run_id")]
            client.execute_sql(
                f"INSERT INTO {table} (model, built_from, run_id) "  # noqa: S608
                f"VALUES {placeholders}",
                *values,
            )
    except Exception as error:
        log.warning("could not record what models %s were built from: %s", sorted(versions), error)
