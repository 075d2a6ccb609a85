"""Reading model windows with reflect padding, in batches, in a background thread.

A window may reach past the raster (the plan is padded by the blend margin): the part inside
is read and the outside filled by mirroring it (``numpy.pad(mode="reflect")``), so edge
pixels get the same kind of context as inner ones. Reading runs in a thread one or two
batches ahead of the model, on a dataset of its own (rasterio datasets are not shared
between threads).
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np
from rasterio.windows import Window

from engine.geo.normalize import BandStats, normalize
from engine.geo.rasters import reading, valid_pixels
from engine.geo.windows import clip_to_grid

#: Opens the dataset to read (a DatasetReader or a WarpedVRT), as a context manager.
SourceOpener = Callable[[], AbstractContextManager[Any]]


@dataclass
class TileJob:
    """One window of the plan and, when it is to be predicted, its input."""

    window: Window
    data: np.ndarray | None = None  # normalised (C, h, w) float32
    valid: np.ndarray | None = None  # (h, w) bool

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of the window."""
        return int(self.window.height), int(self.window.width)


def read_inside(src: Any, window: Window, bands: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Read ``bands`` of a window lying inside ``src`` as float32 (C, h, w) + valid (h, w).

    Unlike :func:`engine.geo.rasters.read_window` this never reads boundless, so it also works on
    a WarpedVRT. A pixel is invalid where any band is masked (nodata) or not finite
    (NaN, Inf).
    """
    with reading(src, window):
        data = src.read(list(bands), window=window, masked=False).astype(np.float32, copy=False)
        masks = src.read_masks(list(bands), window=window)
    return data, valid_pixels(data, masks)


def valid_inside(src: Any, window: Window, bands: Sequence[int]) -> np.ndarray:
    """The valid pixels (h, w) of a window lying inside ``src``, as :func:`read_inside` finds
    them, reading the pixels themselves only where they could be NaN or Inf (float bands)."""
    with reading(src, window):
        masks = src.read_masks(list(bands), window=window)
        if any(np.issubdtype(np.dtype(src.dtypes[b - 1]), np.floating) for b in bands):
            return valid_pixels(src.read(list(bands), window=window, masked=False), masks)
    valid: np.ndarray = np.all(masks > 0, axis=0)
    return valid


def read_reflected(src: Any, window: Window, bands: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """``window`` of ``src``, mirrored where it leaves the raster (it must overlap it)."""
    col, row = int(window.col_off), int(window.row_off)
    inner = clip_to_grid(window, src.width, src.height)
    data, valid = read_inside(src, inner, bands)
    top, left = int(inner.row_off) - row, int(inner.col_off) - col
    bottom = row + int(window.height) - int(inner.row_off + inner.height)
    right = col + int(window.width) - int(inner.col_off + inner.width)
    if top or left or bottom or right:
        pads = ((top, bottom), (left, right))
        data = np.pad(data, ((0, 0), *pads), mode="reflect")
        valid = np.pad(valid, pads, mode="reflect")
    return data, valid


_END = object()


class BatchReader:
    """Iterates batches of :class:`TileJob`, read and normalised in a background thread.

    A batch holds up to ``batch_size`` windows to predict, all of one shape (a window of
    another shape, such as the smaller last one of a row, starts a new batch), plus the
    skipped windows (not ``wanted``, or without a valid pixel) met on the way, all in plan
    order. Use it as a context manager: leaving it stops and joins the thread.
    """

    def __init__(
        self,
        open_source: SourceOpener,
        windows: Sequence[Window],
        wanted: Sequence[bool],
        bands: Sequence[int],
        stats: BandStats,
        batch_size: int,
        prefetch: int = 2,
    ) -> None:
        self._open, self._windows, self._wanted = open_source, windows, wanted
        self._bands, self._stats = tuple(bands), stats
        self._batch_size = batch_size
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=prefetch)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="footprint-reader", daemon=True)

    def __enter__(self) -> BatchReader:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):  # unblock a reader waiting to put
                self._queue.get(timeout=0.05)
        self._thread.join()

    def __iter__(self) -> Iterator[list[TileJob]]:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            with self._open() as src:
                self._read_all(src)
            self._put(_END)
        except BaseException as exc:  # handed to the consuming thread
            self._put(exc)

    def _read_all(self, src: Any) -> None:
        batch: list[TileJob] = []
        predicted = 0
        shape: tuple[int, int] | None = None  # of the windows to predict in ``batch``
        flush_at = 4 * self._batch_size + 60  # keep progress moving through skipped runs
        for window, wanted in zip(self._windows, self._wanted, strict=True):
            if self._stop.is_set():
                return
            job = TileJob(window)
            if wanted:
                data, valid = read_reflected(src, window, self._bands)
                if valid.any():
                    job.data, job.valid = normalize(data, valid, self._stats), valid
            if job.data is not None and shape not in (None, job.shape):
                if not self._put(batch):
                    return
                batch, predicted = [], 0
            batch.append(job)
            if job.data is not None:
                predicted, shape = predicted + 1, job.shape
            if predicted == self._batch_size or len(batch) >= flush_at:
                if not self._put(batch):
                    return
                batch, predicted, shape = [], 0, None
        if batch:
            self._put(batch)
