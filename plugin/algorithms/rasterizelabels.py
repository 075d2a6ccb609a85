"""Rasterize building labels: polygons (any CRS) to a mask GeoTIFF on a raster's exact grid."""

from __future__ import annotations

from typing import Any, cast

from qgis.core import (
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterVectorLayer,
)

from ...engine.config import RasterizeConfig
from ...engine.results import RasterizeResult
from .base import FootprintAlgorithm
from .common import Inputs
from .options import Option, add_options


class RasterizeLabels(FootprintAlgorithm):
    """``footprint:rasterizelabels``: engine ``rasterize-labels``."""

    NAME = "rasterizelabels"
    DISPLAY_NAME = "Rasterize building labels"
    HELP = (
        "Burns building polygons into a mask GeoTIFF on the exact pixel grid (size, extent, "
        "CRS) of a raster: 1 = building, 0 = background, 255 = nodata of the raster.\n\n"
        "<b>Raster</b>: the image whose grid the mask follows.\n"
        "<b>Building polygons</b>: known buildings, in any CRS (reprojected on the fly).\n"
        "<b>Burn every touched pixel</b> (advanced): also burn pixels a polygon only touches, "
        "not only those whose centre it covers.\n"
        "<b>Separation strip</b> (advanced): burn the strip between touching buildings as 2, "
        "the class a model learns to keep buildings apart.\n"
        "<b>Mask</b>: the GeoTIFF to write; an existing file is replaced (Processing asks "
        "before overwriting).\n\n"
        "Outputs also the number of buildings and of building pixels."
    )

    INPUT = "INPUT"
    LABELS = "LABELS"
    ALL_TOUCHED = "ALL_TOUCHED"
    SEPARATION = "SEPARATION"
    OUTPUT = "OUTPUT"
    BUILDINGS = "BUILDINGS"
    BUILDING_PIXELS = "BUILDING_PIXELS"
    OPTIONS = (
        Option(ALL_TOUCHED, RasterizeConfig, "all_touched", advanced=True),
        Option(SEPARATION, RasterizeConfig, "separation", advanced=True),
    )

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:
        """Declare parameters and outputs."""
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, self.tr("Raster")))
        self.addParameter(
            QgsProcessingParameterVectorLayer(
                self.LABELS, self.tr("Building polygons"), [QgsProcessing.TypeVectorPolygon]
            )
        )
        add_options(self, self.OPTIONS)
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, self.tr("Mask")))
        self.addOutput(QgsProcessingOutputNumber(self.BUILDINGS, self.tr("Buildings")))
        self.addOutput(QgsProcessingOutputNumber(self.BUILDING_PIXELS, self.tr("Building pixels")))

    def processAlgorithm(
        self,
        parameters: dict[str, Any],
        context: QgsProcessingContext,
        feedback: QgsProcessingFeedback,
    ) -> dict[str, Any]:
        """Run ``rasterize-labels``; return the mask path and counts."""
        inputs = Inputs(self, parameters, context, feedback)
        args = ["--raster", inputs.raster(self.INPUT), "--labels", inputs.vector(self.LABELS)]
        args += ["--output", inputs.output(self.OUTPUT, "tif"), "--overwrite"]
        args += inputs.options(self.OPTIONS)
        result = cast(RasterizeResult, self.engine("rasterize-labels", args, feedback))
        return {
            self.OUTPUT: result["output"],
            self.BUILDINGS: result["buildings"],
            self.BUILDING_PIXELS: result["building_pixels"],
        }
