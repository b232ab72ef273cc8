"""BigQuery's concurrency errors, injected by the bqsim proxy in front of the emulator, are
retriable at the edge (503: nacked, exit 1), and the retry loads the rows exactly once.

- a full DML queue: `400 resourcesExceeded` "Too many DML statements outstanding against
  table ..." (the proxy with no DML slot at all: every mutating statement is refused);
- a DML conflict: `400 invalidQuery` "Could not serialize access to table ... due to
  concurrent update" (the proxy with conflicts on and no reruns, while another client keeps
  committing DML on the same table).

Both were terminal `destination_rejected` before: 422 on `POST /runs`, and on a push 200
`failed_terminal` (acked, the rows never loaded). The third error of the family, an aborted
multi-statement transaction, is not something the proxy can produce;
tests/destinations/bigquery/test_errors.py covers its recognition.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.bqsim import ZERO_LATENCY, BqsimProxy, run_bqsim
from tests.emulators import BigQueryEmulator, GcsEmulator, free_port
from tests.pubsub_messages import gcs_notification, wrapped_push
from tests.service_process import ServiceProcess, run_service

PIPELINE = """
pipelines:
  - name: people
    source: {{uri: "{folder}/*.csv", columns: {{id: int64}}}}
    destination: {{table: people, write_disposition: merge, primary_key: [id]}}
"""
"""A merge pipeline: its load is mutating DML on its own table (an append pipeline's first
load has none: a load job, and the ledger and `_dlt_loads` rows streamed)."""


@contextmanager
def service_on(
    tmp_path: Path, emulator: BigQueryEmulator, endpoint: str, dataset: str
) -> Iterator[tuple[ServiceProcess, Path]]:
    """`serve` on the BigQuery at `endpoint` (the proxy's address: it may start later, or
    restart there with other limits)."""
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    pipelines = tmp_path / "pipelines.yaml"
    pipelines.write_text(PIPELINE.format(folder=folder), encoding="utf-8")
    env = {
        "FERRY_PIPELINES_FILE": str(pipelines),
        "FERRY_DATA_DIR": str(tmp_path / "data"),
        "FERRY_BIGQUERY_PROJECT": emulator.project,
        "FERRY_BIGQUERY_DATASET": dataset,
        "FERRY_RUN_LOG": "false",
        "BIGQUERY_EMULATOR_HOST": endpoint,
    }
    with run_service(env, tmp_path / "service.log") as service:
        yield service, folder


def write_people(folder: Path, name: str, ids: range) -> None:
    text = "id,name\n" + "".join(f"{i},p{i}\n" for i in ids)
    (folder / name).write_text(text, encoding="utf-8")


def post_run(service: ServiceProcess) -> requests.Response:
    return requests.post(f"{service.base_url}/runs", json={"pipeline": "people"}, timeout=300)


def rows(emulator: BigQueryEmulator, dataset: str) -> list[tuple[int, int]]:
    """(id, copies) of every id in the table."""
    result = emulator.client().query(
        f"select id, count(*) as n from `{emulator.project}.{dataset}.people` "
        "group by id order by id"
    )
    return [(int(row.id), int(row.n)) for row in result.result()]


def assert_retriable(answer: requests.Response, message: str) -> None:
    assert answer.status_code == 503, answer.text
    error: dict[str, Any] = answer.json()["error"]
    assert error["code"] == "destination_unavailable" and error["recovery"] == "retriable"
    assert message in error["message"], error


def test_a_full_dml_queue_is_retriable_and_the_retry_loads_once(
    tmp_path: Path, bigquery_emulator: BigQueryEmulator, unique_name: str
) -> None:
    port = free_port()
    no_dml_slot = {
        "latency_ms": ZERO_LATENCY,
        "limits": {"mutating_dml_running_per_table": 0, "mutating_dml_queued_per_table": 0},
    }
    endpoint = f"http://127.0.0.1:{port}"
    with service_on(tmp_path, bigquery_emulator, endpoint, unique_name) as (service, folder):
        write_people(folder, "a.csv", range(1, 21))
        with run_bqsim(bigquery_emulator, no_dml_slot, tmp_path, port) as proxy:
            refused = post_run(service)
            assert_retriable(refused, "Too many DML statements outstanding against table")
            assert proxy.stats()["rejections"]["resourcesExceeded:dml_queue"] >= 1
        # the queue drained: BigQuery as usual, where the service already points
        with run_bqsim(bigquery_emulator, {"latency_ms": ZERO_LATENCY}, tmp_path, port):
            retried = post_run(service)
            assert retried.status_code == 200, retried.text
            again = post_run(service)
            assert again.status_code == 200, again.text
            assert again.json()["files"][0]["status"] == "already_loaded"

    assert rows(bigquery_emulator, unique_name) == [(i, 1) for i in range(1, 21)]


PUSHED_PIPELINE = """
pipelines:
  - name: people
    source: {{uri: "gs://{bucket}/in/*.csv", columns: {{id: int64}}}}
    destination: {{table: people, write_disposition: merge, primary_key: [id]}}
"""


def test_a_full_dml_queue_nacks_a_push_and_the_redelivery_loads_once(
    tmp_path: Path,
    bigquery_emulator: BigQueryEmulator,
    gcs_emulator: GcsEmulator,
    unique_name: str,
) -> None:
    """The same through Pub/Sub push: 503 `retry` (a nack, so Pub/Sub redelivers) instead of
    200 `failed_terminal` (an ack: the object was never loaded)."""
    bucket = gcs_emulator.client().create_bucket(unique_name)
    text = "id,name\n" + "".join(f"{i},p{i}\n" for i in range(1, 21))
    bucket.blob("in/a.csv").upload_from_string(text)
    stored = bucket.get_blob("in/a.csv")
    assert stored is not None
    pipelines = tmp_path / "pipelines.yaml"
    pipelines.write_text(PUSHED_PIPELINE.format(bucket=unique_name), encoding="utf-8")
    port = free_port()
    env = {
        "FERRY_PIPELINES_FILE": str(pipelines),
        "FERRY_DATA_DIR": str(tmp_path / "data"),
        "FERRY_BIGQUERY_PROJECT": bigquery_emulator.project,
        "FERRY_BIGQUERY_DATASET": unique_name,
        "FERRY_GCS_PROJECT": bigquery_emulator.project,
        "FERRY_RUN_LOG": "false",
        "BIGQUERY_EMULATOR_HOST": f"http://127.0.0.1:{port}",
        **gcs_emulator.env,
    }
    data, attributes = gcs_notification(unique_name, "in/a.csv", int(stored.generation))
    headers, body = wrapped_push(data, attributes, message_id="m-1")
    no_dml_slot = {
        "latency_ms": ZERO_LATENCY,
        "limits": {"mutating_dml_running_per_table": 0, "mutating_dml_queued_per_table": 0},
    }
    with run_service(env, tmp_path / "service.log") as service:

        def push() -> requests.Response:
            return requests.post(
                f"{service.base_url}/pubsub", headers=headers, data=body, timeout=300
            )

        with run_bqsim(bigquery_emulator, no_dml_slot, tmp_path, port):
            refused = push()
        with run_bqsim(bigquery_emulator, {"latency_ms": ZERO_LATENCY}, tmp_path, port):
            redelivered = push()
            again = push()

    assert refused.status_code == 503, refused.text
    assert refused.json()["status"] == "retry"
    assert "Too many DML statements outstanding" in str(refused.json()["error"])
    assert redelivered.status_code == 200 and redelivered.json()["status"] == "loaded"
    assert again.status_code == 200 and again.json()["status"] == "skipped"
    assert rows(bigquery_emulator, unique_name) == [(i, 1) for i in range(1, 21)]


CONFLICTING = {
    "latency_ms": {**ZERO_LATENCY, "dml": 400},
    "limits": {"dml_conflicts": True, "dml_conflict_reruns": 0},
}
ATTEMPTS = 6
"""New objects loaded while another client commits DML on the table, until one conflicts
(each does with a high probability: the other client commits every ~0.4 s and a statement
lasts 0.4 s)."""


def test_a_dml_conflict_is_retriable_and_the_retry_loads_once(
    tmp_path: Path, bigquery_emulator: BigQueryEmulator, unique_name: str
) -> None:
    with (
        run_bqsim(bigquery_emulator, CONFLICTING, tmp_path) as proxy,
        service_on(tmp_path, bigquery_emulator, proxy.endpoint, unique_name) as (
            service,
            folder,
        ),
    ):
        write_people(folder, "first.csv", range(1, 6))
        assert post_run(service).status_code == 200  # the table exists; no one else writes
        latest: list[int] = []
        conflicted = []
        with committing_dml(proxy, unique_name):
            for attempt in range(ATTEMPTS):
                ids = range(100 * (attempt + 1), 100 * (attempt + 1) + 5)
                # one object rewritten: a new object is appended by a load job (no DML to
                # conflict with); from its second generation on, its load merges over its
                # rows (a delete-insert on the table), which is what can conflict
                write_people(folder, "more.csv", ids)
                latest = list(ids)
                answer = post_run(service)
                if answer.status_code != 200:
                    assert_retriable(answer, "Could not serialize access to table")
                    conflicted.append(attempt)
                    break
        assert conflicted, f"no load conflicted in {ATTEMPTS} attempts"
        assert proxy.stats()["rejections"]["invalidQuery:concurrent_update"] >= 1
        retried = post_run(service)  # the other client is done: the redelivery passes
        assert retried.status_code == 200, retried.text

    expected = [*range(1, 6), *latest]
    assert rows(bigquery_emulator, unique_name) == [(i, 1) for i in sorted(expected)]


@contextmanager
def committing_dml(proxy: BqsimProxy, dataset: str) -> Iterator[None]:
    """Another client committing a (no-op) mutating DML on the table back to back."""
    client = BigQueryEmulator(proxy.endpoint, proxy.upstream.project).client()
    stop = threading.Event()

    def commit_forever() -> None:
        table = f"`{proxy.upstream.project}.{dataset}.people`"
        while not stop.is_set():
            # it conflicts with ferry's statements too, and goes on
            with contextlib.suppress(Exception):
                client.query(f"update {table} set name = name where false").result()

    other = threading.Thread(target=commit_forever, daemon=True)
    other.start()
    try:
        yield
    finally:
        stop.set()
        other.join()


pytestmark = pytest.mark.emulators
