"""Building labels: vector polygons read in a raster's CRS and burnt into per-window masks.

:func:`read_labels` reads GeoPackage / GeoJSON / Shapefile layers (any OGR vector format),
reprojects them, repairs invalid geometries and keeps their polygonal parts.
:class:`LabelIndex` holds them in an STRtree and rasterises only those touching a window:
class 1 for buildings and, on request, class 2 for the *separation strip* between touching
buildings (where their outlines, buffered by about a pixel, overlap), as SpaceNet / solaris
tooling does so that a model can learn to keep neighbouring buildings apart.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import shapely
from affine import Affine
from pyproj import CRS
from rasterio.features import rasterize
from rasterio.warp import transform_bounds
from shapely import STRtree
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from engine.errors import LabelsError
from engine.geo.outputs import Input
from engine.geo.vectors import DAMAGED_LAYER_HINT, VECTOR_READ_ERRORS

Bounds = tuple[float, float, float, float]

#: Mask values written by :meth:`LabelIndex.mask`.
BACKGROUND, BUILDING, SEPARATION = 0, 1, 2
#: Mask value of a building pixel inside a separation strip (a shared wall; training masks only).
WALL = 3

_POLYGON, _MULTIPOLYGON, _COLLECTION = 3, 6, 7


# ---------------------------------------------------------------- reading


def split_source(source: str | os.PathLike[str]) -> tuple[str, str | None]:
    """Split a QGIS-style source ``file.gpkg|layername=roofs`` into path and layer name."""
    path, _, options = str(source).partition("|")
    layer = None
    for option in options.split("|"):
        key, _, value = option.partition("=")
        if key.strip().lower() == "layername" and value:
            layer = value
    return path, layer


def layer_inputs(role: str, sources: str | Sequence[str] | None) -> list[Input]:
    """The files of vector layer ``sources`` (``file.gpkg|layername=roofs`` reads file.gpkg)."""
    if not sources:
        return []
    items = [sources] if isinstance(sources, str) else list(sources)
    return [Input(split_source(s)[0], f"the {role} {split_source(s)[0]}") for s in items]


def _layer_crs(path: str, layer: str | None) -> str:
    """The layer's CRS as OGR reports it; LabelsError when it is not a readable layer."""
    if not Path(path).exists():
        raise LabelsError(f"Label layer {path} does not exist; check the path.")
    try:
        info = pyogrio.read_info(path, layer=layer)
    except VECTOR_READ_ERRORS as exc:
        raise LabelsError(
            f"{path} is not a vector layer OGR can read ({exc}); give a GeoPackage, GeoJSON or"
            f" Shapefile of building polygons. {DAMAGED_LAYER_HINT}"
        ) from exc
    crs = info.get("crs")
    if not crs:
        raise LabelsError(
            f"Label layer {path} has no coordinate reference system; assign a CRS in QGIS"
            " (Layer Properties > Source, then save) or with `ogr2ogr -a_srs EPSG:XXXX`."
        )
    return str(crs)


def _read_bbox(bounds: Bounds | None, crs_wkt: str, layer_crs: str) -> Bounds | None:
    """``bounds`` (in ``crs_wkt``) as a read filter in the layer's CRS, or None if unknown."""
    if bounds is None:
        return None
    try:
        bbox = transform_bounds(
            CRS.from_user_input(crs_wkt), CRS.from_user_input(layer_crs), *bounds, densify_pts=21
        )
    except Exception:  # noqa: BLE001 - outside the projection's domain: read everything
        return None
    if not np.all(np.isfinite(bbox)):
        return None
    # A little slack: the exact filter runs after reprojection.
    dx, dy = (bbox[2] - bbox[0]) * 0.01, (bbox[3] - bbox[1]) * 0.01
    return (bbox[0] - dx, bbox[1] - dy, bbox[2] + dx, bbox[3] + dy)


def _read_one(source: str, crs_wkt: str, bounds: Bounds | None) -> gpd.GeoSeries:
    """Geometries of one layer, reprojected to ``crs_wkt``."""
    path, layer = split_source(source)
    layer_crs = _layer_crs(path, layer)
    bbox = _read_bbox(bounds, crs_wkt, layer_crs)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="More than one layer found")
            frame = pyogrio.read_dataframe(path, layer=layer, columns=[], bbox=bbox)
    except VECTOR_READ_ERRORS as exc:
        raise LabelsError(
            f"Cannot read the features of {path} ({exc}); give a GeoPackage, GeoJSON or"
            f" Shapefile of building polygons. {DAMAGED_LAYER_HINT}"
        ) from exc
    if not isinstance(frame, gpd.GeoDataFrame):
        raise LabelsError(f"{source} is a table without geometries; give a polygon layer.")
    target = CRS.from_user_input(crs_wkt)
    series = frame.geometry
    return series if series.crs == target else series.to_crs(target)


def polygonal(geoms: np.ndarray) -> np.ndarray:
    """Repair ``geoms`` (shapely.make_valid) and keep their polygonal parts, 2D.

    Polygons and MultiPolygons pass through; a GeometryCollection becomes the MultiPolygon of
    its polygons; anything else (and anything empty or missing) becomes None.
    """
    geoms = np.asarray(geoms, dtype=object)
    out = np.full(len(geoms), None, dtype=object)
    present = np.flatnonzero(~shapely.is_missing(geoms))
    fixed = shapely.make_valid(shapely.force_2d(geoms[present]))
    types = shapely.get_type_id(fixed)
    simple = np.isin(types, (_POLYGON, _MULTIPOLYGON))
    out[present[simple]] = fixed[simple]
    collections = present[types == _COLLECTION]
    if collections.size:
        parts, idx = shapely.get_parts(fixed[types == _COLLECTION], return_index=True)
        inner, inner_idx = shapely.get_parts(parts, return_index=True)  # MultiPolygon members
        keep = shapely.get_type_id(inner) == _POLYGON
        merged = np.full(collections.size, None, dtype=object)
        if keep.any():
            shapely.multipolygons(inner[keep], indices=idx[inner_idx][keep], out=merged)
        out[collections] = merged
    out[shapely.is_empty(out)] = None
    return out


def read_labels(
    paths: Sequence[str] | str, crs_wkt: str, bounds: Bounds | None = None
) -> gpd.GeoDataFrame:
    """Read building polygons from one or more vector layers, in the CRS ``crs_wkt``.

    Invalid geometries are repaired, non-polygonal parts and exact duplicates dropped, and so
    are geometries that cannot be reprojected (outside the CRS's area of use). With ``bounds``
    (in ``crs_wkt``) only polygons intersecting them are kept. The result may be empty:
    callers decide whether that is an error. A path may name a layer QGIS-style:
    ``file.gpkg|layername=buildings``. ``result.attrs`` counts what was read and dropped:
    ``features``, ``not_projectable``, ``not_polygonal``.

    Raises:
        LabelsError: a file is missing, not a vector layer, or its layer has no CRS.
    """
    sources = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    if not sources:
        raise LabelsError("No label layer given; give at least one building polygon layer.")
    series = [_read_one(str(s), crs_wkt, bounds) for s in sources]
    raw = np.concatenate([s.to_numpy() for s in series]) if series else np.empty(0, object)
    present = raw[~shapely.is_missing(raw)]
    finite = np.isfinite(shapely.bounds(present)).all(axis=1) | shapely.is_empty(present)
    fixed = polygonal(present[finite])
    geoms = fixed[shapely.is_geometry(fixed)]
    attrs = {
        "features": len(raw),
        "not_projectable": int((~finite).sum()),
        "not_polygonal": int(finite.sum() - len(geoms)),
    }
    if bounds is not None and len(geoms):
        geoms = geoms[shapely.intersects(geoms, box(*bounds))]
    if len(geoms):
        wkb = shapely.to_wkb(shapely.normalize(geoms))
        _, first = np.unique(wkb, return_index=True)
        geoms = geoms[np.sort(first)]
    frame = gpd.GeoDataFrame(geometry=gpd.GeoSeries(geoms, crs=crs_wkt))
    frame.attrs.update(attrs)
    return frame


# ---------------------------------------------------------------- extents


def bounds_overlap(a: Sequence[float], b: Sequence[float]) -> bool:
    """True when two (xmin, ymin, xmax, ymax) boxes share some area or an edge."""
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


def _fmt(bounds: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in bounds) + ")"


def crs_name(crs_wkt: str) -> str:
    """A short name for a CRS: 'EPSG:32616 (WGS 84 / UTM zone 16N)' or its name."""
    crs = CRS.from_user_input(crs_wkt)
    epsg = crs.to_epsg()
    return f"EPSG:{epsg} ({crs.name})" if epsg else crs.name


def overlap_error(
    labels_bounds: Sequence[float], raster_bounds: Sequence[float], crs_wkt: str
) -> LabelsError:
    """The error for labels that miss the raster, naming both extents."""
    return LabelsError(
        f"The labels do not overlap the raster: labels cover {_fmt(labels_bounds)}, the raster"
        f" covers {_fmt(raster_bounds)} in CRS {crs_name(crs_wkt)}. Are the labels for this"
        " area, and is the label layer's CRS right?"
    )


def labels_for_extent(
    paths: Sequence[str] | str,
    crs_wkt: str,
    bounds: Bounds,
    margin: float = 0.0,
    allow_empty: bool = False,
) -> tuple[LabelIndex, int]:
    """Index of the polygons near ``bounds`` and how many of them intersect ``bounds``.

    Polygons within ``margin`` (CRS units) outside ``bounds`` are kept too, so that separation
    strips at the edge are right. With ``allow_empty``, layers without a single feature give
    an empty index (an area known to hold no buildings).

    Raises:
        LabelsError: the layers hold no polygons at all (features that are not polygons or
            cannot be projected; or no feature, unless ``allow_empty``), or none intersect
            ``bounds``.
    """
    near = (bounds[0] - margin, bounds[1] - margin, bounds[2] + margin, bounds[3] + margin)
    index = LabelIndex(read_labels(paths, crs_wkt, near))
    inside = index.count_in(bounds)
    if inside:
        return index, inside
    everything = read_labels(paths, crs_wkt)
    names = ", ".join(str(p) for p in ([paths] if isinstance(paths, str) else paths))
    if allow_empty and not everything.attrs.get("features", 0):
        return index, 0
    if not len(everything):
        read = everything.attrs
        why = ""
        if read.get("not_projectable"):
            why += (
                f" {read['not_projectable']} feature(s) lie outside the area where CRS"
                f" {crs_name(crs_wkt)} is defined (is the label layer's CRS right?)."
            )
        if read.get("not_polygonal"):
            why += f" {read['not_polygonal']} feature(s) are not polygons (points or lines?)."
        raise LabelsError(
            f"No building polygons in {names} ({read.get('features', 0)} feature(s) read).{why}"
            " Give a layer with building polygons."
        )
    raise overlap_error(tuple(everything.total_bounds), bounds, crs_wkt)


# ---------------------------------------------------------------- masks


def _to_pixels(geoms: np.ndarray, transform: Affine) -> np.ndarray:
    """``geoms`` in the pixel space of ``transform`` (column, row)."""
    inv = ~transform

    def apply(xy: np.ndarray) -> np.ndarray:
        x, y = xy[:, 0], xy[:, 1]
        return np.column_stack([inv.a * x + inv.b * y + inv.c, inv.d * x + inv.e * y + inv.f])

    return np.asarray(shapely.transform(geoms, apply))


def separation_zones(geoms: np.ndarray, width: float) -> np.ndarray:
    """Where two different polygons, each buffered by ``width``, overlap (pairwise pieces)."""
    if len(geoms) < 2:
        return np.empty(0, dtype=object)
    buffered = shapely.buffer(geoms, width, quad_segs=4)
    left, right = STRtree(buffered).query(buffered, predicate="intersects")
    pairs = left < right
    zones = shapely.intersection(buffered[left[pairs]], buffered[right[pairs]])
    return np.asarray(zones[~shapely.is_empty(zones)])


class LabelIndex:
    """Building polygons in one CRS with a spatial index, rasterised window by window."""

    def __init__(self, labels: gpd.GeoDataFrame | gpd.GeoSeries | Sequence[BaseGeometry]):
        if isinstance(labels, gpd.GeoDataFrame):
            labels = labels.geometry
        geoms = np.asarray(list(labels), dtype=object)
        self.geometries: np.ndarray = geoms[~shapely.is_missing(geoms)] if len(geoms) else geoms
        self.tree = STRtree(self.geometries)

    def __len__(self) -> int:
        return len(self.geometries)

    @property
    def total_bounds(self) -> Bounds:
        """(xmin, ymin, xmax, ymax) of all polygons; NaNs when there are none."""
        b = shapely.total_bounds(self.geometries)
        return (float(b[0]), float(b[1]), float(b[2]), float(b[3]))

    def query(self, bounds: Sequence[float]) -> np.ndarray:
        """Indices of the polygons intersecting ``bounds``."""
        if not len(self):
            return np.empty(0, dtype=np.intp)
        return np.sort(self.tree.query(box(*bounds), predicate="intersects"))

    def count_in(self, bounds: Sequence[float]) -> int:
        """How many polygons intersect ``bounds``."""
        return len(self.query(bounds))

    def mask(
        self,
        transform: Affine,
        shape: tuple[int, int],
        separation: bool = False,
        all_touched: bool = False,
        separation_width: float = 1.0,
        walls: bool = False,
    ) -> np.ndarray:
        """A uint8 (H, W) mask of the grid ``transform``/``shape``: 1 building, 0 background.

        With ``separation`` the pixels where two buildings' outlines, each buffered by
        ``separation_width`` pixels, overlap become 2 (the separation strip; a strip of
        2 x ``separation_width`` pixels along a shared wall, and the narrow gap between close
        buildings), taken out of class 1; with ``walls`` too, the strip's pixels inside a
        building are 3 (:data:`WALL`) and only those outside are 2.
        """
        height, width = shape
        out = np.zeros((height, width), dtype=np.uint8)
        margin = separation_width + 1.0 if separation else 0.0
        xs, ys = zip(
            *(
                transform * (c, r)
                for c in (-margin, width + margin)
                for r in (-margin, height + margin)
            ),
            strict=True,
        )
        geoms = self.geometries[self.query((min(xs), min(ys), max(xs), max(ys)))]
        if not len(geoms) or height == 0 or width == 0:
            return out
        rasterize(
            ((g, BUILDING) for g in geoms),
            out_shape=shape,
            transform=transform,
            out=out,
            all_touched=all_touched,
        )
        if separation:
            zones = separation_zones(_to_pixels(geoms, transform), separation_width)
            if len(zones):
                strip = rasterize(
                    ((z, 1) for z in zones),
                    out_shape=shape,
                    transform=Affine.identity(),
                    dtype="uint8",
                ).astype(bool)
                inside = out == BUILDING
                out[strip] = SEPARATION
                if walls:
                    out[strip & inside] = WALL
        return out
