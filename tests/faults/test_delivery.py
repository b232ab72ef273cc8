"""Delivery faults on the production path (GCS -> Pub/Sub push -> ferry -> BigQuery), on the
emulators: duplicates, redeliveries, new and out-of-order generations, a duplicate arriving
while the first attempt still loads, an orchestrator repeating its idempotency key.

Every case counts rows in the destination: source rows == loaded + quarantined, and every
key loaded once.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.emulators import BigQueryEmulator, GcsEmulator, PubSubEmulator
from tests.pubsub_messages import gcs_notification, wrapped_push
from tests.service_process import ServiceProcess, run_service

pytestmark = pytest.mark.emulators

TABLE = "people"


@dataclass(frozen=True)
class SourceFile:
    """A CSV with a unique `id` per good row and `bad` rows whose id is not a number."""

    text: str
    good: int
    bad: int

    @property
    def rows(self) -> int:
        return self.good + self.bad


def people_csv(ids: range, *, bad: int = 0, tag: str = "v1") -> SourceFile:
    lines = [f"{i},{tag}-{i}\n" for i in ids]
    step = max(1, len(lines) // (bad + 1))
    for n in range(bad):  # spread through the file, so rejects appear in several batches
        lines.insert((n + 1) * step, f"bad{n},{tag}-bad\n")
    return SourceFile("id,name\n" + "".join(lines), len(ids), bad)


@dataclass(frozen=True)
class Tally:
    """What the destination holds (for one object, or in all)."""

    rows: int
    keys: int
    """count(distinct id): equal to `rows` when nothing is duplicated"""
    quarantined: int


def exact(source: SourceFile) -> Tally:
    return Tally(rows=source.good, keys=source.good, quarantined=source.bad)


@dataclass
class Stack:
    service: ServiceProcess
    env: dict[str, str]
    tmp_path: Path
    gcs: GcsEmulator
    bigquery: BigQueryEmulator
    pubsub: PubSubEmulator
    bucket: str
    dataset: str
    topic: str

    def upload(self, name: str, source: SourceFile) -> int:
        bucket = self.gcs.client().bucket(self.bucket)
        bucket.blob(name).upload_from_string(source.text, content_type="text/csv")
        stored = bucket.get_blob(name)
        assert stored is not None
        return int(stored.generation)

    def push(
        self,
        name: str,
        generation: int,
        message_id: str = "1",
        service: ServiceProcess | None = None,
    ) -> requests.Response:
        """POST what a push subscription sends for this object's notification."""
        headers, body = wrapped_push(
            *gcs_notification(self.bucket, name, generation), message_id=message_id
        )
        target = service or self.service
        return requests.post(f"{target.base_url}/pubsub", headers=headers, data=body, timeout=180)

    def publish(self, name: str, generation: int) -> None:
        """Through the real Pub/Sub emulator: each publish is a new messageId."""
        data, attributes = gcs_notification(self.bucket, name, generation)
        self.pubsub.publisher().publish(self.topic, data, **attributes).result(timeout=30)

    def scalar(self, sql: str) -> int:
        try:
            (row,) = list(self.bigquery.client().query(sql).result())
        except Exception as error:  # a table appears with its first load
            if "not found" in str(error).lower():
                return 0
            raise
        return int(row[0] or 0)

    def tally(self, prefix: str) -> Tally:
        """Rows loaded from the objects whose name starts with `prefix`."""
        table = f"`{self.bigquery.project}.{self.dataset}.{TABLE}`"
        where = f" where starts_with(_ferry_source_uri, 'gs://{self.bucket}/{prefix}')"
        return Tally(
            rows=self.scalar(f"select count(*) from {table}{where}"),
            keys=self.scalar(f"select count(distinct id) from {table}{where}"),
            quarantined=self.scalar(
                f"select count(*) from `{self.bigquery.project}.{self.dataset}.{TABLE}__rejects`"
                + where
            ),
        )

    def generations(self, name: str) -> set[int]:
        rows = self.bigquery.client().query(
            f"select distinct _ferry_source_generation as g "
            f"from `{self.bigquery.project}.{self.dataset}.{TABLE}` "
            f"where _ferry_source_uri = 'gs://{self.bucket}/{name}'"
        )
        return {int(row.g) for row in rows.result()}

    def wait_for_outcomes(self, name: str, count: int, timeout: float = 90) -> list[str]:
        """Push statuses the service logged for this object, once there are `count`."""
        uri = f"gs://{self.bucket}/{name}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            outcomes = [
                str(line["push_status"])
                for line in self.service.logs()
                if uri in line.get("uris", [])
            ]
            if len(outcomes) >= count:
                return outcomes
            time.sleep(0.2)
        raise AssertionError(f"fewer than {count} push outcomes for {uri} after {timeout}s")

    def wait_for_log(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.service.log_path.read_text(encoding="utf-8", errors="replace"):
            if time.monotonic() > deadline:
                raise AssertionError(f"no log line with {text!r} after {timeout}s")
            time.sleep(0.02)

    @contextmanager
    def another_instance(self, name: str) -> Iterator[ServiceProcess]:
        """A second instance on the same destination, with an empty working dir of its own
        (and no failpoints armed)."""
        env = {**self.env, "FERRY_DATA_DIR": str(self.tmp_path / f"data-{name}")}
        env.pop("FERRY_FAILPOINTS", None)
        with run_service(env, self.tmp_path / f"service-{name}.log") as service:
            yield service


@contextmanager
def emulator_stack(
    tmp_path: Path,
    gcs: GcsEmulator,
    bigquery: BigQueryEmulator,
    pubsub: PubSubEmulator,
    **extra_env: str,
) -> Iterator[Stack]:
    """A bucket, a topic with a push subscription to a running service, a BigQuery dataset."""
    name = f"t{uuid.uuid4().hex[:10]}"
    project = pubsub.project
    gcs.client().create_bucket(name)
    topic = pubsub.publisher().create_topic(name=f"projects/{project}/topics/{name}").name
    pipelines = tmp_path / "pipelines.yaml"
    pipelines.write_text(
        f"""
pipelines:
  - name: people
    source:
      uri: "gs://{name}/incoming/*.csv"
      columns: {{id: int64}}
      on_bad_rows: reject
    destination: {{table: {TABLE}}}
""",
        encoding="utf-8",
    )
    env = {
        "FERRY_PIPELINES_FILE": str(pipelines),
        "FERRY_DATA_DIR": str(tmp_path / "data"),
        "FERRY_BIGQUERY_PROJECT": bigquery.project,
        "FERRY_BIGQUERY_DATASET": name,
        "FERRY_GCS_PROJECT": project,
        **gcs.env,
        **bigquery.env,
        **pubsub.env,
        **extra_env,
    }
    with run_service(env, tmp_path / "service.log") as service:
        pubsub.subscriber().create_subscription(
            name=f"projects/{project}/subscriptions/{name}-push",
            topic=topic,
            push_config={"push_endpoint": f"{service.base_url}/pubsub"},
            ack_deadline_seconds=60,
        )
        yield Stack(service, env, tmp_path, gcs, bigquery, pubsub, name, name, topic)


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    gcs_emulator: GcsEmulator,
    bigquery_emulator: BigQueryEmulator,
    pubsub_emulator: PubSubEmulator,
) -> Iterator[Stack]:
    """One service for the module (each test uses objects of its own): at ~5 s per load on
    the BigQuery emulator, start-ups are worth sharing."""
    tmp_path = tmp_path_factory.mktemp("delivery")
    with emulator_stack(tmp_path, gcs_emulator, bigquery_emulator, pubsub_emulator) as stack:
        yield stack


def statuses(response: requests.Response) -> tuple[int, str, list[str]]:
    """(HTTP status, push status, per-file statuses) of one push response."""
    body: dict[str, Any] = response.json()
    files = [f["status"] for report in body.get("reports", []) for f in report.get("files", [])]
    return response.status_code, str(body.get("status")), files


# --- the same generation, delivered again ---------------------------------------------------


def test_same_push_delivered_twice_loads_once_even_on_a_cold_instance(stack: Stack) -> None:
    """The destination is the ledger: an instance that never saw the first delivery (empty
    working dir) still finds the generation loaded."""
    source = people_csv(range(5000), bad=3)
    generation = stack.upload("incoming/twice.csv", source)

    first = stack.push("incoming/twice.csv", generation, message_id="m-1")
    again = stack.push("incoming/twice.csv", generation, message_id="m-1")
    with stack.another_instance("cold") as cold:
        elsewhere = stack.push("incoming/twice.csv", generation, "m-1", service=cold)

    assert statuses(first) == (200, "loaded", ["loaded"])
    assert statuses(again) == (200, "skipped", ["already_loaded"])
    assert statuses(elsewhere) == (200, "skipped", ["already_loaded"])
    assert stack.tally("incoming/twice.csv") == exact(source)


def test_same_object_under_two_message_ids_through_pubsub_loads_once(stack: Stack) -> None:
    """Two notifications (two messageIds) for one generation, pushed by the Pub/Sub emulator."""
    source = people_csv(range(5000), bad=2)
    generation = stack.upload("incoming/two-ids.csv", source)

    stack.publish("incoming/two-ids.csv", generation)
    stack.publish("incoming/two-ids.csv", generation)

    outcomes = stack.wait_for_outcomes("incoming/two-ids.csv", 2)
    assert sorted(outcomes) == ["loaded", "skipped"]
    assert stack.tally("incoming/two-ids.csv") == exact(source)


# --- generations ------------------------------------------------------------------------------


def test_new_generation_replaces_the_old_rows(stack: Stack) -> None:
    old = people_csv(range(4000), bad=4, tag="old")
    new = people_csv(range(2000, 5000), bad=1, tag="new")  # overlaps, drops and adds keys
    first = stack.upload("incoming/gen.csv", old)
    assert statuses(stack.push("incoming/gen.csv", first, "m-1"))[1] == "loaded"
    assert stack.tally("incoming/gen.csv") == exact(old)

    second = stack.upload("incoming/gen.csv", new)
    assert statuses(stack.push("incoming/gen.csv", second, "m-2")) == (200, "loaded", ["loaded"])

    assert stack.tally("incoming/gen.csv") == exact(new)
    assert stack.generations("incoming/gen.csv") == {second}


def test_generations_out_of_order_keep_the_newest(stack: Stack) -> None:
    """gen1 and gen2 both land; gen1's message arrives before gen2's and again after it."""
    old = people_csv(range(3000), bad=2, tag="old")
    new = people_csv(range(1000, 3500), bad=0, tag="new")
    first = stack.upload("incoming/ooo.csv", old)
    second = stack.upload("incoming/ooo.csv", new)

    late = stack.push("incoming/ooo.csv", first, "m-1")  # gen2 is live: gen1 is superseded
    assert statuses(late) == (200, "skipped", ["superseded"])
    assert stack.tally("incoming/ooo.csv") == Tally(0, 0, 0)

    assert statuses(stack.push("incoming/ooo.csv", second, "m-2"))[1] == "loaded"
    later = stack.push("incoming/ooo.csv", first, "m-1")
    assert statuses(later) == (200, "skipped", ["superseded"])

    assert stack.tally("incoming/ooo.csv") == exact(new)
    assert stack.generations("incoming/ooo.csv") == {second}


# --- a duplicate while the first attempt is loading -------------------------------------------


def test_redelivery_while_the_first_attempt_is_loading_loads_once(stack: Stack) -> None:
    source = people_csv(range(60_000), bad=5)
    generation = stack.upload("incoming/slow.csv", source)
    responses: dict[str, requests.Response] = {}

    def deliver(message_id: str) -> None:
        responses[message_id] = stack.push("incoming/slow.csv", generation, message_id)

    first = threading.Thread(target=deliver, args=("m-1",))
    first.start()
    stack.wait_for_log("read gs://" + stack.bucket + "/incoming/slow.csv")  # extracting
    deliver("m-2")  # the redelivery (ack deadline passed): waits for the first, then acks
    first.join(timeout=180)

    # had the duplicate not waited for the first load, it would have loaded too
    assert statuses(responses["m-1"]) == (200, "loaded", ["loaded"])
    assert statuses(responses["m-2"]) == (200, "skipped", ["already_loaded"])
    assert stack.tally("incoming/slow.csv") == exact(source)


# --- the orchestrator repeats its idempotency key ---------------------------------------------


def test_repeated_idempotency_key_runs_once_even_after_a_restart(stack: Stack) -> None:
    one = people_csv(range(2000), bad=2)
    two = people_csv(range(2000, 3000), bad=0)
    stack.upload("incoming/day-1.csv", one)
    body = {"pipeline": "people", "source": f"gs://{stack.bucket}/incoming/day-*.csv"}
    key = {"Idempotency-Key": f"people-day-1-{stack.bucket}"}

    first = requests.post(f"{stack.service.base_url}/runs", json=body, headers=key, timeout=180)
    assert first.status_code == 200, first.text
    stack.upload("incoming/day-2.csv", two)  # lands between the retries: a replay skips it
    again = requests.post(f"{stack.service.base_url}/runs", json=body, headers=key, timeout=180)
    with stack.another_instance("restarted") as restarted:
        replay = requests.post(f"{restarted.base_url}/runs", json=body, headers=key, timeout=180)

    assert first.json()["files_loaded"] == 1
    assert "replayed" not in first.json()
    for response in (again, replay):
        assert response.status_code == 200, response.text
        assert response.json()["replayed"] is True
        assert response.json()["run_id"] == first.json()["run_id"]
        assert response.json()["load_ids"] == first.json()["load_ids"]
    assert stack.tally("incoming/day-") == exact(one), "the replays loaded nothing"
