"""The dlt destination (BigQuery or DuckDB) and a pipeline with its own working dir per run."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from app.settings import Settings


def make_destination(settings: Settings) -> Any:
    import dlt

    if settings.destination_kind == "duckdb":
        path = settings.resolved_duckdb_path
        path.parent.mkdir(parents=True, exist_ok=True)
        return dlt.destinations.duckdb(credentials=str(path.resolve()))
    if settings.bigquery_emulator_host:
        return _emulator_bigquery(settings)
    # production: Application Default Credentials (the Cloud Run service account)
    return dlt.destinations.bigquery(
        location=settings.bigquery_location,
        project_id=settings.bigquery_project,
    )


def _emulator_bigquery(settings: Settings) -> Any:
    """The local BigQuery emulator: a static token dlt never refreshes, uncompressed files."""
    import dlt
    from dlt.common.configuration.specs import GcpOAuthCredentials
    from google.oauth2.credentials import Credentials

    # the emulator cannot read gzip load files; dlt reads this switch from the environment
    os.environ["DATA_WRITER__DISABLE_COMPRESSION"] = "true"
    credentials = GcpOAuthCredentials()
    credentials.parse_native_representation(Credentials(token="emulator"))  # noqa: S106
    credentials.project_id = settings.bigquery_project or "test-project"
    credentials.resolve()
    return dlt.destinations.bigquery(
        credentials=credentials,  # type: ignore[arg-type]
        location=settings.bigquery_location,
    )


def _route_dlt_logs_through_ours() -> None:
    """dlt installs its own stderr handler; send its records through ferry's JSON/text one."""
    dlt_logger = logging.getLogger("dlt")
    dlt_logger.handlers.clear()
    dlt_logger.propagate = True
    dlt_logger.setLevel(logging.WARNING)
    if not any(isinstance(f, _KnownHarmlessDltWarnings) for f in dlt_logger.filters):
        dlt_logger.addFilter(_KnownHarmlessDltWarnings())


class _KnownHarmlessDltWarnings(logging.Filter):
    """DuckDB keeps timestamptz at microseconds anyway; this warning repeats every load."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "does not support both timezone and precision" not in record.getMessage()


def pipeline_name(pipeline: str) -> str:
    return "ferry_" + pipeline.replace("-", "_")


@contextmanager
def run_pipeline_for(pipeline: str, settings: Settings, run_id: str) -> Iterator[Any]:
    """A dlt pipeline in a fresh working dir, removed afterwards.

    dlt keeps extract/normalize files and state in its working dir; two concurrent runs of
    one pipeline must never share it (dlt #1102, #2218), so each run gets its own. State that
    must outlive the run (incremental cursors) is restored from the destination by dlt.
    """
    import dlt

    root = settings.data_dir / "runs"
    root.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f"{run_id}-", dir=root))
    try:
        created = dlt.pipeline(
            pipeline_name=pipeline_name(pipeline),
            pipelines_dir=str(workdir),
            destination=make_destination(settings),
            dataset_name=settings.dataset_name,
        )
        _route_dlt_logs_through_ours()
        yield created
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
