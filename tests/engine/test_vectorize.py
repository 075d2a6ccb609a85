"""Tests for engine.vectorize and engine.polygons.shapes: seams, areas, cleanup, outputs, memory."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from rasterio import features
from rasterio.windows import Window
from shapely.geometry import box, shape

from engine.config import VectorizeConfig
from engine.errors import CancelledError, ConfigError, OutputError
from engine.events import NullProgress, RecordingProgress
from engine.geo.windows import Grid
from engine.polygons.seams import PolygonStream, SeamJoiner, polygonize_windows
from engine.polygons.shapes import canonical_polygon
from engine.vectorize import vectorize
from tests.engine.conftest import UTM, WGS84

PX = 0.5  # metres per pixel of the default test grid (UTM 16N)
PX_AREA = PX * PX


def _blocks(width: int, height: int, size: int) -> list[Window]:
    """The disjoint windows vectorize reads (any transform: only pixel positions matter)."""
    return list(Grid(width, height, Affine.identity()).blocks(size))


def _config(raster: Path, output: Path, **kw: Any) -> VectorizeConfig:
    """A config with cleanup off unless asked for (exact pixel polygons)."""
    base: dict[str, Any] = {"min_area_m2": 0.0, "hole_area_m2": 0.0, "simplify": 0.0}
    return VectorizeConfig(raster=str(raster), output=str(output), **{**base, **kw})


def _run(raster: Path, output: Path, **kw: Any) -> tuple[dict[str, Any], gpd.GeoDataFrame]:
    result = vectorize(_config(raster, output, **kw), NullProgress())
    return result, gpd.read_file(output)


def _shapes_mask(size: int = 200) -> tuple[np.ndarray, list[int]]:
    """Three rectangles, an L-shape and a ring with a 10x10 hole; returns mask and pixel counts."""
    m = np.zeros((size, size), np.uint8)
    parts = [
        (slice(10, 30), slice(10, 50)),
        (slice(60, 70), slice(20, 25)),
        (slice(150, 190), slice(150, 160)),
    ]
    for rows, cols in parts:
        m[rows, cols] = 1
    m[100:140, 100:110] = 1  # L: vertical bar...
    m[130:140, 110:130] = 1  # ...and foot
    m[20:60, 120:160] = 1  # ring...
    m[35:45, 135:145] = 0  # ...with its hole
    counts = [800, 50, 400, 400 + 200, 1600 - 100]
    return m, counts


# ------------------------------------------------------------------ round trip, areas


def test_shapes_round_trip_exact_areas(raster_factory: Callable[..., Path], tmp_path: Path) -> None:
    mask, counts = _shapes_mask()
    result, gdf = _run(raster_factory("m.tif", mask), tmp_path / "out.gpkg")
    assert result["buildings"] == len(gdf) == 5
    assert sorted(gdf["area_m2"]) == pytest.approx(sorted(c * PX_AREA for c in counts))
    assert result["total_area_m2"] == pytest.approx(sum(counts) * PX_AREA)
    assert (gdf["score"] == 1.0).all()
    assert sorted(gdf["id"]) == [1, 2, 3, 4, 5]
    assert gdf.crs == UTM
    assert set(gdf.geom_type) == {"Polygon"}
    ring = gdf.loc[gdf["area_m2"].idxmax()].geometry
    assert len(ring.interiors) == 1 and ring.interiors[0].length == pytest.approx(40 * PX)


def test_default_cleanup_keeps_areas_within_a_pixel_perimeter(
    raster_factory: Callable[..., Path], tmp_path: Path
) -> None:
    mask, counts = _shapes_mask()
    cfg = VectorizeConfig(
        raster=str(raster_factory("m.tif", mask)), output=str(tmp_path / "o.gpkg")
    )
    vectorize(cfg, NullProgress())
    gdf = gpd.read_file(tmp_path / "o.gpkg").sort_values("area_m2")
    for (_, row), true_px in zip(gdf.iterrows(), sorted(counts), strict=True):
        true_area = true_px * PX_AREA
        assert abs(row["area_m2"] - true_area) <= row.geometry.length * PX


# ------------------------------------------------------------------ seams


def _seam_mask() -> np.ndarray:
    """Shapes across 64-pixel seams: both directions, a 4-way corner, a U closing a window
    row later, a ring round a corner, and squares touching only diagonally across seams."""
    m = np.zeros((300, 280), np.uint8)
    m[10:20, 40:100] = 1  # across a vertical seam
    m[40:100, 5:15] = 1  # across a horizontal seam
    m[100:160, 100:160] = 1  # over the 4-way corner (128, 128)
    m[160:180, 180:260] = 1  # spans two vertical seams
    m[200:260, 20:30] = 1  # U: left arm...
    m[200:260, 50:60] = 1  # ...right arm (separate in the window row above 256)...
    m[255:265, 20:60] = 1  # ...joined below the seam at 256
    m[170:250, 95:170] = 1  # ring round the corner (192, 128)...
    m[185:235, 115:155] = 0  # ...with a hole split over four windows
    m[30:40, 54:64] = 1  # diagonal pair across the seam at column 64
    m[40:50, 64:74] = 1
    m[118:128, 190:192] = 1  # diagonal pair across the 4-way corner (128, 192)
    m[110:128, 180:192] = 1
    m[128:140, 192:200] = 1
    return m


def test_windowed_equals_whole_raster(raster_factory: Callable[..., Path], tmp_path: Path) -> None:
    mask = _seam_mask()
    rng = np.random.default_rng(1)
    prob = np.where(mask > 0, rng.uniform(0.5, 1.0, mask.shape), rng.uniform(0, 0.49, mask.shape))
    raster = raster_factory("p.tif", prob.astype(np.float32))
    _, small = _run(raster, tmp_path / "small.gpkg", window_size=64)
    _, whole = _run(raster, tmp_path / "whole.gpkg", window_size=4096)
    reference = [shape(g) for g, _ in features.shapes(mask, mask=mask > 0, connectivity=4)]
    assert len(small) == len(whole) == len(reference) == 10
    for a, b in zip(small.geometry, whole.geometry, strict=True):
        assert a.equals_exact(b, 0.0)
    np.testing.assert_allclose(small["score"], whole["score"], rtol=1e-12)
    np.testing.assert_allclose(small["area_m2"], whole["area_m2"], rtol=1e-12)
    ring = small.loc[small["area_m2"].idxmax()].geometry
    assert len(ring.interiors) == 1


@pytest.mark.parametrize("size", [7, 16, 33])
def test_seam_joiner_equals_shapes_on_random_masks(size: int) -> None:
    rng = np.random.default_rng(size)
    for _ in range(3):
        h, w = (int(v) for v in rng.integers(40, 120, 2))
        prob = rng.random((h, w))
        ones = np.ones((h, w), bool)
        pieces = ((win, prob[win.toslices()], ones[win.toslices()]) for win in _blocks(w, h, size))
        got = list(polygonize_windows(pieces, w, h, 0.5))
        mask = prob >= 0.5
        shapes = features.shapes(mask.view(np.uint8), mask=mask, connectivity=4)
        ref = sorted(canonical_polygon(shape(g)).wkb for g, _ in shapes)
        assert sorted(canonical_polygon(b.geometry).wkb for b in got) == ref
        assert sum(b.pixels for b in got) == mask.sum()
        assert sum(b.score_sum for b in got) == pytest.approx(prob[mask].sum(), rel=1e-12)
        for b in got:
            assert b.geometry.area == b.pixels


def test_seam_joiner_rejects_windows_out_of_order() -> None:
    joiner = SeamJoiner(128, 128, 0.5)
    data, valid = np.ones((64, 64)), np.ones((64, 64), bool)
    with pytest.raises(ValueError, match="row-major"):
        joiner.add(Window(64, 0, 64, 64), data, valid)


# ------------------------------------------------------------------ CRS and areas


def test_geographic_areas_match_utm(raster_factory: Callable[..., Path], tmp_path: Path) -> None:
    mask, counts = _shapes_mask()
    lat = 33.7  # Atlanta, in UTM 16N near its central meridian
    dx = PX / (111_320.0 * math.cos(math.radians(lat)))
    dy = PX / 110_574.0
    geo = raster_factory("g.tif", mask, crs=WGS84, transform=Affine(dx, 0, -87.0, 0, -dy, lat))
    _, utm = _run(raster_factory("u.tif", mask), tmp_path / "u.gpkg")
    _, wgs = _run(geo, tmp_path / "g.gpkg")
    assert wgs.crs == WGS84
    assert wgs.total_bounds[0] == pytest.approx(-87.0, abs=1e-3)
    np.testing.assert_allclose(np.sort(wgs["area_m2"]), np.sort(utm["area_m2"]), rtol=0.01)


def test_feet_crs_area_uses_unit_factor(
    raster_factory: Callable[..., Path], tmp_path: Path
) -> None:
    mask = np.zeros((100, 100), np.uint8)
    mask[10:30, 10:60] = 1
    feet = Affine(1.0, 0, 2_200_000.0, 0, -1.0, 1_400_000.0)
    _, gdf = _run(
        raster_factory("f.tif", mask, crs="EPSG:2240", transform=feet), tmp_path / "f.gpkg"
    )
    assert gdf["area_m2"].iloc[0] == pytest.approx(1000 * 0.3048006096**2, rel=1e-6)


# ------------------------------------------------------------------ values, nodata, scores


def test_float_probability_score_is_the_mean(
    raster_factory: Callable[..., Path], tmp_path: Path
) -> None:
    prob = np.full((100, 100), 0.1, np.float32)
    prob[10:40, 10:40] = 0.9
    prob[10:40, 40:80] = 0.6  # same building, lower probability
    prob[60:90, 60:90] = 0.7
    prob[60:70, 60:70] = 0.3  # below threshold: cut out of the second building
    _, gdf = _run(raster_factory("p.tif", prob), tmp_path / "o.gpkg", window_size=64)
    by_area = gdf.sort_values("area_m2")
    expected_first = (900 * 0.9 + 1200 * 0.6) / 2100
    assert by_area["score"].tolist() == pytest.approx([0.7, expected_first], rel=1e-6)
    assert by_area["area_m2"].tolist() == pytest.approx([800 * PX_AREA, 2100 * PX_AREA])


def test_nodata_pixels_are_never_building(
    raster_factory: Callable[..., Path], tmp_path: Path
) -> None:
    mask = np.zeros((80, 80), np.uint8)
    mask[10:50, 10:50] = 1
    mask[10:50, 28:32] = 255  # nodata splits the square in two
    _, gdf = _run(raster_factory("n.tif", mask, nodata=255), tmp_path / "o.gpkg")
    assert len(gdf) == 2
    assert gdf["area_m2"].sum() == pytest.approx((1600 - 160) * PX_AREA)


def test_no_pixel_reaching_threshold_writes_empty_layer(
    raster_factory: Callable[..., Path], tmp_path: Path
) -> None:
    prob = np.full((70, 70), 0.2, np.float32)
    progress = RecordingProgress()
    out = tmp_path / "empty.gpkg"
    result = vectorize(_config(raster_factory("p.tif", prob), out), progress)
    assert result == {"output": str(out), "buildings": 0, "total_area_m2": 0.0}
    gdf = gpd.read_file(out)
    assert len(gdf) == 0 and gdf.crs == UTM
    assert {"id", "area_m2", "score"} <= set(gdf.columns)
    assert any("No pixel reaches the threshold 0.5" in m and "0.2" in m for m in progress.messages)
    assert progress.percents[-1] == 100.0


# ------------------------------------------------------------------ cleanup


def test_min_area_drops_small_polygons(raster_factory: Callable[..., Path], tmp_path: Path) -> None:
    mask = np.zeros((64, 64), np.uint8)
    mask[5:7, 5:7] = 1  # 1 m²
    mask[20:40, 20:40] = 1  # 100 m²
    raster = raster_factory("m.tif", mask)
    _, kept = _run(raster, tmp_path / "a.gpkg", min_area_m2=0.5)
    _, dropped = _run(raster, tmp_path / "b.gpkg", min_area_m2=4.0)
    assert len(kept) == 2
    assert dropped["area_m2"].tolist() == [100.0]
    assert dropped["id"].tolist() == [1]


def test_small_holes_are_filled(raster_factory: Callable[..., Path], tmp_path: Path) -> None:
    mask = np.zeros((64, 64), np.uint8)
    mask[10:50, 10:50] = 1
    mask[20:22, 20:22] = 0  # 1 m² hole
    mask[30:40, 30:40] = 0  # 25 m² hole
    raster = raster_factory("m.tif", mask)
    _, kept = _run(raster, tmp_path / "a.gpkg", hole_area_m2=0.5)
    _, filled = _run(raster, tmp_path / "b.gpkg", hole_area_m2=4.0)
    assert len(kept.geometry.iloc[0].interiors) == 2
    assert len(filled.geometry.iloc[0].interiors) == 1
    assert filled["area_m2"].iloc[0] == pytest.approx((1600 - 100) * PX_AREA)


def _rotated_rectangle_mask() -> np.ndarray:
    rect = shapely.affinity.rotate(box(30, 40, 130, 90), 25, origin="centroid")
    return features.rasterize([(rect, 1)], out_shape=(160, 160), dtype="uint8")


def test_simplify_reduces_vertices_and_keeps_area(
    raster_factory: Callable[..., Path], tmp_path: Path
) -> None:
    raster = raster_factory("r.tif", _rotated_rectangle_mask())
    _, raw = _run(raster, tmp_path / "a.gpkg")
    _, simple = _run(raster, tmp_path / "b.gpkg", simplify=1.0)
    n_raw = len(raw.geometry.iloc[0].exterior.coords)
    n_simple = len(simple.geometry.iloc[0].exterior.coords)
    assert n_simple < n_raw / 4
    tolerance = raw.geometry.iloc[0].length * PX  # one pixel along the perimeter
    assert abs(simple["area_m2"].iloc[0] - raw["area_m2"].iloc[0]) < tolerance
    assert simple.geometry.iloc[0].is_valid


def test_regularize_squares_a_noisy_rectangle(
    raster_factory: Callable[..., Path], tmp_path: Path
) -> None:
    mask = _rotated_rectangle_mask()
    rng = np.random.default_rng(3)
    edge = features.rasterize(
        [(shapely.affinity.rotate(box(30, 40, 130, 90), 25, origin="centroid").boundary, 1)],
        out_shape=mask.shape,
        dtype="uint8",
        all_touched=True,
    ).astype(bool)
    flips = edge & (rng.random(mask.shape) < 0.3)
    mask[flips] = 1 - mask[flips]
    raster = raster_factory("n.tif", mask)
    # the default minimum area: the specks the flips make are no buildings
    _, plain = _run(raster, tmp_path / "p.gpkg", simplify=1.0, min_area_m2=4.0)
    _, square = _run(raster, tmp_path / "r.gpkg", regularize=True, simplify=1.0, min_area_m2=4.0)
    assert len(plain.loc[plain["area_m2"].idxmax()].geometry.exterior.coords) > 5
    big = square.loc[square["area_m2"].idxmax()]
    assert len(big.geometry.exterior.coords) == 5
    corners = np.diff(np.asarray(big.geometry.exterior.coords), axis=0)
    assert abs(np.dot(corners[0], corners[1])) < 1e-6 * np.dot(corners[0], corners[0])
    assert big["area_m2"] == pytest.approx(100 * 50 * PX_AREA, rel=0.05)


# ------------------------------------------------------------------ outputs, errors, cancel


@pytest.mark.parametrize(
    ("name", "driver"),
    [
        ("o.geojson", "GeoJSON"),
        ("o.shp", "ESRI Shapefile"),
        ("O.SHP", "ESRI Shapefile"),  # as Windows users write it: OGR writes .shp parts
        ("o.fgb", "FlatGeobuf"),
    ],
)
def test_output_format_follows_extension(
    raster_factory: Callable[..., Path], tmp_path: Path, name: str, driver: str
) -> None:
    import pyogrio

    mask, _ = _shapes_mask()
    _, gdf = _run(raster_factory("m.tif", mask), tmp_path / name)
    assert pyogrio.read_info(tmp_path / name)["driver"] == driver
    assert len(gdf) == 5 and gdf.crs == UTM
    assert {"id", "area_m2", "score"} <= set(gdf.columns)
    assert not list(tmp_path.glob(".*part*"))


@pytest.mark.parametrize("name", ["o.txt", "o.tif", "o.csv"])
def test_an_output_of_no_vector_format_is_refused_before_any_work(
    raster_factory: Callable[..., Path], tmp_path: Path, name: str
) -> None:
    """``.txt`` made GDAL's VDV driver write a folder of hidden files while vectorize said it
    had written the file: now refused, naming the extension and the names to use."""
    mask, _ = _shapes_mask()
    raster = raster_factory("m.tif", mask)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(OutputError) as caught:
        vectorize(_config(raster, tmp_path / name, overwrite=True), NullProgress())
    suffix = Path(name).suffix
    assert f"has the extension {suffix}, of no vector format" in str(caught.value)
    assert "o.gpkg" in str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize(
    ("name", "suggested"),
    [("o.txt", "o.gpkg"), ("o.gpkg.zip", "o.gpkg"), ("roofs_v1.2", "roofs_v1.2.gpkg")],
)
def test_the_refusal_suggests_a_geopackage_name(name: str, suggested: str) -> None:
    from engine.geo.vectors import vector_driver

    with pytest.raises(OutputError, match=f"name it {suggested} "):
        vector_driver(Path(name))


@pytest.mark.parametrize("name", ["out", "a.b.gpkg", "OUT.GPKG", "o.SHP", "o.GeoJSON", "o.fgb"])
def test_the_vector_formats_footprint_writes_are_accepted(name: str) -> None:
    from engine.geo.vectors import DRIVERS, vector_driver

    assert vector_driver(Path(name)) in DRIVERS.values()


def test_gpkg_layer_is_named_after_the_file(
    raster_factory: Callable[..., Path], tmp_path: Path
) -> None:
    import pyogrio

    mask, _ = _shapes_mask()
    _run(raster_factory("m.tif", mask), tmp_path / "houses.gpkg")
    assert [layer[0] for layer in pyogrio.list_layers(tmp_path / "houses.gpkg")] == ["houses"]


def test_existing_output_needs_overwrite(
    raster_factory: Callable[..., Path], tmp_path: Path
) -> None:
    mask, _ = _shapes_mask()
    raster = raster_factory("m.tif", mask)
    out = tmp_path / "o.gpkg"
    out.write_bytes(b"keep me")
    with pytest.raises(OutputError, match="overwrite"):
        vectorize(_config(raster, out), NullProgress())
    assert out.read_bytes() == b"keep me"
    vectorize(_config(raster, out, overwrite=True), NullProgress())
    assert len(gpd.read_file(out)) == 5


def test_cancel_leaves_nothing(raster_factory: Callable[..., Path], tmp_path: Path) -> None:
    mask, _ = _shapes_mask()
    raster = raster_factory("m.tif", mask)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(CancelledError):
        vectorize(_config(raster, out_dir / "o.gpkg", window_size=64), RecordingProgress(2))
    assert list(out_dir.iterdir()) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"threshold": 0.0}, "Threshold"),
        ({"threshold": float("nan")}, "Threshold"),
        ({"window_size": 32}, "at least 64"),
        ({"band": 2}, "Band"),
        ({"simplify": -1.0}, "simplify"),
    ],
)
def test_bad_parameters_raise_config_error(
    raster_factory: Callable[..., Path], tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    raster = raster_factory("m.tif", np.zeros((64, 64), np.uint8))
    with pytest.raises(ConfigError, match=message):
        vectorize(_config(raster, tmp_path / "o.gpkg", **change), NullProgress())
    assert not (tmp_path / "o.gpkg").exists()


def test_progress_is_reported_per_window(
    raster_factory: Callable[..., Path], tmp_path: Path
) -> None:
    mask, _ = _shapes_mask()
    progress = RecordingProgress()
    vectorize(_config(raster_factory("m.tif", mask), tmp_path / "o.gpkg", window_size=64), progress)
    assert len(progress.percents) == 16 + 1  # 4x4 windows, then done
    assert progress.percents == sorted(progress.percents) and progress.percents[-1] == 100.0


# ------------------------------------------------------------------ memory and real data


def test_memory_depends_on_the_window_not_the_raster(tmp_path: Path) -> None:
    size, block = 8000, 1000
    path = tmp_path / "big.tif"
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 1,
        "dtype": "uint8",
        "crs": UTM,
        "transform": Affine(PX, 0, 500_000.0, 0, -PX, 3_700_000.0),
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "deflate",
    }
    with rasterio.open(path, "w", **profile) as dst:
        for row in range(0, size, block):
            data = np.zeros((block, size), np.uint8)
            for col in range(50, size, 700):
                data[100:400, col : col + 300] = 1  # 12 rectangles per block
            data[900:, 3000:3100] = 1  # strips across block and window seams
            data[:100, 3000:3100] = 1 if row else 0
            dst.write(data[None], window=Window(0, row, size, block))
    tracemalloc.start()
    try:
        result, _ = _run(path, tmp_path / "big.gpkg", window_size=512)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < size * size / 4  # a quarter of the raster's bytes as uint8
    # 96 rectangles and 8 strips; 7 strips end on a rectangle of the next block and join it
    assert result["buildings"] == 8 * 12 + 8 - 7


def test_real_labels_windowed_equals_whole(shared_data: Path, tmp_path: Path) -> None:
    """Atlanta SpaceNet buildings burnt into a mask on the sample's grid: seams change nothing."""
    with rasterio.open(shared_data / "atlanta_sn4" / "sample_geotiff.tif") as src:
        profile, shape_ = src.profile, src.shape
        labels = gpd.read_file(shared_data / "atlanta_sn4" / "geotiff_labels.geojson")
        labels = labels.to_crs(src.crs)
        mask = features.rasterize(
            [(g, 1) for g in labels.geometry],
            out_shape=shape_,
            transform=src.transform,
            dtype="uint8",
        )
    profile.update(count=1, dtype="uint8", nodata=None, compress="deflate")
    raster = tmp_path / "mask.tif"
    with rasterio.open(raster, "w", **profile) as dst:
        dst.write(mask[None])
    _, small = _run(raster, tmp_path / "small.gpkg", window_size=64)
    _, whole = _run(raster, tmp_path / "whole.gpkg", window_size=1024)
    assert len(small) == len(whole) > 0.8 * len(labels)
    assert all(a.equals_exact(b, 0.0) for a, b in zip(small.geometry, whole.geometry, strict=True))
    assert small["area_m2"].sum() == pytest.approx(mask.sum() * 0.25, rel=1e-9)
    assert small["area_m2"].sum() == pytest.approx(labels.area.sum(), rel=0.05)


# ------------------------------------------------------------------ writing in batches


def _grid_of_squares(n: int = 12) -> np.ndarray:
    """N x n separate 4x4 squares, 8 pixels apart."""
    mask = np.zeros((n * 8, n * 8), np.uint8)
    for r in range(n):
        for c in range(n):
            mask[r * 8 + 2 : r * 8 + 6, c * 8 + 2 : c * 8 + 6] = 1
    return mask


@pytest.mark.parametrize("suffix", [".gpkg", ".geojson"])
def test_layer_written_in_batches_equals_one_batch(
    raster_factory: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    suffix: str,
) -> None:
    raster = raster_factory("grid.tif", _grid_of_squares())
    one = _run(raster, tmp_path / f"one{suffix}")[1]
    monkeypatch.setattr(PolygonStream, "BATCH", 10)  # 144 squares: 15 batches
    result, many = _run(raster, tmp_path / f"many{suffix}")
    assert result["buildings"] == len(many) == len(one) == 144
    assert sorted(many["id"]) == list(range(1, 145))
    assert result["total_area_m2"] == pytest.approx(144 * 16 * PX_AREA)
    assert shapely.equals(
        shapely.union_all(many.geometry.values), shapely.union_all(one.geometry.values)
    )


def test_cancel_between_batches_leaves_no_file(
    raster_factory: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raster = raster_factory("grid.tif", _grid_of_squares())
    monkeypatch.setattr(PolygonStream, "BATCH", 10)
    out = tmp_path / "out.gpkg"
    progress = RecordingProgress(cancel_after=3)
    with pytest.raises(CancelledError):
        vectorize(_config(raster, out, window_size=64), progress)
    assert list(tmp_path.glob("out*")) == []


def test_seam_join_falls_back_to_a_general_union(monkeypatch: pytest.MonkeyPatch) -> None:
    """When GEOS refuses the pieces as a coverage, they are still joined (general union)."""
    refused: list[int] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        refused.append(1)
        raise shapely.errors.GEOSException("CoverageUnion cannot process incorrectly noded inputs")

    mask = np.zeros((40, 40), np.float32)
    mask[5:30, 8:33] = 1.0  # one building across the seams of 16-px windows

    def pieces() -> list[tuple[Window, np.ndarray, np.ndarray]]:
        return [
            (w, mask[w.toslices()], np.ones((int(w.height), int(w.width)), bool))
            for w in _blocks(40, 40, 16)
        ]

    expected = list(polygonize_windows(pieces(), 40, 40, 0.5))
    monkeypatch.setattr("engine.polygons.seams.shapely.coverage_union_all", refuse)
    got = list(polygonize_windows(pieces(), 40, 40, 0.5))
    assert refused and len(got) == len(expected) == 1
    assert got[0].geometry.equals(expected[0].geometry) and got[0].pixels == 25 * 25


def test_buildings_scoring_below_low_confidence_are_marked(
    raster_factory: Callable[..., Path], tmp_path: Path
) -> None:
    prob = np.full((100, 100), 0.1, np.float32)
    prob[10:40, 10:40] = 0.9
    prob[60:90, 60:90] = 0.55
    raster = raster_factory("p.tif", prob)
    _, gdf = _run(raster, tmp_path / "o.gpkg", window_size=64, low_confidence=0.6)
    by_score = gdf.sort_values("score")
    assert by_score["low_confidence"].tolist() == [1, 0]
    _, none = _run(raster, tmp_path / "n.gpkg", low_confidence=0.0)
    assert none["low_confidence"].tolist() == [0, 0]
    with pytest.raises(ConfigError, match="low_confidence must be from 0 to 1"):
        _run(raster, tmp_path / "x.gpkg", low_confidence=1.5)


def test_a_plain_mask_never_imports_scikit_image(
    raster_factory: Callable[..., Path], tmp_path: Path
) -> None:
    """Seeds and watershed are for probability rasters with a separation class: a plain
    mask's vectorize runs without importing scikit-image (its import is ~0.1 s of the
    command) and still writes its buildings."""
    mask, _ = _shapes_mask()
    raster, out = raster_factory("m.tif", mask), tmp_path / "b.gpkg"
    code = (
        "import json, sys\n"
        "from engine.cli import main\n"
        f"rc = main(['vectorize', '--raster', {str(raster)!r}, '--output', {str(out)!r},"
        " '--threshold', '0.5', '--events', 'quiet'])\n"
        "print(json.dumps({'rc': rc, 'skimage': 'skimage' in sys.modules}))\n"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"rc": 0, "skimage": False}, done.stderr
    assert len(gpd.read_file(out)) == 5
