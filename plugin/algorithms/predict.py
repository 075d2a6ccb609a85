"""Predict a building-probability raster with a trained model."""

from __future__ import annotations

from typing import Any, cast

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingParameterExtent,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from ...engine.results import PredictResult
from .base import FootprintAlgorithm
from .common import (
    WEB_LAYERS_HELP,
    Inputs,
    inference_options,
    max_render_parameter,
    model_parameter,
)
from .options import add_options


class Predict(FootprintAlgorithm):
    """``footprint:predict``: engine ``predict``."""

    NAME = "predict"
    DISPLAY_NAME = "Predict building probability"
    HELP = (
        "Applies a trained model to a raster and writes a building-probability GeoTIFF "
        "(float32, 0 to 1) on the raster's own grid, CRS and nodata. Work goes window by "
        "window, so the raster may be of any size.\n\n"
        "<b>Raster</b>: the image (same bands as the model was trained on), a file or any "
        "raster layer, web layers included (see below).\n"
        "<b>Model file</b> (optional): a .pt written by Train (or an .onnx written by Export "
        "model to ONNX: it runs on ONNX Runtime); left empty, the starter model "
        "that comes with Footprint (for RGB drone or aerial imagery of about 5-30 cm pixels; "
        "Train can improve it on your own corrections).\n"
        "<b>Extent</b> (optional): limit the work to this rectangle (any CRS; it is converted "
        "to the raster's). The probability raster then covers only the rectangle's part of "
        "the raster's grid (rounded out to 512-pixel blocks): time, memory and disk follow "
        "the rectangle, not the raster.\n"
        "Advanced: <b>Test-time augmentation</b> (average of 8 flips/rotations: better, 8x "
        "slower), <b>Batch size</b> (windows per batch; lower it when memory runs short), "
        "<b>Prediction window</b> (pixels; empty: 512 on a CPU, 1024 on a GPU), "
        "<b>Overlap margin</b> (pixels; default an eighth of the model's tile), <b>Runtime</b> "
        "(auto: ONNX Runtime for an .onnx model, and for a .pt's own export beside it on a "
        "CPU (no GPU) without a bf16 path; else torch when installed) and <b>Precision</b> "
        "(auto: bf16 on CPUs with AMX or AVX512-BF16, 1.4x faster with the same scores), "
        "<b>Predict at the raster's resolution</b> (by default imagery is resampled to the ground "
        "resolution the model was trained at).\n"
        "<b>Probability</b>: the GeoTIFF to write (replaced if it exists: Processing asks "
        "first). Uses the device of Plugins > Footprint > Settings.\n"
        "<b>Local workers (Dask)</b>: 0 runs in QGIS's engine process; N starts N worker "
        "processes on this machine (strips of the raster as tasks, the same result). Advanced: "
        "<b>Dask scheduler address</b> runs on an existing cluster.\n" + WEB_LAYERS_HELP
    )

    INPUT = "INPUT"
    MODEL = "MODEL"
    EXTENT = "EXTENT"
    TTA = "TTA"
    BATCH_SIZE = "BATCH_SIZE"
    MARGIN = "MARGIN"
    WINDOW = "WINDOW"
    NATIVE_RESOLUTION = "NATIVE_RESOLUTION"
    MAX_RENDER_MPX = "MAX_RENDER_MPX"
    OUTPUT = "OUTPUT"
    SECONDS = "SECONDS"
    INFERENCE = inference_options(BATCH_SIZE, TTA, MARGIN, NATIVE_RESOLUTION, WINDOW)

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:
        """Declare parameters and outputs."""
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, self.tr("Raster")))
        self.addParameter(model_parameter(self.MODEL, self.tr("Model file")))
        self.addParameter(
            QgsProcessingParameterExtent(self.EXTENT, self.tr("Extent"), optional=True)
        )
        add_options(self, self.INFERENCE)
        self.addParameter(max_render_parameter(self.MAX_RENDER_MPX))
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
        inputs = Inputs(self, parameters, context, feedback)
        web = inputs.web_rendering(self.EXTENT, self.MODEL, self.MAX_RENDER_MPX)
        args = ["--raster", inputs.raster(self.INPUT, web), *inputs.model(self.MODEL)]
        args += ["--output", inputs.output(self.OUTPUT, "tif"), "--overwrite"]
        args += inputs.extent(self.EXTENT, self.INPUT)
        args += inputs.options(self.INFERENCE)
        result = cast(PredictResult, self.engine("predict", args + self.device_args(), feedback))
        return {self.OUTPUT: result["output"], self.SECONDS: result.get("seconds")}
