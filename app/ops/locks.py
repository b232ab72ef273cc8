"""One lock per key (an object, an idempotency key), kept only while someone holds or waits
for it: a long-lived instance sees every object once, and must not keep a lock for each."""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


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
    def hold(self, key: K) -> Iterator[None]:
        with self._guard:
            entry = self._entries.setdefault(key, _Entry())
            entry.users += 1
        try:
            with entry.lock:
                yield
        finally:
            with self._guard:
                entry.users -= 1
                if entry.users == 0:
                    del self._entries[key]

    def __len__(self) -> int:
        with self._guard:
            return len(self._entries)
