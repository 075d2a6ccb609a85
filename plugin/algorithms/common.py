"""Parameter helpers the algorithms share: :class:`Inputs` (one run's layers, files and outputs
read as engine arguments), the inference and polygon options of predict, vectorize and detect,
and the output style names."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import partial
from typing import Any

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputLayerDefinition,
    QgsProcessingOutputNumber,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
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
from ..render import DEFAULT_MAX_MPX, WebRendering, needs_rendering
from ..settings import resource_path
from .base import FootprintAlgorithm
from .options import Option, option_args

BUILDINGS_STYLE = "buildings.qml"
EVALUATION_STYLE = "evaluation.qml"
#: The spec summary of the starter model, used when no model file is given.
STARTER_SPEC = "models/footprint-starter.json"
#: The engine's variable naming another file as the starter model (engine/models/starter.py).
STARTER_ENV = "FOOTPRINT_STARTER_MODEL"
#: Help on web layers, shared by the algorithms that draw them.
WEB_LAYERS_HELP = (
    "<b>Web layers</b> (XYZ/TMS, WMS/WMTS, ArcGIS MapServer...) are drawn over the "
    "<b>Extent</b> (then required; the dialog of Plugins > Footprint > Detect buildings "
    "fills in the map canvas's) at the model's ground resolution, in the UTM zone of the "
    "extent's centre, tile by tile, before the engine runs. Advanced: <b>Largest rendering of "
    "a web layer</b> (megapixels, default 400) refuses larger extents before anything is "
    "downloaded. The imagery provider's terms apply: some servers do not allow bulk "
    "downloading, and OpenStreetMap's tile servers are refused (as QGIS's Convert map to "
    "raster skips them)."
)


def destination_given(value: Any) -> bool:
    """True when an optional destination parameter was given a value (not skipped)."""
    if isinstance(value, QgsProcessingOutputLayerDefinition):
        value = value.sink.staticValue()
    return value is not None and str(value).strip() != ""


def model_parameter(name: str, label: str, onnx: bool = True) -> QgsProcessingParameterFile:
    """A model file input (a .pt, or with ``onnx`` an exported .onnx too) of predict, detect
    and export; empty: the starter model."""
    kinds = "*.pt *.onnx" if onnx else "*.pt"
    param = QgsProcessingParameterFile(
        name, label, optional=True, fileFilter=f"Footprint model ({kinds});;All files (*.*)"
    )
    param.setHelp(MODEL_HELP)
    return param


def add_model_outputs(
    alg: FootprintAlgorithm,
    model: tuple[str, str],
    report: str,
    numbers: tuple[tuple[str, str], ...],
) -> None:
    """Train's and improve's destinations: the model file (``model``: name, label), the
    optional report folder ``report``, and the number outputs (name, label)."""
    alg.addParameter(
        QgsProcessingParameterFileDestination(
            model[0], alg.tr(model[1]), alg.tr("Model file (*.pt)")
        )
    )
    alg.addParameter(
        QgsProcessingParameterFolderDestination(
            report, alg.tr("Report folder"), optional=True, createByDefault=False
        )
    )
    for name, label in numbers:
        alg.addOutput(QgsProcessingOutputNumber(name, alg.tr(label)))


def max_render_parameter(name: str) -> QgsProcessingParameterNumber:
    """The advanced, optional size limit of a web layer's rendering (megapixels)."""
    param = QgsProcessingParameterNumber(
        name,
        "Largest rendering of a web layer (megapixels; the provider's terms apply)",
        QgsProcessingParameterNumber.Double,
        defaultValue=DEFAULT_MAX_MPX,
        optional=True,
        minValue=0.01,
    )
    param.setFlags(param.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
    param.setHelp(
        "Web layers (XYZ, WMS...) are drawn over the extent at the model's resolution; an extent"
        " that would make more pixels than this is refused before anything is downloaded. The"
        " imagery provider's terms apply: some servers do not allow bulk downloading."
    )
    return param


def starter_resolution() -> float:
    """The ground resolution (m) of the starter model, from its spec summary in resources/.

    Raises:
        QgsProcessingException: the summary is missing or unreadable.
    """
    path = resource_path(STARTER_SPEC)
    try:
        with open(path, encoding="utf-8") as file:
            summary = json.load(file)
        spec = summary.get("spec", summary) if "resolution_m" not in summary else summary
        resolution = float(spec["resolution_m"])
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as err:
        raise QgsProcessingException(
            f"No model file was given and the starter model's description {path} cannot be"
            f" read ({err}); choose a model file, or reinstall the plugin."
        ) from None
    if not 0.001 <= resolution <= 1000:
        raise QgsProcessingException(f"{path}: resolution_m {resolution} is out of range.")
    return resolution


def model_resolution(alg: FootprintAlgorithm, model: str, feedback: QgsProcessingFeedback) -> float:
    """The ground resolution (m) ``model`` (a .pt path; "": the starter model) was trained at,
    read by the engine's ``model-info`` (the plugin does not import torch). A starter model
    set by :data:`STARTER_ENV` is read like a model file given."""
    if not model and not os.environ.get(STARTER_ENV, "").strip():
        return starter_resolution()
    model = model or os.environ[STARTER_ENV].strip()
    result = alg.engine("model-info", ["--model", model], feedback)
    return float(result["spec"]["resolution_m"])


def inference_options(
    batch: str, tta: str, margin: str, native: str, window: str
) -> tuple[Option, ...]:
    """The inference parameters of predict and detect, named ``batch``, ``tta``, ``margin``,
    ``native`` and ``window`` there (advanced), the runtime and precision (advanced: auto by
    default, see engine.inference.network), and the Dask cluster's ``DASK_WORKERS`` (local
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
        Option("RUNTIME", InferenceOptions, "runtime", advanced=True, optional=True),
        Option("PRECISION", InferenceOptions, "precision", advanced=True, optional=True),
    )


def polygon_options(
    config: type, min_area: str, simplify: str, regularize: str, hole_area: str
) -> tuple[Option, ...]:
    """Minimum area (as ``config``, VectorizeConfig or DetectConfig, defines it: a number, or
    empty for the model's), simplify, regularize (main), hole area and the low-confidence mark
    (advanced) of vectorize and detect."""
    return (
        Option(min_area, config, "min_area_m2"),
        Option(simplify, PolygonOptions, "simplify"),
        Option(regularize, PolygonOptions, "regularize"),
        Option(hole_area, PolygonOptions, "hole_area_m2", advanced=True),
        # added after 0.1.0: optional, so Processing models saved before still run
        Option("LOW_CONFIDENCE", PolygonOptions, "low_confidence", advanced=True, optional=True),
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

    def raster(self, name: str, web: WebRendering | None = None) -> str:
        """The raster parameter ``name`` as a file path the engine reads (a web layer drawn
        as ``web`` says)."""
        return raster_source(self.alg, self.parameters, name, self.context, self.feedback, web)

    def vector(self, name: str) -> str:
        """The vector parameter ``name`` as a file path the engine reads."""
        return vector_source(self.alg, self.parameters, name, self.context, self.feedback)

    def rasters(self, name: str, web: WebRendering | None = None) -> list[str]:
        """The raster layers of the multiple-layer parameter ``name`` as file paths (web
        layers drawn as ``web`` says)."""
        return raster_sources(self.alg, self.parameters, name, self.context, self.feedback, web=web)

    def web_rendering(self, extent: str, model: str, max_mpx: str) -> WebRendering:
        """How this run draws web layers: over the extent parameter ``extent``, at the
        resolution of the model file parameter ``model`` (empty: the starter model), at most
        ``max_mpx`` (a parameter) megapixels."""
        crs = self.alg.parameterAsExtentCrs(self.parameters, extent, self.context)
        rect = None
        if self.parameters.get(extent):
            rect = self.alg.parameterAsExtent(self.parameters, extent, self.context, crs)
        limit = DEFAULT_MAX_MPX
        if self.parameters.get(max_mpx) not in (None, ""):
            limit = self.alg.parameterAsDouble(self.parameters, max_mpx, self.context)
        feedback = self.feedback or QgsProcessingFeedback()
        resolution = partial(model_resolution, self.alg, self.file(model), feedback)
        label = self.alg.parameterDefinition(extent).description()
        return WebRendering(rect, crs, label, resolution, limit)

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
        """``--extent xmin ymin xmax ymax`` in the raster's CRS, or [] when no extent is given
        (or the raster is a web layer, drawn over the extent)."""
        if not self.parameters.get(extent):
            return []
        layer = self.alg.parameterAsRasterLayer(self.parameters, raster, self.context)
        if layer is not None and needs_rendering(layer):
            return []  # a web layer is drawn over the extent: the drawing is the extent
        crs = layer.crs() if layer is not None else None
        rect = self.alg.parameterAsExtent(self.parameters, extent, self.context, crs)
        if rect.isNull() or rect.isEmpty():
            return []
        values = (rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum())
        return ["--extent", *(repr(float(v)) for v in values)]

    def options(self, options: tuple[Option, ...]) -> list[str]:
        """The engine options for ``options``' values in this run."""
        return option_args(self.alg, self.parameters, self.context, options)
