"""Run a generator one step ahead in its own thread, so producing and consuming overlap.

dlt writes each extracted table to Parquet in the thread that iterates the resource. Reading
(Arrow's CSV/JSON parsers), transforming and writing Parquet all release the GIL for most of
their work, so with the reader in a thread of its own both cores work instead of taking turns.
The queue is bounded (`ahead` items), so memory stays a few batches whatever the file size.
"""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Iterator
from typing import Any, TypeVar

T = TypeVar("T")
_DONE = object()
_POLL_S = 0.1


def prefetched(items: Iterator[T], ahead: int = 1) -> Iterator[T]:
    """Yield what `items` yields, produced in a background thread up to `ahead` items early.

    An exception in the producer is raised here, at the point the consumer reaches it. If the
    consumer stops early (closes this generator), the producer stops at its next item.
    """
    handoff: queue.Queue[Any] = queue.Queue(maxsize=ahead)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((_DONE, None))
        except BaseException as error:
            put((_DONE, error))
        finally:
            close = getattr(items, "close", None)
            if close is not None and stop.is_set():
                close()

    context = contextvars.copy_context()
    worker = threading.Thread(
        target=context.run, args=(produce,), name="ferry-prefetch", daemon=True
    )
    worker.start()
    try:
        while True:
            item, error = handoff.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        worker.join()
