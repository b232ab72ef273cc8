"""The only place that wires source -> transform -> dlt -> report."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pyarrow as pa

from app.batches import SOURCE_URI_COLUMN, RunSchema, add_lineage, apply_transform
from app.catalog import Catalog, uri_matches
from app.destination import destination_lock, run_pipeline_for
from app.errors import (
    DestinationUnavailableError,
    RequestError,
    SourceUnavailableError,
    classify,
)
from app.ledger import loaded_generations
from app.report import FileReport, RunReport
from app.settings import Settings
from app.spec import ApiSource, DestinationSpec, FilesSource, PipelineSpec
from app.transform import Transform, compile_transform

log = logging.getLogger("ferry.runner")

ProgressCallback = Callable[[RunReport], None]
"""Called after every batch and once before the load commits; raising there abandons the
run with nothing committed (how the service stops a run on SIGTERM)."""


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]


@dataclass(frozen=True)
class RunRequest:
    """One typed request, whatever the trigger (CLI, HTTP, Pub/Sub, CloudEvent)."""

    pipeline: str
    source_uri: str | None = None
    """Narrows the pipeline's file pattern to one object or a sub-pattern."""
    generation: int | None = None
    """A specific object generation (from a GCS notification)."""
    params: Mapping[str, str] = field(default_factory=dict)
    """API query parameter overrides."""
    shard_index: int = 0
    shard_count: int = 1
    run_id: str = field(default_factory=new_run_id)
    trigger: str = "cli"
    idempotency_key: str | None = None
    """Orchestrator-supplied: a repeated key returns the first run's report (app/idempotency)."""


def run(
    request: RunRequest,
    settings: Settings,
    catalog: Catalog,
    progress: ProgressCallback | None = None,
) -> RunReport:
    """Run one pipeline to completion. Raises FerryError (report attached) on failure."""
    spec = catalog.get(request.pipeline)
    report = RunReport(
        run_id=request.run_id,
        pipeline=spec.name,
        trigger=request.trigger,
        destination=settings.destination_kind,
        dataset=settings.dataset_name,
        shard=f"{request.shard_index}/{request.shard_count}" if request.shard_count > 1 else None,
    )
    started = time.perf_counter()
    try:
        transform = compile_transform(spec.name, spec.transform)
        with run_pipeline_for(spec.name, settings, request.run_id) as pipeline:
            with report.timed("list"), destination_lock(settings):
                # a fresh working dir: restore state (incremental cursors) from the destination
                pipeline.sync_destination()
            guard: CommitGuard | None = None
            if isinstance(spec.source, FilesSource):
                resource, guard = _files_resource(
                    spec,
                    spec.source,
                    request,
                    settings,
                    catalog,
                    pipeline,
                    transform,
                    report,
                    progress,
                )
            else:
                resource = _api_resource(spec, spec.source, request, transform, report, progress)
            if resource is not None:
                _load(pipeline, resource, report, settings, progress, guard)
    except BaseException as raw:
        if isinstance(raw, KeyboardInterrupt | SystemExit):
            raise
        error = classify(raw, pipeline=spec.name)
        error.run_id = request.run_id
        report.add_time("total", time.perf_counter() - started)
        error.details.setdefault("report", report.finish("failed", error.to_dict()).to_dict())
        raise error from raw
    report.add_time("total", time.perf_counter() - started)
    return report.finish("succeeded" if report.load_ids else "skipped")


# --- files ----------------------------------------------------------------------------


def _files_resource(
    spec: PipelineSpec,
    source: FilesSource,
    request: RunRequest,
    settings: Settings,
    catalog: Catalog,
    pipeline: Any,
    transform: Transform,
    report: RunReport,
    progress: ProgressCallback | None,
) -> tuple[Any, CommitGuard | None]:
    import dlt

    from sources.files import get_object, list_objects, read_batches, shard

    storage_client = _storage_client_factory(settings)
    pattern = _resolve_pattern(source.uri, catalog.base_dir)
    with report.timed("list"):
        if request.source_uri is not None:
            target = _narrowed_uri(spec, pattern, request.source_uri, catalog.base_dir)
            if request.generation is not None or not _is_glob(target):
                live = get_object(target, None, storage_client=storage_client)
                objects = [_requested_generation(live, request.generation, report)]
            else:
                objects = list_objects(
                    target, base_dir=catalog.base_dir, storage_client=storage_client
                )
        else:
            objects = list_objects(
                pattern, base_dir=catalog.base_dir, storage_client=storage_client
            )
        objects = shard(
            [o for o in objects if o is not None], request.shard_index, request.shard_count
        )
        table = spec.destination.table
        ledger: dict[str, int] = {}
        if spec.destination.write_disposition != "replace":
            with destination_lock(settings):
                ledger = loaded_generations(pipeline, table, (o.uri for o in objects))

    pending = []
    for obj in objects:
        entry = FileReport(uri=obj.uri, generation=obj.generation, bytes=obj.size)
        report.files.append(entry)
        loaded = ledger.get(obj.uri)
        if loaded is not None and loaded >= obj.generation:
            entry.status = "already_loaded" if loaded == obj.generation else "stale_generation"
            entry.reason = f"destination holds generation {loaded}"
            log.info("skip %s (generation %s): %s", obj.uri, obj.generation, entry.reason)
            continue
        pending.append((obj, entry))
    pending = [(obj, entry) for obj, entry in pending if entry.status == "loaded"]
    if not pending:
        return None, None
    guard = _append_guard(spec, settings, pipeline, [obj.uri for obj, _ in pending], ledger)

    run_schema = RunSchema(_key_columns(spec.destination))

    def batches() -> Iterator[pa.Table]:
        for obj, entry in pending:
            log.info("read %s (generation %s, %s bytes)", obj.uri, obj.generation, obj.size)
            report.bytes_read += obj.size
            for batch in read_batches(
                obj,
                source,
                storage_client=storage_client,
                batch_bytes=settings.batch_bytes,
                max_uncompressed_bytes=settings.max_uncompressed_bytes,
            ):
                entry.rows_read += batch.num_rows
                report.rows_read += batch.num_rows
                started = time.perf_counter()
                table_out = apply_transform(batch, transform)
                table_out = add_lineage(table_out, obj.uri, obj.generation)
                table_out = run_schema.conform(table_out, obj.uri)
                report.add_time("transform", time.perf_counter() - started)
                entry.rows_loaded += table_out.num_rows
                if table_out.num_rows:
                    yield table_out
                if progress:
                    progress(report)

    resource = dlt.resource(batches, name=spec.destination.table, parallelized=True)
    hinted = _apply_hints(
        resource, spec.destination, settings, lineage=True, keyed_by_object=guard is None
    )
    return hinted, guard


CommitGuard = Callable[[], None]
"""Runs under the destination lock right before the load commits; raising aborts it."""


def _append_guard(
    spec: PipelineSpec,
    settings: Settings,
    pipeline: Any,
    uris: list[str],
    ledger: dict[str, int],
) -> CommitGuard | None:
    """The DuckDB fast path: objects never loaded are appended instead of merged.

    A merge copies every row twice (staging, then the table). On DuckDB all writers queue on
    one lock, so re-reading the ledger under that lock right before the commit makes a plain
    append exactly as safe: if another run loaded one of these objects meanwhile, this run
    aborts (retriable) and its retry skips them. BigQuery has no such lock: always merge.
    """
    fresh = not any(uri in ledger for uri in uris)
    if not (
        fresh
        and settings.destination_kind == "duckdb"
        and spec.destination.write_disposition == "append"
        and not spec.destination.merge_key
    ):
        return None
    table = spec.destination.table

    def check() -> None:
        raced = loaded_generations(pipeline, table, uris)
        if raced:
            raise DestinationUnavailableError(
                f"another run loaded {sorted(raced)[0]} while this one was extracting; "
                "retry to skip it",
                pipeline=spec.name,
            )

    return check


def _requested_generation(live: Any, generation: int | None, report: RunReport) -> Any:
    """A notification names one generation; only the live one may load.

    An older generation that was overwritten is superseded: the newer generation's own
    notification loads it, so this one is acknowledged without loading anything.
    """
    if generation is None or live.generation == generation:
        return live
    if live.generation > generation:
        superseded = FileReport(uri=live.uri, generation=generation, bytes=0)
        superseded.status = "superseded"
        superseded.reason = f"object is now at generation {live.generation}"
        report.files.append(superseded)
        return None
    raise SourceUnavailableError(
        f"object '{live.uri}' generation {generation} is not visible yet "
        f"(live generation {live.generation})"
    )


def _narrowed_uri(spec: PipelineSpec, pattern: str, uri: str, base_dir: Path) -> str:
    """An override may only point inside the configured pattern (never another bucket)."""
    candidate = uri if uri.startswith("gs://") else _resolve_pattern(uri, base_dir)
    if not uri_matches(pattern, candidate) and not _is_sub_pattern(pattern, candidate):
        raise RequestError(
            f"source '{uri}' is outside the pipeline's configured source '{pattern}'",
            pipeline=spec.name,
        )
    return candidate


def _is_sub_pattern(pattern: str, candidate: str) -> bool:
    """A glob override like gs://b/raw/2024-*.csv is allowed when its fixed prefix is inside."""
    if not _is_glob(candidate):
        return False
    prefix = candidate.split("*", 1)[0].split("?", 1)[0].split("[", 1)[0]
    fixed = pattern.split("*", 1)[0].split("?", 1)[0].split("[", 1)[0]
    return prefix.startswith(fixed) and ".." not in candidate.split("/")


def _is_glob(uri: str) -> bool:
    return any(ch in uri for ch in "*?[")


def _resolve_pattern(uri: str, base_dir: Path) -> str:
    if uri.startswith("gs://"):
        return uri
    path = Path(uri)
    return str(path if path.is_absolute() else (base_dir / path))


def _storage_client_factory(settings: Settings) -> Callable[[], Any]:
    @cache
    def build() -> Any:
        from google.cloud import storage

        if settings.storage_emulator_host:
            from google.auth.credentials import AnonymousCredentials

            return storage.Client(
                project=settings.gcs_project or "local", credentials=AnonymousCredentials()
            )
        return storage.Client(project=settings.gcs_project)

    return build


# --- api ------------------------------------------------------------------------------


def _api_resource(
    spec: PipelineSpec,
    source: ApiSource,
    request: RunRequest,
    transform: Transform,
    report: RunReport,
    progress: ProgressCallback | None,
) -> Any:
    import dlt

    from sources.api import api_pages

    pages = api_pages(
        source, resource_name=f"{spec.destination.table}_pages", params=request.params
    )
    run_schema = RunSchema(_key_columns(spec.destination))

    def to_table(page: list[dict[str, Any]]) -> Iterator[pa.Table]:
        report.rows_read += len(page)
        if not page:
            return
        started = time.perf_counter()
        table_out = run_schema.conform(
            apply_transform(pa.Table.from_pylist(page), transform), source.base_url
        )
        report.add_time("transform", time.perf_counter() - started)
        if progress:
            progress(report)
        if table_out.num_rows:
            yield table_out

    resource = pages | dlt.transformer(to_table, name=spec.destination.table)
    return _apply_hints(resource, spec.destination, None, lineage=False, keyed_by_object=False)


def _key_columns(destination: DestinationSpec) -> tuple[str, ...]:
    return (*destination.primary_key, *destination.merge_key)


# --- load -----------------------------------------------------------------------------


def _apply_hints(
    resource: Any,
    destination: DestinationSpec,
    settings: Settings | None,
    *,
    lineage: bool,
    keyed_by_object: bool,
) -> Any:
    """Write disposition and keys; file loads are keyed by object so a reload replaces it."""
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
    resource.apply_hints(**hints)
    if settings is not None and settings.destination_kind == "bigquery":
        from dlt.destinations.adapters import bigquery_adapter

        cluster = destination.cluster or ([SOURCE_URI_COLUMN] if lineage else [])
        bigquery_adapter(
            resource,
            partition=destination.partition,  # type: ignore[arg-type]
            cluster=cluster or None,  # type: ignore[arg-type]
        )
    return resource


def _load(
    pipeline: Any,
    resource: Any,
    report: RunReport,
    settings: Settings,
    progress: ProgressCallback | None,
    guard: CommitGuard | None,
) -> None:
    with report.timed("extract"):
        pipeline.extract(resource, loader_file_format="parquet")
    report.seconds["extract"] = round(
        report.seconds["extract"] - report.seconds.get("transform", 0.0), 4
    )
    with report.timed("normalize"):
        normalize_info = pipeline.normalize()
    if progress:
        progress(report)  # last point where the run can be abandoned cleanly
    with report.timed("load"), destination_lock(settings):
        if guard is not None:
            guard()
        load_info = pipeline.load()
    load_info.raise_on_failed_jobs()
    report.load_ids = list(load_info.loads_ids)
    counts = normalize_info.row_counts if normalize_info else {}
    report.tables = {table: rows for table, rows in counts.items() if not table.startswith("_dlt")}
    report.rows_loaded = sum(report.tables.values())
