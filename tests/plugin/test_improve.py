"""``footprint:improve``: each parameter reaches the engine's ``improve`` as its option (the
engine faked: no training), the outputs come from its result, and a web layer is drawn over the
area checked when no extent is given. The real engine runs in test_qgis_process.py and
test_model3.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from osgeo import gdal
from qgis.core import QgsProcessingException, QgsProject, QgsRasterLayer, QgsVectorLayer

from footprint.plugin.algorithms import base, common

from .helpers import (
    UTM45N,
    feature_count,
    layer_epsg,
    make_scene,
    make_xyz_tiles,
    run,
    write_boxes,
    xyz_uri,
)

#: The engine's result of a run whose model has a separation class (building F1 scored).
RESULT = {
    "report": "",
    "start_model": "starter",
    "before": {"val_iou": 0.5, "val_building_f1": 0.4, "val_f1": 0.6},
    "after": {"val_iou": 0.7, "val_building_f1": 0.65, "val_f1": 0.8},
    "improved": True,
    "epochs_run": 3,
    "minutes": 0.5,
    "train_windows": 3,
    "val_windows": 1,
    "buildings": 16,
}


@pytest.fixture
def engine_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[str]]]:
    """The engine replaced: records (command, args) and answers ``improve`` with
    :data:`RESULT` (plus the output and report folder asked for) and ``model-info`` with a
    0.5 m model."""
    calls: list[tuple[str, list[str]]] = []

    def engine(command: str, args: list[str], feedback: Any) -> dict[str, Any]:
        calls.append((command, list(args)))
        if command == "model-info":
            return {"spec": {"resolution_m": 0.5}}
        report = args[args.index("--report-dir") + 1] if "--report-dir" in args else "r"
        return {**RESULT, "output": args[args.index("--output") + 1], "report": report}

    monkeypatch.setattr(base, "run_engine", engine)
    return calls


def option(args: list[str], flag: str) -> str:
    """The value given to ``flag``."""
    return args[args.index(flag) + 1]


def test_every_parameter_reaches_the_engine_as_its_option(
    engine_calls: list[tuple[str, list[str]]], tmp_path: Path
) -> None:
    scene = make_scene(tmp_path, "scene")
    checked = write_boxes(tmp_path / "checked.gpkg", [scene.extent])
    validation = write_boxes(tmp_path / "validation.gpkg", [scene.extent])
    start = tmp_path / "start.pt"
    start.write_bytes(b"read by the engine only")
    result = run(
        "footprint:improve",
        {
            "INPUT": str(scene.raster),
            "BUILDINGS": str(scene.labels),
            "CHECKED_AREA": str(checked),
            "MODEL": str(start),
            "VALIDATION": str(validation),
            "MINUTES": 2.5,
            "EPOCHS": 3,
            "HELD_BACK": 0.3,
            "FREEZE_ENCODER_EPOCHS": 1,
            "LR": 0.001,
            "EMPTY_KEEP_FRACTION": 0.5,
            "SEED": 7,
            "OUTPUT": str(tmp_path / "improved.pt"),
            "REPORT_DIR": str(tmp_path / "report"),
        },
    )
    ((command, args),) = engine_calls
    assert command == "improve"
    expected = {
        "--raster": str(scene.raster),
        "--labels": str(scene.labels),
        "--checked-area": str(checked),
        "--model": str(start),
        "--validation": str(validation),
        "--minutes": "2.5",
        "--epochs": "3",
        "--held-back": "0.3",
        "--freeze-encoder-epochs": "1",
        "--lr": "0.001",
        "--empty-keep-fraction": "0.5",
        "--seed": "7",
        "--output": str(tmp_path / "improved.pt"),
        "--report-dir": str(tmp_path / "report"),
    }
    assert {flag: option(args, flag) for flag in expected} == expected
    assert "--overwrite" in args and option(args, "--device")
    assert result["OUTPUT"] == str(tmp_path / "improved.pt")
    assert result["REPORT_DIR"] == str(tmp_path / "report")
    assert (result["BEFORE_F1"], result["AFTER_F1"]) == (0.4, 0.65)  # building F1
    assert (result["BEFORE_IOU"], result["AFTER_IOU"]) == (0.5, 0.7)
    assert (result["IMPROVED"], result["EPOCHS_RUN"]) == (1, 3)


def test_defaults_start_from_the_starter_model_for_the_time_budget(
    engine_calls: list[tuple[str, list[str]]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only the layers and the model file to write: no --model (the engine's starter model),
    no --validation (a share held back), no --epochs (the time budget), no --report-dir; a
    model without a separation class is scored by pixel IoU."""
    from footprint.engine.config import ImproveConfig

    scene = make_scene(tmp_path, "scene")
    checked = write_boxes(tmp_path / "checked.gpkg", [scene.extent])
    monkeypatch.setitem(RESULT, "before", {"val_iou": 0.6})
    monkeypatch.setitem(RESULT, "after", {"val_iou": 0.55})
    monkeypatch.setitem(RESULT, "improved", False)
    result = run(
        "footprint:improve",
        {
            "INPUT": str(scene.raster),
            "BUILDINGS": str(scene.labels),
            "CHECKED_AREA": str(checked),
            "OUTPUT": str(tmp_path / "improved.pt"),
        },
    )
    ((_, args),) = engine_calls
    for flag in ("--model", "--validation", "--epochs", "--report-dir"):
        assert flag not in args, args
    assert option(args, "--minutes") == repr(ImproveConfig.minutes)
    assert option(args, "--held-back") == repr(ImproveConfig.held_back)
    assert (result["BEFORE_F1"], result["AFTER_F1"]) == (0.6, 0.55)  # pixel IoU instead
    assert result["IMPROVED"] == 0


@pytest.fixture(scope="module")
def web_layer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A local XYZ layer in the project (Banepa, UTM 45N; see helpers.make_xyz_tiles)."""
    tiles = make_xyz_tiles(tmp_path_factory.mktemp("xyz"))
    layer = QgsRasterLayer(xyz_uri(tiles), "drone xyz", "wms")
    assert layer.isValid()
    QgsProject.instance().addMapLayer(layer)
    yield layer
    QgsProject.instance().removeMapLayer(layer.id())


def test_a_web_layer_is_drawn_over_the_area_checked_and_a_margin(
    engine_calls: list[tuple[str, list[str]]],
    web_layer: QgsRasterLayer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No Extent: the web layer is drawn over the area checked grown by a tenth of its longer
    side on every side, at the starting model's resolution (here the starter model's)."""
    (tmp_path / "starter.json").write_text(json.dumps({"resolution_m": 0.5}))
    monkeypatch.setattr(common, "resource_path", lambda name: str(tmp_path / "starter.json"))
    monkeypatch.delenv(common.STARTER_ENV, raising=False)
    area = (355_040.0, 3_056_880.0, 355_140.0, 3_056_930.0)  # 100 m x 50 m
    checked = write_boxes(tmp_path / "checked.gpkg", [area], epsg=UTM45N)
    buildings = write_boxes(tmp_path / "b.gpkg", [(355_050, 3_056_890, 355_060, 3_056_900)], UTM45N)
    parameters = {
        "INPUT": web_layer.id(),
        "BUILDINGS": str(buildings),
        "CHECKED_AREA": str(checked),
        "OUTPUT": str(tmp_path / "improved.pt"),
    }
    run("footprint:improve", parameters)
    ((command, args),) = engine_calls
    drawn = gdal.Open(option(args, "--raster"))
    x0, px, _, y1, _, py = drawn.GetGeoTransform()
    x1, y0 = x0 + px * drawn.RasterXSize, y1 + py * drawn.RasterYSize
    assert command == "improve" and px == 0.5 and layer_epsg(option(args, "--raster")) == UTM45N
    margin = 10.0  # a tenth of 100 m
    assert x0 == pytest.approx(area[0] - margin, abs=1) and x1 == pytest.approx(
        area[2] + margin, abs=1
    )
    assert y0 == pytest.approx(area[1] - margin, abs=1) and y1 == pytest.approx(
        area[3] + margin, abs=1
    )
    engine_calls.clear()
    extent = "355000,355060,3056870,3056900 [EPSG:32645]"
    run("footprint:improve", {**parameters, "EXTENT": extent})
    drawn = gdal.Open(option(engine_calls[-1][1], "--raster"))
    assert drawn.RasterXSize * 0.5 == pytest.approx(60, abs=1)  # the extent given, not the area


def test_a_web_layer_with_an_empty_area_checked_is_refused(
    engine_calls: list[tuple[str, list[str]]], web_layer: QgsRasterLayer, tmp_path: Path
) -> None:
    """Nothing to draw around: the extent is asked for, and the engine never runs."""
    empty = write_boxes(tmp_path / "checked.gpkg", [], epsg=UTM45N)
    with pytest.raises(QgsProcessingException, match="Extent .*required for raster layer"):
        run(
            "footprint:improve",
            {
                "INPUT": web_layer.id(),
                "BUILDINGS": str(empty),
                "CHECKED_AREA": str(empty),
                "OUTPUT": str(tmp_path / "improved.pt"),
            },
        )
    assert engine_calls == [] and not (tmp_path / "improved.pt").exists()


def test_unsaved_edits_of_the_corrected_layer_reach_the_engine(
    engine_calls: list[tuple[str, list[str]]], tmp_path: Path
) -> None:
    """The mapper deleted a false building and has not saved: the engine gets the layer as the
    map shows it (a copy), and the file on disk is left as it is."""
    scene = make_scene(tmp_path, "scene")
    checked = write_boxes(tmp_path / "checked.gpkg", [scene.extent])
    layer = QgsVectorLayer(str(scene.labels), "corrected", "ogr")
    QgsProject.instance().addMapLayer(layer)
    try:
        assert layer.startEditing() and layer.deleteFeature(next(layer.getFeatures()).id())
        run(
            "footprint:improve",
            {
                "INPUT": str(scene.raster),
                "BUILDINGS": layer.id(),
                "CHECKED_AREA": str(checked),
                "OUTPUT": str(tmp_path / "improved.pt"),
            },
        )
        labels = option(engine_calls[-1][1], "--labels")
        assert labels != str(scene.labels)
        assert feature_count(labels) == len(scene.boxes) - 1
        assert feature_count(scene.labels) == len(scene.boxes)
    finally:
        layer.rollBack()
        QgsProject.instance().removeMapLayer(layer.id())
