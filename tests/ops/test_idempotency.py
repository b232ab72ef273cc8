"""app/ops/idempotency.py: a key's first report is answered again, from memory or from the
destination (another instance, a restart); a key is bound to its pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.ops.idempotency import IdempotencyStore, ReplayedReport
from app.ops.service import RunRequest
from core.errors import IdempotencyKeyReusedError
from tests.helpers import duckdb_settings

REPORT = {"run_id": "r-1", "pipeline": "people", "status": "succeeded", "rows_loaded": 3}
PEOPLE = RunRequest("people", source_uri="in/a.csv", trigger="http")


def test_an_unknown_key_has_no_report(tmp_path: Path) -> None:
    assert IdempotencyStore(duckdb_settings(tmp_path)).lookup("k", PEOPLE) is None


def test_a_recorded_key_is_replayed_by_another_store_too(tmp_path: Path) -> None:
    settings = duckdb_settings(tmp_path)
    IdempotencyStore(settings).record("k", PEOPLE, REPORT)
    replay = IdempotencyStore(settings).lookup("k", PEOPLE)
    assert isinstance(replay, ReplayedReport)
    assert replay.status == "succeeded"
    assert {k: v for k, v in replay.to_dict().items() if k in REPORT} == REPORT
    assert replay.to_dict()["replayed"] is True


def test_a_key_used_for_another_pipeline_is_refused(tmp_path: Path) -> None:
    store = IdempotencyStore(duckdb_settings(tmp_path))
    store.record("k", PEOPLE, REPORT)
    with pytest.raises(IdempotencyKeyReusedError, match="already used for pipeline 'people'"):
        store.lookup("k", RunRequest("orders", trigger="http"))


def test_a_key_reused_with_another_request_is_refused(tmp_path: Path) -> None:
    store = IdempotencyStore(duckdb_settings(tmp_path))
    store.record("k", PEOPLE, REPORT)
    with pytest.raises(IdempotencyKeyReusedError, match="another request"):
        store.lookup("k", RunRequest("people", source_uri="in/b.csv", trigger="http"))


def test_two_instances_recording_one_key_answer_with_the_first_run(tmp_path: Path) -> None:
    """Two instances that ran the same key at once both record it (rows are appended, no
    merge); every later retry is answered with the run recorded first."""
    settings = duckdb_settings(tmp_path)
    IdempotencyStore(settings).record("k", PEOPLE, REPORT)
    IdempotencyStore(settings).record("k", PEOPLE, {**REPORT, "run_id": "r-2"})
    replay = IdempotencyStore(settings).lookup("k", PEOPLE)
    assert replay is not None
    assert replay.to_dict()["run_id"] == "r-1"
