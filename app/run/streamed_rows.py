"""Where a file run's data tables go: to dlt's extract, or into the engine's streamed append.

A big run of new objects into an append table (`settings.streamed_append_bytes`, on an
engine with STREAMED_APPENDS) hands its rows to the engine as it reads them, so that the
destination writes its table on one core while the other reads on; they commit right
before dlt's load step (`commit`). Everything else, and any table whose columns differ
from the first streamed one, goes to dlt as before. dlt still sees a zero-row slice of the
first table, so its schema (column types, contracts) and its load job for the table stay.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pyarrow as pa

from app.destinations.pipeline import destination_lock
from app.destinations.registry import Appender, engine_for
from app.run.plan import FilePlan
from app.run.request import RunContext


class DataRoute:
    """Routes one file run's data tables (built once per run by the extractor)."""

    def __init__(self, run: RunContext, plan: FilePlan, mark: Callable[[pa.Table], Any]) -> None:
        self.run = run
        self.mark = mark
        """Wraps a table for dlt (the data table's hints)."""
        self.pending = _streams(run, plan)
        """True until the first table decides whether this run streams."""
        self.appender: Appender | None = None
        self.schema: pa.Schema | None = None
        self.table = ""
        """The destination table's name as dlt stores it."""

    def batch_bytes(self, configured: int) -> int:
        """Bytes per batch: half the configured size when streaming. Batches are then held on
        both sides at once (being read, being inserted), where otherwise the reader's are freed
        before the load starts: 5M `orders` rows peaked at 585 MiB in 8 MiB batches, 507 in 4."""
        return max(configured // 2, 1 << 20) if self.pending else configured

    def route(self, table: pa.Table) -> Iterator[Any]:
        """What to hand dlt for `table`: nothing once the append took it."""
        if self.pending:
            self.pending = False
            if _flat(table.schema):
                # dlt learns the table and its columns, as from any first item
                yield self.mark(table.slice(0, 0))
                self._open(table)
        if self.appender is not None and table.schema.equals(self.schema):
            self.appender.append(table)
            return
        yield self.mark(table)

    def commit(self) -> tuple[str, int] | None:
        """Commit the streamed rows (right before dlt's load): the table and its rows."""
        if self.appender is None:
            return None
        return self.table, self.appender.commit()

    def _open(self, table: pa.Table) -> None:
        import dlt

        run = self.run
        schema = dlt.current.source_schema()
        with ExitStack() as held:
            # no other writer from the first streamed row to the load's last commit
            held.enter_context(destination_lock(run.settings))
            name = schema.naming.normalize_table_identifier(run.spec.destination.table)
            appender = engine_for(run.settings).destination.streamed_append(
                run.pipeline, run.settings, name, schema, table.column_names, _load_id()
            )
            if appender is None:
                return
            held.callback(appender.close)
            run.held.enter_context(held.pop_all())  # held (then released) with the run
        self.appender, self.schema, self.table = appender, table.schema, name
        run.commit_streamed = self.commit


def _streams(run: RunContext, plan: FilePlan) -> bool:
    """New objects only (the append guard's plan), into a plain append table, big enough."""
    size = sum(planned.size for planned, _ in plan.pending)
    return (
        engine_for(run.settings).destination.STREAMED_APPENDS
        and plan.guard is not None
        and plan.order is None
        and plan.tombstones is None
        and run.spec.destination.cdc is None
        and size >= run.settings.streamed_append_bytes
    )


def _load_id() -> str:
    """The load package's id: dlt's extract gives every row it writes this `_dlt_load_id`."""
    import dlt

    return str(dlt.current.load_package_state()["load_id"])


def _flat(schema: pa.Schema) -> bool:
    """Only scalar columns stream: dlt stores nested values as JSON, a conversion of its own.
    DuckDB's insert matched it on a struct (tests/run/test_streamed_rows.py), but lists,
    maps and unions were not compared, so they keep dlt's path."""
    return not any(pa.types.is_nested(field.type) for field in schema)
