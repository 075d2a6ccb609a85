"""Probability on the model's grid back onto the output grid, as the model finishes its rows.

When the model runs at its own resolution (:mod:`engine.inference.job`), its probability
blocks arrive in row-major order on its grid (same CRS as the raster, another pixel size).
:class:`BackResampler` resamples each output block (bilinear, with GDAL's warper, as a
WarpedVRT of the whole model-grid probability would) as soon as the model rows it reads are
final, so what follows (the buildings stage) runs beside the model instead of after it, and
nothing is written to disk. It holds the model rows one row of output blocks reads, whole
rows of model blocks, across the model window's width (:attr:`BackResampler.held_rows`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.warp import reproject
from rasterio.windows import Window
from rasterio.windows import bounds as window_bounds

from engine.geo.windows import Grid
from engine.inference.blend import NODATA, Block


def kernel_reach(out: Grid, model: Grid) -> int:
    """Model pixels that bilinear resampling onto ``out`` reads beyond an output window's
    footprint (wider where the output's pixels are larger than the model's)."""
    return math.ceil(2 * max(1.0, abs(float(out.transform.a) / float(model.transform.a)))) + 1


def footprint(window: Window, out: Grid, model: Grid) -> Window:
    """The part of ``model`` that resampling ``window`` of ``out`` reads: the window's bounds
    on ``model``, grown by :func:`kernel_reach`, within ``model``."""
    xmin, ymin, xmax, ymax = window_bounds(window, out.transform)
    corners = [~model.transform * (x, y) for x in (xmin, xmax) for y in (ymin, ymax)]
    cols, rows = [c for c, _ in corners], [r for _, r in corners]
    grow = kernel_reach(out, model)
    col0, row0 = max(0, math.floor(min(cols)) - grow), max(0, math.floor(min(rows)) - grow)
    col1 = min(model.width, math.ceil(max(cols)) + grow)
    row1 = min(model.height, math.ceil(max(rows)) + grow)
    return Window(col0, row0, max(1, col1 - col0), max(1, row1 - row0))


class BackResampler:
    """Resamples ``model`` (the predicted part of the model's grid, whose blocks are
    ``block`` px, row-major) onto ``out`` in blocks of ``block`` px, in row-major order."""

    def __init__(self, model: Grid, out: Grid, crs: CRS, block: int) -> None:
        self.model, self.out, self.crs, self.block = model, out, crs, block
        self._rows = [
            footprint(Window(0, row, out.width, min(block, out.height - row)), out, model)
            for row in range(0, out.height, block)
        ]
        #: Most model rows held at once: what a row of output blocks reads, from the start of
        #: the model block row it starts in to the end of the one it ends in.
        self.held_rows = max(int(w.height) for w in self._rows) + 2 * block
        self.peak_rows = 0  # the most held during the last run (for tests)

    def run(self, blocks: Iterable[Block]) -> Iterator[tuple[Window, np.ndarray]]:
        """The output blocks (window on ``out``, (C, h, w) float32 with NODATA where no valid
        model pixel reaches) resampled from the model-grid ``blocks`` as they complete rows."""
        strips: list[tuple[int, np.ndarray]] = []  # (first row, C x rows x width), complete
        strip: np.ndarray | None = None
        done = 0  # output block rows yielded
        for block in blocks:
            w = block.window
            col, row, width = int(w.col_off), int(w.row_off), int(w.width)
            if col == 0:
                shape = (block.data.shape[0], int(w.height), self.model.width)
                strip = np.empty(shape, np.float32)
            assert strip is not None, "model blocks must come in row-major order"
            strip[:, :, col : col + width] = block.data
            if col + width < self.model.width:
                continue
            strips.append((row, strip))
            self.peak_rows = max(self.peak_rows, sum(s.shape[1] for _, s in strips))
            ready = row + strip.shape[1]
            while done < len(self._rows) and (
                ready == self.model.height or _end(self._rows[done]) <= ready
            ):
                yield from self._row_of_blocks(done, strips)
                done += 1
                if done < len(self._rows):
                    start = int(self._rows[done].row_off)
                    strips = [(r, s) for r, s in strips if r + s.shape[1] > start]

    def _row_of_blocks(
        self, index: int, strips: list[tuple[int, np.ndarray]]
    ) -> Iterator[tuple[Window, np.ndarray]]:
        """The output blocks of block row ``index``, resampled from the held ``strips``."""
        row = index * self.block
        height = min(self.block, self.out.height - row)
        for col in range(0, self.out.width, self.block):
            window = Window(col, row, min(self.block, self.out.width - col), height)
            yield window, self._resampled(window, strips)

    def _resampled(self, window: Window, strips: list[tuple[int, np.ndarray]]) -> np.ndarray:
        src = footprint(window, self.out, self.model)
        r0, r1 = int(src.row_off), _end(src)
        c0, c1 = int(src.col_off), int(src.col_off + src.width)
        parts = [
            s[:, max(r0, top) - top : min(r1, top + s.shape[1]) - top, c0:c1]
            for top, s in strips
            if top < r1 and top + s.shape[1] > r0
        ]
        source = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
        data = np.empty((source.shape[0], int(window.height), int(window.width)), np.float32)
        reproject(
            np.ascontiguousarray(source),
            data,
            src_transform=self.model.transform * Affine.translation(c0, r0),
            src_crs=self.crs,
            src_nodata=NODATA,
            dst_transform=self.out.transform
            * Affine.translation(int(window.col_off), int(window.row_off)),
            dst_crs=self.crs,
            dst_nodata=NODATA,
            resampling=Resampling.bilinear,
        )
        return data


def _end(window: Window) -> int:
    return int(window.row_off + window.height)
