"""Parameter helpers the algorithms share: :class:`Inputs` (one run's layers, files and outputs
read as engine arguments), the inference and polygon options of predict, vectorize and detect,
and the output style names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingOutputLayerDefinition,
    QgsProcessingParameterFile,
)

from ...engine.config import MODEL_HELP, InferenceOptions, PolygonOptions
from ..layers import (
    absolute,
    output_path,
    raster_source,
    raster_sources,
    vector_source,
    vector_sources,
)
from .base import FootprintAlgorithm
from .options import Option, option_args

BUILDINGS_STYLE = "buildings.qml"
EVALUATION_STYLE = "evaluation.qml"


def destination_given(value: Any) -> bool:
    """True when an optional destination parameter was given a value (not skipped)."""
    if isinstance(value, QgsProcessingOutputLayerDefinition):
        value = value.sink.staticValue()
    return value is not None and str(value).strip() != ""


def model_parameter(name: str, label: str) -> QgsProcessingParameterFile:
    """A model file (.pt) input of predict and detect; empty: the starter model."""
    param = QgsProcessingParameterFile(
        name,
        label,
        extension="pt",
        optional=True,
        fileFilter="Footprint model (*.pt);;All files (*.*)",
    )
    param.setHelp(MODEL_HELP)
    return param


def inference_options(
    batch: str, tta: str, margin: str, native: str, window: str
) -> tuple[Option, ...]:
    """The inference parameters of predict and detect, named ``batch``, ``tta``, ``margin``,
    ``native`` and ``window`` there (advanced), and the Dask cluster's ``DASK_WORKERS`` (local
    workers), ``SCHEDULER``, its TLS certificates and the opt-in to a plain scheduler of another
    machine (advanced)."""
    return (
        Option("DASK_WORKERS", InferenceOptions, "dask_workers", optional=True),
        Option("SCHEDULER", InferenceOptions, "scheduler", advanced=True),
        Option("SCHEDULER_CA", InferenceOptions, "scheduler_ca", advanced=True, optional=True),
        Option("SCHEDULER_CERT", InferenceOptions, "scheduler_cert", advanced=True, optional=True),
        Option("SCHEDULER_KEY", InferenceOptions, "scheduler_key", advanced=True, optional=True),
        Option(
            "SCHEDULER_INSECURE",
            InferenceOptions,
            "scheduler_insecure",
            advanced=True,
            optional=True,
        ),
        Option(tta, InferenceOptions, "tta", advanced=True),
        Option(batch, InferenceOptions, "batch_size", advanced=True),
        Option(window, InferenceOptions, "window", advanced=True),
        Option(margin, InferenceOptions, "margin", advanced=True),
        Option(native, InferenceOptions, "native_resolution", advanced=True),
    )


def polygon_options(
    min_area: str, simplify: str, regularize: str, hole_area: str
) -> tuple[Option, ...]:
    """Minimum area, simplify, regularize (main) and hole area (advanced) of vectorize and
    detect."""
    return (
        Option(min_area, PolygonOptions, "min_area_m2"),
        Option(simplify, PolygonOptions, "simplify"),
        Option(regularize, PolygonOptions, "regularize"),
        Option(hole_area, PolygonOptions, "hole_area_m2", advanced=True),
    )


def seed_options() -> tuple[Option, ...]:
    """The advanced seeds + watershed parameters of vectorize and detect (touching buildings,
    models with a separation class); empty: the model's (detect) or the engine's defaults."""
    return (
        Option("SEED_THRESHOLD", PolygonOptions, "seed_threshold", advanced=True),
        Option("SEED_EROSION", PolygonOptions, "seed_erosion_m", advanced=True),
        Option("MIN_SEED_AREA", PolygonOptions, "min_seed_m2", advanced=True),
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

    def model(self, name: str) -> list[str]:
        """``--model <file>`` for the model parameter ``name``, [] when left empty (the
        engine then uses the starter model)."""
        path = self.file(name)
        return ["--model", path] if path else []

    def output(self, name: str, ext: str, style: str = "") -> str:
        """A file path for the destination ``name`` (see :func:`plugin.layers.output_path`),
        styled with ``resources/<style>`` when Processing loads it (no style: "")."""
        path = output_path(self.alg, self.parameters, name, self.context, ext)
        return self.alg.remember_style(path, style) if style else path

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

    def options(self, options: tuple[Option, ...]) -> list[str]:
        """The engine options for ``options``' values in this run."""
        return option_args(self.alg, self.parameters, self.context, options)
