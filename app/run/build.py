"""The models step of a run: after a load, the models downstream of the tables it changed;
or, on demand, a build run of named models (`main.py build`, `POST /runs {"models": [...]}`).

A model failure is raised after the load committed, so the run fails with the model's own
error code while the loaded rows stay (nothing here can undo a load).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from app.destinations.pipeline import run_pipeline_for
from app.run.catalog import Catalog
from app.run.report import RunReport
from app.run.request import MODELS_RUN, RunContext, RunRequest
from core.errors import classify
from core.settings import Settings


def build_after_load(context: RunContext) -> None:
    """Build the models downstream of every table this run's load changed."""
    models, report = context.catalog.models, context.report
    if not models or not report.load_ids:
        return
    changed = sorted(table for table, rows in report.tables.items() if rows > 0)
    automatic = [name for name, spec in models.specs.items() if spec.build_after_load]
    names = models.graph.downstream_of(changed, only=automatic)
    if names:
        _build(names, context.catalog, context.settings, context.pipeline, report)


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
            _build(names, catalog, settings, pipeline, report)
    except BaseException as raw:
        if isinstance(raw, KeyboardInterrupt | SystemExit):
            raise
        error = classify(raw)
        error.run_id = request.run_id
        report.add_time("total", time.perf_counter() - started)
        if error.report is None:
            error.report = report.finish("failed", error.to_dict())
        raise error from raw
    report.add_time("total", time.perf_counter() - started)
    built = any(model.status == "built" for model in report.models)
    return report.finish("succeeded" if built else "skipped")


def _build(
    names: Sequence[str], catalog: Catalog, settings: Settings, pipeline: Any, report: RunReport
) -> None:
    with report.timed("models"):
        # imported here: a pipelines file without models never loads sqlglot
        from app.models.builder import build_models

        result = build_models(names, catalog.models, settings, pipeline, report.run_id)
    report.models.extend(result.models)
    if result.error is not None:
        raise result.error
