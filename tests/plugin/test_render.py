"""Web layers (XYZ here: tiles the test makes with gdal2tiles) drawn as imagery: the local UTM
zone at the model's resolution, in the right place; the size limit and forbidden servers refused
before any tile is read; cancel leaves nothing; footprint:detect end to end."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from osgeo import gdal, osr
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsNetworkAccessManager,
    QgsNetworkRequestParameters,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingUtils,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsReferencedRectangle,
)

from footprint.plugin import render
from footprint.plugin.algorithms import common
from footprint.plugin.plugin import FootprintPlugin

from .conftest import RecordingFeedback
from .helpers import (
    UTM45N,
    XYZ_ORIGIN,
    XYZ_PIXEL,
    layer_epsg,
    make_xyz_tiles,
    run,
    xyz_imagery,
    xyz_uri,
)

#: A 90 m x 60 m rectangle inside the XYZ layer's imagery, in UTM 45N.
UTM_BOX = (355_040.0, 3_056_880.0, 355_130.0, 3_056_940.0)


def _srs(epsg: int) -> osr.SpatialReference:
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return srs


def _transform(points: list[tuple[float, float]], src: int, dst: int) -> list[tuple[float, float]]:
    transform = osr.CoordinateTransformation(_srs(src), _srs(dst))
    return [tuple(transform.TransformPoint(x, y)[:2]) for x, y in points]  # type: ignore[misc]


def source_colour(x: float, y: float) -> np.ndarray:
    """The source imagery's RGB at UTM 45N (x, y)."""
    col = int((x - XYZ_ORIGIN[0]) / XYZ_PIXEL)
    row = int((XYZ_ORIGIN[1] - y) / XYZ_PIXEL)
    return xyz_imagery()[:, row, col].astype(int)


@pytest.fixture(scope="module")
def tiles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """XYZ tiles of the gradient imagery (see :func:`helpers.make_xyz_tiles`)."""
    return make_xyz_tiles(tmp_path_factory.mktemp("xyz"))


def xyz_layer(tiles: Path, name: str = "drone xyz") -> QgsRasterLayer:
    layer = QgsRasterLayer(xyz_uri(tiles), name, "wms")
    assert layer.isValid()
    return layer


@pytest.fixture
def requests() -> Iterator[list[str]]:
    """The URLs QGIS's network manager is asked for during the test (tiles included)."""
    seen: list[str] = []
    signal = QgsNetworkAccessManager.instance().requestAboutToBeCreated[QgsNetworkRequestParameters]

    def record(request: QgsNetworkRequestParameters) -> None:
        seen.append(request.request().url().toString())

    signal.connect(record)
    yield seen
    signal.disconnect(record)


def mercator_extent(box: tuple[float, float, float, float] = UTM_BOX) -> QgsRectangle:
    """``box`` (UTM 45N) as a Web Mercator rectangle (the usual map canvas CRS)."""
    (x0, y0), (x1, y1) = _transform([box[:2], box[2:]], UTM45N, 3857)
    return QgsRectangle(x0, y0, x1, y1)


def web(extent: QgsRectangle | None, resolution: float = 0.3, **kw: Any) -> render.WebRendering:
    crs = QgsCoordinateReferenceSystem("EPSG:3857")
    return render.WebRendering(extent, crs, "Extent", lambda: resolution, **kw)


def temp_rasters() -> set[Path]:
    return set(Path(QgsProcessingUtils.tempFolder()).rglob("*.tif*"))


def test_web_layers_are_told_from_layers_with_a_pixel_grid(tiles: Path) -> None:
    assert render.needs_rendering(xyz_layer(tiles))
    assert not render.needs_rendering(QgsRasterLayer(str(tiles.parent / "source.tif"), "file"))


def test_xyz_layer_is_drawn_at_the_models_resolution_in_the_local_utm_zone(
    tiles: Path, requests: list[str]
) -> None:
    feedback = RecordingFeedback()
    extent = mercator_extent()
    path = render.render_web_layer(
        xyz_layer(tiles), web(extent), QgsProcessingContext(), feedback, "drone.tif"
    )
    ds = gdal.Open(path)
    srs = osr.SpatialReference(wkt=ds.GetProjection())
    srs.AutoIdentifyEPSG()
    assert srs.GetAuthorityCode(None) == str(UTM45N)
    x0, px, _, y1, _, py = ds.GetGeoTransform()
    assert (px, py) == (0.3, -0.3)
    x1, y0 = x0 + ds.RasterXSize * px, y1 + ds.RasterYSize * py
    corners = [(extent.xMinimum(), extent.yMinimum()), (extent.xMaximum(), extent.yMaximum())]
    corners += [(extent.xMinimum(), extent.yMaximum()), (extent.xMaximum(), extent.yMinimum())]
    utm = _transform(corners, 3857, UTM45N)
    xs, ys = [x for x, _ in utm], [y for _, y in utm]
    # covers the extent, by at most a pixel more than its bounding box
    assert x0 <= min(xs) < x0 + 0.3 and x1 - 0.3 < max(xs) <= x1
    assert y0 <= min(ys) < y0 + 0.3 and y1 - 0.3 < max(ys) <= y1
    assert 85 < x1 - x0 < 95  # ground metres (the Web Mercator width is ~101 m)
    assert (
        ds.RasterCount == 4 and ds.GetRasterBand(4).GetColorInterpretation() == gdal.GCI_AlphaBand
    )
    pixels = ds.ReadAsArray().astype(int)
    assert (pixels[3] == 255).all()  # the imagery covers the whole extent
    for row, col in ((5, 5), (100, 150), (190, 290), (150, 40)):
        x, y = x0 + (col + 0.5) * px, y1 + (row + 0.5) * py
        assert np.abs(pixels[:3, row, col] - source_colour(x, y)).max() <= 4, (row, col)
    assert any("/18/" in url for url in requests)  # the finest zoom was read
    assert feedback.progress[-1] == 100
    assert any("Rendering raster layer 'drone xyz'" in line for line in feedback.infos)
    ds = None


def test_where_the_layer_draws_nothing_is_transparent_so_nodata(tiles: Path) -> None:
    x0, y0 = XYZ_ORIGIN[0] + 150, XYZ_ORIGIN[1] - 60  # its east half is past the imagery
    extent = mercator_extent((x0, y0, x0 + 100, y0 + 40))
    path = render.render_web_layer(
        xyz_layer(tiles), web(extent, 0.5), QgsProcessingContext(), None, "edge.tif"
    )
    ds = gdal.Open(path)  # kept while its band is read
    alpha = ds.GetRasterBand(4).ReadAsArray()
    assert (alpha[:, :90] == 255).all() and (alpha[:, -90:] == 0).all()


def test_extent_over_the_size_limit_is_refused_before_any_tile_is_read(
    tiles: Path, requests: list[str]
) -> None:
    before = temp_rasters()
    with pytest.raises(QgsProcessingException) as caught:
        render.render_web_layer(
            xyz_layer(tiles),
            web(mercator_extent(), max_mpx=0.05),
            QgsProcessingContext(),
            None,
            "x.tif",
        )
    message = str(caught.value)
    grid = render.render_grid(
        mercator_extent(),
        QgsCoordinateReferenceSystem("EPSG:3857"),
        0.3,
        QgsProject.instance().transformContext(),
    )
    assert (300, 200) < (grid.width, grid.height) < (305, 210)  # the box of a turned rectangle
    assert f"{grid.width} x {grid.height} pixels ({grid.megapixels:.2f} Mpx" in message
    assert "0.01 km² at 0.3 m, EPSG:32645" in message and "limit of 0.05 Mpx" in message
    assert "terms allow" in message
    assert requests == [] and temp_rasters() == before


def test_a_server_that_forbids_bulk_downloads_is_refused(requests: list[str]) -> None:
    layer = QgsRasterLayer(
        "type=xyz&url=https://tile.openstreetmap.org/{z}/{x}/{y}.png&zmax=19&zmin=0", "OSM", "wms"
    )
    with pytest.raises(QgsProcessingException, match="forbid bulk downloading"):
        render.render_web_layer(
            layer, web(mercator_extent()), QgsProcessingContext(), None, "x.tif"
        )
    assert requests == []


def test_a_web_layer_needs_an_extent(tiles: Path) -> None:
    with pytest.raises(QgsProcessingException, match="Extent: required for raster layer"):
        render.render_web_layer(xyz_layer(tiles), web(None), QgsProcessingContext(), None, "x.tif")


def test_cancel_during_rendering_leaves_nothing(tiles: Path, monkeypatch) -> None:
    monkeypatch.setattr(render, "TILE_PIXELS", 64)  # 5 x 4 tiles
    before = temp_rasters()
    feedback = RecordingFeedback(cancel_at=20)
    with pytest.raises(QgsProcessingException, match="Cancelled while rendering"):
        render.render_web_layer(
            xyz_layer(tiles), web(mercator_extent()), QgsProcessingContext(), feedback, "c.tif"
        )
    assert 0 < len(feedback.progress) < 20  # it stopped part way
    assert temp_rasters() == before


@pytest.mark.parametrize("summary", [{"resolution_m": 0.15}, {"spec": {"resolution_m": 0.15}}])
def test_without_a_model_the_starter_models_resolution_is_used(
    tmp_path: Path, monkeypatch, summary: dict[str, Any]
) -> None:
    (tmp_path / "starter.json").write_text(json.dumps(summary))
    monkeypatch.setattr(common, "resource_path", lambda name: str(tmp_path / "starter.json"))
    monkeypatch.delenv(common.STARTER_ENV, raising=False)
    assert common.model_resolution(None, "", None) == 0.15  # type: ignore[arg-type]
    (tmp_path / "starter.json").unlink()
    with pytest.raises(QgsProcessingException, match="choose a model file"):
        common.starter_resolution()


def test_detect_dialog_starts_with_the_map_canvas_extent() -> None:
    rect = QgsRectangle(1.0, 2.0, 3.0, 4.0)
    crs = QgsCoordinateReferenceSystem("EPSG:3857")

    class Settings:
        def destinationCrs(self) -> QgsCoordinateReferenceSystem:
            return crs

    class Canvas:
        def extent(self) -> QgsRectangle:
            return rect

        def mapSettings(self) -> Settings:
            return Settings()

    class Iface:
        def mapCanvas(self) -> Canvas:
            return Canvas()

    extent = FootprintPlugin(Iface()).canvas_parameters()["EXTENT"]
    assert isinstance(extent, QgsReferencedRectangle)
    assert extent == rect and extent.crs() == crs
    assert FootprintPlugin(None).canvas_parameters() == {}


@pytest.fixture
def project_layer(tiles: Path) -> Iterator[QgsRasterLayer]:
    layer = xyz_layer(tiles)
    QgsProject.instance().addMapLayer(layer)
    yield layer
    QgsProject.instance().removeMapLayer(layer.id())


def test_detect_on_an_xyz_layer_with_an_extent_runs_end_to_end(
    project_layer: QgsRasterLayer, compact_model: Path, tmp_path: Path
) -> None:
    feedback = RecordingFeedback()
    e = mercator_extent()
    result = run(
        "footprint:detect",
        {
            "INPUT": project_layer.id(),
            "MODEL": str(compact_model),
            "EXTENT": f"{e.xMinimum()},{e.xMaximum()},{e.yMinimum()},{e.yMaximum()} [EPSG:3857]",
            "OUTPUT": str(tmp_path / "buildings.gpkg"),
        },
        feedback=feedback,
    )
    assert Path(result["OUTPUT"]).is_file() and result["BUILDINGS"] >= 0
    assert layer_epsg(result["OUTPUT"]) == UTM45N
    rendering = [line for line in feedback.infos if "Rendering raster layer" in line]
    assert rendering and "at 0.5 m, EPSG:32645" in rendering[0]  # the model's
    detect = [c for c in feedback.commands if " detect " in c]
    assert detect and "--extent" not in detect[0]  # the drawing is the extent


def test_a_starter_model_set_by_the_environment_gives_its_own_resolution(
    project_layer: QgsRasterLayer, compact_model: Path, tmp_path: Path, monkeypatch
) -> None:
    """FOOTPRINT_STARTER_MODEL (here a 0.5 m model) is drawn for at its resolution, not at the
    shipped model's (its summary says 0.15 m)."""
    (tmp_path / "starter.json").write_text(json.dumps({"resolution_m": 0.15}))
    monkeypatch.setattr(common, "resource_path", lambda name: str(tmp_path / "starter.json"))
    monkeypatch.setenv(common.STARTER_ENV, str(compact_model))
    feedback = RecordingFeedback()
    e = mercator_extent()
    run(
        "footprint:detect",
        {
            "INPUT": project_layer.id(),
            "EXTENT": f"{e.xMinimum()},{e.xMaximum()},{e.yMinimum()},{e.yMaximum()} [EPSG:3857]",
            "OUTPUT": str(tmp_path / "buildings.gpkg"),
        },
        feedback=feedback,
    )
    rendering = [line for line in feedback.infos if "Rendering raster layer" in line]
    assert rendering and "at 0.5 m, EPSG:32645" in rendering[0]


def test_detect_on_an_xyz_layer_without_an_extent_names_the_parameter(
    project_layer: QgsRasterLayer, tmp_path: Path
) -> None:
    (tmp_path / "m.pt").write_bytes(b"never read")
    with pytest.raises(QgsProcessingException, match="Extent: required for raster layer"):
        run(
            "footprint:detect",
            {
                "INPUT": project_layer.id(),
                "MODEL": str(tmp_path / "m.pt"),
                "OUTPUT": str(tmp_path / "b.gpkg"),
            },
        )


def test_train_draws_web_layers_over_its_extent_at_the_starter_models_resolution(
    project_layer: QgsRasterLayer, tmp_path: Path, monkeypatch, make_raster, make_boxes
) -> None:
    from footprint.plugin.algorithms import base

    (tmp_path / "starter.json").write_text(json.dumps({"resolution_m": 0.25}))
    monkeypatch.setattr(common, "resource_path", lambda name: str(tmp_path / "starter.json"))
    calls: list[tuple[str, list[str]]] = []

    def engine(command: str, args: list[str], feedback: Any) -> dict[str, Any]:
        calls.append((command, list(args)))
        return {"output": args[args.index("--output") + 1], "report": "", "metrics": {}}

    monkeypatch.setattr(base, "run_engine", engine)
    image = make_raster("image.tif")
    e = mercator_extent()
    run(
        "footprint:train",
        {
            "RASTERS": [str(image), project_layer.id()],
            "LABELS": [
                str(
                    make_boxes("b.geojson", [(355_050, 3_056_890, 355_060, 3_056_900)], epsg=UTM45N)
                )
            ],
            "EXTENT": QgsReferencedRectangle(e, QgsCoordinateReferenceSystem("EPSG:3857")),
            "OUTPUT": str(tmp_path / "m.pt"),
        },
    )
    ((command, args),) = calls
    rasters = args[args.index("--rasters") + 1 : args.index("--labels")]
    assert command == "train" and rasters[0] == str(image)
    drawn = gdal.Open(rasters[1])
    assert drawn.GetGeoTransform()[1] == 0.25 and layer_epsg(rasters[1]) == UTM45N
