"""The run report: what a run read, loaded and skipped, and how long each stage took."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from app.models.report import ModelReport

FileStatus = Literal[
    "loaded",
    "already_loaded",
    "stale_generation",
    "superseded",
    "failed",
    "deleted",
    "already_deleted",
    "not_deleted",
    "not_found",
]
RunStatus = Literal["succeeded", "failed", "skipped"]


@dataclass
class FileReport:
    uri: str
    generation: int
    bytes: int
    status: FileStatus = "loaded"
    rows_read: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    reason: str | None = None


@dataclass
class RunReport:
    run_id: str
    pipeline: str
    trigger: str
    destination: str
    dataset: str
    status: RunStatus = "succeeded"
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    finished_at: str | None = None
    load_ids: list[str] = field(default_factory=list)
    load_jobs: dict[str, int] = field(default_factory=dict)
    """Destination load jobs per table (BigQuery allows 1,500 per table per day)."""
    tables: dict[str, int] = field(default_factory=dict)
    """Rows loaded per destination table (dlt's own tables excluded)."""
    rows_read: int = 0
    """Input rows, rejected ones included: rows_read = loaded + rejected + filtered out."""
    rows_loaded: int = 0
    rows_rejected: int = 0
    """Rows kept in `<table>__rejects` (source.on_bad_rows: reject)."""
    bytes_read: int = 0
    files: list[FileReport] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall time per stage: list, extract, transform, normalize, writer_wait (for an earlier
    load of the table to commit), load, total."""
    shard: str | None = None
    execution: str | None = None
    """Cloud Run Jobs: the execution that ran this task (CLOUD_RUN_EXECUTION)."""
    task_attempt: int | None = None
    """Cloud Run Jobs: the task's attempt, from 0 (CLOUD_RUN_TASK_ATTEMPT)."""
    changes: dict[str, int] | None = None
    """CDC pipelines: the change rows, apart from table rows (a feed of 1,200 changes may
    leave 259 rows): `applied` (merged in; a change older than the table's is merged as a
    no-op), `upserts`, `deletes`, and `tombstones` (deletes kept to block older changes).
    Their table is then not in `tables`, which counts rows."""
    error: dict[str, Any] | None = None
    models: list[ModelReport] = field(default_factory=list)
    """SQL models built after the load (or by a build run), in the order they ran."""

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add_time(stage, time.perf_counter() - started)

    def add_time(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = round(self.seconds.get(stage, 0.0) + seconds, 4)

    def finish(self, status: RunStatus, error: dict[str, Any] | None = None) -> RunReport:
        self.status = status
        self.error = error
        self.finished_at = datetime.now(UTC).isoformat()
        return self

    @property
    def rows_filtered(self) -> int:
        """Rows read that a transform step or a check left out (neither loaded nor rejected)."""
        return max(self.rows_read - self.rows_loaded - self.rows_rejected, 0)

    @property
    def files_loaded(self) -> int:
        return sum(1 for f in self.files if f.status == "loaded")

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        body["rows_filtered"] = self.rows_filtered
        body["files_loaded"] = self.files_loaded
        body["files_skipped"] = sum(1 for f in self.files if f.status != "loaded")
        return body

    def summary(self) -> str:
        """One human line, for terminals."""
        tables = ", ".join(f"{name}={rows}" for name, rows in self.tables.items()) or "none"
        total = self.seconds.get("total", 0.0)
        if self.changes:
            tables += (
                f"; changes applied {self.changes['applied']} (upserts "
                f"{self.changes['upserts']}, deletes {self.changes['deletes']})"
            )
        models = "".join(
            f"; model {model.name} {model.status}"
            + (f" ({model.rows} rows)" if model.rows is not None else "")
            for model in self.models
        )
        return (
            f"{self.pipeline} [{self.run_id}] {self.status}: read {self.rows_read} rows from "
            f"{len(self.files)} file(s), loaded {self.rows_loaded} ({tables}) into "
            f"{self.destination}:{self.dataset} in {total:.2f}s{models}"
        )
