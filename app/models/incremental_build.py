"""Build an incremental model: the whole SELECT on its first build (or when `watermark.py`
says the new loads alone would be wrong), else only the upstream rows of loads above its mark,
merged on `unique_key` or appended. A failure leaves the table and its mark as they were.

A model that cannot read new loads alone (`incremental.reads_whole`) keeps the behaviour it
had before ferry could: its whole SELECT merged on `unique_key` on every build.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlglot import exp

from app.models.incremental import (
    MODEL_LOAD_ID_COLUMN,
    definition_hash,
    incremental_select,
    output_names,
    reads_whole,
)
from app.models.report import ModelReport
from app.models.transpile import ModelQuery
from app.models.watermark import UpstreamNow, Watermark, Watermarks, whole_because
from core import failpoints
from core.errors import ModelFailedError
from core.lineage import LOAD_ID_COLUMN
from core.model_spec import ModelSpec

if TYPE_CHECKING:
    from app.models.materialize import Materializer


@dataclass(frozen=True)
class _Added:
    rows: int
    """Rows added to the table (all of its rows after a whole build)."""
    read: int
    """Upstream rows read."""
    newest: str
    """The newest `_ferry_load_id` in the table after the build ('' if none)."""


class IncrementalBuild:
    """One build of one incremental model through a Materializer's client."""

    def __init__(self, materializer: Materializer, run_id: str) -> None:
        self.m = materializer
        self.run_id = run_id
        self.marks = Watermarks(
            materializer.run, materializer.warehouse, materializer.kind, materializer.append
        )

    def build(
        self,
        spec: ModelSpec,
        model: ModelQuery,
        report: ModelReport,
        *,
        models: frozenset[str] = frozenset(),
        full_refresh: bool = False,
    ) -> int:
        """Rows merged or appended (the whole table on a full build)."""
        why = reads_whole(model, models)
        mark = None
        if why is None:
            (upstream,) = model.upstream
            mark = self.marks.read(spec.name)
            # a mark on this upstream: a build read its load ids already
            known = mark is not None and mark.upstream == upstream
            if not known and LOAD_ID_COLUMN not in self.m.columns(upstream):
                why = f"table {upstream} has no {LOAD_ID_COLUMN} column"
        if why is not None:
            if not spec.unique_key:
                raise ModelFailedError(
                    f"model '{spec.name}': an incremental model without unique_key appends "
                    f"the rows of new loads, so it must be able to read them alone, and {why}",
                    details={"model": spec.name},
                )
            report.reason = f"read all rows: {why}"
            # its rows stop matching any mark: were its SQL changed back, the old mark would
            # pass for current
            self.marks.forget(spec.name, self.run_id)
            return self.m.checked(spec, model.qualified(self.m.warehouse), "table")
        return self._by_loads(spec, model, upstream, mark, report, full_refresh)

    def _by_loads(
        self,
        spec: ModelSpec,
        model: ModelQuery,
        upstream: str,
        mark: Watermark | None,
        report: ModelReport,
        full_refresh: bool,
    ) -> int:
        exists = self.m.kind(spec.name) == "table"
        now = self.marks.upstream_now(upstream, mark, spec.name if exists and mark else None)
        definition = definition_hash(spec, model, self.m.warehouse)
        failpoints.hit("incremental_read")
        whole = (
            "it is built for the first time"
            if not exists
            else whole_because(mark, now, definition, full_refresh)
        )
        added = None
        if whole is None and mark is not None:  # (no mark: whole_because said why)
            added = self._new_loads(spec, model, mark, now)
        if added is None:
            report.reason = f"read all rows: {whole or 'its columns changed'}"
            added = self._whole(spec, model, now)
        report.rows_read = added.read
        failpoints.hit("incremental_record")
        self.marks.write(
            spec.name,
            Watermark(
                upstream=upstream,
                load_id=now.newest or "",
                upstream_rows=now.rows,
                loads=now.loads_at_newest,
                model_load_id=added.newest,
                definition=definition,
            ),
            self.run_id,
        )
        return added.rows

    def _whole(self, spec: ModelSpec, model: ModelQuery, now: UpstreamNow) -> _Added:
        select = incremental_select(model, self.m.warehouse, None, now.newest)
        temporary = self.m.temporary(spec.name)
        self.m.run(self.m.warehouse.create(temporary, select, "table"))
        try:
            rows, newest = self._rows_and_newest(temporary)
            self.m.check(spec, temporary, rows)
            self.m.swap(temporary, spec.name)
            return _Added(rows, now.rows, newest)
        finally:
            self.m.drop_quietly(temporary, "table")

    def _new_loads(
        self, spec: ModelSpec, model: ModelQuery, mark: Watermark, now: UpstreamNow
    ) -> _Added | None:
        """None when the new rows' columns differ from the table's (the upstream gained a
        column a `SELECT *` passes on): build it whole."""
        if now.newest is None or now.newest <= mark.load_id:
            return _Added(0, 0, mark.model_load_id)
        select = incremental_select(model, self.m.warehouse, mark.load_id, now.newest)
        names = output_names(select)
        if names is not None and not spec.checks.any:
            return self._straight(spec, select, names, mark, now)
        temporary = self.m.temporary(spec.name)
        self.m.run(self.m.warehouse.create(temporary, select, "table"))
        try:
            columns = self.m.columns(temporary)
            if columns != self.m.columns(spec.name):
                return None
            rows, newest = self._rows_and_newest(temporary)
            # min_rows is about the table the build leaves, not about one load's rows
            kept = self.m.count(spec.name) if spec.checks.min_rows else 0
            self.m.check(spec, temporary, rows + kept)
            if spec.unique_key:
                self.m.merge(spec, temporary)
            else:
                self._append(spec.name, temporary, columns)
            # every new row's load id is above the mark, so above every row the table held
            return _Added(rows, now.rows - now.rows_at_mark, max(newest, mark.model_load_id))
        finally:
            self.m.drop_quietly(temporary, "table")

    def _straight(
        self,
        spec: ModelSpec,
        select: exp.Query,
        names: list[str],
        mark: Watermark,
        now: UpstreamNow,
    ) -> _Added:
        """Nothing to check and columns fixed by the SQL (its hash is recorded): the new rows
        go straight from the SELECT into the table, without a table of their own (on
        BigQuery three jobs and two metadata calls fewer). What they were is read back as
        the table's rows above the mark: only new rows carry load ids above it."""
        source = self.m.warehouse.render(select)
        if spec.unique_key:
            self.m.merge(spec, "", columns=names, source=source)
        else:
            self.m.run(
                f"INSERT INTO {self.m.warehouse.name(spec.name)} ({self._quoted(names)}) {source}"
            )
        after = exp.Literal.string(mark.load_id).sql(dialect=self.m.warehouse.dialect)
        rows, newest = self._rows_and_newest(spec.name, f" WHERE {self._load_id()} > {after}")
        return _Added(rows, now.rows - now.rows_at_mark, max(newest, mark.model_load_id))

    def _rows_and_newest(self, table: str, where: str = "") -> tuple[int, str]:
        """`table`'s rows and newest `_ferry_load_id` ('' if none), in one query."""
        ((rows, newest),) = self.m.run(
            f"SELECT COUNT(*), MAX({self._load_id()}) "  # noqa: S608 - quoted by sqlglot
            f"FROM {self.m.warehouse.name(table)}{where}"
        )
        return int(rows or 0), "" if newest is None else str(newest)

    def _load_id(self) -> str:
        column = exp.to_identifier(MODEL_LOAD_ID_COLUMN, quoted=True)
        return column.sql(dialect=self.m.warehouse.dialect)

    def _quoted(self, columns: list[str]) -> str:
        dialect = self.m.warehouse.dialect
        return ", ".join(exp.to_identifier(c, quoted=True).sql(dialect=dialect) for c in columns)

    def _append(self, name: str, temporary: str, columns: list[str]) -> None:
        names = self._quoted(columns)
        self.m.run(
            f"INSERT INTO {self.m.warehouse.name(name)} ({names}) "  # noqa: S608 - quoted by sqlglot
            f"SELECT {names} FROM {self.m.warehouse.name(temporary)}"
        )
