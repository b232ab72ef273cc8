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
from app.models.compile import ModelSet
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
            for model, version in (
                client.execute_sql(
                    f"SELECT model, built_from FROM {table}"  # noqa: S608
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
    only built once more)."""
    versions = {name: freshness.inputs[name] for name in sorted(built) if name in freshness.inputs}
    if not versions:
        return
    try:
        with destination_lock(settings), sql_client_of(pipeline) as client:
            table = client.make_qualified_table_name(MODELS_TABLE)
            # (the BigQuery emulator answers a read of a missing table with no rows)
            if not freshness.recorded or not freshness.built_from:
                client.execute_sql(
                    f"CREATE TABLE IF NOT EXISTS {table} "
                    "(model STRING, built_from STRING, run_id STRING)"
                )
            source = " UNION ALL ".join(
                ["SELECT %s AS model, %s AS built_from, %s AS run_id"] * len(versions)
            )
            values = [
                value for name, version in versions.items() for value in (name, version, run_id)
            ]
            client.execute_sql(
                f"MERGE INTO {table} AS t USING ({source}) AS s ON t.model = s.model "  # noqa: S608
                "WHEN MATCHED THEN UPDATE SET built_from = s.built_from, run_id = s.run_id "
                "WHEN NOT MATCHED THEN INSERT (model, built_from, run_id) "
                "VALUES (s.model, s.built_from, s.run_id)",
                *values,
            )
    except Exception as error:
        log.warning("could not record what models %s were built from: %s", sorted(versions), error)
