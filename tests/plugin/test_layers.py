"""Layer helpers: plain files pass through, everything else becomes a temporary file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal, ogr
from qgis.core import (
    QgsFeature,
    QgsGeometry,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeatureSourceDefinition,
    QgsProcessingOutputLayerDefinition,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterVectorDestination,
    QgsProject,
    QgsRasterLayer,
    QgsVectorLayer,
)

from footprint.plugin import layers

from .conftest import RecordingFeedback, write_boxes, write_geotiff

X0, Y0 = 500_000.0, 3_700_000.0
BOXES = [(X0 + 2, Y0 - 10, X0 + 8, Y0 - 4), (X0 + 12, Y0 - 20, X0 + 20, Y0 - 12)]


class Inputs(QgsProcessingAlgorithm):
    """An algorithm with one parameter of each kind the helpers read."""

    def name(self) -> str:
        return "inputs"

    def createInstance(self) -> QgsProcessingAlgorithm:
        return Inputs()

    def initAlgorithm(self, config=None) -> None:
        self.addParameter(QgsProcessingParameterRasterLayer("RASTER", "Raster"))
        self.addParameter(QgsProcessingParameterFeatureSource("VECTOR", "Buildings"))
        self.addParameter(QgsProcessingParameterMultipleLayers("LAYERS", "Layers"))
        self.addParameter(QgsProcessingParameterVectorDestination("OUT_VECTOR", "Polygons"))
        self.addParameter(QgsProcessingParameterRasterDestination("OUT_RASTER", "Probability"))
        self.addParameter(QgsProcessingParameterFileDestination("OUT_FILE", "Model", "*.pt"))

    def processAlgorithm(self, parameters, context, feedback):
        return {}


@pytest.fixture
def alg() -> Inputs:
    algorithm = Inputs()
    algorithm.initAlgorithm()
    return algorithm


@pytest.fixture
def context() -> QgsProcessingContext:
    ctx = QgsProcessingContext()
    ctx.setProject(QgsProject.instance())
    return ctx


def memory_layer(count: int = 3) -> QgsVectorLayer:
    layer = QgsVectorLayer("Polygon?crs=EPSG:32616&field=name:string", "in memory", "memory")
    features = []
    for i in range(count):
        feature = QgsFeature(layer.fields())
        feature.setAttributes([f"m{i}"])
        x = X0 + 10 * i
        feature.setGeometry(
            QgsGeometry.fromWkt(f"POLYGON(({x} {Y0},{x + 5} {Y0},{x} {Y0 - 5},{x} {Y0}))")
        )
        features.append(feature)
    layer.dataProvider().addFeatures(features)
    return layer


def names_in(path: str) -> list[str]:
    ds = ogr.Open(path)
    layer = ds.GetLayer(0)
    names = sorted(feature.GetField("name") for feature in layer)
    assert layer.GetSpatialRef().GetAuthorityCode(None) == "32616"
    return names


def test_plain_raster_file_passes_through(alg, context, make_raster) -> None:
    raster = make_raster("plain.tif")
    assert layers.raster_source(alg, {"RASTER": str(raster)}, "RASTER", context, None) == str(
        raster
    )


def test_raster_that_is_not_a_plain_file_is_copied_exactly(alg, context, tmp_path) -> None:
    data = np.arange(3 * 20 * 30, dtype=np.uint8).reshape(3, 20, 30)
    source = write_geotiff(tmp_path / "source.tif", data, nodata=7)
    zipped = tmp_path / "zipped.zip"
    import zipfile

    with zipfile.ZipFile(zipped, "w") as zf:
        zf.write(source, "inner.tif")
    layer = QgsRasterLayer(f"/vsizip/{zipped}/inner.tif", "zipped")
    assert layer.isValid()
    feedback = RecordingFeedback()
    path = layers.raster_source(alg, {"RASTER": layer}, "RASTER", context, feedback)
    assert path != layer.source() and Path(path).is_file() and path.endswith(".tif")
    copy, original = gdal.Open(path), gdal.Open(str(source))
    assert copy.GetGeoTransform() == original.GetGeoTransform()
    assert copy.GetProjection() == original.GetProjection()
    assert copy.GetRasterBand(1).GetNoDataValue() == 7
    assert np.array_equal(copy.ReadAsArray(), data)
    assert any("Writing raster layer" in line for line in feedback.infos)


def test_missing_raster_is_a_processing_error(alg, context) -> None:
    with pytest.raises(QgsProcessingException, match="Raster: no readable raster"):
        layers.raster_source(alg, {"RASTER": None}, "RASTER", context, None)


def test_single_layer_file_passes_through_even_with_layername(alg, context, tmp_path) -> None:
    gpkg = write_boxes(tmp_path / "one.gpkg", BOXES)
    for value in (str(gpkg), f"{gpkg}|layername=buildings"):
        assert layers.vector_source(alg, {"VECTOR": value}, "VECTOR", context, None) == str(gpkg)


def test_layer_of_a_multi_layer_geopackage_is_extracted(alg, context, tmp_path) -> None:
    gpkg = write_boxes(tmp_path / "two.gpkg", BOXES[:1], layer="first")
    write_boxes(gpkg, BOXES, layer="second")
    layer = QgsVectorLayer(f"{gpkg}|layername=second", "second", "ogr")
    path = layers.vector_source(alg, {"VECTOR": layer}, "VECTOR", context, None)
    assert path != str(gpkg)
    assert names_in(path) == ["b0", "b1"]


def test_memory_layer_is_written_to_a_geopackage(alg, context) -> None:
    path = layers.vector_source(alg, {"VECTOR": memory_layer()}, "VECTOR", context, None)
    assert path.endswith(".gpkg") and names_in(path) == ["m0", "m1", "m2"]


def test_selection_and_filter_are_respected(alg, context, tmp_path) -> None:
    gpkg = write_boxes(tmp_path / "sel.gpkg", BOXES)
    layer = QgsVectorLayer(str(gpkg), "sel", "ogr")
    QgsProject.instance().addMapLayer(layer)
    try:
        layer.selectByExpression("\"name\" = 'b1'")
        selected = QgsProcessingFeatureSourceDefinition(layer.id(), True)
        path = layers.vector_source(alg, {"VECTOR": selected}, "VECTOR", context, None)
        assert names_in(path) == ["b1"]
        layer.setSubsetString("\"name\" = 'b0'")
        path = layers.vector_source(alg, {"VECTOR": layer}, "VECTOR", context, None)
        assert path != str(gpkg) and names_in(path) == ["b0"]
    finally:
        QgsProject.instance().removeMapLayer(layer.id())


def test_multiple_layers_and_kind_check(alg, context, tmp_path, make_raster) -> None:
    gpkg = write_boxes(tmp_path / "many.gpkg", BOXES)
    memory = memory_layer(1)
    paths = layers.vector_sources(alg, {"LAYERS": [str(gpkg), memory]}, "LAYERS", context, None)
    assert paths[0] == str(gpkg) and names_in(paths[1]) == ["m0"]
    raster = make_raster("r.tif")
    assert layers.raster_sources(alg, {"LAYERS": [str(raster)]}, "LAYERS", context, None) == [
        str(raster)
    ]
    with pytest.raises(QgsProcessingException, match="is not a raster layer"):
        layers.raster_sources(alg, {"LAYERS": [str(gpkg)]}, "LAYERS", context, None)


def test_output_paths(alg, context, tmp_path) -> None:
    temporary = layers.output_path(
        alg, {"OUT_VECTOR": QgsProcessing.TEMPORARY_OUTPUT}, "OUT_VECTOR", context, "gpkg"
    )
    assert temporary.endswith(".gpkg") and Path(temporary).parent.is_dir()
    memory = QgsProcessingOutputLayerDefinition("memory:", QgsProject.instance())
    path = layers.output_path(alg, {"OUT_VECTOR": memory}, "OUT_VECTOR", context, "gpkg")
    assert path.endswith(".gpkg") and not path.startswith("memory:")
    assert context.willLoadLayerOnCompletion(path)
    assert not context.willLoadLayerOnCompletion("memory:")
    nested = tmp_path / "new" / "folder" / "probability"
    path = layers.output_path(alg, {"OUT_RASTER": str(nested)}, "OUT_RASTER", context, "tif")
    assert path == f"{nested}.tif" and nested.parent.is_dir()
    model = tmp_path / "model.pt"
    assert layers.output_path(alg, {"OUT_FILE": str(model)}, "OUT_FILE", context, "pt") == str(
        model
    )
    temp_model = layers.output_path(
        alg, {"OUT_FILE": QgsProcessing.TEMPORARY_OUTPUT}, "OUT_FILE", context, "pt"
    )
    assert temp_model.endswith(".pt")


def test_a_layer_inside_a_geopackage_or_a_database_is_refused(alg, context, tmp_path) -> None:
    """*Save to GeoPackage…* and *Save to Database Table…* went silently to a temporary file
    (the user believed the buildings saved in their GeoPackage): now refused, naming it."""
    gpkg = write_boxes(tmp_path / "project.gpkg", BOXES)
    before = gpkg.read_bytes()
    for destination, named in (
        (f"ogr:dbname='{gpkg}' table=\"buildings\" (geom)", f"({gpkg})"),
        ('postgres:dbname=\'gis\' host=localhost table="public"."roofs" (geom)', "(gis)"),
    ):
        definition = QgsProcessingOutputLayerDefinition(destination, QgsProject.instance())
        with pytest.raises(QgsProcessingException) as caught:
            layers.output_path(alg, {"OUT_VECTOR": definition}, "OUT_VECTOR", context, "gpkg")
        message = str(caught.value)
        assert "never adds a layer to an existing GeoPackage or database" in message
        assert named in message and "Save to File" in message
    assert gpkg.read_bytes() == before


def test_style_output_styles_the_loaded_layer(alg, context, tmp_path) -> None:
    gpkg = write_boxes(tmp_path / "evaluation.gpkg", BOXES)
    assert not layers.style_output(context, str(gpkg), "evaluation.qml")
    definition = QgsProcessingOutputLayerDefinition(str(gpkg), QgsProject.instance())
    path = layers.output_path(alg, {"OUT_VECTOR": definition}, "OUT_VECTOR", context, "gpkg")
    assert layers.style_output(context, path, "evaluation.qml")
    processor = context.layerToLoadOnCompletionDetails(path).postProcessor()
    layer = QgsVectorLayer(str(gpkg), "evaluation", "ogr")
    processor.postProcessLayer(layer, context, RecordingFeedback())
    renderer = layer.renderer()
    assert renderer.type() == "categorizedSymbol" and renderer.classAttribute() == "status"
    assert [c.value() for c in renderer.categories()] == ["TP", "FP", "FN"]


def test_relative_paths_become_absolute(monkeypatch, alg, context, tmp_path, make_raster) -> None:
    """The engine runs in the plugin folder: paths relative to QGIS's folder are resolved.

    ``monkeypatch`` comes first so that the folder is restored after ``context`` (and the
    layers it opened from relative paths) is gone: GDAL writes no .aux.xml elsewhere.
    """
    raster = make_raster("rel.tif")
    gpkg = write_boxes(tmp_path / "rel.gpkg", BOXES)
    monkeypatch.chdir(tmp_path)
    assert layers.plain_raster_path(QgsRasterLayer("rel.tif", "rel")) == str(raster)
    assert layers.plain_vector_path(QgsVectorLayer("rel.gpkg", "rel", "ogr")) == str(gpkg)
    assert layers.raster_source(alg, {"RASTER": "rel.tif"}, "RASTER", context, None) == str(raster)
    assert layers.vector_source(alg, {"VECTOR": "rel.gpkg"}, "VECTOR", context, None) == str(gpkg)
    both = layers.layer_sources(alg, {"LAYERS": ["rel.tif", "rel.gpkg"]}, "LAYERS", context, None)
    assert both == [str(raster), str(gpkg)]
    out = layers.output_path(alg, {"OUT_VECTOR": "out/b.gpkg"}, "OUT_VECTOR", context, "gpkg")
    assert out == str(tmp_path / "out" / "b.gpkg") and (tmp_path / "out").is_dir()
    out = layers.output_path(alg, {"OUT_RASTER": "p"}, "OUT_RASTER", context, "tif")
    assert out == str(tmp_path / "p.tif")
    out = layers.output_path(alg, {"OUT_FILE": "m.pt"}, "OUT_FILE", context, "pt")
    assert out == str(tmp_path / "m.pt")
    loaded = QgsProcessingOutputLayerDefinition("loaded.gpkg", QgsProject.instance())
    out = layers.output_path(alg, {"OUT_VECTOR": loaded}, "OUT_VECTOR", context, "gpkg")
    assert out == str(tmp_path / "loaded.gpkg") and context.willLoadLayerOnCompletion(out)


def test_output_folder_that_cannot_be_made_is_a_processing_error(alg, context, tmp_path) -> None:
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(QgsProcessingException) as caught:
        layers.output_path(
            alg, {"OUT_VECTOR": str(blocker / "b.gpkg")}, "OUT_VECTOR", context, "gpkg"
        )
    assert type(caught.value) is QgsProcessingException
    message = str(caught.value)
    assert message.startswith("Polygons: cannot create the folder") and str(blocker) in message
    assert "choose" in message and blocker.is_file()
