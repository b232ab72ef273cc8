"""Rows a file could not give in the declared shape, kept instead of failing the file."""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass, field

import pyarrow as pa

from core.errors import BadDataError


@dataclass(frozen=True)
class RejectedRow:
    row: int | None
    """1-based data row (the header is not a data row); None when unknown."""
    reason: str
    raw: str
    column: str | None = None


@dataclass
class Rejects:
    """Collects one file's rejected rows, up to a cap."""

    uri: str
    limit: int
    rows: list[RejectedRow] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    """Data rows the parser skipped (ragged CSV rows), sorted: rows after them are numbered
    past them."""

    def skip(self, data_row: int) -> None:
        bisect.insort(self.skipped, data_row)

    def data_row(self, parsed: int) -> int:
        """The data row of the `parsed`-th row the parser gave (1-based), counting the rows
        it skipped before it."""
        row = parsed
        for skipped in self.skipped:
            if skipped > row:
                break
            row += 1
        return row

    def add(self, row: RejectedRow) -> None:
        self.rows.append(row)
        if len(self.rows) > self.limit:
            raise BadDataError(
                f"{self.uri}: more than {self.limit} rejected rows (last: {row.reason}); the file "
                "is probably not in the declared format (see source.max_rejected_rows)",
                details={"uri": self.uri},
            )

    def take(self) -> list[RejectedRow]:
        taken, self.rows = self.rows, []
        return taken


def row_text(batch: pa.RecordBatch, index: int) -> str:
    """A rejected typed row, as the JSON object of its (still textual) values."""
    return json.dumps(
        {name: batch.column(i)[index].as_py() for i, name in enumerate(batch.schema.names)},
        default=str,
    )
