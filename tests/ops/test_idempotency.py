"""app/ops/idempotency.py: a key's first report is answered again, from memory or from the
destination (another instance, a restart); a key is bound to its pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.ops.idempotency import IdempotencyStore, ReplayedReport
from core.errors import RequestError
from tests.helpers import duckdb_settings

REPORT = {"run_id": "r-1", "pipeline": "people", "status": "succeeded", "rows_loaded": 3}


def test_an_unknown_key_has_no_report(tmp_path: Path) -> None:
    assert IdempotencyStore(duckdb_settings(tmp_path)).lookup("k", "people") is None


def test_a_recorded_key_is_replayed_by_another_store_too(tmp_path: Path) -> None:
    settings = duckdb_settings(tmp_path)
    IdempotencyStore(settings).record("k", REPORT)
    replay = IdempotencyStore(settings).lookup("k", "people")
    assert replay == ReplayedReport(REPORT)
    assert replay.status == "succeeded"
    assert replay.to_dict() == {**REPORT, "replayed": True}


def test_a_key_used_for_another_pipeline_is_refused(tmp_path: Path) -> None:
    store = IdempotencyStore(duckdb_settings(tmp_path))
    store.record("k", REPORT)
    with pytest.raises(RequestError, match="already used for pipeline 'people'"):
        store.lookup("k", "orders")
