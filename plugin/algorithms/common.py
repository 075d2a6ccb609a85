"""Parameter helpers the algorithms share: :class:`Inputs` (one run's parameters read as
engine options), optional values, the inference and polygon parameters of predict, vectorize
and detect, and the output style names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingOutputLayerDefinition,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
)

from ..layers import (
    absolute,
    output_path,
    raster_source,
    raster_sources,
    vector_source,
    vector_sources,
)
from .base import FootprintAlgorithm

INT, DOUBLE = QgsProcessingParameterNumber.Integer, QgsProcessingParameterNumber.Double
BUILDINGS_STYLE = "buildings.qml"
EVALUATION_STYLE = "evaluation.qml"


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


@dataclass(frozen=True)
class Inputs:
    """One run's parameters, read through its algorithm as engine option values.

    Binds what every reader takes (algorithm, parameters, context, feedback), so a
    ``processAlgorithm`` says only which parameter goes to which engine option.
    """

    alg: FootprintAlgorithm
    parameters: dict[str, Any]
    context: QgsProcessingContext
    feedback: QgsProcessingFeedback | None

    def raster(self, name: str) -> str:
        """The raster parameter ``name`` as a file path the engine reads."""
        return raster_source(self.alg, self.parameters, name, self.context, self.feedback)

    def vector(self, name: str) -> str:
        """The vector parameter ``name`` as a file path the engine reads."""
        return vector_source(self.alg, self.parameters, name, self.context, self.feedback)

    def rasters(self, name: str) -> list[str]:
        """The raster layers of the multiple-layer parameter ``name`` as file paths."""
        return raster_sources(self.alg, self.parameters, name, self.context, self.feedback)

    def vectors(self, name: str) -> list[str]:
        """The vector layers of the multiple-layer parameter ``name`` as file paths."""
        return vector_sources(self.alg, self.parameters, name, self.context, self.feedback)

    def file(self, name: str) -> str:
        """A file parameter as an absolute path ("" when empty): the engine runs elsewhere."""
        return absolute(self.alg.parameterAsFile(self.parameters, name, self.context))

    def output(self, name: str, ext: str, style: str = "") -> str:
        """A file path for the destination ``name`` (see :func:`plugin.layers.output_path`),
        styled with ``resources/<style>`` when Processing loads it (no style: "")."""
        path = output_path(self.alg, self.parameters, name, self.context, ext)
        return self.alg.remember_style(path, style) if style else path

    def double(self, name: str) -> str:
        """The number parameter ``name`` as an engine option value."""
        return repr(self.alg.parameterAsDouble(self.parameters, name, self.context))

    def number_option(self, option: str, name: str) -> list[str]:
        """``[option, value]`` for the optional number parameter ``name``, [] when empty."""
        return [option, self.double(name)] if value_given(self.parameters, name) else []

    def output_option(self, option: str, name: str, ext: str, style: str = "") -> list[str]:
        """``[option, path]`` for the optional destination ``name``, [] when skipped."""
        if not destination_given(self.parameters.get(name)):
            return []
        return [option, self.output(name, ext, style)]

    def extent(self, extent: str, raster: str) -> list[str]:
        """``--extent xmin ymin xmax ymax`` in the raster's CRS, or [] when no extent is given."""
        if not self.parameters.get(extent):
            return []
        layer = self.alg.parameterAsRasterLayer(self.parameters, raster, self.context)
        crs = layer.crs() if layer is not None else None
        rect = self.alg.parameterAsExtent(self.parameters, extent, self.context, crs)
        if rect.isNull() or rect.isEmpty():
            return []
        values = (rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum())
        return ["--extent", *(repr(float(v)) for v in values)]

    def inference(self, names: dict[str, str]) -> list[str]:
        """Engine options for TTA, batch size, margin and native resolution."""
        alg, parameters, context = self.alg, self.parameters, self.context
        args = ["--batch-size", str(alg.parameterAsInt(parameters, names["batch"], context))]
        if alg.parameterAsBool(parameters, names["tta"], context):
            args.append("--tta")
        if alg.parameterAsBool(parameters, names["native"], context):
            args.append("--native-resolution")
        if value_given(parameters, names["margin"]):
            args += ["--margin", str(alg.parameterAsInt(parameters, names["margin"], context))]
        return args

    def polygons(self, names: dict[str, str]) -> list[str]:
        """Engine options for minimum area, hole area, simplify and regularize."""
        args = ["--min-area-m2", self.double(names["min_area"])]
        args += ["--hole-area-m2", self.double(names["hole_area"])]
        args += ["--simplify", self.double(names["simplify"])]
        regularize = self.alg.parameterAsBool(self.parameters, names["regularize"], self.context)
        return [*args, "--regularize" if regularize else "--no-regularize"]
