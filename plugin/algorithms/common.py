"""Parameter helpers the algorithms share: file paths, optional values, the inference and
polygon options of predict, vectorize and detect, and the output style names."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingOutputLayerDefinition,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
)

from ..layers import absolute
from .base import FootprintAlgorithm

INT, DOUBLE = QgsProcessingParameterNumber.Integer, QgsProcessingParameterNumber.Double
BUILDINGS_STYLE = "buildings.qml"
EVALUATION_STYLE = "evaluation.qml"


def file_path(
    alg: QgsProcessingAlgorithm,
    parameters: dict[str, Any],
    name: str,
    context: QgsProcessingContext,
) -> str:
    """A file parameter as an absolute path ("" when empty): the engine runs in another folder."""
    return absolute(alg.parameterAsFile(parameters, name, context))


def destination_given(value: Any) -> bool:
    """True when an optional destination parameter was given a value (not skipped)."""
    if isinstance(value, QgsProcessingOutputLayerDefinition):
        value = value.sink.staticValue()
    return value is not None and str(value).strip() != ""


def value_given(parameters: dict[str, Any], name: str) -> bool:
    """True when an optional (number) parameter has a value."""
    return parameters.get(name) not in (None, "")


def model_parameter(name: str, label: str) -> QgsProcessingParameterFile:
    """A model file (.pt) input."""
    return QgsProcessingParameterFile(
        name, label, extension="pt", fileFilter="Footprint model (*.pt);;All files (*.*)"
    )


def extent_args(
    alg: QgsProcessingAlgorithm,
    parameters: dict[str, Any],
    extent: str,
    raster: str,
    context: QgsProcessingContext,
) -> list[str]:
    """``--extent xmin ymin xmax ymax`` in the raster's CRS, or [] when no extent is given."""
    if not parameters.get(extent):
        return []
    layer = alg.parameterAsRasterLayer(parameters, raster, context)
    crs = layer.crs() if layer is not None else None
    rect = alg.parameterAsExtent(parameters, extent, context, crs)
    if rect.isNull() or rect.isEmpty():
        return []
    values = (rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum())
    return ["--extent", *(repr(float(v)) for v in values)]


def add_inference_parameters(alg: FootprintAlgorithm, names: dict[str, str]) -> None:
    """Advanced inference parameters of predict and detect (keys tta, batch, margin, native)."""
    tr = alg.tr
    alg.add_advanced(
        QgsProcessingParameterBoolean(names["tta"], tr("Test-time augmentation (8x slower)"), False)
    )
    alg.add_advanced(
        QgsProcessingParameterNumber(
            names["batch"], tr("Batch size (windows)"), INT, 4, minValue=1, maxValue=1024
        )
    )
    alg.add_advanced(
        QgsProcessingParameterNumber(
            names["margin"], tr("Overlap margin (pixels)"), INT, None, True, 0, 100000
        )
    )
    alg.add_advanced(
        QgsProcessingParameterBoolean(
            names["native"], tr("Predict at the raster's resolution"), False
        )
    )


def inference_args(
    alg: QgsProcessingAlgorithm,
    parameters: dict[str, Any],
    context: QgsProcessingContext,
    names: dict[str, str],
) -> list[str]:
    """Engine options for TTA, batch size, margin and native resolution."""
    args = ["--batch-size", str(alg.parameterAsInt(parameters, names["batch"], context))]
    if alg.parameterAsBool(parameters, names["tta"], context):
        args.append("--tta")
    if alg.parameterAsBool(parameters, names["native"], context):
        args.append("--native-resolution")
    if value_given(parameters, names["margin"]):
        args += ["--margin", str(alg.parameterAsInt(parameters, names["margin"], context))]
    return args


def add_polygon_parameters(alg: FootprintAlgorithm, names: dict[str, str]) -> None:
    """Minimum area, simplify, regularize (main) and hole area (advanced)."""
    tr = alg.tr
    alg.addParameter(
        QgsProcessingParameterNumber(
            names["min_area"], tr("Minimum building area (m²)"), DOUBLE, 4.0, minValue=0.0
        )
    )
    alg.addParameter(
        QgsProcessingParameterNumber(
            names["simplify"], tr("Simplify tolerance (pixels, 0: off)"), DOUBLE, 1.0, minValue=0
        )
    )
    alg.addParameter(
        QgsProcessingParameterBoolean(names["regularize"], tr("Square off outlines"), False)
    )
    alg.add_advanced(
        QgsProcessingParameterNumber(
            names["hole_area"], tr("Fill holes smaller than (m²)"), DOUBLE, 4.0, minValue=0.0
        )
    )


def polygon_args(
    alg: QgsProcessingAlgorithm,
    parameters: dict[str, Any],
    context: QgsProcessingContext,
    names: dict[str, str],
) -> list[str]:
    """Engine options for minimum area, hole area, simplify and regularize."""
    args = ["--min-area-m2", repr(alg.parameterAsDouble(parameters, names["min_area"], context))]
    args += ["--hole-area-m2", repr(alg.parameterAsDouble(parameters, names["hole_area"], context))]
    args += ["--simplify", repr(alg.parameterAsDouble(parameters, names["simplify"], context))]
    regularize = alg.parameterAsBool(parameters, names["regularize"], context)
    return [*args, "--regularize" if regularize else "--no-regularize"]
