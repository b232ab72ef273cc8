"""Build an incremental model: the whole SELECT on its first build (or when `watermark.py`
says the new loads alone would be wrong), else only the upstream rows of loads above its mark,
merged on `unique_key` or appended. A failure leaves the table and its mark as they were.

A model that cannot read new loads alone (`incremental.reads_whole`) keeps the behaviour it
had before ferry could: its whole SELECT merged on `unique_key` on every build.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlglot import exp

from app.models.incremental import definition_hash, incremental_select, reads_whole
from app.models.report import ModelReport
from app.models.transpile import ModelQuery
from app.models.watermark import UpstreamNow, Watermark, Watermarks, whole_because
from core import failpoints
from core.errors import ModelFailedError
from core.lineage import LOAD_ID_COLUMN
from core.model_spec import ModelSpec

if TYPE_CHECKING:
    from app.models.materialize import Materializer


class IncrementalBuild:
    """One build of one incremental model through a Materializer's client."""

    def __init__(self, materializer: Materializer, run_id: str) -> None:
        self.m = materializer
        self.run_id = run_id
        self.marks = Watermarks(materializer.run, materializer.warehouse, materializer.kind)

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
        if why is None:
            (upstream,) = model.upstream
            if LOAD_ID_COLUMN not in self.m.columns(upstream):
                why = f"table {upstream} has no {LOAD_ID_COLUMN} column"
        if why is not None:
            if not spec.unique_key:
                raise ModelFailedError(
                    f"model '{spec.name}': an incremental model without unique_key appends "
                    f"the rows of new loads, so it must be able to read them alone, and {why}",
                    details={"model": spec.name},
                )
            report.reason = f"read all rows: {why}"
            return self.m.checked(spec, model.qualified(self.m.warehouse), "table")
        return self._by_loads(spec, model, upstream, report, full_refresh)

    def _by_loads(
        self,
        spec: ModelSpec,
        model: ModelQuery,
        upstream: str,
        report: ModelReport,
        full_refresh: bool,
    ) -> int:
        exists = self.m.kind(spec.name) == "table"
        mark = self.marks.read(spec.name)
        now = self.marks.upstream_now(upstream, mark, spec.name if exists and mark else None)
        definition = definition_hash(spec, model, self.m.warehouse)
        failpoints.hit("incremental_read")
        whole = (
            "it is built for the first time"
            if not exists
            else whole_because(mark, now, definition, full_refresh)
        )
        rows: int
        if whole is None and mark is not None:
            read = self._new_loads(spec, model, mark, now)
            if read is None:
                whole = "its columns changed"
            else:
                rows, report.rows_read = read
        if whole is not None:
            report.reason = f"read all rows: {whole}"
            rows, report.rows_read = self._whole(spec, model, now), now.rows
        failpoints.hit("incremental_record")
        self.marks.write(
            spec.name,
            Watermark(
                upstream=upstream,
                load_id=now.newest or "",
                upstream_rows=now.rows,
                loads=now.loads_at_newest,
                model_load_id=self.marks.model_newest(spec.name),
                definition=definition,
            ),
            self.run_id,
        )
        return rows

    def _whole(self, spec: ModelSpec, model: ModelQuery, now: UpstreamNow) -> int:
        select = incremental_select(model, self.m.warehouse, None, now.newest)
        temporary = self.m.temporary(spec.name)
        self.m.run(self.m.warehouse.create(temporary, select, "table"))
        try:
            rows = self.m.count(temporary)
            self.m.check(spec, temporary, rows)
            self.m.swap(temporary, spec.name)
            return rows
        finally:
            self.m.drop_quietly(temporary, "table")

    def _new_loads(
        self, spec: ModelSpec, model: ModelQuery, mark: Watermark, now: UpstreamNow
    ) -> tuple[int, int] | None:
        """(rows added, upstream rows read); None when the new rows' columns differ from the
        table's (the upstream gained a column a `SELECT *` passes on): build it whole."""
        if now.newest is None or now.newest <= mark.load_id:
            return 0, 0
        select = incremental_select(model, self.m.warehouse, mark.load_id, now.newest)
        temporary = self.m.temporary(spec.name)
        self.m.run(self.m.warehouse.create(temporary, select, "table"))
        try:
            columns = self.m.columns(temporary)
            if columns != self.m.columns(spec.name):
                return None
            rows = self.m.count(temporary)
            # min_rows is about the table the build leaves, not about one load's rows
            kept = self.m.count(spec.name) if spec.checks.min_rows else 0
            self.m.check(spec, temporary, rows + kept)
            if spec.unique_key:
                self.m.merge(spec, temporary)
            else:
                self._append(spec.name, temporary, columns)
            return rows, now.rows - now.rows_at_mark
        finally:
            self.m.drop_quietly(temporary, "table")

    def _append(self, name: str, temporary: str, columns: list[str]) -> None:
        dialect = self.m.warehouse.dialect
        names = ", ".join(exp.to_identifier(c, quoted=True).sql(dialect=dialect) for c in columns)
        self.m.run(
            f"INSERT INTO {self.m.warehouse.name(name)} ({names}) "  # noqa: S608 - quoted by sqlglot
            f"SELECT {names} FROM {self.m.warehouse.name(temporary)}"
        )
