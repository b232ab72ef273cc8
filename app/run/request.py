"""What a run is asked to do, and what one run's stages share while it runs."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

from app.run.catalog import Catalog
from app.run.report import RunReport
from core.settings import Settings
from core.spec import PipelineSpec

if TYPE_CHECKING:
    from app.run.transform import Transform

ProgressCallback = Callable[[RunReport], None]
"""Called after every batch and once before the load commits; raising there abandons the
run with nothing committed (how the service stops a run on SIGTERM)."""

CommitGuard = Callable[[], None]
"""Runs under the destination lock right before the load commits; raising aborts it."""


def new_run_id() -> str:
    # UTC: the staging sweep reads a run's age from its id, in any instance's time zone
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:8]


@dataclass(frozen=True)
class RunRequest:
    """One typed request, whatever the trigger (CLI, HTTP, Pub/Sub, CloudEvent)."""

    pipeline: str
    source_uri: str | None = None
    """Narrows the pipeline's file pattern to one object or a sub-pattern."""
    generation: int | None = None
    """A specific object generation (from a GCS notification)."""
    params: Mapping[str, str] = field(default_factory=dict)
    """API query parameter overrides."""
    shard_index: int = 0
    shard_count: int = 1
    run_id: str = field(default_factory=new_run_id)
    trigger: str = "cli"
    idempotency_key: str | None = None
    """Orchestrator-supplied: a repeated key returns the first run's report (ops/idempotency)."""
    objects: tuple[ObjectRef, ...] = ()
    """Exactly these objects (drain mode: a batch of notifications), each inside the pattern."""
    object_deleted: bool = False
    """`source_uri` at `generation` was deleted (OBJECT_DELETE): remove the rows it loaded
    (pipelines with `source.on_object_delete: delete_rows`)."""
    replay: tuple[date, date] | None = None
    """Re-load the raw zone's inputs archived on these dates (inclusive), replacing the rows
    each original object loaded."""
    models: tuple[str, ...] | None = None
    """A build instead of a load (`main.py build`, `POST /runs {"models": [...]}`): these
    models and those downstream of them; () builds every model."""
    full_refresh: bool = False
    """With `models`: incremental models read their upstream whole instead of the new loads."""
    execution: str | None = None
    """The Cloud Run Jobs execution running this task (CLOUD_RUN_EXECUTION)."""
    task_attempt: int | None = None
    """Which attempt of the task this is, from 0 (CLOUD_RUN_TASK_ATTEMPT)."""


MODELS_RUN = "_models"
"""The `pipeline` of a build run's report (no pipeline name can start with '_')."""


@dataclass(frozen=True)
class ObjectRef:
    uri: str
    generation: int | None = None


@dataclass
class RunContext:
    """Everything one run's stages need; built once by the runner."""

    request: RunRequest
    spec: PipelineSpec
    settings: Settings
    catalog: Catalog
    transform: Transform
    report: RunReport
    pipeline: Any
    """The run's dlt pipeline (its own working dir)."""
    progress: ProgressCallback | None = None
    before_load: list[Callable[[], None]] = field(default_factory=list)
    """Whole-run checks that can only run once every item is extracted."""
    after_commit: list[Callable[[], None]] = field(default_factory=list)
    """Idempotent clean-ups that need the load committed first (rows of emptied or deleted
    objects); a crash before them is repaired when the object is next delivered."""
    loading: Callable[[], None] | None = None
    """Called once everything is read and converted, as the run goes to load."""
    held: ExitStack = field(default_factory=ExitStack)
    """What the run holds until it ends, closed last to first (a streamed append's rollback
    and the destination lock it took)."""
    commit_streamed: Callable[[], tuple[str, int] | None] | None = None
    """Commits the rows appended while reading (streamed_rows.py): the table and its rows."""

    def checkpoint(self) -> None:
        if self.progress:
            self.progress(self.report)
