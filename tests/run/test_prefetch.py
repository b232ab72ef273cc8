"""The prefetch thread hands items over in order, raises the producer's error where the
consumer reaches it, and stops the producer when the consumer stops early."""

from __future__ import annotations

import threading
from collections.abc import Generator, Iterator

import pytest

from app.run.prefetch import prefetched


def test_items_arrive_in_order_from_another_thread() -> None:
    producers: set[str] = set()

    def items() -> Iterator[int]:
        for number in range(50):
            producers.add(threading.current_thread().name)
            yield number

    assert list(prefetched(items())) == list(range(50))
    assert producers == {"ferry-prefetch"}


def test_an_error_in_the_producer_is_raised_after_the_items_before_it() -> None:
    def items() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("bad row")

    received = []
    with pytest.raises(ValueError, match="bad row"):
        for item in prefetched(items()):
            received.append(item)
    assert received == [1, 2]


def test_a_consumer_that_stops_early_stops_the_producer() -> None:
    closed = threading.Event()

    def items() -> Iterator[int]:
        try:
            number = 0
            while True:
                yield number
                number += 1
        finally:
            closed.set()

    stream = prefetched(items())
    assert isinstance(stream, Generator)
    assert next(stream) == 0
    stream.close()
    assert closed.wait(timeout=5)
