"""Tests of prediction limited to an extent/AOI, at the model's resolution, and on real data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
import torch
from affine import Affine
from rasterio.features import geometry_mask
from shapely.geometry import box, mapping
from torch import nn

from engine.config import PredictConfig
from engine.errors import ConfigError
from engine.events import NullProgress, RecordingProgress
from engine.inference.job import NODATA
from engine.models.modelfile import ModelSpec
from engine.predict import predict_with_model
from tests.engine.conftest import UTM, write_labels
from tests.engine.predict_helpers import GRID, Box3, make_spec, run, sig, smooth

# ------------------------------------------------------------------ extent, AOI, resolution


def test_extent_limits_the_work(tmp_path: Path) -> None:
    data = smooth(80, 120, seed=7)
    full, all_values = run(tmp_path, data, model=Box3(), name="full.tif")
    x0, y0 = GRID * (10, 70)  # pixel corners: cols 10..50, rows 30..70
    x1, y1 = GRID * (50, 30)
    part, values = run(tmp_path, data, model=Box3(), name="part.tif", extent=(x0, y0, x1, y1))
    inside = np.zeros((80, 120), bool)
    inside[30:70, 10:50] = True
    assert values.shape == all_values.shape
    assert (values[0][~inside] == NODATA).all()
    np.testing.assert_array_equal(values[0][inside], all_values[0][inside])
    assert part["windows"] < full["windows"]


def test_aoi_in_another_crs(tmp_path: Path) -> None:
    from pyproj import Transformer

    def to_wgs(coords: np.ndarray) -> np.ndarray:
        return np.column_stack(transformer.transform(coords[:, 0], coords[:, 1]))

    data = smooth(60, 60, seed=2)
    x0, y0 = GRID * (5, 40)
    x1, y1 = GRID * (30, 12)
    area = box(x0, y0, x1, y1).buffer(2.0)
    transformer = Transformer.from_crs("EPSG:32616", "EPSG:4326", always_xy=True)
    aoi = write_labels(tmp_path / "aoi.gpkg", [shapely.transform(area, to_wgs)], crs="EPSG:4326")
    _, full = run(tmp_path, data, name="full.tif")
    _, values = run(tmp_path, data, name="aoi.tif", aoi=str(aoi))
    inside = geometry_mask([mapping(area)], (60, 60), GRID, invert=True)
    assert 0 < inside.sum() < inside.size
    differs = (values[0] == NODATA) != ~inside
    assert differs.sum() <= 4  # reprojection may move a boundary pixel centre
    ok = values[0] != NODATA
    np.testing.assert_allclose(values[0][ok], full[0][ok], atol=1e-6)


def test_extent_outside_raster(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not overlap"):
        run(tmp_path, smooth(10, 10), extent=(0.0, 0.0, 10.0, 10.0))
    with pytest.raises(ConfigError, match="empty"):
        run(tmp_path, smooth(10, 10), extent=(10.0, 0.0, 0.0, 10.0))


def test_extent_outside_a_raster_in_degrees_names_its_bounds_to_the_pixel(tmp_path: Path) -> None:
    """A 20-px drone chip in EPSG:4326 spans ~3e-5 degrees: the message's raster bounds must
    not round to one point (they printed as "85.522 27.634 85.522 27.634")."""
    raster = tmp_path / "degrees.tif"
    transform = Affine(1.3e-6, 0, 85.5221, 0, -1.2e-6, 27.6341)
    with rasterio.open(
        raster, "w", driver="GTiff", width=20, height=20, count=1, dtype="float32",
        crs="EPSG:4326", transform=transform,
    ) as dst:  # fmt: skip
        dst.write(smooth(20, 20)[None].astype("float32"))
    with pytest.raises(ConfigError, match="does not overlap") as caught:
        run(tmp_path, smooth(20, 20), raster=raster, extent=(10.0, 10.0, 11.0, 11.0))
    inside = str(caught.value).split("does not overlap the raster (")[1].split(" in its CRS")[0]
    left, bottom, right, top = (float(v) for v in inside.split())
    assert right - left == pytest.approx(20 * 1.3e-6, rel=0.05)
    assert top - bottom == pytest.approx(20 * 1.2e-6, rel=0.05)


def test_resampled_to_model_resolution(tmp_path: Path) -> None:
    """A 0.25 m raster with a 0.5 m model: predicted on a half-size grid, output on the input's."""
    yy, xx = np.mgrid[0:96, 0:128]
    data = (0.5 + 0.4 * np.sin(xx / 15.0) * np.cos(yy / 11.0)).astype(np.float32)
    fine = Affine(0.25, 0, 500_000.0, 0, -0.25, 3_700_000.0)
    progress = RecordingProgress()
    result, values = run(tmp_path, data, transform=fine, progress=progress)
    assert result["resampled"] and result["model_grid"] == [64, 48]
    with rasterio.open(result["output"]) as out:
        assert (out.width, out.height, out.transform) == (128, 96, fine)
    inner = values[0][2:-2, 2:-2]
    np.testing.assert_allclose(inner, sig(data)[2:-2, 2:-2], atol=0.03)
    assert (values[0] != NODATA).all()
    assert any("resampled" in m for m in progress.messages)
    native, nvalues = run(tmp_path, data, transform=fine, name="n.tif", native_resolution=True)
    assert not native["resampled"] and native["model_grid"] == [128, 96]
    np.testing.assert_allclose(nvalues[0], sig(data), atol=1e-6)


# ------------------------------------------------------------------ real data


def _compact(bands: int, resolution_m: float, **kw: Any) -> tuple[nn.Module, ModelSpec]:
    from engine.models.registry import create_model

    torch.manual_seed(0)
    spec = ModelSpec(
        architecture="compact",
        encoder="none",
        in_channels=bands,
        classes=("building",),
        bands=tuple(range(1, bands + 1)),
        mean=kw.get("mean", (120.0,) * bands),
        std=kw.get("std", (60.0,) * bands),
        tile_size=64,
        resolution_m=resolution_m,
    )
    return create_model("compact", "none", bands, 1), spec


def test_real_jpeg_chips_glob_resampled(tmp_path: Path, shared_data: Path) -> None:
    """Banepa test chips (JPEG + .aux.xml, EPSG:4326, 13 cm) by a glob: a VRT mosaic,
    resampled to a 0.5 m model; the output lies on the mosaic's grid."""
    from engine.geo.rasters import resolve_raster

    folder = shared_data / "banepa" / "test" / "oam" / "*-22024[12]-19.tif"  # 2x2 chips
    model, spec = _compact(3, 0.5)
    out = tmp_path / "p.tif"
    result = predict_with_model(
        PredictConfig(str(folder), "m.pt", str(out), batch_size=8), model, spec, NullProgress()
    )
    mosaic = resolve_raster(str(folder), workdir=str(tmp_path))
    with rasterio.open(mosaic) as src, rasterio.open(out) as dst:
        assert (dst.width, dst.height, dst.crs) == (src.width, src.height, src.crs)
        assert (dst.width, dst.height) == (1024, 1024)
        assert dst.transform.almost_equals(src.transform)
        values = dst.read(1, window=((0, 256), (0, 256)))
    assert result["resampled"] and result["model_grid"][0] < result["width"] / 3
    assert ((values >= 0) & (values <= 1)).all()


def test_real_uint16_nodata_and_aoi(tmp_path: Path, shared_data: Path) -> None:
    """Atlanta panchromatic uint16 (nodata 0), AOI = the labelled buildings."""
    raster = shared_data / "atlanta_sn4" / "sample_geotiff.tif"
    aoi = shared_data / "atlanta_sn4" / "geotiff_labels.geojson"
    model, spec = _compact(1, 0.5, mean=(400.0,), std=(200.0,))
    out = tmp_path / "p.tif"
    result = predict_with_model(
        PredictConfig(str(raster), "m.pt", str(out), aoi=str(aoi), window=spec.tile_size),
        model,
        spec,
        NullProgress(),
    )
    assert not result["resampled"] and result["windows"] < result["windows_total"]
    frame = gpd.read_file(aoi).to_crs("EPSG:32616")
    with rasterio.open(raster) as src, rasterio.open(out) as dst:
        assert (dst.width, dst.height, dst.transform) == (src.width, src.height, src.transform)
        valid = src.read(1) != 0
        inside = geometry_mask(frame.geometry, (src.height, src.width), src.transform, invert=True)
        values = dst.read(1)
    assert ((values != NODATA) == (valid & inside)).all()


def test_a_model_of_much_finer_pixels_is_refused_before_any_work(tmp_path: Path) -> None:
    """0.5 m pixels and a 1 cm model: 2,500 times the pixels; refused with the way out."""
    with pytest.raises(ConfigError) as caught:
        run(tmp_path, smooth(20, 30), spec=make_spec(resolution_m=0.01))
    message = str(caught.value)
    assert "2,500 times" in message and "at most 16 times" in message
    assert "gdalwarp -tr 0.01 0.01" in message and "--native-resolution" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in-out.tif"]
    result, values = run(tmp_path, smooth(20, 30), spec=make_spec(resolution_m=0.125))
    assert result["model_grid"] == [120, 80] and values.shape == (1, 20, 30)  # 16 times: fine


def test_aoi_layer_of_a_geopackage_named_as_qgis_does(tmp_path: Path) -> None:
    """``--aoi areas.gpkg|layername=town``: that layer, not the file's first, bounds the work
    (as labels take it)."""
    data = smooth(60, 60, seed=3)
    everything = box(*(GRID * (0, 60)), *(GRID * (60, 0)))
    areas = write_labels(tmp_path / "areas.gpkg", [everything])
    x0, y0 = GRID * (5, 40)
    x1, y1 = GRID * (30, 12)
    town = gpd.GeoDataFrame(geometry=[box(x0, y0, x1, y1)], crs=UTM)
    town.to_file(areas, layer="town", driver="GPKG")
    _, values = run(tmp_path, data, name="aoi.tif", aoi=f"{areas}|layername=town")
    inside = np.zeros((60, 60), bool)
    inside[12:40, 5:30] = True
    assert ((values[0] != NODATA) == inside).all()
