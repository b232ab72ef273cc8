"""JSON lines parsed by DuckDB's JSON reader: the declared columns only
(`source.undeclared_columns: ignore`), at about half the CPU of Arrow's reader.

Only there: DuckDB silently skips a field it did not see in its sample (and, told the
columns, every field it was not told), where ferry's inferring reader fails the file. Told the
declared columns, skipping the others is the contract.

A local file is read by its path; a gzip or Cloud Storage object comes as line-aligned blocks
of the files source's own stream, so its size cap and storage client still apply. Declared
columns are read as text (a float64 as DOUBLE, which loses nothing), so that casts, their
errors and rejected rows are cast_batch's, as for CSV: DuckDB's own casts round 2.5 into an
integer column. What DuckDB refuses (a line that is not a JSON object, text under a float64
column, a line longer than the read block) raises `RefusedError`, and the caller reads the
file again with the reference reader, whose errors and rejects name their lines.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

from core.spec import ArrowTypeName

from .blocks import LineTooLongError, line_blocks

if TYPE_CHECKING:
    from duckdb import DuckDBPyConnection

BATCH_ROWS = 8_192
"""Rows per Arrow batch out of DuckDB; the reader joins them up to batch_bytes. Small: on two
threads DuckDB holds finished batches for the reader, and 32,768-row ones took 5M `orders`
rows to 545 MiB (459 at 8,192)."""
THREADS = 2
"""DuckDB's threads per read (see _connection)."""

_READ_TYPES: dict[ArrowTypeName, str] = {"float64": "DOUBLE"}
"""Declared types DuckDB parses itself; the others come as text (VARCHAR)."""


class RefusedError(Exception):
    """DuckDB could not read the file as declared: read it with the reference reader
    (a signal inside the files source, never raised out of it)."""


def read_types(columns: Mapping[str, ArrowTypeName], *, as_text: bool) -> dict[str, str]:
    """The DuckDB type each declared column is read as (all text when rows may be rejected:
    one bad value then rejects its row in cast_batch instead of failing DuckDB's read)."""
    return {
        name: "VARCHAR" if as_text else _READ_TYPES.get(type_name, "VARCHAR")
        for name, type_name in columns.items()
    }


def path_batches(path: str, columns: Mapping[str, str]) -> Iterator[pa.RecordBatch]:
    """The declared columns of the local JSON-lines file at `path`."""
    with _connection() as connection:
        yield from _scan(connection, path, columns)


def stream_batches(
    stream: Any, columns: Mapping[str, str], *, block_bytes: int, max_line_bytes: int
) -> Iterator[pa.RecordBatch]:
    """The declared columns of a JSON-lines byte stream, read in line-aligned blocks."""
    with _connection() as connection:
        try:
            for block in line_blocks(stream, block_bytes, max_line_bytes):
                yield from _scan(connection, io.BytesIO(block), columns)
        except LineTooLongError as error:
            raise RefusedError(str(error)) from error


def _connection() -> DuckDBPyConnection:
    # two threads: a big run's rows are written by the destination on the other core while
    # the file is parsed (streamed_append), and the parse is the slower half on narrow rows
    # (5M `trips` 8.38 -> 7.56 s; `orders`, bound by its insert, 15.67 -> 16.03 s)
    return duckdb.connect(":memory:", config={"threads": THREADS})


def _scan(
    connection: DuckDBPyConnection, source: str | io.BytesIO, columns: Mapping[str, str]
) -> Iterator[pa.RecordBatch]:
    try:
        relation = connection.read_json(
            source, format="newline_delimited", records="true", columns=dict(columns)
        )
        for batch in relation.to_arrow_reader(BATCH_ROWS):
            if batch.num_rows:
                yield batch
    except (duckdb.Error, pa.ArrowException, OSError) as error:  # OSError: through Arrow's stream
        raise RefusedError(str(error)) from error
