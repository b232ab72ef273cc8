"""A run's context as the runner builds it, for tests of one stage (plan, extract) alone."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from app.destinations.pipeline import run_pipeline_for
from app.run.catalog import Catalog
from app.run.report import RunReport
from app.run.request import RunContext, RunRequest
from app.run.transform import compile_transform
from core.settings import Settings


@contextmanager
def run_context(request: RunRequest, settings: Settings, catalog: Catalog) -> Iterator[RunContext]:
    spec = catalog.get(request.pipeline)
    report = RunReport(request.run_id, spec.name, request.trigger, "duckdb", settings.dataset_name)
    transform = compile_transform(spec.name, spec.transform)
    with run_pipeline_for(spec.name, settings, request.run_id) as pipeline:
        yield RunContext(request, spec, settings, catalog, transform, report, pipeline)
