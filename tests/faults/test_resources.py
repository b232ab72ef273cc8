"""Resource limits: decompression bombs, a file far larger than memory, oversized request
bodies, and concurrent runs of one pipeline sharing nothing but the destination."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from app.destinations.pipeline import KEPT_PER_PIPELINE
from app.edges.server import create_app
from app.run.report import RunReport
from app.run.runner import RunRequest, run
from core.errors import BadDataError
from tests.helpers import REPO, count, duckdb_settings, query, write_catalog

MiB = 1 << 20

PIPELINE = """
pipelines:
  - name: orders
    source: {uri: "in/*", columns: {id: int64}}
    destination: {table: orders, DISPOSITION}
"""

DISPOSITIONS = {
    "append": "write_disposition: append",
    "merge": "write_disposition: merge, primary_key: [id]",
}


def orders_catalog(tmp_path: Path, disposition: str = "append") -> Any:
    (tmp_path / "in").mkdir(exist_ok=True)
    return write_catalog(tmp_path, PIPELINE.replace("DISPOSITION", DISPOSITIONS[disposition]))


def _status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/self/status")


@contextmanager
def own_peak_growth() -> Iterator[dict[str, int]]:
    """How far above its starting RSS the block's own peak went. The process-wide peak
    (ru_maxrss) depends on what earlier tests in this worker left: the kernel's high-water
    mark is reset first (clear_refs 5), so only this block counts."""
    Path("/proc/self/clear_refs").write_text("5")
    measured = {"growth": 0}
    before = _status_bytes("VmRSS")
    try:
        yield measured
    finally:
        measured["growth"] = _status_bytes("VmHWM") - before


# --- decompression bombs ---------------------------------------------------------------------


def gzip_bomb(path: Path, header: bytes, line: bytes, expanded: int) -> None:
    """A gzip member that expands to `expanded` bytes of `line`s, written chunk by chunk."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip framing
    chunk = line * (MiB // len(line))
    with path.open("wb") as file:
        file.write(packer.compress(header))
        for _ in range(expanded // len(chunk)):
            file.write(packer.compress(chunk))
        file.write(packer.flush())


def csv_gz(path: Path) -> Path:
    target = path / "bomb.csv.gz"
    gzip_bomb(target, b"id,amount\n", b"1,2\n", 256 * MiB)
    return target


def csv_by_magic(path: Path) -> Path:
    """No .gz in the name: found by its magic bytes (compression: auto)."""
    target = path / "bomb.csv"
    gzip_bomb(target, b"id,amount\n", b"1,2\n", 256 * MiB)
    return target


def jsonl_gz(path: Path) -> Path:
    target = path / "bomb.jsonl.gz"
    gzip_bomb(target, b"", b'{"id": 1, "amount": 2}\n', 256 * MiB)
    return target


BOMBS = {
    "csv.gz": csv_gz,
    "csv-gzipped-without-extension": csv_by_magic,
    "jsonl.gz": jsonl_gz,
}


@pytest.mark.parametrize("kind", list(BOMBS), ids=list(BOMBS))
def test_a_decompression_bomb_is_stopped_at_the_cap(tmp_path: Path, kind: str) -> None:
    catalog = orders_catalog(tmp_path)
    settings = duckdb_settings(tmp_path, max_uncompressed_bytes=16 * MiB, batch_bytes=4 * MiB)
    (tmp_path / "in" / "a-earlier.csv").write_text("id,amount\n1,10\n", encoding="utf-8")
    run(RunRequest("orders"), settings, catalog)
    bomb = BOMBS[kind](tmp_path / "in")
    assert bomb.stat().st_size < 2 * MiB

    with (
        own_peak_growth() as memory,
        pytest.raises(BadDataError, match=r"beyond the limit of 16777216 bytes") as caught,
    ):
        run(RunRequest("orders"), settings, catalog)

    # up to the 16 MiB cap the bomb is 4M rows of "1,2": 64 MiB as two int64 columns, plus
    # the parser's blocks; past the cap it would be 1 GiB of columns and more
    assert memory["growth"] < 256 * MiB, f"{memory['growth'] / MiB:.0f} MiB"
    assert bomb.name in str(caught.value)
    assert not caught.value.retriable
    assert query(settings, "select id from ferry.orders") == [(1,)], "the earlier load is intact"


def test_a_parquet_file_that_decodes_far_beyond_the_cap_is_stopped(tmp_path: Path) -> None:
    catalog = orders_catalog(tmp_path)
    settings = duckdb_settings(tmp_path, max_uncompressed_bytes=16 * MiB, batch_bytes=4 * MiB)
    table = pa.table({"id": pa.array(np.ones(3_000_000, dtype=np.int64))})
    pq.write_table(table, tmp_path / "in" / "bomb.parquet", compression="zstd")
    assert (tmp_path / "in" / "bomb.parquet").stat().st_size < 64 << 10
    with pytest.raises(BadDataError, match="beyond the limit"):
        run(RunRequest("orders"), settings, catalog)
    assert count(settings, "orders") == 0


def test_an_uncompressed_file_over_the_cap_is_refused_before_reading(tmp_path: Path) -> None:
    catalog = orders_catalog(tmp_path)
    settings = duckdb_settings(tmp_path, max_uncompressed_bytes=1 * MiB)
    (tmp_path / "in" / "big.csv").write_text(
        "id,amount\n" + "".join(f"{n},{n}\n" for n in range(200_000)), encoding="utf-8"
    )
    with pytest.raises(BadDataError, match=r"big\.csv: \d+ bytes is beyond the limit"):
        run(RunRequest("orders"), settings, catalog)
    assert count(settings, "orders") == 0


# --- a file far larger than the memory a run may use -----------------------------------------

LARGE_ROWS = 4_500_000
"""~300 MB of CSV."""

PEAK_RSS_LIMIT = 700 * MiB

CHILD = """
import json, sys, time
from pathlib import Path

from app.run.runner import RunRequest, run
from app.run.catalog import load_catalog
from tests.helpers import duckdb_settings

tmp = Path(sys.argv[1])
started = time.monotonic()
report = run(RunRequest("orders"), duckdb_settings(tmp), load_catalog(tmp / "pipelines.yaml"))
status = Path("/proc/self/status").read_text()
peak_kib = int(next(l for l in status.splitlines() if l.startswith("VmHWM")).split()[1])
print(json.dumps({
    "rows_read": report.rows_read,
    "rows_loaded": report.rows_loaded,
    "peak_rss": peak_kib * 1024,
    "seconds": time.monotonic() - started,
}))
"""


def write_large_csv(path: Path, rows: int) -> None:
    """Vectorised: a million rows per Arrow table, written as CSV."""
    countries = pa.array(["DE", "FR", "US", "JP"])
    rng = np.random.default_rng(7)
    schema = pa.schema(
        [
            ("id", pa.int64()),
            ("customer", pa.string()),
            ("quantity", pa.int64()),
            ("price", pa.float64()),
            ("country", pa.string()),
            ("note", pa.string()),
        ]
    )
    with pa_csv.CSVWriter(str(path), schema) as writer:
        for start in range(0, rows, 1_000_000):
            size = min(1_000_000, rows - start)
            ids = pa.array(np.arange(start, start + size))
            customers = pc.cast(pc.bit_wise_and(ids, 0xFFFF), pa.string())
            writer.write_table(
                pa.table(
                    {
                        "id": ids,
                        "customer": pc.binary_join_element_wise("customer-", customers, ""),
                        "quantity": rng.integers(1, 50, size),
                        "price": np.round(rng.random(size) * 100, 2),
                        "country": countries.take(pa.array(np.arange(size) % 4)),
                        "note": pc.binary_join_element_wise(
                            "a note about order ", pc.cast(ids, pa.string()), ""
                        ),
                    },
                    schema=schema,
                )
            )


def test_a_file_far_larger_than_a_batch_loads_exactly_in_bounded_memory(tmp_path: Path) -> None:
    orders_catalog(tmp_path)
    large = tmp_path / "in" / "large.csv"
    write_large_csv(large, LARGE_ROWS)
    assert large.stat().st_size > 250 * 10**6

    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert measured["rows_read"] == measured["rows_loaded"] == LARGE_ROWS
    # VmHWM of the child itself: its ru_maxrss (wait4, RUSAGE_CHILDREN) starts from this
    # test process's peak, which Linux carries over the fork and exec
    assert measured["peak_rss"] < PEAK_RSS_LIMIT, f"peak RSS {measured['peak_rss'] / MiB:.0f} MiB"
    settings = duckdb_settings(tmp_path)
    ((rows, distinct, low, high),) = query(
        settings, "select count(*), count(distinct id), min(id), max(id) from ferry.orders"
    )
    assert (rows, distinct, low, high) == (LARGE_ROWS, LARGE_ROWS, 0, LARGE_ROWS - 1)


# --- request bodies over the limit -----------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "chunked"),
    [
        ("/runs", False),
        ("/runs", True),
        ("/pubsub", False),
        ("/pubsub", True),
        ("/", True),
    ],
    ids=["runs", "runs-chunked", "pubsub", "pubsub-chunked", "cloudevent-chunked"],
)
def test_a_request_body_over_the_limit_gets_413_and_runs_nothing(
    tmp_path: Path, path: str, chunked: bool
) -> None:
    orders_catalog(tmp_path)
    (tmp_path / "in" / "a.csv").write_text("id,amount\n1,10\n", encoding="utf-8")
    settings = duckdb_settings(tmp_path, max_request_bytes=4096)
    body = json.dumps({"pipeline": "orders", "padding": "x" * 8192}).encode()
    with TestClient(create_app(settings)) as client:
        if chunked:
            pieces = [body[i : i + 1024] for i in range(0, len(body), 1024)]
            response = client.post(
                path, content=iter(pieces), headers={"Content-Type": "application/json"}
            )
        else:
            response = client.post(path, content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "request_too_large"
        assert count(settings, "orders") == 0

        small = client.post("/runs", json={"pipeline": "orders"})
        assert small.status_code == 200, small.text
    assert count(settings, "orders") == 1


# --- concurrent runs -------------------------------------------------------------------------


@pytest.mark.parametrize("disposition", list(DISPOSITIONS))
def test_concurrent_runs_of_one_pipeline_share_no_working_dir_or_state(
    tmp_path: Path, disposition: str
) -> None:
    catalog = orders_catalog(tmp_path, disposition)
    settings = duckdb_settings(tmp_path, batch_bytes=64 << 10)
    runs, per_file = 4, 5_000
    for index in range(runs):
        start = index * per_file
        (tmp_path / "in" / f"part-{index}.csv").write_text(
            "id,amount\n" + "".join(f"{n},{index}\n" for n in range(start, start + per_file)),
            encoding="utf-8",
        )
    all_running = threading.Barrier(runs, timeout=60)
    working_dirs: set[str] = set()
    reports: dict[int, RunReport] = {}
    errors: list[BaseException] = []

    def one_run(index: int) -> None:
        waited = False

        def meet_the_others(report: RunReport) -> None:
            nonlocal waited
            if not waited:  # every run is mid-extract at the same time
                waited = True
                all_running.wait()
                working_dirs.update(p.name for p in (settings.data_dir / "runs").iterdir())

        request = RunRequest("orders", source_uri=f"in/part-{index}.csv", run_id=f"run-{index}")
        try:
            reports[index] = run(request, settings, catalog, progress=meet_the_others)
        except BaseException as error:
            errors.append(error)
            all_running.abort()

    threads = [threading.Thread(target=one_run, args=(i,)) for i in range(runs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    assert len({name.split("-", 2)[1] for name in working_dirs if name.startswith("run-")}) == runs
    assert {i: r.rows_loaded for i, r in reports.items()} == dict.fromkeys(range(runs), per_file)
    ((rows, distinct),) = query(settings, "select count(*), count(distinct id) from ferry.orders")
    assert rows == distinct == runs * per_file
    per_source = query(settings, "select amount, count(*) from ferry.orders group by 1 order by 1")
    assert per_source == [(index, per_file) for index in range(runs)]
    # the process keeps a few working dirs for its next runs of the pipeline, no more
    assert len(list((settings.data_dir / "runs").iterdir())) <= KEPT_PER_PIPELINE
    staging = query(
        settings,
        "select schema_name from information_schema.schemata where schema_name like '%staging%'",
    )
    assert staging == [], "each run's own staging dataset is dropped"
