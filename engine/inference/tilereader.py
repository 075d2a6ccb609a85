"""Reading model windows with reflect padding, in batches, in a background thread.

A window may reach past the raster (the plan is padded by the blend margin): the part inside
is read and the outside filled by mirroring it (``numpy.pad(mode="reflect")``), so edge
pixels get the same kind of context as inner ones. Reading runs in a thread one or two
batches ahead of the model, on a dataset of its own (rasterio datasets are not shared
between threads).
"""

from __future__ import annotations

import contextlib
import math
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
from engine.geo.windows import clip_to_grid

#: Opens the dataset to read (a DatasetReader or a WarpedVRT), as a context manager.
SourceOpener = Callable[[], AbstractContextManager[Any]]


@dataclass
class TileJob:
    """One window of the plan: its offsets and, when it is to be predicted, its input."""

    col: int
    row: int
    data: np.ndarray | None = None  # normalised (C, tile, tile) float32
    valid: np.ndarray | None = None  # (tile, tile) bool


def read_inside(src: Any, window: Window, bands: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Read ``bands`` of a window lying inside ``src`` as float32 (C, h, w) + valid (h, w).

    Unlike :func:`engine.geo.rasters.read_window` this never reads boundless, so it also works on
    a WarpedVRT. A pixel is invalid where any band is masked (nodata) or NaN.
    """
    data = src.read(list(bands), window=window, masked=False).astype(np.float32, copy=False)
    masks = src.read_masks(list(bands), window=window)
    valid = np.all(masks > 0, axis=0)
    if src.nodata is not None and math.isnan(src.nodata):
        valid &= ~np.any(np.isnan(data), axis=0)
    data[:, ~valid] = 0.0
    return data, valid


def read_reflected(
    src: Any, col: int, row: int, tile: int, bands: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """The ``tile`` x ``tile`` window at (``col``, ``row``), mirrored where it leaves ``src``.

    The window must overlap the raster.
    """
    inner = clip_to_grid(Window(col, row, tile, tile), src.width, src.height)
    data, valid = read_inside(src, inner, bands)
    top, left = int(inner.row_off) - row, int(inner.col_off) - col
    bottom = row + tile - int(inner.row_off + inner.height)
    right = col + tile - int(inner.col_off + inner.width)
    if top or left or bottom or right:
        pads = ((top, bottom), (left, right))
        data = np.pad(data, ((0, 0), *pads), mode="reflect")
        valid = np.pad(valid, pads, mode="reflect")
    return data, valid


_END = object()


class BatchReader:
    """Iterates batches of :class:`TileJob`, read and normalised in a background thread.

    A batch holds up to ``batch_size`` windows to predict, plus the skipped windows (not
    ``wanted``, or without a valid pixel) met on the way, all in plan order. Use it as a
    context manager: leaving it stops and joins the thread.
    """

    def __init__(
        self,
        open_source: SourceOpener,
        offsets: Sequence[tuple[int, int]],
        wanted: Sequence[bool],
        tile: int,
        bands: Sequence[int],
        stats: BandStats,
        batch_size: int,
        prefetch: int = 2,
    ) -> None:
        self._open, self._offsets, self._wanted = open_source, offsets, wanted
        self._tile, self._bands, self._stats = tile, tuple(bands), stats
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
        flush_at = 4 * self._batch_size + 60  # keep progress moving through skipped runs
        for (col, row), wanted in zip(self._offsets, self._wanted, strict=True):
            if self._stop.is_set():
                return
            job = TileJob(col, row)
            if wanted:
                data, valid = read_reflected(src, col, row, self._tile, self._bands)
                if valid.any():
                    job.data, job.valid = normalize(data, valid, self._stats), valid
                    predicted += 1
            batch.append(job)
            if predicted == self._batch_size or len(batch) >= flush_at:
                if not self._put(batch):
                    return
                batch, predicted = [], 0
        if batch:
            self._put(batch)
