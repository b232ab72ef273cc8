"""CSV parsed a line-aligned block at a time by Arrow's table reader, on both cores.

Arrow's streaming reader (`open_csv`) keeps ~1.2 cores busy: 5M `trips` rows take it 3.3 s
(4.1 CPU-s). Its table reader (`read_csv`), given the same stream in 8 MiB blocks cut at a
line end, parses each block's 1 MiB pieces in parallel: 2.2 s (3.9 CPU-s), and memory stays
one block and its table (bench/README.md, issue 21).

Cutting at a line end cannot split a row only where no value holds a newline (Arrow's
`newlines_in_values` off: it then ends a row at every newline too) and the text is UTF-8
(a byte 0x0A is a newline). The first block's column names and types are pinned for the
rest, so a file keeps one schema, as the streaming reader keeps the types it inferred from
its first block. Whatever Arrow refuses raises `BlockRefusedError`: the caller reads the file
again with the streaming reader, whose errors and rejects name their rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from copy import copy

import pyarrow as pa
import pyarrow.csv as pa_csv

from .blocks import LineTooLongError, line_blocks

_ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError)


class BlockRefusedError(Exception):
    """Arrow's table reader refused a block: read the file with the streaming reader (a
    signal inside the files source, never raised out of it)."""


def csv_tables(
    stream: pa.NativeFile,
    read_options: pa_csv.ReadOptions,
    parse_options: pa_csv.ParseOptions,
    convert_options: pa_csv.ConvertOptions,
    *,
    block_bytes: int,
    max_line_bytes: int,
) -> Iterator[pa.Table]:
    """One table per block of `stream`; the first (header included) may have no rows."""
    pinned = False
    try:
        for block in line_blocks(stream, block_bytes, max_line_bytes):
            try:
                table = pa_csv.read_csv(
                    pa.py_buffer(block),
                    read_options=read_options,
                    parse_options=parse_options,
                    convert_options=convert_options,
                )
            except _ARROW_ERRORS as error:
                raise BlockRefusedError(str(error)) from error
            if not pinned:
                read_options, convert_options = _pinned(read_options, convert_options, table)
                pinned = True
            yield table
    except LineTooLongError as error:
        raise BlockRefusedError(str(error)) from error


def _pinned(
    read_options: pa_csv.ReadOptions, convert_options: pa_csv.ConvertOptions, first: pa.Table
) -> tuple[pa_csv.ReadOptions, pa_csv.ConvertOptions]:
    """Options for the blocks after the first: no header, the first block's names and types."""
    rest_read, rest_convert = copy(read_options), copy(convert_options)
    rest_read.column_names = first.schema.names
    rest_read.skip_rows = 0
    rest_read.autogenerate_column_names = False
    rest_convert.column_types = {field.name: field.type for field in first.schema}
    return rest_read, rest_convert
