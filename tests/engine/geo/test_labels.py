"""Vector labels: reading, repair, reprojection and masks on a raster grid."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
from affine import Affine
from pyproj import CRS
from shapely.geometry import GeometryCollection, LineString, MultiPolygon, Polygon, box

from engine.errors import LabelsError
from engine.geo.labels import (
    LabelIndex,
    bounds_overlap,
    labels_for_extent,
    overlap_error,
    polygonal,
    read_labels,
)
from tests.engine.conftest import UTM, WGS84

UTM_GRID = Affine(0.5, 0, 500_000.0, 0, -0.5, 3_700_000.0)
GEO_GRID = Affine(1e-5, 0, 85.52, 0, -1e-5, 27.63)
UTM_WKT = CRS.from_user_input(UTM).to_wkt()
WGS84_WKT = CRS.from_user_input(WGS84).to_wkt()


def px_box(t: Affine, col0: float, row0: float, col1: float, row1: float) -> Polygon:
    """A box given in pixel coordinates of grid ``t``, in the grid's CRS."""
    x0, y0 = t * (col0, row0)
    x1, y1 = t * (col1, row1)
    return box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


def expected(shape: tuple[int, int], *boxes: tuple[int, int, int, int]) -> np.ndarray:
    """A mask with 1 inside pixel boxes (col0, row0, col1, row1)."""
    out = np.zeros(shape, dtype=np.uint8)
    for c0, r0, c1, r1 in boxes:
        out[r0:r1, c0:c1] = 1
    return out


def test_labels_in_another_crs_land_on_the_right_pixels_of_a_utm_grid(
    labels_factory: Callable[..., Path],
) -> None:
    squares = [px_box(UTM_GRID, 2, 3, 8, 9), px_box(UTM_GRID, 12, 4, 18, 14)]
    in_wgs84 = gpd.GeoSeries(squares, crs=UTM).to_crs(WGS84)
    path = labels_factory("wgs84.gpkg", list(in_wgs84), crs=WGS84)

    labels = read_labels([str(path)], UTM_WKT)

    assert CRS.from_user_input(labels.crs) == CRS.from_user_input(UTM)
    mask = LabelIndex(labels).mask(UTM_GRID, (20, 24))
    assert np.array_equal(mask, expected((20, 24), (2, 3, 8, 9), (12, 4, 18, 14)))


def test_utm_labels_land_on_the_right_pixels_of_a_geographic_grid(
    labels_factory: Callable[..., Path],
) -> None:
    square = px_box(GEO_GRID, 5, 2, 15, 12)
    in_utm = gpd.GeoSeries([square], crs=WGS84).to_crs("EPSG:32645")
    path = labels_factory("utm.gpkg", list(in_utm), crs="EPSG:32645")

    labels = read_labels(str(path), WGS84_WKT)

    mask = LabelIndex(labels).mask(GEO_GRID, (16, 20))
    assert np.array_equal(mask, expected((16, 20), (5, 2, 15, 12)))


def test_polygons_and_multipolygons_from_several_files(
    labels_factory: Callable[..., Path],
) -> None:
    multi = MultiPolygon([px_box(UTM_GRID, 0, 0, 2, 2), px_box(UTM_GRID, 6, 6, 8, 8)])
    a = labels_factory("a.gpkg", [multi])
    b = labels_factory("b.geojson", [px_box(UTM_GRID, 3, 0, 5, 2)])

    labels = read_labels([str(a), str(b)], UTM_WKT)

    assert len(labels) == 2
    mask = LabelIndex(labels).mask(UTM_GRID, (8, 8))
    assert np.array_equal(mask, expected((8, 8), (0, 0, 2, 2), (6, 6, 8, 8), (3, 0, 5, 2)))


def test_bow_tie_polygon_is_repaired_into_its_two_triangles(
    labels_factory: Callable[..., Path],
) -> None:
    (x0, y1), (x1, y0) = UTM_GRID * (0, 0), UTM_GRID * (10, 10)
    bow_tie = Polygon([(x0, y0), (x1, y1), (x1, y0), (x0, y1)])
    assert not bow_tie.is_valid
    path = labels_factory("bowtie.gpkg", [bow_tie])

    labels = read_labels(str(path), UTM_WKT)

    (geom,) = labels.geometry
    assert geom.is_valid and geom.geom_type == "MultiPolygon"
    assert geom.area == pytest.approx(bow_tie.envelope.area / 2)
    mask = LabelIndex(labels).mask(UTM_GRID, (10, 10))
    # Left and right triangles meet at the centre: the middle of the top row is background.
    assert mask[5, 0] == 1 and mask[5, 9] == 1 and mask[0, 5] == 0 and mask[9, 4] == 0


def test_polygonal_keeps_polygon_parts_of_collections_and_drops_lines() -> None:
    square = box(0, 0, 2, 2)
    collection = GeometryCollection([square, LineString([(0, 0), (0, -1)]), box(5, 5, 6, 6)])
    spike = Polygon([(0, 0), (2, 0), (2, 2), (0, 2), (0, 0), (0, -1), (0, 0)])

    out = polygonal(np.array([square, collection, LineString([(0, 0), (1, 1)]), None, spike]))

    assert out[0].equals(square)
    assert out[1].geom_type == "MultiPolygon" and out[1].area == pytest.approx(5.0)
    assert out[2] is None and out[3] is None
    assert out[4].area == pytest.approx(4.0) and out[4].is_valid


def test_bounds_keep_only_intersecting_polygons_and_duplicates_are_dropped(
    labels_factory: Callable[..., Path],
) -> None:
    inside, outside = box(0, 0, 1, 1), box(50, 50, 51, 51)
    path = labels_factory("l.gpkg", [inside, outside, inside])

    assert len(read_labels(str(path), UTM_WKT)) == 2
    kept = read_labels(str(path), UTM_WKT, bounds=(0.5, 0.5, 10, 10))
    assert len(kept) == 1 and kept.geometry.iloc[0].equals(inside)


def test_layer_name_can_be_given_qgis_style(tmp_path: Path) -> None:
    path = tmp_path / "two.gpkg"
    gpd.GeoDataFrame(geometry=[box(0, 0, 1, 1)], crs=UTM).to_file(path, layer="roads")
    gpd.GeoDataFrame(geometry=[box(0, 0, 3, 3), box(5, 5, 6, 6)], crs=UTM).to_file(
        path, layer="buildings"
    )

    assert len(read_labels(f"{path}|layername=buildings", UTM_WKT)) == 2
    assert len(read_labels(f"{path}|layername=roads", UTM_WKT)) == 1


def test_missing_unreadable_and_crs_less_layers_raise_labels_error(
    tmp_path: Path,
    labels_factory: Callable[..., Path],
) -> None:
    with pytest.raises(LabelsError, match="does not exist"):
        read_labels([str(tmp_path / "nope.gpkg")], UTM_WKT)
    garbage = tmp_path / "garbage.geojson"
    garbage.write_text("this is not json")
    with pytest.raises(LabelsError, match="not a vector layer OGR can read"):
        read_labels([str(garbage)], UTM_WKT)
    with pytest.warns(UserWarning, match="crs"):
        no_crs = labels_factory("nocrs.shp", [box(0, 0, 1, 1)], crs=None)
    with pytest.raises(LabelsError, match="no coordinate reference system.*ogr2ogr -a_srs"):
        read_labels([str(no_crs)], UTM_WKT)


def test_empty_layer_gives_an_empty_frame(labels_factory: Callable[..., Path]) -> None:
    path = labels_factory("empty.gpkg", [])

    labels = read_labels(str(path), UTM_WKT)

    assert len(labels) == 0
    index = LabelIndex(labels)
    assert len(index) == 0 and index.count_in((0, 0, 1e9, 1e9)) == 0
    assert not index.mask(UTM_GRID, (4, 4)).any()


def test_index_counts_and_bounds() -> None:
    index = LabelIndex([box(0, 0, 1, 1), box(10, 10, 12, 12), None])

    assert len(index) == 2
    assert index.total_bounds == (0.0, 0.0, 12.0, 12.0)
    assert index.count_in((0.5, 0.5, 3, 3)) == 1
    assert index.count_in((-5, -5, 20, 20)) == 2
    assert index.count_in((3, 3, 4, 4)) == 0


def test_separation_strip_lies_exactly_along_a_shared_wall() -> None:
    grid = Affine(1, 0, 0, 0, -1, 12)
    index = LabelIndex([px_box(grid, 2, 2, 6, 10), px_box(grid, 6, 2, 10, 10)])

    mask = index.mask(grid, (12, 12), separation=True)

    want = expected((12, 12), (2, 2, 10, 10))
    want[1:11, 5:7] = 2  # one pixel each side of the wall, and its ends (within 1 px of both)
    assert np.array_equal(mask, want)
    plain = index.mask(grid, (12, 12))
    assert np.array_equal(plain, expected((12, 12), (2, 2, 10, 10)))


def test_separation_strip_fills_a_narrow_gap_but_not_a_wide_one() -> None:
    grid = Affine(1, 0, 0, 0, -1, 12)
    narrow = LabelIndex([px_box(grid, 1, 2, 5, 10), px_box(grid, 6, 2, 10, 10)])
    wide = LabelIndex([px_box(grid, 1, 2, 5, 10), px_box(grid, 8, 2, 11, 10)])

    assert np.all(narrow.mask(grid, (12, 12), separation=True)[2:10, 5] == 2)
    wide_mask = wide.mask(grid, (12, 12), separation=True)
    assert not (wide_mask == 2).any()
    assert np.array_equal(wide_mask, wide.mask(grid, (12, 12)))


def test_window_masks_equal_the_slices_of_one_big_mask() -> None:
    grid = Affine(0.5, 0, 1000.0, 0, -0.5, 2000.0)
    rng = np.random.default_rng(3)
    boxes = []
    for _ in range(40):
        c, r = rng.integers(0, 60, size=2)
        w, h = rng.integers(2, 9, size=2)
        boxes.append(shapely.affinity.rotate(px_box(grid, c, r, c + w, r + h), rng.uniform(0, 40)))
    index = LabelIndex(boxes)
    full = index.mask(grid, (64, 64), separation=True)
    assert (full == 1).any() and (full == 2).any()

    for row in range(0, 64, 16):
        for col in range(0, 64, 16):
            part = index.mask(grid * Affine.translation(col, row), (16, 16), separation=True)
            assert np.array_equal(part, full[row : row + 16, col : col + 16])


def test_all_touched_burns_more_pixels() -> None:
    grid = Affine(1, 0, 0, 0, -1, 10)
    index = LabelIndex([box(2.3, 2.3, 5.4, 5.4)])

    centres = index.mask(grid, (10, 10))
    touched = index.mask(grid, (10, 10), all_touched=True)

    assert centres.sum() == 9 and touched.sum() == 16


def test_labels_for_extent_reports_empty_and_far_away_labels(
    labels_factory: Callable[..., Path],
) -> None:
    empty = labels_factory("empty.gpkg", [])
    far = labels_factory("far.gpkg", [box(0, 0, 10, 10)])
    near = labels_factory("near.gpkg", [box(100, 100, 110, 110), box(0, 0, 10, 10)])

    with pytest.raises(LabelsError, match="No building polygons in .*empty.gpkg"):
        labels_for_extent([str(empty)], UTM_WKT, (100, 100, 200, 200))
    with pytest.raises(LabelsError, match=r"do not overlap.*\(0, 0, 10, 10\).*EPSG:32616"):
        labels_for_extent([str(far)], UTM_WKT, (100, 100, 200, 200))
    index, inside = labels_for_extent([str(near)], UTM_WKT, (100, 100, 200, 200), margin=5)
    assert inside == 1 and len(index) == 1


def test_labels_that_cannot_be_reprojected_are_dropped_and_explained(
    labels_factory: Callable[..., Path],
) -> None:
    # Longitudes 0-10 are far outside UTM zone 16N (around -87): they project to infinity.
    path = labels_factory("africa.gpkg", [box(0, 0, 10, 10), box(1, 1, 2, 2)], crs=WGS84)

    labels = read_labels(str(path), UTM_WKT)

    assert len(labels) == 0
    assert labels.attrs == {"features": 2, "not_projectable": 2, "not_polygonal": 0}
    with pytest.raises(LabelsError, match="2 feature.*outside the area where CRS EPSG:32616"):
        labels_for_extent(str(path), UTM_WKT, (500_000, 3_700_000, 500_100, 3_700_100))


def test_point_layers_are_explained(labels_factory: Callable[..., Path]) -> None:
    path = labels_factory("points.gpkg", [shapely.Point(1, 1), shapely.Point(2, 2)])

    with pytest.raises(LabelsError, match=r"\(2 feature\(s\) read\).*2 feature.*not polygons"):
        labels_for_extent(str(path), UTM_WKT, (0, 0, 10, 10))


def test_overlap_helpers() -> None:
    assert bounds_overlap((0, 0, 1, 1), (1, 1, 2, 2))
    assert not bounds_overlap((0, 0, 1, 1), (1.5, 0, 2, 1))
    message = str(overlap_error((0, 0, 1, 1), (5, 5, 6, 6), WGS84_WKT))
    assert "EPSG:4326" in message and "(5, 5, 6, 6)" in message and "CRS right" in message
