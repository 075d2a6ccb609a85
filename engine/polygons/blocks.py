"""The unit of instance work: a block of the raster grid with a halo around it, in; the block's
instance labels (and those of the one-pixel ring just outside it), out.

Seeds + watershed (:mod:`engine.polygons.instances`) look at the pixels around a building to
decide where it ends, so each block is labelled with ``halo`` pixels of context on every side
(invalid beyond the raster). Only the block's own pixels are kept; the labels of the ring just
outside it tell :class:`engine.polygons.seams.SeamJoiner` whether this block sees a pixel on
either side of a seam as one building. A :class:`HaloBlock` depends on nothing else, so it can
be computed anywhere (a cluster worker later).

Two ways to get halo blocks:

- :class:`HaloAssembler` from finished probability blocks given in row-major order (detect:
  256-px blocks in, :data:`INSTANCE_BLOCK` halo blocks out; it holds a strip of the raster);
- :func:`read_halo_block` straight from a raster (vectorize).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from rasterio.io import DatasetReader
from rasterio.windows import Window

from engine.geo.rasters import read_window
from engine.polygons.instances import InstanceParams, label_instances

#: Side of the blocks seeds + watershed label at a time (detect and its cluster strips). Each
#: carries its halo: 512-px blocks with a 61-px halo label 1.5x the raster's pixels, 256-px
#: blocks 2.2x (the watershed took 12% of detect's time on 256-px blocks on a CPU).
INSTANCE_BLOCK = 512
#: Context around a block for the watershed, in metres on the ground ...
HALO_M = 8.0
#: ... and in pixels at least and at most.
HALO_PX = (16, 256)


def halo_pixels(pixel_size_m: float, block: int) -> int:
    """Halo in pixels for ``pixel_size_m`` ground pixels: :data:`HALO_M`, within
    :data:`HALO_PX` and at most one ``block``."""
    want = round(HALO_M / pixel_size_m) if pixel_size_m > 0 else HALO_PX[1]
    return int(min(max(want, HALO_PX[0]), HALO_PX[1], block))


@dataclass(frozen=True)
class HaloBlock:
    """A block of the grid (``window``) and its values with ``halo`` pixels around it.

    ``data`` is (C, h + 2 halo, w + 2 halo) float32, ``valid`` (h + 2 halo, w + 2 halo): False
    beyond the raster and where nothing was predicted.
    """

    window: Window
    halo: int
    data: np.ndarray
    valid: np.ndarray

    def core(self, array: np.ndarray) -> np.ndarray:
        """The block's own pixels of a (…, H, W) padded array."""
        h, w, k = int(self.window.height), int(self.window.width), self.halo
        return array[..., k : k + h, k : k + w]


@dataclass(frozen=True)
class Ring:
    """Labels one pixel outside a block, as that block's labelling sees them."""

    top: np.ndarray
    bottom: np.ndarray
    left: np.ndarray
    right: np.ndarray


@dataclass(frozen=True)
class LabelledBlock:
    """Instance labels of a block's own pixels, its ring, and its building probability."""

    window: Window
    labels: np.ndarray  # int32 (h, w), 0 = not building
    probability: np.ndarray  # float32 (h, w) building probability (for scores)
    ring: Ring


def label_block(
    block: HaloBlock, params: InstanceParams, building: int = 0, separation: int = 1
) -> LabelledBlock:
    """Seeds + watershed on one halo block; the block's labels and its ring."""
    if block.halo < 1:
        raise ValueError("A halo block needs a halo of at least one pixel.")
    labels = label_instances(block.data[building], block.data[separation], block.valid, params)
    h, w, k = int(block.window.height), int(block.window.width), block.halo
    ring = Ring(
        top=labels[k - 1, k : k + w].copy(),
        bottom=labels[k + h, k : k + w].copy(),
        left=labels[k : k + h, k - 1].copy(),
        right=labels[k : k + h, k + w].copy(),
    )
    return LabelledBlock(
        block.window, block.core(labels).copy(), block.core(block.data[building]).copy(), ring
    )


class HaloAssembler:
    """Halo blocks of side ``block`` from the blocks of a :meth:`engine.geo.windows.Grid.blocks`
    grid of side ``incoming`` (default ``block``; ``block`` must be a multiple of it) given in
    row-major order.

    It holds one strip of the raster: the ``halo`` rows above a row of halo blocks, that row,
    and the incoming row below it, whose first ``halo`` rows complete the halo (so ``halo`` is
    at most ``incoming``). Larger halo blocks label fewer pixels twice: with a 61-px halo,
    256-px blocks run the watershed on 2.2x the raster's pixels, 512-px blocks on 1.5x.
    """

    def __init__(
        self, width: int, height: int, block: int, halo: int, incoming: int | None = None
    ) -> None:
        incoming = incoming or block
        if block % incoming:
            raise ValueError(f"Block {block} is not a multiple of the incoming blocks' {incoming}.")
        if not 1 <= halo <= incoming:
            raise ValueError(f"Halo {halo} must be from 1 to the incoming blocks' side {incoming}.")
        self.width, self.height, self.block, self.halo = width, height, block, halo
        self.incoming = incoming
        self._top = 0  # first row of the row of halo blocks being gathered
        self._data: np.ndarray | None = None  # (C, halo + block + incoming, width) from top - halo
        self._valid = np.zeros((halo + block + incoming, width), bool)

    def add(self, window: Window, data: np.ndarray, valid: np.ndarray) -> Iterator[HaloBlock]:
        """Take one block; return the halo blocks that are now complete, each made as it is
        taken (so a row of them never exists at once: ~116 MB over a 16k-wide raster). Take
        them all before the next :meth:`add`."""
        if self._data is None:
            self._data = np.zeros((data.shape[0], *self._valid.shape), np.float32)
        row, col = int(window.row_off) - self._top + self.halo, int(window.col_off)
        rows, cols = slice(row, row + data.shape[1]), slice(col, col + data.shape[2])
        self._data[:, rows, cols], self._valid[rows, cols] = data, valid
        if int(window.col_off + window.width) < self.width:
            return iter(())
        return self._ready(int(window.row_off + window.height))

    def _ready(self, end: int) -> Iterator[HaloBlock]:
        """The rows of halo blocks complete once the incoming rows reach ``end``."""
        while self._top < self.height:
            if end < min(self._top + self.block + self.halo, self.height):
                return  # the row's halo below is not all here yet
            yield from self._emit()

    def _emit(self) -> Iterator[HaloBlock]:
        """The halo blocks of the row at ``_top``, one at a time; then the strip moves down a
        row."""
        assert self._data is not None
        top, h = self._top, min(self.block, self.height - self._top)
        origin = (top - self.halo, 0)
        for col, w in _spans(self.width, self.block):
            yield halo_from(self._data, self._valid, origin, Window(col, top, w, h), self.halo)
        kept = self.halo + self.incoming  # the next row's halo above it and its first rows
        self._data[:, :kept] = self._data[:, self.block : self.block + kept]
        self._valid[:kept] = self._valid[self.block : self.block + kept]
        self._data[:, kept:] = 0.0
        self._valid[kept:] = False
        self._top += self.block


def _spans(size: int, step: int) -> list[tuple[int, int]]:
    """(start, length) of consecutive pieces of ``step`` along ``size`` (the last shorter)."""
    return [(start, min(step, size - start)) for start in range(0, size, step)]


def halo_from(
    data: np.ndarray, valid: np.ndarray, origin: tuple[int, int], window: Window, halo: int
) -> HaloBlock:
    """``window`` with ``halo`` pixels around it, cut from arrays (C, H, W) and (H, W) whose
    top-left pixel is at (``row``, ``col``) = ``origin`` of the grid; what they do not cover
    (beyond the raster) is invalid."""
    row0, col0 = origin
    col, row = int(window.col_off), int(window.row_off)
    h, w = int(window.height), int(window.width)
    top, left = max(row - halo, row0), max(col - halo, col0)
    bottom = min(row + h + halo, row0 + data.shape[1])
    right = min(col + w + halo, col0 + data.shape[2])
    out = np.zeros((data.shape[0], h + 2 * halo, w + 2 * halo), np.float32)
    ok = np.zeros((h + 2 * halo, w + 2 * halo), bool)
    dst = (
        slice(top - row + halo, bottom - row + halo),
        slice(left - col + halo, right - col + halo),
    )
    src = (slice(top - row0, bottom - row0), slice(left - col0, right - col0))
    out[(slice(None), *dst)] = data[(slice(None), *src)]
    ok[dst] = valid[src]
    return HaloBlock(window, halo, out, ok)


def read_halo_block(
    src: DatasetReader, window: Window, halo: int, bands: Sequence[int]
) -> HaloBlock:
    """Read ``window`` of ``bands`` with ``halo`` pixels around it (invalid beyond the raster)."""
    col, row = int(window.col_off), int(window.row_off)
    h, w = int(window.height), int(window.width)
    left, top = max(col - halo, 0), max(row - halo, 0)
    right, bottom = min(col + w + halo, src.width), min(row + h + halo, src.height)
    values, ok = read_window(src, Window(left, top, right - left, bottom - top), bands)
    return halo_from(values, ok, (top, left), window, halo)
