"""The background stages: items in order, errors to the producer, bounded queues; a pool of
threads whose results come back in the items' order."""

from __future__ import annotations

import threading
import time

import pytest

from engine.background import BackgroundConsumer, OrderedPool


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


def test_the_pool_runs_items_side_by_side_and_returns_them_in_order() -> None:
    """Later items finish first (shorter sleeps), yet results come back in the items' order;
    at most two per worker are in flight, and they run in more than one thread."""
    started: list[int] = []
    names: set[str] = set()

    def work(item: int) -> int:
        started.append(item)
        names.add(threading.current_thread().name)
        time.sleep(0.002 * (20 - item % 20))
        return item * item

    results: list[int] = []
    with OrderedPool(work, 3, "p") as pool:
        for i in range(40):
            results += pool.submit(i)
            assert len(started) - len(results) <= 6  # 2 x workers in flight at most
        results += pool.drain()
    assert results == [i * i for i in range(40)]
    assert len(names) > 1 and all(name.startswith("p") for name in names)


def test_a_pool_error_reaches_the_caller_and_the_rest_is_dropped() -> None:
    done: list[int] = []

    def work(item: int) -> int:
        if item == 2:
            raise ValueError("bad block 2")
        time.sleep(0.01)
        done.append(item)
        return item

    got: list[int] = []
    with pytest.raises(ValueError, match="bad block 2"), OrderedPool(work, 2, "q") as pool:  # noqa: PT012
        for i in range(100):
            got += pool.submit(i)
    assert got == list(range(len(got))) and len(got) <= 2  # only results before the error
    assert len(done) < 20  # the items not started were cancelled
    assert not [t for t in threading.enumerate() if t.name.startswith("q")]
