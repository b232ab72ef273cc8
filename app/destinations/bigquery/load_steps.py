"""How dlt's BigQuery loader runs a load, changed where it costs a push calls and seconds
(measured through bqsim in bench/bigquery.py; docs/architecture.md says why not dlt). Each
change is applied once per process, from `destination.make_destination`."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core import failpoints

_log = logging.getLogger("ferry.bigquery")


def adapt_dlt_loader() -> None:
    _truncate_side_by_side()
    _replace_staging_by_load()
    _look_at_load_jobs_sooner()
    _complete_loads_by_streaming_insert()


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
            if not any(staged(job.table_name) for job in new_jobs) and len(args) > 2:
                # nothing of this load is staged (new objects appended): dlt would still
                # create and migrate the staging dataset for every table that may ever be
                # staged, ~5 s of calls on a fresh pipeline's first load, under the writer
                args = (*args[:2], _stages_nothing, *args[3:])
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


def _stages_nothing(table: str) -> bool:
    return False


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

    from google.cloud.bigquery.retry import DEFAULT_RETRY

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
                table,
                [dict(zip(names, values, strict=True))],
                row_ids=[load_id],
                retry=DEFAULT_RETRY.with_timeout(_MARK_DEADLINE_SECONDS),
                timeout=_MARK_DEADLINE_SECONDS / 2,
            )
        except Exception as error:
            errors = [{"error": str(error)}]
        if errors:
            _log.info("streaming %s into %s failed (%s): inserting", load_id, table, errors)
            original(self, load_id)

    complete_load._ferry_streams = True  # type: ignore[attr-defined]
    BigQueryClient.complete_load = complete_load  # type: ignore[method-assign,assignment]


_MARK_DEADLINE_SECONDS = 30.0
"""The streamed `_dlt_loads` row is retried this long, then dlt's own INSERT takes over."""

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
