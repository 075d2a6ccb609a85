"""Vectorize a probability or mask raster into building polygons."""

from __future__ import annotations

from typing import Any, cast

from qgis.core import (
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBand,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterVectorDestination,
)

from ...engine.config import VectorizeConfig
from ...engine.results import VectorizeResult
from .base import FootprintAlgorithm
from .common import BUILDINGS_STYLE, Inputs, polygon_options, seed_options
from .options import Option, add_options


class Vectorize(FootprintAlgorithm):
    """``footprint:vectorize``: engine ``vectorize``."""

    NAME = "vectorize"
    DISPLAY_NAME = "Vectorize buildings"
    HELP = (
        "Turns a building-probability raster (from Predict) or a mask (from Rasterize "
        "building labels) into building polygons, window by window, joining polygons across "
        "window seams. Each polygon has its area (area_m2) and mean probability (score).\n\n"
        "<b>Probability or mask raster</b>: pixels at or above the threshold are buildings.\n"
        "<b>Threshold</b>: 0.5 by default (use the threshold Train reports for its model).\n"
        "<b>Minimum building area</b> (m²): smaller buildings join the neighbour they share "
        "the most edge with (with a separation band), or are dropped when alone.\n"
        "<b>Simplify tolerance</b>: in pixels (0 keeps the pixel staircase).\n"
        "<b>Square off outlines</b>: regularize buildings to right angles.\n"
        "<b>Touching buildings</b>: a probability raster from Predict with a model that has a "
        "separation class holds a band named 'separation probability'; buildings then grow "
        "from seeds, one polygon per building even where houses share walls.\n"
        "Advanced: <b>Fill holes smaller than</b> (m²), the seed settings, <b>Separation "
        "band</b> (empty: found by name; 0: none), <b>Band</b> holding the probability.\n"
        "<b>Buildings</b>: the polygon layer to write (GeoPackage by default; an existing "
        "file is replaced whole, with any other layers in it: the file browser asks first, a "
        "typed name is not asked about). Outputs also the number of buildings."
    )

    INPUT = "INPUT"
    BAND = "BAND"
    THRESHOLD = "THRESHOLD"
    MIN_AREA = "MIN_AREA"
    HOLE_AREA = "HOLE_AREA"
    SIMPLIFY = "SIMPLIFY"
    REGULARIZE = "REGULARIZE"
    OUTPUT = "OUTPUT"
    BUILDINGS = "BUILDINGS"
    TOTAL_AREA = "TOTAL_AREA"
    POLYGONS = (
        Option(THRESHOLD, VectorizeConfig, "threshold"),
        *polygon_options(VectorizeConfig, MIN_AREA, SIMPLIFY, REGULARIZE, HOLE_AREA),
        *seed_options(),
        Option("SEPARATION_BAND", VectorizeConfig, "separation_band", advanced=True),
    )

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:
        """Declare parameters and outputs."""
        self.addParameter(
            QgsProcessingParameterRasterLayer(self.INPUT, self.tr("Probability or mask raster"))
        )
        add_options(self, self.POLYGONS)
        self.add_advanced(
            QgsProcessingParameterBand(
                self.BAND, self.tr("Band (empty: 1)"), 1, self.INPUT, optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterVectorDestination(
                self.OUTPUT, self.tr("Buildings"), QgsProcessing.TypeVectorPolygon
            )
        )
        self.addOutput(QgsProcessingOutputNumber(self.BUILDINGS, self.tr("Number of buildings")))
        self.addOutput(QgsProcessingOutputNumber(self.TOTAL_AREA, self.tr("Total area (m²)")))

    def processAlgorithm(
        self,
        parameters: dict[str, Any],
        context: QgsProcessingContext,
        feedback: QgsProcessingFeedback,
    ) -> dict[str, Any]:
        """Run ``vectorize``; return the polygon layer and the number of buildings."""
        inputs = Inputs(self, parameters, context, feedback)
        output = inputs.output(self.OUTPUT, "gpkg", BUILDINGS_STYLE)
        args = ["--raster", inputs.raster(self.INPUT), "--output", output, "--overwrite"]
        args += ["--band", str(self.parameterAsInt(parameters, self.BAND, context) or 1)]
        args += inputs.options(self.POLYGONS)
        result = cast(VectorizeResult, self.engine("vectorize", args, feedback))
        return {
            self.OUTPUT: result["output"],
            self.BUILDINGS: result["buildings"],
            self.TOTAL_AREA: result.get("total_area_m2"),
        }
