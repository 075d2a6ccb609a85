"""Shared QGIS set-up for the plugin tests (system Python with PyQGIS).

One QgsApplication for the session (offscreen, settings in a temporary folder), Processing
initialised and the Footprint provider registered. The plugin is imported as the package
``footprint`` (a symlink to the repository root, whose folder name may not be a valid
package name), exactly as QGIS imports an installed plugin.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# precision auto means fp32 in the engines the tests start, on every CPU (see README, Tests)
os.environ["FOOTPRINT_NO_BF16"] = "1"

from osgeo import gdal, ogr, osr  # noqa: E402
from qgis.core import QgsApplication, QgsProcessingFeedback  # noqa: E402
from qgis.PyQt.QtCore import QCoreApplication, QSettings  # noqa: E402

gdal.UseExceptions()
ogr.UseExceptions()
osr.UseExceptions()

REPO = Path(__file__).resolve().parents[2]
PACKAGE = "footprint"
DATA = Path(os.environ.get("FOOTPRINT_DATA", REPO.parent / "shared" / "data"))
QGIS_PLUGINS = "/usr/share/qgis/python/plugins"
UTM = 32616
ORIGIN = (500_000.0, 3_700_000.0)

_HOME = Path(tempfile.mkdtemp(prefix="footprint-plugin-tests-"))
atexit.register(shutil.rmtree, _HOME, True)
#: A folder holding ``footprint -> <repository>``: put it on sys.path to import the plugin.
PACKAGE_PARENT = _HOME / "packages"
PACKAGE_PARENT.mkdir()
(PACKAGE_PARENT / PACKAGE).symlink_to(REPO, target_is_directory=True)
sys.path.insert(0, str(PACKAGE_PARENT))
if QGIS_PLUGINS not in sys.path:
    sys.path.append(QGIS_PLUGINS)


def _venv_python() -> str:
    for candidate in (REPO / ".venv" / "bin" / "python", REPO / ".venv" / "Scripts" / "python.exe"):
        if candidate.is_file():
            return str(candidate)
    return ""


#: The engine interpreter for the session: FOOTPRINT_PYTHON, else the repository's .venv.
ENGINE_PYTHON = os.environ.get("FOOTPRINT_PYTHON") or _venv_python()
if ENGINE_PYTHON:
    os.environ["FOOTPRINT_PYTHON"] = ENGINE_PYTHON

_APP: QgsApplication | None = None
_KEEP: list[Any] = []  # Python objects handed to QGIS must stay referenced


def _start_qgis() -> QgsApplication:
    """Start QGIS once, with settings in the session's temporary folder."""
    global _APP
    if _APP is None:
        _APP = QgsApplication([], False, str(_HOME / "profile"))
        _APP.initQgis()
        QCoreApplication.setOrganizationName("FootprintTests")
        QCoreApplication.setApplicationName("FootprintTests")
        for fmt in (QSettings.NativeFormat, QSettings.IniFormat):
            QSettings.setPath(fmt, QSettings.UserScope, str(_HOME / "settings"))
        from processing.core.Processing import Processing

        Processing.initialize()
    return _APP


@pytest.fixture(scope="session", autouse=True)
def qgis_app() -> QgsApplication:
    """The session's QgsApplication, with Processing and the Footprint provider."""
    app = _start_qgis()
    from footprint.plugin.provider import FootprintProvider

    registry = QgsApplication.processingRegistry()
    if registry.providerById("footprint") is None:
        _KEEP.append(FootprintProvider())
        registry.addProvider(_KEEP[-1])
    return app


@pytest.fixture(scope="session")
def provider(qgis_app: QgsApplication) -> Any:
    """The registered Footprint provider."""
    return QgsApplication.processingRegistry().providerById("footprint")


@pytest.fixture(scope="session")
def engine_python() -> str:
    """The engine interpreter (torch, rasterio, ...); skips when there is none."""
    if not ENGINE_PYTHON or not os.path.isfile(ENGINE_PYTHON):
        pytest.skip(
            "engine environment not found: run `bash scripts/setup.sh` (or set FOOTPRINT_PYTHON)"
        )
    from footprint.plugin.runner import EngineCheckError, check_engine

    try:
        check_engine(ENGINE_PYTHON)
    except EngineCheckError as err:
        pytest.skip(f"engine environment not usable: {err}")
    return ENGINE_PYTHON


@pytest.fixture
def shared_data() -> Path:
    """The shared real data folder; skips the test with a reason when it is absent."""
    if not (DATA / "banepa_2x2").is_dir():
        pytest.skip(f"real data not found at {DATA} (set FOOTPRINT_DATA to its folder)")
    return DATA


class RecordingFeedback(QgsProcessingFeedback):
    """A feedback that keeps everything it is told; ``cancel_at`` cancels at that progress."""

    def __init__(self, cancel_at: float | None = None) -> None:
        super().__init__()
        self.progress: list[float] = []
        self.infos: list[str] = []
        self.debug: list[str] = []
        self.commands: list[str] = []
        self.cancel_at = cancel_at

    def setProgress(self, progress: float) -> None:
        """Record progress (and cancel when ``cancel_at`` is reached)."""
        self.progress.append(progress)
        super().setProgress(progress)
        if self.cancel_at is not None and progress >= self.cancel_at:
            self.cancel()

    def pushInfo(self, info: str) -> None:
        """Record an info line."""
        self.infos.append(info)
        super().pushInfo(info)

    def pushDebugInfo(self, info: str) -> None:
        """Record a debug line."""
        self.debug.append(info)
        super().pushDebugInfo(info)

    def pushCommandInfo(self, info: str) -> None:
        """Record a command line."""
        self.commands.append(info)
        super().pushCommandInfo(info)


@pytest.fixture
def feedback() -> RecordingFeedback:
    """A fresh recording feedback."""
    return RecordingFeedback()


def _srs(epsg: int) -> osr.SpatialReference:
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return srs


def write_geotiff(
    path: Path,
    data: Any,
    epsg: int = UTM,
    origin: tuple[float, float] = ORIGIN,
    pixel: float = 0.5,
    nodata: float | None = None,
) -> Path:
    """Write a (bands, rows, cols) numpy array as a GeoTIFF (uint8 or float32)."""
    count, rows, cols = data.shape
    kind = gdal.GDT_Byte if str(data.dtype) == "uint8" else gdal.GDT_Float32
    ds = gdal.GetDriverByName("GTiff").Create(str(path), cols, rows, count, kind)
    ds.SetGeoTransform((origin[0], pixel, 0.0, origin[1], 0.0, -pixel))
    ds.SetProjection(_srs(epsg).ExportToWkt())
    for band in range(count):
        ds.GetRasterBand(band + 1).WriteArray(data[band])
        if nodata is not None:
            ds.GetRasterBand(band + 1).SetNoDataValue(nodata)
    ds = None
    return path


Box = tuple[float, float, float, float]


def write_boxes(
    path: Path, boxes: Sequence[Box], epsg: int = UTM, layer: str = "buildings"
) -> Path:
    """Write rectangles (xmin, ymin, xmax, ymax) as polygons; adds a layer to a GeoPackage."""
    driver = "GPKG" if path.suffix == ".gpkg" else "GeoJSON"
    ds = ogr.Open(str(path), 1) if path.exists() else None
    ds = ds or ogr.GetDriverByName(driver).CreateDataSource(str(path))
    out = ds.CreateLayer(layer, _srs(epsg), ogr.wkbPolygon)
    out.CreateField(ogr.FieldDefn("name", ogr.OFTString))
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        feature = ogr.Feature(out.GetLayerDefn())
        feature.SetField("name", f"b{i}")
        wkt = f"POLYGON(({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}))"
        feature.SetGeometry(ogr.CreateGeometryFromWkt(wkt))
        out.CreateFeature(feature)
    ds = None
    return path


@pytest.fixture
def make_raster(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``make_raster(name, bands=3, size=64, seed=0, **write_geotiff options)``."""

    def make(name: str = "image.tif", bands: int = 3, size: int = 64, seed: int = 0, **kw: Any):
        import numpy as np

        data = np.random.default_rng(seed).integers(0, 255, (bands, size, size), dtype=np.uint8)
        return write_geotiff(tmp_path / name, data, **kw)

    return make


@pytest.fixture
def make_boxes(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``make_boxes(name, boxes, epsg=UTM, layer="buildings")``."""

    def make(name: str, boxes: Sequence[Box], **kw: Any) -> Path:
        return write_boxes(tmp_path / name, boxes, **kw)

    return make


MODEL_SCRIPT = """
import sys
from engine.models.modelfile import ModelSpec, save_model
from engine.models.registry import create_model
bands, tile = int(sys.argv[2]), int(sys.argv[3])
spec = ModelSpec("compact", "none", bands, ("building",), tuple(range(1, bands + 1)),
                 (127.0,) * bands, (50.0,) * bands, tile, 0.5)
save_model(sys.argv[1], create_model("compact", "none", bands, 1), spec, overwrite=True)
"""


def make_compact_model(engine_python: str, path: Path, bands: int = 3, tile: int = 64) -> Path:
    """An untrained compact model file (0.5 m pixels), made by the engine's interpreter."""
    subprocess.run(
        [engine_python, "-c", MODEL_SCRIPT, str(path), str(bands), str(tile)],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=300,
    )
    return path


@pytest.fixture(scope="session")
def compact_model(engine_python: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained 3-band compact model file (tile 64, 0.5 m pixels) for fast runs."""
    return make_compact_model(engine_python, tmp_path_factory.mktemp("model") / "compact.pt")


@pytest.fixture
def clean_settings() -> Iterator[None]:
    """Remove the plugin's settings before and after a test."""
    from qgis.core import QgsSettings

    QgsSettings().remove("footprint")
    yield
    QgsSettings().remove("footprint")
