"""The pixel grid of a raster and the windows over it: disjoint blocks (reading, writing and
polygonizing in pieces), overlapping window plans (the model's windows) and the weights that
blend overlapping windows.

A plan covers the raster exactly: every pixel lies in at least one window, and windows keep
inside the (optionally padded) grid, the last one in a row or column shifted back to the edge.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from affine import Affine
from rasterio.windows import Window

from engine.errors import ConfigError


@dataclass(frozen=True)
class Grid:
    """A north-up grid of ``width`` x ``height`` pixels placed by ``transform``."""

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


def blend_weights(tile: int, margin: int, floor: float = 1e-3) -> np.ndarray:
    """Weights (tile x tile, float32) that fall smoothly to ``floor`` over ``margin`` pixels.

    Each side ramps with a squared sine from ``floor`` at the edge to 1 at ``margin`` pixels
    in, so overlapping predictions blend without a seam. Normalising by the sum of the weights
    of every window covering a pixel makes the blend weights sum to one.
    """
    if margin < 0 or 2 * margin > tile:
        raise ConfigError(
            f"Margin must be between 0 and half the tile ({tile // 2}), got {margin}."
        )
    ramp = np.ones(tile, dtype=np.float64)
    if margin > 0:
        x = (np.arange(margin) + 0.5) / margin
        edge = np.sin(x * np.pi / 2) ** 2
        ramp[:margin] = edge
        ramp[tile - margin :] = edge[::-1]
    ramp = np.maximum(ramp, floor)
    return np.outer(ramp, ramp).astype(np.float32)


def clip_to_grid(window: Window, width: int, height: int) -> Window:
    """The part of ``window`` inside a ``width`` x ``height`` grid (may be empty)."""
    col0 = max(0, int(window.col_off))
    row0 = max(0, int(window.row_off))
    col1 = min(width, int(window.col_off + window.width))
    row1 = min(height, int(window.row_off + window.height))
    return Window(col0, row0, max(0, col1 - col0), max(0, row1 - row0))
