"""What parsing JSON lines costs ferry's readers (issue 21's JSONL lever), in process.

    .venv/bin/python -m bench.json_levers [--dataset orders] [--size 1M] [--repeat 2]

Reads the bench's JSON-lines file with the declared column types, as a ferry run would
(`sources.files.read_batches`, casts included), and prints CPU seconds of this process (every
thread: steady on a shared machine, unlike wall time) and wall seconds for:
  * Arrow's JSON reader, `undeclared_columns: infer` (the default);
  * DuckDB's JSON reader on the path, `undeclared_columns: ignore` (a local file);
  * DuckDB's JSON reader on line-aligned blocks of the stream (what a gzip or Cloud Storage
    object takes), the same with the file forced through the stream route;
  * each with rejects on (every declared column read as text).
Not a test: timings are never asserted.
"""

from __future__ import annotations

import argparse
import resource
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from unittest import mock

import pyarrow as pa

from bench.generate import DATASETS, parse_size, table_path
from bench.measure import REPO
from core.spec import FilesSource
from sources.files import list_objects, read_batches
from sources.files.rejects import Rejects


def timed(work: Callable[[], int]) -> tuple[float, float, int]:
    wall, cpu = time.perf_counter(), time.process_time()
    rows = work()
    return time.perf_counter() - wall, time.process_time() - cpu, rows


def no_gcs() -> Any:
    raise AssertionError("local files only")


class _Stream(pa.PythonFile):  # type: ignore[misc]
    """A local file that is not a pa.OSFile: the reader takes the stream (block) route."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.json_levers")
    parser.add_argument("--dataset", default="orders")
    parser.add_argument("--size", default="1M")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args(argv)
    path = table_path(REPO / "bench" / "data", parse_size(args.size), "jsonl", args.dataset)
    [obj] = list_objects(str(path), base_dir=Path(path).parent, storage_client=no_gcs)
    columns = dict(DATASETS[args.dataset].column_types)

    def read(undeclared: str, rejects: bool, blocks: bool = False) -> Callable[[], int]:
        source = FilesSource.model_validate(
            {
                "uri": str(path),
                "columns": columns,
                "undeclared_columns": undeclared,
                "on_bad_rows": "reject" if rejects else "fail",
            }
        )

        def work() -> int:
            kept = Rejects(obj.uri, 10) if rejects else None
            with ExitStack() as stack:
                if blocks:
                    stream = (_Stream(path.open("rb"), mode="r"), b"{")
                    stack.enter_context(
                        mock.patch("sources.files.readers.open_stream", return_value=stream)
                    )
                batches = read_batches(obj, source, storage_client=no_gcs, rejects=kept)
                return sum(batch.num_rows for batch in batches)

        return work

    cases = {
        "Arrow's reader (infer)": read("infer", rejects=False),
        "DuckDB on the path (ignore)": read("ignore", rejects=False),
        "DuckDB on stream blocks (ignore)": read("ignore", rejects=False, blocks=True),
        "Arrow's reader (infer), rejects on": read("infer", rejects=True),
        "DuckDB on the path (ignore), rejects on": read("ignore", rejects=True),
    }
    print(f"{args.dataset} {args.size} jsonl: CPU of this process, every thread")
    for _ in range(args.repeat):
        for label, work in cases.items():
            wall, cpu, rows = timed(work)
            print(f"  {label:<42} wall {wall:6.2f} s  cpu {cpu:6.2f} s  rows {rows:,}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(f"  (peak {peak} MiB over every case)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
