"""Opening, validating and reading rasters window by window; VRT mosaics; atomic outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.windows import Window

from engine.errors import OutputError, RasterError
from engine.geo.outputs import atomic_output, check_output
from engine.geo.rasters import (
    ground_resolution_m,
    open_raster,
    read_window,
    resolve_raster,
    select_bands,
)
from tests.engine.conftest import WGS84, write_raster


def test_missing_and_non_raster_files(tmp_path: Path) -> None:
    with pytest.raises(RasterError, match="does not exist"):
        open_raster(tmp_path / "nope.tif")
    text = tmp_path / "notes.tif"
    text.write_text("not a raster")
    with pytest.raises(RasterError, match="not a raster"):
        open_raster(text)


def test_raster_without_crs_is_refused(tmp_path: Path) -> None:
    path = write_raster(tmp_path / "nocrs.tif", np.zeros((1, 8, 8), np.uint8), crs=None)
    with pytest.raises(RasterError, match="no coordinate reference system"):
        open_raster(path)


def test_raster_without_georeference_is_refused(tmp_path: Path) -> None:
    path = write_raster(
        tmp_path / "nogeo.tif", np.zeros((1, 8, 8), np.uint8), transform=Affine.identity()
    )
    with pytest.raises(RasterError, match="no georeference"):
        open_raster(path)


def test_read_window_masks_nodata_and_outside(tmp_path: Path) -> None:
    data = np.arange(2 * 10 * 10, dtype=np.uint16).reshape(2, 10, 10) + 1
    data[1, 2, 3] = 0
    path = write_raster(tmp_path / "u16.tif", data, nodata=0)
    with open_raster(path) as src:
        img, valid = read_window(src, Window(-2, 0, 6, 6), (1, 2))
    assert img.dtype == np.float32 and img.shape == (2, 6, 6)
    assert not valid[:, :2].any(), "outside the raster is invalid"
    assert not valid[2, 5], "nodata in one band makes the pixel invalid"
    assert valid[0, 2] and img[0, 0, 2] == data[0, 0, 0]
    assert img[:, 2, 5].tolist() == [0.0, 0.0]


def test_select_bands(tmp_path: Path) -> None:
    path = write_raster(tmp_path / "rgb.tif", np.zeros((3, 4, 4), np.uint8))
    with open_raster(path) as src:
        assert select_bands(src, None) == (1, 2, 3)
        assert select_bands(src, [3, 1]) == (3, 1)
        with pytest.raises(ValueError, match="choose from 1 to 3"):
            select_bands(src, [4])


def test_ground_resolution_in_metres_for_geographic_crs(tmp_path: Path) -> None:
    deg = 1e-5
    path = write_raster(
        tmp_path / "geo.tif",
        np.zeros((1, 4, 4), np.uint8),
        crs=WGS84,
        transform=Affine(deg, 0, 85.5, 0, -deg, 27.6),
    )
    with open_raster(path) as src:
        res = ground_resolution_m(src)
    # 1e-5 degree: ~0.99 m east-west at 27.6 N and ~1.1 m north-south
    assert 0.95 < res < 1.1


def test_vrt_mosaic_of_tiles_reads_like_the_original(tmp_path: Path) -> None:
    data = np.random.default_rng(0).integers(0, 255, (3, 64, 96), dtype=np.uint8)
    t = Affine(0.5, 0, 1000.0, 0, -0.5, 2000.0)
    folder = tmp_path / "chips"
    folder.mkdir()
    for r in range(2):
        for c in range(3):
            chip = data[:, r * 32 : (r + 1) * 32, c * 32 : (c + 1) * 32]
            write_raster(
                folder / f"chip_{r}_{c}.tif", chip, transform=t * Affine.translation(c * 32, r * 32)
            )
    vrt = resolve_raster(str(folder), workdir=str(tmp_path))
    assert vrt.endswith(".vrt")
    with rasterio.open(vrt) as src:
        assert src.shape == (64, 96) and src.transform.almost_equals(t)
        np.testing.assert_array_equal(src.read(), data)
    assert resolve_raster(str(folder / "chip_0_0.tif")) == str(folder / "chip_0_0.tif")


def test_mosaic_refuses_mixed_band_counts(tmp_path: Path) -> None:
    write_raster(tmp_path / "a.tif", np.zeros((3, 8, 8), np.uint8))
    write_raster(tmp_path / "b.tif", np.zeros((1, 8, 8), np.uint8))
    with pytest.raises(RasterError, match="band count"):
        resolve_raster([str(tmp_path / "a.tif"), str(tmp_path / "b.tif")])


def test_jpeg_chip_with_aux_xml_sidecar(shared_data: Path) -> None:
    chip = next((shared_data / "banepa" / "train" / "oam").glob("*.tif"))
    with open_raster(chip) as src:
        assert src.driver == "JPEG" and src.crs.to_epsg() == 4326
        img, valid = read_window(src, Window(0, 0, 64, 64), (1, 2, 3))
        assert 0.1 < ground_resolution_m(src) < 0.2
    assert valid.all() and img.std() > 1


def test_atomic_output_keeps_user_file_and_cleans_up(tmp_path: Path) -> None:
    out = tmp_path / "result.tif"
    out.write_text("precious")
    with pytest.raises(OutputError, match="already exists"), atomic_output(out):
        pass
    with pytest.raises(RuntimeError), atomic_output(out, overwrite=True) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert out.read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.tif"]
    with atomic_output(out, overwrite=True) as tmp:
        tmp.write_text("new")
    assert out.read_text() == "new"
    with pytest.raises(OutputError, match="does not exist"), atomic_output(tmp_path / "x" / "y"):
        pass


def test_unwritable_folder_is_refused_before_any_work() -> None:
    # /proc refuses new files for every user, root included (os.access alone says yes to root)
    with pytest.raises(OutputError, match="not writable"):
        check_output("/proc/footprint-test.tif", overwrite=False)


@pytest.mark.parametrize("nodata", [-9999.0, None, float("nan")])
def test_read_window_masks_nan_and_inf_whatever_the_nodata(
    tmp_path: Path, nodata: float | None
) -> None:
    data = np.ones((2, 6, 6), np.float32)
    data[0, 1, 1], data[1, 2, 2], data[0, 3, 3] = np.nan, np.inf, -np.inf
    path = write_raster(tmp_path / "f32.tif", data, nodata=nodata)
    with open_raster(path) as src:
        img, valid = read_window(src, Window(0, 0, 6, 6), (1, 2))
    assert not valid[1, 1] and not valid[2, 2] and not valid[3, 3]
    assert valid.sum() == 33 and np.isfinite(img).all()
