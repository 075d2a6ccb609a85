"""Streaming blend of overlapping window predictions into finished output blocks.

Each window's probabilities are multiplied by :func:`window_weights` and added
to per-block accumulators (weighted sum and weight sum); a block is *finished* once every
window of the plan that overlaps it has been added, and is then released as
``sum / weight-sum`` (so the weights of each pixel sum to one).

Blocks form a regular grid of ``block`` x ``block`` pixels aligned at the grid origin (the
last row and column may be smaller), and are released in row-major order. Memory holds only
the accumulators of blocks not yet released: with windows added row by row, that is the
blocks under one row of windows plus at most one row of blocks waiting for its left
neighbours, i.e. about ``(window + 2 * block) x width`` pixels, whatever the raster's height,
at ``4 x channels + 1`` bytes a pixel (the weight sums are made only when a block finishes).
:attr:`BlockBlender.peak_blocks` reports the most blocks held at once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
from rasterio.windows import Window

from engine.geo.windows import Span, blend_weights

#: Value of output pixels without a prediction (input nodata, outside the extent/AOI).
NODATA = -1.0


@dataclass(frozen=True)
class Block:
    """One finished block: its window on the grid and its (C, h, w) float32 values.

    ``valid`` is False where no window predicted a valid pixel (``data`` holds NODATA there).
    """

    index: int
    window: Window
    data: np.ndarray
    valid: np.ndarray


_Slices = tuple[slice, slice]


class _Accumulator:
    """Weighted sums of one block, and where its windows' weights go (the weight sum is
    only made when the block is finished: 4 bytes a pixel fewer held per open block)."""

    def __init__(self, channels: int, height: int, width: int) -> None:
        self.sums = np.zeros((channels, height, width), dtype=np.float32)
        self.valid = np.zeros((height, width), dtype=bool)
        # (block slices, window slices, the window's weights: shared, cached per shape)
        self.parts: list[tuple[_Slices, _Slices, np.ndarray]] = []


@cache
def window_weights(height: int, width: int, margin: int) -> np.ndarray:
    """:func:`engine.geo.windows.blend_weights` of a ``height`` x ``width`` window; the ramp
    is at most half of a side (a small last window in a row still has a full-weight middle)."""
    m = min(margin, height // 2, width // 2)
    weights = blend_weights(height, m, width=width)
    weights.flags.writeable = False
    return weights


def _axis_counts(spans: Sequence[Span], size: int, block: int) -> np.ndarray:
    """How many windows along one axis overlap each block along that axis."""
    counts = np.zeros(-(-size // block), dtype=np.int64)
    for start, length in spans:
        lo, hi = max(start, 0), min(start + length, size)
        if hi > lo:
            counts[lo // block : (hi - 1) // block + 1] += 1
    return counts


class BlockBlender:
    """Accumulates the windows of a plan (:class:`engine.geo.windows.PredictionPlan`);
    releases finished blocks.

    Args:
        width: grid width in pixels.
        height: grid height in pixels.
        margin: blend margin in pixels (see :func:`window_weights`).
        channels: values per pixel (classes).
        rows: row spans (start, height) of the window plan (windows may start outside the grid).
        columns: column spans (start, width) of the window plan.
        block: side of the output blocks.
    """

    def __init__(
        self,
        width: int,
        height: int,
        margin: int,
        channels: int,
        rows: Sequence[Span],
        columns: Sequence[Span],
        block: int = 256,
    ) -> None:
        self.width, self.height, self.margin, self.block = width, height, margin, block
        self.channels = channels
        self._blocks_x = -(-width // block)
        self._expected = np.outer(
            _axis_counts(rows, height, block), _axis_counts(columns, width, block)
        ).ravel()
        self._seen = np.zeros_like(self._expected)
        self._open: dict[int, _Accumulator] = {}
        self._next = 0
        self.peak_blocks = 0

    @property
    def total_blocks(self) -> int:
        """Blocks in the grid."""
        return int(self._expected.size)

    @property
    def open_blocks(self) -> int:
        """Blocks whose accumulators are held now."""
        return len(self._open)

    @property
    def held_bytes(self) -> int:
        """Bytes of the accumulators held now (``4 x channels + 1`` a pixel of open blocks)."""
        return sum(
            v.nbytes
            for a in self._open.values()
            for v in vars(a).values()
            if isinstance(v, np.ndarray)
        )

    @property
    def complete(self) -> bool:
        """True once every block has been released."""
        return self._next == self.total_blocks

    def block_window(self, index: int) -> Window:
        """The window of block ``index`` (row-major) on the grid."""
        by, bx = divmod(index, self._blocks_x)
        col, row = bx * self.block, by * self.block
        return Window(
            col, row, min(self.block, self.width - col), min(self.block, self.height - row)
        )

    def add(
        self, window: Window, probs: np.ndarray | None, valid: np.ndarray | None
    ) -> Iterator[Block]:
        """Add the plan's ``window``; return the blocks this finished, in order.

        ``probs`` (C, h, w) and ``valid`` (h, w) may be None for a window that was not
        predicted (all nodata, or outside the work area): it still counts as done. The
        window is added at once; the finished blocks are made one at a time as the returned
        iterator is read (a whole row of them would otherwise exist at once), so read it
        before the next ``add``.
        """
        col, row = int(window.col_off), int(window.row_off)
        c0, r0 = max(col, 0), max(row, 0)
        c1 = min(col + int(window.width), self.width)
        r1 = min(row + int(window.height), self.height)
        b = self.block
        for by in range(r0 // b, (r1 - 1) // b + 1):
            for bx in range(c0 // b, (c1 - 1) // b + 1):
                index = by * self._blocks_x + bx
                if probs is not None and valid is not None:
                    y0, y1 = max(r0, by * b), min(r1, (by + 1) * b)
                    x0, x1 = max(c0, bx * b), min(c1, (bx + 1) * b)
                    self._accumulate(index, probs, valid, (y0, y1, x0, x1), (row, col))
                self._seen[index] += 1
        self.peak_blocks = max(self.peak_blocks, len(self._open))
        return self._release()

    def _accumulate(
        self,
        index: int,
        probs: np.ndarray,
        valid: np.ndarray,
        box: tuple[int, int, int, int],
        origin: tuple[int, int],
    ) -> None:
        acc = self._open.get(index)
        if acc is None:
            window = self.block_window(index)
            acc = _Accumulator(self.channels, int(window.height), int(window.width))
            self._open[index] = acc
        (y0, y1, x0, x1), (row, col) = box, origin
        by0, bx0 = (index // self._blocks_x) * self.block, (index % self._blocks_x) * self.block
        out = (slice(y0 - by0, y1 - by0), slice(x0 - bx0, x1 - bx0))
        src = (slice(y0 - row, y1 - row), slice(x0 - col, x1 - col))
        weights = window_weights(*valid.shape, self.margin)
        acc.sums[(slice(None), *out)] += probs[(slice(None), *src)] * weights[src]
        acc.valid[out] |= valid[src]
        acc.parts.append((out, src, weights))

    def _release(self) -> Iterator[Block]:
        while self._next < self.total_blocks and (
            self._seen[self._next] >= self._expected[self._next]
        ):
            self._next += 1
            yield self._finish(self._next - 1)

    def _finish(self, index: int) -> Block:
        window = self.block_window(index)
        acc = self._open.pop(index, None)
        if acc is None:
            shape = (self.channels, int(window.height), int(window.width))
            return Block(
                index, window, np.full(shape, NODATA, np.float32), np.zeros(shape[1:], bool)
            )
        weights = np.zeros(acc.valid.shape, np.float32)
        for out, src, part in acc.parts:
            weights[out] += part[src]
        ok = acc.valid & (weights > 0)
        data = acc.sums  # finished in place: no second array per block
        np.divide(data, weights, out=data, where=ok[None])
        np.clip(data, 0.0, 1.0, out=data, where=ok[None])
        data[:, ~ok] = NODATA
        return Block(index, window, data, ok)
