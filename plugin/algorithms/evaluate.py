"""Evaluate predicted building polygons against reference polygons."""

from __future__ import annotations

from typing import Any, cast

from qgis.core import (
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMapLayer,
    QgsProcessingParameterVectorDestination,
    QgsProcessingParameterVectorLayer,
    QgsRasterLayer,
)

from ...engine.config import EvaluateConfig
from ...engine.results import EvaluateResult
from ..layers import raster_layer_path, vector_layer_path
from .base import FootprintAlgorithm
from .common import EVALUATION_STYLE, Inputs
from .options import Option, add_options


class Evaluate(FootprintAlgorithm):
    """``footprint:evaluate``: engine ``evaluate``."""

    NAME = "evaluate"
    DISPLAY_NAME = "Evaluate buildings"
    HELP = (
        "Scores predicted building polygons against reference polygons, per pixel and per "
        "building.\n\n"
        "<b>Predicted buildings</b>: e.g. the output of Detect. <b>Reference buildings</b>: "
        "known buildings (any CRS).\n"
        "<b>Area</b> (optional): a raster (its extent, e.g. the probability raster of Detect) "
        "or a polygon layer limiting the evaluation; without it, the extent of both layers.\n"
        "Advanced: <b>IoU for a building match</b> (a predicted and a reference building are "
        "matched one to one when their intersection over union reaches it; 0.5 by default), "
        "<b>Pixel size</b> for the pixel scores (empty: the area raster's, else 0.25 m), "
        "<b>Line the reference up</b> (reference traced on other imagery, as OpenStreetMap's "
        "often is: the reference is moved by the shift of up to this many metres that best "
        "matches the predicted buildings' pixels, the log says by how much, and the scores "
        "are of the moved reference; 0, the default: scored where it is), <b>Cut buildings "
        "at the area's edge</b> (score the parts of buildings inside the area, both layers "
        "cut at its edge, a cut part under 1 m² left out, and the evaluation layer shows the "
        "parts: for an area such as a raster's extent, which cuts the detected buildings "
        "where the reference goes on; without an area nothing is cut; off, the default: a "
        "building counts whole, where its representative point lies, so each counts once "
        "when areas tile a larger one).\n"
        "<b>Evaluation layer</b> (optional): every building marked TP (matched), FP (false) or "
        "FN (missed), and in its <i>cause</i> field why an FP or FN did not match: <i>merge</i> "
        "(one prediction runs two or more buildings together), <i>split</i> (a building cut "
        "into pieces), <i>extra</i> (a prediction mostly off any reference building), "
        "<i>missed</i> (a building mostly not found) or <i>outline</i> (found, but the outlines "
        "overlap less than the IoU for a match); the log counts them. <b>Report</b> "
        "(optional): the scores as JSON. An existing file is replaced whole, with any other "
        "layers in it (the file browser asks first; a typed name is not asked about).\n"
        "Outputs pixel precision, recall, F1, IoU and accuracy, and building precision, "
        "recall and F1, for use in models."
    )

    PREDICTED = "PREDICTED"
    REFERENCE = "REFERENCE"
    AREA = "AREA"
    IOU_THRESHOLD = "IOU_THRESHOLD"
    RESOLUTION = "RESOLUTION"
    MAX_SHIFT = "MAX_SHIFT"
    CLIP_TO_AREA = "CLIP_TO_AREA"
    OUTPUT = "OUTPUT"
    REPORT = "REPORT"
    OPTIONS = (
        Option(IOU_THRESHOLD, EvaluateConfig, "iou_threshold", advanced=True),
        Option(RESOLUTION, EvaluateConfig, "resolution", advanced=True),
        Option(MAX_SHIFT, EvaluateConfig, "max_shift_m", advanced=True, optional=True),
        Option(CLIP_TO_AREA, EvaluateConfig, "clip_to_area", advanced=True),
    )
    #: Numeric outputs: output name -> (result key, label).
    SCORES = {
        "PIXEL_PRECISION": ("pixel_precision", "Pixel precision"),
        "PIXEL_RECALL": ("pixel_recall", "Pixel recall"),
        "PIXEL_F1": ("pixel_f1", "Pixel F1"),
        "PIXEL_IOU": ("pixel_iou", "Pixel IoU"),
        "PIXEL_ACCURACY": ("pixel_accuracy", "Pixel accuracy"),
        "OBJECT_PRECISION": ("object_precision", "Building precision"),
        "OBJECT_RECALL": ("object_recall", "Building recall"),
        "OBJECT_F1": ("object_f1", "Building F1"),
        "MERGES": ("merges", "Predictions that run buildings together"),
        "SPLITS": ("splits", "Buildings cut into pieces"),
    }

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:
        """Declare parameters and outputs."""
        polygon = [QgsProcessing.TypeVectorPolygon]
        for name, label in (
            (self.PREDICTED, "Predicted buildings"),
            (self.REFERENCE, "Reference buildings"),
        ):
            self.addParameter(QgsProcessingParameterVectorLayer(name, self.tr(label), polygon))
        self.addParameter(
            QgsProcessingParameterMapLayer(
                self.AREA,
                self.tr("Area (raster or polygon layer)"),
                optional=True,
                types=[QgsProcessing.TypeRaster, QgsProcessing.TypeVectorPolygon],
            )
        )
        add_options(self, self.OPTIONS)
        self.addParameter(
            QgsProcessingParameterVectorDestination(
                self.OUTPUT,
                self.tr("Evaluation layer (TP/FP/FN)"),
                QgsProcessing.TypeVectorPolygon,
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterFileDestination(
                self.REPORT,
                self.tr("Report"),
                "JSON (*.json)",
                optional=True,
                createByDefault=False,
            )
        )
        for name, (_, label) in self.SCORES.items():
            self.addOutput(QgsProcessingOutputNumber(name, self.tr(label)))

    def processAlgorithm(
        self,
        parameters: dict[str, Any],
        context: QgsProcessingContext,
        feedback: QgsProcessingFeedback,
    ) -> dict[str, Any]:
        """Run ``evaluate``; return the scores (and the evaluation layer and report)."""
        inputs = Inputs(self, parameters, context, feedback)
        args = ["--predicted", inputs.vector(self.PREDICTED)]
        args += ["--reference", inputs.vector(self.REFERENCE)]
        args += self._area_args(inputs)
        args += [*inputs.options(self.OPTIONS), "--overwrite"]
        args += inputs.output_option("--output", self.OUTPUT, "gpkg", EVALUATION_STYLE)
        args += inputs.output_option("--report", self.REPORT, "json")
        result = cast(EvaluateResult, self.engine("evaluate", args, feedback))
        outputs = {name: result.get(key) for name, (key, _) in self.SCORES.items()}
        return {**outputs, self.OUTPUT: result.get("output"), self.REPORT: result.get("report")}

    def _area_args(self, inputs: Inputs) -> list[str]:
        """``--area <file>`` for the optional area layer (raster or polygons), else []."""
        layer = self.parameterAsLayer(inputs.parameters, self.AREA, inputs.context)
        if layer is None:
            return []
        if isinstance(layer, QgsRasterLayer):
            return ["--area", raster_layer_path(layer, inputs.context, inputs.feedback)]
        return ["--area", vector_layer_path(layer, inputs.context, inputs.feedback)]
