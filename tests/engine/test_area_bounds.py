"""An extent/AOI bounds the work: outputs, temporary rasters and memory follow the area, not
the raster (issue 26, item 11), with the results a run over the whole raster gives."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.errors import RasterioIOError
from rasterio.windows import Window
from shapely.geometry import Point

from engine.config import DetectConfig, PredictConfig
from engine.detect import detect_with_model
from engine.events import NullProgress
from engine.geo.outputs import write_failure
from engine.inference.job import NODATA
from engine.predict import predict_with_model
from tests.engine.conftest import write_labels
from tests.engine.predict_helpers import Box3, TwoClass, make_spec

#: A 40,000 x 40,000 px raster at 0.25 m (sparse: only the patch has data); the model is at
#: 0.5 m, so it is resampled. The crop's offset is a multiple of the model's window stride
#: (48 model px) and of the 512-px blocks, so its plan and blocks are the big raster's.
SIZE, PATCH, OFFSET = 40_000, 1536, 15_360
BIG_GRID = Affine(0.25, 0, 500_000.0, 0, -0.25, 3_700_000.0)
CROP_GRID = BIG_GRID * Affine.translation(OFFSET, OFFSET)
#: No probability raster (output or temporary) may have more pixels than this.
MAX_PIXELS = 2048 * 2048


class Inputs(NamedTuple):
    big: Path
    crop: Path
    aoi: Path


def _patch() -> np.ndarray:
    yy, xx = np.mgrid[0:PATCH, 0:PATCH]
    rng = np.random.default_rng(3)
    data = 0.5 + 0.45 * np.sin(xx / 23.0) * np.cos(yy / 17.0) + 0.05 * rng.random(xx.shape)
    return data.astype(np.float32)[None]


def _profile(width: int, height: int, transform: Affine) -> dict[str, Any]:
    return {
        "driver": "GTiff", "width": width, "height": height, "count": 1, "dtype": "float32",
        "crs": "EPSG:32616", "transform": transform, "tiled": True, "blockxsize": 256,
        "blockysize": 256, "compress": "deflate",
    }  # fmt: skip


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    folder = tmp_path_factory.mktemp("area")
    data = _patch()
    big = folder / "big.tif"
    with rasterio.open(big, "w", SPARSE_OK=True, **_profile(SIZE, SIZE, BIG_GRID)) as dst:
        dst.write(data, window=Window(OFFSET, OFFSET, PATCH, PATCH))
    crop = folder / "crop.tif"
    with rasterio.open(crop, "w", **_profile(PATCH, PATCH, CROP_GRID)) as dst:
        dst.write(data)
    centre = Point(*(CROP_GRID * (1000.5, 700.25)))  # crosses a 512-px block edge
    aoi = write_labels(folder / "aoi.gpkg", [centre.buffer(45.0)])
    return Inputs(big, crop, aoi)


@pytest.fixture
def probability_sizes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The pixel counts of every raster written; writing one larger than MAX_PIXELS fails."""
    sizes: list[int] = []
    real_open = rasterio.open

    def guarded(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if mode == "w":
            sizes.append(int(kwargs["width"]) * int(kwargs["height"]))
            if sizes[-1] > MAX_PIXELS:
                raise AssertionError(f"a {kwargs['width']}x{kwargs['height']} raster written")
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(rasterio, "open", guarded)
    yield sizes


MODELS = {
    "building": (Box3, ("building",)),
    "separation": (TwoClass, ("building", "separation")),
}


def _detect(raster: Path, aoi: Path, out: Path, kind: str, **options: Any) -> dict[str, Any]:
    model, classes = MODELS[kind]
    config = DetectConfig(
        raster=str(raster), model="unused.pt", output=str(out), aoi=str(aoi),
        keep_probability=str(out.with_suffix(".tif")), min_area_m2=0.0, hole_area_m2=0.0,
        simplify=0.0, window=64, **options,
    )  # fmt: skip
    spec = make_spec(tile=64, classes=classes, resolution_m=0.5)
    return dict(detect_with_model(config, model(), spec, NullProgress()))


def _polygons(path: Path) -> list[Any]:
    frame = gpd.read_file(path)
    return sorted(frame.geometry, key=lambda g: (round(g.centroid.x, 6), round(g.centroid.y, 6)))


@pytest.mark.parametrize("native", [False, True], ids=["resampled", "native"])
@pytest.mark.parametrize("kind", sorted(MODELS))
def test_an_aoi_bounds_the_work_and_keeps_the_results(
    inputs: Inputs, tmp_path: Path, probability_sizes: list[int], native: bool, kind: str
) -> None:
    """Detect with an AOI on a 40,000 x 40,000 px raster writes nothing larger than the AOI's window
    and gives the polygons and probabilities of the same AOI on a small cropped copy."""
    big = _detect(inputs.big, inputs.aoi, tmp_path / "big.gpkg", kind, native_resolution=native)
    crop = _detect(inputs.crop, inputs.aoi, tmp_path / "crop.gpkg", kind, native_resolution=native)
    assert big["resampled"] is not native and max(probability_sizes) <= MAX_PIXELS
    assert big["windows"] == crop["windows"] > 0 and big["buildings"] == crop["buildings"] > 0
    with rasterio.open(big["probability"]) as b, rasterio.open(crop["probability"]) as c:
        assert (b.width, b.height) == (c.width, c.height) == (1024, 512)
        assert b.transform.almost_equals(c.transform, 1e-9)
        assert b.transform.almost_equals(BIG_GRID * Affine.translation(15_872, 15_872), 1e-9)
        big_values, crop_values = b.read(), c.read()
    assert ((big_values == NODATA) == (crop_values == NODATA)).all()
    assert (big_values != NODATA).any() and (big_values == NODATA).any()
    np.testing.assert_allclose(big_values, crop_values, atol=1e-6)
    mine, theirs = _polygons(tmp_path / "big.gpkg"), _polygons(tmp_path / "crop.gpkg")
    assert len(mine) == len(theirs)
    for a, b in zip(mine, theirs, strict=True):
        assert a.equals_exact(b, 1e-6)


def test_predict_with_an_aoi_writes_the_aoi_window(
    inputs: Inputs, tmp_path: Path, probability_sizes: list[int]
) -> None:
    """Predict's output covers the AOI's window of the raster's grid, with what detect keeps."""
    out = tmp_path / "p.tif"
    config = PredictConfig(str(inputs.big), "unused.pt", str(out), aoi=str(inputs.aoi), window=64)
    result = predict_with_model(config, Box3(), make_spec(tile=64), NullProgress())
    assert (result["width"], result["height"]) == (1024, 512) and result["resampled"]
    assert result["windows_total"] < 100 and max(probability_sizes) <= MAX_PIXELS
    kept = _detect(inputs.big, inputs.aoi, tmp_path / "d.gpkg", "building")
    with rasterio.open(out) as p, rasterio.open(kept["probability"]) as d:
        assert p.transform == d.transform and (p.width, p.height) == (d.width, d.height)
        np.testing.assert_array_equal(p.read(), d.read())


def test_gdal_disk_refusals_are_write_failures() -> None:
    refusal = RasterioIOError(
        "Free disk space available is 1000 bytes, whereas 104000000000 are at least necessary."
        " You can disable this check by defining the CHECK_DISK_FREE_SPACE configuration option"
        " to FALSE."
    )
    assert write_failure(refusal) is not None and "disk is full" in str(write_failure(refusal))


@pytest.mark.parametrize("native", [False, True], ids=["resampled", "native"])
def test_aoi_values_are_those_of_the_whole_raster(
    inputs: Inputs, tmp_path: Path, native: bool
) -> None:
    """Inside the AOI, the probabilities equal those of a run over the whole raster (the
    model's grid of the AOI's window holds all the resampling back reads)."""
    out = tmp_path / "all.tif"
    config = PredictConfig(str(inputs.crop), "unused.pt", str(out), window=64)
    whole = predict_with_model(
        replace(config, native_resolution=native), Box3(), make_spec(tile=64), NullProgress()
    )
    part = _detect(
        inputs.crop, inputs.aoi, tmp_path / "aoi.gpkg", "building", native_resolution=native
    )
    assert whole["resampled"] is not native
    with rasterio.open(out) as w, rasterio.open(part["probability"]) as p:
        window = rasterio.windows.from_bounds(*p.bounds, transform=w.transform)
        all_values, values = w.read(window=window.round_offsets().round_lengths()), p.read()
    inside = values != NODATA
    assert inside.any()
    np.testing.assert_allclose(values[inside], all_values[inside], atol=1e-6)
