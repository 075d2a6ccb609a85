"""Which windows to train and validate on: the spatial split, nodata and empty-window filters.

Each raster is cut into a grid of *cells* one tile square, aligned at pixel (0, 0).
Validation takes whole cells: either the cells that overlap validation polygons, or seeded
blocks of several cells (a share of the area). Validation windows are the validation cells
themselves (no overlap between them); training windows follow a :class:`WindowPlan` with the
configured stride and are dropped when they overlap any validation cell, so no training pixel
is ever a validation pixel.

:func:`scan_windows` then reads each candidate once: it drops windows that are mostly nodata,
keeps a seeded share of the training windows without buildings, accumulates band statistics
over the kept training windows, and can keep the decoded windows in memory.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import numpy as np
import shapely
from affine import Affine
from rasterio.io import DatasetReader
from rasterio.windows import Window
from rasterio.windows import transform as window_transform
from shapely.geometry.base import BaseGeometry

from engine.config import TrainConfig
from engine.events import Progress, check_canceled
from engine.geo import rasters
from engine.geo.labels import LabelIndex
from engine.geo.normalize import BandStats, StatsAccumulator
from engine.geo.windows import WindowPlan
from engine.geo.workarea import area_mask

#: Preferred side of a validation block, in tiles, tried from largest to smallest.
BLOCK_TILES = (4, 2, 1)
#: The fewest blocks (over all rasters) a block size must give to be used.
MIN_BLOCKS = 4
#: Mask value of pixels to ignore (nodata, outside the raster).
IGNORE = 255


@dataclass(frozen=True)
class WindowRef:
    """One square window of ``tile`` pixels at (``col``, ``row``) in raster ``raster``."""

    raster: int
    col: int
    row: int

    def window(self, tile: int) -> Window:
        """The rasterio Window (may reach past the raster's edge; reads are boundless)."""
        return Window(self.col, self.row, tile, tile)


def cell_shape(width: int, height: int, tile: int) -> tuple[int, int]:
    """Rows and columns of tile-sized cells covering a ``width`` x ``height`` grid."""
    return math.ceil(height / tile), math.ceil(width / tile)


def polygon_cells(
    width: int, height: int, transform: Affine, tile: int, geoms: Sequence[BaseGeometry]
) -> np.ndarray:
    """Cells (bool, rows x cols) whose area overlaps any of ``geoms`` (touching is not enough).

    ``geoms`` must be in the raster's CRS.
    """
    rows, cols = cell_shape(width, height, tile)
    cells = np.zeros((rows, cols), dtype=bool)
    polys = [g for g in geoms if g is not None and not g.is_empty]
    if not polys:
        return cells
    rr, cc = np.mgrid[0:rows, 0:cols]
    x0, y0 = transform * (cc.ravel() * tile, rr.ravel() * tile)
    x1, y1 = transform * ((cc.ravel() + 1) * tile, (rr.ravel() + 1) * tile)
    boxes = shapely.box(
        np.minimum(x0, x1), np.minimum(y0, y1), np.maximum(x0, x1), np.maximum(y0, y1)
    )
    area = shapely.union_all(polys)
    shapely.prepare(area)
    hit = shapely.intersects(boxes, area) & ~shapely.touches(boxes, area)
    cells.ravel()[:] = hit
    return cells


def block_cells(
    shapes: Sequence[tuple[int, int]], tile: int, fraction: float, seed: int
) -> tuple[list[np.ndarray], int]:
    """Validation cells for each raster: seeded square blocks covering about ``fraction``.

    ``shapes`` are (width, height) of each raster. Blocks are ``BLOCK_TILES`` tiles on a side,
    the largest size that gives at least ``MIN_BLOCKS`` blocks in all. Blocks are taken in a
    seeded random order until their cells reach ``fraction`` of all cells, keeping at least one
    block on each side. Returns the cell masks and the block side in tiles.
    """
    grids = [cell_shape(w, h, tile) for w, h in shapes]
    side = BLOCK_TILES[-1]
    for side in BLOCK_TILES:
        if sum(math.ceil(r / side) * math.ceil(c / side) for r, c in grids) >= MIN_BLOCKS:
            break
    blocks = [
        (i, br, bc)
        for i, (rows, cols) in enumerate(grids)
        for br in range(math.ceil(rows / side))
        for bc in range(math.ceil(cols / side))
    ]
    cells = [np.zeros(g, dtype=bool) for g in grids]
    if len(blocks) < 2:
        return cells, side
    total = sum(r * c for r, c in grids)
    order = np.random.default_rng(seed).permutation(len(blocks))
    taken = 0
    for n, k in enumerate(order):
        if n > 0 and (taken >= fraction * total or n == len(blocks) - 1):
            break
        i, br, bc = blocks[int(k)]
        part = cells[i][br * side : (br + 1) * side, bc * side : (bc + 1) * side]
        part[...] = True
        taken += part.size
    return cells, side


def validation_windows(raster: int, cells: np.ndarray, tile: int) -> list[WindowRef]:
    """One window per validation cell, row by row."""
    return [WindowRef(raster, int(c) * tile, int(r) * tile) for r, c in np.argwhere(cells)]


def training_windows(
    raster: int, width: int, height: int, tile: int, stride: int, cells: np.ndarray
) -> tuple[list[WindowRef], int]:
    """Windows of ``WindowPlan(width, height, tile, stride)`` that overlap no validation cell.

    Returns the kept windows and how many were dropped for overlapping validation.
    """
    plan = WindowPlan(width, height, tile, stride)
    cols = np.asarray(plan.columns)
    rows = np.asarray(plan.rows)
    col_grid, row_grid = np.meshgrid(cols, rows)
    c0, r0 = col_grid.ravel(), row_grid.ravel()
    last_r, last_c = cells.shape[0] - 1, cells.shape[1] - 1
    cc0 = np.clip(c0 // tile, 0, last_c)
    cc1 = np.clip((c0 + tile - 1) // tile, 0, last_c)
    rr0 = np.clip(r0 // tile, 0, last_r)
    rr1 = np.clip((r0 + tile - 1) // tile, 0, last_r)
    overlap = cells[rr0, cc0] | cells[rr0, cc1] | cells[rr1, cc0] | cells[rr1, cc1]
    kept = [
        WindowRef(raster, int(c), int(r)) for c, r, o in zip(c0, r0, overlap, strict=True) if not o
    ]
    return kept, int(overlap.sum())


def windows_overlap(a: WindowRef, b: WindowRef, tile: int) -> bool:
    """True when two windows of the same raster share at least one pixel."""
    return a.raster == b.raster and abs(a.col - b.col) < tile and abs(a.row - b.row) < tile


# ------------------------------------------------------------------ reading and filtering


@dataclass(frozen=True)
class Source:
    """One input raster (a file or a VRT mosaic) and what the windows need to know of it."""

    path: str
    width: int
    height: int
    transform: tuple[float, float, float, float, float, float]
    crs_wkt: str
    bounds: tuple[float, float, float, float]
    bands: tuple[int, ...]
    dtype: str
    resolution_m: float


def separation_width_px(width_m: float, resolution_m: float) -> float:
    """Half-width of the separation strip in pixels: ``width_m`` on the ground, at least 1 px."""
    return max(1.0, width_m / resolution_m) if resolution_m > 0 else 1.0


def read_item(
    src: DatasetReader,
    source: Source,
    ref: WindowRef,
    tile: int,
    index: LabelIndex,
    separation: bool,
    separation_width_m: float = 0.4,
    labelled: BaseGeometry | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Read one window's data (float32, C,T,T) and burn its mask (uint8, T,T; 255 nodata);
    with ``separation`` the separation strip (``separation_width_m`` metres each side of a shared
    wall, at least one pixel) is 2 outside buildings and 3 inside them (the wall itself).
    Pixels whose centre lies outside the ``labelled`` area (in the raster's CRS; None:
    everywhere) are 255 too: unknown, not background."""
    window = ref.window(tile)
    data, valid = rasters.read_window(src, window, source.bands)
    affine = window_transform(window, src.transform)
    mask = np.array(
        index.mask(
            affine,
            (tile, tile),
            separation=separation,
            separation_width=separation_width_px(separation_width_m, source.resolution_m),
            walls=separation,
        ),
        dtype=np.uint8,
    )
    mask[~valid] = IGNORE
    inside = area_mask(labelled, window, src.transform)
    if inside is not None:
        mask[~inside] = IGNORE
    return data, mask


class WindowCache:
    """Decoded windows (native dtype) and masks, up to ``limit`` bytes; off once exceeded."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.nbytes = 0
        self.items: dict[int, tuple[np.ndarray, np.ndarray]] | None = {} if limit > 0 else None

    def add(self, index: int, data: np.ndarray, mask: np.ndarray) -> None:
        """Store one window, or drop the whole cache once it grows past the limit."""
        if self.items is None:
            return
        self.nbytes += data.nbytes + mask.nbytes
        if self.nbytes > self.limit:
            self.items = None
            return
        self.items[index] = (data, mask)


@dataclass
class ScanResult:
    """The windows kept in each split, the training statistics, counts and caches."""

    train: list[WindowRef]
    val: list[WindowRef]
    stats: BandStats | None  # None when no training window is left
    train_counts: dict[str, Any] = field(default_factory=dict)
    val_counts: dict[str, Any] = field(default_factory=dict)
    train_cache: dict[int, tuple[np.ndarray, np.ndarray]] | None = None
    val_cache: dict[int, tuple[np.ndarray, np.ndarray]] | None = None


class _Scanner:
    """Reads candidate windows once each, filters them and counts what happened."""

    def __init__(
        self,
        config: TrainConfig,
        sources: Sequence[Source],
        labels: Sequence[gpd.GeoDataFrame],
        total: int,
        progress: Progress,
        labelled: Sequence[BaseGeometry | None],
    ) -> None:
        self.config = config
        self.sources = sources
        self.indexes = [LabelIndex(g) for g in labels]
        self.labelled = labelled
        self.handles = [rasters.open_raster(s.path) for s in sources]
        self.total = max(total, 1)
        self.done = 0
        self.progress = progress

    def close(self) -> None:
        for h in self.handles:
            h.close()

    def filter(
        self,
        refs: Sequence[WindowRef],
        keep_draw: np.ndarray | None,
        acc: StatsAccumulator | None,
        cache: WindowCache,
    ) -> tuple[list[WindowRef], dict[str, Any]]:
        """Windows of ``refs`` to keep; ``keep_draw`` (uniform per ref) undersamples empties."""
        cfg = self.config
        kept: list[WindowRef] = []
        n: dict[str, Any] = dict.fromkeys(
            ("kept", "dropped_nodata", "dropped_empty", "empty_kept"), 0
        )
        n["candidates"] = len(refs)
        pixels = np.zeros(3, dtype=np.int64)  # valid, building, separation
        for i, ref in enumerate(refs):
            check_canceled(self.progress)
            self.done += 1
            self.progress.set_progress(100.0 * self.done / self.total)
            src, source = self.handles[ref.raster], self.sources[ref.raster]
            data, mask = read_item(
                src,
                source,
                ref,
                cfg.tile_size,
                self.indexes[ref.raster],
                cfg.separation,
                cfg.separation_width_m,
                self.labelled[ref.raster],
            )
            counts = np.bincount(mask.ravel(), minlength=256)
            verdict = self._verdict(counts, None if keep_draw is None else keep_draw[i])
            if verdict.startswith("dropped"):
                n[verdict] += 1
                continue
            if verdict == "empty_kept":
                n[verdict] += 1
            pixels += (mask.size - counts[IGNORE], counts[1] + counts[3], counts[2] + counts[3])
            if acc is not None:
                acc.add(data, mask != IGNORE)
            cache.add(len(kept), data.astype(source.dtype), mask)
            kept.append(ref)
        n["kept"] = len(kept)
        n["valid_pixels"] = int(pixels[0])
        n["building_share"] = float(pixels[1] / pixels[0]) if pixels[0] else 0.0
        if cfg.separation:
            n["separation_share"] = float(pixels[2] / pixels[0]) if pixels[0] else 0.0
        return kept, n

    def _verdict(self, counts: np.ndarray, draw: float | None) -> str:
        """What to do with a window whose mask values have the histogram ``counts``."""
        size = int(counts.sum())
        valid = size - int(counts[IGNORE])
        if valid == 0 or 1.0 - valid / size > self.config.max_nodata_fraction:
            return "dropped_nodata"
        if counts[1] + counts[2] + counts[3] > 0:
            return "kept"
        if draw is not None and draw >= self.config.empty_keep_fraction:
            return "dropped_empty"
        return "empty_kept"


def scan_windows(
    config: TrainConfig,
    sources: Sequence[Source],
    labels: Sequence[gpd.GeoDataFrame],
    train_refs: Sequence[WindowRef],
    val_refs: Sequence[WindowRef],
    progress: Progress,
    cache_bytes: int,
    labelled: Sequence[BaseGeometry | None] | None = None,
) -> ScanResult:
    """Filter the candidate windows of both splits and compute the training statistics.

    Training windows without buildings are kept with probability ``empty_keep_fraction``
    (seeded by ``config.seed``); validation keeps all of them, so its scores reflect the
    imagery as it is. Decoded windows are cached while both splits fit in ``cache_bytes``.
    Pixels outside ``labelled`` (per raster; None: labelled everywhere) are ignored.
    """
    total = len(train_refs) + len(val_refs)
    areas = list(labelled) if labelled is not None else [None] * len(sources)
    scanner = _Scanner(config, sources, labels, total, progress, areas)
    try:
        acc = StatsAccumulator(len(sources[0].bands))
        draw = np.random.default_rng((config.seed, 1)).random(len(train_refs))
        train_cache = WindowCache(cache_bytes)
        train, train_counts = scanner.filter(train_refs, draw, acc, train_cache)
        used = train_cache.nbytes if train_cache.items is not None else cache_bytes
        val_cache = WindowCache(cache_bytes - used)
        val, val_counts = scanner.filter(val_refs, None, None, val_cache)
    finally:
        scanner.close()
    stats = acc.result() if acc.count else None
    both = train_cache.items is not None and val_cache.items is not None
    return ScanResult(
        train,
        val,
        stats,
        train_counts,
        val_counts,
        train_cache.items if both else None,
        val_cache.items if both else None,
    )
