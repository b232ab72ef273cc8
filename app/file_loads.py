"""A file pipeline's dlt resource: pick the objects, skip what is loaded, stream the rest."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from app import failpoints
from app.batches import RunSchema, add_lineage, apply_transform
from app.destination import destination_lock, destination_types
from app.errors import (
    BadDataError,
    DestinationUnavailableError,
    FerryError,
    QualityCheckError,
    RequestError,
    SourceNotFoundError,
)
from app.hints import REJECTS_SUFFIX, apply_hints, key_columns, rejects_hints
from app.ledger import Ledger, read_ledger
from app.quality import FileChecks, has_checks
from app.quarantine import quarantine
from app.raw_zone import archive_object, days, origin_of, partition
from app.report import FileReport
from app.request import CommitGuard, RunContext
from app.spec import FilesSource
from app.storage import storage_client_factory
from app.targets import is_glob, narrowed_uri, requested_generation, resolve_pattern

log = logging.getLogger("ferry.files")


def files_resource(run: RunContext, source: FilesSource) -> tuple[Any, CommitGuard | None]:
    """The resource to extract (None when every object is already loaded) and its guard."""
    import dlt

    from sources.files import Rejects, read_batches

    storage_client = storage_client_factory(run.settings)
    replaying = run.request.replay is not None
    with run.report.timed("list"):
        if replaying:
            planned = _replayed_objects(run, storage_client)
        else:
            planned = [
                Planned(obj, obj.uri, obj.generation)
                for obj in _select_objects(run, source, storage_client)
            ]
        ledger = Ledger({}, frozenset())
        if run.spec.destination.write_disposition != "replace" and not replaying:
            with destination_lock(run.settings):
                ledger = read_ledger(
                    run.pipeline, run.spec.destination.table, (p.uri for p in planned)
                )
    pending = _not_yet_loaded(run, planned, ledger.committed)
    if not pending:
        return None, None
    # a replay replaces each object's rows, so it always merges by object
    guard = None if replaying else _append_guard(run, [p.uri for p, _ in pending], ledger)
    by_object = all(plan.lineage for plan, _ in pending)
    raw = run.spec.raw
    keyed_by_object = guard is None and by_object
    run_schema = RunSchema(
        key_columns(run.spec.destination),
        destination_types(run.pipeline, run.spec.destination.table),
    )
    rejects_table_hints = dlt.mark.make_hints(
        **rejects_hints(run.spec.destination, keyed_by_object=keyed_by_object)
    )
    settings, report, transform = run.settings, run.report, run.transform
    checks_spec = run.spec.checks
    gated = has_checks(checks_spec)

    def batches() -> Iterator[Any]:
        for plan, entry in pending:
            obj = plan.obj
            log.info("read %s (generation %s, %s bytes)", obj.uri, obj.generation, obj.size)
            report.bytes_read += obj.size
            if raw is not None and not replaying:
                archive_object(
                    obj.uri,
                    obj.generation,
                    raw.prefix,
                    run.spec.name,
                    storage_client,
                    run.catalog.base_dir,
                )
            rejects = Rejects(obj.uri, source.max_rejected_rows)
            checks = FileChecks(checks_spec, run.spec.name, obj.uri) if gated else None
            try:
                for batch in read_batches(
                    obj,
                    source,
                    storage_client=storage_client,
                    batch_bytes=settings.batch_bytes,
                    max_uncompressed_bytes=settings.max_uncompressed_bytes,
                    rejects=rejects,
                ):
                    entry.rows_read += batch.num_rows
                    report.rows_read += batch.num_rows
                    started = time.perf_counter()
                    table_out = apply_transform(batch, transform)
                    if checks:
                        checks.batch(table_out)
                    if plan.lineage:
                        table_out = add_lineage(table_out, plan.uri, plan.generation)
                    table_out = run_schema.conform(table_out, obj.uri)
                    report.add_time("transform", time.perf_counter() - started)
                    entry.rows_loaded += table_out.num_rows
                    if table_out.num_rows:
                        yield table_out
                    failpoints.hit("after_first_batch")
                    yield from _rejected(rejects, plan, entry, run, rejects_table_hints)
                    run.checkpoint()
                if checks:
                    checks.finish()
            except (QualityCheckError, BadDataError) as error:
                _set_aside(run, obj, entry, error, storage_client)
                raise
            yield from _rejected(rejects, plan, entry, run, rejects_table_hints)

    resource = dlt.resource(batches, name=run.spec.destination.table, parallelized=True)
    hinted = apply_hints(
        resource, run.spec.destination, settings, lineage=True, keyed_by_object=keyed_by_object
    )
    return hinted, guard


def _set_aside(
    run: RunContext, obj: Any, entry: FileReport, error: FerryError, storage_client: Any
) -> None:
    """Mark the file failed and, if the pipeline says so, copy it to quarantine."""
    entry.status = "failed"
    entry.reason = error.message
    prefix = run.spec.checks.quarantine_prefix
    if prefix:
        copied = quarantine(
            obj.uri,
            obj.generation,
            prefix,
            pipeline=run.spec.name,
            reason=error.message,
            storage_client=storage_client,
            base_dir=run.catalog.base_dir,
        )
        if copied:
            error.details["quarantined_to"] = copied
            log.warning("quarantined %s to %s: %s", obj.uri, copied, error.message)


def _rejected(
    rejects: Any, plan: Planned, entry: FileReport, run: RunContext, hints: Any
) -> Iterator[Any]:
    """Rejected rows so far, as a table for `<table>__rejects` in the same load."""
    import dlt

    rows = rejects.take()
    if not rows:
        return
    entry.rows_rejected += len(rows)
    entry.rows_read += len(rows)
    run.report.rows_read += len(rows)
    run.report.rows_rejected += len(rows)
    table = pa.table(
        {
            "row": pa.array([r.row for r in rows], pa.int64()),
            "column": pa.array([r.column for r in rows], pa.string()),
            "reason": pa.array([r.reason for r in rows], pa.string()),
            "raw": pa.array([r.raw for r in rows], pa.string()),
        }
    )
    # a table variant: without it the hints stick to the resource and later batches of
    # data would be routed to the rejects table too
    yield dlt.mark.with_hints(
        add_lineage(table, plan.uri, plan.generation), hints, create_table_variant=True
    )


def _select_objects(run: RunContext, source: FilesSource, storage_client: Any) -> list[Any]:
    from sources.files import get_object, list_objects, shard

    request, base_dir = run.request, run.catalog.base_dir
    pattern = resolve_pattern(source.uri, base_dir)
    if request.objects:
        objects = [
            requested_generation(
                get_object(
                    narrowed_uri(run.spec.name, pattern, ref.uri, base_dir),
                    None,
                    storage_client=storage_client,
                ),
                ref.generation,
                run.report,
            )
            for ref in request.objects
        ]
    elif request.source_uri is None:
        objects = list_objects(pattern, base_dir=base_dir, storage_client=storage_client)
    else:
        target = narrowed_uri(run.spec.name, pattern, request.source_uri, base_dir)
        if request.generation is not None or not is_glob(target):
            live = get_object(target, None, storage_client=storage_client)
            objects = [requested_generation(live, request.generation, run.report)]
        else:
            objects = list_objects(target, base_dir=base_dir, storage_client=storage_client)
    present = [obj for obj in objects if obj is not None]
    return shard(present, request.shard_index, request.shard_count)


@dataclass(frozen=True)
class Planned:
    """An object to read, and the object its rows are lineage of (differs when replaying)."""

    obj: Any
    uri: str
    generation: int
    lineage: bool = True
    """False for archived API pages: API rows carry no object lineage (keyed by primary key)."""


def _replayed_objects(run: RunContext, storage_client: Any) -> list[Planned]:
    from sources.files import list_objects

    request, spec = run.request, run.spec
    if spec.raw is None or request.replay is None:
        raise RequestError(
            f"pipeline '{spec.name}' keeps no raw zone to replay", pipeline=spec.name
        )
    prefix = resolve_pattern(spec.raw.prefix, run.catalog.base_dir)
    planned = []
    for day in days(*request.replay):
        folder = partition(prefix, spec.name, day)
        try:
            found = list_objects(
                folder + "/**", base_dir=run.catalog.base_dir, storage_client=storage_client
            )
        except SourceNotFoundError:
            continue
        for obj in found:
            origin = origin_of(obj.uri, folder)
            from_api = origin.origin_uri == obj.uri
            planned.append(Planned(obj, origin.origin_uri, origin.generation, not from_api))
    if not planned:
        first, last = request.replay
        raise SourceNotFoundError(
            f"the raw zone holds nothing for '{spec.name}' from {first} to {last}",
            pipeline=spec.name,
        )
    return planned


def _not_yet_loaded(
    run: RunContext, planned: list[Planned], ledger: dict[str, int]
) -> list[tuple[Planned, FileReport]]:
    pending = []
    for plan in planned:
        entry = FileReport(uri=plan.uri, generation=plan.generation, bytes=plan.obj.size)
        run.report.files.append(entry)
        if plan.obj.uri != plan.uri:
            entry.reason = f"replayed from {plan.obj.uri}"
        loaded = ledger.get(plan.uri)
        if loaded is not None and loaded >= plan.generation:
            entry.status = "already_loaded" if loaded == plan.generation else "stale_generation"
            entry.reason = f"destination holds generation {loaded}"
            log.info("skip %s (generation %s): %s", plan.uri, plan.generation, entry.reason)
            continue
        pending.append((plan, entry))
    return pending


def _append_guard(run: RunContext, uris: list[str], ledger: Ledger) -> CommitGuard | None:
    """The DuckDB fast path: objects never loaded are appended instead of merged.

    A merge copies every row twice (staging, then the table). On DuckDB all writers queue on
    one lock, so re-reading the ledger under that lock right before the commit makes a plain
    append exactly as safe: if another run loaded one of these objects meanwhile, this run
    aborts (retriable) and its retry skips them. Only objects with no rows at all (in the
    table or its rejects) qualify: rows left by a killed load must be merged over. BigQuery
    has no such lock: always merge.
    """
    destination = run.spec.destination
    if not (
        run.settings.destination_kind == "duckdb"
        and destination.write_disposition == "append"
        and not destination.merge_key
    ):
        return None
    with destination_lock(run.settings):
        if _any_rows(run, uris, ledger):
            return None

    def check() -> None:
        if _any_rows(run, uris, None):
            raise DestinationUnavailableError(
                "another run loaded some of these objects while this one was extracting; "
                "retry to skip them",
                pipeline=run.spec.name,
            )

    return check


def _any_rows(run: RunContext, uris: list[str], ledger: Ledger | None) -> bool:
    table = run.spec.destination.table
    data = ledger or read_ledger(run.pipeline, table, uris)
    if any(uri in data.present for uri in uris):
        return True
    rejects = read_ledger(run.pipeline, table + REJECTS_SUFFIX, uris)
    return any(uri in rejects.present for uri in uris)
