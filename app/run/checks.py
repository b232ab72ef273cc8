"""Data-quality gates over one file's transformed batches (pure: no I/O).

Row-level checks run on every batch as it streams; whole-file checks (min_rows, freshness)
run when the file ends. Either way the failure comes before the load commits, so a failing
file is never half-loaded.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from core.errors import QualityCheckError
from core.spec import ChecksSpec


def has_checks(spec: ChecksSpec) -> bool:
    return bool(
        spec.not_null
        or spec.unique
        or spec.accepted_values
        or spec.range
        or spec.min_rows
        or spec.freshness
    )


class FileChecks:
    def __init__(self, spec: ChecksSpec, pipeline: str, where: str, now: datetime | None = None):
        self.spec = spec
        self.pipeline = pipeline
        self.where = where
        self.now = now or datetime.now(UTC)
        self.rows = 0
        self.newest: datetime | None = None
        self._seen_keys: set[tuple[Any, ...]] = set()

    def batch(self, table: pa.Table) -> None:
        self.rows += table.num_rows
        for column in self.spec.not_null:
            nulls = self._column(table, column).null_count
            if nulls:
                self._fail("not_null", column, f"{nulls} null value(s)")
        for column, accepted in self.spec.accepted_values.items():
            values = self._column(table, column)
            allowed = pc.is_in(values, value_set=pa.array(accepted).cast(values.type, safe=False))
            outside = pc.filter(values, pc.invert(pc.fill_null(allowed, True)))
            if len(outside):
                examples = sorted({str(v) for v in outside.to_pylist()})[:5]
                self._fail("accepted_values", column, f"unexpected values {examples}")
        for column, bound in self.spec.range.items():
            low, high = pc.min_max(self._column(table, column)).as_py().values()
            if bound.min is not None and low is not None and low < bound.min:
                self._fail("range", column, f"value {low} is below {bound.min}")
            if bound.max is not None and high is not None and high > bound.max:
                self._fail("range", column, f"value {high} is above {bound.max}")
        if self.spec.unique:
            self._check_unique(table)
        if self.spec.freshness:
            newest = pc.max(self._column(table, self.spec.freshness.column)).as_py()
            if newest is not None and (self.newest is None or newest > self.newest):
                self.newest = newest

    def finish(self) -> None:
        if self.rows < self.spec.min_rows:
            self._fail(
                "min_rows", None, f"{self.rows} row(s), at least {self.spec.min_rows} needed"
            )
        freshness = self.spec.freshness
        if freshness and self.rows:
            limit = timedelta(hours=freshness.max_age_hours)
            newest = self.newest
            if newest is not None and newest.tzinfo is None:
                newest = newest.replace(tzinfo=UTC)
            if newest is None or self.now - newest > limit:
                self._fail(
                    "freshness",
                    freshness.column,
                    f"newest value {newest} is older than {freshness.max_age_hours} h",
                )

    def _check_unique(self, table: pa.Table) -> None:
        keys = self.spec.unique
        columns = [self._column(table, column).to_pylist() for column in keys]
        before = len(self._seen_keys)
        self._seen_keys.update(zip(*columns, strict=True))
        if len(self._seen_keys) - before < table.num_rows:
            self._fail("unique", ", ".join(keys), "duplicate key values")

    def _column(self, table: pa.Table, column: str) -> pa.ChunkedArray:
        if column not in table.column_names:
            self._fail("config", column, "column not found after the transform")
        return table.column(column)

    def _fail(self, check: str, column: str | None, problem: str) -> None:
        on = f" on '{column}'" if column else ""
        raise QualityCheckError(
            f"{self.where}: check {check}{on} failed: {problem}; the file was not loaded",
            pipeline=self.pipeline,
            details={"uri": self.where, "check": check, "column": column},
        )
