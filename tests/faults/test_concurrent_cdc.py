"""CDC deletes stay deleted on BigQuery whatever runs overlap (the BigQuery issue, item 1).

A load commits table by table: the data table's merge, then `<table>__tombstones`. Before
loads of one table were serialised, an older upsert checked between a newer delete's two
commits found neither the key nor its tombstone, and inserted the deleted key. The first
test forces exactly that interleaving; the second pushes randomised CDC feeds concurrently
through `serve` and compares the table row by row with the in-order reference.
"""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from app.run.request import ObjectRef
from app.run.runner import RunRequest, run
from core import failpoints
from core.errors import FerryError
from tests.emulators import BigQueryEmulator, GcsEmulator
from tests.faults.stateful_model import (
    Change,
    ChangeFile,
    change_files,
    deliveries,
    expected_table,
)
from tests.faults.test_stateful import bigquery_feed, bigquery_rows, cdc_feed, live_rows
from tests.pubsub_messages import gcs_notification, wrapped_push
from tests.service_process import run_service

INSERT_INTO = re.compile(r"INSERT INTO `[^`]+`\.`[^`]+`\.`(\w+)`")


class Interleaving:
    """Watches the merge statements dlt sends to BigQuery, and holds the delete's tombstone
    merge until its data merge has committed and the older upsert has either merged (the
    race) or been made to wait for the table's writer (the fix).

    Runs are told apart by order, not by name (a kept staging dataset carries no run id):
    until the test starts the upsert, only the delete's run writes."""

    def __init__(self) -> None:
        self.upsert_started = threading.Event()
        self.delete_data_committed = threading.Event()
        self.upsert_merged = threading.Event()
        self.upsert_waiting = threading.Event()
        self.upsert_went_on = threading.Event()
        """Set once the upsert merged or waited: what the held tombstone merge waits for."""
        self._held_once = False

    def before(self, sql: str) -> None:
        target = self._target(sql)
        if target == "accounts__tombstones" and not self._held_once:
            self._held_once = True
            assert self.delete_data_committed.wait(60), "the delete's data merge never ran"
            assert self.upsert_went_on.wait(60), "the older upsert neither merged nor waited"

    def after(self, sql: str) -> None:
        if self._target(sql) != "accounts":
            return
        if not self.upsert_started.is_set():
            self.delete_data_committed.set()
        else:
            self.upsert_merged.set()
            self.upsert_went_on.set()

    def waiting(self) -> None:
        self.upsert_waiting.set()
        self.upsert_went_on.set()

    @staticmethod
    def _target(sql: str) -> str | None:
        found = INSERT_INTO.search(sql)
        return found.group(1) if found else None


@pytest.fixture
def watched_merges(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Interleaving]]:
    """Every statement list dlt's BigQuery client executes passes the active Interleaving."""
    from dlt.destinations.impl.bigquery.sql_client import BigQuerySqlClient

    active: list[Interleaving] = []
    execute_many = BigQuerySqlClient.execute_many

    def watched(self: Any, statements: Any, *args: Any, **kwargs: Any) -> Any:
        sql = "\n".join(statements)
        for watcher in active:
            watcher.before(sql)
        result = execute_many(self, statements, *args, **kwargs)
        for watcher in active:
            watcher.after(sql)
        return result

    monkeypatch.setattr(BigQuerySqlClient, "execute_many", watched)
    yield active


def test_an_older_upsert_cannot_check_between_a_deletes_two_commits(
    tmp_path: Path,
    bigquery_env: BigQueryEmulator,
    unique_name: str,
    watched_merges: list[Interleaving],
) -> None:
    feed = bigquery_feed(tmp_path, bigquery_env, unique_name)
    # key 1 live at seq 1, and a tombstones table (key 3 deleted), so the upsert's merge
    # consults tombstones from its plan on
    first = ChangeFile("first.csv", (Change(1, 1, "i", "v1"), Change(3, 2, "d", "")))
    older_upsert = ChangeFile("older.csv", (Change(1, 5, "u", "old"), Change(2, 6, "i", "two")))
    newer_delete = ChangeFile("newer.csv", (Change(1, 9, "d", ""),))
    for source in (first, older_upsert, newer_delete):
        feed.write(source)
    feed.deliver([first])

    interleaving = Interleaving()
    watched_merges.append(interleaving)
    errors: list[BaseException] = []

    def deliver(source: ChangeFile, run_id: str) -> None:
        ref = (ObjectRef(str(feed.folder / source.name)),)
        try:
            run(RunRequest("cdc", objects=ref, run_id=run_id), feed.settings, feed.catalog)
        except (FerryError, AssertionError) as error:
            errors.append(error)

    with failpoints.hooked("writer_waiting", interleaving.waiting):
        deleting = threading.Thread(target=deliver, args=(newer_delete, "delete-run"))
        deleting.start()
        # the upsert starts once the delete's data merge committed: between its two commits
        assert interleaving.delete_data_committed.wait(120)
        interleaving.upsert_started.set()
        upserting = threading.Thread(target=deliver, args=(older_upsert, "upsert-run"))
        upserting.start()
        deleting.join()
        upserting.join()

    assert errors == []
    assert bigquery_rows(bigquery_env, unique_name) == {2: (6, "two")}, "key 1 came back"
    assert interleaving.upsert_waiting.is_set(), "the upsert waited for the delete's writer"
    tombstones = bigquery_env.client().query(
        f"select id, seq from `{bigquery_env.project}.{unique_name}.accounts__tombstones`"
        " order by id"
    )
    assert [(row.id, row.seq) for row in tombstones.result()] == [(1, 9), (3, 2)]


# --- concurrent pushes of randomised CDC feeds through `serve` ---------------------------------

PUSHED_PIPELINE = """
pipelines:
  - name: cdc
    source: {{uri: "gs://{bucket}/changes/*.csv", columns: {{id: int64, seq: int64}}}}
    destination:
      table: accounts
      write_disposition: merge
      primary_key: [id]
      sequence: seq
      cdc: {{operation_column: op, delete_values: [d], deletes: hard}}
"""
CONCURRENCY = 8
MAX_ATTEMPTS = 30
"""Redeliveries of one message before the test gives up (Pub/Sub would go on)."""


@pytest.mark.parametrize("seed", [41])
def test_concurrent_pushes_of_a_cdc_feed_end_as_applied_in_sequence(
    tmp_path: Path,
    gcs_emulator: GcsEmulator,
    bigquery_emulator: BigQueryEmulator,
    unique_name: str,
    seed: int,
) -> None:
    """Every change file pushed at least once (some twice, as separate notifications), in a
    random order, 8 at a time, to one `serve` process on the BigQuery emulator; a retriable
    answer is redelivered as Pub/Sub would. The table must be the in-order reference."""
    rng = random.Random(seed)
    files = change_files(rng, files=16, keys=30, per_file=25)
    bucket = gcs_emulator.client().create_bucket(unique_name)
    generations = {}
    for source in files:
        blob = bucket.blob(f"changes/{source.name}")
        blob.upload_from_string(source.csv())
        stored = bucket.get_blob(f"changes/{source.name}")
        assert stored is not None
        generations[source.name] = int(stored.generation)
    pipelines = tmp_path / "pipelines.yaml"
    pipelines.write_text(PUSHED_PIPELINE.format(bucket=unique_name), encoding="utf-8")
    env = {
        "FERRY_PIPELINES_FILE": str(pipelines),
        "FERRY_DATA_DIR": str(tmp_path / "data"),
        "FERRY_BIGQUERY_PROJECT": bigquery_emulator.project,
        "FERRY_BIGQUERY_DATASET": unique_name,
        "FERRY_GCS_PROJECT": bigquery_emulator.project,
        **gcs_emulator.env,
        **bigquery_emulator.env,
    }
    sent = [f for batch in deliveries(rng, files, duplicates=0.5, runs=1) for f in batch]

    with run_service(env, tmp_path / "service.log") as service:

        def push(numbered: tuple[int, ChangeFile]) -> list[int]:
            number, source = numbered
            data, attributes = gcs_notification(
                unique_name, f"changes/{source.name}", generations[source.name]
            )
            headers, body = wrapped_push(data, attributes, message_id=f"{seed}-{number}")
            answers = []
            for _ in range(MAX_ATTEMPTS):
                answer = requests.post(
                    f"{service.base_url}/pubsub", headers=headers, data=body, timeout=300
                )
                answers.append(answer.status_code)
                if answer.status_code < 300:
                    assert answer.json()["status"] in ("loaded", "skipped"), answer.json()
                    return answers
            raise AssertionError(f"{source.name} still refused after {answers}")

        with ThreadPoolExecutor(CONCURRENCY) as pool:
            answers = list(pool.map(push, enumerate(sent)))

    assert all(code in (200, 503) for attempts in answers for code in attempts), answers
    expected = expected_table(files)
    assert bigquery_rows(bigquery_emulator, unique_name) == expected, f"seed {seed}"
    assert len(sent) >= 2 * CONCURRENCY


# --- the first delete ever: a run planned before the tombstones existed ----------------------


def test_a_run_planned_before_the_first_delete_retries_instead_of_resurrecting(
    tmp_path: Path,
) -> None:
    """An older upsert's run plans while `<table>__tombstones` does not exist yet (so its merge
    cannot consult it); a newer delete of the key commits (creating it) while the upsert's run
    is extracting. The upsert's run must not commit that plan: it fails retriably, and its
    retry leaves the key deleted. DuckDB here (the check is the same on every engine)."""
    feed = cdc_feed(tmp_path)
    first = ChangeFile("first.csv", (Change(1, 1, "i", "v1"),))
    older_upsert = ChangeFile("older.csv", (Change(1, 5, "u", "old"),))
    newer_delete = ChangeFile("newer.csv", (Change(1, 9, "d", ""),))
    for source in (first, older_upsert, newer_delete):
        feed.write(source)
    feed.deliver([first])  # key 1 live, no tombstones table yet
    delivered: list[BaseException] = []
    started = threading.Lock()

    def delete_meanwhile() -> None:
        # once, in the upsert's run (the delete's own run reaches the same point)
        if not started.acquire(blocking=False):
            return
        deleting = threading.Thread(target=lambda: delivered.append(deliver(newer_delete)))
        deleting.start()
        deleting.join()

    def deliver(source: ChangeFile) -> BaseException:
        try:
            feed.deliver([source])
        except FerryError as error:
            return error
        return StopIteration()  # delivered

    with failpoints.hooked("after_first_batch", delete_meanwhile):
        raced = deliver(older_upsert)

    assert isinstance(delivered[0], StopIteration), delivered
    assert live_rows(feed.settings) == {}, "the older upsert brought key 1 back"
    assert isinstance(raced, FerryError) and raced.retriable, raced
    assert "first deletes" in str(raced)
    assert isinstance(deliver(older_upsert), StopIteration)  # the redelivery
    assert live_rows(feed.settings) == {}, "the older upsert did not bring key 1 back"
