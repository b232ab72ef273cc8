"""One writer per destination table: the in-process lock, and the Cloud Storage lease that
serialises writers across instances (app/destinations/writers.py).

The lease's contention paths rest on Cloud Storage's generation preconditions, which the GCS
emulator does not enforce (../shared/EMULATORS.md). They run here against a small bucket that
enforces exactly those preconditions and nothing else; the emulator test checks that the real
client accepts the calls and that a lease round trip leaves no object behind.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from google.api_core import exceptions as google_errors

from app.destinations import writers
from app.destinations.writers import GcsLease, TableLocks, table_writer
from core import failpoints
from core.errors import DestinationUnavailableError
from tests.emulators import GcsEmulator

# --- in process ------------------------------------------------------------------------------


def test_a_second_writer_of_a_table_waits_and_another_table_does_not() -> None:
    locks = TableLocks()
    waiting = threading.Event()
    order: list[str] = []

    def second() -> None:
        with locks.hold(("p", "d", "t"), timeout=60):
            order.append("second")

    with failpoints.hooked("writer_waiting", waiting.set):
        with locks.hold(("p", "d", "t"), timeout=60):
            other = threading.Thread(target=second)
            other.start()
            assert waiting.wait(60)
            with locks.hold(("p", "d", "other table"), timeout=60):
                order.append("other table")  # not blocked by the first
            order.append("first")
        other.join()

    assert order == ["other table", "first", "second"]
    assert len(locks) == 0, "no lock kept once nobody holds or waits"


def test_a_writer_that_waits_too_long_fails_retriably() -> None:
    locks = TableLocks()
    with locks.hold("t", timeout=60):
        failed: list[DestinationUnavailableError] = []

        def late() -> None:
            try:
                with locks.hold("t", timeout=0.01):
                    pass
            except DestinationUnavailableError as error:
                failed.append(error)

        thread = threading.Thread(target=late)
        thread.start()
        thread.join()
    assert len(failed) == 1 and failed[0].retriable


# --- across instances: the lease, on a bucket that enforces preconditions -------------------


@dataclass
class _Stored:
    data: bytes
    generation: int
    updated: datetime


@dataclass
class PreconditionBucket:
    """Cloud Storage's objects as the lease uses them: create/overwrite/delete conditional
    on the generation (`ifGenerationMatch`, 0 = must not exist), a new generation per write."""

    name: str = "leases"
    objects: dict[str, _Stored] = field(default_factory=dict)
    generations: int = 0
    guard: threading.Lock = field(default_factory=threading.Lock)

    def bucket(self, name: str) -> PreconditionBucket:
        return self

    def blob(self, name: str) -> _Blob:
        return _Blob(self, name)

    def get_blob(self, name: str) -> _Blob | None:
        with self.guard:
            stored = self.objects.get(name)
        if stored is None:
            return None
        found = _Blob(self, name)
        found.generation, found.updated = stored.generation, stored.updated
        return found

    def check(self, name: str, expected: int | None) -> None:
        current = self.objects.get(name)
        if expected is None:
            return
        if (current.generation if current else 0) != expected:
            raise google_errors.PreconditionFailed("conditionNotMet")


@dataclass
class _Blob:
    store: PreconditionBucket
    name: str
    generation: int | None = None
    updated: datetime | None = None

    def upload_from_string(
        self, data: str, content_type: str = "", if_generation_match: int | None = None
    ) -> None:
        with self.store.guard:
            self.store.check(self.name, if_generation_match)
            self.store.generations += 1
            self.generation = self.store.generations
            self.store.objects[self.name] = _Stored(
                data.encode(), self.generation, datetime.now(UTC)
            )

    def delete(self, if_generation_match: int | None = None) -> None:
        with self.store.guard:
            if self.name not in self.store.objects:
                raise google_errors.NotFound("no such object")
            self.store.check(self.name, if_generation_match)
            del self.store.objects[self.name]

    def download_as_bytes(self) -> bytes:
        with self.store.guard:
            stored = self.store.objects.get(self.name)
        if stored is None:
            raise google_errors.NotFound("no such object")
        return stored.data


@pytest.fixture(autouse=True)
def _quick_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writers, "POLL_SECONDS", 0.01)


def lease(store: PreconditionBucket, seconds: float = 60.0) -> GcsLease:
    return GcsLease(store, "leases", "p.d.accounts.lease", seconds)


def test_a_held_lease_makes_another_instance_wait_until_it_is_released() -> None:
    store = PreconditionBucket()
    first, second = lease(store), lease(store)
    waiting = threading.Event()
    first.acquire(timeout=60)

    def take() -> None:
        second.acquire(timeout=60)

    with failpoints.hooked("writer_waiting", waiting.set):
        thread = threading.Thread(target=take)
        thread.start()
        assert waiting.wait(60)
        held_meanwhile = second.generation
        first.release()
        thread.join()

    assert held_meanwhile is None, "not while the first holds it"
    assert store.objects["p.d.accounts.lease"].generation == second.generation
    second.release()
    assert store.objects == {}


def test_a_lease_left_by_a_dead_instance_is_taken_over_once_expired() -> None:
    store = PreconditionBucket()
    dead = lease(store, seconds=30)
    dead.acquire(timeout=60)
    dead._stop.set()  # the instance died: no renewals, no release
    store.objects["p.d.accounts.lease"].updated -= timedelta(seconds=31)

    taker = lease(store, seconds=30)
    taker.acquire(timeout=60)

    assert store.objects["p.d.accounts.lease"].generation == taker.generation
    taker.release()


def test_a_holder_that_lost_its_lease_does_not_release_the_new_holders() -> None:
    store = PreconditionBucket()
    slow = lease(store, seconds=30)
    slow.acquire(timeout=60)
    slow._stop.set()
    store.objects["p.d.accounts.lease"].updated -= timedelta(seconds=31)
    taker = lease(store, seconds=30)
    taker.acquire(timeout=60)

    slow.release()  # its generation is gone: the conditional delete does nothing

    assert store.objects["p.d.accounts.lease"].generation == taker.generation
    taker.release()


def test_a_lease_held_too_long_fails_the_waiter_retriably() -> None:
    store = PreconditionBucket()
    holder = lease(store)
    holder.acquire(timeout=60)
    with pytest.raises(DestinationUnavailableError, match="stayed held"):
        lease(store).acquire(timeout=0.05)
    holder.release()


def test_the_table_writer_takes_the_lock_then_the_lease() -> None:
    store = PreconditionBucket()
    with table_writer(("p", "d", "accounts"), timeout=60, lease=lambda: lease(store)):
        assert list(store.objects) == ["p.d.accounts.lease"]
    assert store.objects == {}


# --- the real client against the emulator ---------------------------------------------------


def test_a_lease_round_trip_on_the_gcs_emulator(
    gcs_emulator: GcsEmulator, unique_name: str
) -> None:
    client = gcs_emulator.client()
    client.create_bucket(unique_name)
    held = GcsLease(client, unique_name, "leases/p.d.accounts.lease", 60)

    held.acquire(timeout=60)
    stored = client.bucket(unique_name).get_blob("leases/p.d.accounts.lease")
    assert stored is not None and int(stored.generation) == held.generation
    assert held.holder in stored.download_as_bytes().decode()
    held.release()

    assert client.bucket(unique_name).get_blob("leases/p.d.accounts.lease") is None
