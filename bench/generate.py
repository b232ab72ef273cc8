"""Deterministic test data: two tables at several sizes and formats, plus small files.

`orders` (15 columns: long text, UTC timestamps) is the bench's first dataset; `trips` (18
columns, NYC-taxi-like: ints, floats, low-cardinality strings, nullable fields, two ISO
timestamps with fractions and zone offsets) is the second. Engines spend very different CPU
per row on the two (DuckDB 1.47x more on `orders`), so a ratio measured on one alone misleads.

Every chunk is built with numpy/pyarrow from a seed derived from (SEED, chunk index), so a
size is a prefix of the next one and reruns produce identical bytes. Files are written chunk
by chunk (bounded memory) under a temporary name and renamed when complete, so an
interrupted generation is never mistaken for data.
"""

from __future__ import annotations

import gzip
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pa_parquet

from bench.paths import FERRY_TRANSFORM

SEED = 20261121
CHUNK_ROWS = 250_000
SMALL_FILES = 1_000
SMALL_FILE_ROWS = 1_000
FORMATS = ("csv", "csv.gz", "jsonl", "parquet")
EPOCH_S = 1_767_225_600  # 2026-01-01T00:00:00Z
YEAR_S = 365 * 86_400
COUNTRIES = ("US", "DE", "FR", "GB", "NL", "ES", "IT", "PL", "SE", "JP", "BR", "IN")
STATUSES = ("new", "paid", "shipped", "cancelled", "returned")
STATUS_WEIGHTS = (0.15, 0.35, 0.35, 0.1, 0.05)

COLUMN_TYPES: dict[str, str] = {
    "id": "int64",
    "customer_id": "int64",
    "quantity": "int64",
    "unit_price": "float64",
    "discount": "float64",
    "score": "float64",
    "created_at": "timestamp",
    "shipped_at": "timestamp",
    "sku": "string",
    "email": "string",
    "country": "string",
    "status": "string",
    "is_gift": "bool",
    "note": "string",
    "description": "string",
}
"""The source columns, as ferry's `source.columns` type names (declared, never inferred)."""


@dataclass(frozen=True)
class Size:
    label: str
    rows: int


def parse_size(text: str) -> Size:
    """'1M' -> 1_000_000, '500K' -> 500_000, '1000' -> 1000."""
    label = text.strip().upper()
    factor = {"K": 1_000, "M": 1_000_000}.get(label[-1:], 1)
    number = label[:-1] if factor > 1 else label
    return Size(label, int(float(number) * factor))


def table_path(data_dir: Path, size: Size, file_format: str, dataset: str = "orders") -> Path:
    return data_dir / size.label / f"{dataset}.{file_format}"


def small_dir(data_dir: Path) -> Path:
    return data_dir / "small"


class _Pools:
    """Value pools drawn once; rows pick from them by index (vectorised, low memory)."""

    def __init__(self) -> None:
        rng = np.random.default_rng([SEED, 0xF00D])
        letters = np.array(list(string.ascii_lowercase))
        words = ["".join(rng.choice(letters, size=int(n))) for n in rng.integers(2, 10, size=3_000)]

        def sentences(count: int, low: int, high: int) -> pa.Array:
            out = []
            for n in rng.integers(low, high, size=count):
                picked = rng.choice(len(words), size=int(n))
                text = " ".join(words[i] for i in picked)
                # some commas so CSV quoting matters
                out.append(text.replace(" ", ", ", 1) if n % 3 == 0 else text)
            return pa.array(out, pa.string())

        self.short_text = sentences(4_096, 4, 9)  # ~40 chars
        self.long_text = sentences(4_096, 10, 20)  # ~90 chars
        self.sku = pa.array([f"SKU-{i:06d}" for i in range(50_000)], pa.string())
        self.email = pa.array([f"user{i}@example{i % 7}.com" for i in range(200_000)], pa.string())
        self.country = pa.array(COUNTRIES, pa.string())
        self.status = pa.array(STATUSES, pa.string())


def make_chunk(pools: _Pools, chunk_index: int, first_id: int, rows: int) -> pa.Table:
    rng = np.random.default_rng([SEED, chunk_index])

    def nulls(fraction: float) -> np.ndarray[Any, Any]:
        return rng.random(rows) < fraction

    customer = rng.integers(0, len(pools.email), size=rows)
    created = EPOCH_S + rng.integers(0, YEAR_S, size=rows)
    shipped = created + rng.integers(3_600, 14 * 86_400, size=rows)
    utc = pa.timestamp("s", tz="UTC")
    note = pools.short_text.take(rng.integers(0, 4_096, size=rows))
    description = pc.binary_join_element_wise(
        pools.short_text.take(rng.integers(0, 4_096, size=rows)),
        pools.long_text.take(rng.integers(0, 4_096, size=rows)),
        ". ",
    )
    columns: dict[str, pa.Array] = {
        "id": pa.array(np.arange(first_id, first_id + rows, dtype=np.int64)),
        "customer_id": pa.array(customer.astype(np.int64)),
        # uniform 0..99: the ferry transform's filter `quantity >= 10` drops ~10%
        "quantity": pa.array(rng.integers(0, 100, size=rows, dtype=np.int64)),
        "unit_price": pa.array(np.round(rng.uniform(0.5, 500.0, size=rows), 2)),
        "discount": pa.array(np.round(rng.uniform(0, 0.5, size=rows), 3), mask=nulls(0.1)),
        "score": pa.array(rng.normal(50.0, 15.0, size=rows)),
        "created_at": pa.array(created, pa.int64()).cast(utc),
        "shipped_at": pa.array(shipped, pa.int64(), mask=nulls(0.2)).cast(utc),
        "sku": pools.sku.take(rng.integers(0, len(pools.sku), size=rows)),
        "email": pools.email.take(customer),
        "country": pools.country.take(rng.integers(0, len(COUNTRIES), size=rows)),
        "status": pools.status.take(rng.choice(len(STATUSES), size=rows, p=STATUS_WEIGHTS)),
        "is_gift": pa.array(rng.random(rows) < 0.05, mask=nulls(0.05)),
        "note": pc.if_else(pa.array(nulls(0.3)), pa.nulls(rows, pa.string()), note),
        "description": description,
    }
    return pa.table(columns)


TRIPS_COLUMN_TYPES: dict[str, str] = {
    "trip_id": "int64",
    "vendor_id": "int64",
    "pickup_at": "timestamp",
    "dropoff_at": "timestamp",
    "passenger_count": "int64",
    "trip_distance": "float64",
    "rate_code": "int64",
    "store_and_fwd_flag": "string",
    "pu_location_id": "int64",
    "do_location_id": "int64",
    "payment_type": "string",
    "fare_amount": "float64",
    "extra": "float64",
    "mta_tax": "float64",
    "tip_amount": "float64",
    "tolls_amount": "float64",
    "total_amount": "float64",
    "congestion_surcharge": "float64",
}
PAYMENTS = ("card", "cash", "no_charge", "dispute", "unknown")
PAYMENT_WEIGHTS = (0.7, 0.25, 0.02, 0.01, 0.02)
OFFSETS_MIN = (-300, -240, 0, 60, 330)
"""Zone offsets of the text timestamps, in minutes (the instant is the same in Parquet)."""


def _iso_with_offset(micros: np.ndarray[Any, Any], offset_min: np.ndarray[Any, Any]) -> pa.Array:
    """UTC microseconds -> '2026-03-01T08:15:30.123456+01:00' in the row's zone (vectorised)."""
    local = pa.array(micros + offset_min.astype(np.int64) * 60_000_000, pa.timestamp("us"))
    text = pc.replace_substring(local.cast(pa.string()), " ", "T", max_replacements=1)
    sign = np.where(offset_min < 0, "-", "+")
    hours, minutes = np.abs(offset_min) // 60, np.abs(offset_min) % 60
    suffix = np.char.add(
        np.char.add(sign, np.char.zfill(hours.astype(str), 2)),
        np.char.add(":", np.char.zfill(minutes.astype(str), 2)),
    )
    return pc.binary_join_element_wise(text, pa.array(suffix, pa.string()), "")


def make_trips_chunk(first_id: int, rows: int, chunk_index: int) -> tuple[pa.Table, pa.Table]:
    """(typed table for Parquet, text table for CSV/JSONL): the timestamps differ only."""
    rng = np.random.default_rng([SEED, 0x7219, chunk_index])

    def nulls(fraction: float) -> np.ndarray[Any, Any]:
        return rng.random(rows) < fraction

    pickup = EPOCH_S * 1_000_000 + rng.integers(0, YEAR_S * 1_000_000, size=rows)
    dropoff = pickup + rng.integers(60_000_000, 7_200_000_000, size=rows)
    offsets = np.array(OFFSETS_MIN)[rng.integers(0, len(OFFSETS_MIN), size=rows)]
    # exponential, mean 3 miles: the transform's filter `trip_distance >= 0.3` drops ~10%
    distance = np.round(rng.exponential(3.0, size=rows), 2)
    fare = np.round(3.0 + distance * 2.5 + rng.uniform(0, 5, size=rows), 2)
    extra = rng.choice(np.array([0.0, 0.5, 1.0, 2.5]), size=rows)
    tip = np.round(np.where(rng.random(rows) < 0.6, fare * rng.uniform(0.1, 0.25, rows), 0), 2)
    tolls = np.where(rng.random(rows) < 0.05, 6.55, 0.0)
    utc = pa.timestamp("us", tz="UTC")
    common: dict[str, pa.Array] = {
        "trip_id": pa.array(np.arange(first_id, first_id + rows, dtype=np.int64)),
        "vendor_id": pa.array(rng.integers(1, 3, size=rows, dtype=np.int64)),
        "passenger_count": pa.array(rng.integers(1, 7, size=rows), mask=nulls(0.05)),
        "trip_distance": pa.array(distance),
        "rate_code": pa.array(rng.integers(1, 7, size=rows), mask=nulls(0.05)),
        "store_and_fwd_flag": pa.array(
            np.where(rng.random(rows) < 0.02, "Y", "N"), pa.string(), mask=nulls(0.05)
        ),
        "pu_location_id": pa.array(rng.integers(1, 266, size=rows, dtype=np.int64)),
        "do_location_id": pa.array(rng.integers(1, 266, size=rows, dtype=np.int64)),
        "payment_type": pa.array(
            np.array(PAYMENTS)[rng.choice(len(PAYMENTS), size=rows, p=PAYMENT_WEIGHTS)]
        ),
        "fare_amount": pa.array(fare),
        "extra": pa.array(extra),
        "mta_tax": pa.array(np.full(rows, 0.5)),
        "tip_amount": pa.array(tip),
        "tolls_amount": pa.array(tolls),
        "total_amount": pa.array(np.round(fare + extra + 0.5 + tip + tolls, 2)),
        "congestion_surcharge": pa.array(
            rng.choice(np.array([0.0, 2.5]), size=rows), mask=nulls(0.1)
        ),
    }
    order = list(TRIPS_COLUMN_TYPES)

    def build(pickup_col: pa.Array, dropoff_col: pa.Array) -> pa.Table:
        columns = {**common, "pickup_at": pickup_col, "dropoff_at": dropoff_col}
        return pa.table({name: columns[name] for name in order})

    typed = build(pa.array(pickup, utc), pa.array(dropoff, utc))
    text = build(_iso_with_offset(pickup, offsets), _iso_with_offset(dropoff, offsets))
    return typed, text


@dataclass(frozen=True)
class Dataset:
    """One bench table: its file stem, the columns ferry declares, and ferry's transform."""

    name: str
    column_types: dict[str, str]
    transform: list[dict[str, Any]]


DATASETS: dict[str, Dataset] = {
    "orders": Dataset(
        "orders",
        COLUMN_TYPES,
        FERRY_TRANSFORM,  # the filter drops ~10%: quantity is uniform 0..99
    ),
    "trips": Dataset(
        "trips",
        TRIPS_COLUMN_TYPES,
        [
            {"rename": {"fare_amount": "fare", "pu_location_id": "pickup_zone"}},
            {"cast": {"passenger_count": "int32", "tip_amount": "float64"}},
            {"filter": "trip_distance >= 0.3"},  # drops ~10%
            {"derive": {"fare_per_mile": "fare / trip_distance"}},
        ],
    ),
}
"""A real transform on each: rename, cast, filter (drops ~10%), derive."""


def chunks(total_rows: int, chunk_rows: int = CHUNK_ROWS) -> Iterator[pa.Table]:
    for typed, _ in dataset_chunks("orders", total_rows, chunk_rows):
        yield typed


def dataset_chunks(
    dataset: str, total_rows: int, chunk_rows: int = CHUNK_ROWS
) -> Iterator[tuple[pa.Table, pa.Table]]:
    """(typed, text) chunks of a dataset: Parquet gets the typed one, CSV/JSONL the text."""
    pools = _Pools() if dataset == "orders" else None
    first = 0
    index = 0
    while first < total_rows:
        rows = min(chunk_rows, total_rows - first)
        if pools is not None:
            table = make_chunk(pools, index, first, rows)
            yield table, table
        else:
            yield make_trips_chunk(first, rows, index)
        first += rows
        index += 1


class _Writer:
    """Append chunks to one file in one format (CSV text is serialised once for csv and gz)."""

    def __init__(self, path: Path, file_format: str, schema: pa.Schema) -> None:
        self.path = path
        self.partial = path.with_name(path.name + ".partial")
        self.format = file_format
        self._parquet = (
            pa_parquet.ParquetWriter(str(self.partial), schema)
            if file_format == "parquet"
            else None
        )
        self._handle: Any = None
        if file_format == "csv.gz":
            # level 1: generation speed matters more than size; closed in finish()
            self._handle = gzip.open(self.partial, "wb", compresslevel=1)  # noqa: SIM115
        elif file_format in ("csv", "jsonl"):
            self._handle = self.partial.open("wb")
        elif file_format != "parquet":
            raise ValueError(f"unknown format {file_format!r}")

    def write(self, table: pa.Table, encoded: _Encoded) -> None:
        if self._parquet is not None:
            self._parquet.write_table(table)
        elif self.format == "jsonl":
            self._handle.write(encoded.jsonl())
        else:
            self._handle.write(encoded.csv())

    def finish(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
        else:
            self._handle.close()
        self.partial.replace(self.path)


class _Encoded:
    """One chunk as CSV or JSON-lines bytes, each encoded at most once."""

    def __init__(self, table: pa.Table, header: bool) -> None:
        self.table = table
        self.header = header
        self._csv: bytes | None = None
        self._jsonl: bytes | None = None

    def csv(self) -> bytes:
        if self._csv is None:
            sink = pa.BufferOutputStream()
            options = pa_csv.WriteOptions(include_header=self.header)
            pa_csv.write_csv(self.table, sink, write_options=options)
            self._csv = sink.getvalue().to_pybytes()
        return self._csv

    def jsonl(self) -> bytes:
        if self._jsonl is None:
            lines = json_lines(self.table)
            # each value ends in a newline: the array's data buffer is the file's bytes
            _, offsets_buffer, data = lines.buffers()
            offsets = np.frombuffer(offsets_buffer, dtype=np.int32)
            start, end = offsets[lines.offset], offsets[lines.offset + len(lines)]
            self._jsonl = data.to_pybytes()[start:end]
        return self._jsonl


def json_lines(table: pa.Table) -> pa.Array:
    """Vectorised JSON encoding: one `{"col": value, ...}\\n` string per row."""
    parts = []
    for field, column in zip(table.schema, table.columns, strict=True):
        values = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        if pa.types.is_string(field.type):
            escaped = pc.replace_substring(values, "\\", "\\\\")
            escaped = pc.replace_substring(escaped, '"', '\\"')
            text = pc.binary_join_element_wise('"', escaped, '"', "")
        elif pa.types.is_timestamp(field.type):
            # a cast is ~20x faster than strftime; values are UTC, so append Z
            naive = values.cast(pa.timestamp(field.type.unit)).cast(pa.string())
            iso = pc.replace_substring(naive, " ", "T", max_replacements=1)
            text = pc.binary_join_element_wise('"', iso, 'Z"', "")
        elif pa.types.is_boolean(field.type):
            text = pc.if_else(values, "true", "false")
        else:
            text = values.cast(pa.string())
        filled = pc.fill_null(text, "null")
        parts.append(pc.binary_join_element_wise(f'"{field.name}":', filled, ""))
    body = pc.binary_join_element_wise(*parts, ",")
    return pc.binary_join_element_wise("{", body, "}\n", "")


def ensure_table(
    data_dir: Path,
    size: Size,
    formats: list[str],
    log: Callable[[str], None],
    dataset: str = "orders",
) -> None:
    """Write the missing formats of one size in a single pass over the generated chunks."""
    missing = [f for f in formats if not table_path(data_dir, size, f, dataset).exists()]
    if not missing:
        return
    (data_dir / size.label).mkdir(parents=True, exist_ok=True)
    log(f"generating {size.label} {dataset} rows as {', '.join(missing)} ...")
    writers: list[_Writer] = []
    for typed, text in dataset_chunks(dataset, size.rows):
        encoded = _Encoded(text, header=not writers)
        if not writers:
            writers = [
                _Writer(table_path(data_dir, size, f, dataset), f, typed.schema) for f in missing
            ]
        for writer in writers:
            writer.write(typed, encoded)
    for writer in writers:
        writer.finish()


def ensure_small_files(data_dir: Path, log: Callable[[str], None]) -> list[Path]:
    """SMALL_FILES CSV files of SMALL_FILE_ROWS rows each (the same rows as the 1M table)."""
    folder = small_dir(data_dir)
    done = folder / ".complete"
    paths = [folder / f"part-{i:04d}.csv" for i in range(SMALL_FILES)]
    if done.exists():
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    log(f"generating {SMALL_FILES} small CSV files of {SMALL_FILE_ROWS} rows ...")
    index = 0
    for table in chunks(SMALL_FILES * SMALL_FILE_ROWS):
        for offset in range(0, table.num_rows, SMALL_FILE_ROWS):
            pa_csv.write_csv(table.slice(offset, SMALL_FILE_ROWS), str(paths[index]))
            index += 1
    done.write_text("ok\n")
    return paths
