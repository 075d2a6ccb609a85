"""Odd rasters: south-up grids, unusable pixel sizes, rasters too wide for the memory."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
import torch
from affine import Affine
from rasterio.windows import Window

from engine.config import DetectConfig, PredictConfig, RasterizeConfig
from engine.detect import detect_with_model
from engine.errors import ConfigError, RasterError
from engine.events import NullProgress, RecordingProgress
from engine.geo.rasters import open_raster, read_window, resolve_raster
from engine.geo.windows import window_bounds
from engine.inference import sizing
from engine.inference.job import check_memory, prepare_job
from engine.inference.torchnet import TorchNetwork
from engine.predict import predict_with_model
from engine.rasterize import rasterize_labels
from tests.engine.conftest import write_labels
from tests.engine.predict_helpers import Pointwise, make_spec, run, smooth
from tests.engine.test_detect import GRID, RECTS, config, spec, world_box, write


def south_up(transform: Affine, height: int) -> Affine:
    """The grid of a north-up ``transform``'s raster flipped to start at its bottom row."""
    return Affine(transform.a, 0, transform.c, 0, -transform.e, transform.f + height * transform.e)


def twins(tmp_path: Path, data: np.ndarray) -> tuple[Path, Path]:
    """The same (C, H, W) image as a north-up and as a south-up GeoTIFF."""
    north = write(tmp_path / "north.tif", data)
    south = write(tmp_path / "south.tif", data[:, ::-1], south_up(GRID, data.shape[1]))
    return north, south


def test_window_bounds_are_ordered_on_a_south_up_grid() -> None:
    grid = south_up(GRID, 10)
    assert window_bounds(Window(0, 0, 4, 2), grid) == (
        500_000.0,
        3_699_995.0,
        500_002.0,
        3_699_996.0,
    )


@pytest.mark.parametrize("area", ["extent", "aoi"])
@pytest.mark.parametrize("resolution", [0.5, 1.0])
def test_south_up_detect_with_an_area_finds_the_north_up_buildings(
    tmp_path: Path, area: str, resolution: float
) -> None:
    data = np.zeros((1, 300, 400), np.float32)
    for c0, r0, c1, r1 in RECTS:
        data[0, r0:r1, c0:c1] = 1.0
    rasters = twins(tmp_path, data)
    where = world_box(0, 0, 355, 260)  # cuts the last two rectangles
    options = (
        {"extent": where.bounds}
        if area == "extent"
        else {"aoi": str(write_labels(tmp_path / "aoi.gpkg", [where], crs="EPSG:32616"))}
    )
    found = []
    for raster in rasters:
        out = tmp_path / f"{raster.stem}.gpkg"
        model_spec = replace(spec(), resolution_m=resolution)
        detect_with_model(config(raster, out, **options), Pointwise(), model_spec, NullProgress())
        found.append(gpd.read_file(out).geometry.union_all())
    north, south = found
    assert len(shapely.get_parts(north)) == len(RECTS)
    assert shapely.symmetric_difference(north, south).area < 1e-6 * north.area
    assert south.within(where.buffer(1e-6))


def test_south_up_predict_with_an_extent_equals_the_north_up_twin(tmp_path: Path) -> None:
    data = smooth(60, 80, seed=4)
    height = data.shape[0]
    extent = (*GRID * (10, 50), *GRID * (60, 12))
    _, north = run(tmp_path, data, name="n.tif", extent=extent)
    _, south = run(
        tmp_path, data[::-1], name="s.tif", extent=extent, transform=south_up(GRID, height)
    )
    flipped = south[0][::-1]
    np.testing.assert_array_equal(north[0] == -1, flipped == -1)
    np.testing.assert_allclose(north[0], flipped, atol=1e-6)  # windows blend in another order
    assert 0 < (north[0] != -1).mean() < 1


def test_mosaic_of_south_up_tiles_reads_like_the_raster(tmp_path: Path) -> None:
    data = smooth(40, 60, seed=5)[None]
    whole = write(tmp_path / "whole.tif", data, south_up(GRID, 40))
    grid = south_up(GRID, 40)
    tiles = tmp_path / "tiles"
    tiles.mkdir()
    for row in (0, 20):
        for col in (0, 30):
            part = data[:, row : row + 20, col : col + 30]
            write(tiles / f"t{row}-{col}.tif", part, grid * Affine.translation(col, row))
    mosaic = resolve_raster(str(tiles), workdir=str(tmp_path))
    with open_raster(mosaic) as vrt, open_raster(whole) as src:
        assert (vrt.width, vrt.height, vrt.transform) == (src.width, src.height, src.transform)
        a, _ = read_window(vrt, Window(0, 0, 60, 40), (1,))
        b, _ = read_window(src, Window(0, 0, 60, 40), (1,))
    np.testing.assert_array_equal(a, b)


def test_mosaic_of_north_up_and_south_up_tiles_is_refused(tmp_path: Path) -> None:
    data = smooth(20, 30)[None]
    north = write(tmp_path / "a.tif", data)
    south = write(tmp_path / "b.tif", data, south_up(GRID * Affine.translation(30, 0), 20))
    with pytest.raises(RasterError, match="south-up.*gdalwarp -overwrite"):
        resolve_raster([str(north), str(south)], workdir=str(tmp_path))


def _vrt_over(tif: Path, geotransform: str) -> Path:
    with rasterio.open(tif) as src:
        srs = src.crs.to_wkt()
    path = tif.with_suffix(".vrt")
    path.write_text(
        f'<VRTDataset rasterXSize="30" rasterYSize="20"><SRS>{srs}</SRS>'
        f"<GeoTransform>{geotransform}</GeoTransform>"
        '<VRTRasterBand dataType="Float32" band="1"><SimpleSource>'
        f'<SourceFilename relativeToVRT="1">{tif.name}</SourceFilename>'
        "<SourceBand>1</SourceBand></SimpleSource></VRTRasterBand></VRTDataset>",
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize(
    "geotransform",
    [
        "500000, 0, 0, 3700000, 0, -0.5",
        "500000, 0.5, 0, 3700000, 0, 0",
        "500000, nan, 0, 3700000, 0, -0.5",
        "500000, inf, 0, 3700000, 0, -0.5",
    ],
)
def test_zero_or_non_finite_pixel_size_is_refused_on_opening(
    tmp_path: Path, geotransform: str
) -> None:
    vrt = _vrt_over(write(tmp_path / "s.tif", smooth(20, 30)[None]), geotransform)
    with pytest.raises(RasterError, match="pixel sizes must be finite and not zero") as caught:
        run(tmp_path, np.zeros(1), raster=vrt, spec=make_spec())
    assert str(vrt) in str(caught.value)
    assert not (tmp_path / "out.tif").exists()


# ----------------------------------------------------------------- memory that grows with width


def wide_raster(path: Path, width: int = 1_000_000, height: int = 512) -> Path:
    """A float32 GeoTIFF ``width`` px wide that costs nothing on disk (sparse: no tile written)."""
    with rasterio.open(
        path, "w", driver="GTiff", width=width, height=height, count=1, dtype="float32",
        crs="EPSG:32616", transform=GRID, tiled=True, blockxsize=256, blockysize=256,
        SPARSE_OK=True,
    ):  # fmt: skip
        pass
    return path


@pytest.fixture
def two_gb(monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine has 2 GB of memory available."""
    monkeypatch.setattr(sizing, "available_memory", lambda: 2_000_000_000)


@pytest.mark.usefixtures("two_gb")
@pytest.mark.parametrize("command", ["predict", "detect"])
def test_a_million_pixels_wide_is_refused_before_any_work(tmp_path: Path, command: str) -> None:
    raster = wide_raster(tmp_path / "wide.tif")
    before = set(tmp_path.iterdir())
    progress = RecordingProgress()
    with pytest.raises(ConfigError) as caught:
        if command == "predict":
            config = PredictConfig(str(raster), "unused.pt", str(tmp_path / "p.tif"))
            predict_with_model(config, Pointwise(), make_spec(), progress)
        else:
            config = DetectConfig(str(raster), "unused.pt", str(tmp_path / "b.gpkg"))
            detect_with_model(config, Pointwise(), spec(), progress)
    message = str(caught.value)
    assert str(raster) in message and "1,000,000 px wide" in message
    assert "available" in message and "--extent or an AOI" in message and "--window" in message
    assert set(tmp_path.iterdir()) == before
    assert not any(p > 0 for p in progress.percents), "no window was predicted"


@pytest.mark.usefixtures("two_gb")
def test_a_wide_raster_with_an_extent_and_a_normal_raster_are_accepted(tmp_path: Path) -> None:
    raster = wide_raster(tmp_path / "wide.tif")
    extent = (*GRID * (1000, 400), *GRID * (1600, 100))
    config = PredictConfig(str(raster), "unused.pt", str(tmp_path / "p.tif"), extent=extent)
    network = TorchNetwork(Pointwise(), torch.device("cpu"))
    job = prepare_job(str(raster), config, network, make_spec(), NullProgress(), str(tmp_path))
    assert job.grid.width <= 600 + 2 * job.predictor.window  # the area's blocks, not 1e6 px
    check_memory(job, str(raster), 1024)  # the area's width: fits
    whole = PredictConfig(str(raster), "unused.pt", str(tmp_path / "p.tif"))
    job = prepare_job(str(raster), whole, network, make_spec(), NullProgress(), str(tmp_path))
    with pytest.raises(ConfigError, match="1,000,000 px wide"):
        check_memory(job, str(raster))
    result, values = run(tmp_path, smooth(40, 60))  # an ordinary raster
    assert values.shape == (1, 40, 60) and result["windows"] > 0


def test_south_up_separation_strip_sees_buildings_just_outside_the_raster(tmp_path: Path) -> None:
    """A house just beyond the raster's bottom edge touches one inside: both twins burn the
    separation strip along their shared wall (the labels are read around ordered bounds)."""
    north, south = twins(tmp_path, np.zeros((1, 40, 60), np.float32))
    inside, outside = world_box(10, 30, 30, 40), world_box(10, 40, 30, 50)
    labels = write_labels(tmp_path / "houses.gpkg", [inside, outside], crs="EPSG:32616")
    masks = []
    for raster in (north, south):
        out = tmp_path / f"{raster.stem}-mask.tif"
        rasterize_labels(
            RasterizeConfig(str(raster), (str(labels),), str(out), separation=True), NullProgress()
        )
        with rasterio.open(out) as src:
            masks.append(src.read(1))
    assert (masks[0][-1, 10:30] == 2).all(), "the wall at the bottom edge is separation"
    np.testing.assert_array_equal(masks[0], masks[1][::-1])
