"""Running the stage after the model in a thread of its own, so it overlaps the model's work.

While torch computes a batch it releases the GIL, and on a CPU it does not keep every core
busy all the time (2 threads ran a Lite0 U-Net 1.6x faster than 1, not 2x): polygonizing the
finished blocks (watershed, polygon building and simplification, writing) in a worker thread
fills those gaps instead of following each batch. :class:`BackgroundConsumer` hands items to
one worker in order, through a bounded queue (at most ``maxsize`` items wait, so memory
stays bounded), and raises the worker's error in the producer. :class:`OrderedPool` runs
independent items of such a stage in several threads and gives their results back in order.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any, Generic, TypeVar

from engine.cores import usable_cores

T = TypeVar("T")

_END = object()


class BackgroundConsumer(Generic[T]):
    """Calls ``consume(item)`` for every :meth:`put` item, in order, in a worker thread.

    Use it as a context manager: a normal exit waits for the worker to finish every item and
    raises its error if it had one; an exit on an error (or cancel) stops it without
    finishing. :meth:`put` raises the worker's error as soon as there is one.
    """

    def __init__(self, consume: Callable[[T], None], maxsize: int, name: str) -> None:
        self._consume = consume
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, maxsize))
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def __enter__(self) -> BackgroundConsumer[T]:
        self._thread.start()
        return self

    def put(self, item: T) -> None:
        """Queue ``item`` (waits while the queue is full)."""
        while True:
            self._raise_error()
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.put(_END, timeout=0.1)
                break
            except queue.Full:
                continue
        self._thread.join()
        if exc_type is None:
            self._raise_error()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _END or self._stop.is_set():
                return
            try:
                self._consume(item)
            except BaseException as error:  # handed to the producer
                self._error = error
                self._stop.set()
                return


R = TypeVar("R")

#: Most threads in one :class:`OrderedPool` of the engine's.
MAX_POOL_WORKERS = 8


def spare_cores(reserved: int) -> int:
    """Threads for a pool when ``reserved`` cores are kept for other threads: the cores this
    process may run on (its CPU affinity) less those, from 1 to :data:`MAX_POOL_WORKERS`."""
    return max(1, min(MAX_POOL_WORKERS, usable_cores() - reserved))


class OrderedPool(Generic[T, R]):
    """Runs ``work(item)`` in ``workers`` threads and hands the results back in the order the
    items came, at most ``2 x workers`` in flight (so memory stays bounded).

    For stages whose items are independent and whose libraries release the GIL while they
    compute (scikit-image's watershed, SciPy's labelling, GDAL's polygonizing, GEOS): on a
    machine with cores to spare (a GPU predicting, or a CPU with more cores than the model
    keeps busy) they run side by side, while what must stay in order (joining buildings
    across seams, writing) takes the results one by one.

    Use it as a context manager; :meth:`submit` returns the results now due, :meth:`drain`
    the rest. Leaving on an error cancels what has not started.
    """

    def __init__(self, work: Callable[[T], R], workers: int, name: str) -> None:
        self._work = work
        self.workers = max(1, workers)
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix=name)
        self._pending: deque[Future[R]] = deque()

    def __enter__(self) -> OrderedPool[T, R]:
        return self

    def submit(self, item: T) -> list[R]:
        """Start ``item``; return the results of the earliest items once more than
        ``2 x workers`` are in flight (waiting for the first if it is not done)."""
        self._pending.append(self._pool.submit(self._work, item))
        due: list[R] = []
        while len(self._pending) > 2 * self.workers or (self._pending and self._pending[0].done()):
            due.append(self._pending.popleft().result())
        return due

    def drain(self) -> list[R]:
        """The results of every item still in flight, in order."""
        due = [future.result() for future in self._pending]
        self._pending.clear()
        return due

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for future in self._pending:
            future.cancel()
        self._pending.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)
