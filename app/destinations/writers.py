"""One writer per destination table at a time, where the destination itself does not queue
writers (BigQuery): an in-process lock per table, and across instances a lease object in
Cloud Storage.

Why: a load commits several tables one job after another (the data table's merge, then
`<table>__tombstones`, then `_dlt_loads`, which makes the load's `_ferry_objects` rows
count), and the ordered-merge check inside
the data table's merge reads the tombstones. Two loads of one table that overlap can each
check before the other commits (an older upsert checked between a newer delete's data and
tombstone commits finds neither, and inserts a deleted key; two upserts of one key that both
find it absent both insert). Held from the last check before the load to its last commit,
the writer makes every load of a table see every earlier one whole: the in-order result by
construction, whatever isolation the destination gives a single statement.

The lease (`FERRY_WRITER_LEASE_PREFIX=gs://bucket/prefix`): an object per table, created
only if absent (`ifGenerationMatch=0`, atomic in Cloud Storage), renewed while held (a
rewrite conditional on the holder's generation), deleted on release (conditional too). A
holder that dies leaves it to expire: `FERRY_WRITER_LEASE_SECONDS` after its last renewal
(server time) another instance deletes that generation, conditionally, and takes it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from core import failpoints
from core.errors import DestinationUnavailableError
from core.locks import KeyedLocks, LockWaitExpiredError

log = logging.getLogger("ferry.writers")


class TableLocks:
    """One in-process lock per destination table, kept only while someone holds or waits."""

    def __init__(self) -> None:
        self._locks: KeyedLocks[Hashable] = KeyedLocks()

    @contextmanager
    def hold(self, key: Hashable, timeout: float) -> Iterator[None]:
        try:
            with self._locks.hold(key, timeout, on_wait=lambda: failpoints.hit("writer_waiting")):
                yield
        except LockWaitExpiredError:
            raise DestinationUnavailableError(
                f"another run of this instance kept writing {key} for {timeout:.0f}s"
            ) from None

    def __len__(self) -> int:
        return len(self._locks)


_tables = TableLocks()


@contextmanager
def table_writer(
    key: tuple[str, ...], *, timeout: float, lease: Callable[[], GcsLease] | None = None
) -> Iterator[None]:
    """Hold the in-process lock of `key`, then (if given) the cross-instance lease."""
    with _tables.hold(key, timeout):
        if lease is None:
            yield
            return
        held = lease()
        held.acquire(timeout)
        try:
            yield
        finally:
            held.release()


POLL_SECONDS = 0.25
"""How often a waiting instance looks at a held lease again (with jitter)."""


class GcsLease:
    """A lease on one Cloud Storage object (see the module docstring)."""

    def __init__(self, client: Any, bucket: str, name: str, seconds: float) -> None:
        self.blob_name = name
        self.bucket = client.bucket(bucket)
        self.seconds = seconds
        self.holder = f"{uuid.uuid4().hex}"
        self.generation: int | None = None
        self.lost = False
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def _body(self) -> str:
        return json.dumps({"holder": self.holder, "seconds": self.seconds})

    def acquire(self, timeout: float) -> None:
        from google.api_core import exceptions as google_errors

        deadline = time.monotonic() + timeout
        waited = False
        while True:
            blob = self.bucket.blob(self.blob_name)
            try:
                blob.upload_from_string(
                    self._body(), content_type="application/json", if_generation_match=0
                )
                self.generation = int(blob.generation)
                break
            except google_errors.PreconditionFailed:
                self._take_over_if_expired()
            except (google_errors.TooManyRequests, google_errors.ServiceUnavailable) as busy:
                log.info("writer lease %s: %s; waiting", self.blob_name, busy)
            if not waited:
                failpoints.hit("writer_waiting")
                waited = True
            if time.monotonic() > deadline:
                raise DestinationUnavailableError(
                    f"the writer lease gs://{self.bucket.name}/{self.blob_name} stayed held "
                    f"by another instance for {timeout:.0f}s"
                )
            time.sleep(POLL_SECONDS * (0.5 + random.random()))
        self._renewer = threading.Thread(target=self._renew, name="writer-lease", daemon=True)
        self._renewer.start()

    def _take_over_if_expired(self) -> None:
        from google.api_core import exceptions as google_errors

        current = self.bucket.get_blob(self.blob_name)
        if current is None or current.updated is None:
            return
        try:
            seconds = float(json.loads(current.download_as_bytes())["seconds"])
        except (ValueError, KeyError, TypeError, google_errors.NotFound):
            seconds = self.seconds
        age = (datetime.now(UTC) - current.updated).total_seconds()
        if age <= seconds:
            return
        log.warning(
            "writer lease %s not renewed for %.0fs (its holder died): taking it over",
            self.blob_name,
            age,
        )
        # only that generation: another instance may have taken it over meanwhile
        with contextlib.suppress(google_errors.PreconditionFailed, google_errors.NotFound):
            current.delete(if_generation_match=current.generation)

    def _renew(self) -> None:
        from google.api_core import exceptions as google_errors

        while not self._stop.wait(self.seconds / 3):
            blob = self.bucket.blob(self.blob_name)
            try:
                blob.upload_from_string(
                    self._body(),
                    content_type="application/json",
                    if_generation_match=self.generation,
                )
                self.generation = int(blob.generation)
            except google_errors.PreconditionFailed:
                self.lost = True
                log.error("writer lease %s was taken over while held", self.blob_name)
                return
            except Exception as error:  # a passing failure: the next renewal tries again
                log.warning("writer lease %s not renewed: %s", self.blob_name, error)

    def release(self) -> None:
        from google.api_core import exceptions as google_errors

        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        if self.lost or self.generation is None:
            return
        try:
            self.bucket.blob(self.blob_name).delete(if_generation_match=self.generation)
        except (google_errors.PreconditionFailed, google_errors.NotFound):
            return
        except Exception as error:  # it expires by itself
            log.warning("writer lease %s not released: %s", self.blob_name, error)
