"""What the HTTP edges share: one runner call per request, never two loads of one object at
once, idempotency keys, a run log and run events, and a stop flag that abandons runs cleanly
on SIGTERM."""

from __future__ import annotations

import logging
import threading
from contextlib import ExitStack
from dataclasses import dataclass, field

from app.ops.group_commit import GroupCommit, groupable
from app.ops.idempotency import IdempotencyStore, ReplayedReport
from app.ops.locks import KeyedLocks
from app.ops.run_events import run_and_tell
from app.run.catalog import Catalog
from app.run.report import RunReport
from app.run.request import RunRequest
from core.errors import ShuttingDownError
from core.settings import Settings

log = logging.getLogger("ferry.service")


@dataclass
class RunService:
    settings: Settings
    catalog: Catalog
    stopping: threading.Event = field(default_factory=threading.Event)
    _object_locks: KeyedLocks[tuple[str, str]] = field(default_factory=KeyedLocks)
    _idempotency: IdempotencyStore | None = None
    _groups: GroupCommit | None = None

    def __post_init__(self) -> None:
        if self.settings.group_commit:
            self._groups = GroupCommit(
                self._run_group,
                self.settings.group_commit_max_objects,
                self.settings.group_commit_min_interval_seconds,
            )

    @property
    def idempotency(self) -> IdempotencyStore:
        if self._idempotency is None:
            self._idempotency = IdempotencyStore(self.settings)
        return self._idempotency

    def execute(self, request: RunRequest) -> RunReport | ReplayedReport:
        """Run one request, or answer a repeated idempotency key with the first run's report."""
        if self.stopping.is_set():
            raise ShuttingDownError(
                "the instance is shutting down; retry", pipeline=request.pipeline
            )
        key = request.idempotency_key
        if self._groups is not None and groupable(request):
            return self._groups.submit(request)
        if key is None:
            return self._run_and_tell(request)
        with self.idempotency.hold(key):
            replay = self.idempotency.lookup(key, request)
            if replay is not None:
                log.info("idempotency key %s: returning run %s", key, replay.stored.get("run_id"))
                return replay
            report = self._run_and_tell(request)
            self.idempotency.record(key, request, report.to_dict())
            return report

    def _run_and_tell(self, request: RunRequest) -> RunReport:
        # after SIGTERM the grace period is for the response; an abandoned run is retried
        # by its trigger, and that run is the one recorded
        return run_and_tell(
            self.settings,
            lambda: self._run_once_per_object(request),
            silent=self.stopping.is_set,
        )

    def _run_once_per_object(self, request: RunRequest) -> RunReport:
        # A redelivery that arrives while the same object is loading waits here, then finds
        # the generation in the destination and skips it: one load, never two.
        # imported on the first run, not at start: /healthz answers without dlt and pyarrow
        # (a background warm-up thread was tried: under load it slowed the health checks)
        from app.run.runner import run

        lock_key = (request.pipeline, request.source_uri or "*")
        with self._object_locks.hold(lock_key):
            return run(request, self.settings, self.catalog, progress=self._checkpoint)

    def _run_group(self, request: RunRequest, members: list[RunRequest]) -> RunReport:
        """One run for a group of pushes (or one of them alone), recorded and told once; the
        members' objects locked, in one order, against other runs of the same objects."""
        from app.run.runner import run

        keys = sorted({(m.pipeline, m.source_uri or "*") for m in members})

        def attempt() -> RunReport:
            with ExitStack() as held:
                for key in keys:
                    held.enter_context(self._object_locks.hold(key))
                return run(request, self.settings, self.catalog, progress=self._checkpoint)

        return run_and_tell(self.settings, attempt, silent=self.stopping.is_set)

    def _checkpoint(self, report: RunReport) -> None:
        if self.stopping.is_set():
            raise ShuttingDownError(
                "the instance is shutting down: run abandoned before its load committed "
                "(nothing is visible); the trigger will retry",
                pipeline=report.pipeline,
                run_id=report.run_id,
            )
