"""Per-object and per-key locks: exclusive while held, gone once nobody holds or waits."""

from __future__ import annotations

import threading
from pathlib import Path

from app.ops.locks import KeyedLocks
from app.ops.service import RunService
from app.run.runner import RunRequest
from tests.helpers import count, duckdb_settings, write_catalog


def test_one_holder_per_key_and_nothing_kept_after() -> None:
    locks: KeyedLocks[str] = KeyedLocks()
    inside: list[str] = []
    overlap = threading.Event()
    first_in = threading.Event()
    release = threading.Event()

    def hold(key: str) -> None:
        with locks.hold(key):
            if inside:
                overlap.set()
            inside.append(key)
            first_in.set()
            release.wait(timeout=30)
            inside.remove(key)

    first = threading.Thread(target=hold, args=("gs://b/a.csv",))
    first.start()
    assert first_in.wait(timeout=30)
    second = threading.Thread(target=hold, args=("gs://b/a.csv",))
    second.start()
    with locks.hold("gs://b/other.csv"):  # another key never waits
        assert len(locks) == 2
    release.set()
    first.join(timeout=30)
    second.join(timeout=30)
    assert not overlap.is_set()
    assert len(locks) == 0


def test_an_error_inside_still_releases_and_prunes() -> None:
    locks: KeyedLocks[tuple[str, str]] = KeyedLocks()
    try:
        with locks.hold(("p", "x")):
            raise ValueError("boom")
    except ValueError:
        pass
    assert len(locks) == 0
    with locks.hold(("p", "x")):
        assert len(locks) == 1


def test_the_service_keeps_no_lock_per_object_seen(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.csv").write_text("id\n1\n", encoding="utf-8")
    catalog = write_catalog(
        tmp_path,
        """
        pipelines:
          - {name: p, source: {uri: "*.csv"}, destination: {table: p}}
        """,
    )
    settings = duckdb_settings(tmp_path, run_log=False)
    service = RunService(settings, catalog)
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
