"""core/locks.py: exclusive while held, gone once nobody holds or waits."""

from __future__ import annotations

import threading

from core.locks import KeyedLocks, LockWaitExpiredError


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


def test_a_waiter_is_told_once_and_gives_up_after_its_timeout_without_holding() -> None:
    locks: KeyedLocks[str] = KeyedLocks()
    told: list[str] = []
    with locks.hold("t"):
        waiter_failed: list[BaseException] = []

        def wait() -> None:
            try:
                with locks.hold("t", timeout=0.05, on_wait=lambda: told.append("waiting")):
                    told.append("held")  # never: the key stays held above
            except LockWaitExpiredError as error:
                waiter_failed.append(error)

        waiter = threading.Thread(target=wait)
        waiter.start()
        waiter.join(timeout=30)
    assert told == ["waiting"]
    assert len(waiter_failed) == 1
    assert len(locks) == 0
