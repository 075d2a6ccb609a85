"""The example Processing model: it loads, chains the four steps, and runs end to end."""

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
    write_boxes,
)

MODEL = REPO / "resources" / "models" / "footprint_example.model3"


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


def test_script_regenerates_the_same_model(tmp_path: Path) -> None:
    out = tmp_path / "again.model3"
    done = subprocess.run(
        ["/usr/bin/python3", str(REPO / "scripts" / "make_example_model.py"), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert out.read_text() == MODEL.read_text()


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
    contact strip width): it must still validate and run with the engine's default."""
    text = MODEL.read_text(encoding="utf-8")
    start = text.index('<Option type="List" name="BOUNDARY_WIDTH">')
    end = text.index("</Option>\n        </Option>\n", start) + len(
        "</Option>\n        </Option>\n"
    )
    old = tmp_path / "old.model3"
    old.write_text(text[:start] + text[end:], encoding="utf-8")
    model = load_model(old)
    assert "BOUNDARY_WIDTH" not in model.childAlgorithm("train").parameterSources()
    assert model.validate()[0], model.validate()[1]
