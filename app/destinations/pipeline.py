"""The dlt destination (BigQuery or DuckDB) and a pipeline with its own working dir per run."""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from core.errors import DestinationUnavailableError
from core.settings import Settings

log = logging.getLogger("ferry.destination")


def make_destination(settings: Settings, run_id: str) -> Any:
    """The dlt destination, with a staging dataset of this run's own.

    dlt merges through a staging dataset (`<dataset>_staging` by default). Two concurrent
    runs loading one table would truncate and fill the same staging table and lose rows, so
    each run stages into its own dataset, dropped when the run ends.
    """
    import dlt

    layout = "%s_staging_" + staging_token(run_id)
    if settings.destination_kind == "duckdb":
        path = settings.resolved_duckdb_path
        path.parent.mkdir(parents=True, exist_ok=True)
        return dlt.destinations.duckdb(
            credentials={
                "database": str(path.resolve()),
                # bounded memory for the load step; insertion order is irrelevant to a table
                "global_config": {
                    "memory_limit": settings.duckdb_memory_limit,
                    "preserve_insertion_order": False,
                },
            },
            staging_dataset_name_layout=layout,
        )
    credentials = None
    if settings.bigquery_emulator_host:
        from google.oauth2.credentials import Credentials

        # the emulator: a static token dlt never refreshes, and no gzip load files
        credentials = Credentials(token="emulator")  # noqa: S106
        os.environ["DATA_WRITER__DISABLE_COMPRESSION"] = "true"
    # production: credentials=None means Application Default Credentials
    return dlt.destinations.bigquery(
        credentials=credentials,  # type: ignore[arg-type]
        project_id=settings.bigquery_project,
        location=settings.bigquery_location,
        staging_dataset_name_layout=layout,
    )


@contextmanager
def destination_lock(settings: Settings, timeout: float = 600.0) -> Iterator[None]:
    """DuckDB allows one writing process at a time: queue local runs on a lock file.

    BigQuery needs no lock (each run stages into its own dataset).
    """
    if settings.destination_kind != "duckdb":
        yield
        return
    lock_path = settings.resolved_duckdb_path.with_suffix(".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    with lock_path.open("a") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise DestinationUnavailableError(
                        f"DuckDB file {settings.resolved_duckdb_path} stayed locked by another "
                        f"run for {timeout:.0f}s"
                    ) from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def staging_token(run_id: str) -> str:
    return re.sub(r"[^a-z0-9_]", "_", run_id.lower())


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


def _drop_staging_dataset(pipeline: Any) -> None:
    """Best effort: a staging dataset left by a killed run holds no visible data."""
    try:
        with pipeline.sql_client() as client, client.with_staging_dataset():
            if client.has_dataset():
                client.drop_dataset()
    except Exception as error:
        log.warning("could not drop staging dataset of %s: %s", pipeline.pipeline_name, error)


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

    # every row records its dlt load id: the ledger counts only loads that completed
    os.environ["NORMALIZE__PARQUET_NORMALIZER__ADD_DLT_LOAD_ID"] = "true"
    root = settings.data_dir / "runs"
    root.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f"{run_id}-", dir=root))
    try:
        created = dlt.pipeline(
            pipeline_name=pipeline_name(pipeline),
            pipelines_dir=str(workdir),
            destination=make_destination(settings, run_id),
            dataset_name=settings.dataset_name,
        )
        _route_dlt_logs_through_ours()
        try:
            yield created
        finally:
            with destination_lock(settings):
                _drop_staging_dataset(created)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def destination_types(pipeline: Any, table: str) -> dict[str, str]:
    """Column -> dlt data type of `table` as the destination has it (restored by dlt)."""
    if not pipeline.default_schema_name:
        return {}
    columns = pipeline.default_schema.get_table_columns(table)
    return {
        name: str(column["data_type"]) for name, column in columns.items() if "data_type" in column
    }
