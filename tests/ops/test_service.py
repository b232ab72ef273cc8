"""app/ops/service.py, the one run wrapper of every trigger: runs recorded whether they
succeed or fail, none after a stop, the stop flag set by SIGTERM, one lock per object held
only while it loads, idempotency keys answered again."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from app.ops.runlog import RunLog
from app.ops.service import RunReport, RunRequest, RunService, sweep_staging
from core.errors import BadDataError, ShuttingDownError
from tests.helpers import count, duckdb_settings, write_catalog

PIPELINES = """
pipelines:
  - {name: p, source: {uri: "*.csv"}, destination: {table: p}}
"""


def service_for(tmp_path: Path, *, run_log: bool = False, files: str = "abc") -> RunService:
    for name in files:
        (tmp_path / f"{name}.csv").write_text("id\n1\n", encoding="utf-8")
    catalog = write_catalog(tmp_path, PIPELINES)
    return RunService(duckdb_settings(tmp_path, run_log=run_log), catalog)


def test_the_service_keeps_no_lock_per_object_seen(tmp_path: Path) -> None:
    service = service_for(tmp_path)
    settings = service.settings
    for name in ("a", "b", "c"):
        report = service.execute(RunRequest("p", source_uri=f"{name}.csv", trigger="http"))
        assert report.status == "succeeded"
    replay_key = RunRequest("p", source_uri="a.csv", idempotency_key="k1", trigger="http")
    assert service.execute(replay_key).status == "skipped"
    replayed = service.execute(replay_key)
    assert replayed.to_dict()["replayed"] is True
    assert count(settings, "p") == 3
    assert len(service._object_locks) == 0
    assert len(service.idempotency._locks) == 0


def test_every_run_is_recorded_whether_it_succeeds_or_fails(tmp_path: Path) -> None:
    service = service_for(tmp_path, run_log=True, files="a")
    loaded = service.run(RunRequest("p", source_uri="a.csv", trigger="drain"))
    (tmp_path / "bad.csv").write_text("id\n1,2,3\n", encoding="utf-8")
    with pytest.raises(BadDataError) as failed:
        service.run(RunRequest("p", source_uri="bad.csv", trigger="drain"))
    assert isinstance(failed.value.report, RunReport)
    recorded = {r["run_id"]: r["status"] for r in RunLog(service.settings).recent()}
    assert recorded == {loaded.run_id: "succeeded", failed.value.report.run_id: "failed"}


def test_a_stop_mid_run_abandons_it_unrecorded_and_refuses_the_next(tmp_path: Path) -> None:
    service = service_for(tmp_path, run_log=True)
    seen: list[str] = []

    def stop_at_the_first_checkpoint(report: RunReport) -> None:
        seen.append(report.run_id)
        service.stop()

    with pytest.raises(ShuttingDownError, match="nothing is visible"):
        service.run(RunRequest("p", trigger="cli"), progress=stop_at_the_first_checkpoint)
    with pytest.raises(ShuttingDownError, match="shutting down"):
        service.execute(RunRequest("p", trigger="http"))
    assert len(seen) == 1
    assert count(service.settings, "p") == 0
    assert RunLog(service.settings).recent() == [], "its retry is the run that counts"


def test_sigterm_sets_the_stop_flag(tmp_path: Path) -> None:
    service = service_for(tmp_path, files="")
    before = signal.getsignal(signal.SIGTERM)
    try:
        service.stop_on_sigterm()
        os.kill(os.getpid(), signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, before)
    assert service.stopping.is_set()


def test_gc_sweeps_through_ops_without_a_pipelines_file(tmp_path: Path) -> None:
    assert sweep_staging(duckdb_settings(tmp_path)) == []
