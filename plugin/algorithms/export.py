"""Export a model to ONNX, for detection on ONNX Runtime (the detection-only engine)."""

from __future__ import annotations

from typing import Any, cast

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFileDestination,
)

from ...engine.results import ExportResult
from .base import FootprintAlgorithm
from .common import Inputs, model_parameter


class Export(FootprintAlgorithm):
    """``footprint:export``: engine ``export``."""

    NAME = "export"
    DISPLAY_NAME = "Export model to ONNX"
    HELP = (
        "Writes a model as ONNX, the file the detection-only engine runs (ONNX Runtime, no "
        "torch: Plugins > Footprint > Settings > Install engine > Detection only). Predict "
        "and Detect take the .onnx file as their model file; with the full engine they run "
        "it on ONNX Runtime too.\n\n"
        "<b>Model file</b> (optional): a .pt written by Train or Improve; left empty, the "
        "starter model (which already comes as ONNX as well).\n"
        "<b>ONNX model</b>: the .onnx file to write (replaced if it exists: Processing asks "
        "first). Before it is written, ONNX Runtime's probabilities are checked against "
        "torch's on a probe (at most 0.0001 apart); the largest difference is an output.\n"
        "Needs the full engine (torch)."
    )

    MODEL = "MODEL"
    OUTPUT = "OUTPUT"
    MAX_DIFFERENCE = "MAX_DIFFERENCE"

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:
        """Declare parameters and outputs."""
        self.addParameter(model_parameter(self.MODEL, self.tr("Model file"), onnx=False))
        self.addParameter(
            QgsProcessingParameterFileDestination(
                self.OUTPUT, self.tr("ONNX model"), self.tr("ONNX model (*.onnx)")
            )
        )
        self.addOutput(
            QgsProcessingOutputNumber(
                self.MAX_DIFFERENCE, self.tr("Largest probability difference from torch")
            )
        )

    def processAlgorithm(
        self,
        parameters: dict[str, Any],
        context: QgsProcessingContext,
        feedback: QgsProcessingFeedback,
    ) -> dict[str, Any]:
        """Run ``export``; return the ONNX file."""
        inputs = Inputs(self, parameters, context, feedback)
        args = [*inputs.model(self.MODEL), "--output", inputs.output(self.OUTPUT, "onnx")]
        result = cast(ExportResult, self.engine("export", [*args, "--overwrite"], feedback))
        return {self.OUTPUT: result["output"], self.MAX_DIFFERENCE: result["max_difference"]}
