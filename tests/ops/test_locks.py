"""app/ops/locks.py: exclusive while held, gone once nobody holds or waits."""

from __future__ import annotations

import threading

from app.ops.locks import KeyedLocks


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
