"""Ground metres per unit of a projected CRS, where the projection stretches the ground.

A projected CRS's unit is a metre on the map, not always on the ground: Web Mercator
(EPSG:3857, what web maps and tile downloads use) stretches both axes by 1/cos(latitude), so
at 55° N one of its "metres" is 0.57 m of ground. Pixel sizes, building areas and distances in
metres are measured on the ground, so they divide by the projection's scale where it matters.
UTM zones and national grids keep their scale within :data:`SCALE_TOLERANCE` of 1 (UTM:
0.9996-1.001), where map metres are taken as ground metres, as everyone using them expects.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from pyproj import CRS, Proj, Transformer
from pyproj.exceptions import CRSError, ProjError

#: A projection whose scale at a place is within this of 1 counts its units as ground units.
SCALE_TOLERANCE = 0.01


def unit_metres(crs: Any) -> float:
    """Metres per unit of a projected CRS's first axis (1.0 when unknown); ``crs``: pyproj's,
    rasterio's, WKT or "EPSG:..."."""
    axes = CRS.from_user_input(crs).axis_info
    factor = axes[0].unit_conversion_factor if axes else None
    return float(factor) if factor else 1.0


def projection_scale(crs: Any, x: ArrayLike, y: ArrayLike) -> np.ndarray:
    """How much projected ``crs`` stretches the ground at points (``x``, ``y``) of it: the
    square root of its areal scale (1 where it cannot be computed)."""
    xs, ys = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
    ones = np.ones(xs.shape)
    crs = CRS.from_user_input(crs)
    if not crs.is_projected or xs.size == 0:
        return ones
    try:
        to_lonlat, proj = _projection(crs.to_wkt())
        lon, lat = to_lonlat.transform(xs, ys)
        areal = np.asarray(proj.get_factors(lon, lat).areal_scale, dtype=np.float64)
    except (CRSError, ProjError, TypeError, ValueError, RuntimeError):
        return ones
    scale = np.sqrt(np.abs(areal)).reshape(xs.shape)
    return np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)


@lru_cache(maxsize=16)
def _projection(wkt: str) -> tuple[Transformer, Proj]:
    """The transformer to longitude/latitude and the projection of a CRS (cached: many
    rasters of one folder share their CRS)."""
    crs = CRS.from_wkt(wkt)
    return Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True), Proj(crs)


def metres_per_unit(crs: Any, x: ArrayLike, y: ArrayLike) -> np.ndarray:
    """Ground metres per unit of projected ``crs`` at points (``x``, ``y``) of it: the unit's
    metres, divided by the projection's scale where that is more than
    :data:`SCALE_TOLERANCE` from 1."""
    scale = projection_scale(crs, x, y)
    scale = np.where(np.abs(scale - 1.0) > SCALE_TOLERANCE, scale, 1.0)
    return unit_metres(crs) / scale


def is_stretched(crs: Any, x: float, y: float) -> bool:
    """True where projected ``crs`` counts its units as ground units no longer (at (x, y))."""
    return bool(abs(float(projection_scale(crs, x, y).ravel()[0]) - 1.0) > SCALE_TOLERANCE)
