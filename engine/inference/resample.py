"""Probability on the model's grid back onto the output grid, as the model finishes its rows.

When the model runs at its own resolution (:mod:`engine.inference.job`), its probability
blocks arrive in row-major order on its grid (same CRS and extent as the raster, another
pixel size: the grids differ by a scale along each axis). :class:`BackResampler` resamples
each row of output blocks as soon as the model rows it reads are final, so the buildings
stage runs beside the model instead of after it, and nothing is written to disk. The values
are GDAL's bilinear warp (what a WarpedVRT of the whole model-grid probability gives, to
float rounding; :func:`bilinear`), computed as separable sparse products, about three times
faster than the warper. It holds the model rows one row of output blocks reads, whole rows
of model blocks, across the model window's width (:attr:`BackResampler.held_rows`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
from rasterio.windows import Window
from rasterio.windows import bounds as window_bounds
from scipy import sparse

from engine.geo.windows import Grid
from engine.inference.blend import NODATA, Block


def kernel_reach(out: Grid, model: Grid) -> int:
    """Model pixels that bilinear resampling onto ``out`` reads beyond an output window's
    footprint (wider where the output's pixels are larger than the model's)."""
    scale = ~model.transform * out.transform
    return math.ceil(2 * max(1.0, abs(float(scale.a)), abs(float(scale.e)))) + 1


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

    def __init__(self, model: Grid, out: Grid, block: int) -> None:
        self.model, self.out, self.block = model, out, block
        self._rows = [
            footprint(Window(0, row, out.width, min(block, out.height - row)), out, model)
            for row in range(0, out.height, block)
        ]
        #: Output pixel (column, row) to model pixel: a scale and shift along each axis.
        self._to_model = ~model.transform * out.transform
        if abs(self._to_model.b) > 1e-9 or abs(self._to_model.d) > 1e-9:
            raise ValueError("The model's grid must be the output grid scaled along its axes.")
        m = self._to_model
        self._columns = AxisWeights.of(out.width, m.a, m.c, model.width)
        #: Most model rows held at once (in rows of probability, see
        #: :func:`engine.inference.sizing.row_bytes`): the model block rows a row of output
        #: blocks reads, from the start of the one it starts in to the end of the one it ends
        #: in, and the copy of the rows it reads with :func:`bilinear`'s work arrays on them
        #: (less than three more copies).
        self.held_rows = 4 * max(int(w.height) for w in self._rows) + 2 * block
        #: Output rows held at once (same unit): the row of output blocks and
        #: :func:`bilinear`'s work arrays on it.
        self.held_out_rows = 5 * block
        self.peak_rows = 0  # the most held during the last run (for tests)

    def run(self, blocks: Iterable[Block]) -> Iterator[tuple[Window, np.ndarray]]:
        """The output blocks (window on ``out``, (C, h, w) float32, NODATA where :func:`bilinear`
        finds no value) resampled from the model-grid ``blocks`` as they complete rows."""
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
        if done < len(self._rows):  # pragma: no cover - guards the block bookkeeping
            raise RuntimeError("Internal error: the model's blocks ended before the grid did.")

    def _row_of_blocks(
        self, index: int, strips: list[tuple[int, np.ndarray]]
    ) -> Iterator[tuple[Window, np.ndarray]]:
        """The output blocks of block row ``index``, resampled from the held ``strips``."""
        src = self._rows[index]
        r0, r1 = int(src.row_off), _end(src)
        parts = [
            s[:, max(r0, top) - top : min(r1, top + s.shape[1]) - top]
            for top, s in strips
            if top < r1 and top + s.shape[1] > r0
        ]
        source = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
        row = index * self.block
        height = min(self.block, self.out.height - row)
        m = self._to_model
        rows = AxisWeights.of(height, m.e, m.f + row * m.e - r0, r1 - r0)
        values = bilinear(source, rows, self._columns)
        for col in range(0, self.out.width, self.block):
            width = min(self.block, self.out.width - col)
            yield Window(col, row, width, height), values[:, :, col : col + width].copy()


@dataclass(frozen=True)
class AxisWeights:
    """Bilinear weights of output pixels over source pixels along one axis (a sparse
    ``(output, source)`` matrix), and the source pixel under each output pixel's centre."""

    matrix: sparse.csr_matrix
    centre: np.ndarray

    @classmethod
    def of(cls, size: int, scale: float, offset: float, count: int) -> AxisWeights:
        """The weights of ``size`` output pixels over ``count`` source pixels, output pixel
        ``i``'s centre lying at source pixel coordinate ``(i + 0.5) * scale + offset``. GDAL's
        bilinear kernel (its warper's): a triangle one source pixel wide each side, widened to
        one output pixel where the output's pixels are larger (``scale`` > 1: downsampling;
        a scale within 0.05 of a whole number is taken as that number, as GDAL does)."""
        centres = (np.arange(size) + 0.5) * scale + offset
        # A centre on a source pixel's edge (ratios such as 3/2) is taken as exactly there:
        # offsets composed from other sub-grids (a Dask strip's) differ in the last bits, and
        # the source pixel under the centre decides nodata.
        edge = np.rint(centres)
        centres = np.where(np.abs(centres - edge) < 1e-6, edge, centres)
        width = abs(scale)
        if abs(width - round(width)) < 0.05:  # GDAL snaps a near-whole scale to it
            width = float(round(width))
        width = max(1.0, width)
        taps = math.ceil(2 * width) + 1
        first = np.floor(centres - 0.5 - width).astype(np.int64) + 1
        index = first[:, None] + np.arange(taps)[None, :]
        weights = 1.0 - np.abs((index + 0.5 - centres[:, None]) / width)
        weights[(weights <= 0) | (index < 0) | (index >= count)] = 0.0
        rows = np.repeat(np.arange(size), taps)
        matrix = sparse.csr_matrix(
            (weights.ravel().astype(np.float32), (rows, np.clip(index, 0, count - 1).ravel())),
            shape=(size, count),
        )
        centre = np.clip(np.floor(centres).astype(np.int64), 0, count - 1)
        return cls(matrix, centre)


def bilinear(source: np.ndarray, rows: AxisWeights, columns: AxisWeights) -> np.ndarray:
    """``source`` (C, h, w; NODATA where invalid in every band) resampled bilinearly as GDAL's
    warper does: the weights of valid source pixels only, renormalised, and NODATA where the
    source pixel under an output pixel's centre is invalid (or no valid pixel has weight)."""
    valid = source[0] != NODATA
    if not valid.any():  # outside the extent/AOI, or all nodata
        return np.full((source.shape[0], rows.centre.size, columns.centre.size), NODATA, np.float32)
    whole = bool(valid.all())
    if whole:  # most rows: the weights' sums are those of the kernels
        weight = np.outer(rows.matrix.sum(axis=1), columns.matrix.sum(axis=1))
        ok = weight > 1e-6
    else:
        weight = _separable(valid.astype(np.float32), rows, columns)
        ok = (weight > 1e-6) & valid[np.ix_(rows.centre, columns.centre)]
    scale = np.divide(1.0, weight, out=np.zeros(weight.shape, np.float32), where=ok)
    out = np.empty((source.shape[0], *weight.shape), np.float32)
    for band in range(source.shape[0]):
        values = source[band] if whole else np.where(valid, source[band], 0.0)
        out[band] = np.where(ok, _separable(values, rows, columns) * scale, NODATA)
    return out


def _separable(values: np.ndarray, rows: AxisWeights, columns: AxisWeights) -> np.ndarray:
    """``rows.matrix @ values @ columns.matrix.T`` (sparse products, float32)."""
    down = rows.matrix @ values.astype(np.float32, copy=False)
    return np.asarray(columns.matrix @ down.T).T


def _end(window: Window) -> int:
    return int(window.row_off + window.height)
