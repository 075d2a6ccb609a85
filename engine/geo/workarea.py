"""The work area of a prediction: an extent and/or an AOI polygon layer, in the raster's CRS.

The work is bounded by the area: :func:`work_window` is the part of the raster's grid that
holds the area (its bounding box, rounded out to whole :data:`AREA_BLOCK` blocks of the grid),
and the outputs, the temporary rasters and the memory of a prediction cover that window only.
Only windows whose footprint intersects the area are predicted; output pixels whose centre
lies outside it are nodata.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely
from affine import Affine
from rasterio.crs import CRS
from rasterio.features import geometry_mask
from rasterio.windows import Window
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from engine.errors import ConfigError
from engine.events import Progress
from engine.geo.labels import split_source
from engine.geo.vectors import DAMAGED_LAYER_HINT, VECTOR_READ_ERRORS
from engine.geo.windows import window_bounds

#: The work window's edges fall on multiples of this many pixels of the raster's grid (a
#: multiple of the output blocks and of detect's labelling blocks, so the blocks of the window
#: are blocks of the whole raster and its results are those of the whole raster).
AREA_BLOCK = 512


def _extent_geometry(extent: Sequence[float]) -> BaseGeometry:
    if len(extent) != 4:
        raise ConfigError(f"Extent needs 4 numbers (xmin ymin xmax ymax), got {list(extent)}.")
    xmin, ymin, xmax, ymax = (float(v) for v in extent)
    if not (xmin < xmax and ymin < ymax):
        raise ConfigError(
            f"Extent {list(extent)} is empty; give xmin ymin xmax ymax with xmin < xmax and"
            " ymin < ymax, in the raster's CRS."
        )
    return box(xmin, ymin, xmax, ymax)


def _aoi_geometry(path: str, crs: CRS, progress: Progress) -> BaseGeometry:
    file, layer = split_source(path)  # QGIS's ``areas.gpkg|layername=town``, as labels take
    if not Path(file).exists():
        raise ConfigError(f"AOI layer {path} does not exist; check the path.")
    try:
        frame = gpd.read_file(file, layer=layer)
    except VECTOR_READ_ERRORS as exc:
        raise ConfigError(
            f"AOI layer {path} cannot be read ({exc}); give a polygon file such as a GeoPackage."
            f" {DAMAGED_LAYER_HINT}"
        ) from exc
    if frame.crs is None:
        progress.log(f"AOI layer {path} has no CRS; assuming the raster's CRS.")
    else:
        frame = frame.to_crs(crs)
    geoms = frame.geometry.values
    polygons = geoms[
        ~shapely.is_empty(geoms)
        & np.isin(
            shapely.get_type_id(geoms),
            (3, 6),  # Polygon, MultiPolygon
        )
    ]
    if len(polygons) == 0:
        raise ConfigError(f"AOI layer {path} holds no polygons; give a polygon layer.")
    return shapely.union_all(shapely.make_valid(polygons))


def load_work_area(
    extent: Sequence[float] | None,
    aoi: str | None,
    crs: CRS,
    grid: Affine,
    width: int,
    height: int,
    progress: Progress,
) -> BaseGeometry | None:
    """The area to predict (extent and AOI intersected), or None for the whole raster.

    Raises:
        ConfigError: the extent is malformed, the AOI unreadable or without polygons, or the
            area does not overlap the raster.
    """
    if extent is None and not aoi:
        return None
    area: BaseGeometry | None = _extent_geometry(extent) if extent is not None else None
    if aoi:
        aoi_geom = _aoi_geometry(aoi, crs, progress)
        area = aoi_geom if area is None else area.intersection(aoi_geom)
    assert area is not None
    raster_box = box(*window_bounds(Window(0, 0, width, height), grid))
    overlap = area.intersection(raster_box)
    if overlap.is_empty or overlap.area <= 0:
        digits = _digits(abs(grid.a))
        given = " ".join(f"{v:.{digits}f}" for v in area.bounds)
        raster = " ".join(f"{v:.{digits}f}" for v in raster_box.bounds)
        raise ConfigError(
            f"The extent/AOI ({given}) does not overlap the raster ({raster} in its CRS); give"
            " an area over the raster, in the raster's CRS for an extent."
        )
    shapely.prepare(overlap)
    return overlap


def _digits(pixel: float) -> int:
    """Decimals that show coordinates to a tenth of a ``pixel`` (degrees need 6-7, metres 1-2)."""
    return max(0, min(9, math.ceil(-math.log10(pixel / 10)))) if pixel > 0 else 3


def windows_in_area(
    area: BaseGeometry | None, windows: Sequence[Window], grid: Affine
) -> list[bool]:
    """For each window, whether its footprint meets ``area``.

    ``area`` is grown by two pixels so windows that feed resampling at its edge are kept.
    """
    if area is None:
        return [True] * len(windows)
    grown = area.buffer(2 * max(abs(grid.a), abs(grid.e)))
    boxes = [box(*window_bounds(w, grid)) for w in windows]
    return [bool(v) for v in shapely.intersects(grown, np.array(boxes, dtype=object))]


def area_mask(area: BaseGeometry | None, window: Window, grid: Affine) -> np.ndarray | None:
    """True for pixels of ``window`` whose centre lies in ``area`` (None: no area)."""
    if area is None:
        return None
    shape = (int(window.height), int(window.width))
    xmin, ymin, xmax, ymax = window_bounds(window, grid)
    part = shapely.clip_by_rect(area, xmin, ymin, xmax, ymax)
    if part.is_empty or part.area <= 0:
        return np.zeros(shape, dtype=bool)
    transform = grid * Affine.translation(window.col_off, window.row_off)
    mask: np.ndarray = geometry_mask([part], out_shape=shape, transform=transform, invert=True)
    return mask


def work_window(
    area: BaseGeometry | None, grid: Affine, width: int, height: int, snap: int = AREA_BLOCK
) -> Window:
    """The window of the ``width`` x ``height`` grid placed by ``grid`` that holds ``area``:
    its bounding box rounded out to multiples of ``snap`` pixels, within the grid (None: the
    whole grid)."""
    if area is None or area.is_empty:
        return Window(0, 0, width, height)
    xmin, ymin, xmax, ymax = area.bounds
    corners = [~grid * (x, y) for x in (xmin, xmax) for y in (ymin, ymax)]
    cols, rows = [c for c, _ in corners], [r for _, r in corners]
    col0 = max(0, math.floor(min(cols)) // snap * snap)
    row0 = max(0, math.floor(min(rows)) // snap * snap)
    col1 = min(width, -(-math.ceil(max(cols)) // snap) * snap)
    row1 = min(height, -(-math.ceil(max(rows)) // snap) * snap)
    return Window(col0, row0, max(1, col1 - col0), max(1, row1 - row0))
