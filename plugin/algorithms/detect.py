"""Detect buildings: predict and vectorize in one pass, raster + model to polygons."""

from __future__ import annotations

from typing import Any, cast

from qgis.core import (
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingParameterExtent,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterVectorDestination,
)

from ...engine.config import DetectConfig
from ...engine.results import DetectResult
from .base import FootprintAlgorithm
from .common import (
    BUILDINGS_STYLE,
    WEB_LAYERS_HELP,
    Inputs,
    inference_options,
    max_render_parameter,
    model_parameter,
    polygon_options,
    seed_options,
)
from .options import Option, add_options


class Detect(FootprintAlgorithm):
    """``footprint:detect``: engine ``detect``."""

    NAME = "detect"
    DISPLAY_NAME = "Detect buildings"
    HELP = (
        "Finds buildings in a raster with a trained model and writes them as polygons: "
        "Predict and Vectorize in one pass, window by window, for rasters of any size.\n\n"
        "<b>Raster</b>: the image (same bands as the model was trained on), a file or any "
        "raster layer, web layers included (see below).\n"
        "<b>Model file</b> (optional): a .pt written by Train (or an .onnx written by Export "
        "model to ONNX: it runs on ONNX Runtime); left empty, the starter model "
        "that comes with Footprint (for RGB drone or aerial imagery of about 5-30 cm pixels; "
        "Train can improve it on your own corrections).\n"
        "<b>Threshold</b> (optional): building probability threshold; leave it empty to use "
        "the threshold chosen on validation when the model was trained.\n"
        "<b>Minimum building area</b> (m², optional): smaller buildings join the neighbour "
        "they share the most edge with, or are dropped when alone; leave it empty to use the "
        "area chosen on validation when the model was trained (labels that leave sheds out "
        "teach 20-30 m²; models trained before December 2026 keep 4 m²); "
        "<b>Simplify tolerance</b> (pixels, 0: off), "
        "<b>Square off outlines</b> (regularize to right angles).\n"
        "<b>Extent</b> (optional): limit the work to this rectangle (any CRS): time, memory "
        "and disk follow the rectangle, not the raster, and the buildings inside it are "
        "those of a run over the whole raster.\n"
        "<b>Touching buildings</b>: with a model that has a separation class (Train's "
        "default) every building grows from a seed, so houses that share walls come out as "
        "one polygon each, and neighbours share their edges exactly.\n"
        "Advanced: <b>Test-time augmentation</b> (8 flips/rotations, 8x slower), <b>Batch "
        "size</b> and <b>Prediction window</b> (pixels; empty: what the device suits, 512 on a "
        "CPU, 1024 on a GPU), <b>Overlap margin</b>, <b>Runtime</b> (auto: ONNX Runtime for "
        "an .onnx model, and for a .pt's own export beside it on a CPU (no GPU) without a "
        "bf16 path; else torch when installed), <b>Precision</b> (auto: bf16 on CPUs "
        "with AMX or AVX512-BF16, 1.4x faster with the same scores), <b>Predict at the "
        "raster's resolution</b> "
        "(instead "
        "of resampling to the model's), <b>Fill holes smaller than</b> (m²), the seed "
        "settings (empty: the model's, chosen on validation).\n"
        "<b>Buildings</b>: the polygon layer to write (GeoPackage by default), with area_m2 "
        "and score (mean probability) per building, and low_confidence (1 where the score is "
        "below <b>Mark buildings scoring below this as low confidence</b>, advanced, default "
        "0.75: the buildings to check first when correcting). <b>Probability</b> (optional, "
        "skipped by "
        "default): also keep the probability GeoTIFF. An existing file is replaced whole, "
        "with any other layers in it (the file browser asks first; a typed name is not "
        "asked about). Outputs also the number of buildings and the threshold "
        "used. Uses the device of Plugins > Footprint > Settings.\n"
        "<b>Local workers (Dask)</b>: 0 runs in QGIS's engine process; N starts N worker "
        "processes on this machine (strips of the raster as tasks, the same result). Advanced: "
        "<b>Dask scheduler address</b> runs on an existing cluster.\n" + WEB_LAYERS_HELP
    )

    INPUT = "INPUT"
    MODEL = "MODEL"
    THRESHOLD = "THRESHOLD"
    MIN_AREA = "MIN_AREA"
    HOLE_AREA = "HOLE_AREA"
    SIMPLIFY = "SIMPLIFY"
    REGULARIZE = "REGULARIZE"
    EXTENT = "EXTENT"
    TTA = "TTA"
    BATCH_SIZE = "BATCH_SIZE"
    MARGIN = "MARGIN"
    WINDOW = "WINDOW"
    NATIVE_RESOLUTION = "NATIVE_RESOLUTION"
    MAX_RENDER_MPX = "MAX_RENDER_MPX"
    OUTPUT = "OUTPUT"
    PROBABILITY = "PROBABILITY"
    BUILDINGS = "BUILDINGS"
    TOTAL_AREA = "TOTAL_AREA"
    USED_THRESHOLD = "USED_THRESHOLD"
    POLYGONS = (
        Option(THRESHOLD, DetectConfig, "threshold"),
        *polygon_options(DetectConfig, MIN_AREA, SIMPLIFY, REGULARIZE, HOLE_AREA),
        *seed_options(),
    )
    INFERENCE = inference_options(BATCH_SIZE, TTA, MARGIN, NATIVE_RESOLUTION, WINDOW)

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:
        """Declare parameters and outputs."""
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, self.tr("Raster")))
        self.addParameter(model_parameter(self.MODEL, self.tr("Model file")))
        add_options(self, self.POLYGONS)
        self.addParameter(
            QgsProcessingParameterExtent(self.EXTENT, self.tr("Extent"), optional=True)
        )
        add_options(self, self.INFERENCE)
        self.addParameter(max_render_parameter(self.MAX_RENDER_MPX))
        self.addParameter(
            QgsProcessingParameterVectorDestination(
                self.OUTPUT, self.tr("Buildings"), QgsProcessing.TypeVectorPolygon
            )
        )
        self.addParameter(
            QgsProcessingParameterRasterDestination(
                self.PROBABILITY, self.tr("Probability"), optional=True, createByDefault=False
            )
        )
        self.addOutput(QgsProcessingOutputNumber(self.BUILDINGS, self.tr("Number of buildings")))
        self.addOutput(QgsProcessingOutputNumber(self.TOTAL_AREA, self.tr("Total area (m²)")))
        self.addOutput(QgsProcessingOutputNumber(self.USED_THRESHOLD, self.tr("Threshold used")))

    def processAlgorithm(
        self,
        parameters: dict[str, Any],
        context: QgsProcessingContext,
        feedback: QgsProcessingFeedback,
    ) -> dict[str, Any]:
        """Run ``detect``; return the polygons (and probability raster) and the count."""
        inputs = Inputs(self, parameters, context, feedback)
        web = inputs.web_rendering(self.EXTENT, self.MODEL, self.MAX_RENDER_MPX)
        output = inputs.output(self.OUTPUT, "gpkg", BUILDINGS_STYLE)
        args = ["--raster", inputs.raster(self.INPUT, web), *inputs.model(self.MODEL)]
        args += ["--output", output, "--overwrite"]
        args += inputs.output_option("--keep-probability", self.PROBABILITY, "tif")
        args += inputs.options(self.POLYGONS)
        args += inputs.extent(self.EXTENT, self.INPUT)
        args += inputs.options(self.INFERENCE)
        result = cast(DetectResult, self.engine("detect", args + self.device_args(), feedback))
        return {
            self.OUTPUT: result["output"],
            self.PROBABILITY: result.get("probability"),
            self.BUILDINGS: result["buildings"],
            self.TOTAL_AREA: result.get("total_area_m2"),
            self.USED_THRESHOLD: result.get("threshold"),
        }
