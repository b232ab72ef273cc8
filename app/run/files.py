"""A file pipeline's dlt resource: plan the objects (plan.py), then stream them (extract.py)."""

from __future__ import annotations

from typing import Any

from app.run.extract import FileExtractor
from app.run.plan import plan_files
from app.run.request import CommitGuard, RunContext
from core.spec import FilesSource
from sources.files.storage import storage_client_factory


def files_resource(run: RunContext, source: FilesSource) -> tuple[Any, CommitGuard | None]:
    """The resource to extract (None when every object is already loaded) and its guard."""
    storage_client = storage_client_factory(run.settings)
    plan = plan_files(run, source, storage_client)
    if not plan.pending:
        return None, None
    return FileExtractor(run, source, plan, storage_client).resource(), plan.commit_guard
