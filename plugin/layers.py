"""Turn Processing parameters into plain file paths for the engine.

The engine only takes paths. A layer that is a plain file the engine can read is passed as
its path; anything else (memory, database and web layers, selections, filtered layers,
layers with unsaved edits, layers inside multi-layer files) is first written to a temporary
file in Processing's temp folder, keeping its CRS. Destination parameters become real file
paths. Every path handed out is absolute (relative ones are resolved against QGIS's working
folder), because the engine runs in the plugin folder.
"""

from __future__ import annotations

import os
import re
from functools import partial
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsMapLayer,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeatureSourceDefinition,
    QgsProcessingFeedback,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingOutputLayerDefinition,
    QgsProcessingUtils,
    QgsProviderRegistry,
    QgsRasterDataProvider,
    QgsRasterFileWriter,
    QgsRasterLayer,
    QgsRasterPipe,
    QgsVectorLayer,
)

from .render import WebRendering, needs_rendering, render_web_layer
from .settings import resource_path

#: Vector formats the engine reads directly (by file extension); others are converted.
VECTOR_FORMATS = ["gpkg", "shp", "geojson", "json", "geojsonl", "fgb", "gml", "kml", "sqlite"]
RASTER_OPTIONS = ["COMPRESS=DEFLATE", "TILED=YES", "BIGTIFF=IF_SAFER"]
#: Destinations that name a table inside an existing GeoPackage or database (the dialogs'
#: *Save to GeoPackage…* and *Save to Database Table…*): refused, Footprint writes whole files.
TABLE_PREFIXES = ("ogr:", "postgres:", "postgis:", "spatialite:", "mssql:")
#: Output values that are not file paths: a memory layer goes to a temporary file.
NON_FILE_PREFIXES = ("memory:", *TABLE_PREFIXES)


def _text(value: Any) -> str:
    """A decodeUri value as text (QGIS returns NULL for missing parts)."""
    return value if isinstance(value, str) else ""


def absolute(path: str) -> str:
    """``path`` made absolute against QGIS's working folder ("" stays "")."""
    return os.path.abspath(path) if path else ""


def _label(alg: QgsProcessingAlgorithm, name: str) -> str:
    definition = alg.parameterDefinition(name)
    return definition.description() if definition is not None else name


def plain_raster_path(layer: QgsRasterLayer) -> str:
    """The layer's file path when it is one plain file GDAL reads as is, else ""."""
    if layer.providerType() != "gdal":
        return ""
    source = layer.source()
    parts = QgsProviderRegistry.instance().decodeUri("gdal", source)
    path = _text(parts.get("path"))
    if not path or path != source or _text(parts.get("layerName")):
        return ""  # subdatasets, open options, /vsi... paths, connection strings
    return absolute(path) if os.path.isfile(path) else ""


def export_raster(
    layer: QgsRasterLayer, context: QgsProcessingContext, feedback: QgsProcessingFeedback | None
) -> str:
    """Write ``layer`` (its pixels, grid, CRS and nodata) to a temporary GeoTIFF; return it."""
    provider = layer.dataProvider()
    if provider is None or not provider.capabilities() & QgsRasterDataProvider.Size:
        raise QgsProcessingException(
            f"Raster layer '{layer.name()}' has no fixed pixel grid (a web map service?): here"
            " it cannot be drawn (Detect, Predict and Train draw such layers over an extent);"
            " save it as a GeoTIFF first (right click > Export > Save As...) and use that file."
        )
    path = QgsProcessingUtils.generateTempFilename(f"{_safe(layer.name())}.tif")
    if feedback is not None:
        feedback.pushInfo(f"Writing raster layer '{layer.name()}' to {path}")
    writer = QgsRasterFileWriter(path)
    writer.setOutputFormat("GTiff")
    writer.setCreateOptions(RASTER_OPTIONS)
    pipe = QgsRasterPipe()
    if not pipe.set(provider.clone()):
        raise QgsProcessingException(f"Cannot read raster layer '{layer.name()}'.")
    error = writer.writeRaster(
        pipe,
        provider.xSize(),
        provider.ySize(),
        provider.extent(),
        provider.crs(),
        context.transformContext(),
    )
    if error != QgsRasterFileWriter.NoError:
        raise QgsProcessingException(
            f"Cannot write raster layer '{layer.name()}' to {path} (error {int(error)});"
            " check free disk space in the Processing temporary folder."
        )
    return absolute(path)


def raster_layer_path(
    layer: QgsRasterLayer,
    context: QgsProcessingContext,
    feedback: QgsProcessingFeedback | None,
    web: WebRendering | None = None,
) -> str:
    """A file path for a raster layer: its own file, or a temporary GeoTIFF copy; a web layer
    (XYZ, WMS...) is drawn over ``web``'s extent (see :mod:`plugin.render`)."""
    if web is not None and needs_rendering(layer):
        return absolute(
            render_web_layer(layer, web, context, feedback, f"{_safe(layer.name())}.tif")
        )
    return plain_raster_path(layer) or export_raster(layer, context, feedback)


def raster_source(
    alg: QgsProcessingAlgorithm,
    parameters: dict[str, Any],
    name: str,
    context: QgsProcessingContext,
    feedback: QgsProcessingFeedback | None,
    web: WebRendering | None = None,
) -> str:
    """The raster parameter ``name`` as a file path the engine can read (a web layer drawn
    as ``web`` says)."""
    layer = alg.parameterAsRasterLayer(parameters, name, context)
    if layer is None or not layer.isValid():
        raise QgsProcessingException(
            f"{_label(alg, name)}: no readable raster layer was given; choose a raster layer"
            " or a GeoTIFF file."
        )
    return raster_layer_path(layer, context, feedback, web)


def _single_layer_file(path: str) -> bool:
    """True when the file at ``path`` holds one layer (so the path alone names it)."""
    return len(QgsProviderRegistry.instance().querySublayers(path)) == 1


def plain_vector_path(layer: QgsVectorLayer) -> str:
    """The layer's file path when the engine reads the same features from it, else "" (also
    for a layer with unsaved edits: its copy holds what the map shows, e.g. the buildings a
    mapper corrected before Improve)."""
    source = layer.source()
    if layer.providerType() != "ogr" or layer.subsetString() or source.startswith("/vsi"):
        return ""
    if layer.isModified():
        return ""
    parts = QgsProviderRegistry.instance().decodeUri("ogr", source)
    path = _text(parts.get("path"))
    if not os.path.isfile(path) or Path(path).suffix.lstrip(".").lower() not in VECTOR_FORMATS:
        return ""
    if path == source or _single_layer_file(path):
        return absolute(path)
    return ""  # one layer of a GeoPackage (or another multi-layer file) holding several


def vector_layer_path(
    layer: QgsVectorLayer, context: QgsProcessingContext, feedback: QgsProcessingFeedback | None
) -> str:
    """A file path for a vector layer: its own file, or a temporary GeoPackage copy."""
    path = plain_vector_path(layer)
    if path:
        return path
    # QGIS 3.22 crashes converting without a feedback; [] as formats forces the conversion.
    path = QgsProcessingUtils.convertToCompatibleFormat(
        layer, False, _safe(layer.name()), [], "gpkg", context, feedback or QgsProcessingFeedback()
    )
    if not path:
        raise QgsProcessingException(f"Cannot write vector layer '{layer.name()}' to a file.")
    return absolute(path)


def vector_source(
    alg: QgsProcessingAlgorithm,
    parameters: dict[str, Any],
    name: str,
    context: QgsProcessingContext,
    feedback: QgsProcessingFeedback | None,
) -> str:
    """The vector (layer or feature source) parameter ``name`` as a readable file path.

    Selections ("selected features only"), feature limits, filters, non-file and multi-layer
    sources are written to a temporary GeoPackage first.
    """
    value = parameters.get(name)
    if isinstance(value, QgsProcessingFeatureSourceDefinition):
        if value.selectedFeaturesOnly or value.featureLimit != -1:
            path = alg.parameterAsCompatibleSourceLayerPath(
                parameters, name, context, [], "gpkg", feedback or QgsProcessingFeedback()
            )
            if not path:
                raise QgsProcessingException(f"{_label(alg, name)}: cannot write the selection.")
            return absolute(path)
        parameters = {**parameters, name: value.source}
    layer = alg.parameterAsVectorLayer(parameters, name, context)
    if layer is None or not layer.isValid():
        raise QgsProcessingException(
            f"{_label(alg, name)}: no readable vector layer was given; choose a polygon layer"
            " or a GeoPackage/GeoJSON/Shapefile file."
        )
    return vector_layer_path(layer, context, feedback)


def layer_sources(
    alg: QgsProcessingAlgorithm,
    parameters: dict[str, Any],
    name: str,
    context: QgsProcessingContext,
    feedback: QgsProcessingFeedback | None,
    kind: QgsMapLayer.LayerType | None = None,
    web: WebRendering | None = None,
) -> list[str]:
    """File paths of every layer of a multiple-layer parameter (rasters and/or vectors).

    ``kind`` (``QgsMapLayer.RasterLayer`` or ``VectorLayer``) rejects layers of the other kind;
    web raster layers are drawn as ``web`` says.
    """
    layers = alg.parameterAsLayerList(parameters, name, context)
    paths = []
    for layer in layers:
        if kind is not None and layer.type() != kind:
            raise QgsProcessingException(
                f"{_label(alg, name)}: '{layer.name()}' is not a {_kind_name(kind)} layer."
            )
        if isinstance(layer, QgsRasterLayer):
            paths.append(raster_layer_path(layer, context, feedback, web))
        elif isinstance(layer, QgsVectorLayer):
            paths.append(vector_layer_path(layer, context, feedback))
        else:
            raise QgsProcessingException(f"{_label(alg, name)}: unsupported layer {layer.name()}.")
    return paths


#: File paths of the vector layers of a multiple-layer parameter (:func:`layer_sources`).
vector_sources = partial(layer_sources, kind=QgsMapLayer.VectorLayer)
#: File paths of the raster layers of a multiple-layer parameter (:func:`layer_sources`).
raster_sources = partial(layer_sources, kind=QgsMapLayer.RasterLayer)


def output_path(
    alg: QgsProcessingAlgorithm,
    parameters: dict[str, Any],
    name: str,
    context: QgsProcessingContext,
    default_ext: str,
) -> str:
    """A real file path for the destination parameter ``name``.

    Temporary outputs (``TEMPORARY_OUTPUT``, ``memory:``) become a temporary file with
    ``default_ext`` (e.g. ``"gpkg"``, ``"tif"``, ``"pt"``); a path without an extension gets
    it; a relative path is made absolute; the parent folder is created.

    Raises:
        QgsProcessingException: a layer inside a GeoPackage or a database table (*Save to
            GeoPackage…*, *Save to Database Table…*): Footprint writes whole files.
    """
    ext = default_ext.lstrip(".")
    definition = alg.parameterDefinition(name)
    if definition is not None and definition.type() in ("file", "fileDestination", "folder"):
        path = alg.parameterAsFileOutput(parameters, name, context)
    else:
        path = alg.parameterAsOutputLayer(parameters, name, context)
    value = parameters.get(name)
    if isinstance(value, QgsProcessingOutputLayerDefinition):
        value = value.sink.staticValue()
    temporary = value in (None, "", QgsProcessing.TEMPORARY_OUTPUT)
    if path and path.startswith(TABLE_PREFIXES):
        raise QgsProcessingException(_table_refusal(_label(alg, name), path))
    if not path or path.startswith(NON_FILE_PREFIXES) or path == QgsProcessing.TEMPORARY_OUTPUT:
        new = QgsProcessingUtils.generateTempFilename(f"{name}.{ext}")
    elif ext and (not Path(path).suffix or (temporary and Path(path).suffix != f".{ext}")):
        new = str(Path(path).with_suffix(f".{ext}"))
    else:
        new = path
    new = absolute(new)
    if new != path:
        _move_load_on_completion(context, path, new)
        path = new
    _make_parent(path, _label(alg, name))
    return str(path)


def _table_refusal(label: str, destination: str) -> str:
    """Why a layer inside a GeoPackage or a database table is refused as ``label``."""
    found = re.search(r"dbname='([^']*)'", destination)
    where = f" ({found.group(1)})" if found else ""
    return (
        f"{label}: Footprint writes whole files and never adds a layer to an existing"
        f" GeoPackage or database{where}, which could replace its other layers: choose *Save to"
        " File…* with a new file name (a .gpkg of its own), or a temporary layer."
    )


def _make_parent(path: str, label: str) -> None:
    """Create the folder of the output ``path``; a QgsProcessingException says why it cannot."""
    parent = Path(path).parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        blocker = next((p for p in (parent, *parent.parents) if p.is_file()), None)
        if blocker is not None:
            why = "it is a file" if blocker == parent else f"{blocker} is a file"
        else:
            why = err.strerror or str(err)
        raise QgsProcessingException(
            f"{label}: cannot create the folder {parent} ({why}); choose an output path in a"
            " folder you can write to."
        ) from None


def _move_load_on_completion(context: QgsProcessingContext, old: str, new: str) -> None:
    """Load ``new`` on completion in place of ``old`` (a memory: or extension-less output)."""
    layers = context.layersToLoadOnCompletion()
    if old in layers:
        layers[new] = layers.pop(old)
        context.setLayersToLoadOnCompletion(layers)


class _StylePostProcessor(QgsProcessingLayerPostProcessorInterface):
    """Applies a QML style from ``resources/`` to an output layer when it is loaded."""

    _alive: list[_StylePostProcessor] = []  # Processing does not own post-processors

    def __init__(self, qml: str) -> None:
        super().__init__()
        self.qml = qml

    def postProcessLayer(
        self, layer: QgsMapLayer, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> None:
        """Load the style onto the freshly loaded layer."""
        if layer is not None and layer.isValid():
            layer.loadNamedStyle(self.qml)
            layer.triggerRepaint()

    @classmethod
    def create(cls, qml: str) -> _StylePostProcessor:
        """A post-processor kept alive for the session."""
        processor = cls(qml)
        cls._alive.append(processor)
        return processor


def style_output(context: QgsProcessingContext, path: str, style: str) -> bool:
    """Style the output ``path`` with ``resources/<style>`` when Processing loads it.

    Returns True when the output will be loaded (and so styled).
    """
    if not context.willLoadLayerOnCompletion(path):
        return False
    details = context.layerToLoadOnCompletionDetails(path)
    details.setPostProcessor(_StylePostProcessor.create(resource_path(style)))
    return True


def _safe(name: str) -> str:
    """A file-name-safe version of a layer name."""
    cleaned = "".join(c if c.isalnum() or c in "-_" else "_" for c in name).strip("_")
    return cleaned[:60] or "layer"


def _kind_name(kind: QgsMapLayer.LayerType) -> str:
    return "raster" if kind == QgsMapLayer.RasterLayer else "vector"
