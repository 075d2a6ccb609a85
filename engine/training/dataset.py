"""Training and validation windows read lazily from rasters, with masks burnt from labels.

:func:`build_training_data` plans windows over each raster, splits them spatially (see
:mod:`engine.training.sampling`), drops windows that are mostly nodata, keeps only a share of the
windows without buildings, and computes band statistics on the training windows. The two
:class:`WindowDataset` objects it returns read one window per item from disk (or from an
in-memory cache of decoded windows when they are few), so they work in DataLoader workers.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import numpy as np
import shapely
import torch
from affine import Affine
from rasterio.io import DatasetReader
from shapely.geometry.base import BaseGeometry
from torch.utils.data import Dataset

from engine.config import TrainConfig
from engine.errors import ConfigError, LabelsError
from engine.events import Progress
from engine.geo import rasters
from engine.geo.labels import LabelIndex, overlap_error, read_labels
from engine.geo.normalize import BandStats, normalize, pretrained_stats
from engine.training.augment import augment, item_rng
from engine.training.sampling import (
    IGNORE,
    Source,
    WindowRef,
    block_cells,
    cell_shape,
    polygon_cells,
    read_item,
    scan_windows,
    training_windows,
    validation_windows,
)

#: Keep decoded windows in memory when they take less than this (bytes).
DEFAULT_CACHE_BYTES = 1 << 30


class WindowDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Square windows of one or more rasters: items are (image (C,T,T) float32, mask (T,T) uint8).

    The image is normalised with ``stats`` (nodata 0); the mask holds 0 background,
    1 building, 2 and 3 the separation strip (``separation``; 3 inside a building) and 255
    ignore. Rasters are opened lazily, once per process; the object pickles without open
    handles, so DataLoader workers can use it.
    """

    def __init__(
        self,
        sources: Sequence[Source],
        windows: Sequence[WindowRef],
        labels: Sequence[gpd.GeoDataFrame],
        tile: int,
        stats: BandStats,
        separation: bool = False,
        augment: bool = False,
        scale_jitter: float = 1.0,
        colour_jitter: float = 0.0,
        separation_width_m: float = 0.4,
        seed: int = 0,
        cache: dict[int, tuple[np.ndarray, np.ndarray]] | None = None,
        labelled: Sequence[BaseGeometry | None] | None = None,
    ) -> None:
        self.sources = tuple(sources)
        self.windows = tuple(windows)
        self.labels = tuple(labels)
        self.tile = tile
        self.stats = stats
        self.separation = separation
        self.separation_width_m = separation_width_m
        self.augment = augment
        self.scale_jitter = scale_jitter
        self.colour_jitter = colour_jitter
        self.seed = seed
        self.cache = cache
        self.labelled = tuple(labelled) if labelled is not None else (None,) * len(sources)
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()
        self._reset_process_state()

    def _reset_process_state(self) -> None:
        self._pid = os.getpid()
        self._handles: dict[int, DatasetReader] = {}
        self._indexes: dict[int, LabelIndex] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for key in ("_pid", "_handles", "_indexes"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset_process_state()

    def __len__(self) -> int:
        return len(self.windows)

    @property
    def epoch(self) -> int:
        """The epoch that seeds augmentation."""
        return int(self._epoch.item())

    def set_epoch(self, epoch: int) -> None:
        """Vary augmentation per epoch (shared with worker processes, persistent ones too)."""
        self._epoch.fill_(int(epoch))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        data, mask = self.read(index)
        image = normalize(data, mask != IGNORE, self.stats)
        if self.augment:
            rng = item_rng(self.seed, self.epoch, index)
            image, mask = augment(
                image, mask, rng, scale_jitter=self.scale_jitter, colour=self.colour_jitter
            )
        return torch.from_numpy(image), torch.from_numpy(mask)

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Window ``index`` as raw float32 data (C,T,T) and its mask (T,T), not augmented."""
        if self.cache is not None and index in self.cache:
            data, mask = self.cache[index]
            return data.astype(np.float32), mask.copy()
        ref = self.windows[index]
        return read_item(
            self._handle(ref.raster),
            self.sources[ref.raster],
            ref,
            self.tile,
            self._index(ref.raster),
            self.separation,
            self.separation_width_m,
            self.labelled[ref.raster],
        )

    def _handle(self, raster: int) -> DatasetReader:
        if self._pid != os.getpid():
            self._reset_process_state()
        if raster not in self._handles:
            self._handles[raster] = rasters.open_raster(self.sources[raster].path)
        return self._handles[raster]

    def _index(self, raster: int) -> LabelIndex:
        if raster not in self._indexes:
            self._indexes[raster] = LabelIndex(self.labels[raster])
        return self._indexes[raster]


@dataclass
class TrainingData:
    """Everything the training loop needs from the data."""

    train: WindowDataset
    val: WindowDataset
    stats: BandStats
    bands: tuple[int, ...]
    resolution_m: float
    input_dtype: str
    classes: tuple[str, ...]
    summary: dict[str, Any] = field(default_factory=dict)


def build_training_data(
    config: TrainConfig,
    progress: Progress,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
    input_scale: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
    fixed_stats: BandStats | None = None,
) -> TrainingData:
    """Plan, split, filter and describe the training and validation windows.

    Args:
        config: the training configuration.
        progress: receives progress of the window scan, the summary, and cancellation.
        cache_bytes: keep decoded windows in memory when all of them take less than this
            many bytes (0 turns caching off; every item is then read from disk).
        input_scale: mean and std on 0-1 values of a pretrained encoder: inputs are scaled to
            0-1 and normalised with them (:func:`engine.geo.normalize.pretrained_stats`)
            instead of with the data's own mean and std.
        fixed_stats: normalisation to keep as it is (a model being fine-tuned).

    Raises:
        ConfigError: bad parameters, rasters with different band counts or data types, or
            a split that leaves training or validation without windows.
        LabelsError: no building polygon overlaps any raster.
    """
    _check_config(config)
    sources = open_sources(config)
    labels = [read_labels(config.labels, s.crs_wkt, bounds=_padded(s)) for s in sources]
    n_labels = sum(len(g) for g in labels)
    if n_labels == 0 and config.labelled_area:
        progress.log(
            "No building polygon over the rasters: the labelled area is taught as background."
        )
    elif n_labels == 0:
        _raise_no_labels(config, sources)
    for s, g in zip(sources, labels, strict=True):
        if len(g) == 0 and n_labels:  # with none at all, said above
            progress.log(f"Warning: no building labels over {s.path}; it counts as background.")
    tile = config.tile_size
    stride = config.stride or max(1, tile // 2)
    cells, split_info = split_cells(config, sources)
    val_refs = [ref for i, c in enumerate(cells) for ref in validation_windows(i, c, tile)]
    train_refs: list[WindowRef] = []
    overlap = 0
    for i, (s, c) in enumerate(zip(sources, cells, strict=True)):
        kept, dropped = training_windows(i, s.width, s.height, tile, stride, c)
        train_refs += kept
        overlap += dropped
    labelled = labelled_areas(config, sources, progress)
    scan = scan_windows(
        config, sources, labels, train_refs, val_refs, progress, cache_bytes, labelled
    )
    summary = {
        "rasters": [s.path for s in sources],
        "label_features": n_labels,
        "tile_size": tile,
        "stride": stride,
        **split_info,
        "train": {**scan.train_counts, "dropped_overlap_validation": overlap},
        "val": scan.val_counts,
        "cached": scan.train_cache is not None and scan.val_cache is not None,
    }
    fit = fits_training_area(config)
    if fit:
        summary["val"] = scan.train_counts
        progress.log(
            "val_fraction 0: nothing is held out; the best epoch and the threshold are chosen"
            " on the training windows (a fit to this imagery, not a measure on unseen areas)."
        )
    _check_splits(scan.train, scan.train if fit else scan.val, summary)
    assert scan.stats is not None  # a training window was kept
    stats = scan.stats
    if fixed_stats is not None:
        stats = fixed_stats
    elif input_scale is not None:
        stats = pretrained_stats(scan.stats, sources[0].dtype, *input_scale)
    separation = config.separation
    train = WindowDataset(
        sources,
        scan.train,
        labels,
        tile,
        stats,
        separation,
        augment=config.augment,
        scale_jitter=config.scale_jitter,
        colour_jitter=config.colour_jitter,
        seed=config.seed,
        cache=scan.train_cache,
        separation_width_m=config.separation_width_m,
        labelled=labelled,
    )
    val = WindowDataset(
        sources,
        scan.train if fit else scan.val,
        labels,
        tile,
        stats,
        separation,
        cache=scan.train_cache if fit else scan.val_cache,
        separation_width_m=config.separation_width_m,
        labelled=labelled,
    )
    _log_summary(progress, summary)
    return TrainingData(
        train=train,
        val=val,
        stats=stats,
        bands=sources[0].bands,
        resolution_m=sources[0].resolution_m,
        input_dtype=sources[0].dtype,
        classes=("building", "separation") if separation else ("building",),
        summary=summary,
    )


def labelled_areas(
    config: TrainConfig, sources: Sequence[Source], progress: Progress
) -> list[BaseGeometry | None] | None:
    """The labelled area over each raster, in its CRS (None: no labelled area was given).

    Raises:
        ConfigError: the labelled-area layer has no polygon over any raster.
    """
    if not config.labelled_area:
        return None
    areas: list[BaseGeometry | None] = []
    for source in sources:
        polygons = read_labels((config.labelled_area,), source.crs_wkt, bounds=_padded(source))
        area = shapely.union_all(polygons.geometry.to_numpy()) if len(polygons) else None
        if area is None:
            progress.log(
                f"Warning: the labelled area has no polygon over {source.path}; none of its"
                " windows is used."
            )
            area = shapely.Polygon()
        areas.append(area)
    if all(a.is_empty for a in areas if a is not None):
        raise ConfigError(
            f"The labelled area {config.labelled_area} covers none of the training rasters;"
            " draw its polygons where the labels are complete, over the imagery."
        )
    return areas


def _padded(source: Source, pixels: float = 4.0) -> tuple[float, float, float, float]:
    """The raster's bounds grown by a few pixels (polygons just outside shape separation strips)."""
    dx, dy = abs(source.transform[0]) * pixels, abs(source.transform[4]) * pixels
    b = source.bounds
    return (b[0] - dx, b[1] - dy, b[2] + dx, b[3] + dy)


def _raise_no_labels(config: TrainConfig, sources: Sequence[Source]) -> None:
    first = sources[0]
    everything = read_labels(config.labels, first.crs_wkt)
    if not len(everything):
        raise LabelsError(
            f"No building polygons in {', '.join(config.labels)}; give a layer with polygon"
            " features."
        )
    raise overlap_error(tuple(everything.total_bounds), first.bounds, first.crs_wkt)


def _check_config(config: TrainConfig) -> None:
    if not config.rasters:
        raise ConfigError("No training raster given; give at least one raster, folder or glob.")
    if not config.labels:
        raise ConfigError("No building labels given; give at least one polygon layer.")
    if config.tile_size < 8:
        raise ConfigError(f"Tile size must be at least 8 pixels, got {config.tile_size}.")
    if config.stride is not None and not 1 <= config.stride <= config.tile_size:
        raise ConfigError(
            f"Stride must be between 1 and the tile size {config.tile_size}, got {config.stride}."
        )
    for name in ("max_nodata_fraction", "empty_keep_fraction"):
        value = getattr(config, name)
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"{name} must be between 0 and 1, got {value}.")
    if not 1.0 <= config.scale_jitter <= 4.0:
        raise ConfigError(
            f"Scale jitter must be from 1 (off) to 4, got {config.scale_jitter}; e.g. 1.6"
            " rescales training windows by 1/1.6 to 1.6."
        )
    if not 0.0 <= config.colour_jitter <= 0.5:
        raise ConfigError(
            f"Colour jitter must be from 0 (off) to 0.5, got {config.colour_jitter}; e.g. 0.2"
            " varies each band's gain by up to 20%."
        )
    if config.validation is None and not 0.0 <= config.val_fraction < 1.0:
        raise ConfigError(
            f"val_fraction must be from 0 to 1 (exclusive), got {config.val_fraction};"
            " or give validation polygons."
        )


def fits_training_area(config: TrainConfig) -> bool:
    """True when nothing is held out (``val_fraction`` 0, no validation polygons): the best
    epoch and threshold are then chosen on the training windows themselves."""
    return config.validation is None and config.val_fraction == 0.0


def open_sources(config: TrainConfig) -> list[Source]:
    """Resolve and describe each training raster; all must give as many bands of one type."""
    sources = []
    for item in config.rasters:
        path = rasters.resolve_raster(item)
        with rasters.open_raster(path) as src:
            bands = rasters.select_bands(src, config.bands)
            t = src.transform
            sources.append(
                Source(
                    path=path,
                    width=src.width,
                    height=src.height,
                    transform=(t.a, t.b, t.c, t.d, t.e, t.f),
                    crs_wkt=src.crs.to_wkt(),
                    bounds=rasters.raster_bounds(src),
                    bands=bands,
                    dtype=str(src.dtypes[bands[0] - 1]),
                    resolution_m=rasters.ground_resolution_m(src),
                )
            )
    first = sources[0]
    for s in sources[1:]:
        if len(s.bands) != len(first.bands):
            raise ConfigError(
                f"Raster {s.path} gives {len(s.bands)} band(s) but {first.path} gives"
                f" {len(first.bands)}; train on rasters with the same bands, or choose the"
                " bands to use (--bands)."
            )
        if s.dtype != first.dtype:
            raise ConfigError(
                f"Raster {s.path} is {s.dtype} but {first.path} is {first.dtype}; convert them"
                " to one data type (the model learns one value range)."
            )
    return sources


def split_cells(
    config: TrainConfig, sources: Sequence[Source]
) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Validation cells of each raster, from validation polygons or seeded blocks."""
    tile = config.tile_size
    if fits_training_area(config):
        cells = [np.zeros(cell_shape(s.width, s.height, tile), dtype=bool) for s in sources]
        return cells, {"split": "none (val_fraction 0): validation on the training windows"}
    if config.validation is None:
        cells, side = block_cells(
            [(s.width, s.height) for s in sources], tile, config.val_fraction, config.seed
        )
        return cells, {"split": "blocks", "block_tiles": side}
    cells = []
    for s in sources:
        try:
            areas = read_labels((config.validation,), s.crs_wkt, bounds=s.bounds)
        except LabelsError as exc:
            raise ConfigError(f"Validation areas {config.validation}: {exc}") from exc
        affine = Affine(*s.transform)
        cells.append(polygon_cells(s.width, s.height, affine, tile, list(areas.geometry)))
    return cells, {"split": "polygons", "validation": config.validation}


def _check_splits(
    train: Sequence[WindowRef], val: Sequence[WindowRef], summary: dict[str, Any]
) -> None:
    if not val:
        raise ConfigError(
            f"No validation window is left ({_dropped(summary['val'])}); give validation"
            " polygons that overlap the rasters' valid pixels, raise val_fraction, or lower"
            " tile_size."
        )
    if not train:
        raise ConfigError(
            f"No training window is left ({_dropped(summary['train'])}); lower tile_size or"
            " val_fraction, give smaller validation areas, or raise"
            " empty_keep_fraction/max_nodata_fraction."
        )


def _dropped(counts: dict[str, Any]) -> str:
    """What happened to a split's candidate windows, in words."""
    return (
        f"{counts['kept']} kept of {counts['candidates']}; dropped: {counts['dropped_nodata']}"
        f" mostly nodata, {counts.get('dropped_empty', 0)} without buildings,"
        f" {counts.get('dropped_overlap_validation', 0)} overlapping validation"
    )


def _log_summary(progress: Progress, summary: dict[str, Any]) -> None:
    for split in ("train", "val"):
        c = summary[split]
        progress.log(f"{split}: windows {_dropped(c)}; building share {c['building_share']:.3f}")
    progress.log(
        f"Split: {summary['split']}; tile {summary['tile_size']}, stride {summary['stride']};"
        f" windows cached in memory: {summary['cached']}"
    )
