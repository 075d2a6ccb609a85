"""Every algorithm through ``processing.run`` on generated scenes, and detect on real imagery.

The synthetic scenes are bright roofs on dark ground (tests/plugin/helpers.py); a compact
model learns them in a few epochs, so scores are checked against firm bounds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qgis.core import (
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputLayerDefinition,
    QgsProcessingParameterDefinition,
    QgsProject,
    QgsSymbolLayer,
    QgsVectorLayer,
)

from footprint.engine.config import ARCHITECTURES

from .helpers import (
    PIXEL,
    QUICK_TRAINING,
    UTM,
    WGS84,
    feature_count,
    layer_epsg,
    make_scene,
    raster_info,
    run,
    synthetic_model,
    synthetic_scenes,
    vector_extent,
    write_boxes,
)

pytestmark = pytest.mark.usefixtures("engine_python")


def provider_algorithm(name: str) -> Any:
    """The registered ``footprint:<name>`` algorithm."""
    from qgis.core import QgsApplication

    return QgsApplication.processingRegistry().algorithmById(f"footprint:{name}")


def box_area(box: tuple[float, float, float, float]) -> float:
    return (box[2] - box[0]) * (box[3] - box[1])


def inside(inner: tuple[float, ...], outer: tuple[float, ...], tol: float = 1e-6) -> bool:
    return (
        inner[0] >= outer[0] - tol
        and inner[1] >= outer[1] - tol
        and inner[2] <= outer[2] + tol
        and inner[3] <= outer[3] + tol
    )


def test_every_parameter_runs_with_its_default(provider: Any) -> None:
    """Only layers, files and outputs need a value: other inputs have defaults or are optional."""
    needs_value = {"raster", "vector", "multilayer", "file"}
    for alg in provider.algorithms():
        for param in alg.parameterDefinitions():
            if param.isDestination() or param.type() in needs_value:
                continue
            optional = param.flags() & QgsProcessingParameterDefinition.FlagOptional
            assert optional or param.defaultValue() is not None, (alg.id(), param.name())
            assert param.description(), (alg.id(), param.name())
    train = provider.algorithm("train")
    assert train.parameterDefinition("ARCHITECTURE").options() == list(ARCHITECTURES)
    assert {"unet", "unetplusplus", "fpn", "deeplabv3plus", "compact"} <= set(ARCHITECTURES)


def test_parameters_take_the_engines_defaults_ranges_and_help(provider: Any) -> None:
    """Every parameter bound to an engine option offers the engine's default, range and help
    (one place decides them), and its default reaches the engine as the engine's own default:
    the option the dialog passes, read back by the engine's command-line parser, gives the
    engine config's default (empty parameters pass nothing, and the engine applies it)."""
    import argparse
    import dataclasses

    from footprint.engine.cli import _add_field
    from footprint.plugin.algorithms.options import Option

    seen = 0
    for alg in provider.algorithms():
        options = [o for o in vars(type(alg)).values() if isinstance(o, tuple)]
        for option in (o for group in options for o in group if isinstance(o, Option)):
            param = alg.parameterDefinition(option.param)
            meta = option.field.metadata
            engine_default = {f.name: f.default for f in dataclasses.fields(option.config)}[
                option.name
            ]
            assert param.help() == meta["help"] and param.description(), option.param
            if meta["minimum"] is not None:
                assert param.minimum() == meta["minimum"], option.param
            value = param.defaultValue()
            args = option.args(alg, {option.param: value}, QgsProcessingContext())
            parser = argparse.ArgumentParser()
            _add_field(parser, option.field, "value")
            parsed = parser.parse_args(args).value
            if not args:  # nothing passed: only for an empty parameter, the engine decides
                assert value in (None, "") and option.may_be_empty, (alg.id(), option.param)
                parsed = engine_default
            assert parsed == engine_default, (alg.id(), option.param, args)
            seen += 1
    assert seen >= 30  # train's 16, detect's 9, predict's 4, vectorize's 5, ...


def test_cluster_security_parameters_are_advanced(provider: Any) -> None:
    """Detect and predict take the scheduler's TLS files and an opt-in to a plain scheduler of
    another machine, off by default, whose help says what it grants."""
    for name in ("detect", "predict"):
        alg = provider.algorithm(name)
        for param in ("SCHEDULER_CA", "SCHEDULER_CERT", "SCHEDULER_KEY", "SCHEDULER_INSECURE"):
            flags = alg.parameterDefinition(param).flags()
            assert flags & QgsProcessingParameterDefinition.FlagAdvanced, (name, param)
        insecure = alg.parameterDefinition("SCHEDULER_INSECURE")
        assert insecure.type() == "boolean" and insecure.defaultValue() is False
        assert "can run any program as you" in insecure.help()


def test_rasterizelabels_burns_labels_from_another_crs(tmp_path: Path) -> None:
    scene = make_scene(tmp_path, "scene", labels_epsg=WGS84)
    assert layer_epsg(scene.labels) == WGS84
    result = run(
        "footprint:rasterizelabels",
        scene.mask_parameters(tmp_path / "m.tif"),
    )
    mask = raster_info(result["OUTPUT"])
    assert mask["size"] == (128, 128) and layer_epsg(result["OUTPUT"]) == UTM
    assert mask["extent"] == pytest.approx(scene.extent)
    expected = sum(box_area(b) for b in scene.boxes) / PIXEL**2
    assert int((mask["array"] == 1).sum()) == result["BUILDING_PIXELS"] == expected
    assert result["BUILDINGS"] == len(scene.boxes) == 16


def test_rasterizelabels_contact_class_and_overwrite(tmp_path: Path) -> None:
    scene = make_scene(tmp_path, "scene")
    out = tmp_path / "mask.tif"
    out.write_text("an older file Processing asked to replace")
    run(
        "footprint:rasterizelabels",
        scene.mask_parameters(out, SEPARATION=True),
    )
    assert raster_info(out)["size"] == (128, 128)  # replaced (--overwrite)


def test_train_outputs_model_report_and_scores() -> None:
    result = synthetic_model()
    assert Path(result["OUTPUT"]).is_file() and result["OUTPUT"].endswith("model.pt")
    report = Path(result["REPORT_DIR"])
    assert (report / "history.json").is_file()
    assert len(json.loads((report / "history.json").read_text())) == QUICK_TRAINING["EPOCHS"]
    assert result["VAL_IOU"] > 0.6 and result["VAL_F1"] > 0.75
    assert 0 < result["VAL_PRECISION"] <= 1 and 0 < result["VAL_RECALL"] <= 1
    assert 0 < result["THRESHOLD"] < 1 and 1 <= result["BEST_EPOCH"] <= QUICK_TRAINING["EPOCHS"]


def test_train_report_folder_and_validation_layer(tmp_path: Path, feedback: Any) -> None:
    train, _ = synthetic_scenes()
    x0, y0, _, _ = train.extent
    validation = write_boxes(tmp_path / "val.gpkg", [(x0, y0, x0 + 32, y0 + 32)])
    result = run(
        "footprint:train",
        {
            "RASTERS": [str(train.raster)],
            "LABELS": [str(train.labels)],
            "VALIDATION": str(validation),
            **QUICK_TRAINING,
            "EPOCHS": 1,
            "AUGMENT": False,
            "OUTPUT": str(tmp_path / "m.pt"),
            "REPORT_DIR": str(tmp_path / "report"),
        },
        feedback=feedback,
    )
    assert result["REPORT_DIR"] == str(tmp_path / "report")
    assert (tmp_path / "report" / "summary.json").is_file()
    command = feedback.commands[-1]
    for part in ("--validation", "--architecture compact", "--epochs 1", "--no-augment"):
        assert part in command, command
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["data"]["split"] != "blocks"  # the validation layer, not a fraction


def test_train_fine_tunes_a_model_inside_a_labelled_area(tmp_path: Path, feedback: Any) -> None:
    train, _ = synthetic_scenes()
    x0, y0, _, _ = train.extent
    area = write_boxes(tmp_path / "area.gpkg", [(x0, y0, x0 + 40, y0 + 40)])
    start = synthetic_model()["OUTPUT"]
    result = run(
        "footprint:train",
        {
            "RASTERS": [str(train.raster)],
            "LABELS": [str(train.labels)],
            **QUICK_TRAINING,
            "EPOCHS": 1,
            "VAL_FRACTION": 0.0,
            "LABELLED_AREA": str(area),
            "INIT_MODEL": start,
            "OUTPUT": str(tmp_path / "tuned.pt"),
        },
        feedback=feedback,
    )
    assert Path(result["OUTPUT"]).is_file()
    command = feedback.commands[-1]
    assert "--labelled-area" in command and f"--init-model {start}" in command, command
    assert any("Fine-tuning" in m for m in feedback.infos), feedback.infos


def test_train_pretrained_encoder_choice_reaches_the_engine(tmp_path: Path, feedback: Any) -> None:
    train, _ = synthetic_scenes()
    parameters = {
        "RASTERS": [str(train.raster)],
        "LABELS": [str(train.labels)],
        **QUICK_TRAINING,
        "PRETRAINED": "imagenet",
        "OUTPUT": str(tmp_path / "m.pt"),
    }
    with pytest.raises(QgsProcessingException, match="compact model has no pretrained encoder"):
        run("footprint:train", parameters, feedback=feedback)
    assert "--encoder-weights imagenet" in feedback.commands[-1]
    assert not (tmp_path / "m.pt").exists()


def test_predict_limits_work_to_an_extent_given_in_another_crs(tmp_path: Path) -> None:
    _, test = synthetic_scenes()
    trained = synthetic_model()
    x0, y0, x1, y1 = test.extent
    west = to_wgs84((x0 - 10, y0 - 10, (x0 + x1) / 2, y1 + 10))
    result = run(
        "footprint:predict",
        {
            "INPUT": str(test.raster),
            "MODEL": trained["OUTPUT"],
            "EXTENT": f"{west[0]},{west[2]},{west[1]},{west[3]} [EPSG:{WGS84}]",
            "OUTPUT": str(tmp_path / "p.tif"),
        },
    )
    info = raster_info(result["OUTPUT"])
    assert info["size"] == (128, 128) and info["extent"] == pytest.approx(test.extent)
    assert layer_epsg(result["OUTPUT"]) == UTM
    prob = info["array"]
    assert (prob[:, 70:] == -1).all()  # outside the extent: nodata
    left = prob[:, :60]
    assert ((left >= 0) & (left <= 1)).all()
    roofs = np.zeros_like(prob, dtype=bool)
    for r0, c0, h, w in roof_pixels(test):
        roofs[r0 : r0 + h, c0 : c0 + w] = True
    found, truth = left >= trained["THRESHOLD"], roofs[:, :60]
    assert (found & truth).sum() / (found | truth).sum() > 0.6  # IoU of the roofs


def test_vectorize_mask_gives_one_polygon_per_building(tmp_path: Path) -> None:
    scene = make_scene(tmp_path, "scene")
    mask = run(
        "footprint:rasterizelabels",
        scene.mask_parameters(tmp_path / "m.tif"),
    )["OUTPUT"]
    result = run(
        "footprint:vectorize",
        {"INPUT": mask, "SIMPLIFY": 0.0, "OUTPUT": str(tmp_path / "b.gpkg")},
    )
    assert result["BUILDINGS"] == feature_count(result["OUTPUT"]) == 16
    assert layer_epsg(result["OUTPUT"]) == UTM
    assert inside(vector_extent(result["OUTPUT"]), scene.extent)
    assert result["TOTAL_AREA"] == pytest.approx(sum(box_area(b) for b in scene.boxes))
    limit = sorted(box_area(b) for b in scene.boxes)[5] - 0.1  # drops the 5 smallest
    small = run(
        "footprint:vectorize",
        {"INPUT": mask, "MIN_AREA": limit, "REGULARIZE": True, "OUTPUT": str(tmp_path / "s.gpkg")},
    )
    assert small["BUILDINGS"] == feature_count(small["OUTPUT"]) == 11


def test_detect_finds_the_buildings_of_an_unseen_scene(tmp_path: Path) -> None:
    _, test = synthetic_scenes()
    trained = synthetic_model()
    result = run(
        "footprint:detect",
        {
            "INPUT": str(test.raster),
            "MODEL": trained["OUTPUT"],
            "OUTPUT": str(tmp_path / "d.gpkg"),
            "PROBABILITY": str(tmp_path / "d.tif"),
        },
    )
    assert result["USED_THRESHOLD"] == pytest.approx(trained["THRESHOLD"])
    assert 14 <= result["BUILDINGS"] == feature_count(result["OUTPUT"]) <= 18
    assert layer_epsg(result["OUTPUT"]) == UTM
    assert inside(vector_extent(result["OUTPUT"]), test.extent)
    assert raster_info(result["PROBABILITY"])["size"] == (128, 128)
    strict = run(
        "footprint:detect",
        {
            "INPUT": str(test.raster),
            "MODEL": trained["OUTPUT"],
            "THRESHOLD": 1.0,
            "OUTPUT": str(tmp_path / "none.gpkg"),
        },
    )
    assert strict["USED_THRESHOLD"] == 1.0 and strict["BUILDINGS"] < result["BUILDINGS"]
    assert strict["PROBABILITY"] is None and not (tmp_path / "none.tif").exists()


def test_detect_and_predict_without_a_model_use_the_starter_model(
    tmp_path: Path, feedback: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """*Model file* left empty: no --model goes to the engine, which uses the starter model
    (here the synthetic model, made the starter model through FOOTPRINT_STARTER_MODEL) and
    says so; the buildings are those of the same model given as the model file."""
    from footprint.engine.config import MODEL_HELP

    _, test = synthetic_scenes()
    trained = synthetic_model()
    monkeypatch.setenv("FOOTPRINT_STARTER_MODEL", trained["OUTPUT"])
    for name in ("detect", "predict"):
        param = provider_algorithm(name).parameterDefinition("MODEL")
        assert param.flags() & QgsProcessingParameterDefinition.FlagOptional, name
        assert param.help() == MODEL_HELP and "starter model" in MODEL_HELP
    parameters = {"INPUT": str(test.raster), "OUTPUT": str(tmp_path / "starter.gpkg")}
    result = run("footprint:detect", parameters, feedback=feedback)
    assert "--model" not in feedback.commands[-1], feedback.commands[-1]
    assert any(i.startswith(f"Using the starter model {trained['OUTPUT']}") for i in feedback.infos)
    given = run(
        "footprint:detect",
        {**parameters, "MODEL": trained["OUTPUT"], "OUTPUT": str(tmp_path / "given.gpkg")},
    )
    assert 14 <= result["BUILDINGS"] == given["BUILDINGS"] == feature_count(result["OUTPUT"])
    predicted = run(
        "footprint:predict",
        {"INPUT": str(test.raster), "MODEL": "", "OUTPUT": str(tmp_path / "p.tif")},
        feedback=feedback,
    )
    assert "--model" not in feedback.commands[-1] and Path(predicted["OUTPUT"]).is_file()


def test_detect_without_a_model_says_when_the_starter_model_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, test = synthetic_scenes()
    monkeypatch.setenv("FOOTPRINT_STARTER_MODEL", str(tmp_path / "gone.pt"))
    parameters = {"INPUT": str(test.raster), "OUTPUT": str(tmp_path / "b.gpkg")}
    with pytest.raises(QgsProcessingException, match="The starter model .* is missing"):
        run("footprint:detect", parameters)
    assert list(tmp_path.iterdir()) == []


def test_train_starts_from_the_starter_model(
    tmp_path: Path, feedback: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """*Start from the starter model* fine-tunes it (engine: --init-model starter); with a
    model file as well, the dialog refuses both."""
    train, _ = synthetic_scenes()
    start = synthetic_model()["OUTPUT"]
    monkeypatch.setenv("FOOTPRINT_STARTER_MODEL", start)
    parameters = {
        "RASTERS": [str(train.raster)],
        "LABELS": [str(train.labels)],
        **QUICK_TRAINING,
        "EPOCHS": 1,
        "STARTER_MODEL": True,
        "OUTPUT": str(tmp_path / "tuned.pt"),
    }
    result = run("footprint:train", parameters, feedback=feedback)
    assert Path(result["OUTPUT"]).is_file()
    assert "--init-model starter" in feedback.commands[-1], feedback.commands[-1]
    assert any(m.startswith(f"Fine-tuning {start}") for m in feedback.infos), feedback.infos
    alg = provider_algorithm("train")
    both = {**parameters, "INIT_MODEL": start}
    ok, message = alg.checkParameterValues(both, QgsProcessingContext())
    assert not ok and "not both" in message
    assert alg.checkParameterValues(parameters, QgsProcessingContext())[0]


def test_detect_and_predict_on_local_dask_workers(tmp_path: Path) -> None:
    """The Local workers parameter runs the job on a local Dask cluster: the same buildings
    and probabilities as in one process."""
    _, test = synthetic_scenes()
    model = synthetic_model()["OUTPUT"]
    outputs = {}
    for workers in (0, 2):
        outputs[workers] = run(
            "footprint:detect",
            {
                "INPUT": str(test.raster),
                "MODEL": model,
                "DASK_WORKERS": workers,
                "OUTPUT": str(tmp_path / f"d{workers}.gpkg"),
            },
        )
        run(
            "footprint:predict",
            {
                "INPUT": str(test.raster),
                "MODEL": model,
                "DASK_WORKERS": workers,
                "OUTPUT": str(tmp_path / f"p{workers}.tif"),
            },
        )
    assert outputs[0]["BUILDINGS"] == outputs[2]["BUILDINGS"] > 0
    assert feature_count(outputs[2]["OUTPUT"]) == outputs[0]["BUILDINGS"]
    assert raster_info(tmp_path / "p2.tif")["size"] == raster_info(tmp_path / "p0.tif")["size"]


def test_evaluate_scores_detections_against_the_reference(tmp_path: Path) -> None:
    _, test = synthetic_scenes()
    detected = run(
        "footprint:detect",
        {
            "INPUT": str(test.raster),
            "MODEL": synthetic_model()["OUTPUT"],
            "OUTPUT": str(tmp_path / "d.gpkg"),
        },
    )["OUTPUT"]
    result = run(
        "footprint:evaluate",
        {
            "PREDICTED": detected,
            "REFERENCE": str(test.labels),
            "AREA": str(test.raster),
            "OUTPUT": str(tmp_path / "e.gpkg"),
            "REPORT": str(tmp_path / "e.json"),
        },
    )
    assert result["OBJECT_F1"] > 0.8 and result["PIXEL_IOU"] > 0.6
    assert result["PIXEL_ACCURACY"] > 0.9
    report = json.loads(Path(result["REPORT"]).read_text())
    assert report["object_f1"] == pytest.approx(result["OBJECT_F1"])
    assert (result["MERGES"], result["SPLITS"]) == (report["merges"], report["splits"])
    counts = report["object"]
    assert feature_count(result["OUTPUT"]) == counts["tp"] + counts["fp"] + counts["fn"]
    assert counts["tp"] + counts["fn"] == len(test.boxes)


def test_evaluate_reference_against_itself_is_perfect(tmp_path: Path) -> None:
    scene = make_scene(tmp_path, "scene", labels_epsg=WGS84)
    area = make_scene(tmp_path, "area").labels  # polygons as the area (UTM)
    result = run(
        "footprint:evaluate",
        {"PREDICTED": str(scene.labels), "REFERENCE": str(scene.labels), "AREA": str(area)},
    )
    for name in ("PIXEL_PRECISION", "PIXEL_RECALL", "PIXEL_F1", "OBJECT_F1", "OBJECT_RECALL"):
        assert result[name] == pytest.approx(1.0), name
    assert result["OUTPUT"] is None and result["REPORT"] is None
    report = tmp_path / "lined_up.json"
    run(
        "footprint:evaluate",
        {
            "PREDICTED": str(scene.labels),
            "REFERENCE": str(scene.labels),
            "AREA": str(area),
            "MAX_SHIFT": 2.0,
            "CLIP_TO_AREA": True,
            "REPORT": str(report),
        },
    )
    scores = json.loads(report.read_text())
    shift = scores["reference_shift"]
    assert (shift["east_m"], shift["north_m"], shift["max_shift_m"]) == (0.0, 0.0, 2.0)
    assert scores["clip_to_area"] is True and scores["object_f1"] == pytest.approx(1.0)


def test_polygon_outputs_load_with_the_plugin_styles(tmp_path: Path) -> None:
    import processing

    scene = make_scene(tmp_path, "scene")
    project = QgsProject.instance()
    project.removeAllMapLayers()
    out = str(tmp_path / "styled.gpkg")
    processing.runAndLoadResults(
        "footprint:vectorize",
        {"INPUT": str(scene.raster), "THRESHOLD": 0.5, "OUTPUT": out},
        feedback=QgsProcessingFeedback(),
        context=QgsProcessingContext(),
    )
    layers = [la for la in project.mapLayers().values() if isinstance(la, QgsVectorLayer)]
    assert len(layers) == 1 and layers[0].source().startswith(out)
    color = layers[0].renderer().symbol().color()
    assert (color.red(), color.green(), color.blue()) == (242, 140, 40)  # buildings.qml
    # low-confidence buildings (the ones to check first) get a thick magenta outline
    outline = layers[0].renderer().symbol().symbolLayer(0).dataDefinedProperties()
    stroke = outline.property(QgsSymbolLayer.PropertyStrokeColor)
    assert stroke.isActive() and '"low_confidence" = 1' in stroke.expressionString()
    assert "low_confidence" in layers[0].fields().names()
    project.removeAllMapLayers()
    evaluation = str(tmp_path / "eval.gpkg")
    processing.runAndLoadResults(
        "footprint:evaluate",
        {
            "PREDICTED": str(scene.labels),
            "REFERENCE": str(scene.labels),
            "OUTPUT": QgsProcessingOutputLayerDefinition(evaluation, project),
        },
        feedback=QgsProcessingFeedback(),
        context=QgsProcessingContext(),
    )
    loaded = list(project.mapLayers().values())
    assert len(loaded) == 1 and loaded[0].renderer().type() == "categorizedSymbol"
    project.removeAllMapLayers()


# --- real imagery ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def banepa_model(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A compact model trained briefly on banepa_2x2 through footprint:train."""
    from .conftest import DATA

    small = DATA / "banepa_2x2"
    if not small.is_dir():
        pytest.skip(f"real data not found at {DATA} (set FOOTPRINT_DATA to its folder)")
    folder = tmp_path_factory.mktemp("banepa")
    return run(
        "footprint:train",
        {
            "RASTERS": [str(small / "banepa_2x2_rgb_jpeg.tif")],
            "LABELS": [str(small / "banepa_2x2_buildings.geojson")],
            "ARCHITECTURE": "compact",
            "TILE_SIZE": 256,
            "EPOCHS": 8,
            "LR": 0.01,
            "SEPARATION": False,  # pixel scores below; the engine's end-to-end test covers it
            "OUTPUT": str(folder / "banepa.pt"),
        },
    )


def test_detect_on_banepa_test_chips(
    banepa_model: dict[str, Any], shared_data: Path, tmp_path: Path
) -> None:
    from osgeo import gdal

    chips = sorted((shared_data / "banepa" / "test" / "oam").glob("OAM-386694-22024[12]-19.tif"))
    assert len(chips) == 2
    mosaic = tmp_path / "test_chips.vrt"
    gdal.BuildVRT(str(mosaic), [str(c) for c in chips])
    detected = run(
        "footprint:detect",
        {
            "INPUT": str(mosaic),
            "MODEL": banepa_model["OUTPUT"],
            "OUTPUT": str(tmp_path / "b.gpkg"),
            "PROBABILITY": str(tmp_path / "p.tif"),
        },
    )
    assert detected["BUILDINGS"] == feature_count(detected["OUTPUT"]) > 0
    assert layer_epsg(detected["OUTPUT"]) == WGS84
    assert inside(vector_extent(detected["OUTPUT"]), raster_info(mosaic)["extent"])
    scores = run(
        "footprint:evaluate",
        {
            "PREDICTED": detected["OUTPUT"],
            "REFERENCE": str(shared_data / "banepa" / "labels" / "buildings_banepa_osm.geojson"),
            "AREA": detected["PROBABILITY"],
        },
    )
    assert banepa_model["VAL_IOU"] > 0.5
    print(banepa_model, scores)
    assert scores["PIXEL_IOU"] > 0.45 and scores["PIXEL_ACCURACY"] > 0.6, scores


# --- helpers ---------------------------------------------------------------------------


def to_wgs84(box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """A UTM box's bounding box in EPSG:4326 (lon/lat)."""
    from osgeo import osr

    src, dst = osr.SpatialReference(), osr.SpatialReference()
    src.ImportFromEPSG(UTM)
    dst.ImportFromEPSG(WGS84)
    dst.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    t = osr.CoordinateTransformation(src, dst)
    corners = [t.TransformPoint(x, y)[:2] for x in box[::2] for y in box[1::2]]
    xs, ys = [c[0] for c in corners], [c[1] for c in corners]
    return (min(xs), min(ys), max(xs), max(ys))


def roof_pixels(scene: Any) -> list[tuple[int, int, int, int]]:
    """(row0, col0, rows, cols) of each roof of a scene, from its boxes."""
    x0, _, _, y1 = scene.extent
    return [
        (
            round((y1 - b[3]) / PIXEL),
            round((b[0] - x0) / PIXEL),
            round((b[3] - b[1]) / PIXEL),
            round((b[2] - b[0]) / PIXEL),
        )
        for b in scene.boxes
    ]
