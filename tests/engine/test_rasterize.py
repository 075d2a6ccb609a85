"""rasterize_labels: a mask GeoTIFF on the raster's exact grid, window by window."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from affine import Affine
from shapely.geometry import Polygon, box

from engine.config import RasterizeConfig
from engine.errors import CancelledError, ConfigError, LabelsError, OutputError
from engine.events import NullProgress, RecordingProgress
from engine.rasterize import rasterize_labels
from tests.engine.conftest import UTM, WGS84

UTM_GRID = Affine(0.5, 0, 500_000.0, 0, -0.5, 3_700_000.0)
GEO_GRID = Affine(1e-5, 0, 85.52, 0, -1e-5, 27.63)


def px_box(t: Affine, col0: float, row0: float, col1: float, row1: float) -> Polygon:
    """A box given in pixel coordinates of grid ``t``, in the grid's CRS."""
    x0, y0 = t * (col0, row0)
    x1, y1 = t * (col1, row1)
    return box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


def run(raster: Path, labels: list[Path], output: Path, **options: object) -> dict[str, Any]:
    config = RasterizeConfig(
        raster=str(raster),
        labels=tuple(str(p) for p in labels),
        output=str(output),
        **options,  # type: ignore[arg-type]
    )
    return rasterize_labels(config, NullProgress())


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


@pytest.fixture
def utm_raster(raster_factory: Callable[..., Path]) -> Path:
    return raster_factory("utm.tif", np.full((3, 40, 50), 100, dtype=np.uint8))


def test_mask_is_on_the_rasters_exact_grid_from_labels_in_another_crs(
    tmp_path: Path,
    utm_raster: Path,
    labels_factory: Callable[..., Path],
) -> None:
    squares = [px_box(UTM_GRID, 2, 3, 12, 9), px_box(UTM_GRID, 30, 20, 45, 38)]
    labels = labels_factory(
        "l.geojson", list(gpd.GeoSeries(squares, crs=UTM).to_crs(WGS84)), crs=WGS84
    )
    out = tmp_path / "mask.tif"

    result = run(utm_raster, [labels], out)

    with rasterio.open(out) as mask, rasterio.open(utm_raster) as src:
        assert (mask.crs, mask.transform, mask.width, mask.height) == (
            src.crs,
            src.transform,
            src.width,
            src.height,
        )
        assert mask.dtypes[0] == "uint8" and mask.nodata == 255
        assert mask.profile["compress"] == "deflate" and mask.profile["tiled"]
        data = mask.read(1)
    want = np.zeros((40, 50), dtype=np.uint8)
    want[3:9, 2:12] = 1
    want[20:38, 30:45] = 1
    assert np.array_equal(data, want)
    assert result["buildings"] == 2 and result["building_pixels"] == 60 + 270
    assert (result["width"], result["height"], result["output"]) == (50, 40, str(out))


def test_geographic_raster_with_partly_outside_labels_and_a_multipolygon(
    tmp_path: Path,
    raster_factory: Callable[..., Path],
    labels_factory: Callable[..., Path],
) -> None:
    raster = raster_factory(
        "geo.tif", np.ones((1, 30, 30), dtype=np.uint8), crs=WGS84, transform=GEO_GRID
    )
    geoms = [
        px_box(GEO_GRID, -10, -10, 5, 5),  # partly outside
        px_box(GEO_GRID, 10, 10, 14, 14).union(px_box(GEO_GRID, 20, 20, 25, 22)),
        px_box(GEO_GRID, 40, 40, 50, 50),
    ]  # fully outside
    labels = labels_factory(
        "l.gpkg", list(gpd.GeoSeries(geoms, crs=WGS84).to_crs("EPSG:32645")), crs="EPSG:32645"
    )

    result = run(raster, [labels], tmp_path / "m.tif", window_size=16)

    want = np.zeros((30, 30), dtype=np.uint8)
    want[0:5, 0:5] = 1
    want[10:14, 10:14] = 1
    want[20:22, 20:25] = 1
    assert np.array_equal(read(tmp_path / "m.tif"), want)
    assert result["buildings"] == 2 and result["building_pixels"] == 25 + 16 + 10


def test_bow_tie_label_is_repaired(
    tmp_path: Path,
    utm_raster: Path,
    labels_factory: Callable[..., Path],
) -> None:
    (x0, y1), (x1, y0) = UTM_GRID * (0, 0), UTM_GRID * (20, 20)
    labels = labels_factory("bow.gpkg", [Polygon([(x0, y0), (x1, y1), (x1, y0), (x0, y1)])])

    result = run(utm_raster, [labels], tmp_path / "m.tif")

    mask = read(tmp_path / "m.tif")
    assert mask[10, 1] == 1 and mask[10, 18] == 1 and mask[1, 10] == 0 and mask[18, 9] == 0
    assert result["building_pixels"] == pytest.approx(200, abs=20)


def test_windowed_mask_equals_a_single_window_mask_with_separation(
    tmp_path: Path,
    raster_factory: Callable[..., Path],
    labels_factory: Callable[..., Path],
) -> None:
    raster = raster_factory("r.tif", np.ones((1, 70, 90), dtype=np.uint8))
    rng = np.random.default_rng(0)
    geoms = []
    for _ in range(60):
        c, r = rng.integers(-5, 88, size=2)
        w, h = rng.integers(2, 12, size=2)
        geoms.append(px_box(UTM_GRID, c + 0.3, r + 0.2, c + w, r + h))
    labels = labels_factory("l.gpkg", geoms)

    small = run(raster, [labels], tmp_path / "small.tif", window_size=16, separation=True)
    big = run(raster, [labels], tmp_path / "big.tif", window_size=1024, separation=True)

    a, b = read(tmp_path / "small.tif"), read(tmp_path / "big.tif")
    assert (a == 1).any() and (a == 2).any()
    assert np.array_equal(a, b)
    assert small == {**big, "output": small["output"]}
    assert small["building_pixels"] == int((a == 1).sum())
    assert small["separation_pixels"] == int((a == 2).sum())


def test_nodata_pixels_become_255(
    tmp_path: Path,
    raster_factory: Callable[..., Path],
    labels_factory: Callable[..., Path],
) -> None:
    data = np.full((2, 20, 20), 7, dtype=np.int16)
    data[:, :, :5] = -9999
    data[1, 15:, :] = -9999  # nodata in one band only is nodata too
    raster = raster_factory("nd.tif", data, nodata=-9999)
    labels = labels_factory("l.gpkg", [px_box(UTM_GRID, 0, 0, 10, 10)])

    result = run(raster, [labels], tmp_path / "m.tif", window_size=16)

    mask = read(tmp_path / "m.tif")
    assert (mask[:, :5] == 255).all() and (mask[15:, :] == 255).all()
    assert (mask[0:10, 5:10] == 1).all() and (mask[10:15, 5:] == 0).all()
    assert result["nodata_pixels"] == 20 * 5 + 5 * 15
    assert result["building_pixels"] == 50


def test_separation_puts_class_2_between_two_squares_sharing_a_wall(
    tmp_path: Path,
    utm_raster: Path,
    labels_factory: Callable[..., Path],
) -> None:
    labels = labels_factory(
        "l.gpkg", [px_box(UTM_GRID, 5, 5, 15, 15), px_box(UTM_GRID, 15, 5, 25, 15)]
    )

    result = run(utm_raster, [labels], tmp_path / "m.tif", separation=True)

    mask = read(tmp_path / "m.tif")
    want = np.zeros((40, 50), dtype=np.uint8)
    want[5:15, 5:25] = 1
    want[4:16, 14:16] = 2
    assert np.array_equal(mask, want)
    assert result["separation_pixels"] == 24 and result["building_pixels"] == 200 - 20


def test_empty_labels_give_a_background_mask_but_points_are_an_error(
    tmp_path: Path,
    utm_raster: Path,
    labels_factory: Callable[..., Path],
) -> None:
    """A layer without features is an area known to hold no buildings: all background (as
    gdal_rasterize gives); a layer of points is a mistake."""
    from shapely.geometry import Point

    empty = labels_factory("empty.gpkg", [])
    result = run(utm_raster, [empty], tmp_path / "m.tif")
    with rasterio.open(tmp_path / "m.tif") as out:
        mask = out.read(1)
    assert result["buildings"] == 0 and set(np.unique(mask)) <= {0, 255}
    assert (mask == 0).any()
    points = labels_factory("points.gpkg", [Point(v, v) for v in (1.0, 2.0)])
    with pytest.raises(LabelsError, match="No building polygons in .*points.gpkg.*not polygons"):
        run(utm_raster, [points], tmp_path / "p.tif")
    assert not (tmp_path / "p.tif").exists()


def test_labels_elsewhere_are_an_error(
    tmp_path: Path,
    utm_raster: Path,
    labels_factory: Callable[..., Path],
) -> None:
    labels = labels_factory("far.gpkg", [box(-88, 30, -87.9, 30.1)], crs=WGS84)

    with pytest.raises(LabelsError, match="do not overlap the raster.*CRS right"):
        run(utm_raster, [labels], tmp_path / "m.tif")


def test_missing_and_crs_less_labels_are_errors(
    tmp_path: Path,
    utm_raster: Path,
    labels_factory: Callable[..., Path],
) -> None:
    with pytest.raises(LabelsError, match="does not exist"):
        run(utm_raster, [tmp_path / "missing.gpkg"], tmp_path / "m.tif")
    with pytest.warns(UserWarning):
        no_crs = labels_factory("nocrs.shp", [px_box(UTM_GRID, 0, 0, 5, 5)], crs=None)
    with pytest.raises(LabelsError, match="no coordinate reference system"):
        run(utm_raster, [no_crs], tmp_path / "m.tif")


def test_existing_output_is_kept_without_overwrite(
    tmp_path: Path,
    utm_raster: Path,
    labels_factory: Callable[..., Path],
) -> None:
    labels = labels_factory("l.gpkg", [px_box(UTM_GRID, 0, 0, 5, 5)])
    out = tmp_path / "m.tif"
    out.write_bytes(b"precious")

    with pytest.raises(OutputError, match="already exists"):
        run(utm_raster, [labels], out)
    assert out.read_bytes() == b"precious"

    run(utm_raster, [labels], out, overwrite=True)
    assert read(out).sum() == 25


def test_cancel_leaves_no_output_and_no_temporary_files(
    tmp_path: Path,
    utm_raster: Path,
    labels_factory: Callable[..., Path],
) -> None:
    labels = labels_factory("l.gpkg", [px_box(UTM_GRID, 0, 0, 30, 30)])
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    config = RasterizeConfig(
        raster=str(utm_raster), labels=(str(labels),), output=str(out_dir / "m.tif"), window_size=16
    )
    progress = RecordingProgress(cancel_after=1)

    with pytest.raises(CancelledError):
        rasterize_labels(config, progress)

    assert list(out_dir.iterdir()) == []
    assert progress.percents  # the first window was written before the cancel


def test_bad_window_size_is_a_config_error(tmp_path: Path, utm_raster: Path) -> None:
    with pytest.raises(ConfigError, match="at least 16"):
        run(utm_raster, [tmp_path / "l.gpkg"], tmp_path / "m.tif", window_size=4)


def test_real_banepa_mosaic_matches_the_vector_building_share(
    tmp_path: Path,
    shared_data: Path,
) -> None:
    folder = shared_data / "banepa_2x2"
    raster = folder / "banepa_2x2_rgb_jpeg.tif"
    labels = folder / "banepa_2x2_buildings.geojson"
    progress = RecordingProgress()

    plain = run(raster, [labels], tmp_path / "plain.tif", window_size=512)
    result = rasterize_labels(
        RasterizeConfig(
            raster=str(raster),
            labels=(str(labels),),
            output=str(tmp_path / "contact.tif"),
            window_size=512,
            separation=True,
        ),
        progress,
    )

    # The share of the raster under buildings, measured on the polygons in metres (UTM 45N).
    with rasterio.open(raster) as src:
        extent = gpd.GeoSeries([box(*src.bounds)], crs=WGS84).to_crs("EPSG:32645").iloc[0]
    polygons = gpd.read_file(labels).to_crs("EPSG:32645").geometry
    vector_share = polygons.intersection(extent).union_all().area / extent.area
    share = plain["building_pixels"] / (plain["width"] * plain["height"])
    assert 0.10 < share < 0.80  # a dense town: about two thirds is roof
    assert share == pytest.approx(vector_share, abs=0.02)
    assert plain["buildings"] == result["buildings"] == 272  # the fixture keeps touching ones
    # Contacts (shared walls) are carved out of the buildings.
    assert 0 < result["separation_pixels"] < 0.05 * plain["building_pixels"]
    assert result["building_pixels"] < plain["building_pixels"]
    assert progress.percents[-1] == 100.0
    with rasterio.open(tmp_path / "contact.tif") as mask:
        assert (mask.width, mask.height) == (1024, 1024)
