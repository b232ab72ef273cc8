"""What a model build reads as its upstream grows: a `table` model against an `incremental` one.

    .venv/bin/python -m bench.model_builds [--engine duckdb|bigquery] [--objects 10] [--rows 1000]
        [--proxy default|zero]

Loads K objects of N rows one at a time into an append table `events`; after each load ferry
builds two models with the same row-by-row SQL: `as_table` (rebuilt whole) and
`as_incremental` (materialization incremental, appends the new loads' rows). Per build it
prints the upstream rows each read (a table reads every row; an incremental model reports
`rows_read`, the rows of loads above its mark) and, on BigQuery, the bytes its query jobs
processed as the engine reports them (`total_bytes_processed`; the BigQuery emulator answers
0 or nothing, so on it the column says what was reported, not what BigQuery would bill).
`--engine bigquery` starts the BigQuery emulator (tests/emulators.py); `--proxy MODEL` puts
`../shared/bqsim/proxy.py` with that latency model in front of it (bench/bigquery.py's
`run_proxy`) and counts each model build's calls from the proxy's log (between marks set when
the builder logs `build model <name>`). Not a test: nothing is asserted; writes
bench/out/model_builds.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "out" / "model_builds.json"
SQL = "SELECT id, amount * 2 AS doubled, UPPER(kind) AS kind FROM events WHERE amount >= 0"


def catalog_text(folder: Path) -> str:
    return f"""
pipelines:
  - name: events
    source: {{uri: "{folder}/in/*.csv", columns: {{id: int64, amount: int64}}}}
    destination: {{table: events, write_disposition: append}}
models:
  - {{name: as_table, sql: "{SQL}"}}
  - {{name: as_incremental, materialization: incremental, sql: "{SQL}"}}
"""


def write_object(folder: Path, index: int, rows: int) -> None:
    lines = "".join(f"{index * rows + i},{i % 97},{'abc'[i % 3]}\n" for i in range(rows))
    (folder / "in" / f"{index:04d}.csv").write_text("id,amount,kind\n" + lines, encoding="utf-8")


class BytesByModel(logging.Handler):
    """BigQuery: sums each model's query jobs' `total_bytes_processed`. The builder logs
    `build model <name>` before each build, which says whose the next jobs are."""

    def __init__(self, proxy: Any = None) -> None:
        super().__init__()
        self.proxy = proxy
        self.current = ""
        self.bytes: dict[str, int] = defaultdict(int)
        self.jobs: dict[str, int] = defaultdict(int)
        self.reported = False

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("build model "):
            self.current = message.removeprefix("build model ")
            if self.proxy is not None:
                self.proxy.mark(f"model:{self.current}")

    def take(self) -> tuple[dict[str, int], dict[str, int]]:
        taken = dict(self.bytes), dict(self.jobs)
        self.bytes.clear()
        self.jobs.clear()
        return taken


@contextmanager
def counting_bigquery_bytes(counter: BytesByModel) -> Iterator[None]:
    """Wrap the BigQuery engine's statement runner to read each job's bytes processed."""
    from app.destinations.bigquery import models as engine

    original = engine.run

    def run(client: Any, sql: str, location: str | None) -> list[tuple[Any, ...]]:
        job = client.native_connection.query(sql, location=location)
        rows = [tuple(row.values()) for row in job.result()]
        processed = job.total_bytes_processed
        counter.reported = counter.reported or processed is not None
        counter.bytes[counter.current] += int(processed or 0)
        counter.jobs[counter.current] += 1
        return rows

    engine.run = run
    logger = logging.getLogger("ferry.models")
    level = logger.level
    logger.setLevel(logging.INFO)  # the builder's `build model` lines are INFO
    logger.addHandler(counter)
    try:
        yield
    finally:
        engine.run = original
        logger.removeHandler(counter)
        logger.setLevel(level)


def calls_by_model(log_path: Path, since: int) -> tuple[dict[str, int], int]:
    """Calls the proxy logged after line `since`, by the model whose mark precedes them (a
    mark `end` closes a run's models); and the log's length."""
    lines = log_path.read_text(encoding="utf-8").splitlines()
    calls: dict[str, int] = defaultdict(int)
    current = ""
    for line in lines[since:]:
        record = json.loads(line)
        if "mark" in record:
            label = str(record["mark"])
            current = label.removeprefix("model:") if label.startswith("model:") else ""
        elif current:
            calls[current] += 1
    return dict(calls), len(lines)


@contextmanager
def settings_for(engine: str, folder: Path, proxy_model: str | None) -> Iterator[Any]:
    from core.settings import Settings

    if engine == "duckdb":
        yield (
            Settings(
                destination="duckdb",
                data_dir=folder / "data",
                pipelines_file=folder / "pipelines.yaml",
                bigquery_project=None,
                storage_emulator_host=None,
                bigquery_emulator_host=None,
                run_log=False,
            ),
            None,
        )
        return
    import os

    from tests.emulators import run_bigquery_emulator

    os.environ["DATA_WRITER__DISABLE_COMPRESSION"] = "true"  # the emulator reads no gzip
    from bench.bigquery import run_proxy

    with run_bigquery_emulator() as emulator, ExitStack() as stack:
        endpoint, proxy = emulator.endpoint, None
        if proxy_model is not None:
            proxy = stack.enter_context(run_proxy(emulator, proxy_model, OUT.parent))
            endpoint = proxy.base_url
        os.environ["BIGQUERY_EMULATOR_HOST"] = endpoint
        yield (
            Settings(
                destination="bigquery",
                bigquery_project=emulator.project,
                bigquery_dataset="model_builds",
                bigquery_emulator_host=endpoint,
                storage_emulator_host=None,
                data_dir=folder / "data",
                run_log=False,
            ),
            proxy,
        )


def measure(engine: str, objects: int, rows: int, proxy_model: str | None) -> list[dict[str, Any]]:
    from app.run.catalog import load_catalog
    from app.run.runner import RunRequest, run

    results: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        settings_for(engine, Path(tmp), proxy_model) as (settings, proxy),
    ):
        counter = BytesByModel(proxy)
        logged = 0
        folder = Path(tmp)
        (folder / "in").mkdir()
        (folder / "pipelines.yaml").write_text(catalog_text(folder), encoding="utf-8")
        catalog = load_catalog(folder / "pipelines.yaml")
        counting = counting_bigquery_bytes(counter) if engine == "bigquery" else None
        with counting or _nothing():
            for index in range(objects):
                write_object(folder, index, rows)
                report = run(RunRequest("events"), settings, catalog)
                processed, jobs = counter.take()
                calls: dict[str, int] = {}
                if proxy is not None:
                    proxy.mark("end")
                    calls, logged = calls_by_model(proxy.log_path, logged)
                models = {model.name: model for model in report.models}
                upstream = (index + 1) * rows
                row = {
                    "build": index + 1,
                    "upstream_rows": upstream,
                    "table_rows_read": upstream,
                    "incremental_rows_read": models["as_incremental"].rows_read,
                    "incremental_reason": models["as_incremental"].reason,
                    "table_seconds": models["as_table"].seconds,
                    "incremental_seconds": models["as_incremental"].seconds,
                }
                if engine == "bigquery":
                    row |= {
                        "table_bytes": processed.get("as_table", 0),
                        "incremental_bytes": processed.get("as_incremental", 0),
                        "table_jobs": jobs.get("as_table", 0),
                        "incremental_jobs": jobs.get("as_incremental", 0),
                        "bytes_reported": counter.reported,
                    }
                if proxy is not None:
                    row |= {
                        "table_calls": calls.get("as_table", 0),
                        "incremental_calls": calls.get("as_incremental", 0),
                    }
                results.append(row)
    return results


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=("duckdb", "bigquery"), default="duckdb")
    parser.add_argument("--objects", type=int, default=10)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--proxy", choices=("default", "zero"), help="bigquery: through bqsim")
    args = parser.parse_args()
    results = measure(args.engine, args.objects, args.rows, args.proxy)
    columns = ["build", "upstream_rows", "table_rows_read", "incremental_rows_read"]
    if args.engine == "bigquery":
        columns += ["table_bytes", "incremental_bytes", "table_jobs", "incremental_jobs"]
    if args.proxy:
        columns += ["table_calls", "incremental_calls"]
    columns += ["table_seconds", "incremental_seconds"]
    through = f" through bqsim model-{args.proxy}" if args.proxy else ""
    print(f"model builds on {args.engine}{through}: {args.objects} objects of {args.rows} rows")
    print("  ".join(columns))
    for row in results:
        print("  ".join(str(row[column]) for column in columns))
    if args.engine == "bigquery" and not any(
        row["table_bytes"] or row["incremental_bytes"] for row in results
    ):
        print("(every job reported 0 bytes processed: the BigQuery emulator does not count them)")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    summary = {"engine": args.engine, "proxy": args.proxy, "builds": results}
    OUT.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
