"""No traceback, ever: damaged files, failed writes and real bugs give a clear error and lose
nothing (the fuzz suite is in :mod:`tests.engine.fuzz`)."""

from __future__ import annotations

import errno
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio
import pytest
import rasterio

import engine.geo.outputs as outputs_module
from engine.config import DetectConfig, PredictConfig, RasterizeConfig, TrainConfig
from engine.detect import detect
from engine.errors import LabelsError, OutputError, RasterError
from engine.events import NullProgress, RecordingProgress
from engine.predict import predict
from engine.rasterize import rasterize_labels
from engine.train import train
from tests.engine import fuzz


def _inputs(folder: Path, side: int = fuzz.SIDE) -> tuple[Path, Path, Path]:
    raster, labels, model = folder / "scene.tif", folder / "labels.gpkg", folder / "model.pt"
    fuzz.make_geotiff(raster)
    fuzz.make_vector("GPKG")(labels)
    fuzz.make_model(model)
    return raster, labels, model


def _leftovers(folder: Path, before: set[Path]) -> set[str]:
    return {p.name for p in set(folder.iterdir()) - before}


def test_fuzz_suite_every_damaged_input_is_handled(tmp_path: Path) -> None:
    """Every input kind x damage x command: a result or a clear error naming the file; never
    a traceback, an internal error or a partial output."""
    outcomes = fuzz.fuzz(tmp_path)
    print("\n" + fuzz.table(outcomes))
    problems = [f"{o.kind} / {o.damage} / {o.command}: {o.problem}" for o in outcomes if o.problem]
    assert not problems, "\n".join(problems)
    per_kind = Counter(o.kind for o in outcomes)
    assert set(per_kind) == {k.name for k in fuzz.KINDS}
    assert min(per_kind.values()) >= 2 * len(fuzz.DAMAGES)  # every kind through 2+ commands
    errors = Counter(o.kind for o in outcomes if o.code == 1)
    assert all(errors[k] >= len(fuzz.DAMAGES) for k in per_kind)  # damage really is seen


def test_truncated_geotiff_fails_clearly_in_the_middle_of_detect(tmp_path: Path) -> None:
    """The header is intact and the file opens; the data stops a third of the way in."""
    raster = tmp_path / "big.tif"
    rng = np.random.default_rng(1)
    with rasterio.open(
        raster, "w", driver="GTiff", width=600, height=600, count=3, dtype="uint8",
        crs=fuzz.CRS, transform=fuzz.ORIGIN, tiled=True, blockxsize=64, blockysize=64,
    ) as dst:  # fmt: skip
        dst.write(rng.integers(0, 255, size=(3, 600, 600), dtype=np.uint8))
    data = raster.read_bytes()
    raster.write_bytes(data[: len(data) // 3])
    model = tmp_path / "model.pt"
    fuzz.make_model(model)
    before = set(tmp_path.iterdir())
    config = DetectConfig(raster=str(raster), model=str(model), output=str(tmp_path / "b.gpkg"))
    with pytest.raises(RasterError) as caught:
        detect(config, NullProgress())
    message = str(caught.value)
    assert str(raster) in message and "window of" in message
    assert "damaged or incomplete" in message and "gdalinfo -checksum" in message
    assert not _leftovers(tmp_path, before)


def test_disk_full_while_writing_polygons(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raster, _, model = _inputs(tmp_path)

    def full(*args: Any, **kwargs: Any) -> None:
        Path(args[1]).write_bytes(b"half a GeoPackage")  # what a full disk leaves
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pyogrio, "write_dataframe", full)
    before = set(tmp_path.iterdir())
    out = tmp_path / "b.gpkg"
    with pytest.raises(OutputError, match="the disk is full") as caught:
        detect(DetectConfig(raster=str(raster), model=str(model), output=str(out)), NullProgress())
    assert str(out) in str(caught.value)
    assert not _leftovers(tmp_path, before)


def test_disk_full_while_writing_probability(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GDAL's write error (as rasterio raises it) mid-way through the GeoTIFF."""
    raster, _, model = _inputs(tmp_path)
    from contextlib import contextmanager

    import engine.predict as predict_module

    real = predict_module.open_probability

    class Full:
        def __init__(self, dst: Any) -> None:
            self.dst = dst

        def write(self, *args: Any, **kwargs: Any) -> None:
            raise rasterio.errors.RasterioIOError(
                "Write failed: TIFFAppendToStrip:Write error at scanline 0: No space left on device"
            )

    @contextmanager
    def failing(path: Any, job: Any, *args: Any, **kwargs: Any) -> Any:
        with real(path, job, *args, **kwargs) as dst:
            yield Full(dst)

    monkeypatch.setattr(predict_module, "open_probability", failing)
    before = set(tmp_path.iterdir())
    with pytest.raises(OutputError, match="the disk is full"):
        predict(
            PredictConfig(raster=str(raster), model=str(model), output=str(tmp_path / "p.tif")),
            NullProgress(),
        )
    assert not _leftovers(tmp_path, before)


class RemovesFolder(RecordingProgress):
    """Removes ``folder`` once the run passes ``percent``."""

    def __init__(self, folder: Path, percent: float) -> None:
        super().__init__()
        self.folder, self.percent = folder, percent

    def set_progress(self, percent: float) -> None:
        super().set_progress(percent)
        if percent > self.percent and self.folder.exists():
            shutil.rmtree(self.folder)


def test_output_folder_removed_during_the_run(tmp_path: Path) -> None:
    raster, _, model = _inputs(tmp_path)
    folder = tmp_path / "results"
    folder.mkdir()
    config = PredictConfig(
        raster=str(raster), model=str(model), output=str(folder / "p.tif"), window=32
    )
    with pytest.raises(OutputError, match="removed or renamed during the run"):
        predict(config, RemovesFolder(folder, 10.0))
    assert not folder.exists()


def test_a_failed_replace_keeps_the_users_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The target became read-only (or the rename failed): the old file is still there."""
    raster, labels, _ = _inputs(tmp_path)
    out = tmp_path / "mask.tif"
    out.write_bytes(b"the user's own mask")

    def refuse(src: Any, dst: Any) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(dst))

    monkeypatch.setattr(outputs_module.os, "replace", refuse)
    before = set(tmp_path.iterdir())
    config = RasterizeConfig(
        raster=str(raster), labels=(str(labels),), output=str(out), overwrite=True
    )
    with pytest.raises(OutputError, match="not writable"):
        rasterize_labels(config, NullProgress())
    assert out.read_bytes() == b"the user's own mask"
    assert not _leftovers(tmp_path, before)


def test_a_real_bug_says_where_the_traceback_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import engine.rasterize as rasterize_module
    from engine.cli import main

    def bug(config: Any, progress: Any) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(rasterize_module, "rasterize_labels", bug)
    monkeypatch.setenv("FOOTPRINT_LOG_DIR", str(tmp_path / "logs"))
    code = main(["rasterize-labels", "--raster", "x.tif", "--label", "y.gpkg", "--output", "z"])
    printed = capsys.readouterr()
    log = tmp_path / "logs" / "footprint-errors.log"
    assert code == 1
    assert "Internal error (please report it): 'a bug'" in printed.err
    assert f"The full traceback is in {log}" in printed.err
    assert "Traceback" not in printed.err + printed.out
    text = log.read_text()
    assert "Traceback" in text and "KeyError: 'a bug'" in text and "rasterize" in text


def test_an_empty_label_layer_rasterizes_to_background(tmp_path: Path) -> None:
    """An area known to hold no buildings is a useful training mask, as gdal_rasterize makes."""
    raster, labels, _ = _inputs(tmp_path)
    empty = tmp_path / "none.gpkg"
    frame = fuzz._frame()
    frame.iloc[:0].to_file(empty, driver="GPKG")  # type: ignore[attr-defined]
    progress = RecordingProgress()
    result = rasterize_labels(
        RasterizeConfig(raster=str(raster), labels=(str(empty),), output=str(tmp_path / "m.tif")),
        progress,
    )
    with rasterio.open(result["output"]) as mask:
        values = mask.read(1)
    assert result["buildings"] == 0 and (values == 0).all() and values.shape == (64, 64)
    assert any("all-background mask" in m for m in progress.messages)
    with pytest.raises(LabelsError, match="No building polygons"):
        train(
            TrainConfig(
                rasters=(str(raster),), labels=(str(empty),), output=str(tmp_path / "m.pt"),
                architecture="compact", encoder="none", tile_size=32, epochs=1, device="cpu",
            ),
            NullProgress(),
        )  # fmt: skip
    assert not (tmp_path / "m.pt").exists()
    assert os.path.exists(labels)


def test_fuzz_suite_odd_inputs_end_as_they_must(tmp_path: Path) -> None:
    """South-up grids and NaN/Inf pixels give results (also with an extent and an AOI); an
    unusable pixel size, a mosaic too wide for the memory, a model of far finer pixels and
    crafted model specs give a clear error naming the file; never a traceback."""
    outcomes = fuzz.fuzz_odd(tmp_path)
    print("\n" + fuzz.table(outcomes))
    problems = [f"{o.kind} / {o.command}: {o.problem}" for o in outcomes if o.problem]
    assert not problems, "\n".join(problems)
    assert {o.kind for o in outcomes} == {odd.name for odd in fuzz.ODD}
    assert Counter(o.command for o in outcomes if o.kind == "south-up raster") == Counter(
        ["predict", "detect", "vectorize", "rasterize-labels", "train", "detect (extent)",
         "predict (AOI)"]
    )  # fmt: skip
