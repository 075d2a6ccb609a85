#!/usr/bin/env python3
"""Write the example Processing models ``resources/models/footprint_example.model3`` and
``resources/models/footprint_improve.model3``.

Run with QGIS's Python: ``/usr/bin/python3 scripts/make_example_model.py [OUTPUT [IMPROVE]]``
(no argument: both into resources/models; else the example into OUTPUT, and the improve model
into IMPROVE when given).
The example chains the Footprint algorithms: rasterize the building layer on the training
raster (a check of the labels, run first), train a compact U-Net, detect buildings on a test
raster with the trained model file, evaluate them against the building layer over the test
raster. Inputs: training raster, building layer, test raster, epochs, tile size.
The improve model is the mapper's loop: improve a model (default: the starter model) with the
corrected buildings inside the area checked, then detect buildings on the next raster (or
extent) with the improved model.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("QT_HASH_SEED", "0")  # the same attribute order on every run

from qgis.core import (  # noqa: E402
    QgsApplication,
    QgsProcessing,
    QgsProcessingModelAlgorithm,
    QgsProcessingModelChildAlgorithm,
    QgsProcessingModelChildDependency,
    QgsProcessingModelChildParameterSource,
    QgsProcessingModelOutput,
    QgsProcessingModelParameter,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterVectorLayer,
)
from qgis.PyQt.QtCore import QPointF  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "resources" / "models" / "footprint_example.model3"
NAME = "Footprint example: train, detect and evaluate"
IMPROVE_OUTPUT = REPO / "resources" / "models" / "footprint_improve.model3"
IMPROVE_NAME = "Footprint loop: improve the model, detect again"

Source = QgsProcessingModelChildParameterSource


def _add_inputs(model: QgsProcessingModelAlgorithm) -> None:
    """The example's inputs."""
    _add_parameters(
        model,
        [
            QgsProcessingParameterRasterLayer("raster", "Training raster"),
            QgsProcessingParameterVectorLayer(
                "buildings", "Building polygons", [QgsProcessing.TypeVectorPolygon]
            ),
            QgsProcessingParameterRasterLayer("test_raster", "Test raster"),
            QgsProcessingParameterNumber(
                "epochs", "Training epochs", QgsProcessingParameterNumber.Integer, 10, False, 1
            ),
            QgsProcessingParameterNumber(
                "tile_size",
                "Tile size (pixels)",
                QgsProcessingParameterNumber.Integer,
                256,
                False,
                32,
            ),
        ],
    )


def _add_parameters(
    model: QgsProcessingModelAlgorithm, inputs: list[QgsProcessingParameterDefinition]
) -> None:
    """The model's inputs, laid out in a column on the left of the modeler canvas."""
    for row, param in enumerate(inputs):
        component = QgsProcessingModelParameter(param.name())
        component.setPosition(QPointF(120, 80 + 90 * row))
        model.addModelParameter(param, component)


def _child(
    alg_id: str,
    child_id: str,
    description: str,
    position: tuple[int, int],
    sources: dict[str, list[QgsProcessingModelChildParameterSource]],
    outputs: dict[str, str],
) -> QgsProcessingModelChildAlgorithm:
    """A child step with its parameter sources and the outputs it gives the model."""
    child = QgsProcessingModelChildAlgorithm(alg_id)
    child.setChildId(child_id)
    child.setDescription(description)
    child.setPosition(QPointF(*position))
    for name, values in sources.items():
        child.addParameterSources(name, values)
    for param in child.algorithm().parameterDefinitions():  # the defaults, as the modeler does
        default = param.defaultValue()
        if param.name() not in sources and not param.isDestination() and default is not None:
            child.addParameterSources(param.name(), [Source.fromStaticValue(default)])
    model_outputs = {}
    for child_output, label in outputs.items():
        output = QgsProcessingModelOutput(label, label)
        output.setChildId(child_id)
        output.setChildOutputName(child_output)
        output.setPosition(QPointF(position[0] + 220, position[1] + 50))
        model_outputs[label] = output
    child.setModelOutputs(model_outputs)
    return child


def build_model() -> QgsProcessingModelAlgorithm:
    """The example model (needs the ``footprint`` provider registered to validate)."""
    model = QgsProcessingModelAlgorithm(NAME, "Footprint examples", "footprint_example")
    model.setHelpContent(
        {
            "ALG_DESC": "Trains a compact U-Net on a raster and a building layer (few epochs,"
            " quick on a CPU), detects buildings on a test raster with it and scores them"
            " against the building layer over the test raster. The building layer must cover"
            " the test raster too. Open it in the Graphical Modeler to change any step.",
            "raster": "Image to train on.",
            "buildings": "Known buildings (any CRS), covering both rasters.",
            "test_raster": "Image to detect buildings on and evaluate.",
            "epochs": "Training epochs (10 is a quick first look; use more for real work).",
            "tile_size": "Training window size in pixels.",
        }
    )
    _add_inputs(model)
    param, static = Source.fromModelParameter, Source.fromStaticValue
    rasterize = _child(
        "footprint:rasterizelabels",
        "rasterize",
        "Check the labels: building mask",
        (420, 80),
        {"INPUT": [param("raster")], "LABELS": [param("buildings")]},
        {"OUTPUT": "Label mask"},
    )
    train = _child(
        "footprint:train",
        "train",
        "Train a compact U-Net",
        (420, 230),
        {
            "RASTERS": [param("raster")],
            "LABELS": [param("buildings")],
            "ARCHITECTURE": [static("compact")],
            "ENCODER": [static("none")],
            "EPOCHS": [param("epochs")],
            "TILE_SIZE": [param("tile_size")],
            "LR": [static(0.01)],
        },
        {"OUTPUT": "Model file"},
    )
    train.setDependencies([QgsProcessingModelChildDependency("rasterize")])
    detect = _child(
        "footprint:detect",
        "detect",
        "Detect buildings on the test raster",
        (420, 380),
        {"INPUT": [param("test_raster")], "MODEL": [Source.fromChildOutput("train", "OUTPUT")]},
        {"OUTPUT": "Detected buildings"},
    )
    evaluate = _child(
        "footprint:evaluate",
        "evaluate",
        "Evaluate against the building layer",
        (420, 530),
        {
            "PREDICTED": [Source.fromChildOutput("detect", "OUTPUT")],
            "REFERENCE": [param("buildings")],
            "AREA": [param("test_raster")],
        },
        {"OUTPUT": "Evaluation (TP, FP, FN)"},
    )
    for child in (rasterize, train, detect, evaluate):
        model.addChildAlgorithm(child)
    return model


def _add_improve_inputs(model: QgsProcessingModelAlgorithm) -> None:
    """The loop's inputs: the corrections, the starting model, the budget, the next area."""
    from footprint.engine.config import ImproveConfig  # after _start_qgis: plain dataclasses

    polygon = [QgsProcessing.TypeVectorPolygon]
    minutes = QgsProcessingParameterNumber(
        "minutes",
        "Time budget (minutes)",
        QgsProcessingParameterNumber.Double,
        ImproveConfig.minutes,
        False,
        0.1,
    )
    _add_parameters(
        model,
        [
            QgsProcessingParameterRasterLayer("raster", "Imagery the buildings were corrected on"),
            QgsProcessingParameterVectorLayer("buildings", "Corrected buildings", polygon),
            QgsProcessingParameterVectorLayer("checked_area", "Area checked", polygon),
            QgsProcessingParameterFile(
                "start_model",
                "Start from model (empty: the starter model)",
                extension="pt",
                optional=True,
            ),
            minutes,
            QgsProcessingParameterNumber(
                "epochs",
                "Epochs (empty: as many as the time budget allows)",
                QgsProcessingParameterNumber.Integer,
                None,
                True,
                1,
            ),
            QgsProcessingParameterRasterLayer("next_raster", "Imagery to detect on next"),
            QgsProcessingParameterExtent(
                "next_extent", "Extent to detect in next (needed for a web layer)", optional=True
            ),
        ],
    )


def build_improve_model() -> QgsProcessingModelAlgorithm:
    """The loop's model: improve, then detect with the improved model (needs the provider)."""
    model = QgsProcessingModelAlgorithm(IMPROVE_NAME, "Footprint examples", "footprint_improve")
    model.setHelpContent(
        {
            "ALG_DESC": "The mapper's loop after a first Detect buildings: improve the model"
            " with the buildings you corrected inside the area you checked, then detect"
            " buildings on the next area with the improved model. Check the improved model's"
            " scores in the log (before and after, on a part of the area checked held back),"
            " correct the new buildings, and run it again, starting from the improved model."
            " Open it in the Graphical Modeler to change any step.",
            "raster": "The imagery the buildings were corrected on (a file or any raster"
            " layer; a web layer is drawn over the area checked).",
            "buildings": "The building layer you corrected (any CRS).",
            "checked_area": "Polygons where the corrected building layer is complete.",
            "start_model": "The model to improve (e.g. one improved before); empty: the"
            " starter model that comes with Footprint.",
            "minutes": "Time budget for the improvement.",
            "epochs": "Train exactly this many epochs instead of for the time budget.",
            "next_raster": "The imagery to detect buildings on with the improved model (the"
            " same imagery, with the next extent, or another raster).",
            "next_extent": "The area to detect in; empty: the whole raster (a web layer needs"
            " one).",
        }
    )
    _add_improve_inputs(model)
    param = Source.fromModelParameter
    improve = _child(
        "footprint:improve",
        "improve",
        "Improve the model with the corrections",
        (420, 230),
        {
            "INPUT": [param("raster")],
            "BUILDINGS": [param("buildings")],
            "CHECKED_AREA": [param("checked_area")],
            "MODEL": [param("start_model")],
            "MINUTES": [param("minutes")],
            "EPOCHS": [param("epochs")],
        },
        {"OUTPUT": "Improved model"},
    )
    detect = _child(
        "footprint:detect",
        "detect",
        "Detect buildings with the improved model",
        (420, 530),
        {
            "INPUT": [param("next_raster")],
            "MODEL": [Source.fromChildOutput("improve", "OUTPUT")],
            "EXTENT": [param("next_extent")],
        },
        {"OUTPUT": "Detected buildings"},
    )
    for child in (improve, detect):
        model.addChildAlgorithm(child)
    return model


def _start_qgis() -> QgsApplication:
    """QGIS with the Footprint provider (the plugin imported as package ``footprint``)."""
    app = QgsApplication([], False)
    app.initQgis()
    packages = Path(tempfile.mkdtemp(prefix="footprint-model-"))
    (packages / "footprint").symlink_to(REPO, target_is_directory=True)
    sys.path.insert(0, str(packages))
    from footprint.plugin.provider import FootprintProvider

    app.footprint_provider = FootprintProvider()  # keep the Python object alive
    QgsApplication.processingRegistry().addProvider(app.footprint_provider)
    return app


def write_model(model: QgsProcessingModelAlgorithm, out: Path) -> bool:
    """Validate ``model``, write it to ``out`` and read it back; False (said) when it fails."""
    ok, issues = model.validate()
    if not ok:
        print(f"The model {out.name} is not valid:\n" + "\n".join(issues), file=sys.stderr)
        return False
    out.parent.mkdir(parents=True, exist_ok=True)
    if not model.toFile(str(out)):
        print(f"Cannot write {out}", file=sys.stderr)
        return False
    steps = len(model.childAlgorithms())
    check = QgsProcessingModelAlgorithm()
    if not check.fromFile(str(out)) or len(check.childAlgorithms()) != steps:
        print(f"{out} does not read back as a {steps}-step model", file=sys.stderr)
        return False
    print(f"Wrote {out}")
    return True


def main(argv: list[str]) -> int:
    """Build, validate, write and re-read the models."""
    outputs = [Path(arg) for arg in argv[1:3]] or [OUTPUT, IMPROVE_OUTPUT]
    app = _start_qgis()
    builders = (build_model, build_improve_model)
    written = all(write_model(build(), out) for build, out in zip(builders, outputs, strict=False))
    app.exitQgis()
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
