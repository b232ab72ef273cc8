"""BigQuery: Application Default Credentials in production, the local emulator in tests.

The same function names as duckdb/destination.py; app/destinations/registry.py picks one by
`settings.destination_kind`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from typing import Any

from app.destinations.writers import GcsLease, table_writer
from core.lineage import SOURCE_URI_COLUMN
from core.settings import Settings
from core.spec import DestinationSpec
from sources.files.storage import storage_client_factory

SQL_TYPES = {"text": "STRING", "bigint": "INT64", "double": "FLOAT64", "timestamp": "TIMESTAMP"}

APPEND_UNDER_LOCK = False
"""An object's rows are always merged on its URI (the writer lease, when set, is held for
the load step only, not from the plan's ledger read)."""


def make_destination(settings: Settings, staging_layout: str) -> Any:
    import dlt

    _without_storage_read_api()
    credentials = None
    if settings.bigquery_emulator_host:
        from google.oauth2.credentials import Credentials

        # the emulator: a static token dlt never refreshes (no gzip load files: pipeline_config)
        credentials = Credentials(token="emulator")  # noqa: S106
    # production: credentials=None means Application Default Credentials
    return dlt.destinations.bigquery(
        credentials=credentials,  # type: ignore[arg-type]
        project_id=settings.bigquery_project,
        location=settings.bigquery_location,
        staging_dataset_name_layout=staging_layout,
    )


def _without_storage_read_api() -> None:
    """ferry's queries (ledger, run log, model checks) return a few rows: the BigQuery Storage
    Read API would buy nothing and need another IAM permission, so it is not installed. dlt
    opens a DB-API connection per query with the client's default, which looks for it and
    warns each time that it is missing: that look-up is expected to fail here."""
    warnings.filterwarnings(
        "ignore",
        message="Cannot create BigQuery Storage client",
        category=UserWarning,
        module="google.cloud.bigquery",
    )


@contextmanager
def pipeline_config(settings: Settings) -> Iterator[None]:
    """dlt configuration while this engine's pipeline is in use in this thread: the emulator
    cannot read gzip load files, so dlt writes them uncompressed, for these pipelines only (a
    DuckDB pipeline in the same process still compresses)."""
    if not settings.bigquery_emulator_host:
        yield
        return
    _register_uncompressed()
    token = _uncompressed.set(True)
    try:
        yield
    finally:
        _uncompressed.reset(token)


_uncompressed: ContextVar[bool] = ContextVar("ferry_uncompressed_load_files", default=False)


def _register_uncompressed() -> None:
    """Add the provider to dlt's configuration once (dlt keeps providers per run context).
    Defined here, not at import: dlt loads only when a pipeline is made (a faster cold start)."""
    from dlt.common.configuration.container import Container
    from dlt.common.configuration.providers import ConfigProvider
    from dlt.common.configuration.specs.pluggable_run_context import PluggableRunContext

    providers = Container()[PluggableRunContext].providers
    if _PROVIDER_NAME in providers:
        return

    class UncompressedLoadFiles(ConfigProvider):
        """Answers dlt's `data_writer.disable_compression` with true inside `pipeline_config`
        of an emulator pipeline, and with nothing anywhere else (other providers decide)."""

        def get_value(
            self, key: str, hint: type[Any], pipeline_name: str | None, *sections: str
        ) -> tuple[Any | None, str]:
            if key == "disable_compression" and _uncompressed.get():
                return True, key
            return None, key

        @property
        def supports_secrets(self) -> bool:
            return False

        @property
        def supports_sections(self) -> bool:
            return False

        @property
        def name(self) -> str:
            return _PROVIDER_NAME

    providers.add_provider(UncompressedLoadFiles())


_PROVIDER_NAME = "ferry: BigQuery emulator load files"


@contextmanager
def lock(settings: Settings, timeout: float = 600.0) -> Iterator[None]:
    """No lock around reads: each run stages into its own dataset; writes take `writer`."""
    yield


def writer(settings: Settings, table: str) -> AbstractContextManager[None]:
    """Held from a load's last check to its last commit: one load of `table` at a time, in
    this instance and (with `writer_lease_prefix`) across instances. BigQuery runs loads of
    one table side by side otherwise, and a load commits table by table (writers.py)."""
    key = (settings.bigquery_project or "", settings.dataset_name, table)
    lease: Callable[[], GcsLease] | None = None
    prefix = settings.writer_lease_prefix
    if prefix:
        bucket, _, folder = prefix.removeprefix("gs://").partition("/")
        name = "/".join(part for part in (folder.strip("/"), ".".join(key) + ".lease") if part)
        client = storage_client_factory(settings)

        def lease() -> GcsLease:
            return GcsLease(client(), bucket, name, settings.writer_lease_seconds)

    return table_writer(key, timeout=settings.writer_wait_seconds, lease=lease)


def list_datasets(client: Any, settings: Settings) -> list[str]:
    """Datasets of the project (`client`: the pipeline's dlt SQL client)."""
    bigquery = client.native_connection
    return [item.dataset_id for item in bigquery.list_datasets(settings.bigquery_project)]


def drop_dataset(client: Any, settings: Settings, name: str) -> None:
    client.native_connection.delete_dataset(
        f"{settings.bigquery_project}.{name}", delete_contents=True, not_found_ok=True
    )


def adapt(resource: Any, destination: DestinationSpec, *, lineage: bool) -> Any:
    """Partition and cluster; file loads cluster on the source URI by default, which keeps
    the per-object delete of a merge cheap."""
    from dlt.destinations.adapters import bigquery_adapter

    cluster = destination.cluster or ([SOURCE_URI_COLUMN] if lineage else [])
    bigquery_adapter(
        resource,
        partition=destination.partition,  # type: ignore[arg-type]
        cluster=cluster or None,  # type: ignore[arg-type]
    )
    return resource


def describe(settings: Settings, tables: Sequence[str]) -> list[str]:
    """Where a person finds loaded tables and a query to look at each (the CLI's summary)."""
    dataset = f"{settings.bigquery_project}.{settings.bigquery_dataset}"
    lines = [f"data:  BigQuery dataset {dataset} ({settings.bigquery_location})"]
    for table in tables:
        sql = f"select * from `{dataset}.{table}` limit 10"  # noqa: S608 - shown, never run
        lines.append(f"look:  bq query --use_legacy_sql=false '{sql}'")
    return lines
