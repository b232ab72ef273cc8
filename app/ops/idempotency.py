"""Orchestrator idempotency keys: a repeated key returns the first run's report.

Reports are kept in memory (fast path, this instance) and in a `_ferry_idempotency` table
in the destination (so a retry that reaches another instance, or a restarted one, is
answered too). Only successful runs are recorded: a failed run may be retried with its key.
Rows are appended (on BigQuery a streaming insert: no DML on a table every pipeline of the
dataset shares) and the first row of a key is its answer: two instances that ran the same
key at once both append, and every later retry is answered with the earlier run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from app.destinations.side_tables import append_rows, select
from app.run.request import RunRequest
from core.errors import IdempotencyKeyReusedError
from core.locks import KeyedLocks
from core.settings import Settings

log = logging.getLogger("ferry.idempotency")

TABLE = "_ferry_idempotency"
PIPELINE = "_idempotency"
MEMORY_ENTRIES = 2048


@dataclass(frozen=True)
class ReplayedReport:
    """The stored report of the run that first used an idempotency key, answered again."""

    stored: dict[str, Any]

    @property
    def status(self) -> str:
        return str(self.stored.get("status"))

    def to_dict(self) -> dict[str, Any]:
        shown = {k: v for k, v in self.stored.items() if k != REQUEST_FIELD}
        return {**shown, "replayed": True}


REQUEST_FIELD = "idempotency_request"
"""Kept beside the stored report: a fingerprint of the request that first used the key."""


def fingerprint(request: RunRequest) -> str:
    """What a request asks for (not who asked or when): the same key must name the same."""
    asked = {
        "pipeline": request.pipeline,
        "source": request.source_uri,
        "generation": request.generation,
        "params": dict(sorted(request.params.items())),
        "models": list(request.models) if request.models is not None else None,
    }
    return hashlib.sha256(json.dumps(asked, sort_keys=True).encode()).hexdigest()


class IdempotencyStore:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._reports: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._locks: KeyedLocks[str] = KeyedLocks()
        self._guard = threading.Lock()

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        """Serialise requests that carry the same key (a retry racing the first call)."""
        with self._locks.hold(key):
            yield

    def lookup(self, key: str, request: RunRequest) -> ReplayedReport | None:
        report = self._reports.get(key) or self._read_destination(key)
        if report is None:
            return None
        pipeline = request.pipeline
        if report.get("pipeline") != pipeline:
            raise IdempotencyKeyReusedError(
                f"idempotency key '{key}' was already used for pipeline '{report.get('pipeline')}'",
                pipeline=pipeline,
            )
        first = report.get(REQUEST_FIELD)
        if first is not None and first != fingerprint(request):
            raise IdempotencyKeyReusedError(
                f"idempotency key '{key}' was already used with another request body; use a "
                "new key for a different request",
                pipeline=pipeline,
            )
        return ReplayedReport(report)

    def record(self, key: str, request: RunRequest, report: dict[str, Any]) -> None:
        report = {**report, REQUEST_FIELD: fingerprint(request)}
        self._remember(key, report)
        try:
            self._write_destination(key, report)
        except Exception as error:  # the load itself succeeded; only the replay record is lost
            log.warning("could not persist idempotency key %s: %s", key, error)

    def _remember(self, key: str, report: dict[str, Any]) -> None:
        with self._guard:
            self._reports[key] = report
            self._reports.move_to_end(key)
            while len(self._reports) > MEMORY_ENTRIES:
                self._reports.popitem(last=False)

    def _read_destination(self, key: str) -> dict[str, Any] | None:
        rows = select(
            self.settings,
            PIPELINE,
            TABLE,
            "SELECT report FROM {table} WHERE idempotency_key = %s "
            "ORDER BY _dlt_load_id, run_id LIMIT 1",
            [key],
        )
        if not rows:
            return None
        report: dict[str, Any] = json.loads(rows[0][0])
        self._remember(key, report)
        return report

    def _write_destination(self, key: str, report: dict[str, Any]) -> None:
        row = {
            "idempotency_key": key,
            "pipeline": report["pipeline"],
            "run_id": report["run_id"],
            "report": json.dumps(report),
        }
        append_rows(
            self.settings,
            PIPELINE,
            TABLE,
            [row],
            "run_id",
            f"idempotency-{report['run_id']}",
        )
