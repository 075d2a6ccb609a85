"""Burn building polygons into a mask GeoTIFF on a raster's exact grid, window by window.

The mask has the raster's CRS, transform, width and height: 1 building, 0 background, 2 the
separation strip between touching buildings (with ``separation``), 255 where the raster is nodata.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.io import DatasetReader
from rasterio.windows import transform as window_transform

from engine.config import RasterizeConfig
from engine.errors import ConfigError
from engine.events import Progress, check_canceled
from engine.geo.labels import BUILDING, SEPARATION, LabelIndex, labels_for_extent, layer_inputs
from engine.geo.outputs import atomic_output, check_output, prepare_outputs
from engine.geo.rasters import (
    default_bands,
    open_raster,
    raster_bounds,
    raster_inputs,
    read_window,
    resolve_raster,
)
from engine.geo.temporary import scratch_prefix
from engine.geo.windows import Grid
from engine.results import RasterizeResult

#: Mask value where the raster has no data.
NODATA = 255

#: Half-width of the separation strip, in pixels.
SEPARATION_WIDTH_PX = 1.0


def rasterize_labels(config: RasterizeConfig, progress: Progress) -> RasterizeResult:
    """Write ``config.output``: the labels burnt into a uint8 mask on the raster's grid.

    Returns:
        ``output`` path, ``buildings`` (polygons overlapping the raster), ``building_pixels``,
        ``separation_pixels``, ``nodata_pixels``, ``width``, ``height`` and ``crs``.

    Raises:
        RasterError, LabelsError, ConfigError, OutputError, CancelledError.
    """
    if config.window_size < 16:
        raise ConfigError(f"Window size must be at least 16 pixels, got {config.window_size}.")
    if not config.labels:
        raise ConfigError("No label layer given; give at least one building polygon layer.")
    out = check_output(config.output, config.overwrite)
    inputs = raster_inputs(config.raster) + layer_inputs("label layer", config.labels)
    prepare_outputs({"output": out}, inputs)
    with tempfile.TemporaryDirectory(prefix=scratch_prefix("rasterize")) as workdir:
        raster = resolve_raster(config.raster, workdir=workdir)
        with open_raster(raster) as src:
            crs_wkt = src.crs.to_wkt()
            margin = (SEPARATION_WIDTH_PX + 1) * max(abs(src.transform.a), abs(src.transform.e))
            index, buildings = labels_for_extent(
                config.labels, crs_wkt, raster_bounds(src), margin=margin, allow_empty=True
            )
            if buildings:
                progress.log(
                    f"Rasterizing {buildings} building polygon(s) onto {src.width}x{src.height}"
                    f" pixels of {config.raster}."
                )
            else:
                progress.log(
                    f"The label layer(s) hold no features: writing an all-background mask of"
                    f" {src.width}x{src.height} pixels (an area known to hold no buildings)."
                )
            with atomic_output(out, config.overwrite) as part:
                counts = _write_mask(src, index, part, config, progress)
            width, height = src.width, src.height
    progress.set_progress(100.0)
    return {
        "output": str(out),
        "buildings": buildings,
        "building_pixels": int(counts[BUILDING]),
        "separation_pixels": int(counts[SEPARATION]),
        "nodata_pixels": int(counts[NODATA]),
        "width": width,
        "height": height,
        "crs": crs_wkt,
    }


def _profile(src: DatasetReader) -> dict[str, Any]:
    return {
        "driver": "GTiff",
        "width": src.width,
        "height": src.height,
        "count": 1,
        "dtype": "uint8",
        "crs": src.crs,
        "transform": src.transform,
        "nodata": NODATA,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
        "BIGTIFF": "IF_SAFER",
    }


def _write_mask(
    src: DatasetReader,
    index: LabelIndex,
    path: Path,
    config: RasterizeConfig,
    progress: Progress,
) -> np.ndarray:
    """Write the mask window by window; return the pixel count of every value (256 bins)."""
    windows = list(Grid(src.width, src.height, src.transform).blocks(config.window_size))
    bands = default_bands(src)
    counts = np.zeros(256, dtype=np.int64)
    with rasterio.open(path, "w", **_profile(src)) as dst:
        dst.set_band_description(1, "building mask")
        dst.update_tags(1, classes="0=background 1=building 2=separation 255=nodata")
        for i, window in enumerate(windows):
            check_canceled(progress)
            shape = (int(window.height), int(window.width))
            mask = index.mask(
                window_transform(window, src.transform),
                shape,
                separation=config.separation,
                all_touched=config.all_touched,
                separation_width=SEPARATION_WIDTH_PX,
            )
            _, valid = read_window(src, window, bands)
            mask[~valid] = NODATA
            dst.write(mask, 1, window=window)
            counts += np.bincount(mask.ravel(), minlength=256)
            progress.set_progress(99.0 * (i + 1) / len(windows))
    return counts
