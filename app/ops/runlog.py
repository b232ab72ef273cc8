"""The run log: every run's report in a `_ferry_runs` table in the destination.

Kept in the destination (not in memory) so `GET /runs` answers the same on every instance
and after a restart. Recording is best effort: by then the run's data is committed, and a
lost history row must never turn a successful load into a failed one.

On BigQuery, where each write is a call, a skipped push (nothing new: a redelivered object
already loaded) is not written on its own: its row was the second of a redelivery's two
calls. Its row waits in this process and goes in with the next write, one insert for all:
the next run that loaded something, a read of the log here (so this instance's `GET /runs`
sees it), a timer at most DEFER_SECONDS later, or the service's shutdown. A killed process
loses the rows still waiting: pushes that changed nothing, each also in the log lines. Other
triggers are written at once (a drain records its run before it acks).
"""

from __future__ import annotations

import json
import logging
import threading
from typing import TYPE_CHECKING, Any

from app.destinations.side_tables import append_rows, appends_by_call, select
from core.errors import classify
from core.settings import Settings

if TYPE_CHECKING:
    from dlt.common.schema.typing import TColumnSchema

log = logging.getLogger("ferry.runlog")

TABLE = "_ferry_runs"
PIPELINE = "_runs"
MAX_LIMIT = 500
DEFER_SECONDS = 30.0
"""The longest a skipped run's row waits in this process for the next write."""
MAX_DEFERRED = 200
"""Rows of skipped runs that wait at most; one more writes them all."""
DEFERRED_TRIGGERS = ("pubsub", "eventarc")
"""Pushes: redelivered one object at a time, so one call each is what a row would cost."""

# typed, so the destination sorts by time and not by text
COLUMNS: dict[str, TColumnSchema] = {
    "run_id": {"data_type": "text", "nullable": False},
    "pipeline": {"data_type": "text"},
    "status": {"data_type": "text"},
    "trigger": {"data_type": "text"},
    "started_at": {"data_type": "timestamp"},
    "finished_at": {"data_type": "timestamp", "nullable": True},
    "rows_read": {"data_type": "bigint"},
    "rows_loaded": {"data_type": "bigint"},
    "rows_rejected": {"data_type": "bigint"},
    "seconds_total": {"data_type": "double"},
    "error_code": {"data_type": "text", "nullable": True},
    "report": {"data_type": "text"},
    "execution": {"data_type": "text", "nullable": True},
    "task_attempt": {"data_type": "bigint", "nullable": True},
}


def run_row(report: dict[str, Any]) -> dict[str, Any]:
    """One `_ferry_runs` row from a run report (pure)."""
    error = report.get("error") or {}
    return {
        "run_id": report["run_id"],
        "pipeline": report["pipeline"],
        "status": report["status"],
        "trigger": report.get("trigger"),
        "started_at": report.get("started_at"),
        "finished_at": report.get("finished_at"),
        "rows_read": int(report.get("rows_read") or 0),
        "rows_loaded": int(report.get("rows_loaded") or 0),
        "rows_rejected": int(report.get("rows_rejected") or 0),
        "seconds_total": float((report.get("seconds") or {}).get("total", 0.0)),
        "error_code": error.get("code"),
        "report": json.dumps(report, default=str),
        # Cloud Run Jobs: which execution and attempt ran it (None elsewhere)
        "execution": report.get("execution"),
        "task_attempt": report.get("task_attempt"),
    }


class _Deferred:
    """Rows of skipped runs waiting for the next write, per destination (its settings)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._rows: dict[str, tuple[Settings, list[dict[str, Any]]]] = {}
        self._timer: threading.Timer | None = None

    def add(self, settings: Settings, row: dict[str, Any]) -> bool:
        """Hold `row`; True when enough wait that they should be written now."""
        with self._guard:
            _, rows = self._rows.setdefault(_group_key(settings), (settings, []))
            rows.append(row)
            if self._timer is None:
                self._timer = threading.Timer(DEFER_SECONDS, write_deferred)
                self._timer.daemon = True
                self._timer.start()
            return len(rows) >= MAX_DEFERRED

    def take(self, settings: Settings) -> list[dict[str, Any]]:
        with self._guard:
            _, rows = self._rows.pop(_group_key(settings), (settings, []))
            return rows

    def take_all(self) -> list[tuple[Settings, list[dict[str, Any]]]]:
        """Every waiting group a client made now can still reach; the others are dropped
        with a warning (their runs loaded nothing, and their endpoint is gone)."""
        with self._guard:
            taken = []
            for key, (settings, rows) in self._rows.items():
                if key == _group_key(settings):
                    taken.append((settings, rows))
                else:
                    log.warning("run-log rows of %d skipped runs dropped: endpoint gone", len(rows))
            self._rows.clear()
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            return taken


_deferred = _Deferred()


def _group_key(settings: Settings) -> str:
    """A destination's deferred rows, keyed by the endpoint a client reaches now too: the
    timer's late write goes only where the runs went (in tests, an emulator may be gone)."""
    from app.destinations.registry import engine_for

    return f"{settings.model_dump_json()}@{engine_for(settings).destination.client_endpoint()}"


def write_deferred() -> None:
    """Write every skipped run's row still waiting, of every destination (the timer)."""
    for settings, rows in _deferred.take_all():
        RunLog(settings)._write_or_warn(rows)


class RunLog:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def record(self, report: dict[str, Any]) -> bool:
        """Append one run (readers keep its newest row); False, with a warning, if it could not.

        A skipped run's row waits for the next write (see the module's docstring)."""
        row = run_row(report)
        skipped = (
            report.get("status") == "skipped"
            and report.get("trigger") in DEFERRED_TRIGGERS
            and appends_by_call(self.settings)
        )
        if skipped and not _deferred.add(self.settings, row):
            return True
        return self._write_or_warn([*_deferred.take(self.settings), row])

    def flush(self) -> bool:
        """Write the skipped runs' rows waiting in this process now."""
        return self._write_or_warn(_deferred.take(self.settings))

    def recent(
        self, limit: int = 50, pipeline: str | None = None, status: str | None = None
    ) -> list[dict[str, Any]]:
        """The newest reports first, optionally of one pipeline and/or one status."""
        where, args = [], []
        if pipeline is not None:
            where.append("pipeline = %s")
            args.append(pipeline)
        if status is not None:
            where.append("status = %s")
            args.append(status)
        # an int we clamp ourselves, not caller text: safe to inline
        bounded = max(1, min(int(limit), MAX_LIMIT))
        return self._select(where, f" ORDER BY started_at DESC, run_id DESC LIMIT {bounded}", args)

    def get(self, run_id: str) -> dict[str, Any] | None:
        reports = self._select(["run_id = %s"], "", [run_id])
        return reports[0] if reports else None

    def _select(self, where: list[str], clause: str, args: list[str]) -> list[dict[str, Any]]:
        # one row per run: a run recorded twice (a streaming insert retried, a drain killed
        # before its ack) keeps the newest write. The clause holds placeholders only; the
        # values are bound.
        self.flush()  # a reader here sees this process's skipped runs too
        condition = " AND ".join(["_latest = 1", *where])
        query = (
            "SELECT report FROM (SELECT report, run_id, pipeline, status, started_at, "  # noqa: S608
            "ROW_NUMBER() OVER (PARTITION BY run_id ORDER BY _dlt_load_id DESC) AS _latest "
            f"FROM {{table}}) AS runs WHERE {condition}" + clause
        )
        try:
            rows = select(self.settings, PIPELINE, TABLE, query, args)
        except Exception as error:
            raise classify(error) from error
        return [json.loads(row[0]) for row in rows]

    def _write_or_warn(self, rows: list[dict[str, Any]]) -> bool:
        if not rows:
            return True
        try:
            run_id = rows[-1]["run_id"]
            append_rows(self.settings, PIPELINE, TABLE, rows, "run_id", f"runlog-{run_id}", COLUMNS)
        except Exception as error:  # the runs' data is committed; only their history is lost
            lost = ", ".join(str(row.get("run_id")) for row in rows)
            log.warning("could not record run(s) %s in %s: %s", lost, TABLE, error)
            return False
        return True
