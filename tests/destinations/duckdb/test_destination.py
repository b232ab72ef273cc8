"""DuckDB's destination module: one writer at a time on the database file."""

from __future__ import annotations

import threading
from pathlib import Path

from app.destinations.duckdb import destination
from core.errors import DestinationUnavailableError
from tests.helpers import duckdb_settings


def test_duckdb_lock_serialises_writers(tmp_path: Path) -> None:
    settings = duckdb_settings(tmp_path)
    outcome: list[BaseException | None] = []

    def second_holder() -> None:
        try:
            with destination.lock(settings, timeout=0.0):
                outcome.append(None)
        except BaseException as error:  # reported to the test thread
            outcome.append(error)

    # another thread (another open file description) waits, then gives up: retriable
    with destination.lock(settings):
        other = threading.Thread(target=second_holder)
        other.start()
        other.join()
        # the holder's own thread may take it again (a run holds it across its steps)
        with destination.lock(settings, timeout=0.0):
            pass
    assert len(outcome) == 1 and isinstance(outcome[0], DestinationUnavailableError)
    assert "locked" in str(outcome[0])
    # released: the other thread gets it now
    second_holder()
    assert outcome[1] is None
