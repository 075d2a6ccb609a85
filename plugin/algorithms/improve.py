"""Improve a building model with a mapper's corrections inside the area they checked."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any, cast

from qgis.core import (
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingParameterExtent,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterVectorLayer,
)

from ...engine.config import ImproveConfig  # plain dataclasses: no torch, no GDAL
from ...engine.results import ImproveResult
from ..render import WebRendering
from .base import FootprintAlgorithm
from .common import (
    WEB_LAYERS_HELP,
    Inputs,
    add_model_outputs,
    max_render_parameter,
    model_parameter,
)
from .options import Option, add_options

#: How much the area checked's extent grows on every side (a share of its longer side) to
#: make the extent a web layer is drawn over when none is given.
CHECKED_AREA_MARGIN = 0.1


class Improve(FootprintAlgorithm):
    """``footprint:improve``: engine ``improve``."""

    NAME = "improve"
    DISPLAY_NAME = "Improve building model"
    HELP = (
        "Teaches a model the corrections you made, so that the next detection needs fewer. "
        "The loop: <b>Detect buildings</b> on one area; correct the result with QGIS's editing "
        "tools (delete false buildings, draw missed ones, fix outlines; those marked "
        "low_confidence first); draw the <b>area checked</b>, polygons where the corrected "
        "layer is now complete; run <b>Improve building model</b>; then Detect buildings on "
        "the next area with the improved model file, and improve again from it.\n\n"
        "<b>Imagery</b>: the raster the buildings were corrected on, a file or any raster "
        "layer, web layers included (see below).\n"
        "<b>Corrected buildings</b>: the building layer you edited (any CRS; polygons over the "
        "imagery, or no feature at all where the area checked holds no building). <b>Area "
        "checked</b>: polygons where that layer is complete: everything there that is not a "
        "building is taught as background, so deleted false buildings are taught too, even "
        "where no building is left; corrected buildings outside it are used, their "
        "surroundings unknown.\n"
        "<b>Start from model</b> (optional): the model file to improve (e.g. one improved "
        "before); left empty, the starter model that comes with Footprint.\n"
        "<b>Validation part</b> (optional): polygons of checked area to score on; else "
        "<b>Share held back</b> of the area checked (whole training windows, at one end) is "
        "not trained on. The starting model and the improved one are scored there alike, so "
        "you see whether the corrections helped; an area checked too small to hold a part "
        "back is refused (draw a larger one, or give the validation part).\n"
        "<b>Time budget</b> (minutes): training stops before an epoch that would end after "
        "it. <b>Epochs</b> (optional): train exactly this many instead.\n"
        "Advanced: <b>Freeze the encoder</b> for the first epochs, <b>Learning rate</b> "
        "(constant), <b>Share of windows without buildings kept</b>, <b>Random seed</b>.\n\n"
        "<b>Improved model</b>: the .pt to write (replaced if it exists: Processing asks "
        "first); give it to Detect buildings as its Model file. <b>Report folder</b> "
        "(optional): improve.json with the scores before and after, and the training plots; "
        "by default beside the model file.\n"
        "Outputs, on the part held back: the score before (the starting model) and after "
        "(building F1, or pixel IoU for a model without a separation class), the pixel IoU "
        "before and after, both models with threshold and settings chosen the same way there, "
        "Improved (1 when the score went up; 0: keep the starting model, or correct more "
        "buildings and improve again) and the epochs run. With fewer than 30 buildings in the "
        "part held back, the starting model's threshold and settings are used and kept. Uses "
        "the device of "
        "Plugins > Footprint > Settings.\n"
        + WEB_LAYERS_HELP
        + " Here an empty <b>Extent</b> draws the area checked and a margin around it, at the "
        "resolution of the model started from."
    )

    INPUT = "INPUT"
    BUILDINGS = "BUILDINGS"
    CHECKED_AREA = "CHECKED_AREA"
    MODEL = "MODEL"
    VALIDATION = "VALIDATION"
    MINUTES = "MINUTES"
    EPOCHS = "EPOCHS"
    HELD_BACK = "HELD_BACK"
    FREEZE_ENCODER_EPOCHS = "FREEZE_ENCODER_EPOCHS"
    LR = "LR"
    EMPTY_KEEP_FRACTION = "EMPTY_KEEP_FRACTION"
    SEED = "SEED"
    EXTENT = "EXTENT"
    MAX_RENDER_MPX = "MAX_RENDER_MPX"
    OUTPUT = "OUTPUT"
    REPORT_DIR = "REPORT_DIR"
    BEFORE_F1 = "BEFORE_F1"
    AFTER_F1 = "AFTER_F1"
    BEFORE_IOU = "BEFORE_IOU"
    AFTER_IOU = "AFTER_IOU"
    IMPROVED = "IMPROVED"
    EPOCHS_RUN = "EPOCHS_RUN"

    #: Training options in the dialog's order (after the layers and the model).
    OPTIONS = (
        Option(MINUTES, ImproveConfig, "minutes"),
        Option(EPOCHS, ImproveConfig, "epochs"),
        Option(HELD_BACK, ImproveConfig, "held_back"),
        Option(FREEZE_ENCODER_EPOCHS, ImproveConfig, "freeze_encoder_epochs", advanced=True),
        Option(LR, ImproveConfig, "lr", advanced=True),
        Option(EMPTY_KEEP_FRACTION, ImproveConfig, "empty_keep_fraction", advanced=True),
        Option(SEED, ImproveConfig, "seed", advanced=True),
    )

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:
        """Declare parameters and outputs."""
        polygon = [QgsProcessing.TypeVectorPolygon]
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, self.tr("Imagery")))
        self.addParameter(
            QgsProcessingParameterVectorLayer(
                self.BUILDINGS, self.tr("Corrected buildings"), polygon
            )
        )
        self.addParameter(
            QgsProcessingParameterVectorLayer(
                self.CHECKED_AREA, self.tr("Area checked (corrected buildings complete)"), polygon
            )
        )
        self.addParameter(
            model_parameter(self.MODEL, self.tr("Start from model (empty: the starter model)"))
        )
        self.addParameter(
            QgsProcessingParameterVectorLayer(
                self.VALIDATION,
                self.tr("Validation part (empty: a share of the area checked)"),
                polygon,
                optional=True,
            )
        )
        add_options(self, self.OPTIONS)
        self.addParameter(
            QgsProcessingParameterExtent(
                self.EXTENT,
                self.tr("Extent (of a web layer; empty: the area checked)"),
                optional=True,
            )
        )
        self.addParameter(max_render_parameter(self.MAX_RENDER_MPX))
        add_model_outputs(
            self,
            (self.OUTPUT, "Improved model"),
            self.REPORT_DIR,
            (
                (self.BEFORE_F1, "Score before: building F1 (pixel IoU without separation class)"),
                (self.AFTER_F1, "Score after: building F1 (pixel IoU without separation class)"),
                (self.BEFORE_IOU, "Pixel IoU before"),
                (self.AFTER_IOU, "Pixel IoU after"),
                (self.IMPROVED, "Improved (1: the score went up, 0: it did not)"),
                (self.EPOCHS_RUN, "Epochs run"),
            ),
        )

    def processAlgorithm(
        self,
        parameters: dict[str, Any],
        context: QgsProcessingContext,
        feedback: QgsProcessingFeedback,
    ) -> dict[str, Any]:
        """Run ``improve``; return the model file, report folder and the scores."""
        inputs = Inputs(self, parameters, context, feedback)
        web = self._web_rendering(inputs)
        args = ["--raster", inputs.raster(self.INPUT, web)]
        args += ["--labels", inputs.vector(self.BUILDINGS)]
        args += ["--checked-area", inputs.vector(self.CHECKED_AREA)]
        args += inputs.model(self.MODEL)
        if parameters.get(self.VALIDATION):
            args += ["--validation", inputs.vector(self.VALIDATION)]
        args += inputs.options(self.OPTIONS)
        args += ["--output", inputs.output(self.OUTPUT, "pt")]
        report = self.parameterAsFileOutput(parameters, self.REPORT_DIR, context)
        if report:
            args += ["--report-dir", os.path.abspath(report)]
        result = cast(
            ImproveResult,
            self.engine("improve", [*args, "--overwrite", *self.device_args()], feedback),
        )
        return self._outputs(result)

    def _web_rendering(self, inputs: Inputs) -> WebRendering:
        """How a web layer is drawn: over Extent, else over the area checked and a margin
        (:data:`CHECKED_AREA_MARGIN`) in its CRS, at the starting model's resolution."""
        web = inputs.web_rendering(self.EXTENT, self.MODEL, self.MAX_RENDER_MPX)
        if web.extent is not None:
            return web
        layer = self.parameterAsVectorLayer(inputs.parameters, self.CHECKED_AREA, inputs.context)
        if layer is None or layer.extent().isEmpty():
            return web  # drawing it is refused: no extent (the engine names an empty area)
        extent = layer.extent()
        extent.grow(CHECKED_AREA_MARGIN * max(extent.width(), extent.height()))
        return replace(web, extent=extent, crs=layer.crs())

    def _outputs(self, result: ImproveResult) -> dict[str, Any]:
        """The algorithm's outputs from the engine's result."""
        before, after = result.get("before") or {}, result.get("after") or {}
        key = "val_building_f1" if "val_building_f1" in after else "val_iou"
        return {
            self.OUTPUT: result["output"],
            self.REPORT_DIR: result["report"],
            self.BEFORE_F1: before.get(key),
            self.AFTER_F1: after.get(key),
            self.BEFORE_IOU: before.get("val_iou"),
            self.AFTER_IOU: after.get("val_iou"),
            self.IMPROVED: 1 if result.get("improved") else 0,
            self.EPOCHS_RUN: result.get("epochs_run"),
        }
