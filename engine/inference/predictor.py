"""Tiled, blended, streaming model inference over one raster grid.

:class:`TiledPredictor` plans ``window`` windows every ``window - 2 * margin`` pixels over the
grid from :func:`window_pad` before its first pixel (the margin, rounded up to the model's
stride), the last of a row or column only as large as needed (full on a GPU, ``uniform``)
(:class:`engine.geo.windows.PredictionPlan`; window, batch and streams chosen for the device
by :mod:`engine.inference.sizing`), reads them with reflect padding in a background thread
(:mod:`engine.inference.tilereader`), predicts them in batches (:mod:`engine.inference.tta`),
``streams`` batches at once in model threads, and blends them into finished blocks
(:mod:`engine.inference.blend`), which it yields in row-major order as soon as they are final.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from affine import Affine
from rasterio.windows import Window
from shapely.geometry.base import BaseGeometry

from engine.errors import ConfigError, ModelFileError
from engine.events import Progress, check_canceled
from engine.geo.normalize import BandStats
from engine.geo.windows import PredictionPlan, Span, round_up
from engine.geo.workarea import windows_in_area
from engine.heap import HeapKeeper
from engine.inference.blend import Block, BlockBlender
from engine.inference.network import Network
from engine.inference.tilereader import BatchReader, SourceOpener, TileJob

#: A batch's probabilities (N, K, H, W), None when it had no window to predict.
_Predicted = np.ndarray | None


def default_margin(tile: int, align: int = 1) -> int:
    """The overlap margin used unless one is given: about an eighth of the training tile, a
    multiple of ``align`` (the model's output stride) when the tile allows.

    Each window gives up ``margin`` pixels on every side to the blend: 512-px windows with a
    32-px margin predict 1.34x the raster's pixels, with 16 px 1.14x. The blended seams stay
    invisible with either (docs/BENCHMARKS.md, ``bench/seams.py``) while tiles side by side
    (0) show seams; on the Banepa benchmark 16 px scored a little lower than 32 with the same
    weights (building F1 -0.009 and pixel IoU -0.002 on average over five models), so 32 stays
    the default and 16 is the faster choice (``--margin 16``).
    """
    margin = tile // 8
    if align > 1 and tile % align == 0:
        aligned = max(align, margin // align * align)
        if 2 * aligned < tile:
            return aligned
    return margin


def window_pad(margin: int, align: int, window: int) -> int:
    """How far before the grid's first pixel the first window starts: ``margin`` rounded up to
    a multiple of ``align`` where the window's core still reaches into the grid (else
    ``margin``). Windows then start on the stride's grid whenever the step between them is a
    multiple of it, as training windows do (a grid from pixel (0, 0)): a U-Net is
    shift-equivariant only by multiples of its stride, and a closely fitted model predicts
    markedly worse off that grid (single-image fit: pixel F1 0.76 off the grid vs 0.95 on it
    for a stride-32 model; docs/BENCHMARKS.md)."""
    aligned = round_up(margin, align) if margin else 0
    return aligned if aligned + margin < window else margin


def check_tiling(tile: int, margin: int, batch_size: int = 1) -> None:
    """Raise ConfigError unless ``tile``, ``margin`` and ``batch_size`` make a valid plan."""
    if tile < 8:
        raise ConfigError(f"Tile size {tile} is too small; the model needs at least 8 pixels.")
    if margin < 0 or 2 * margin >= tile:
        raise ConfigError(
            f"Margin {margin} does not fit tile size {tile}: the stride tile - 2 x margin must be"
            f" at least 1; use a margin from 0 to {(tile - 1) // 2}"
            f" (default {default_margin(tile)})."
        )
    if batch_size < 1:
        raise ConfigError(f"Batch size must be at least 1, got {batch_size}.")


def _spans_in(spans: Sequence[Span], first: int, end: int) -> list[Span]:
    """The ``spans`` that meet pixels ``first`` to ``end`` of their axis, from ``first``."""
    return [(start - first, n) for start, n in spans if start < end and start + n > first]


@dataclass
class TiledPredictor:
    """Applies ``network`` to a grid window by window; counts what it did.

    ``window`` is the prediction window's side (a multiple of ``align``, the model's output
    stride; the model's training tile needs not be it), ``margin`` the blend margin. With
    ``uniform`` every batch the model sees has one shape, ``batch_size`` windows of ``window``
    pixels (:class:`engine.geo.windows.PredictionPlan`; short batches are filled with empty
    windows): a GPU's choice, which builds its convolution plans once per shape.

    Attributes after :meth:`run`: ``windows_total``, ``windows_predicted``,
    ``pixels_predicted`` (window pixels the model saw, overlap included), ``peak_blocks``
    (the most block accumulators held at once), ``total_blocks`` and ``heap_trims`` (times
    freed heap memory went back to the OS: checked after every batch, see
    :class:`engine.heap.HeapKeeper`; without it the allocator's free pages pile up with the
    raster's area, about 80 MB more peak memory over an 8k x 8k raster).
    """

    network: Network
    window: int
    margin: int
    channels: int
    bands: Sequence[int]
    stats: BandStats
    batch_size: int = 1
    tta: bool = False
    block: int = 256
    align: int = 1
    streams: int = 1
    uniform: bool = False
    windows_total: int = 0
    windows_predicted: int = 0
    pixels_predicted: int = 0
    peak_blocks: int = 0
    total_blocks: int = 0
    heap_trims: int = 0
    _origin: tuple[int, int] = (0, 0)

    def run(
        self,
        open_source: SourceOpener,
        width: int,
        height: int,
        transform: Affine,
        area: BaseGeometry | None,
        progress: Progress,
        region: Window | None = None,
    ) -> Iterator[Block]:
        """Yield the finished blocks of the ``width`` x ``height`` grid, in row-major order.

        ``open_source`` opens the dataset on that grid (in the reader thread). Windows not
        meeting ``area`` are not predicted (their pixels are left to other windows, or
        nodata). Progress (0-100) and cancel are checked once per batch.

        ``region`` (a window of the grid) limits the work to its pixels: the windows of the
        whole grid's plan that meet it are predicted and blended, so every pixel there gets
        the value the whole grid would give it (the work window of an extent/AOI, a strip of a
        distributed job); block windows are then relative to the region's first pixel, and
        memory follows the region's width.
        """
        check_tiling(self.window, self.margin, self.batch_size)
        plan = PredictionPlan(
            width,
            height,
            self.window,
            self.margin,
            self.align,
            window_pad(self.margin, self.align, self.window),
            self.uniform,
        )
        region = region or Window(0, 0, width, height)
        col0, row0 = int(region.col_off), int(region.row_off)
        row_spans = _spans_in(plan.rows, row0, row0 + int(region.height))
        col_spans = _spans_in(plan.columns, col0, col0 + int(region.width))
        windows = [Window(c + col0, r + row0, nc, n) for r, n in row_spans for c, nc in col_spans]
        wanted = windows_in_area(area, windows, transform)
        blender = BlockBlender(
            int(region.width),
            int(region.height),
            self.margin,
            self.channels,
            row_spans,
            col_spans,
            self.block,
        )
        self._origin = (col0, row0)
        self.windows_total, self.windows_predicted = len(windows), 0
        self.pixels_predicted = 0
        self.total_blocks = blender.total_blocks
        done = 0
        keeper = HeapKeeper()
        reader = BatchReader(open_source, windows, wanted, self.bands, self.stats, self.batch_size)
        streams = max(1, self.streams)
        with reader, self.network.sharing(streams):
            for batch, probs in self._predicted(reader, streams, progress):
                yield from self._blend(batch, probs, blender)
                done += len(batch)
                self.peak_blocks = blender.peak_blocks
                keeper.check()
                self.heap_trims = keeper.trims
                progress.set_progress(100.0 * done / len(windows))
        check_canceled(progress)
        if not blender.complete:  # pragma: no cover - guards the block bookkeeping
            raise RuntimeError("Internal error: some output blocks were never finished.")

    def _predicted(
        self, batches: Iterable[list[TileJob]], streams: int, progress: Progress
    ) -> Iterator[tuple[list[TileJob], _Predicted]]:
        """``batches`` with their probabilities, in order, predicted by ``streams`` model
        threads at once (each a batch; see :func:`engine.inference.sizing.prediction_streams`).
        """
        pending: deque[tuple[list[TileJob], Future[_Predicted]]] = deque()
        with ThreadPoolExecutor(streams, thread_name_prefix="footprint-model") as pool:
            try:
                for batch in batches:
                    check_canceled(progress)
                    pending.append((batch, pool.submit(self._forward, batch)))
                    if len(pending) > streams:  # one more queued, so no stream waits
                        batch, future = pending.popleft()
                        yield batch, future.result()
                while pending:
                    batch, future = pending.popleft()
                    yield batch, future.result()
            finally:
                for _, future in pending:
                    future.cancel()

    def _forward(self, batch: list[TileJob]) -> _Predicted:
        """The model's probabilities for the windows of ``batch`` that have data (a model
        thread)."""
        stack = [job.data for job in batch if job.data is not None]
        if not stack:
            return None
        count = len(stack)
        if self.uniform and count < self.batch_size:  # the batch's shape stays the same
            stack += [np.zeros_like(stack[0])] * (self.batch_size - count)
        x = np.stack(stack)
        probs = self.network.probabilities(x, self.tta)[:count]
        self._check_output(probs, x.shape[2:])
        return probs

    def _blend(
        self, batch: list[TileJob], probs: _Predicted, blender: BlockBlender
    ) -> Iterator[Block]:
        index = 0
        for job in batch:
            if job.data is None or probs is None:
                yield from blender.add(self._local(job.window), None, None)
                continue
            self.windows_predicted += 1
            self.pixels_predicted += job.shape[0] * job.shape[1]
            yield from blender.add(self._local(job.window), probs[index], job.valid)
            index += 1

    def _local(self, window: Window) -> Window:
        """``window`` on the blender's grid (which starts at the region's first pixel)."""
        col0, row0 = self._origin
        return Window(window.col_off - col0, window.row_off - row0, window.width, window.height)

    def _check_output(self, probs: np.ndarray, shape: tuple[int, ...]) -> None:
        expected = (self.channels, *shape)
        if probs.shape[1:] != expected:
            raise ModelFileError(
                f"The model returned {probs.shape[1:]} per window, expected {expected} (classes,"
                f" height, width); the model file's classes do not match its network, or the"
                f" network does not keep the input's size."
            )
