"""BigQuery: Application Default Credentials in production, the local emulator in tests.

The same function names as duckdb/destination.py; app/destinations/registry.py picks one by
`settings.destination_kind`.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.destinations.writers import GcsLease, table_writer
from core import failpoints
from core.lineage import SOURCE_URI_COLUMN
from core.settings import Settings
from core.spec import DestinationSpec
from sources.files.storage import storage_client_factory

_log = logging.getLogger("ferry.bigquery")

SQL_TYPES = {"text": "STRING", "bigint": "INT64", "double": "FLOAT64", "timestamp": "TIMESTAMP"}

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
    _truncate_side_by_side()
    _replace_staging_by_load()
    _look_at_load_jobs_sooner()
    _complete_loads_by_streaming_insert()
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


_replaced: dict[str, dict[str, str]] = {}
"""Staging dataset -> {table: the file id of its one load file} of the load being set up."""

_REPLACING_FORMATS = {"parquet": "PARQUET", "jsonl": "NEWLINE_DELIMITED_JSON"}


def _replace_staging_by_load() -> None:
    """Before loading a merge into the kept staging dataset, dlt empties each staged table (a
    TRUNCATE per table, ~1.5 s) and then appends to it. A table loaded from one local file
    instead skips the TRUNCATE, and its load job replaces the table's rows (`WRITE_TRUNCATE`):
    the same empty-then-fill, in one job. Only a one-file table (two replacing jobs of one
    table would race), matched by the file's id (a set-up left from another load never
    applies). dlt's own job sets `WRITE_APPEND` with no way to change it, so ferry makes that
    job itself: dlt's configuration, with that one field changed."""
    from collections import Counter

    from dlt.destinations.impl.bigquery.bigquery import BigQueryClient, BigQueryLoadJob
    from dlt.destinations.impl.bigquery.bigquery_adapter import should_autodetect_schema
    from dlt.load import load as loader

    init_client = getattr(loader, "init_client")  # noqa: B009 - not in the module's exports
    if getattr(init_client, "_ferry_replaces", False):
        return
    initialize_storage = BigQueryClient.initialize_storage
    create_load_job = BigQueryClient._create_load_job

    def staging_name(client: BigQueryClient) -> str:
        return str(client.sql_client.fully_qualified_dataset_name(quote=False))

    def autodetects(client: BigQueryClient, name: str) -> bool:
        prepared = client.prepare_load_table(name)
        return prepared is None or should_autodetect_schema(prepared)

    def noting_init_client(
        job_client: Any, schema: Any, new_jobs: Any, *args: Any, **kwargs: Any
    ) -> Any:
        new_jobs = list(new_jobs)
        staged = args[2] if len(args) > 2 else kwargs.get("load_staging_filter")
        if isinstance(job_client, BigQueryClient) and staged is not None:
            files = Counter(job.table_name for job in new_jobs)
            replaced = {
                job.table_name: job.file_id
                for job in new_jobs
                if files[job.table_name] == 1
                and job.file_format in _REPLACING_FORMATS
                and staged(job.table_name)
                and not autodetects(job_client, job.table_name)
            }
            with job_client.with_staging_dataset():
                _replaced[staging_name(job_client)] = replaced
        return init_client(job_client, schema, new_jobs, *args, **kwargs)

    def skipping_initialize_storage(self: BigQueryClient, truncate_tables: Any = None) -> None:
        if self.in_staging_dataset_mode and truncate_tables:
            replaced = _replaced.get(staging_name(self), {})
            truncate_tables = [table for table in truncate_tables if table not in replaced]
        initialize_storage(self, truncate_tables)

    def replacing_create_load_job(self: BigQueryClient, table: Any, file_path: str) -> Any:
        from dlt.common.storages.load_package import ParsedLoadJobFileName
        from google.cloud import bigquery

        parsed = ParsedLoadJobFileName.parse(file_path)
        replaced = _replaced.get(staging_name(self), {}) if self.in_staging_dataset_mode else {}
        if replaced.get(parsed.table_name) != parsed.file_id:
            return create_load_job(self, table, file_path)
        file_format = _REPLACING_FORMATS[parsed.file_format]
        job_config = bigquery.LoadJobConfig(
            autodetect=False,
            write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
            create_disposition=bigquery.CreateDisposition.CREATE_NEVER,
            source_format=file_format,
            decimal_target_types=["NUMERIC", "BIGNUMERIC"] if file_format == "PARQUET" else None,
            ignore_unknown_values=self.config.ignore_unknown_values,
            max_bad_records=0,
        )
        qualified = self.sql_client.make_qualified_table_name(table["name"], quote=False)
        with Path(file_path).open("rb") as file:
            return self.sql_client.native_connection.load_table_from_file(
                file,
                qualified,
                job_id=BigQueryLoadJob.get_job_id_from_file_path(file_path),
                job_config=job_config,
                timeout=self.config.file_upload_timeout,
            )

    noting_init_client._ferry_replaces = True  # type: ignore[attr-defined]
    setattr(loader, "init_client", noting_init_client)  # noqa: B010
    BigQueryClient.initialize_storage = skipping_initialize_storage  # type: ignore[method-assign]
    BigQueryClient._create_load_job = replacing_create_load_job  # type: ignore[method-assign]


def _truncate_side_by_side() -> None:
    """dlt empties a merge's staging tables before loading them with one script of TRUNCATE
    statements, which BigQuery runs one after another (a CDC push's three tables: ~4.5 s).
    Each table's TRUNCATE is its own query job here, all at once: as long as one of them."""
    from dlt.destinations.impl.bigquery.sql_client import BigQuerySqlClient

    original = BigQuerySqlClient.truncate_tables
    if getattr(original, "_ferry_side_by_side", False):
        return

    def truncate_tables(self: BigQuerySqlClient, *tables: str) -> None:
        if len(tables) < 2:
            original(self, *tables)
            return
        # the google client is thread-safe; each statement opens a DB-API connection of its own
        with ThreadPoolExecutor(len(tables), thread_name_prefix="truncate") as pool:
            list(pool.map(lambda table: original(self, table), tables))

    truncate_tables._ferry_side_by_side = True  # type: ignore[attr-defined]
    BigQuerySqlClient.truncate_tables = truncate_tables  # type: ignore[method-assign,assignment]


def _complete_loads_by_streaming_insert() -> None:
    """dlt marks a load complete with an `INSERT INTO _dlt_loads` statement, after every job
    of the load: on BigQuery a DML job (~1.5 s) on every push, and a place in the DML queue of
    a table every pipeline of the dataset shares. The same row goes in by a streaming insert
    (`tabledata.insertAll`: one REST call, no job, no DML), the way the run log does; dlt's
    statement still runs if that fails (a table created moments ago may not take streamed
    rows yet). Streamed rows are read by the next query at once; nothing ever updates or
    deletes `_dlt_loads` rows, which the streaming buffer would refuse for a while."""
    from dlt.common.schema.utils import loads_table, normalize_table_identifiers
    from dlt.destinations.impl.bigquery.bigquery import BigQueryClient

    original = BigQueryClient.complete_load
    if getattr(original, "_ferry_streams", False):
        return

    def complete_load(self: BigQueryClient, load_id: str) -> None:
        failpoints.hit("before_load_marked")  # every job done, the load not counted yet
        names = list(normalize_table_identifiers(loads_table(), self.schema.naming)["columns"])
        values = [
            load_id,
            self.schema.name,
            0,
            datetime.now(UTC).isoformat(),
            self.schema.version_hash,
        ]
        table = self.sql_client.make_qualified_table_name(self.schema.loads_table_name, quote=False)
        try:
            errors = self.sql_client.native_connection.insert_rows_json(
                table, [dict(zip(names, values, strict=True))], row_ids=[load_id]
            )
        except Exception as error:
            errors = [{"error": str(error)}]
        if errors:
            _log.info("streaming %s into %s failed (%s): inserting", load_id, table, errors)
            original(self, load_id)

    complete_load._ferry_streams = True  # type: ignore[attr-defined]
    BigQueryClient.complete_load = complete_load  # type: ignore[method-assign,assignment]


_FIRST_LOOK_SECONDS = 0.1
"""A load job's first look at its job; each next one waits twice as long, up to dlt's 1 s."""

_looks = threading.local()


def _look_at_load_jobs_sooner() -> None:
    """dlt's BigQuery load job sleeps a fixed 1 s before each look at its job (`jobs.get`; not
    configurable), so a small load job done in ~2 s is seen up to a second late, and every
    push waits that second. It looks after 0.1 s, 0.2 s, 0.4 s, ... up to dlt's 1 s instead:
    a few more `jobs.get` calls (no job, no quota) for up to ~0.9 s less per load."""
    from dlt.destinations.impl.bigquery import bigquery as impl

    if getattr(getattr(impl, "sleep"), "_ferry_backs_off", False):  # noqa: B009
        return
    fixed_sleep = getattr(impl, "sleep")  # noqa: B009 - not in the module's exports
    run = impl._BigQueryLoadJobBase.run

    def looking_run(self: Any) -> None:
        _looks.count = 0  # each job runs on a thread of dlt's pool, one at a time
        run(self)

    def backing_off_sleep(sleep_seconds: float) -> None:
        count = getattr(_looks, "count", 0)
        _looks.count = count + 1
        fixed_sleep(min(sleep_seconds, _FIRST_LOOK_SECONDS * 2**count))

    backing_off_sleep._ferry_backs_off = True  # type: ignore[attr-defined]
    setattr(impl, "sleep", backing_off_sleep)  # noqa: B010
    impl._BigQueryLoadJobBase.run = looking_run  # type: ignore[method-assign]


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
    drop_dataset = BigQuerySqlClient.drop_dataset
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
        drop_dataset(self)

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
    """Stream `rows` into `table` (`tabledata.insertAll`: one REST call, no job, no DML, so no
    place in the table's DML queue); `ids` are BigQuery's best-effort de-duplication ids, and
    readers keep one row per id anyway. False when the table does not exist yet."""
    from google.api_core.exceptions import NotFound

    qualified = f"{client.project_id}.{client.dataset_name}.{table}"
    try:
        errors = client.native_connection.insert_rows_json(qualified, rows, row_ids=ids)
    except NotFound:
        return False
    if errors:
        raise RuntimeError(f"streaming insert into {qualified} failed: {errors}")
    return True


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
