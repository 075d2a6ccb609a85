"""Ground metres in stretched projections: Web Mercator (EPSG:3857) GeoTIFFs and layers at 60° N,
where one map metre is half a metre of ground, give pixel sizes, building areas, the model's
grid and evaluation pixels in ground metres; UTM stays exactly its own metres."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from affine import Affine
from pyproj import CRS, Transformer
from shapely.geometry import box

from engine.config import EvaluateConfig, VectorizeConfig
from engine.evaluate import evaluate
from engine.events import NullProgress, RecordingProgress
from engine.geo.ground import is_stretched, metres_per_unit
from engine.geo.rasters import pixel_size_m
from engine.vectorize import vectorize
from tests.engine.predict_helpers import make_spec, run

MERCATOR = "EPSG:3857"
#: A point at 60° N (cos = 0.5) in Web Mercator.
X60, Y60 = Transformer.from_crs(4326, 3857, always_xy=True).transform(10.0, 60.0)
#: 0.5 map metres a pixel at 60° N: 0.25 m of ground.
GRID60 = Affine(0.5, 0, X60, 0, -0.5, Y60)


def test_metres_per_unit() -> None:
    mercator = CRS.from_user_input(MERCATOR)
    assert float(metres_per_unit(mercator, X60, Y60)) == pytest.approx(0.5, rel=2e-3)
    assert float(metres_per_unit(mercator, 0.0, 0.0)) == 1.0  # the equator: no stretch
    assert is_stretched(mercator, X60, Y60) and not is_stretched(mercator, 0.0, 0.0)
    # UTM's 0.9996 and a national grid in feet keep their own units exactly
    assert float(metres_per_unit(CRS.from_epsg(32616), 400_000, 3_700_000)) == 1.0
    assert float(metres_per_unit(CRS.from_epsg(2263), 1e6, 2e5)) == pytest.approx(0.3048006)


def test_pixel_size_of_a_web_mercator_raster(raster_factory: Callable[..., Path]) -> None:
    path = raster_factory("m.tif", np.zeros((1, 8, 8), np.uint8), crs=MERCATOR, transform=GRID60)
    with rasterio.open(path) as src:
        x, y = pixel_size_m(src)
    assert x == pytest.approx(0.25, rel=2e-3) and y == pytest.approx(0.25, rel=2e-3)


def test_pixel_size_per_axis_in_a_projection_that_stretches_one_axis(
    raster_factory: Callable[..., Path],
) -> None:
    """Plate Carrée (EPSG:4087) at 60° N: east-west halved, north-south kept."""
    x, y = Transformer.from_crs(4326, 4087, always_xy=True).transform(10.0, 60.0)
    grid = Affine(0.5, 0, x, 0, -0.5, y)
    path = raster_factory("pc.tif", np.zeros((1, 8, 8), np.uint8), crs="EPSG:4087", transform=grid)
    with rasterio.open(path) as src:
        across, down = pixel_size_m(src)
    assert across == pytest.approx(0.25, rel=2e-3) and down == pytest.approx(0.5, rel=2e-3)


def test_building_areas_and_smallest_building_in_ground_metres(
    raster_factory: Callable[..., Path], tmp_path: Path
) -> None:
    mask = np.zeros((100, 100), np.uint8)
    mask[10:50, 10:50] = 1  # 40 px: 20 map metres, 10 m of ground a side
    mask[70:80, 70:80] = 1  # 10 px: 2.5 m of ground a side, 6.25 m²
    path = raster_factory("m.tif", mask, crs=MERCATOR, transform=GRID60)
    out = tmp_path / "b.gpkg"
    vectorize(VectorizeConfig(str(path), str(out), threshold=0.5, min_area_m2=10.0), NullProgress())
    buildings = gpd.read_file(out)
    assert len(buildings) == 1  # 6.25 m² of ground is under 10 m² (25 "m²" of the map is not)
    assert buildings["area_m2"].iloc[0] == pytest.approx(100.0, rel=5e-3)


@pytest.mark.parametrize(("model_m", "resampled"), [(0.25, False), (0.5, True)])
def test_the_model_grid_follows_ground_metres(
    tmp_path: Path, model_m: float, resampled: bool
) -> None:
    """A model trained at 0.25 m runs on the raster's own pixels (0.25 m of ground); one at
    0.5 m on a grid of half as many pixels a side."""
    data = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    raster = tmp_path / "m.tif"
    with rasterio.open(
        raster, "w", driver="GTiff", width=64, height=64, count=1, dtype="float32",
        crs=MERCATOR, transform=GRID60,
    ) as dst:  # fmt: skip
        dst.write(data[None])
    progress = RecordingProgress()
    spec = make_spec(resolution_m=model_m)
    _, values = run(tmp_path, data, spec=spec, raster=raster, progress=progress)
    assert values.shape[-2:] == (64, 64)  # back on the raster's grid either way
    said = [m for m in progress.messages if "resampled" in m]
    assert bool(said) == resampled
    if resampled:
        assert "Raster resolution 0.250 m" in said[0] and "resampled 32x32 grid" in said[0]


def test_evaluate_scores_on_ground_metres(tmp_path: Path) -> None:
    """A 10 m (ground) building is 400 pixels of 0.5 m, not the 1600 its map metres make."""
    square = box(X60, Y60, X60 + 20, Y60 + 20)  # 20 map metres: 10 m of ground
    layer = tmp_path / "b.gpkg"
    gpd.GeoDataFrame(geometry=[square], crs=MERCATOR).to_file(layer)
    area = tmp_path / "area.gpkg"
    gpd.GeoDataFrame(geometry=[square.buffer(40)], crs=MERCATOR).to_file(area)
    scores = evaluate(
        EvaluateConfig(str(layer), str(layer), area=str(area), resolution=0.5), NullProgress()
    )
    assert scores["object_f1"] == 1.0
    assert scores["working_crs"] == "EPSG:32632"  # the UTM zone of 10° E
    assert math.isclose(scores["pixel_counts"]["tp"], 400, rel_tol=0.05)
