"""The one run wrapper of every trigger (HTTP, Pub/Sub push, Eventarc, drain, the CLI): a stop
flag that abandons runs cleanly on SIGTERM, never two loads of one object at once,
idempotency keys, and the run log and run event after every run.

It is also the edges' one door below them: the typed request and report they build and
answer with are re-exported here, so `app.edges` imports nothing of `app.run` or
`app.destinations` (the "edges reach runs only through app.ops" contract in pyproject.toml).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from types import FrameType

from app.ops.group_commit import GroupCommit, groupable
from app.ops.idempotency import IdempotencyStore, ReplayedReport
from app.ops.run_events import run_and_tell
from app.ops.runlog import RunLog
from app.run.catalog import Catalog, load_catalog
from app.run.report import RunReport
from app.run.request import MODELS_RUN, ObjectRef, ProgressCallback, RunRequest
from core.errors import ShuttingDownError
from core.locks import KeyedLocks
from core.settings import Settings

__all__ = [
    "MODELS_RUN",
    "Catalog",
    "ObjectRef",
    "ProgressCallback",
    "ReplayedReport",
    "RunReport",
    "RunRequest",
    "RunService",
    "load_catalog",
    "prepare_for_concurrent_runs",
    "sweep_staging",
    "where_it_landed",
]

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

    @classmethod
    def from_settings(cls, settings: Settings) -> RunService:
        """The service of these settings, its pipelines file validated whole (a bad deploy
        fails here, not on its first request)."""
        return cls(settings=settings, catalog=load_catalog(settings.pipelines_file))

    @property
    def idempotency(self) -> IdempotencyStore:
        if self._idempotency is None:
            self._idempotency = IdempotencyStore(self.settings)
        return self._idempotency

    def execute(self, request: RunRequest) -> RunReport | ReplayedReport:
        """Run one request, or answer a repeated idempotency key with the first run's report."""
        key = request.idempotency_key
        if self._groups is not None and groupable(request):
            self._refuse_if_stopping(request)
            return self._groups.submit(request)
        if key is None:
            return self.run(request)
        self._refuse_if_stopping(request)
        with self.idempotency.hold(key):
            replay = self.idempotency.lookup(key, request)
            if replay is not None:
                log.info("idempotency key %s: returning run %s", key, replay.stored.get("run_id"))
                return replay
            report = self.run(request)
            self.idempotency.record(key, request, report.to_dict())
            return report

    def run(self, request: RunRequest, progress: ProgressCallback | None = None) -> RunReport:
        """Run one request to its report, then record it in the run log and publish its event
        (a failure too, raised after). `progress` sees the run's checkpoints after the stop
        flag: once it is set, the run is abandoned before its load commits."""
        self._refuse_if_stopping(request)
        # after SIGTERM the grace period is for the answer; an abandoned run is retried by
        # its trigger, and that run is the one recorded
        return run_and_tell(
            self.settings,
            lambda: self._run_once_per_object(request, progress),
            silent=self.stopping.is_set,
        )

    def stop(self) -> None:
        """Abandon runs at their next checkpoint and refuse new ones (SIGTERM)."""
        self.stopping.set()

    def close(self, timeout: float) -> None:
        """The service is shutting down: write its run-log rows still waiting (skipped
        pushes, app/ops/runlog.py), waiting at most `timeout` seconds: a destination gone by
        now (a test's emulator) must not hold the exit for its client's retries."""
        writer = threading.Thread(
            target=RunLog(self.settings).flush, name="runlog-at-shutdown", daemon=True
        )
        writer.start()
        writer.join(timeout)
        if writer.is_alive():
            log.warning("run-log rows still waiting were not written before shutdown")

    def stop_on_sigterm(self) -> None:
        """Job mode: Cloud Run sends SIGTERM on task timeout and on cancel; the service's
        uvicorn calls `stop()` itself. Only the main thread may install a handler."""

        def handle(signum: int, frame: FrameType | None) -> None:
            log.warning("SIGTERM: abandoning the run at its next checkpoint")
            self.stop()

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, handle)

    def _refuse_if_stopping(self, request: RunRequest) -> None:
        if self.stopping.is_set():
            raise ShuttingDownError(
                "the instance is shutting down; retry", pipeline=request.pipeline
            )

    def _run_once_per_object(
        self, request: RunRequest, progress: ProgressCallback | None
    ) -> RunReport:
        # A redelivery that arrives while the same object is loading waits here, then finds
        # the generation in the destination and skips it: one load, never two.
        # imported on the first run, not at start: /healthz answers without dlt and pyarrow
        # (a background warm-up thread was tried: under load it slowed the health checks)
        from app.run.runner import run

        def checkpoint(report: RunReport) -> None:
            if self.stopping.is_set():
                raise ShuttingDownError(
                    "the instance is shutting down: run abandoned before its load committed "
                    "(nothing is visible); the trigger will retry",
                    pipeline=report.pipeline,
                    run_id=report.run_id,
                )
            if progress is not None:
                progress(report)

        lock_key = (request.pipeline, request.source_uri or "*")
        with self._object_locks.hold(lock_key):
            return run(request, self.settings, self.catalog, progress=checkpoint)

    def _run_group(
        self, request: RunRequest, members: list[RunRequest], loading: Callable[[], None]
    ) -> RunReport:
        """One run for a group of pushes (or one of them alone), recorded and told once; the
        members' objects locked, in one order, against other runs of the same objects.
        `loading` is called when the run goes to load (the next group may start)."""
        from app.run.runner import run

        keys = sorted({(m.pipeline, m.source_uri or "*") for m in members})

        def attempt() -> RunReport:
            with ExitStack() as held:
                for key in keys:
                    held.enter_context(self._object_locks.hold(key))
                return run(
                    request,
                    self.settings,
                    self.catalog,
                    progress=self._checkpoint,
                    loading=loading,
                )

        return run_and_tell(self.settings, attempt, silent=self.stopping.is_set)

    def _checkpoint(self, report: RunReport) -> None:
        if self.stopping.is_set():
            raise ShuttingDownError(
                "the instance is shutting down: run abandoned before its load committed "
                "(nothing is visible); the trigger will retry",
                pipeline=report.pipeline,
                run_id=report.run_id,
            )


def prepare_for_concurrent_runs() -> None:
    """Before the service's first request: import what runs share once, so concurrent first
    runs never race a lazy import (app/run/runner.py's `preload`)."""
    from app.run.runner import preload

    preload()


def sweep_staging(settings: Settings) -> list[str]:
    """`main.py gc`: drop staging datasets left by killed runs, now; the names dropped. Needs
    no pipelines file, so no RunService."""
    from app.destinations.staging import sweep_now

    return sweep_now(settings)


def where_it_landed(settings: Settings, tables: list[str]) -> list[str]:
    """Lines for a person at a terminal: where these tables are and how to look at them."""
    from app.destinations.registry import engine_for

    return list(engine_for(settings).destination.describe(settings, tables))
