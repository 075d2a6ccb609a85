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


def projection_scales(crs: Any, x: ArrayLike, y: ArrayLike) -> np.ndarray:
    """How much projected ``crs`` stretches the ground at points (``x``, ``y``) of it, as
    (3, N): along parallels (east-west), along meridians (north-south), and the square root of
    the areal scale; 1 where they cannot be computed."""
    xs, ys = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
    ones = np.ones((3, xs.size))
    crs = CRS.from_user_input(crs)
    if not crs.is_projected or xs.size == 0:
        return ones
    try:
        to_lonlat, proj = _projection(crs.to_wkt())
        lon, lat = to_lonlat.transform(xs.ravel(), ys.ravel())
        factors = proj.get_factors(lon, lat)
        scales = np.stack(
            [
                np.asarray(factors.parallel_scale, dtype=np.float64).ravel(),
                np.asarray(factors.meridional_scale, dtype=np.float64).ravel(),
                np.sqrt(np.abs(np.asarray(factors.areal_scale, dtype=np.float64))).ravel(),
            ]
        )
    except (CRSError, ProjError, TypeError, ValueError, RuntimeError):
        return ones
    return np.where(np.isfinite(scales) & (scales > 0), scales, 1.0)


def projection_scale(crs: Any, x: ArrayLike, y: ArrayLike) -> np.ndarray:
    """The square root of projected ``crs``'s areal scale at (``x``, ``y``) (1 where it cannot
    be computed): how much it stretches areas, as a length."""
    xs = np.asarray(x, dtype=np.float64)
    shape = np.broadcast(xs, np.asarray(y)).shape
    return np.asarray(projection_scales(crs, x, y)[2].reshape(shape), dtype=np.float64)


@lru_cache(maxsize=16)
def _projection(wkt: str) -> tuple[Transformer, Proj]:
    """The transformer to longitude/latitude and the projection of a CRS (cached: many
    rasters of one folder share their CRS)."""
    crs = CRS.from_wkt(wkt)
    return Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True), Proj(crs)


def metres_per_unit(crs: Any, x: ArrayLike, y: ArrayLike) -> np.ndarray:
    """Ground metres per unit of projected ``crs`` at points (``x``, ``y``) of it, for areas
    (the square root of the areal scale): the unit's metres, divided by the projection's
    scale where that is more than :data:`SCALE_TOLERANCE` from 1."""
    scale = projection_scale(crs, x, y)
    scale = np.where(np.abs(scale - 1.0) > SCALE_TOLERANCE, scale, 1.0)
    return unit_metres(crs) / scale


def metres_per_unit_xy(crs: Any, x: float, y: float) -> tuple[float, float]:
    """Ground metres per unit of projected ``crs`` along its x (east-west) and y (north-south)
    axes at (``x``, ``y``): the unit's metres, divided by the scale along parallels and
    meridians where either is more than :data:`SCALE_TOLERANCE` from 1 (Web Mercator: both
    1/cos(latitude); an equal-area projection stretches one axis and shrinks the other)."""
    along_x, along_y, _ = projection_scales(crs, x, y)[:, 0]
    unit = unit_metres(crs)
    if max(abs(along_x - 1.0), abs(along_y - 1.0)) <= SCALE_TOLERANCE:
        return unit, unit
    return unit / float(along_x), unit / float(along_y)


def is_stretched(crs: Any, x: float, y: float) -> bool:
    """True where projected ``crs`` counts its units as ground units no longer (at (x, y))."""
    return bool(abs(float(projection_scale(crs, x, y).ravel()[0]) - 1.0) > SCALE_TOLERANCE)
