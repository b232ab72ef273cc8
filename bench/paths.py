"""The measured paths. Each runs in its own child process: `python -m bench.paths JOB_JSON`.

The child imports what its path needs, times the work (`work_seconds`), counts what landed
in the destination (untimed), and prints one `BENCH_RESULT {...}` line. The parent times the
whole process (imports included) and samples the process tree's RSS (`bench.measure`).
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
RECIPE_BATCH_ROWS = 100_000

FERRY_TRANSFORM: list[dict[str, Any]] = [
    {"rename": {"unit_price": "price", "customer_id": "customer"}},
    {"cast": {"quantity": "int32", "score": "float64"}},
    {"filter": "quantity >= 10"},
    {"derive": {"amount": "quantity * price"}},
]
"""A real transform: rename, cast, filter (drops ~10%: quantity is uniform 0..99), derive."""


def _default_transform() -> list[dict[str, Any]]:
    return list(FERRY_TRANSFORM)


@dataclass(frozen=True)
class Job:
    """What one child measures; passed as JSON on the command line."""

    path: str
    """limit | dlt_fs | recipe | ferry | ferry_plain | ferry_bq"""
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
    """dlt peers' loader file format (dlt's DuckDB default for dict rows, insert_values, is
    ~30x slower and takes GiBs in the load step)."""
    table: str = TABLE
    """The destination table (the dataset's name: orders or trips)."""
    transform: list[dict[str, Any]] = field(default_factory=lambda: _default_transform())


@dataclass
class Outcome:
    work_seconds: float
    rows_loaded: int
    peak_rss_mib: float
    stages: dict[str, float] = field(default_factory=dict)
    load_ids: int = 0
    load_jobs: dict[str, int] = field(default_factory=dict)
    """Completed dlt load jobs per table (dlt's own tables included)."""
    api_calls: dict[str, int] = field(default_factory=dict)
    """ferry_bq only: HTTP calls to the BigQuery API by kind."""
    note: str = ""


class SkippedPathError(Exception):
    """This path does not apply to this input (reported, not an error)."""


def _sql_list(paths: list[str]) -> str:
    return "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"


def _duckdb_reader(file_format: str) -> str:
    return {"parquet": "read_parquet", "jsonl": "read_json_auto"}.get(file_format, "read_csv_auto")


# --- the limit: DuckDB alone ------------------------------------------------------------------


def run_limit(job: Job) -> Outcome:
    import duckdb

    reader = _duckdb_reader(job.file_format)
    database = Path(job.workdir) / "limit.duckdb"
    started = time.perf_counter()
    with duckdb.connect(str(database)) as connection:
        sql = f"CREATE TABLE t AS SELECT * FROM {reader}({_sql_list(job.inputs)})"  # noqa: S608
        connection.execute(sql)
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


def _dlt_outcome(pipeline: Any, load_info: Any, seconds: float, table: str) -> Outcome:
    return Outcome(
        seconds,
        _count_dlt(pipeline, table),
        peak_rss_mib(),
        stages=_dlt_stages(pipeline),
        load_ids=len(load_info.loads_ids),
        load_jobs=_jobs_of(load_info),
    )


def run_dlt_filesystem(job: Job) -> Outcome:
    """What a dlt user writes: the filesystem source and its reader for the format.

    CSV (and csv.gz) goes through `read_csv_duckdb` (DuckDB parses); JSONL through
    `read_jsonl` and Parquet through `read_parquet`, dlt's readers for those formats.
    `use_pyarrow=True`: with DuckDB 2.0 the default (dict rows through `fetchmany`) fails,
    since DuckDB relations no longer have `fetchmany()`.
    """
    from dlt.sources.filesystem import filesystem, read_csv_duckdb, read_jsonl, read_parquet

    folder = Path(job.glob).parent
    readers: dict[str, Any] = {
        "parquet": read_parquet(),
        "jsonl": read_jsonl(),
        "csv": read_csv_duckdb(use_pyarrow=True),
        "csv.gz": read_csv_duckdb(use_pyarrow=True),
    }
    reader = readers[job.file_format]
    pipeline = _dlt_pipeline(job, "dlt_fs")
    started = time.perf_counter()
    files = filesystem(bucket_url=folder.resolve().as_uri(), file_glob=Path(job.glob).name)
    load_info = pipeline.run(
        files | reader, table_name=job.table, loader_file_format=job.peer_loader_format
    )
    return _dlt_outcome(pipeline, load_info, time.perf_counter() - started, job.table)


def run_recipe(job: Job) -> Outcome:
    """The DuckDB-reader recipe: DuckDB's parallel reader -> Arrow record batches -> dlt."""
    import dlt
    import duckdb

    reader = _duckdb_reader(job.file_format)

    def batches() -> Iterator[Any]:
        with duckdb.connect() as connection:
            query = f"SELECT * FROM {reader}({_sql_list(job.inputs)})"  # noqa: S608 - our paths
            yield from connection.sql(query).to_arrow_reader(RECIPE_BATCH_ROWS)

    pipeline = _dlt_pipeline(job, "recipe")
    started = time.perf_counter()
    load_info = pipeline.run(dlt.resource(batches, name=job.table), loader_file_format="parquet")
    return _dlt_outcome(pipeline, load_info, time.perf_counter() - started, job.table)


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


def write_pipelines_file(job: Job, folder: Path | None = None, transform: bool = True) -> Path:
    """The ferry pipeline under test: declared source types and (optionally) the transform."""
    import yaml

    pipeline: dict[str, Any] = {
        "name": "bench",
        # every column is declared, so only those load: JSON lines go through DuckDB's reader
        # (the recipe's DuckDB reader keeps no field its sample missed either)
        "source": {
            "kind": "files",
            "uri": job.glob,
            "columns": job.column_types,
            "undeclared_columns": "ignore",
        },
        "destination": {"table": job.table, "write_disposition": "append"},
    }
    if transform:
        pipeline["transform"] = job.transform
    path = (folder or Path(job.workdir)) / "pipelines.yaml"
    path.write_text(yaml.safe_dump({"pipelines": [pipeline]}, sort_keys=False), encoding="utf-8")
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


def count_bigquery_calls() -> dict[str, int]:
    """Bench-only probe: count every HTTP call the Google clients make, by kind.

    Hooks `requests.Session.request`, under every google-cloud-bigquery call (REST calls and
    load-file uploads alike), so what dlt and ferry do per run is counted, not assumed.
    """
    import requests

    counts: dict[str, int] = {}
    original = requests.Session.request

    def request(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        kind = _call_kind(method, url, kwargs.get("data") or kwargs.get("json"))
        counts[kind] = counts.get(kind, 0) + 1
        if os.environ.get("BENCH_SHOW_CALLS"):  # what each call was, for a reader of the bench
            body = kwargs.get("data") or kwargs.get("json") or ""
            sys.stderr.write(f"BQ {kind} {method} {url.split('?')[0][-60:]} {str(body)[:3000]}\n")
        return original(self, method, url, *args, **kwargs)

    requests.Session.request = request  # type: ignore[method-assign,assignment]
    return counts


def _call_kind(method: str, url: str, body: Any) -> str:
    path = url.split("?", 1)[0]
    text = body.decode(errors="replace") if isinstance(body, bytes) else str(body or "")
    if "/upload/" in path:
        # a resumable upload is a POST that creates the load job, then PUTs of its bytes
        return "load_job" if method == "POST" else "load_job_upload"
    if method == "POST" and path.endswith("/jobs"):
        return "query" if '"query"' in text else "job_other"
    if method == "POST" and path.endswith("/queries"):
        return "query"
    if "/queries/" in path or (method == "GET" and "/jobs/" in path):
        return "job_poll"
    resource = "tables" if "/tables" in path else "datasets" if "/datasets" in path else "other"
    return f"{method.lower()}_{resource}"


def _ferry_api() -> tuple[Any, Any, Any, Any]:
    """(load_catalog, RunRequest, run, Settings) under the new module names (issue 10)."""
    from app.run.catalog import load_catalog
    from app.run.runner import RunRequest, run
    from core.settings import Settings

    return load_catalog, RunRequest, run, Settings


def ferry_settings(job: Job, pipelines_file: Path, data_dir: Path) -> Any:
    *_, settings_class = _ferry_api()
    if job.path == "ferry_bq":
        assert job.emulator_endpoint and job.bigquery_dataset
        os.environ["BIGQUERY_EMULATOR_HOST"] = job.emulator_endpoint
        return settings_class(
            destination="bigquery",
            bigquery_project="test-project",
            bigquery_emulator_host=job.emulator_endpoint,
            bigquery_dataset=job.bigquery_dataset,
            storage_emulator_host=None,
            pipelines_file=pipelines_file,
            data_dir=data_dir,
        )
    return settings_class(
        destination="duckdb",
        bigquery_project=None,
        bigquery_emulator_host=None,
        storage_emulator_host=None,
        pipelines_file=pipelines_file,
        data_dir=data_dir,
    )


def run_ferry(job: Job) -> Outcome:
    load_catalog, run_request, run, _ = _ferry_api()
    pipelines_file = write_pipelines_file(job, transform=job.path != "ferry_plain")
    catalog = load_catalog(pipelines_file)
    settings = ferry_settings(job, pipelines_file, Path(job.workdir) / "data")
    captured = _capture_load_info()
    calls = count_bigquery_calls() if job.path == "ferry_bq" else {}
    if job.path == "ferry_bq":
        return _warm_push(job, settings, catalog, calls, captured)
    started = time.perf_counter()
    report = run(run_request(pipeline="bench"), settings, catalog)
    seconds = time.perf_counter() - started
    bigquery = job.path == "ferry_bq"
    return Outcome(
        seconds,
        report.rows_loaded if bigquery else _count_ferry(settings, job.table),
        peak_rss_mib(),
        stages=dict(report.seconds),
        load_ids=len(report.load_ids),
        load_jobs=_load_jobs(captured),
        api_calls=dict(calls),
        note="rows from the run report" if bigquery else "",
    )


def _warm_push(
    job: Job, settings: Any, catalog: Any, calls: dict[str, int], captured: list[Any]
) -> Outcome:
    """A push to a warm instance, as the service does it (the run, then its run-log row):
    the first object creates the dataset and tables; only the second one's calls count."""
    from app.ops.run_events import run_and_tell

    _, run_request, run, _ = _ferry_api()
    first, second = job.inputs[:2]

    def push(uri: str) -> Any:
        request = run_request(pipeline="bench", source_uri=uri, trigger="http")
        return run_and_tell(settings, lambda: run(request, settings, catalog))

    push(first)
    calls.clear()
    captured.clear()
    started = time.perf_counter()
    report = push(second)
    seconds = time.perf_counter() - started
    return Outcome(
        seconds,
        report.rows_loaded,
        peak_rss_mib(),
        stages=dict(report.seconds),
        load_ids=len(report.load_ids),
        load_jobs=_load_jobs(captured),
        api_calls=dict(calls),
        note="the second of two pushes; rows from its run report",
    )


def _load_jobs(captured: list[Any]) -> dict[str, int]:
    load_jobs: dict[str, int] = {}
    for info in captured:
        for table, jobs in _jobs_of(info).items():
            load_jobs[table] = load_jobs.get(table, 0) + jobs
    return load_jobs


def _count_ferry(settings: Any, table: str) -> int:
    import duckdb

    with duckdb.connect(str(settings.resolved_duckdb_path), read_only=True) as connection:
        sql = f"select count(*) from {settings.dataset_name}.{table}"  # noqa: S608 - our names
        row = connection.execute(sql).fetchone()
    return int(row[0]) if row else 0


# --- child entry point ------------------------------------------------------------------------


PATHS: dict[str, Callable[[Job], Outcome]] = {
    "limit": run_limit,
    "dlt_fs": run_dlt_filesystem,
    "recipe": run_recipe,
    "ferry": run_ferry,
    "ferry_plain": run_ferry,
    "ferry_bq": run_ferry,
}


def peak_rss_mib() -> float:
    """This process's high-water RSS (VmHWM), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main(argv: list[str]) -> int:
    job = Job(**json.loads(argv[0]))
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
