"""What a run reports of each model it built: a plain record, importable without sqlglot (the
run report, and so every route, carries it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

ModelStatus = Literal["built", "failed", "skipped"]


@dataclass
class ModelReport:
    name: str
    materialization: str
    status: ModelStatus = "built"
    rows: int | None = None
    """Rows in the built table (incremental: rows merged; views: only when checked)."""
    seconds: float = 0.0
    reason: str | None = None
    """Why a model was skipped, or why an incremental model read its upstream whole."""
    rows_read: int | None = None
    """incremental models: the upstream rows this build read (only new loads', when it could)."""
    error: dict[str, Any] | None = None
