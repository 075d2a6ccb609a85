"""The background stage: items in order, errors to the producer, a bounded queue."""

from __future__ import annotations

import threading
import time

import pytest

from engine.background import BackgroundConsumer


def test_items_are_consumed_in_order_in_another_thread() -> None:
    seen: list[tuple[int, str]] = []
    with BackgroundConsumer(
        lambda i: seen.append((i, threading.current_thread().name)), 2, "w"
    ) as w:
        for i in range(50):
            w.put(i)
    assert [i for i, _ in seen] == list(range(50))
    assert {name for _, name in seen} == {"w"}


def test_a_worker_error_reaches_the_producer_and_stops_it() -> None:
    def consume(item: int) -> None:
        if item == 3:
            raise ValueError("bad block 3")

    put = []
    with pytest.raises(ValueError, match="bad block 3"), BackgroundConsumer(consume, 1, "w") as w:  # noqa: PT012
        for i in range(1000):
            w.put(i)
            put.append(i)
    assert len(put) < 1000  # the producer stopped early, it did not run to the end


def test_the_queue_is_bounded_and_an_error_in_the_producer_stops_the_worker() -> None:
    consumed: list[int] = []
    release = threading.Event()

    def slow(item: int) -> None:
        release.wait(5)
        time.sleep(0.05)
        consumed.append(item)

    with pytest.raises(KeyboardInterrupt), BackgroundConsumer(slow, 2, "w") as worker:  # noqa: PT012
        for i in range(3):  # one in the worker's hands, two waiting
            worker.put(i)
        start = time.monotonic()
        threading.Timer(0.3, release.set).start()
        worker.put(3)  # waits until the worker takes the next one
        assert time.monotonic() - start >= 0.25
        raise KeyboardInterrupt  # e.g. cancel: the rest is dropped
    assert consumed[:1] == [0] and len(consumed) < 4
    assert not [t for t in threading.enumerate() if t.name == "w"]
