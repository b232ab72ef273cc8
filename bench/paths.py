"""The measured paths. Each runs in its own child process: `python -m bench.paths JOB_JSON`.

The child imports what its path needs, then times only the work, counts what landed in the
destination (untimed), and prints one `BENCH_RESULT {...}` line with the wall time, its own
peak RSS (VmHWM) and path details.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULT_PREFIX = "BENCH_RESULT "
TABLE = "orders"
DATASET = "bench"

FERRY_TRANSFORM = [
    {"rename": {"unit_price": "price", "customer_id": "customer"}},
    {"cast": {"quantity": "int32", "score": "float64"}},
    {"filter": "quantity >= 10"},
    {"derive": {"amount": "quantity * price"}},
]
"""A real transform: rename, cast, filter (drops ~10%: quantity is uniform 0..99), derive."""


@dataclass(frozen=True)
class Job:
    """What one child measures; passed as JSON on the command line."""

    path: str
    """limit | dlt_fs | naive | ferry | ferry_bq"""
    file_format: str
    inputs: list[str]
    """Absolute paths of the input files (one big file or many small ones)."""
    glob: str
    """The same inputs as a glob (ferry's source.uri, dlt's file_glob)."""
    workdir: str
    column_types: dict[str, str]
    emulator_endpoint: str | None = None
    bigquery_dataset: str | None = None
    peer_loader_format: str = "parquet"
    """dlt peers' loader file format. dlt's DuckDB default for dict rows is insert_values,
    which at 100K rows ran ~1.5K rows/s with 3.4 GiB peak; parquet is what ferry uses too."""


@dataclass
class Outcome:
    seconds: float
    rows_loaded: int
    peak_rss_mib: float
    stages: dict[str, float] = field(default_factory=dict)
    load_ids: int = 0
    load_jobs: dict[str, int] = field(default_factory=dict)
    """Completed dlt load jobs per table (dlt's own tables included)."""
    note: str = ""


# --- the limit: DuckDB alone ------------------------------------------------------------------


def run_limit(job: Job) -> Outcome:
    import duckdb

    reader = {
        "parquet": "read_parquet",
        "jsonl": "read_json_auto",
    }.get(job.file_format, "read_csv_auto")
    files = ", ".join("'" + p.replace("'", "''") + "'" for p in job.inputs)
    database = Path(job.workdir) / "limit.duckdb"
    started = time.perf_counter()
    with duckdb.connect(str(database)) as connection:
        connection.execute(f"CREATE TABLE t AS SELECT * FROM {reader}([{files}])")  # noqa: S608
    seconds = time.perf_counter() - started
    with duckdb.connect(str(database), read_only=True) as connection:
        row = connection.execute("select count(*) from t").fetchone()
    return Outcome(seconds, int(row[0]) if row else 0, peak_rss_mib())


# --- dlt peers --------------------------------------------------------------------------------


def _dlt_pipeline(job: Job, name: str) -> Any:
    import dlt

    return dlt.pipeline(
        pipeline_name=name,
        pipelines_dir=str(Path(job.workdir) / "pipelines"),
        destination=dlt.destinations.duckdb(str(Path(job.workdir) / f"{name}.duckdb")),
        dataset_name=DATASET,
    )


def _jobs_of(load_info: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for package in load_info.load_packages:
        for finished in package.jobs.get("completed_jobs", []):
            table = finished.job_file_info.table_name
            counts[table] = counts.get(table, 0) + 1
    return counts


def _count_dlt(pipeline: Any, table: str) -> int:
    with pipeline.sql_client() as client:
        rows = client.execute_sql(f"select count(*) from {table}")  # noqa: S608
    return int(rows[0][0])


def run_dlt_filesystem(job: Job) -> Outcome:
    """What a dlt user writes: the filesystem source and its reader for the format."""
    from dlt.sources.filesystem import filesystem, read_csv, read_jsonl, read_parquet

    folder = Path(job.glob).parent
    readers: dict[str, Any] = {"parquet": read_parquet, "jsonl": read_jsonl, "csv": read_csv}
    reader = readers.get(job.file_format, read_csv)
    pipeline = _dlt_pipeline(job, "dlt_fs")
    started = time.perf_counter()
    files = filesystem(bucket_url=folder.resolve().as_uri(), file_glob=Path(job.glob).name)
    load_info = pipeline.run(
        files | reader(), table_name=TABLE, loader_file_format=job.peer_loader_format
    )
    seconds = time.perf_counter() - started
    return Outcome(
        seconds,
        _count_dlt(pipeline, TABLE),
        peak_rss_mib(),
        stages=_dlt_stages(pipeline),
        load_ids=len(load_info.loads_ids),
        load_jobs=_jobs_of(load_info),
    )


def run_naive(job: Job) -> Outcome:
    """dlt loading a generator of dict rows (csv.DictReader, or json.loads per line)."""
    import csv
    import gzip

    if job.file_format == "parquet":
        raise SkippedPathError("naive peer reads text files only")

    def rows() -> Iterator[dict[str, Any]]:
        for name in job.inputs:
            opener: Callable[..., Any] = gzip.open if name.endswith(".gz") else open
            with opener(name, "rt", encoding="utf-8", newline="") as handle:
                if job.file_format == "jsonl":
                    for line in handle:
                        yield json.loads(line)
                else:
                    yield from csv.DictReader(handle)

    pipeline = _dlt_pipeline(job, "naive")
    started = time.perf_counter()
    load_info = pipeline.run(rows(), table_name=TABLE, loader_file_format=job.peer_loader_format)
    seconds = time.perf_counter() - started
    return Outcome(
        seconds,
        _count_dlt(pipeline, TABLE),
        peak_rss_mib(),
        stages=_dlt_stages(pipeline),
        load_ids=len(load_info.loads_ids),
        load_jobs=_jobs_of(load_info),
    )


def _dlt_stages(pipeline: Any) -> dict[str, float]:
    trace = pipeline.last_trace
    if trace is None:
        return {}
    return {
        step.step: round((step.finished_at - step.started_at).total_seconds(), 3)
        for step in trace.steps
        if step.finished_at is not None
    }


# --- ferry ------------------------------------------------------------------------------------


def write_pipelines_file(job: Job) -> Path:
    """The ferry pipeline under test: declared source types and the real transform."""
    import yaml

    spec = {
        "pipelines": [
            {
                "name": "bench",
                "source": {"kind": "files", "uri": job.glob, "columns": job.column_types},
                "transform": FERRY_TRANSFORM,
                "destination": {"table": TABLE, "write_disposition": "append"},
            }
        ]
    }
    path = Path(job.workdir) / "pipelines.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


def _capture_load_info() -> list[Any]:
    """Bench-only probe: keep every LoadInfo dlt returns (the run report has load ids only)."""
    from dlt.pipeline.pipeline import Pipeline

    captured: list[Any] = []
    original = Pipeline.load

    def load(self: Any, *args: Any, **kwargs: Any) -> Any:
        info = original(self, *args, **kwargs)
        captured.append(info)
        return info

    Pipeline.load = load  # type: ignore[method-assign]
    return captured


def run_ferry(job: Job) -> Outcome:
    from app.run.catalog import load_catalog
    from app.run.runner import RunRequest, run
    from core.settings import Settings

    pipelines_file = write_pipelines_file(job)
    catalog = load_catalog(pipelines_file)
    data_dir = Path(job.workdir) / "data"
    if job.path == "ferry_bq":
        assert job.emulator_endpoint and job.bigquery_dataset
        os.environ["BIGQUERY_EMULATOR_HOST"] = job.emulator_endpoint
        settings = Settings(
            destination="bigquery",
            bigquery_project="test-project",
            bigquery_emulator_host=job.emulator_endpoint,
            bigquery_dataset=job.bigquery_dataset,
            storage_emulator_host=None,
            pipelines_file=pipelines_file,
            data_dir=data_dir,
        )
    else:
        settings = Settings(
            destination="duckdb",
            bigquery_project=None,
            bigquery_emulator_host=None,
            storage_emulator_host=None,
            pipelines_file=pipelines_file,
            data_dir=data_dir,
        )
    captured = _capture_load_info()
    started = time.perf_counter()
    report = run(RunRequest(pipeline="bench"), settings, catalog)
    seconds = time.perf_counter() - started
    load_jobs: dict[str, int] = {}
    for info in captured:
        for table, jobs in _jobs_of(info).items():
            load_jobs[table] = load_jobs.get(table, 0) + jobs
    return Outcome(
        seconds,
        _count_ferry(settings, job) if job.path == "ferry" else report.rows_loaded,
        peak_rss_mib(),
        stages=dict(report.seconds),
        load_ids=len(report.load_ids),
        load_jobs=load_jobs,
        note="" if job.path == "ferry" else "rows from the run report",
    )


def _count_ferry(settings: Any, job: Job) -> int:
    import duckdb

    with duckdb.connect(str(settings.resolved_duckdb_path), read_only=True) as connection:
        sql = f"select count(*) from {settings.dataset_name}.{TABLE}"  # noqa: S608 - our names
        row = connection.execute(sql).fetchone()
    return int(row[0]) if row else 0


# --- child entry point ------------------------------------------------------------------------


class SkippedPathError(Exception):
    """This path does not apply to this input (reported, not an error)."""


PATHS: dict[str, Callable[[Job], Outcome]] = {
    "limit": run_limit,
    "dlt_fs": run_dlt_filesystem,
    "naive": run_naive,
    "ferry": run_ferry,
    "ferry_bq": run_ferry,
}


def _warm_up(path: str) -> None:
    """Import before the clock starts: interpreter and import time are not the path's cost."""
    import duckdb  # noqa: F401

    if path != "limit":
        import dlt
        import dlt.destinations
    if path == "dlt_fs":
        import dlt.sources.filesystem  # noqa: F401
    if path.startswith("ferry"):
        import app.run.runner  # noqa: F401


def peak_rss_mib() -> float:
    """This process's high-water RSS (VmHWM), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main(argv: list[str]) -> int:
    job = Job(**json.loads(argv[0]))
    _warm_up(job.path)
    try:
        outcome = PATHS[job.path](job)
        body: dict[str, Any] = {"ok": True, **asdict(outcome)}
    except SkippedPathError as skipped:
        body = {"ok": False, "skipped": str(skipped)}
    except Exception as error:
        body = {"ok": False, "error": f"{type(error).__name__}: {error}"[:2000]}
    sys.stdout.write(RESULT_PREFIX + json.dumps(body) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
