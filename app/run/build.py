"""The models step of a run: after a load, the models downstream of the tables it changed;
or, on demand, a build run of named models (`main.py build`, `POST /runs {"models": [...]}`).

A model failure is raised after the load committed, so the run fails with the model's own
error code while the loaded rows stay (nothing here can undo a load).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from app.destinations.pipeline import lock_wait, pipeline_name, run_pipeline_for
from app.run.catalog import Catalog
from app.run.report import RunReport
from app.run.request import MODELS_RUN, RunContext, RunRequest
from core.errors import classify
from core.settings import Settings

if TYPE_CHECKING:
    from app.models.freshness import Freshness

log = logging.getLogger("ferry.models")


def build_after_load(context: RunContext) -> None:
    """Build the models downstream of every table this run's load changed, and any model
    whose inputs moved past its last build (one that failed before, retriably or not): a
    run that loads nothing still heals them."""
    catalog, report = context.catalog, context.report
    models = catalog.models
    automatic = [name for name, spec in models.specs.items() if spec.build_after_load]
    if not automatic:
        return
    from app.models.freshness import Freshness, read_freshness

    changed = set()
    if report.load_ids:
        changed = {table for table, rows in report.tables.items() if rows > 0}
        if report.changes and report.changes.get("applied"):
            changed.add(context.spec.destination.table)  # a CDC table: changes, not rows
    try:
        freshness = read_freshness(context.pipeline, context.settings, models, _loaded_by(catalog))
    except Exception as error:  # best effort: the changed tables' models still build
        log.warning("could not read what the models were built from: %s", error)
        freshness = Freshness({})
    stale = freshness.stale(automatic)
    if stale:
        log.info("models %s are older than their inputs: rebuilding", ", ".join(stale))
    reached = set(models.graph.downstream_of(changed | set(stale), only=automatic)) | set(stale)
    names = [name for name in models.graph.order if name in reached]
    if names:
        _build(names, catalog, context.settings, context.pipeline, report, freshness)


def _loaded_by(catalog: Catalog) -> dict[str, list[str]]:
    """table -> the dlt schemas (one per pipeline) whose loads write it."""
    from dlt.common.normalizers.naming.snake_case import NamingConvention

    naming = NamingConvention()
    loaded: dict[str, list[str]] = {}
    for spec in catalog.pipelines.values():
        schema = naming.normalize_identifier(pipeline_name(spec.name))
        loaded.setdefault(spec.destination.table, []).append(schema)
    return loaded


def build_run(request: RunRequest, settings: Settings, catalog: Catalog) -> RunReport:
    """Build the requested models and their downstream. Raises FerryError (its `report` set)."""
    report = RunReport(
        run_id=request.run_id,
        pipeline=MODELS_RUN,
        trigger=request.trigger,
        destination=settings.destination_kind,
        dataset=settings.dataset_name,
        execution=request.execution,
        task_attempt=request.task_attempt,
    )
    started = time.perf_counter()
    try:
        names = catalog.models.graph.selection(request.models or ())
        with run_pipeline_for(MODELS_RUN, settings, request.run_id) as pipeline:
            from app.models.freshness import read_freshness

            freshness = read_freshness(pipeline, settings, catalog.models, _loaded_by(catalog))
            _build(names, catalog, settings, pipeline, report, freshness, request.full_refresh)
    except BaseException as raw:
        if isinstance(raw, KeyboardInterrupt | SystemExit):
            raise
        error = classify(raw)
        error.run_id = request.run_id
        report_lock_wait(report)
        report.add_time("total", time.perf_counter() - started)
        if error.report is None:
            error.report = report.finish("failed", error.to_dict())
        raise error from raw
    report_lock_wait(report)
    report.add_time("total", time.perf_counter() - started)
    built = any(model.status == "built" for model in report.models)
    return report.finish("succeeded" if built else "skipped")


def _build(
    names: Sequence[str],
    catalog: Catalog,
    settings: Settings,
    pipeline: Any,
    report: RunReport,
    freshness: Freshness,
    full_refresh: bool = False,
) -> None:
    with report.timed("models"):
        # imported here: a pipelines file without models never loads sqlglot
        from app.models.builder import build_models
        from app.models.freshness import record_built

        result = build_models(
            names, catalog.models, settings, pipeline, report.run_id, full_refresh
        )
        # a model skipped for a missing upstream table counts as built from these inputs:
        # the load that creates that table moves them, and it is tried again then
        built = [
            model.name
            for model in result.models
            if model.status == "built"
            or (model.status == "skipped" and "does not exist yet" in (model.reason or ""))
        ]
        record_built(pipeline, settings, freshness, built, report.run_id)
    report.models.extend(result.models)
    if result.error is not None:
        raise result.error


LOCK_WAIT_REPORTED = 0.1
"""Shorter waits for the destination's writer lock are not worth a line in the report."""


def report_lock_wait(report: RunReport) -> None:
    """How long a run (a load or a build) waited for DuckDB's one writer."""
    seconds = lock_wait()
    if seconds >= LOCK_WAIT_REPORTED:
        report.add_time("lock_wait", seconds)
