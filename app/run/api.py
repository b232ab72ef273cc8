"""An API pipeline's dlt resource: pages from dlt's REST client -> pandas transform -> Arrow."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from app.destinations.hints import apply_hints, key_columns
from app.destinations.pipeline import destination_types
from app.run.batches import RunSchema, apply_transform, refuse_reserved
from app.run.checks import FileChecks, has_checks
from app.run.raw_zone import archive_page
from app.run.request import RunContext
from core.errors import RequestError
from core.spec import ApiSource
from sources.files.storage import storage_client_factory


def api_resource(run: RunContext, source: ApiSource) -> Any:
    import dlt

    from sources.api import api_pages

    if run.request.source_uri is not None or run.request.generation is not None:
        # silently loading the configured API instead would hide a mis-aimed request
        raise RequestError(
            "'source' and 'generation' narrow a file pipeline; an API pipeline only takes 'params'",
            pipeline=run.spec.name,
        )
    destination = run.spec.destination
    pages = api_pages(source, resource_name=f"{destination.table}_pages", params=run.request.params)
    run_schema = RunSchema(
        key_columns(destination), destination_types(run.pipeline, destination.table)
    )
    report = run.report
    checks = FileChecks(run.spec.checks, run.spec.name, source.base_url + source.path)
    if has_checks(run.spec.checks):
        run.before_load.append(checks.finish)

    pages_seen = 0

    def to_table(page: list[dict[str, Any]]) -> Iterator[pa.Table]:
        nonlocal pages_seen
        report.rows_read += len(page)
        if not page:
            return
        pages_seen += 1
        if run.spec.raw is not None:
            archive_page(
                page,
                run.spec.raw.prefix,
                run.spec.name,
                f"{run.request.run_id}-{pages_seen:05d}",
                storage_client_factory(run.settings),
                run.catalog.base_dir,
            )
        started = time.perf_counter()
        transformed = apply_transform(pa.Table.from_pylist(page), run.transform)
        refuse_reserved(transformed, source.base_url)
        run_schema.require_keys(transformed, source.base_url)
        if has_checks(run.spec.checks):
            checks.batch(transformed)
        table_out = run_schema.conform(transformed, source.base_url)
        report.add_time("transform", time.perf_counter() - started)
        run.checkpoint()
        if table_out.num_rows:
            yield table_out

    resource = pages | dlt.transformer(to_table, name=destination.table)
    return apply_hints(resource, destination, run.settings, lineage=False, keyed_by_object=False)
