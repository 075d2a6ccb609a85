#!/usr/bin/env python3
"""Write the example Processing model ``resources/models/footprint_example.model3``.

Run with QGIS's Python: ``/usr/bin/python3 scripts/make_example_model.py [OUTPUT]``.
The model chains the Footprint algorithms: rasterize the building layer on the training
raster (a check of the labels, run first), train a compact U-Net, detect buildings on a test
raster with the trained model file, evaluate them against the building layer over the test
raster. Inputs: training raster, building layer, test raster, epochs, tile size.
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
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterVectorLayer,
)
from qgis.PyQt.QtCore import QPointF  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "resources" / "models" / "footprint_example.model3"
NAME = "Footprint example: train, detect and evaluate"

Source = QgsProcessingModelChildParameterSource


def _add_inputs(model: QgsProcessingModelAlgorithm) -> None:
    """The model's inputs, laid out in a column on the left of the modeler canvas."""
    inputs = [
        QgsProcessingParameterRasterLayer("raster", "Training raster"),
        QgsProcessingParameterVectorLayer(
            "buildings", "Building polygons", [QgsProcessing.TypeVectorPolygon]
        ),
        QgsProcessingParameterRasterLayer("test_raster", "Test raster"),
        QgsProcessingParameterNumber(
            "epochs", "Training epochs", QgsProcessingParameterNumber.Integer, 10, False, 1
        ),
        QgsProcessingParameterNumber(
            "tile_size", "Tile size (pixels)", QgsProcessingParameterNumber.Integer, 256, False, 32
        ),
    ]
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


def main(argv: list[str]) -> int:
    """Build, validate, write and re-read the model."""
    out = Path(argv[1]) if len(argv) > 1 else OUTPUT
    app = _start_qgis()
    model = build_model()
    ok, issues = model.validate()
    if not ok:
        print("The model is not valid:\n" + "\n".join(issues), file=sys.stderr)
        return 1
    out.parent.mkdir(parents=True, exist_ok=True)
    if not model.toFile(str(out)):
        print(f"Cannot write {out}", file=sys.stderr)
        return 1
    check = QgsProcessingModelAlgorithm()
    if not check.fromFile(str(out)) or len(check.childAlgorithms()) != 4:
        print(f"{out} does not read back as a 4-step model", file=sys.stderr)
        return 1
    print(f"Wrote {out}")
    app.exitQgis()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
