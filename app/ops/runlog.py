"""The run log: every run's report in a `_ferry_runs` table in the destination.

Kept in the destination (not in memory) so `GET /runs` answers the same on every instance
and after a restart. Recording is best effort: by then the run's data is committed, and a
lost history row must never turn a successful load into a failed one.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from app.destinations.side_tables import append_row, select
from core.errors import classify
from core.settings import Settings

if TYPE_CHECKING:
    from dlt.common.schema.typing import TColumnSchema

log = logging.getLogger("ferry.runlog")

TABLE = "_ferry_runs"
PIPELINE = "_runs"
MAX_LIMIT = 500

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


class RunLog:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def record(self, report: dict[str, Any]) -> bool:
        """Append one run (readers keep its newest row); False, with a warning, if it could not."""
        try:
            self._write(report)
        except Exception as error:  # the run's data is committed; only its history row is lost
            log.warning("could not record run %s in %s: %s", report.get("run_id"), TABLE, error)
            return False
        return True

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

    def _write(self, report: dict[str, Any]) -> None:
        run_id = report["run_id"]
        append_row(
            self.settings, PIPELINE, TABLE, run_row(report), "run_id", f"runlog-{run_id}", COLUMNS
        )
