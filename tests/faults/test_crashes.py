"""Crashes: a worker SIGKILLed during extract, during load and after the commit; SIGTERM mid-run;
a cold instance; job tasks killed and retried. After each fault the request is redelivered
(or the task rerun) and the destination must hold exactly the source's rows: source rows ==
loaded + quarantined, every key once.

Kills come from `core/failpoints.py` (FERRY_FAILPOINTS), except the mid-load kill on DuckDB:
the test watches the run's dlt load package and SIGKILLs the worker the moment one load job
has committed while the data job is still running, so "mid-load" is exact, not a timer.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest
import requests

from sources.files import shard
from tests.emulators import BigQueryEmulator, GcsEmulator, PubSubEmulator
from tests.faults.test_delivery import SourceFile, Tally, emulator_stack, exact, people_csv
from tests.helpers import REPO
from tests.service_process import ServiceProcess, run_service, stop_like_cloud_run
from tests.sources.api_server import ApiServer, Received, Reply, serve

TABLE = "big"
BIG_ROWS = 1_000_000
"""~27 MB: its load job runs for ~1 s on DuckDB, a wide window for a mid-load kill."""


@dataclass
class LocalWorker:
    """A pipeline over local CSVs on DuckDB, and how to start instances of the service."""

    tmp_path: Path
    files: Path

    @property
    def database(self) -> Path:
        return self.tmp_path / "destination.duckdb"

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "FERRY_PIPELINES_FILE": str(self.tmp_path / "pipelines.yaml"),
            "FERRY_DATA_DIR": str(self.tmp_path / "data"),
            "FERRY_DUCKDB_PATH": str(self.database),
            **extra,
        }

    def write(self, name: str, source: SourceFile) -> Path:
        path = self.files / name
        path.write_text(source.text, encoding="utf-8")
        return path

    def tally(self, path: Path | None = None) -> Tally:
        where = f" where _ferry_source_uri = '{path}'" if path else ""
        return Tally(
            rows=self.scalar(f"select count(*) from ferry.{TABLE}{where}"),
            keys=self.scalar(f"select count(distinct id) from ferry.{TABLE}{where}"),
            quarantined=self.scalar(f"select count(*) from ferry.{TABLE}__rejects{where}"),
        )

    def scalar(self, sql: str) -> int:
        if not self.database.exists():
            return 0
        with duckdb.connect(str(self.database), read_only=True) as connection:
            try:
                row = connection.execute(sql).fetchone()
            except duckdb.CatalogException:  # the table appears with its first load
                return 0
        return int(row[0]) if row else 0

    def run_dirs(self) -> list[Path]:
        root = self.tmp_path / "data" / "runs"
        return sorted(root.iterdir()) if root.exists() else []


@pytest.fixture
def worker(tmp_path: Path) -> LocalWorker:
    files = tmp_path / "files"
    files.mkdir()
    (tmp_path / "pipelines.yaml").write_text(
        f"""
pipelines:
  - name: big
    source: {{uri: "{files}/*.csv", columns: {{id: int64}}, on_bad_rows: reject}}
    destination: {{table: {TABLE}}}
""",
        encoding="utf-8",
    )
    return LocalWorker(tmp_path, files)


def post_run(service: ServiceProcess, body: dict[str, Any]) -> requests.Response:
    return requests.post(f"{service.base_url}/runs", json=body, timeout=180)


def assert_killed_mid_request(service: ServiceProcess, body: dict[str, Any]) -> None:
    """The request never gets an answer: the worker died under it (SIGKILL)."""
    with pytest.raises(requests.ConnectionError):
        post_run(service, body)
    assert service.process.wait(timeout=30) == -signal.SIGKILL


def redeliver(worker: LocalWorker, body: dict[str, Any], name: str) -> dict[str, Any]:
    """A restarted instance (no failpoints) on the same data dir gets the request again."""
    with run_service(worker.env(), worker.tmp_path / f"{name}.log") as restarted:
        response = post_run(restarted, body)
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()
    return report


# --- SIGKILL during extract, during load, after the commit (DuckDB) ---------------------------


def test_killed_during_extract_then_redelivered_loads_exactly_once(worker: LocalWorker) -> None:
    source = people_csv(range(100_000), bad=0)
    path = worker.write("extract.csv", source)
    body = {"pipeline": "big", "source": str(path)}
    env = worker.env(FERRY_FAILPOINTS="after_first_batch", FERRY_BATCH_BYTES=str(256 * 1024))
    with run_service(env, worker.tmp_path / "killed.log") as service:
        assert_killed_mid_request(service, body)

    assert worker.tally(path) == Tally(0, 0, 0), "nothing of the killed run is visible"
    assert len(worker.run_dirs()) == 1, "the killed run left its working dir behind"
    report = redeliver(worker, body, "restarted")

    assert report["files"][0]["status"] == "loaded"
    assert worker.tally(path) == exact(source)


def kill_when_a_load_job_committed(
    worker: LocalWorker, process: Any, other_jobs: bool = True
) -> threading.Thread:
    """SIGKILL `process` while the `big` data job is running (started, not completed), once
    another job of its load package has committed when the package has others (`other_jobs`:
    a file run writes no dlt state row, so a clean file's package holds the data job only)."""

    def watch() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            for package in worker.tmp_path.glob("data/runs/*/ferry_big/load/normalized/*"):
                try:
                    completed = list((package / "completed_jobs").iterdir())
                    started = [job.name for job in (package / "started_jobs").iterdir()]
                except (FileNotFoundError, NotADirectoryError):  # the package is moving
                    continue
                if (completed or not other_jobs) and any(
                    job.startswith(f"{TABLE}.") for job in started
                ):
                    process.send_signal(signal.SIGKILL)
                    return
            time.sleep(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    return watcher


def load_package_jobs(worker: LocalWorker) -> dict[str, list[str]]:
    """The jobs of the killed run's load packages (a busy machine may leave a second,
    not yet started package beside the one being loaded), by state."""
    packages = list(worker.tmp_path.glob("data/runs/*/ferry_big/load/normalized/*"))
    assert packages, "the killed run left no load package"
    return {
        state: sorted(
            job.name
            for package in packages
            if (package / f"{state}_jobs").is_dir()
            for job in (package / f"{state}_jobs").iterdir()
        )
        for state in ("completed", "started", "new")
    }


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(0, id="clean-file"),
        pytest.param(10, id="with-quarantined-rows"),
    ],
)
def test_killed_during_load_then_redelivered_loads_exactly_once(
    worker: LocalWorker, bad: int
) -> None:
    source = people_csv(range(BIG_ROWS), bad=bad)
    path = worker.write("load.csv", source)
    body = {"pipeline": "big", "source": str(path)}
    # dlt's load step loads the data here (a streamed append commits before it: killed
    # mid-read and after its commit in test_streamed_append_kills.py)
    unstreamed = worker.env(FERRY_STREAMED_APPEND_BYTES=str(1 << 40))
    with run_service(unstreamed, worker.tmp_path / "killed.log") as service:
        watcher = kill_when_a_load_job_committed(worker, service.process, other_jobs=bad > 0)
        assert_killed_mid_request(service, body)
        watcher.join()

    jobs = load_package_jobs(worker)
    if bad:
        assert jobs["completed"], "the rejects job had committed"
    assert any(job.startswith(f"{TABLE}.") for job in jobs["started"]), "the data job had not"
    # dlt commits each table's job on its own: the rejects may already be there, the data
    # rows are not, and the ledger (completed loads only) does not count the object as loaded
    assert worker.tally(path).rows == 0, f"data half-visible after the kill: {jobs}"
    report = redeliver(worker, body, "restarted")

    assert report["files"][0]["status"] == "loaded"
    assert worker.tally(path) == exact(source)


def test_killed_after_commit_before_response_then_redelivered_loads_nothing(
    worker: LocalWorker,
) -> None:
    source = people_csv(range(100_000), bad=7)
    path = worker.write("commit.csv", source)
    body = {"pipeline": "big", "source": str(path)}
    with run_service(worker.env(FERRY_FAILPOINTS="after_commit"), worker.tmp_path / "k.log") as s:
        assert_killed_mid_request(s, body)

    assert worker.tally(path) == exact(source), "the commit completed before the kill"
    report = redeliver(worker, body, "restarted")

    assert report["status"] == "skipped"
    assert report["files"][0]["status"] == "already_loaded"
    assert worker.tally(path) == exact(source)


# --- SIGKILL during load on the production path (GCS + push + BigQuery merge) -----------------


@pytest.mark.emulators
def test_killed_during_a_bigquery_load_then_redelivered_loads_exactly_once(
    tmp_path: Path,
    gcs_emulator: GcsEmulator,
    bigquery_emulator: BigQueryEmulator,
    pubsub_emulator: PubSubEmulator,
) -> None:
    """Killed once its load job committed the rows but before dlt's `_dlt_loads` row went in
    (a failpoint there: the whole load now takes under the 1 s this test used to wait, so a
    timed kill found it done): the redelivery must not count those rows, and lands the file
    once."""
    source = people_csv(range(20_000), bad=4)
    with emulator_stack(
        tmp_path,
        gcs_emulator,
        bigquery_emulator,
        pubsub_emulator,
        FERRY_FAILPOINTS="before_load_marked",
    ) as stack:
        generation = stack.upload("incoming/crash.csv", source)
        with pytest.raises(requests.ConnectionError):
            stack.push("incoming/crash.csv", generation, "m-1")
        assert stack.service.process.wait(timeout=30) == -signal.SIGKILL

        with stack.another_instance("restarted") as restarted:
            response = stack.push("incoming/crash.csv", generation, "m-1", service=restarted)

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "loaded"
    assert stack.tally("incoming/crash.csv") == exact(source)


# --- SIGTERM mid-run ----------------------------------------------------------------------------


def paged_api(api: ApiServer, records: list[dict[str, Any]], per_page: int) -> dict[str, float]:
    """Serve `records` in pages following `next` links; the returned dict's `delay` slows
    every page (set it to 0 to make the API fast)."""
    speed = {"delay": 0.0}

    def page(request: Received) -> Reply:
        number = int(request.query.get("page", "0"))
        chunk = records[number * per_page : (number + 1) * per_page]
        more = (number + 1) * per_page < len(records)
        link = f"{api.base_url}/items?page={number + 1}" if more else None
        return Reply(body={"items": chunk, "next": link}, delay=speed["delay"])

    api.route("/items", page)
    return speed


def test_sigterm_then_sigkill_mid_run_answers_503_nothing_visible_and_the_retry_loads_all(
    tmp_path: Path,
) -> None:
    records = [{"id": i, "v": i % 7} for i in range(3000)]
    database = tmp_path / "destination.duckdb"
    with serve() as api:
        speed = paged_api(api, records, per_page=100)
        (tmp_path / "pipelines.yaml").write_text(
            f"""
pipelines:
  - name: slow
    source: {{kind: api, base_url: "{api.base_url}", path: /items, data_selector: items,
              paginator: {{type: json_link, next_url_path: next}}, allowed_hosts: ["127.0.0.1"]}}
    destination: {{table: slow, write_disposition: merge, primary_key: [id]}}
""",
            encoding="utf-8",
        )
        env = {
            "FERRY_PIPELINES_FILE": str(tmp_path / "pipelines.yaml"),
            "FERRY_DATA_DIR": str(tmp_path / "data"),
            "FERRY_DUCKDB_PATH": str(database),
        }
        speed["delay"] = 0.3
        result: dict[str, Any] = {}
        with run_service(env, tmp_path / "service.log") as service:

            def call() -> None:
                response = post_run(service, {"pipeline": "slow"})
                result["status"], result["body"] = response.status_code, response.json()

            caller = threading.Thread(target=call)
            caller.start()
            while len(api.requests_to("/items")) < 4:  # a few pages in: mid-extract
                time.sleep(0.05)
            killed = stop_like_cloud_run(service.process)
            caller.join(timeout=30)

        assert not killed, "the instance stopped within Cloud Run's grace period"
        assert service.process.returncode in (0, -signal.SIGTERM)
        assert result["status"] == 503, "nacked: the trigger retries"
        assert result["body"]["error"]["code"] == "shutting_down"
        visible = duckdb_count(database, "select count(*) from ferry.slow")
        assert visible == 0, "nothing of the abandoned run is visible"

        speed["delay"] = 0.0
        with run_service(env, tmp_path / "retry.log") as retry:
            response = post_run(retry, {"pipeline": "slow"})
    assert response.status_code == 200, response.text
    assert response.json()["rows_loaded"] == len(records)
    assert duckdb_count(database, "select count(*), count(distinct id) from ferry.slow") == len(
        records
    )


def duckdb_count(database: Path, sql: str) -> int:
    """The first column of the only row; with two columns, they must agree (no duplicates)."""
    if not database.exists():
        return 0
    with duckdb.connect(str(database), read_only=True) as connection:
        try:
            row = connection.execute(sql).fetchone()
        except duckdb.CatalogException:
            return 0
    assert row is not None
    assert len(set(row)) == 1, f"{sql}: {row}"
    return int(row[0])


# --- a cold instance resumes the incremental cursor from the destination ----------------------


def test_cold_instance_with_an_empty_working_dir_resumes_the_cursor(tmp_path: Path) -> None:
    records: list[dict[str, Any]] = [
        {"id": i, "updated_at": f"2026-11-{i:02d}T00:00:00Z"} for i in range(1, 21)
    ]
    database = tmp_path / "shared.duckdb"
    with serve() as api:

        def changed_since(request: Received) -> Reply:
            since = request.query.get("since", "")
            return Reply(body={"data": [r for r in records if r["updated_at"] >= since]})

        api.route("/items", changed_since)
        (tmp_path / "pipelines.yaml").write_text(
            f"""
pipelines:
  - name: items
    source:
      kind: api
      base_url: "{api.base_url}"
      path: /items
      data_selector: data
      paginator: single_page
      incremental: {{cursor_path: updated_at, param: since, initial_value: "2026-01-01"}}
      allowed_hosts: ["127.0.0.1"]
    destination: {{table: items, write_disposition: merge, primary_key: [id]}}
""",
            encoding="utf-8",
        )

        def instance(name: str) -> dict[str, Any]:
            env = {
                "FERRY_PIPELINES_FILE": str(tmp_path / "pipelines.yaml"),
                "FERRY_DATA_DIR": str(tmp_path / f"workdir-{name}"),  # empty: a cold instance
                "FERRY_DUCKDB_PATH": str(database),
            }
            with run_service(env, tmp_path / f"{name}.log") as service:
                response = post_run(service, {"pipeline": "items"})
            assert response.status_code == 200, response.text
            report: dict[str, Any] = response.json()
            return report

        first = instance("a")
        records.extend({"id": i, "updated_at": f"2026-11-{i:02d}T00:00:00Z"} for i in range(21, 26))
        second = instance("b")

    sent = [request.query.get("since") for request in api.requests_to("/items")]
    assert sent == ["2026-01-01", "2026-11-20T00:00:00Z"], "b resumed a's cursor"
    assert first["rows_loaded"] == 20
    assert second["rows_loaded"] == 5
    assert duckdb_count(database, "select count(*), count(distinct id) from ferry.items") == 25


# --- job tasks killed and retried ---------------------------------------------------------------


def job_task(worker: LocalWorker, index: int, count: int, failpoint: str = "") -> Any:
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("FERRY_", "CLOUD_RUN_", "BIGQUERY_", "STORAGE_"))
    }
    environment |= worker.env(
        FERRY_LOG_FORMAT="json",
        FERRY_BATCH_BYTES=str(64 * 1024),
        CLOUD_RUN_TASK_INDEX=str(index),
        CLOUD_RUN_TASK_COUNT=str(count),
        FERRY_FAILPOINTS=failpoint,
    )
    return subprocess.Popen(
        [sys.executable, str(REPO / "main.py"), "run", "big"],
        cwd=REPO,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def names_with_every_task_busy(folder: Path, *, count: int, per_task: int) -> list[str]:
    """File names in `folder` whose shares (the job's own `shard` rule) give each task work."""
    owned: dict[int, list[str]] = {index: [] for index in range(count)}
    for n in range(1_000):
        name = f"part-{n:03d}.csv"
        index = next(i for i in range(count) if shard([Named(str(folder / name))], i, count))
        if len(owned[index]) < per_task:
            owned[index].append(name)
        if all(len(names) == per_task for names in owned.values()):
            return sorted(name for names in owned.values() for name in names)
    raise AssertionError("no file names spread over every task")


@dataclass(frozen=True)
class Named:
    uri: str


def test_job_tasks_killed_and_retried_load_exactly_once(worker: LocalWorker) -> None:
    """Three tasks: one finishes, one is killed mid-extract, one after its commit; Cloud Run
    retries the two killed task indexes."""
    # Shares follow a hash of each object's path, which lies in a fresh tmp folder; pick the
    # names so each of the three tasks owns at least two files, or a kill could find no work.
    names = names_with_every_task_busy(worker.files, count=3, per_task=2)
    sources = [
        people_csv(range(n * 5_000, (n + 1) * 5_000), bad=n % 3, tag=f"p{n}")
        for n in range(len(names))
    ]
    for name, source in zip(names, sources, strict=True):
        worker.write(name, source)
    failpoints = {0: "", 1: "after_first_batch", 2: "after_commit"}

    first_attempts = {index: job_task(worker, index, 3, fp) for index, fp in failpoints.items()}
    exits = {index: task.wait(timeout=120) for index, task in first_attempts.items()}
    assert exits == {0: 0, 1: -signal.SIGKILL, 2: -signal.SIGKILL}
    retries = {index: job_task(worker, index, 3) for index in (1, 2)}
    reports = {}
    for index, task in retries.items():
        stdout, stderr = task.communicate(timeout=120)
        assert task.returncode == 0, stderr
        reports[index] = json.loads(stdout)

    assert reports[2]["status"] == "skipped", "task 2 had committed before it was killed"
    assert reports[1]["files_loaded"] >= 1
    total = Tally(
        rows=sum(s.good for s in sources),
        keys=sum(s.good for s in sources),
        quarantined=sum(s.bad for s in sources),
    )
    assert worker.tally() == total
    assert sum(s.rows for s in sources) == total.rows + total.quarantined
