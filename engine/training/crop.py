"""The piece of a (possibly huge) raster that a fine-tuning needs, on the model's grid.

``improve`` trains on the area a mapper checked, often a few hundred metres of a city-wide
orthophoto: reading only the window around it (grown by a training tile) keeps the window scan
short, and resampling it to the starting model's resolution (bilinearly, as detect does)
teaches the model at the scale it is applied at.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window, from_bounds
from rasterio.windows import transform as window_transform

from engine.errors import ConfigError
from engine.geo.rasters import ground_resolution_m, open_raster
from engine.geo.windows import Grid
from engine.inference.job import RESOLUTION_TOLERANCE, check_upsampling, warp_to


def crop_window(src: rasterio.DatasetReader, bounds: tuple[float, ...], pad: int) -> Window:
    """The window of ``src`` holding ``bounds`` (its CRS), grown by ``pad`` pixels, inside it.

    Raises:
        ConfigError: the bounds miss the raster.
    """
    window = from_bounds(*bounds, transform=src.transform)
    col0 = max(0, math.floor(min(window.col_off, window.col_off + window.width)) - pad)
    row0 = max(0, math.floor(min(window.row_off, window.row_off + window.height)) - pad)
    col1 = min(src.width, math.ceil(max(window.col_off, window.col_off + window.width)) + pad)
    row1 = min(src.height, math.ceil(max(window.row_off, window.row_off + window.height)) + pad)
    if col1 <= col0 or row1 <= row0:
        raise ConfigError(f"The area {bounds} lies outside the raster {src.name}.")
    return Window(col0, row0, col1 - col0, row1 - row0)


def crop_on_model_grid(
    raster: str, bounds: tuple[float, ...], resolution_m: float, pad: int, out: Path
) -> tuple[Path, bool]:
    """Write the part of ``raster`` around ``bounds`` at ``resolution_m`` (the raster's own
    pixels when within the engine's tolerance) as a tiled GeoTIFF ``out``; its path and
    whether it was resampled. Nodata stays nodata (the dataset mask is written).

    Raises:
        ConfigError: the bounds miss the raster, or it would be upsampled too far.
    """
    with open_raster(raster) as src:
        res = ground_resolution_m(src)
        ratio = resolution_m / res if resolution_m > 0 else 1.0
        resample = abs(ratio - 1) > RESOLUTION_TOLERANCE
        window = crop_window(src, bounds, math.ceil(pad * (ratio if resample else 1.0)))
        transform = window_transform(window, src.transform)
        width, height = int(window.width), int(window.height)
        if resample:
            width, height = max(1, round(width / ratio)), max(1, round(height / ratio))
            check_upsampling(src, width * height, res, resolution_m)
            transform = transform * Affine.scale(window.width / width, window.height / height)
            with warp_to(src, Grid(width, height, transform)) as vrt:
                data, mask = vrt.read(), vrt.dataset_mask()
        else:
            data, mask = src.read(window=window), src.dataset_mask(window=window)
        profile = {
            "driver": "GTiff",
            "width": width,
            "height": height,
            "count": src.count,
            "dtype": src.dtypes[0],
            "crs": src.crs,
            "transform": transform,
            "tiled": True,
            "blockxsize": 256,
            "blockysize": 256,
            "compress": "deflate",
        }
        interp = src.colorinterp
        with rasterio.open(out, "w", **profile) as dst:
            dst.write(data)
            dst.colorinterp = interp
            dst.write_mask(np.asarray(mask, dtype=np.uint8))
    return out, resample
