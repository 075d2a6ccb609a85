"""Vectorize a probability or mask raster into building polygons."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBand,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterVectorDestination,
)

from ..layers import output_path, raster_source, style_output
from .base import FootprintAlgorithm

DOUBLE = QgsProcessingParameterNumber.Double
BUILDINGS_STYLE = "buildings.qml"


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


class StyledOutputs:
    """Mixin: remember polygon outputs and style them in ``postProcessAlgorithm``."""

    def remember_style(self, path: str, style: str) -> str:
        """Style ``path`` with ``resources/<style>`` when Processing loads it; return path."""
        if not hasattr(self, "_styles"):
            self._styles: list[tuple[str, str]] = []
        self._styles.append((path, style))
        return path

    def postProcessAlgorithm(
        self, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        """Attach the style post-processors (runs in the main thread, after the run)."""
        for path, style in getattr(self, "_styles", []):
            style_output(context, path, style)
        self._styles = []
        return {}


class Vectorize(StyledOutputs, FootprintAlgorithm):
    """``footprint:vectorize``: engine ``vectorize``."""

    NAME = "vectorize"
    DISPLAY_NAME = "Vectorize buildings"
    HELP = (
        "Turns a building-probability raster (from Predict) or a mask (from Rasterize "
        "building labels) into building polygons, window by window, joining polygons across "
        "window seams. Each polygon has its area (area_m2) and mean probability (score).\n\n"
        "<b>Probability or mask raster</b>: pixels at or above the threshold are buildings.\n"
        "<b>Threshold</b>: 0.5 by default (use the threshold Train reports for its model).\n"
        "<b>Minimum building area</b>: drop polygons smaller than this, in m².\n"
        "<b>Simplify tolerance</b>: in pixels (0 keeps the pixel staircase).\n"
        "<b>Square off outlines</b>: regularize buildings to right angles.\n"
        "Advanced: <b>Fill holes smaller than</b> (m²), <b>Band</b> holding the probability.\n"
        "<b>Buildings</b>: the polygon layer to write (GeoPackage by default; replaced if it "
        "exists: Processing asks first). Outputs also the number of buildings."
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
    POLYGONS = {
        "min_area": MIN_AREA,
        "hole_area": HOLE_AREA,
        "simplify": SIMPLIFY,
        "regularize": REGULARIZE,
    }

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:
        """Declare parameters and outputs."""
        self.addParameter(
            QgsProcessingParameterRasterLayer(self.INPUT, self.tr("Probability or mask raster"))
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.THRESHOLD, self.tr("Threshold"), DOUBLE, 0.5, minValue=0.0, maxValue=1.0
            )
        )
        add_polygon_parameters(self, self.POLYGONS)
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
        output = output_path(self, parameters, self.OUTPUT, context, "gpkg")
        args = [
            "--raster",
            raster_source(self, parameters, self.INPUT, context, feedback),
            "--output",
            self.remember_style(output, BUILDINGS_STYLE),
            "--overwrite",
            "--threshold",
            repr(self.parameterAsDouble(parameters, self.THRESHOLD, context)),
            "--band",
            str(self.parameterAsInt(parameters, self.BAND, context) or 1),
        ]
        args += polygon_args(self, parameters, context, self.POLYGONS)
        result = self.engine("vectorize", args, feedback)
        return {
            self.OUTPUT: result["output"],
            self.BUILDINGS: result["buildings"],
            self.TOTAL_AREA: result.get("total_area_m2"),
        }
