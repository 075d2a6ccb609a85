"""The example Processing models: they load, chain their steps, regenerate identically, and run
end to end (train, detect, evaluate; and the loop: improve, then detect with the improved
model)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from qgis.core import QgsProcessingModelAlgorithm

from .helpers import (
    REPO,
    UTM,
    feature_count,
    layer_epsg,
    make_scene,
    raster_info,
    run,
    synthetic_model,
    synthetic_scenes,
    write_boxes,
)

MODEL = REPO / "resources" / "models" / "footprint_example.model3"
IMPROVE_MODEL = REPO / "resources" / "models" / "footprint_improve.model3"


def load_model(path: Path = MODEL) -> QgsProcessingModelAlgorithm:
    model = QgsProcessingModelAlgorithm()
    assert model.fromFile(str(path)), f"{path} does not load"
    return model


def test_model_loads_and_chains_train_detect_evaluate(provider: Any) -> None:
    model = load_model()
    children = model.childAlgorithms()
    assert {c: children[c].algorithmId() for c in children} == {
        "rasterize": "footprint:rasterizelabels",
        "train": "footprint:train",
        "detect": "footprint:detect",
        "evaluate": "footprint:evaluate",
    }
    assert all(children[c].algorithm() is not None for c in children)  # provider resolves ids
    assert model.validate()[0], model.validate()[1]
    model_source = children["detect"].parameterSources()["MODEL"][0]
    assert (model_source.outputChildId(), model_source.outputName()) == ("train", "OUTPUT")
    predicted = children["evaluate"].parameterSources()["PREDICTED"][0]
    assert (predicted.outputChildId(), predicted.outputName()) == ("detect", "OUTPUT")
    train = children["train"].parameterSources()
    assert train["ARCHITECTURE"][0].staticValue() == "compact"
    assert [d.childId for d in children["train"].dependencies()] == ["rasterize"]
    inputs = {p.name(): p for p in model.parameterDefinitions() if not p.isDestination()}
    assert set(inputs) == {"raster", "buildings", "test_raster", "epochs", "tile_size"}
    assert inputs["epochs"].defaultValue() <= 10  # quick by default


def test_script_regenerates_the_same_models(tmp_path: Path) -> None:
    outputs = [tmp_path / "again.model3", tmp_path / "improve_again.model3"]
    done = subprocess.run(
        ["/usr/bin/python3", str(REPO / "scripts" / "make_example_model.py"), *map(str, outputs)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert outputs[0].read_text() == MODEL.read_text()
    assert outputs[1].read_text() == IMPROVE_MODEL.read_text()


def test_improve_model_loads_and_chains_improve_then_detect(provider: Any) -> None:
    """Detect's model file is improve's output; the starting model, the epochs and detect's
    extent may be left empty (the starter model, the time budget, the whole raster)."""
    from footprint.engine.config import ImproveConfig

    model = load_model(IMPROVE_MODEL)
    children = model.childAlgorithms()
    assert {c: children[c].algorithmId() for c in children} == {
        "improve": "footprint:improve",
        "detect": "footprint:detect",
    }
    assert all(children[c].algorithm() is not None for c in children)
    assert model.validate()[0], model.validate()[1]
    source = children["detect"].parameterSources()["MODEL"][0]
    assert (source.outputChildId(), source.outputName()) == ("improve", "OUTPUT")
    improve = children["improve"].parameterSources()
    assert improve["CHECKED_AREA"][0].parameterName() == "checked_area"
    assert improve["MODEL"][0].parameterName() == "start_model"
    inputs = {p.name(): p for p in model.parameterDefinitions() if not p.isDestination()}
    assert set(inputs) == {
        "raster", "buildings", "checked_area", "start_model", "minutes", "epochs",
        "next_raster", "next_extent",
    }  # fmt: skip
    optional = {n for n, p in inputs.items() if p.flags() & p.FlagOptional}
    assert optional == {"start_model", "epochs", "next_extent"}
    assert inputs["minutes"].defaultValue() == ImproveConfig.minutes


@pytest.mark.usefixtures("engine_python")
def test_model_runs_end_to_end(tmp_path: Path) -> None:
    train = make_scene(tmp_path, "train", seed=0)
    test = make_scene(tmp_path, "test", seed=1, origin=(500_100.0, 3_700_000.0))
    buildings = write_boxes(tmp_path / "all.gpkg", train.boxes + test.boxes)
    model = load_model()
    result = run(
        model,
        {
            "raster": str(train.raster),
            "buildings": str(buildings),
            "test_raster": str(test.raster),
            "epochs": 5,
            "tile_size": 64,
            "rasterize:Label mask": str(tmp_path / "mask.tif"),
            "train:Model file": str(tmp_path / "model.pt"),
            "detect:Detected buildings": str(tmp_path / "detected.gpkg"),
            "evaluate:Evaluation (TP, FP, FN)": str(tmp_path / "evaluation.gpkg"),
        },
    )
    assert raster_info(result["rasterize:Label mask"])["size"] == (128, 128)
    assert Path(result["train:Model file"]).is_file()
    detected = result["detect:Detected buildings"]
    assert layer_epsg(detected) == UTM and 14 <= feature_count(detected) <= 18
    evaluation = result["evaluate:Evaluation (TP, FP, FN)"]
    assert feature_count(evaluation) >= len(test.boxes)  # TP + FN = reference buildings
    scores = result["CHILD_RESULTS"]["evaluate"]
    assert scores["OBJECT_F1"] > 0.8 and scores["PIXEL_IOU"] > 0.6, scores
    assert result["CHILD_RESULTS"]["rasterize"]["BUILDINGS"] == 16  # buildings on that raster


def test_models_saved_before_new_train_parameters_still_validate(
    provider: Any, tmp_path: Path
) -> None:
    """A Processing model saved by 0.1.0 has no value for parameters added since (e.g. the
    separation strip width): it must still validate and run with the engine's default."""
    text = MODEL.read_text(encoding="utf-8")
    start = text.index('<Option type="List" name="SEPARATION_WIDTH">')
    end = text.index("</Option>\n        </Option>\n", start) + len(
        "</Option>\n        </Option>\n"
    )
    old = tmp_path / "old.model3"
    old.write_text(text[:start] + text[end:], encoding="utf-8")
    model = load_model(old)
    assert "SEPARATION_WIDTH" not in model.childAlgorithm("train").parameterSources()
    assert model.validate()[0], model.validate()[1]


@pytest.mark.usefixtures("engine_python")
def test_improve_model_runs_end_to_end(tmp_path: Path) -> None:
    """Improve the synthetic model with the training scene's buildings (all checked, one
    epoch), then detect on the test scene with the improved model."""
    train, test = synthetic_scenes()
    checked = write_boxes(tmp_path / "checked.gpkg", [train.extent])
    result = run(
        load_model(IMPROVE_MODEL),
        {
            "raster": str(train.raster),
            "buildings": str(train.labels),
            "checked_area": str(checked),
            "start_model": synthetic_model()["OUTPUT"],
            "epochs": 1,
            "next_raster": str(test.raster),
            "improve:Improved model": str(tmp_path / "improved.pt"),
            "detect:Detected buildings": str(tmp_path / "detected.gpkg"),
        },
    )
    assert result["improve:Improved model"] == str(tmp_path / "improved.pt")
    assert Path(result["improve:Improved model"]).is_file()
    assert result["CHILD_RESULTS"]["improve"]["EPOCHS_RUN"] == 1
    detected = result["detect:Detected buildings"]
    assert layer_epsg(detected) == UTM and feature_count(detected) > 0
