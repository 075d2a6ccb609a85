"""Predict a building-probability raster with a trained model."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from ..layers import output_path, raster_source
from .base import FootprintAlgorithm

INT = QgsProcessingParameterNumber.Integer


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


def inference_args(
    alg: QgsProcessingAlgorithm,
    parameters: dict[str, Any],
    context: QgsProcessingContext,
    names: dict[str, str],
) -> list[str]:
    """Options shared by predict and detect: TTA, batch size, margin, native resolution."""
    args = ["--batch-size", str(alg.parameterAsInt(parameters, names["batch"], context))]
    if alg.parameterAsBool(parameters, names["tta"], context):
        args.append("--tta")
    if alg.parameterAsBool(parameters, names["native"], context):
        args.append("--native-resolution")
    margin = parameters.get(names["margin"])
    if margin is not None and str(margin).strip() != "":
        args += ["--margin", str(alg.parameterAsInt(parameters, names["margin"], context))]
    return args


class Predict(FootprintAlgorithm):
    """``footprint:predict``: engine ``predict``."""

    NAME = "predict"
    DISPLAY_NAME = "Predict building probability"
    HELP = (
        "Applies a trained model to a raster and writes a building-probability GeoTIFF "
        "(float32, 0 to 1) on the raster's own grid, CRS and nodata. Work goes window by "
        "window, so the raster may be of any size.\n\n"
        "<b>Raster</b>: the image (same bands as the model was trained on).\n"
        "<b>Model file</b>: a .pt written by Train.\n"
        "<b>Extent</b> (optional): limit the work to this rectangle (any CRS; it is converted "
        "to the raster's).\n"
        "Advanced: <b>Test-time augmentation</b> (average of 8 flips/rotations: better, 8x "
        "slower), <b>Batch size</b> (windows per batch; lower it when memory runs short), "
        "<b>Overlap margin</b> (pixels; default a quarter of the model's tile), <b>Predict at "
        "the raster's resolution</b> (by default imagery is resampled to the ground "
        "resolution the model was trained at).\n"
        "<b>Probability</b>: the GeoTIFF to write (replaced if it exists: Processing asks "
        "first). Uses the device of Plugins > Footprint > Settings."
    )

    INPUT = "INPUT"
    MODEL = "MODEL"
    EXTENT = "EXTENT"
    TTA = "TTA"
    BATCH_SIZE = "BATCH_SIZE"
    MARGIN = "MARGIN"
    NATIVE_RESOLUTION = "NATIVE_RESOLUTION"
    OUTPUT = "OUTPUT"
    SECONDS = "SECONDS"
    INFERENCE = {"batch": BATCH_SIZE, "tta": TTA, "native": NATIVE_RESOLUTION, "margin": MARGIN}

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:
        """Declare parameters and outputs."""
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, self.tr("Raster")))
        self.addParameter(model_parameter(self.MODEL, self.tr("Model file")))
        self.addParameter(
            QgsProcessingParameterExtent(self.EXTENT, self.tr("Extent"), optional=True)
        )
        add_inference_parameters(self, self.INFERENCE)
        self.addParameter(
            QgsProcessingParameterRasterDestination(self.OUTPUT, self.tr("Probability"))
        )
        self.addOutput(QgsProcessingOutputNumber(self.SECONDS, self.tr("Seconds")))

    def processAlgorithm(
        self,
        parameters: dict[str, Any],
        context: QgsProcessingContext,
        feedback: QgsProcessingFeedback,
    ) -> dict[str, Any]:
        """Run ``predict``; return the probability raster."""
        args = [
            "--raster",
            raster_source(self, parameters, self.INPUT, context, feedback),
            "--model",
            self.parameterAsFile(parameters, self.MODEL, context),
            "--output",
            output_path(self, parameters, self.OUTPUT, context, "tif"),
            "--overwrite",
        ]
        args += extent_args(self, parameters, self.EXTENT, self.INPUT, context)
        args += inference_args(self, parameters, context, self.INFERENCE)
        result = self.engine("predict", args + self.device_args(), feedback)
        return {self.OUTPUT: result["output"], self.SECONDS: result.get("seconds")}


def add_inference_parameters(alg: FootprintAlgorithm, names: dict[str, str]) -> None:
    """The advanced inference parameters shared by predict and detect."""
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
