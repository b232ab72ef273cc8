"""BigQuery: Application Default Credentials in production, the local emulator in tests.

The same function names as duckdb/destination.py; app/destinations/registry.py picks one by
`settings.destination_kind`.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any

from app.destinations.bigquery import load_steps
from app.destinations.bigquery.streaming import stream_rows
from app.destinations.writers import GcsLease, table_writer
from core.lineage import SOURCE_URI_COLUMN
from core.settings import Settings
from core.spec import DestinationSpec

SQL_TYPES = {"text": "STRING", "bigint": "INT64", "double": "FLOAT64", "timestamp": "TIMESTAMP"}

STREAMED_APPENDS = False
"""Appends load through dlt's load step only (see streamed_append)."""

STREAMING_INSERTS = True
"""Side-table rows (the run log) go in by `append_rows`, not by a MERGE statement."""

KEEPS_STAGING = True
"""A kept pipeline keeps its staging dataset across runs (pipeline.kept_pipeline_for)."""

APPENDS_NEW_OBJECTS = True
"""An append pipeline's objects that have no rows yet are appended (one load job into the
table, no staging table, no delete-insert): plan._append_guard."""

APPEND_UNDER_LOCK = False
"""No lock spans instances by default: an append is not looked at again right before its
commit (the writer lease, when set, is held for the load step only, not from the plan's
ledger read)."""


def make_destination(settings: Settings, staging_layout: str) -> Any:
    import dlt

    _skip_empty_truncate_scripts()
    _stream_rows_checked()
    load_steps.adapt_dlt_loader()
    _remember_what_exists()
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


def _skip_empty_truncate_scripts() -> None:
    """dlt's BigQuery client truncates "tables that may not exist" with a script that starts
    `DECLARE table_exists BOOL` and adds one IF per table; it sends that script even with no
    table (three times per load), and on BigQuery every script is a query job (~0.7 s each).
    With no table to truncate there is nothing to run."""
    from dlt.destinations.impl.bigquery.sql_client import BigQuerySqlClient

    original = BigQuerySqlClient.truncate_tables_if_exist
    if getattr(original, "_ferry_skips_empty", False):
        return

    def truncate_tables_if_exist(self: BigQuerySqlClient, *tables: str) -> None:
        if tables:
            original(self, *tables)

    truncate_tables_if_exist._ferry_skips_empty = True  # type: ignore[attr-defined]
    BigQuerySqlClient.truncate_tables_if_exist = truncate_tables_if_exist  # type: ignore[method-assign]


def _stream_rows_checked() -> None:
    """dlt streams a table hinted `x-insert-api: streaming` (appended_table_hints) from its
    Parquet load file in Arrow batches, which it hands to `insert_rows_json` as they are (a
    TypeError), and it drops the per-row errors `insertAll` answers with (rows lost, load
    complete). Here the rows go in as dicts, by `append_rows`, and an error fails the job."""
    from dlt.destinations.impl.bigquery import bigquery as impl

    if getattr(impl._streaming_load, "_ferry_checked", False):
        return

    def streaming_load(items: Any, table: dict[str, Any], job_client: Any) -> None:
        rows = items.to_pylist() if hasattr(items, "to_pylist") else list(items)
        # `_dlt_id` is per row and stays the same when dlt retries the job: BigQuery's
        # best-effort de-duplication id
        ids = [str(row.get("_dlt_id") or index) for index, row in enumerate(rows)]
        if not append_rows(job_client.sql_client, table["name"], rows, ids):
            raise RuntimeError(f"streaming insert into {table['name']}: no such table")

    streaming_load._ferry_checked = True  # type: ignore[attr-defined]
    impl._streaming_load = streaming_load


_KNOWN_SECONDS = 600.0
"""How long this process trusts that a dataset, or a stored schema version, it saw exists."""

_known: dict[tuple[str, ...], tuple[float, Any]] = {}


def forget_known() -> None:
    """A run failed: ask BigQuery again next time (a dataset or table may have gone)."""
    _known.clear()


def _recall(key: tuple[str, ...]) -> Any:
    seen = _known.get(key)
    if seen is None or time.monotonic() - seen[0] > _KNOWN_SECONDS:
        return None
    return seen[1]


def client_endpoint() -> str | None:
    """Where a Google client made now would go, when not to BigQuery itself: the client takes
    its endpoint from BIGQUERY_EMULATOR_HOST when it is made (not from Settings), so a
    pipeline kept past a change of that variable (in tests: one emulator stopped, the next
    started, or none) would reach another endpoint, or BigQuery, with a late drop."""
    import os

    return os.environ.get("BIGQUERY_EMULATOR_HOST")


_DROP_DEADLINE_SECONDS = 10.0


def _delete_dataset(client: Any, dataset: str) -> None:
    """One `datasets.delete` (a metadata call) instead of dlt's `DROP SCHEMA … CASCADE` query
    job, retried for _DROP_DEADLINE_SECONDS at most: the query's default retry runs for ten
    minutes, so a drop given up on a background thread against an endpoint gone since (a
    pipeline that failed) outlived its process, and its frozen thread leaked DuckDB's
    module objects at exit (the `nanobind: leaked …` lines)."""
    from google.api_core.retry import Retry
    from google.cloud.bigquery.retry import DEFAULT_RETRY

    retry: Retry = DEFAULT_RETRY.with_timeout(_DROP_DEADLINE_SECONDS)
    client.delete_dataset(
        dataset, delete_contents=True, not_found_ok=True, retry=retry, timeout=10.0
    )


def _remember_what_exists() -> None:
    """dlt asks before every load whether the dataset and the staging dataset exist
    (`datasets.get`, three per load) and whether the schema version is stored (a query on
    `_dlt_version` in each, ~0.7 s apiece). A warm instance loads into the same datasets
    with the same schema version again and again: it remembers a yes for _KNOWN_SECONDS, and
    forgets everything when a run fails or ferry drops a dataset. A no is never
    remembered, so dlt still creates and migrates as before."""
    from dlt.destinations.impl.bigquery.bigquery import BigQueryClient
    from dlt.destinations.impl.bigquery.sql_client import BigQuerySqlClient

    if getattr(BigQuerySqlClient.has_dataset, "_ferry_remembers", False):
        return
    has_dataset = BigQuerySqlClient.has_dataset
    by_hash = BigQueryClient.get_stored_schema_by_hash

    def remembered_has_dataset(self: BigQuerySqlClient) -> bool:
        key = ("dataset", self.fully_qualified_dataset_name(quote=False))
        if _recall(key):
            return True
        found = has_dataset(self)
        if found:
            _known[key] = (time.monotonic(), True)
        return found

    def forgetting_drop_dataset(self: BigQuerySqlClient) -> None:
        forget_known()
        _delete_dataset(self.native_connection, self.fully_qualified_dataset_name(quote=False))

    def remembered_by_hash(self: BigQueryClient, version_hash: str) -> Any:
        dataset = self.sql_client.fully_qualified_dataset_name(quote=False)
        key = ("schema", dataset, self.schema.version_table_name, version_hash)
        info = _recall(key)
        if info is None:
            info = by_hash(self, version_hash)
            if info is not None:
                _known[key] = (time.monotonic(), info)
        return info

    remembered_has_dataset._ferry_remembers = True  # type: ignore[attr-defined]
    BigQuerySqlClient.has_dataset = remembered_has_dataset  # type: ignore[method-assign]
    BigQuerySqlClient.drop_dataset = forgetting_drop_dataset  # type: ignore[method-assign,assignment]
    BigQueryClient.get_stored_schema_by_hash = remembered_by_hash  # type: ignore[method-assign,assignment]


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


def append_rows(client: Any, table: str, rows: list[dict[str, Any]], ids: list[str]) -> bool:
    """Stream `rows` into `table` of the client's dataset (streaming.py); `ids` are BigQuery's
    best-effort de-duplication ids, and readers keep one row per id anyway. False when the
    table does not exist yet."""
    return stream_rows(client, f"{client.project_id}.{client.dataset_name}.{table}", rows, ids)


def streamed_append(
    pipeline: Any, settings: Settings, table: str, schema: Any, columns: Sequence[str], load_id: str
) -> None:
    """None: a BigQuery load is one load job of the run's files, which dlt's load step
    starts once they are written (a streaming insert would cost more and land later)."""
    return None


def appended_table_hints() -> dict[str, Any]:
    """dlt table hints for a small append-only table every pipeline of the dataset shares
    (`_ferry_objects`): dlt streams its rows (`tabledata.insertAll`) within the load instead
    of a load job (a table operation per push) or a MERGE (DML: 2 running and 20 queued per
    table, the dataset's pushes in one queue)."""
    return {"x-insert-api": "streaming"}


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
        # here, not at the top: `sources.files` imports pyarrow (0.2 s), which the
        # service's start leaves to its background preload
        from sources.files.storage import storage_client_factory

        client = storage_client_factory(settings)

        def lease() -> GcsLease:
            return GcsLease(client(), bucket, name, settings.writer_lease_seconds)

    return table_writer(key, timeout=settings.writer_wait_seconds, lease=lease)


def list_datasets(client: Any, settings: Settings) -> list[str]:
    """Datasets of the project (`client`: the pipeline's dlt SQL client)."""
    bigquery = client.native_connection
    return [item.dataset_id for item in bigquery.list_datasets(settings.bigquery_project)]


def last_modified(client: Any, settings: Settings, name: str) -> datetime | None:
    """When a table of dataset `name` last changed (its creation if it holds none); None
    when it is gone."""
    from google.api_core.exceptions import NotFound

    bigquery = client.native_connection
    dataset = f"{settings.bigquery_project}.{name}"
    try:
        times = [
            bigquery.get_table(item.reference).modified for item in bigquery.list_tables(dataset)
        ]
        if not times:
            times = [bigquery.get_dataset(dataset).created]
    except NotFound:
        return None
    known = [time for time in times if time is not None]
    return max(known) if known else None


def drop_dataset(client: Any, settings: Settings, name: str) -> None:
    forget_known()
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
