"""The extract loop of a file run: read each planned object, transform, check, add lineage,
conform to the run schema, and hand Arrow tables (data and rejects) to dlt."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from app.destinations.hints import (
    apply_hints,
    data_table_hints,
    key_columns,
    merged_columns,
    ordered_columns,
    rejects_hints,
    tombstone_hints,
)
from app.destinations.ledger import DELETED, EMPTIED, LOADED, object_row, objects_hints, retire
from app.destinations.pipeline import destination_types
from app.run.batches import RunSchema, add_lineage, apply_transform, refuse_reserved
from app.run.changes import ChangeMarker, partition_values, with_partition_columns
from app.run.checks import FileChecks, has_checks
from app.run.plan import FilePlan, Planned
from app.run.prefetch import prefetched
from app.run.quarantine import quarantine
from app.run.raw_zone import archive_object
from app.run.report import FileReport
from app.run.request import RunContext
from app.run.streamed_rows import DataRoute
from core import failpoints
from core.errors import BadDataError, FerryError, QualityCheckError
from core.lineage import DELETED_AT_COLUMN, OBJECTS_TABLE
from core.spec import FilesSource

log = logging.getLogger("ferry.files")

CHANGE_KINDS = ("applied", "upserts", "deletes", "tombstones")


@dataclass(frozen=True)
class DataBatch:
    """Rows for the destination table, before they are joined with their neighbours."""

    table: pa.Table


@dataclass(frozen=True)
class LedgerRow:
    """An object's `_ferry_objects` row (a one-row table), sent with the data of its load."""

    row: pa.Table


class FileExtractor:
    """Streams a file plan's objects as one dlt resource named for the destination table."""

    def __init__(
        self, run: RunContext, source: FilesSource, plan: FilePlan, storage_client: Any
    ) -> None:
        import dlt

        self.run = run
        self.source = source
        self.plan = plan
        self.storage_client = storage_client
        destination = run.spec.destination
        sequence = (destination.sequence,) if destination.sequence else ()
        self.run_schema = RunSchema(
            (*key_columns(destination), *sequence),
            destination_types(run.pipeline, destination.table),
        )
        self.rejects_hints = dlt.mark.make_hints(
            **rejects_hints(destination, keyed_by_object=plan.keyed_by_object)
        )
        self.objects_hints = dlt.mark.make_hints(**objects_hints(run.settings))
        # `_ferry_objects` exists once this pipeline loaded a ledger row (its schema then has
        # the table): until then every object is recorded, so that a ledger read finds it
        # (the BigQuery emulator reads a missing table in a UNION as empty, without an error)
        schema = run.pipeline.default_schema if run.pipeline.default_schema_name else None
        self.ledger_exists = schema is not None and OBJECTS_TABLE in schema.tables
        self.tombstone_hints = (
            dlt.mark.make_hints(**tombstone_hints(destination, plan.tombstones))
            if plan.tombstones is not None
            else None
        )
        engine = data_table_hints(destination, run.settings, lineage=True)
        columns = merged_columns(
            engine["columns"],
            ordered_columns(plan.order, hard_delete=self.tombstone_hints is not None)
            if plan.order is not None
            else {},
        )
        self.data_hints = (
            dlt.mark.make_hints(
                table_name=destination.table,
                columns=columns,
                additional_table_hints=engine["additional_table_hints"] or None,
            )
            if columns or engine["additional_table_hints"]
            else None
        )
        self.changes = (
            ChangeMarker(destination.cdc, destination.primary_key, destination.sequence)
            if destination.cdc is not None
            else None
        )
        self.data_route = DataRoute(run, plan, self._data)
        self.batch_bytes = self.data_route.batch_bytes(run.settings.batch_bytes)

    def resource(self) -> Any:
        import dlt

        # dlt inspects a plain generator function (not a bound method) for its resource.
        # Reading and transforming run a batch ahead in their own thread while dlt writes
        # Parquet in this one (dlt's `parallelized` alternates them instead of overlapping),
        # or the data route hands the rows to the engine's streamed append.
        def batches() -> Iterator[Any]:
            for item in prefetched(self._coalesced(self.batches())):
                if isinstance(item, DataBatch):
                    yield from self.data_route.route(item.table)
                else:
                    yield item

        resource = dlt.resource(batches, name=self.run.spec.destination.table)
        return apply_hints(
            resource,
            self.run.spec.destination,
            self.run.settings,
            lineage=True,
            keyed_by_object=self.plan.keyed_by_object,
            order=self.plan.order,
            adapt=False,  # the engine's hints are on the data items (data_hints)
        )

    def batches(self) -> Iterator[Any]:
        for plan, entry in self.plan.pending:
            yield from self._object(plan, entry)

    def _coalesced(self, items: Iterator[Any]) -> Iterator[Any]:
        """Join consecutive data tables up to the batch size, and send the objects' ledger
        rows as one table with them. dlt recomputes a table's schema for every Arrow item it
        is handed (~7 ms): a thousand small files were a thousand such items, and as many
        ledger rows. Tables are joined without copying; a table that differs in schema (a
        file with other columns) starts a new batch."""
        import dlt

        limit = self.batch_bytes
        tables: list[pa.Table] = []
        rows: list[pa.Table] = []
        pending_bytes = 0  # kept as a sum: `nbytes` walks every buffer of a table

        def flush() -> Iterator[Any]:
            nonlocal pending_bytes
            if tables:
                yield DataBatch(pa.concat_tables(tables))
            if rows:  # one schema by construction (ledger.object_row)
                ledger = pa.concat_tables(rows)
                yield dlt.mark.with_hints(ledger, self.objects_hints, create_table_variant=True)
            tables.clear()
            rows.clear()
            pending_bytes = 0

        for item in items:
            if isinstance(item, DataBatch):
                if tables and not item.table.schema.equals(tables[0].schema):
                    yield from flush()
                tables.append(item.table)
                pending_bytes += item.table.nbytes
                if pending_bytes >= limit:
                    yield from flush()
            elif isinstance(item, LedgerRow):
                rows.append(item.row)
            else:
                yield item
        yield from flush()

    def _object(self, plan: Planned, entry: FileReport) -> Iterator[Any]:
        if plan.deleted:
            entry.status = "deleted"
            yield from self._recorded(plan, DELETED, 0)
            return
        yield from self._read(plan, entry)
        status = LOADED if entry.rows_loaded else EMPTIED
        if status == LOADED and plan.lineage and self._rows_say_what_loaded:
            return
        yield from self._recorded(plan, status, entry.rows_loaded)

    @property
    def _rows_say_what_loaded(self) -> bool:
        """An append table's rows are only ever removed by their own object (a newer
        generation, an emptied or deleted one, which keep their ledger rows): an object that
        loaded rows is told by its rows' lineage and `_dlt_load_id` (ledger.read_lineage), and
        a ledger row would cost one more call per load (on BigQuery a streaming insert into
        `_ferry_objects`). A merge table's rows can be overwritten by other objects' changes,
        so there the ledger row stays."""
        destination = self.run.spec.destination
        append = destination.write_disposition == "append" and not destination.merge_key
        return append and self.ledger_exists and not self.plan.record_every_object

    def _recorded(self, plan: Planned, status: str, rows: int) -> Iterator[Any]:
        """The object's ledger row, committed in this load; then, for an object that emptied or
        vanished, the removal of its older rows once the load committed."""

        run = self.run
        table = run.spec.destination.table
        row = object_row(
            run.spec.name, table, plan.uri, plan.generation, run.request.run_id, rows, status
        )
        yield LedgerRow(row)
        if status in (EMPTIED, DELETED) and plan.lineage:
            pipeline, uri, generation = run.pipeline, plan.uri, plan.generation

            def remove_older_rows() -> None:
                retire(pipeline, table, uri, generation, inclusive=status == DELETED)

            run.after_commit.append(remove_older_rows)

    def _read(self, plan: Planned, entry: FileReport) -> Iterator[Any]:
        from sources.files import Rejects, read_batches

        run, obj = self.run, plan.obj
        if obj is None:  # a deleted object has nothing to read (handled by the caller)
            return
        log.info("read %s (generation %s, %s bytes)", obj.uri, obj.generation, obj.size)
        run.report.bytes_read += obj.size
        raw = run.spec.raw
        if raw is not None and not self.plan.replaying:
            archive_object(
                obj.uri,
                obj.generation,
                raw.prefix,
                run.spec.name,
                self.storage_client,
                run.catalog.base_dir,
            )
        rejects = Rejects(obj.uri, self.source.max_rejected_rows)
        checks = (
            FileChecks(run.spec.checks, run.spec.name, obj.uri)
            if has_checks(run.spec.checks)
            else None
        )
        partitions = partition_values(plan.uri, self.source.partition_columns)
        try:
            for batch in read_batches(
                obj,
                self.source,
                storage_client=self.storage_client,
                batch_bytes=self.batch_bytes,
                max_uncompressed_bytes=run.settings.max_uncompressed_bytes,
                rejects=rejects,
                max_columns=run.settings.max_columns,
            ):
                entry.rows_read += batch.num_rows
                run.report.rows_read += batch.num_rows
                started = time.perf_counter()
                if partitions:
                    batch = with_partition_columns(batch, partitions)
                table_out = apply_transform(batch, run.transform)
                refuse_reserved(table_out, obj.uri)
                self.run_schema.require_keys(table_out, obj.uri)
                if checks:
                    checks.batch(table_out)
                if self.changes:
                    table_out = self.changes.mark(table_out, obj.uri)
                    self._count_changes(table_out)
                if plan.lineage:
                    table_out = add_lineage(table_out, plan.uri, plan.generation)
                table_out = self.run_schema.conform(table_out, obj.uri)
                run.report.add_time("transform", time.perf_counter() - started)
                entry.rows_loaded += table_out.num_rows
                if table_out.num_rows:
                    yield DataBatch(table_out)
                    yield from self._tombstones(table_out)
                failpoints.hit("after_first_batch")
                yield from self._rejected(rejects, plan, entry)
                run.checkpoint()
            if checks:
                checks.finish()
        except (QualityCheckError, BadDataError) as error:
            self._set_aside(obj, entry, error)
            raise
        yield from self._rejected(rejects, plan, entry)

    def _data(self, table: pa.Table) -> Any:
        import dlt

        if self.data_hints is None:
            return table
        return dlt.mark.with_hints(table, self.data_hints, create_table_variant=True)

    def _count_changes(self, table: pa.Table) -> None:
        """Change rows by kind, for the report (a delete carries its mark)."""
        counts = self.run.report.changes
        if counts is None:
            counts = self.run.report.changes = dict.fromkeys(CHANGE_KINDS, 0)
        deletes = table.num_rows - table.column(DELETED_AT_COLUMN).null_count
        counts["applied"] += table.num_rows
        counts["deletes"] += deletes
        counts["upserts"] += table.num_rows - deletes

    def _tombstones(self, table: pa.Table) -> Iterator[Any]:
        """Hard-deleting CDC: the deletes of this batch, for `<table>__tombstones`."""
        import dlt

        if self.changes is None or self.tombstone_hints is None:
            return
        deletes = self.changes.tombstones(table)
        counts = self.run.report.changes
        if counts is not None:
            counts["tombstones"] += deletes.num_rows
        if deletes.num_rows:
            yield dlt.mark.with_hints(deletes, self.tombstone_hints, create_table_variant=True)

    def _set_aside(self, obj: Any, entry: FileReport, error: FerryError) -> None:
        """Mark the file failed and, if the pipeline says so, copy it to quarantine."""
        entry.status = "failed"
        entry.reason = error.message
        prefix = self.run.spec.checks.quarantine_prefix
        if prefix:
            copied = quarantine(
                obj.uri,
                obj.generation,
                prefix,
                pipeline=self.run.spec.name,
                reason=error.message,
                storage_client=self.storage_client,
                base_dir=self.run.catalog.base_dir,
            )
            if copied:
                error.details["quarantined_to"] = copied
                log.warning("quarantined %s to %s: %s", obj.uri, copied, error.message)

    def _rejected(self, rejects: Any, plan: Planned, entry: FileReport) -> Iterator[Any]:
        """Rejected rows so far, as a table for `<table>__rejects` in the same load."""
        import dlt

        rows = rejects.take()
        if not rows:
            return
        report = self.run.report
        entry.rows_rejected += len(rows)
        entry.rows_read += len(rows)
        report.rows_read += len(rows)
        report.rows_rejected += len(rows)
        table = pa.table(
            {
                "row": pa.array([r.row for r in rows], pa.int64()),
                "column": pa.array([r.column for r in rows], pa.string()),
                "reason": pa.array([r.reason for r in rows], pa.string()),
                "raw": pa.array([r.raw for r in rows], pa.string()),
            }
        )
        # a table variant: without it the hints stick to the resource and later batches of
        # data would be routed to the rejects table too
        yield dlt.mark.with_hints(
            add_lineage(table, plan.uri, plan.generation),
            self.rejects_hints,
            create_table_variant=True,
        )
