"""The starter model: detect and predict without a model use it and say so; missing, a clear
error and no output (issue 27)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio

from engine.cli import main
from engine.config import DetectConfig, PredictConfig
from engine.detect import detect
from engine.errors import ModelFileError, OutputError
from engine.events import RecordingProgress
from engine.models import starter
from engine.predict import predict
from tests.engine import fuzz

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tiny model shipped as the starter model, with its model card, and a raster."""
    model = tmp_path / "models" / "footprint-starter.pt"
    model.parent.mkdir()
    fuzz.make_model(model)
    model.with_suffix(".json").write_text(json.dumps({"version": "1.2", "date": "2026-12-03"}))
    fuzz.make_geotiff(tmp_path / "scene.tif")
    monkeypatch.delenv(starter.ENV, raising=False)
    monkeypatch.setattr(starter, "SHIPPED", model)  # absolute: replaces the engine's folder
    return model


def cli(*argv: str) -> tuple[int, list[dict[str, object]]]:
    """``python -m engine`` in this process with JSON events: exit code and events."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main([*argv, "--events", "json"])
    return code, [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]


def assert_same_raster(a: Path, b: Path) -> None:
    """``a`` and ``b`` hold the same pixels, not all equal."""
    with rasterio.open(a) as first, rasterio.open(b) as second:
        values = first.read()
        np.testing.assert_array_equal(values, second.read())
    assert np.ptp(values) > 0


def logs(events: list[dict[str, object]]) -> list[str]:
    return [str(e["message"]) for e in events if e.get("event") == "log"]


def test_the_shipped_starter_model_sits_in_resources_beside_the_engine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(starter.ENV, raising=False)
    assert starter.starter_path() == ROOT / "resources" / "models" / "footprint-starter.pt"


def test_detect_without_a_model_uses_the_starter_model_and_says_so(
    tiny: Path, tmp_path: Path
) -> None:
    scene = str(tmp_path / "scene.tif")
    # the tiny model's probability is near 0.454 everywhere: one building at 0.45
    options = ("--raster", scene, "--threshold", "0.45", "--min-area-m2", "0")
    code, events = cli(
        "detect", *options, "--output", str(tmp_path / "a.gpkg"),
        "--keep-probability", str(tmp_path / "a.tif"),
    )  # fmt: skip
    assert code == 0, events
    said = [m for m in logs(events) if m.startswith("Using the starter model")]
    assert said == [
        f"Using the starter model {tiny} (version 1.2, 2026-12-03): trained on drone imagery of"
        " Banepa (Nepal), Zanzibar, Nairobi and Catanduanes (Philippines) at 0.5 m per pixel,"
        " it suits RGB drone or aerial imagery of about 5-30 cm pixels (imagery is resampled"
        " to 0.5 m). For better results on your imagery, correct its buildings in one"
        " neighbourhood and improve it with them (Processing: Improve model; python -m engine"
        " improve)."
    ]
    code, given = cli(
        "detect", *options, "--model", str(tiny), "--output", str(tmp_path / "b.gpkg"),
        "--keep-probability", str(tmp_path / "b.tif"),
    )  # fmt: skip
    assert code == 0 and not [m for m in logs(given) if "starter" in m]
    a, b = gpd.read_file(tmp_path / "a.gpkg"), gpd.read_file(tmp_path / "b.gpkg")
    assert len(a) == len(b) == 1 and a.geometry.geom_equals_exact(b.geometry, 0).all()
    assert_same_raster(tmp_path / "a.tif", tmp_path / "b.tif")


def test_predict_without_a_model_equals_predict_with_the_starter_file(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Also with the starter model named ``starter``, or set by FOOTPRINT_STARTER_MODEL
    (then the log does not describe the shipped model)."""
    scene = str(tmp_path / "scene.tif")
    mine = tmp_path / "mine.pt"
    mine.write_bytes(tiny.read_bytes())
    monkeypatch.setenv(starter.ENV, str(mine))
    progress = RecordingProgress()
    predict(PredictConfig(scene, None, str(tmp_path / "a.tif")), progress)
    assert (
        f"Using the starter model {mine} (set by FOOTPRINT_STARTER_MODEL), applied at 0.5 m"
        " per pixel." in progress.messages
    )
    monkeypatch.delenv(starter.ENV)
    predict(PredictConfig(scene, str(tiny), str(tmp_path / "b.tif")), RecordingProgress())
    predict(PredictConfig(scene, "starter", str(tmp_path / "c.tif")), RecordingProgress())
    assert_same_raster(tmp_path / "a.tif", tmp_path / "b.tif")
    assert_same_raster(tmp_path / "c.tif", tmp_path / "b.tif")


def test_a_missing_starter_model_is_a_clear_error_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fuzz.make_geotiff(tmp_path / "scene.tif")
    monkeypatch.delenv(starter.ENV, raising=False)
    monkeypatch.setattr(starter, "SHIPPED", Path("resources") / "models" / "none.pt")
    shipped = ROOT / "resources" / "models" / "none.pt"
    config = DetectConfig(str(tmp_path / "scene.tif"), None, str(tmp_path / "b.gpkg"))
    with pytest.raises(ModelFileError) as caught:
        detect(config, RecordingProgress())
    assert str(caught.value) == (
        f"The starter model is not installed ({shipped} is missing): give a model with"
        " --model (QGIS: Model file), or reinstall the plugin."
    )
    monkeypatch.setenv(starter.ENV, str(tmp_path / "gone.pt"))
    code, events = cli("predict", "--raster", str(tmp_path / "scene.tif"), "--output", "p.tif")
    assert code == 1
    assert events[-1]["message"] == (
        f"The starter model {tmp_path / 'gone.pt'} set by FOOTPRINT_STARTER_MODEL is missing:"
        " give a model with --model (QGIS: Model file), or set FOOTPRINT_STARTER_MODEL to a"
        " model file that exists (unset: the one that comes with Footprint)."
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]


def test_an_output_that_is_the_starter_model_is_refused(tiny: Path, tmp_path: Path) -> None:
    before = tiny.read_bytes()
    config = DetectConfig(
        str(tmp_path / "scene.tif"),
        None,
        str(tmp_path / "b.gpkg"),
        keep_probability=str(tiny),
        overwrite=True,
    )
    with pytest.raises(OutputError, match=f"is the model file {tiny}; choose another"):
        detect(config, RecordingProgress())
    with pytest.raises(OutputError, match=f"is the model file {tiny}; choose another"):
        predict(PredictConfig(str(tmp_path / "scene.tif"), None, str(tiny), overwrite=True),
                RecordingProgress())  # fmt: skip
    assert tiny.read_bytes() == before and not (tmp_path / "b.gpkg").exists()
