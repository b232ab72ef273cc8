"""A big append written into its DuckDB table while the run still reads, committed at load.

On DuckDB the load half of a big file is DuckDB compressing and writing its table (5 CPU-s
for 5M `trips` rows, 20 for `orders`), and dlt's load step starts only once the whole file
is read and normalized: each half leaves a core idle. Here the data table's rows go into
the table as they are read, on a thread of their own, inside one transaction that stays
open until the run's load: no other connection sees them before `commit`, and a run that
fails or is killed leaves nothing (DuckDB rolls the transaction back). No Parquet file is
written for them either.

What dlt still does: it learns the table from a zero-row slice of the first batch (the
caller's), its own DDL creates the table or adds columns before the first insert
(`_ddl`), and its load step, right after `commit`, loads the rest (the ledger, rejects) and
writes `_dlt_loads`. So the order of commits is dlt's own: the data table first, the load
marker last; a crash between them leaves rows whose load never completed, which the
object's redelivery merges over (ledger.py).

The caller holds the DuckDB lock from `open_append` to the end of the load, so no other
writer can come between.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from core.lineage import LOAD_ID_COLUMN
from core.settings import Settings

if TYPE_CHECKING:
    from duckdb import DuckDBPyConnection

QUEUED_TABLES = 1
"""Tables waiting for the insert thread: bounds memory; the reader waits beyond it."""

_DONE = object()
_POLL_S = 0.1
_VIEW = "ferry_streamed_batch"


class StreamedAppend:
    """Appends Arrow tables to one DuckDB table in an open transaction, on its own thread.

    One INSERT reads them all, as an Arrow stream fed by `append`: DuckDB then copies each
    batch into its table as it scans it. An INSERT per table held on to every inserted
    table's Arrow memory until the commit (0.9 GiB for 5M `trips` rows)."""

    def __init__(
        self, connection: DuckDBPyConnection, qualified_table: str, load_id: str, memory_limit: str
    ) -> None:
        self._connection = connection
        self._memory_limit = memory_limit
        # the load id as a constant of the query, not a column of every batch
        literal = "'" + load_id.replace("'", "''") + "'"
        self._insert = (
            f"INSERT INTO {qualified_table} BY NAME "  # noqa: S608 - dlt-escaped name, literal
            f"SELECT *, {literal} AS {LOAD_ID_COLUMN} FROM {_VIEW}"
        )
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=QUEUED_TABLES)
        self._error: BaseException | None = None
        self._open = True
        self._thread: threading.Thread | None = None
        self.rows = 0
        """Rows handed to the insert so far (all inserted once `commit` returned)."""

    def append(self, table: pa.Table) -> None:
        """Queue `table` (its columns all in the table, `_dlt_load_id` aside; every table
        with the first one's schema); waits while the insert is behind. Raises the insert's
        error, if it had one."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._insert_all, args=(table.schema,), name="ferry-append", daemon=True
            )
            self._thread.start()
        self._raise_if_failed()
        self._put(table)
        self._raise_if_failed()
        self.rows += table.num_rows

    def commit(self) -> int:
        """Wait for every queued table, then commit them all. Returns the rows committed."""
        self._finish_insert()
        self._raise_if_failed()
        self._connection.execute("COMMIT")
        self._open = False
        self._end()
        return self.rows

    def close(self) -> None:
        """Roll back what was not committed (a failed or abandoned run); idempotent."""
        if not self._open:
            return
        self._open = False
        self._finish_insert()
        try:
            self._connection.execute("ROLLBACK")
        finally:
            self._end()

    def _finish_insert(self) -> None:
        if self._thread is not None:
            self._put(_DONE)
            self._thread.join()

    def _put(self, item: Any) -> None:
        """Hand `item` to the insert thread, waiting while it is behind; nothing once that
        thread has ended (a failed insert still drains until `_DONE`)."""
        assert self._thread is not None
        while self._thread.is_alive():
            try:
                self._queue.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def _queued(self) -> Iterator[pa.RecordBatch]:
        while (table := self._queue.get()) is not _DONE:
            yield from table.to_batches()

    def _insert_all(self, schema: pa.Schema) -> None:
        try:
            stream = pa.RecordBatchReader.from_batches(schema, self._queued())
            self._connection.register(_VIEW, stream)
            self._connection.execute(self._insert)
            self._connection.unregister(_VIEW)
        except BaseException as error:  # raised to the run's thread by append/commit
            self._error = error
            while self._queue.get() is not _DONE:  # let append and commit through
                pass

    def _end(self) -> None:
        """Give the instance back its load-time memory cap, and close this connection."""
        try:
            self._connection.execute(f"SET memory_limit = '{self._memory_limit}'")
        finally:
            self._connection.close()


def open_append(
    pipeline: Any, settings: Settings, table: str, schema: Any, load_id: str
) -> StreamedAppend:
    """A streamed append into `table`, made to match `schema` (dlt's live schema of the
    extract, which has the table's columns) first."""
    import duckdb

    qualified = _ddl(pipeline, table, schema)
    connection = duckdb.connect(database=str(settings.resolved_duckdb_path.resolve()), config={})
    try:
        # the reader's batches are held beside DuckDB's insert: a smaller cap keeps the two
        # under the load's own peak (the cap is the instance's: `_end` restores dlt's)
        connection.execute(f"SET memory_limit = '{settings.duckdb_streamed_memory_limit}'")
        connection.execute("SET preserve_insertion_order = false")
        connection.execute("BEGIN TRANSACTION")
    except BaseException:
        connection.close()
        raise
    return StreamedAppend(connection, qualified, load_id, settings.duckdb_memory_limit)


def _ddl(pipeline: Any, table: str, schema: Any) -> str:
    """Create the table, or add its new columns, with dlt's own DDL for `schema`; committed
    at once (empty tables and columns are what dlt's load would make of them anyway)."""
    client = pipeline._get_destination_clients(schema)[0]
    with client:
        sql_client = client.sql_client
        if not sql_client.has_dataset():
            sql_client.create_dataset()
        # dlt's own tables too, as its load makes them all before any job: a ledger read
        # finds `_dlt_loads` whenever data rows exist, and so counts none of them loaded
        # until their load completes
        tables = [name for name in schema.dlt_table_names() if name in schema.tables]
        storage = client.get_storage_tables([*tables, table])
        statements, _ = client._build_schema_update_sql(list(storage))
        if statements:
            sql_client.execute_many(statements)
        return str(sql_client.make_qualified_table_name(table))


def columns_normalized(schema: Any, names: Sequence[str]) -> bool:
    """dlt stores every column under its normalized name: only a table whose names are
    already normalized can be inserted by name."""
    normalize = schema.naming.normalize_identifier
    return all(normalize(name) == name for name in names)
