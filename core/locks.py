"""One lock per key (an object, an idempotency key, a destination table), kept only while
someone holds or waits for it: a long-lived instance sees every object once, and must not
keep a lock for each."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class LockWaitExpiredError(Exception):
    """The key stayed held by others past the wait allowed (the caller never held it)."""


@dataclass
class _Entry:
    lock: threading.Lock = field(default_factory=threading.Lock)
    users: int = 0
    """Threads holding or waiting for `lock`; the entry goes when the last one leaves."""


class KeyedLocks(Generic[K]):
    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._entries: dict[K, _Entry] = {}

    @contextmanager
    def hold(
        self,
        key: K,
        timeout: float | None = None,
        on_wait: Callable[[], None] | None = None,
    ) -> Iterator[None]:
        """Hold `key`'s lock; `on_wait` runs once if another holder makes this one wait, and
        past `timeout` seconds of waiting LockWaitExpiredError is raised."""
        with self._guard:
            entry = self._entries.setdefault(key, _Entry())
            entry.users += 1
        try:
            if not entry.lock.acquire(blocking=False):
                if on_wait is not None:
                    on_wait()
                if not entry.lock.acquire(timeout=-1 if timeout is None else timeout):
                    raise LockWaitExpiredError(f"{key} stayed held for {timeout:.0f}s")
            try:
                yield
            finally:
                entry.lock.release()
        finally:
            with self._guard:
                entry.users -= 1
                if entry.users == 0:
                    del self._entries[key]

    def __len__(self) -> int:
        with self._guard:
            return len(self._entries)
