"""What the DuckDB load half costs, and what a Parquet round trip adds (issue 21's levers).

    .venv/bin/python -m bench.load_levers [--dataset orders] [--size 1M] [--repeat 2]

ferry hands dlt Arrow tables; dlt writes them to Parquet (extract), and DuckDB inserts the
file (`INSERT INTO t BY NAME SELECT * FROM read_parquet(...)`, the load). On the bench's
typed Parquet input this measures, in CPU seconds of this process (steady on a shared
machine, unlike wall time) and wall seconds:
  * the Parquet write with dlt's options (snappy, dictionary, statistics) and without;
  * DuckDB's insert from each file, at ferry's memory limit (128MB) and at 256MB;
  * DuckDB's insert straight from Arrow (its Arrow scan, no file), whole and streamed.
Not a test: timings are never asserted.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pa_parquet

from bench.generate import parse_size, table_path
from bench.measure import REPO

WRITERS: dict[str, dict[str, Any]] = {
    "dlt's options": {"compression": "snappy", "use_dictionary": True, "write_statistics": True},
    "plain": {"compression": "none", "use_dictionary": False, "write_statistics": False},
}
BATCH_ROWS = 30_000
"""About one 8 MiB batch of the orders table, as ferry hands them over."""


def timed(work: Callable[[], object]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def insert(
    folder: Path, memory_limit: str, source: str, objects: dict[str, Any], schema: pa.Schema
) -> tuple[float, float]:
    """Wall and CPU seconds of one insert into a new table of a new file, checkpoint included."""
    database = folder / f"t-{time.monotonic_ns()}.duckdb"
    config: dict[str, str | bool | int | float | list[str]] = {
        "memory_limit": memory_limit,
        "preserve_insertion_order": False,
    }
    with duckdb.connect(str(database), config=config) as connection:
        for name, value in {**objects, "empty": schema.empty_table()}.items():
            connection.register(name, value)
        connection.execute("CREATE TABLE t AS SELECT * FROM empty")
        result = timed(
            lambda: (
                connection.execute(f"INSERT INTO t BY NAME SELECT * FROM {source}"),  # noqa: S608
                connection.execute("CHECKPOINT"),
            )
        )
    database.unlink()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load_levers")
    parser.add_argument("--dataset", default="orders")
    parser.add_argument("--size", default="1M")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args(argv)
    source = table_path(REPO / "bench" / "data", parse_size(args.size), "parquet", args.dataset)
    table = pa_parquet.read_table(source)
    batches = table.to_batches(BATCH_ROWS)
    rows: list[tuple[str, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="ferry-load-levers-") as tmp:
        folder = Path(tmp)
        for _ in range(args.repeat):
            for index, (name, options) in enumerate(WRITERS.items()):
                path = folder / f"{index}.parquet"

                def write(path: Path = path, options: dict[str, Any] = options) -> None:
                    with pa_parquet.ParquetWriter(path, table.schema, **options) as writer:
                        for batch in batches:
                            writer.write_batch(batch)

                rows.append((f"write Parquet, {name}", *timed(write)))
                for limit in ("128MB", "256MB"):
                    scan = f"read_parquet('{path}')"
                    rows.append(
                        (
                            f"insert from Parquet ({name}), {limit}",
                            *insert(folder, limit, scan, {}, table.schema),
                        )
                    )
            rows.append(
                (
                    "insert from Arrow (whole table), 128MB",
                    *insert(folder, "128MB", "arrow_t", {"arrow_t": table}, table.schema),
                )
            )

            def stream() -> Iterator[pa.RecordBatch]:
                yield from batches

            reader = pa.RecordBatchReader.from_batches(table.schema, stream())
            rows.append(
                (
                    "insert from Arrow (streamed batches), 128MB",
                    *insert(folder, "128MB", "arrow_r", {"arrow_r": reader}, table.schema),
                )
            )
    print(
        f"{args.dataset} {args.size}: {table.num_rows:,} rows (pid {os.getpid()}); "
        "CPU: this process's, every thread"
    )
    for label, wall, cpu in rows:
        print(f"  {label:<52} wall {wall:6.2f} s  cpu {cpu:6.2f} s")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(f"  (peak {peak} MiB: the whole table is held in memory for the comparison)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
