"""What the HTTP edges share: one runner call per request, never two loads of one object at
once, idempotency keys, a run log and run events, and a stop flag that abandons runs cleanly
on SIGTERM."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from app.ops.idempotency import IdempotencyStore
from app.ops.run_events import after_run
from app.run.catalog import Catalog
from app.run.report import RunReport
from app.run.runner import RunRequest, run
from core.errors import FerryError, ShuttingDownError
from core.settings import Settings

log = logging.getLogger("ferry.service")


@dataclass
class RunService:
    settings: Settings
    catalog: Catalog
    stopping: threading.Event = field(default_factory=threading.Event)
    _object_locks: dict[tuple[str, str], threading.Lock] = field(default_factory=dict)
    _guard: threading.Lock = field(default_factory=threading.Lock)
    _idempotency: IdempotencyStore | None = None

    @property
    def idempotency(self) -> IdempotencyStore:
        if self._idempotency is None:
            self._idempotency = IdempotencyStore(self.settings)
        return self._idempotency

    def execute(self, request: RunRequest) -> dict[str, Any]:
        """Run (or replay) one request; returns the run report as a dict."""
        if self.stopping.is_set():
            raise ShuttingDownError(
                "the instance is shutting down; retry", pipeline=request.pipeline
            )
        key = request.idempotency_key
        if key is None:
            return self._run_and_tell(request)
        with self.idempotency.hold(key):
            replay = self.idempotency.lookup(key, request.pipeline)
            if replay is not None:
                log.info("idempotency key %s: returning run %s", key, replay.get("run_id"))
                return {**replay, "replayed": True}
            report = self._run_and_tell(request)
            self.idempotency.record(key, report)
            return report

    def _run_and_tell(self, request: RunRequest) -> dict[str, Any]:
        """Run, then record the report in the run log and publish its event (best effort)."""
        try:
            report = self._run_once_per_object(request).to_dict()
        except FerryError as error:
            self._after_run(error.details.get("report"), error.to_dict())
            raise
        self._after_run(report, None)
        return report

    def _after_run(self, report: dict[str, Any] | None, error: dict[str, Any] | None) -> None:
        # after SIGTERM the grace period is for the response; an abandoned run is retried
        # by its trigger, and that run is the one recorded
        if not self.stopping.is_set():
            after_run(self.settings, report, error)

    def _run_once_per_object(self, request: RunRequest) -> RunReport:
        # A redelivery that arrives while the same object is loading waits here, then finds
        # the generation in the destination and skips it: one load, never two.
        with self._object_lock(request):
            return run(request, self.settings, self.catalog, progress=self._checkpoint)

    @contextmanager
    def _object_lock(self, request: RunRequest) -> Iterator[None]:
        if request.source_uri is None:
            lock_key = (request.pipeline, "*")
        else:
            lock_key = (request.pipeline, request.source_uri)
        with self._guard:
            lock = self._object_locks.setdefault(lock_key, threading.Lock())
        with lock:
            yield

    def _checkpoint(self, report: RunReport) -> None:
        if self.stopping.is_set():
            raise ShuttingDownError(
                "the instance is shutting down: run abandoned before its load committed "
                "(nothing is visible); the trigger will retry",
                pipeline=report.pipeline,
                run_id=report.run_id,
            )
