"""The pixel grid of a raster and the windows over it: disjoint blocks (reading, writing and
polygonizing in pieces), overlapping window plans and the weights that blend overlapping
windows.

Two plans cover a grid exactly (every pixel lies in at least one window):

- :class:`WindowPlan` (training): windows of one size, the last one in a row or column
  shifted back to the edge;
- :class:`PredictionPlan` (inference): windows of one size every ``window - 2 x margin``
  pixels over the grid padded by ``pad``, the last one in a row or column only as large as
  needed (rounded up to the model's output stride) instead of shifted back, so the overlap
  costs ``2 x margin`` pixels per window along each axis and nothing more (on a GPU every
  window is full, ``uniform``: one input shape for the model).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from affine import Affine
from rasterio.windows import Window, bounds

from engine.errors import ConfigError


@dataclass(frozen=True)
class Grid:
    """A grid of ``width`` x ``height`` pixels placed by ``transform`` (north-up or south-up)."""

    width: int
    height: int
    transform: Affine

    def blocks(self, size: int) -> Iterator[Window]:
        """Disjoint ``size`` windows covering the grid, row by row; they start on multiples of
        ``size``, and the last row and column are only as large as what is left."""
        if size < 1:
            raise ConfigError(f"Block size must be positive, got {size}.")
        for row in range(0, self.height, size):
            for col in range(0, self.width, size):
                yield Window(col, row, min(size, self.width - col), min(size, self.height - row))


@dataclass(frozen=True)
class WindowPlan:
    """Windows of ``tile`` pixels every ``stride`` pixels over a ``width`` x ``height`` grid.

    ``pad`` extends the grid on every side (windows may then start at negative offsets: the
    reader fills the outside, e.g. by reflection).
    """

    width: int
    height: int
    tile: int
    stride: int
    pad: int = 0

    def __post_init__(self) -> None:
        if self.width < 1 or self.height < 1:
            raise ConfigError(f"Grid {self.width}x{self.height} is empty.")
        if self.tile < 1:
            raise ConfigError(f"Tile size must be positive, got {self.tile}.")
        if not 1 <= self.stride <= self.tile:
            raise ConfigError(
                f"Stride must be between 1 and the tile size {self.tile}, got {self.stride}."
            )
        if self.pad < 0:
            raise ConfigError(f"Padding must not be negative, got {self.pad}.")

    def offsets(self, size: int) -> list[int]:
        """Start offsets along one axis of ``size`` pixels."""
        lo, hi = -self.pad, size + self.pad
        if hi - lo <= self.tile:
            return [lo]
        starts = list(range(lo, hi - self.tile, self.stride))
        starts.append(hi - self.tile)
        return sorted(set(starts))

    @property
    def columns(self) -> list[int]:
        """Column offsets."""
        return self.offsets(self.width)

    @property
    def rows(self) -> list[int]:
        """Row offsets."""
        return self.offsets(self.height)

    def __len__(self) -> int:
        return len(self.columns) * len(self.rows)

    def __iter__(self) -> Iterator[Window]:
        """Windows row by row. A window is at most ``tile`` square; it is smaller only
        when the padded grid itself is smaller than a tile."""
        tw = min(self.tile, self.width + 2 * self.pad)
        th = min(self.tile, self.height + 2 * self.pad)
        for row in self.rows:
            for col in self.columns:
                yield Window(col, row, tw, th)


#: A window along one axis: (start, length) in pixels; the start may be negative.
Span = tuple[int, int]


def round_up(value: int, multiple: int) -> int:
    """``value`` rounded up to a multiple of ``multiple``."""
    return -(-value // multiple) * multiple


@dataclass(frozen=True)
class PredictionPlan:
    """The model's windows over a ``width`` x ``height`` grid (see the module doc).

    Windows are ``window`` pixels (a multiple of ``align``) and start every
    ``window - 2 x margin`` pixels from ``-pad``; the last along an axis reaches ``size +
    margin`` (so its core reaches the grid's end) with the fewest pixels that are a multiple of
    ``align`` (it may reach a little further: the reader mirrors the raster there). Windows
    start on multiples of ``align`` from ``-pad`` when the stride is one.

    With ``uniform`` every window is ``window`` pixels, the last ones reaching further into the
    mirrored raster: one shape for every batch (a GPU builds its convolution plans once per
    input shape and thread, ~2 s each on an H200, far more than it needs for the extra pixels).
    """

    width: int
    height: int
    window: int
    margin: int
    align: int = 1
    pad: int = 0
    uniform: bool = False

    def __post_init__(self) -> None:
        if self.width < 1 or self.height < 1:
            raise ConfigError(f"Grid {self.width}x{self.height} is empty.")
        if self.align < 1 or self.window < self.align or self.window % self.align:
            fit = round_up(max(self.window, 1), self.align)
            raise ConfigError(
                f"Prediction window {self.window} must be a positive multiple of the model's"
                f" output stride {self.align}; use e.g. {fit}."
            )
        if self.margin < 0 or 2 * self.margin >= self.window:
            raise ConfigError(
                f"Margin {self.margin} does not fit prediction window {self.window}: use a margin"
                f" from 0 to {(self.window - 1) // 2}."
            )
        if self.pad < 0:
            raise ConfigError(f"Padding must not be negative, got {self.pad}.")

    @property
    def stride(self) -> int:
        """Pixels between the starts of neighbouring windows."""
        return self.window - 2 * self.margin

    def spans(self, size: int) -> list[Span]:
        """(start, length) of the windows along an axis of ``size`` pixels."""
        end, start = size + self.margin, -self.pad
        spans = []
        while start + self.window < end:
            spans.append((start, self.window))
            start += self.stride
        last = self.window if self.uniform else round_up(end - start, self.align)
        spans.append((start, min(self.window, last)))
        return spans

    @property
    def columns(self) -> list[Span]:
        """Column spans."""
        return self.spans(self.width)

    @property
    def rows(self) -> list[Span]:
        """Row spans."""
        return self.spans(self.height)

    def __len__(self) -> int:
        return len(self.columns) * len(self.rows)

    def __iter__(self) -> Iterator[Window]:
        """Windows row by row."""
        columns = self.columns
        for row, height in self.rows:
            for col, width in columns:
                yield Window(col, row, width, height)

    @property
    def pixels(self) -> int:
        """Pixels the model sees over the whole plan (overlap included)."""
        return sum(n for _, n in self.rows) * sum(n for _, n in self.columns)


def _ramp(size: int, margin: int, floor: float) -> np.ndarray:
    ramp = np.ones(size, dtype=np.float64)
    if margin > 0:
        x = (np.arange(margin) + 0.5) / margin
        edge = np.sin(x * np.pi / 2) ** 2
        ramp[:margin] = edge
        ramp[size - margin :] = edge[::-1]
    return np.maximum(ramp, floor)


def blend_weights(
    tile: int, margin: int, floor: float = 1e-3, width: int | None = None
) -> np.ndarray:
    """Weights (tile x width, float32; width defaults to tile) that fall smoothly to
    ``floor`` over ``margin`` pixels.

    Each side ramps with a squared sine from ``floor`` at the edge to 1 at ``margin`` pixels
    in, so overlapping predictions blend without a seam. Normalising by the sum of the weights
    of every window covering a pixel makes the blend weights sum to one.
    """
    width = tile if width is None else width
    if margin < 0 or 2 * margin > min(tile, width):
        raise ConfigError(
            f"Margin must be between 0 and half the tile ({min(tile, width) // 2}), got {margin}."
        )
    return np.outer(_ramp(tile, margin, floor), _ramp(width, margin, floor)).astype(np.float32)


def window_bounds(window: Window, transform: Affine) -> tuple[float, float, float, float]:
    """(xmin, ymin, xmax, ymax) of ``window`` on ``transform``'s grid, whatever its
    orientation (rasterio's ``bounds`` gives bottom > top on a south-up grid)."""
    x0, y0, x1, y1 = bounds(window, transform)
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


def clip_to_grid(window: Window, width: int, height: int) -> Window:
    """The part of ``window`` inside a ``width`` x ``height`` grid (may be empty)."""
    col0 = max(0, int(window.col_off))
    row0 = max(0, int(window.row_off))
    col1 = min(width, int(window.col_off + window.width))
    row1 = min(height, int(window.row_off + window.height))
    return Window(col0, row0, max(0, col1 - col0), max(0, row1 - row0))
