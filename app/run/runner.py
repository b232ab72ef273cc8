"""The only place that wires source -> transform -> dlt -> report."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from app.destinations.pipeline import (
    destination_lock,
    destination_writer,
    drop_staging_dataset,
    kept_pipeline_for,
    lock_wait,
)
from app.destinations.staging import sweep_if_due
from app.run.api import api_resource
from app.run.build import build_after_load, build_run, report_lock_wait
from app.run.catalog import Catalog
from app.run.files import files_resource
from app.run.report import RunReport
from app.run.request import CommitGuard, ProgressCallback, RunContext, RunRequest, new_run_id
from app.run.transform import compile_transform
from core import failpoints, log_context
from core.errors import RequestError, classify
from core.lineage import REJECTS_SUFFIX, TOMBSTONES_SUFFIX
from core.settings import Settings
from core.spec import ApiSource, FilesSource, PipelineSpec

__all__ = ["ProgressCallback", "RunRequest", "new_run_id", "preload", "run"]

BOOKKEEPING = ("_dlt", "_ferry_")
"""dlt's tables and ferry's ledger: not data, so not in the report's tables or load jobs."""


_preload_lock = threading.Lock()
_preloaded = threading.Event()


def preload() -> None:
    """Import pandas, fully and once, before runs can overlap.

    dlt tells a pandas DataFrame from other items by looking pandas up in `sys.modules`: while
    one thread is still importing pandas (a pandas transform step, a conversion) another
    thread's dlt finds the half-initialised module and fails with `partially initialized
    module 'pandas' has no attribute 'DataFrame'`. The service calls this at start; every run
    calls it before its read-ahead thread starts (~0.3 s, once per process)."""
    if _preloaded.is_set():
        return
    with _preload_lock:
        if _preloaded.is_set():
            return
        import pandas  # noqa: F401

        _preloaded.set()


def run(
    request: RunRequest,
    settings: Settings,
    catalog: Catalog,
    progress: ProgressCallback | None = None,
    loading: Callable[[], None] | None = None,
) -> RunReport:
    """Run one pipeline to completion, then the models downstream of what it loaded (or, for
    a build request, just models). Raises FerryError (its `report` set) on failure.
    `loading` is called once everything is read and converted, before the load waits for
    the table's writer (group commit starts the next group then)."""
    preload()
    lock_wait(reset=True)
    # every log line of the run is labelled with its run id (and pipeline)
    with log_context.bound(**log_context.run_fields(request.run_id, request.pipeline)):
        if request.models is not None:
            return build_run(request, settings, catalog)
        return _run(request, settings, catalog, progress, loading)


def _run(
    request: RunRequest,
    settings: Settings,
    catalog: Catalog,
    progress: ProgressCallback | None,
    loading: Callable[[], None] | None = None,
) -> RunReport:
    spec = catalog.get(request.pipeline)
    report = RunReport(
        run_id=request.run_id,
        pipeline=spec.name,
        trigger=request.trigger,
        destination=settings.destination_kind,
        dataset=settings.dataset_name,
        shard=f"{request.shard_index}/{request.shard_count}" if request.shard_count > 1 else None,
        execution=request.execution,
        task_attempt=request.task_attempt,
    )
    started = time.perf_counter()
    try:
        transform = compile_transform(spec.name, spec.transform)
        with kept_pipeline_for(spec.name, settings, request.run_id) as kept:
            pipeline = kept.pipeline
            context = RunContext(
                request, spec, settings, catalog, transform, report, pipeline, progress
            )
            context.loading = loading
            guard: CommitGuard | None = None
            files = _files_source(request, spec)
            # one hold of the lock for everything the run reads before extracting: DuckDB
            # opens its file once instead of once per read
            with destination_lock(settings):
                with report.timed("list"):
                    # a fresh working dir: restore state (incremental cursors) and the schema
                    # (the column types that checks compare against) from the destination. A
                    # kept one has both from its last run, but an API pipeline's cursor may
                    # have moved since in another instance: read it again.
                    if kept.fresh or files is None or request.replay is not None:
                        pipeline.sync_destination()
                    sweep_if_due(pipeline, settings)
                if files is not None:
                    resource, guard = files_resource(context, files)
            if files is None and isinstance(spec.source, ApiSource):
                resource = api_resource(context, spec.source)
            if resource is not None:
                # a streamed append not committed by the end of the load rolls back here
                with context.held:
                    _load(context, resource, guard)
            # also when nothing loaded: a model whose last build failed heals on any run
            build_after_load(context)
    except BaseException as raw:
        if isinstance(raw, KeyboardInterrupt | SystemExit):
            raise
        error = classify(raw, pipeline=spec.name)
        error.run_id = request.run_id
        if not report.load_ids:
            _nothing_committed(report)
        report_lock_wait(report)
        report.add_time("total", time.perf_counter() - started)
        if error.report is None:
            error.report = report.finish("failed", error.to_dict())
        raise error from raw
    report_lock_wait(report)
    report.add_time("total", time.perf_counter() - started)
    return report.finish("succeeded" if report.load_ids else "skipped")


def _nothing_committed(report: RunReport) -> None:
    """A file is `loaded` (or `deleted`) only once its load committed: a run that failed
    before that loaded none of the files it was reading."""
    for entry in report.files:
        if entry.status in ("loaded", "deleted"):
            entry.status = "failed"
            entry.reason = entry.reason or "the run failed before this file's load committed"
            entry.rows_loaded = 0
    report.changes = None


def _files_source(request: RunRequest, spec: PipelineSpec) -> FilesSource | None:
    """What a run reads as files: archived inputs on a replay, the files of a file pipeline;
    None for an API pipeline's own run."""
    if request.replay is not None:
        return _replay_source(spec)
    return spec.source if isinstance(spec.source, FilesSource) else None


def _replay_source(spec: PipelineSpec) -> FilesSource:
    """How archived inputs are read back: as the files they were, or API pages as JSONL."""
    if isinstance(spec.source, FilesSource):
        return spec.source
    if not spec.destination.primary_key:
        raise RequestError(
            "replaying an API pipeline needs destination.primary_key (its rows carry no "
            "object lineage, so only the key can keep a replay from duplicating them)",
            pipeline=spec.name,
        )
    return FilesSource(uri="raw", format="jsonl")


def _load(run: RunContext, resource: Any, guard: CommitGuard | None) -> None:
    pipeline, report = run.pipeline, run.report
    with report.timed("extract"):
        pipeline.extract(resource, loader_file_format="parquet")
    # reading and transforming happen inside dlt's extract: report them apart
    report.seconds["extract"] = round(
        report.seconds["extract"] - report.seconds.get("transform", 0.0), 4
    )
    with report.timed("normalize"):
        normalize_info = pipeline.normalize()
    # Arrow keeps freed batch memory in its pool; give it back before DuckDB's load step
    # needs its own (else the two add up to the run's peak)
    pa.default_memory_pool().release_unused()
    for check in run.before_load:
        check()
    run.checkpoint()  # the last point where the run can be abandoned cleanly
    if run.loading is not None:
        run.loading()
    # one hold of the lock from the guard's last look to the staging drop, and of the
    # table's writer to the last commit: the load's checks see every earlier load whole
    with destination_lock(run.settings):
        waiting = time.perf_counter()
        with destination_writer(run.settings, run.spec.destination.table):
            # the turn a load waits for while an earlier load of its table commits
            report.add_time("writer_wait", time.perf_counter() - waiting)
            with report.timed("load"):
                if guard is not None:
                    guard()
                failpoints.hit("during_load")
                streamed = run.commit_streamed() if run.commit_streamed else None
                failpoints.hit("after_streamed_commit")
                load_info = pipeline.load()
            failpoints.hit("after_commit")
            load_info.raise_on_failed_jobs()
            for clean_up in run.after_commit:
                clean_up()
        drop_staging_dataset(pipeline)
    report.load_ids = list(load_info.loads_ids)
    for package in load_info.load_packages:
        for job in package.jobs.get("completed_jobs", []):
            table, file_format = job.job_file_info.table_name, job.job_file_info.file_format
            # merge follow-ups are SQL (DML) jobs, not load jobs
            if not table.startswith(BOOKKEEPING) and file_format != "sql":
                report.load_jobs[table] = report.load_jobs.get(table, 0) + 1
    counts = normalize_info.row_counts if normalize_info else {}
    report.tables = {
        table: rows for table, rows in counts.items() if not table.startswith(BOOKKEEPING)
    }
    if streamed is not None:  # rows dlt did not see (it loaded a zero-row slice of them)
        table, rows = streamed
        report.tables[table] = report.tables.get(table, 0) + rows
    report.rows_loaded = sum(
        rows for table, rows in report.tables.items() if not table.endswith(REJECTS_SUFFIX)
    )
    if report.changes is not None:
        # a CDC table's loaded rows are changes (in `changes`), not the rows the table holds
        from dlt.common.normalizers.naming.snake_case import NamingConvention

        table = NamingConvention().normalize_path(run.spec.destination.table)
        for name in (table, table + TOMBSTONES_SUFFIX):
            report.tables.pop(name, None)
