"""Streaming format readers: one object -> Arrow record batches, never the whole file in memory.

Each reader is pyarrow's native streaming reader (CSV and JSON parse block by block, Parquet
row group by row group), so memory stays a small multiple of `batch_bytes` whatever the file size.
"""

from __future__ import annotations

import codecs
import io
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pa_parquet

from core.arrow_types import ARROW_TYPES
from core.errors import (
    BadDataError,
    ConfigError,
    FerryError,
    SourceAccessDeniedError,
    SourceNotFoundError,
    SourceUnavailableError,
)
from core.spec import FilesSource

from .columns import cast_batch
from .csv_blocks import BlockRefusedError, csv_tables
from .helpers import FileKind, detect_kind
from .objects import SourceObject, StorageClientFactory, gcs_errors, open_seekable, open_stream
from .rejects import RejectedRow, Rejects
from .settings import (
    DEFAULT_BATCH_BYTES,
    GZIP_MAGIC,
    MAX_COLUMNS,
    MIN_READ_BLOCK_BYTES,
    READ_BLOCKS_PER_BATCH,
)

MAX_PARQUET_BATCH_ROWS = 131_072
PARQUET_READ_BUFFER_BYTES = 1 << 20
_ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError)
_CSV_COLUMN_ERROR = re.compile(r"In CSV column #(\d+): (?:Row #(\d+): )?(.*)", re.DOTALL)
_INFERRED_HINT = (
    "column types not declared under source.columns are inferred from the first block of "
    "each file, and a later block disagreed: declare the column type under source.columns"
)
_BLOCK_HINT = (
    "a row is longer than the read block (batch_bytes / 8, at least 1 MiB; raise "
    "batch_bytes), or a quote is never closed (set source.csv.newlines_in_values to "
    "false if values never span lines)"
)


@dataclass(frozen=True)
class _Read:
    """What every reader needs to know about the object it reads."""

    obj: SourceObject
    source: FilesSource
    kind: FileKind
    storage_client: StorageClientFactory
    batch_bytes: int
    max_uncompressed_bytes: int | None
    rejects: Rejects | None
    max_columns: int | None = None

    @property
    def uri(self) -> str:
        return self.obj.uri

    @property
    def block_bytes(self) -> int:
        """Arrow's read block: also the longest row it accepts."""
        block = max(self.batch_bytes // READ_BLOCKS_PER_BATCH, MIN_READ_BLOCK_BYTES)
        return min(block, self.batch_bytes)


def read_batches(
    obj: SourceObject,
    source: FilesSource,
    *,
    storage_client: StorageClientFactory,
    batch_bytes: int = DEFAULT_BATCH_BYTES,
    max_uncompressed_bytes: int | None = None,
    rejects: Rejects | None = None,
    max_columns: int | None = MAX_COLUMNS,
) -> Iterator[pa.RecordBatch]:
    """Stream `obj` as record batches of about `batch_bytes` input each, one schema per file.

    An empty file (or one with only a CSV header) yields nothing. Unreadable data raises
    BadDataError naming the file, and where known the column, value and row. With
    `source.on_bad_rows: reject`, ragged CSV rows and unconvertible values go to `rejects`
    (read it after each batch) and the file goes on. A file wider than `max_columns` is
    refused (BadDataError) as soon as its header or first block shows it, before any load.
    """
    if source.on_bad_rows == "reject" and rejects is None:
        rejects = Rejects(obj.uri, source.max_rejected_rows)
    read = _Read(
        obj,
        source,
        detect_kind(obj.uri, source.format),
        storage_client,
        batch_bytes,
        max_uncompressed_bytes,
        rejects if source.on_bad_rows == "reject" else None,
        max_columns,
    )
    if obj.size == 0:
        return
    with _read_errors(obj.uri):
        if read.kind.format == "parquet":
            yield from _parquet_batches(read)
        else:
            yield from _text_batches(read)


# --- CSV and JSON lines ---------------------------------------------------------------


def _text_batches(read: _Read) -> Iterator[pa.RecordBatch]:
    if read.kind.format == "jsonl" and read.source.undeclared_columns == "ignore":
        yield from _declared_json_batches(read)
        return
    if read.kind.format == "csv" and _in_blocks(read):
        yield from _csv_block_batches(read)
        return
    with _text_stream(read) as stream:
        if read.kind.format == "csv":
            yield from _csv_batches(stream, read)
        else:
            yield from _json_batches(stream, read)


def _in_blocks(read: _Read) -> bool:
    """Whether csv_blocks may read the file: more than one read block of UTF-8 text with no
    newline inside a value, and no rows to reject (those need the one-thread reader)."""
    options = read.source.csv
    return (
        read.obj.size > read.block_bytes
        and read.rejects is None
        and not options.newlines_in_values
        and _arrow_encoding(options.encoding) == "utf8"
    )


def _csv_block_batches(read: _Read) -> Iterator[pa.RecordBatch]:
    """The file through csv_blocks; a file it refuses is read again by the streaming reader
    (the reference: its errors name the row), after the rows already handed on."""
    read_options, parse_options = _csv_options(read)
    progress = _Progress()
    try:
        with _text_stream(read) as stream:
            tables = csv_tables(
                stream,
                read_options,
                parse_options,
                _csv_convert_options(read),
                block_bytes=read.batch_bytes,
                max_line_bytes=read.block_bytes,
            )
            yield from _rebatched(_checked_tables(tables, read), read, progress)
        return
    except BlockRefusedError:
        pass
    with _text_stream(read) as stream:
        yield from _csv_batches(stream, read, skip=progress.rows_yielded)


def _checked_tables(tables: Iterator[pa.Table], read: _Read) -> Iterator[pa.RecordBatch]:
    for index, table in enumerate(tables):
        if index == 0:
            _check_width(table.num_columns, read)
            _reject_binary(table.schema, read.uri)
        yield from table.to_batches()


@contextmanager
def _text_stream(read: _Read) -> Iterator[pa.NativeFile]:
    """The object's bytes, gunzipped when the options or its magic bytes say so."""
    raw, head = open_stream(
        read.obj, storage_client=read.storage_client, chunk_bytes=read.batch_bytes
    )
    with raw:
        compression = read.source.compression
        gzipped = compression == "gzip" or (compression == "auto" and head.startswith(GZIP_MAGIC))
        yield _decompressed(raw, read) if gzipped else _checked_size(raw, read)


def _checked_size(raw: pa.NativeFile, read: _Read) -> pa.NativeFile:
    cap = read.max_uncompressed_bytes
    if cap is not None and read.obj.size > cap:
        raise BadDataError(f"{read.uri}: {read.obj.size} bytes is beyond the limit of {cap} bytes")
    return raw


def _decompressed(raw: pa.NativeFile, read: _Read) -> pa.NativeFile:
    stream = pa.CompressedInputStream(raw, "gzip")
    if read.max_uncompressed_bytes is None:
        return stream
    return pa.PythonFile(_CappedReader(stream, read.max_uncompressed_bytes, read.uri), mode="r")


class _CappedReader(io.RawIOBase):
    """Counts decompressed bytes and stops a gzip bomb at the cap (one check per block read)."""

    def __init__(self, inner: pa.NativeFile, cap: int, uri: str) -> None:
        super().__init__()
        self._inner = inner
        self._cap = cap
        self._uri = uri
        self._total = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> Any:
        chunk = self._inner.read_buffer(size if size >= 0 else None)
        self._total += chunk.size
        if self._total > self._cap:
            raise BadDataError(
                f"{self._uri}: expands beyond the limit of {self._cap} bytes after "
                "decompression; raise the limit if the file is genuine"
            )
        return chunk


@dataclass
class _Progress:
    rows_read: int = 0
    """Rows Arrow has parsed so far: where an error is, when Arrow cannot say."""
    rows_yielded: int = 0
    """Parsed rows already handed on (rejected ones included)."""


def _rebatched(reader: Any, read: _Read, progress: _Progress) -> Iterator[pa.RecordBatch]:
    """Join Arrow's small blocks into batches of about `batch_bytes`, cast to declared types."""
    pending: list[pa.RecordBatch] = []
    pending_bytes = 0
    rows_out = progress.rows_yielded
    for batch in reader:
        _check_width(batch.num_columns, read)
        progress.rows_read += batch.num_rows
        if not batch.num_rows:
            continue
        pending.append(batch)
        pending_bytes += batch.nbytes
        if pending_bytes >= read.batch_bytes:
            joined = pa.concat_batches(pending) if len(pending) > 1 else pending[0]
            yield _cast(joined, read, rows_out)
            rows_out += joined.num_rows
            progress.rows_yielded = rows_out
            pending, pending_bytes = [], 0
    if pending:
        joined = pa.concat_batches(pending) if len(pending) > 1 else pending[0]
        yield _cast(joined, read, rows_out)


def _check_width(columns: int, read: _Read) -> None:
    """Refuse a file wider than the destination takes, before dlt spends minutes and all
    its memory normalizing and loading it (and fails anyway)."""
    if read.max_columns is not None and columns > read.max_columns:
        raise BadDataError(
            f"{read.uri}: {columns} columns is beyond the limit of {read.max_columns} "
            "(BigQuery's most per table); split the file or select fewer columns upstream",
            details={"uri": read.uri, "columns": columns},
        )


def _cast(batch: pa.RecordBatch, read: _Read, rows_before: int) -> pa.RecordBatch:
    if read.source.undeclared_columns == "ignore":
        batch = batch.select([name for name in batch.schema.names if name in read.source.columns])
    return cast_batch(
        batch, read.source.columns, uri=read.uri, rows_before=rows_before, rejects=read.rejects
    )


def _csv_batches(stream: pa.NativeFile, read: _Read, skip: int = 0) -> Iterator[pa.RecordBatch]:
    """Arrow's streaming CSV reader; the first `skip` rows were handed on already."""
    bad_rows: list[Any] = []

    header_lines = 1 if read.source.csv.header else 0

    def on_invalid_row(row: Any) -> str:
        if read.rejects is not None:
            # Arrow numbers rows when it parses on one thread (_csv_options, with rejects)
            data_row = row.number - header_lines if row.number is not None else None
            if data_row is not None:
                read.rejects.skip(data_row)
            read.rejects.add(
                RejectedRow(
                    row=data_row,
                    reason=f"expected {row.expected_columns} fields, got {row.actual_columns}",
                    raw=row.text,
                )
            )
            return "skip"
        bad_rows.append(row)
        return "error"

    read_options, parse_options = _csv_options(read)
    parse_options.invalid_row_handler = on_invalid_row
    convert_options = _csv_convert_options(read)
    progress = _Progress(rows_read=skip, rows_yielded=skip)
    names: list[str] | None = read.source.csv.column_names
    try:
        reader = pa_csv.open_csv(
            stream,
            read_options=read_options,
            parse_options=parse_options,
            convert_options=convert_options,
        )
        names = reader.schema.names
        _check_width(len(names), read)
        _reject_binary(reader.schema, read.uri)
        yield from _rebatched(_after(reader, skip), read, progress)
    except _ARROW_ERRORS as error:
        rows = progress.rows_read
        if str(error) == "Empty CSV file":
            return
        if bad_rows:
            line = bad_rows[0].number or _first_ragged_line(read)
            raise _ragged_row(read.uri, bad_rows[0], line, rows) from error
        raise _csv_error(read, error, rows, names or (lambda: _csv_header(read))) from error


def _csv_convert_options(read: _Read) -> pa_csv.ConvertOptions:
    # Declared timestamps are read as text: Arrow's CSV parser rejects a value without a
    # zone offset for a zoned type, and the other way round; cast_batch accepts both.
    # With rejects, every declared column is read as text so that one bad value rejects its
    # row in cast_batch instead of failing the whole parse.
    column_types = {
        name: pa.string()
        if type_name == "timestamp" or read.rejects is not None
        else ARROW_TYPES[type_name]
        for name, type_name in read.source.columns.items()
    }
    return pa_csv.ConvertOptions(
        column_types=column_types,
        null_values=read.source.csv.null_values,
        strings_can_be_null=True,
    )


def _csv_options(read: _Read) -> tuple[pa_csv.ReadOptions, pa_csv.ParseOptions]:
    options = read.source.csv
    read_options = pa_csv.ReadOptions(
        block_size=read.block_bytes,
        encoding=_arrow_encoding(options.encoding),
        # one thread numbers the rows it skips: rejected rows then name their own data row
        use_threads=read.rejects is None,
    )
    if options.column_names:
        read_options.column_names = options.column_names
        read_options.skip_rows = 1 if options.header else 0
    elif not options.header:
        read_options.autogenerate_column_names = True
    delimiter = options.delimiter
    if read.kind.tab_separated and "delimiter" not in options.model_fields_set:
        delimiter = "\t"
    parse_options = pa_csv.ParseOptions(
        delimiter=delimiter,
        quote_char=options.quote_char,
        newlines_in_values=options.newlines_in_values,
    )
    return read_options, parse_options


def _reject_binary(schema: pa.Schema, uri: str) -> None:
    """Arrow infers `binary` for text that does not decode: the encoding is wrong."""
    for field in schema:
        if pa.types.is_binary(field.type) or pa.types.is_large_binary(field.type):
            raise BadDataError(
                f"{uri}: column '{field.name}' is not valid text in the declared encoding; "
                "set source.csv.encoding to the file's encoding (e.g. latin-1)",
                details={"uri": uri, "column": field.name},
            )


def _first_ragged_line(read: _Read) -> int | None:
    """The line of the file's first ragged row (error path only: Arrow's threaded parser does
    not number rows, so the file is parsed again on one thread, up to that row)."""
    read_options, parse_options = _csv_options(read)
    read_options.use_threads = False
    found: list[int | None] = []

    def first(row: Any) -> str:
        found.append(row.number)
        return "error"

    parse_options.invalid_row_handler = first
    with _text_stream(read) as stream:
        try:
            for _ in pa_csv.open_csv(
                stream, read_options=read_options, parse_options=parse_options
            ):
                pass
        except _ARROW_ERRORS:
            pass
    return found[0] if found else None


def _ragged_row(uri: str, row: Any, line: int | None, rows_before: int) -> BadDataError:
    where = f"at line {line}" if line is not None else f"after data row {rows_before}"
    return BadDataError(
        f"{uri}: a row {where} has {row.actual_columns} fields, expected "
        f"{row.expected_columns}: {row.text[:200]!r}",
        details={"uri": uri, "row_text": row.text[:200]},
    )


def _csv_error(
    read: _Read,
    error: Exception,
    rows_before: int,
    names: list[str] | Callable[[], list[str]],
) -> BadDataError:
    message = str(error)
    match = _CSV_COLUMN_ERROR.match(message)
    if not match:
        hint = _BLOCK_HINT if "straddl" in message else "check the csv options of the source"
        return BadDataError(f"{read.uri}: {message} (after data row {rows_before}); {hint}")
    index, line, detail = int(match[1]), match[2], match[3]
    column_names = names if isinstance(names, list) else names()
    column = column_names[index] if index < len(column_names) else f"#{index}"
    where = f"line {line}" if line else f"a row after data row {rows_before}"
    if "UTF8" in detail:
        hint = "set source.csv.encoding to the file's encoding (e.g. latin-1)"
    elif column in read.source.columns:
        hint = f"fix the data or the type declared for '{column}' under source.columns"
    else:
        hint = _INFERRED_HINT
    return BadDataError(
        f"{read.uri}: column '{column}' at {where}: {detail}; {hint}",
        details={"uri": read.uri, "column": column},
    )


def _csv_header(read: _Read) -> list[str]:
    """Column names, read again (error path only: the failure came before a schema)."""
    read_options, parse_options = _csv_options(read)
    with _text_stream(read) as stream:
        try:
            names: list[str] = pa_csv.open_csv(
                stream, read_options=read_options, parse_options=parse_options
            ).schema.names
        except _ARROW_ERRORS:
            return []
    return names


def _arrow_encoding(encoding: str) -> str:
    try:
        name = codecs.lookup(encoding).name
    except LookupError as error:
        raise ConfigError(f"unknown source.csv.encoding '{encoding}'") from error
    # Arrow decodes UTF-8 natively (and drops a BOM); other codecs go through Python.
    return "utf8" if name in ("utf-8", "utf-8-sig") else name


def _declared_json_batches(read: _Read) -> Iterator[pa.RecordBatch]:
    """The declared columns through DuckDB's reader; a file it refuses is read again by Arrow's
    (the reference: its errors and rejects name the line), after the rows already handed on."""
    # imported here: a run that reads no such file does not pay for importing DuckDB
    from . import duckdb_json

    progress = _Progress()
    types = duckdb_json.read_types(read.source.columns, as_text=read.rejects is not None)
    try:
        with _text_stream(read) as stream:
            # a plain local file (not gzip): DuckDB reads the path itself, without a copy
            if isinstance(stream, pa.OSFile):
                batches = duckdb_json.path_batches(read.uri, types)
            else:
                batches = duckdb_json.stream_batches(
                    stream, types, block_bytes=read.batch_bytes, max_line_bytes=read.block_bytes
                )
            yield from _rebatched(batches, read, progress)
        return
    except duckdb_json.RefusedError:
        pass
    with _text_stream(read) as stream:
        yield from _json_batches(stream, read, skip=progress.rows_yielded)


def _json_batches(stream: pa.NativeFile, read: _Read, skip: int = 0) -> Iterator[pa.RecordBatch]:
    """Arrow's JSON reader; the first `skip` rows were handed on already."""
    # JSON holds dates as strings, which Arrow's JSON parser will not turn into date32:
    # read them as strings and let cast_batch convert.
    declared = pa.schema(
        [
            (name, pa.string() if type_name == "date" else ARROW_TYPES[type_name])
            for name, type_name in read.source.columns.items()
        ]
    )
    # Arrow types `...Z` as a naive timestamp, where the CSV reader gives UTC: such columns
    # are read as text, and _json_dates_and_times types them as the CSV reader does
    head = stream.read(SNIFF_BYTES)
    first = _head_schema(head)
    stamps = [
        field.name
        for field in first
        if pa.types.is_timestamp(field.type) and field.name not in read.source.columns
    ]
    for name in stamps:
        declared = declared.append(pa.field(name, pa.string()))
    if isinstance(stream, pa.OSFile):
        stream.seek(0)
    else:
        stream = pa.PythonFile(_Replayed(head, stream), mode="r")
    progress = _Progress(rows_read=skip, rows_yielded=skip)
    try:
        reader = pa_json.open_json(
            stream,
            read_options=pa_json.ReadOptions(block_size=read.block_bytes),
            parse_options=pa_json.ParseOptions(
                explicit_schema=declared if len(declared) else None,
                unexpected_field_behavior="infer",
            ),
        )
        batches = _after(reader, skip)
        if stamps:
            batches = (_ordered(batch, [*read.source.columns, *first.names]) for batch in batches)
        typed = (_json_dates_and_times(batch, read.source.columns) for batch in batches)
        yield from _rebatched(typed, read, progress)
    except _ARROW_ERRORS as error:
        rows = progress.rows_read
        message = str(error)
        if message == "Empty JSON stream":
            return
        if read.rejects is not None:
            # Arrow's JSON reader stops at the first value of the wrong type: read the rest
            # line by line, so that only the bad rows are rejected
            yield from _json_lines(read, skip=progress.rows_yielded)
            return
        if "unexpected field" in message:
            hint = (
                "a field first appears after the first block of the file; declare it "
                "under source.columns"
            )
        elif "changed from" in message and "Column()" not in message:
            hint = _INFERRED_HINT
        elif "straddl" in message:
            hint = "a line is longer than the read block (batch_bytes / 8, at least 1 MiB)"
        else:
            hint = "each line must be one JSON object"
        raise BadDataError(
            f"{read.uri}: {message} (row counted within the block after data row {rows}); {hint}",
            details={"uri": read.uri},
        ) from error


SNIFF_BYTES = 64 << 10
"""The file's first bytes, parsed once more to see which columns Arrow types as timestamps."""


def _head_schema(head: bytes) -> pa.Schema:
    """The schema Arrow's JSON reader infers from the whole lines of `head` (empty if none)."""
    whole = head[: head.rfind(b"\n") + 1]
    try:
        return pa_json.read_json(pa.BufferReader(whole)).schema if whole.strip() else pa.schema([])
    except _ARROW_ERRORS:
        return pa.schema([])  # the real read reports it


def _ordered(batch: pa.RecordBatch, order: list[str]) -> pa.RecordBatch:
    """Arrow's reader puts explicit fields first: columns back in `order` (then the rest)."""
    names = batch.schema.names
    first = [name for name in dict.fromkeys(order) if name in names]
    placed = set(first)
    return batch.select(first + [name for name in names if name not in placed])


class _Replayed(io.RawIOBase):
    """`head`, then the rest of `stream`: the bytes already read to sniff them, given back."""

    def __init__(self, head: bytes, stream: pa.NativeFile) -> None:
        super().__init__()
        self._head = head
        self._stream = stream

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> Any:
        if self._head:
            taken = self._head if size < 0 else self._head[:size]
            self._head = self._head[len(taken) :]
            return taken
        return self._stream.read_buffer(size if size >= 0 else None)  # Arrow's memory


def _after(batches: Any, skip: int) -> Iterator[pa.RecordBatch]:
    """`batches` without their first `skip` rows."""
    for batch in batches:
        if skip >= batch.num_rows:
            skip -= batch.num_rows
            continue
        yield batch.slice(skip) if skip else batch
        skip = 0


_TEMPORAL_TEXT = re.compile(
    r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}(:?\d{2})?)?)?"
)
"""A date, or a timestamp with or without a fraction and an offset."""
TIMESTAMP_SAMPLE = 100


def _json_dates_and_times(batch: pa.RecordBatch, declared: Any) -> pa.RecordBatch:
    """Arrow's JSON reader types only plain `YYYY-MM-DD hh:mm:ss` as a timestamp: with a
    fraction or an offset (`...13.623+00:00`) the value stays text, and so does a date, where
    the CSV reader (and DuckDB's own) types them. An undeclared text column whose values look
    like dates or timestamps gets the type the CSV reader infers for them (a declared column
    keeps its declared type)."""
    columns = list(batch.columns)
    changed = False
    for index, field in enumerate(batch.schema):
        if field.name in declared or not pa.types.is_string(field.type):
            continue
        sample = [v for v in columns[index].drop_null()[:TIMESTAMP_SAMPLE].to_pylist()]
        if not sample or not all(_TEMPORAL_TEXT.fullmatch(value) for value in sample):
            continue
        text = "v\n" + "".join(f"{value}\n" for value in sample)
        inferred = pa_csv.read_csv(io.BytesIO(text.encode())).schema.field("v").type
        if not (pa.types.is_timestamp(inferred) or pa.types.is_date(inferred)):
            continue
        try:
            columns[index] = columns[index].cast(inferred)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue  # a later value is not one: the column stays text
        changed = True
    if not changed:
        return batch
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)


JSON_FALLBACK_ROWS = 10_000


def _json_lines(read: _Read, skip: int) -> Iterator[pa.RecordBatch]:
    """Python's JSON parser, one line at a time: slow, only for files with bad rows.

    A line longer than the read block (the longest line Arrow accepts too) is a rejected
    row, skipped without being held in memory.
    """
    assert read.rejects is not None
    declared = read.source.columns
    rows: list[dict[str, Any]] = []
    seen = rows_before = skip
    with _text_stream(read) as stream:
        for number, line in enumerate(_lines(stream, read.block_bytes), start=1):
            if number <= skip:
                continue
            if isinstance(line, _LongLine):
                read.rejects.add(
                    RejectedRow(
                        row=number,
                        reason=f"line is {line.size} bytes, longer than the {read.block_bytes}-"
                        "byte limit (batch_bytes / 8, at least 1 MiB)",
                        raw=line.head.decode("utf-8", "replace"),
                    )
                )
                continue
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if not isinstance(record, dict):
                text = line.decode("utf-8", "replace")[:1000]
                read.rejects.add(RejectedRow(row=number, reason="not a JSON object", raw=text))
                continue
            # declared columns travel as text, so cast_batch rejects exactly the bad rows
            rows.append(
                {
                    key: value
                    if key not in declared or value is None or isinstance(value, str)
                    else json.dumps(value)
                    for key, value in record.items()
                }
            )
            seen += 1
            if len(rows) >= JSON_FALLBACK_ROWS:
                yield _cast(_text_declared(rows, declared), read, rows_before)
                rows_before, rows = seen, []
    if rows:
        yield _cast(_text_declared(rows, declared), read, rows_before)


def _text_declared(rows: list[dict[str, Any]], declared: dict[str, Any]) -> pa.RecordBatch:
    table = pa.Table.from_pylist(rows)
    for index, name in enumerate(table.column_names):
        if name in declared and not pa.types.is_string(table.schema.field(index).type):
            table = table.set_column(index, name, table.column(index).cast(pa.string()))
    return table.combine_chunks().to_batches()[0]


@dataclass(frozen=True)
class _LongLine:
    """A line over the limit: only its size and first bytes are kept."""

    size: int
    head: bytes


LONG_LINE_HEAD_BYTES = 1000


class _LineBuffer:
    """The pieces of the line being read; past `limit` bytes it keeps only the head."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.pieces: list[bytes] = []
        self.size = 0
        self.head: bytes | None = None

    def add(self, piece: bytes) -> None:
        self.size += len(piece)
        if self.head is not None:
            return
        self.pieces.append(piece)
        if self.size > self.limit:
            self.head = b"".join(self.pieces)[:LONG_LINE_HEAD_BYTES]
            self.pieces = []

    def take(self) -> bytes | _LongLine:
        line: bytes | _LongLine = (
            _LongLine(self.size, self.head) if self.head is not None else b"".join(self.pieces)
        )
        self.pieces, self.size, self.head = [], 0, None
        return line


def _lines(stream: pa.NativeFile, limit: int) -> Iterator[bytes | _LongLine]:
    """The lines of `stream` (without the newline), in time and memory linear in their size;
    a line over `limit` bytes comes as a _LongLine."""
    line = _LineBuffer(limit)
    while chunk := stream.read(1 << 20):
        *ended, rest = chunk.split(b"\n")
        for piece in ended:
            line.add(piece)
            yield line.take()
        line.add(rest)
    if line.size:
        yield line.take()


# --- Parquet --------------------------------------------------------------------------


def _parquet_batches(read: _Read) -> Iterator[pa.RecordBatch]:
    if read.source.compression == "gzip" or (
        read.source.compression == "auto" and read.kind.gzip_extension
    ):
        raise BadDataError(
            f"{read.uri}: gzip-compressed Parquet cannot be streamed; Parquet compresses "
            "its pages itself, so store the file uncompressed"
        )
    file = open_seekable(read.obj, storage_client=read.storage_client, chunk_bytes=read.batch_bytes)
    with file:
        try:
            # no pre-buffering: by default Arrow reads a whole row group's column chunks at
            # once (a 250K-row group held ~170 MiB); streamed in 1 MiB reads it holds ~4 MiB
            parquet = pa_parquet.ParquetFile(
                file, pre_buffer=False, buffer_size=PARQUET_READ_BUFFER_BYTES
            )
        except _ARROW_ERRORS as error:
            raise BadDataError(
                f"{read.uri}: not a readable Parquet file ({error}); if it is gzip-compressed, "
                "store it uncompressed"
            ) from error
        metadata = parquet.metadata
        _check_width(len(parquet.schema_arrow), read)
        if metadata.num_rows == 0:
            return
        expanded = sum(
            metadata.row_group(index).total_byte_size for index in range(metadata.num_row_groups)
        )
        cap = read.max_uncompressed_bytes
        if cap is not None and expanded > cap:
            raise BadDataError(
                f"{read.uri}: expands to {expanded} bytes, beyond the limit of {cap} bytes"
            )
        # iter_batches counts rows, not bytes: size batches from the average row width.
        # dictionary/RLE pages decode to far more than their encoded size: bound the batch
        # in rows too, and count what is actually decoded against the cap
        batch_rows = _parquet_batch_rows(read.batch_bytes, metadata.num_rows, expanded)
        rows = decoded = 0
        for group in range(metadata.num_row_groups):
            for batch in parquet.iter_batches(batch_size=batch_rows, row_groups=[group]):
                decoded += batch.nbytes
                if cap is not None and decoded > cap:
                    raise BadDataError(f"{read.uri}: decodes beyond the limit of {cap} bytes")
                if batch.num_rows:
                    yield _cast(batch, read, rows)
                    rows += batch.num_rows
            # the estimate above is from encoded sizes: from the next row group on, batches
            # are sized from what the rows really decoded to (5M `trips` rows decode to 4x)
            if rows:
                batch_rows = _parquet_batch_rows(read.batch_bytes, rows, decoded)


def _parquet_batch_rows(batch_bytes: int, rows: int, nbytes: int) -> int:
    """Rows per batch for about `batch_bytes`, at `nbytes` per `rows`, within the row bounds."""
    return min(max(1024, batch_bytes * rows // max(nbytes, 1)), MAX_PARQUET_BATCH_ROWS)


# --- errors ---------------------------------------------------------------------------


@contextmanager
def _read_errors(uri: str) -> Iterator[None]:
    """Name the file in every failure, and say whether retrying can help."""
    try:
        with gcs_errors(uri):
            yield
    except FerryError:
        raise
    except UnicodeDecodeError as error:
        raise BadDataError(
            f"{uri}: cannot decode the text ({error}); set source.csv.encoding to the "
            "file's encoding"
        ) from error
    except _ARROW_ERRORS as error:
        raise BadDataError(f"{uri}: {error}", details={"uri": uri}) from error
    except FileNotFoundError as error:
        raise SourceNotFoundError(f"{uri}: the file disappeared while it was read") from error
    except PermissionError as error:
        raise SourceAccessDeniedError(f"{uri}: permission denied") from error
    except OSError as error:
        # Arrow reports corrupt compressed data as an I/O error.
        if re.search("compress|zlib|gzip", str(error), re.IGNORECASE):
            raise BadDataError(f"{uri}: corrupt or truncated gzip data ({error})") from error
        raise SourceUnavailableError(f"{uri}: read failed: {error}") from error
