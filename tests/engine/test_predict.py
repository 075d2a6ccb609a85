"""Tests of engine.predict: output format, exact blending, edges, nodata, errors, cancel, TTA."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine

from engine.config import PredictConfig
from engine.errors import CancelledError, ConfigError, ModelFileError, OutputError, RasterError
from engine.events import NullProgress, RecordingProgress
from engine.inference.job import NODATA
from engine.models.modelfile import ModelSpec
from engine.predict import predict
from tests.engine.predict_helpers import (
    GRID,
    Box3,
    LeftNeighbour,
    TwoClass,
    make_spec,
    run,
    sig,
    smooth,
)

# ------------------------------------------------------------------ output grid and format


def test_output_on_input_grid_and_known_values(tmp_path: Path) -> None:
    data = smooth(50, 70)
    result, values = run(tmp_path, data)
    with rasterio.open(result["output"]) as out, rasterio.open(tmp_path / "in-out.tif") as src:
        assert (out.width, out.height) == (src.width, src.height) == (70, 50)
        assert out.crs == src.crs
        assert out.transform == src.transform
        assert out.dtypes == ("float32",)
        assert out.nodata == NODATA
        assert out.descriptions == ("building probability",)
        assert out.block_shapes == [(256, 256)]
        assert out.profile["compress"] == "deflate"
    np.testing.assert_allclose(values[0], sig(data), atol=1e-6)
    assert result["width"] == 70 and result["height"] == 50 and result["windows"] > 1
    assert result["device"].startswith("cpu") and result["megapixels_per_second"] > 0


@pytest.mark.parametrize("shape", [(64, 96), (77, 101)])
@pytest.mark.parametrize("margin", [0, 4, 8, 15])
def test_blending_has_no_seam(tmp_path: Path, shape: tuple[int, int], margin: int) -> None:
    """Tiles that do and do not divide the raster, with and without overlap: exact values."""
    data = smooth(*shape, seed=margin)
    _, values = run(tmp_path, data, margin=margin)
    # float32 sums of up to (32 / 2)^2 overlapping windows: a few ulps of error
    np.testing.assert_allclose(values[0], sig(data), atol=5e-6)


def test_reflect_padding_at_edges(tmp_path: Path) -> None:
    """One window covers the raster: the 3x3 mean sees mirrored neighbours at the edges."""
    data = smooth(14, 14, seed=3)
    _, values = run(tmp_path, data, model=Box3(), margin=8)
    padded = np.pad(data.astype(np.float64), 1, mode="reflect")
    box_mean = np.mean([padded[i : i + 14, j : j + 14] for i in range(3) for j in range(3)], 0)
    np.testing.assert_allclose(values[0], sig(box_mean), atol=1e-5)
    edge = np.pad(data.astype(np.float64), 1, mode="edge")
    edge_mean = np.mean([edge[i : i + 14, j : j + 14] for i in range(3) for j in range(3)], 0)
    assert np.abs(values[0] - sig(edge_mean)).max() > 1e-3


def test_raster_smaller_than_a_tile(tmp_path: Path) -> None:
    data = smooth(6, 10)
    result, values = run(tmp_path, data, spec=make_spec(tile=64))
    assert values.shape == (1, 6, 10)
    np.testing.assert_allclose(values[0], sig(data), atol=1e-6)
    assert result["windows"] == 1


def test_nodata_preserved(tmp_path: Path) -> None:
    data = (smooth(40, 50) * 200 + 10).astype(np.uint8)
    data[5:15, 20:30] = 0
    data[:, :3] = 0
    spec = make_spec(mean=(0.0,), std=(255.0,))
    _, values = run(tmp_path, data, spec=spec, nodata=0)
    nod = data == 0
    assert (values[0][nod] == NODATA).all()
    np.testing.assert_allclose(values[0][~nod], sig(data[~nod] / 255.0), atol=1e-5)


@pytest.mark.parametrize("nodata", [-9999.0, None])
@pytest.mark.parametrize("resolution", [0.5, 1.0])
def test_nan_and_inf_pixels_are_nodata(
    tmp_path: Path, nodata: float | None, resolution: float
) -> None:
    """NaN/Inf are no data whatever the nodata value, on the raster's grid or resampled."""
    data = smooth(40, 50)
    data[5:9, 20:26], data[20:24, 3:8], data[30, 40] = np.nan, np.inf, -np.inf
    _, values = run(tmp_path, data, spec=make_spec(resolution_m=resolution), nodata=nodata)
    odd = ~np.isfinite(data)
    assert np.isfinite(values).all()
    assert (values[0][odd] == NODATA).all()
    ok = values[0] != NODATA
    assert ((values[0][ok] >= 0) & (values[0][ok] <= 1)).all() and ok.mean() > 0.8
    if resolution == 0.5:
        np.testing.assert_allclose(values[0][~odd], sig(data[~odd]), atol=1e-5)


def test_all_nodata_raster(tmp_path: Path) -> None:
    with pytest.raises(RasterError, match="no valid pixels"):
        run(tmp_path, np.zeros((20, 20), np.uint8), nodata=0)
    assert not (tmp_path / "out.tif").exists()


def test_raster_without_crs(tmp_path: Path) -> None:
    path = tmp_path / "nocrs.tif"
    with rasterio.open(
        path, "w", driver="GTiff", width=8, height=8, count=1, dtype="uint8", transform=GRID
    ) as dst:
        dst.write(np.ones((1, 8, 8), np.uint8))
    with pytest.raises(RasterError, match="coordinate reference system"):
        run(tmp_path, np.zeros(1), raster=path)


def test_two_classes(tmp_path: Path) -> None:
    data = smooth(30, 40)
    _, values = run(
        tmp_path, data, model=TwoClass(), spec=make_spec(classes=("building", "contact"))
    )
    with rasterio.open(tmp_path / "out.tif") as out:
        assert out.descriptions == ("building probability", "contact probability")
    np.testing.assert_allclose(values[0], sig(data), atol=1e-6)
    np.testing.assert_allclose(values[1], 1 - sig(data), atol=1e-6)


def test_folder_becomes_mosaic(tmp_path: Path) -> None:
    folder = tmp_path / "chips"
    folder.mkdir()
    data = smooth(20, 40)
    for i in range(2):
        t = GRID * Affine.translation(20 * i, 0)
        with rasterio.open(
            folder / f"c{i}.tif",
            "w",
            driver="GTiff",
            width=20,
            height=20,
            count=1,
            dtype="float32",
            crs="EPSG:32616",
            transform=t,
        ) as dst:
            dst.write(data[None, :, 20 * i : 20 * i + 20])
    result, values = run(tmp_path, np.zeros(1), raster=folder)
    assert (result["width"], result["height"]) == (40, 20)
    np.testing.assert_allclose(values[0], sig(data), atol=1e-6)
    assert not list(tmp_path.glob(".footprint-*"))


# ------------------------------------------------------------------ errors and options


def test_bad_margin_and_batch(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="16-px margins"):
        run(tmp_path, smooth(10, 10), margin=16)
    with pytest.raises(ConfigError, match="Batch size"):
        run(tmp_path, smooth(10, 10), batch_size=0)


def test_existing_output_needs_overwrite(tmp_path: Path) -> None:
    (tmp_path / "out.tif").write_text("old")
    with pytest.raises(OutputError, match="already exists"):
        run(tmp_path, smooth(10, 10))
    assert (tmp_path / "out.tif").read_text() == "old"
    result, values = run(tmp_path, smooth(10, 10), overwrite=True)
    assert values.shape == (1, 10, 10)


def test_cancel_leaves_nothing(tmp_path: Path) -> None:
    progress = RecordingProgress(cancel_after=2)
    with pytest.raises(CancelledError):
        run(tmp_path, smooth(120, 120), progress=progress, batch_size=1)
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    assert leftovers == ["in-out.tif"]
    assert not [t for t in threading.enumerate() if t.name == "footprint-reader"]


class CancelWhenPast(RecordingProgress):
    """Cancels once progress passed ``percent``."""

    def __init__(self, percent: float) -> None:
        super().__init__()
        self.limit = percent

    def is_canceled(self) -> bool:
        return bool(self.percents) and self.percents[-1] > self.limit


def test_cancel_while_resampling_leaves_nothing(tmp_path: Path) -> None:
    """Cancelled half-way through a job on the model's own grid (blocks resampled back as the
    model goes): no output, no temporary files."""
    progress = CancelWhenPast(50.0)
    spec = make_spec(resolution_m=1.0)
    with pytest.raises(CancelledError):
        run(tmp_path, smooth(600, 40), progress=progress, spec=spec, batch_size=1)
    assert 50 < progress.percents[-1] < 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in-out.tif"]


def test_tta_with_equivariant_model_equals_no_tta(tmp_path: Path) -> None:
    data = smooth(45, 60, seed=5)
    _, plain = run(tmp_path, data, model=Box3(), name="a.tif")
    _, tta = run(tmp_path, data, model=Box3(), name="b.tif", tta=True)
    np.testing.assert_allclose(tta, plain, atol=1e-6)
    _, plain2 = run(tmp_path, data, model=LeftNeighbour(), name="c.tif")
    _, tta2 = run(tmp_path, data, model=LeftNeighbour(), name="d.tif", tta=True)
    assert np.abs(tta2 - plain2).max() > 1e-2  # TTA really averages the eight views


# ------------------------------------------------------------------ with model files


@pytest.fixture
def model_file(tmp_path: Path) -> Callable[..., Path]:
    from engine.models.modelfile import save_model
    from engine.models.registry import create_model

    def make(bands: tuple[int, ...] = (1, 2, 3), classes: tuple[str, ...] = ("building",)) -> Path:
        torch.manual_seed(0)
        model = create_model("compact", "none", len(bands), len(classes))
        spec = ModelSpec(
            architecture="compact",
            encoder="none",
            in_channels=len(bands),
            classes=classes,
            bands=bands,
            mean=(100.0,) * len(bands),
            std=(50.0,) * len(bands),
            tile_size=32,
            resolution_m=0.5,
        )
        path = tmp_path / "model.pt"
        save_model(path, model, spec, overwrite=True)
        return path

    return make


def _rgb(tmp_path: Path, bands: int = 3) -> Path:
    data = (smooth(40, 56) * 255).astype(np.uint8)
    path = tmp_path / "rgb.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=56,
        height=40,
        count=bands,
        dtype="uint8",
        crs="EPSG:32616",
        transform=GRID,
    ) as dst:
        dst.write(np.stack([data] * bands))
    return path


def test_predict_with_model_file(tmp_path: Path, model_file: Callable[..., Path]) -> None:
    model = model_file()
    raster = _rgb(tmp_path)
    out = tmp_path / "p.tif"
    result = predict(PredictConfig(str(raster), str(model), str(out)), NullProgress())
    with rasterio.open(out) as dst, rasterio.open(raster) as src:
        assert (dst.width, dst.height, dst.transform, dst.crs) == (56, 40, src.transform, src.crs)
        values = dst.read(1)
    assert ((values >= 0) & (values <= 1)).all()
    assert result["output"] == str(out)


def test_band_mismatch(tmp_path: Path, model_file: Callable[..., Path]) -> None:
    model = model_file(bands=(1, 2, 3))
    raster = _rgb(tmp_path, bands=1)
    with pytest.raises(ModelFileError):
        predict(PredictConfig(str(raster), str(model), str(tmp_path / "p.tif")), NullProgress())
    assert not (tmp_path / "p.tif").exists()


def test_corrupt_model_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model at all")
    raster = _rgb(tmp_path)
    with pytest.raises(ModelFileError):
        predict(PredictConfig(str(raster), str(bad), str(tmp_path / "p.tif")), NullProgress())
    assert not (tmp_path / "p.tif").exists()
