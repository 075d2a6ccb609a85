"""Test helpers for the algorithm tests: synthetic scenes written with GDAL/OGR, layer readers.

A synthetic scene is an RGB uint8 GeoTIFF (0.5 m pixels, UTM 16N by default) of dark noisy
ground with bright rectangular roofs, plus the roofs as a polygon layer: easy enough that a
compact model learns it in a few epochs on a CPU.
"""

from __future__ import annotations

import atexit
import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from osgeo import gdal, ogr, osr

gdal.UseExceptions()
ogr.UseExceptions()
osr.UseExceptions()

UTM = 32616
WGS84 = 4326
PIXEL = 0.5
ORIGIN = (500_000.0, 3_700_000.0)
REPO = Path(__file__).resolve().parents[2]
#: Scratch folder for results shared by several test modules (trained models, scenes).
SHARED = Path(tempfile.mkdtemp(prefix="footprint-algorithm-tests-"))
atexit.register(shutil.rmtree, SHARED, True)
#: Quick training of the compact model on a synthetic scene (a few seconds on a CPU).
QUICK_TRAINING = {
    "ARCHITECTURE": "compact",
    "ENCODER": "none",
    "EPOCHS": 5,
    "TILE_SIZE": 64,
    "BATCH_SIZE": 8,
    "LR": 0.01,
    "SEED": 0,
    "SEPARATION": False,  # the synthetic scenes' buildings stand apart
}
_CACHE: dict[str, Any] = {}

Box = tuple[float, float, float, float]  # xmin, ymin, xmax, ymax in map units


@dataclass(frozen=True)
class Scene:
    """A synthetic raster and its building polygons."""

    raster: Path
    labels: Path
    boxes: list[Box]
    extent: Box
    epsg: int

    def mask_parameters(self, output: Path | str, **extra: Any) -> dict[str, Any]:
        """Parameters of ``footprint:rasterizelabels`` burning these labels into ``output``."""
        return {
            "INPUT": str(self.raster),
            "LABELS": str(self.labels),
            **extra,
            "OUTPUT": str(output),
        }


def _srs(epsg: int) -> osr.SpatialReference:
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return srs


def write_raster(
    path: Path,
    data: np.ndarray,
    epsg: int | None = UTM,
    origin: tuple[float, float] = ORIGIN,
    pixel: float = PIXEL,
) -> Path:
    """Write a (bands, rows, cols) array as a GeoTIFF; no CRS when ``epsg`` is None."""
    count, rows, cols = data.shape
    kind = gdal.GDT_Byte if data.dtype == np.uint8 else gdal.GDT_Float32
    ds = gdal.GetDriverByName("GTiff").Create(str(path), cols, rows, count, kind)
    ds.SetGeoTransform((origin[0], pixel, 0.0, origin[1], 0.0, -pixel))
    if epsg is not None:
        ds.SetProjection(_srs(epsg).ExportToWkt())
    for i in range(count):
        ds.GetRasterBand(i + 1).WriteArray(data[i])
    ds.FlushCache()
    ds = None
    return path


def write_boxes(path: Path, boxes: list[Box], epsg: int = UTM, to_epsg: int | None = None) -> Path:
    """Write rectangles (in ``epsg``) as a polygon GeoPackage, reprojected to ``to_epsg``."""
    target = _srs(to_epsg or epsg)
    transform = osr.CoordinateTransformation(_srs(epsg), target) if to_epsg else None
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    layer = ds.CreateLayer("buildings", target, ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("id", ogr.OFTInteger))
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        geom = ogr.CreateGeometryFromWkt(
            f"POLYGON(({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}))"
        )
        if transform is not None:
            geom.Transform(transform)
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetField("id", i)
        feature.SetGeometry(geom)
        layer.CreateFeature(feature)
    ds = None
    return path


def scene_array(size: int, seed: int) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """Noisy dark ground with bright roofs on a jittered grid; roofs as (row0, col0, rows, cols)."""
    rng = np.random.default_rng(seed)
    data = rng.normal(60, 12, (3, size, size))
    roofs = []
    for row in range(4, size - 24, 32):
        for col in range(4, size - 24, 32):
            r0, c0 = row + int(rng.integers(0, 6)), col + int(rng.integers(0, 6))
            h, w = int(rng.integers(10, 18)), int(rng.integers(10, 18))
            data[:, r0 : r0 + h, c0 : c0 + w] = rng.normal(200, 10, (3, h, w))
            roofs.append((r0, c0, h, w))
    return np.clip(data, 0, 255).astype(np.uint8), roofs


def make_scene(
    folder: Path,
    name: str = "scene",
    size: int = 128,
    seed: int = 0,
    origin: tuple[float, float] = ORIGIN,
    labels_epsg: int | None = None,
) -> Scene:
    """Write ``<name>.tif`` and ``<name>.gpkg`` (labels optionally in another CRS)."""
    data, roofs = scene_array(size, seed)
    raster = write_raster(folder / f"{name}.tif", data, origin=origin)
    x, y = origin
    boxes = [
        (x + c0 * PIXEL, y - (r0 + h) * PIXEL, x + (c0 + w) * PIXEL, y - r0 * PIXEL)
        for r0, c0, h, w in roofs
    ]
    labels = write_boxes(folder / f"{name}.gpkg", boxes, UTM, labels_epsg)
    extent = (x, y - size * PIXEL, x + size * PIXEL, y)
    return Scene(raster, labels, boxes, extent, UTM)


def feature_count(path: str | Path) -> int:
    """Number of features in the first layer of a vector file."""
    ds = ogr.Open(str(path))
    return int(ds.GetLayer(0).GetFeatureCount())


def layer_epsg(path: str | Path) -> int:
    """EPSG code of a vector file's first layer or of a raster."""
    ds = ogr.Open(str(path)) if Path(path).suffix in (".gpkg", ".geojson", ".shp") else None
    if ds is not None:
        srs = ds.GetLayer(0).GetSpatialRef().Clone()
    else:
        srs = osr.SpatialReference(wkt=gdal.Open(str(path)).GetProjection())
    srs.AutoIdentifyEPSG()
    return int(srs.GetAuthorityCode(None))


def vector_extent(path: str | Path) -> Box:
    """xmin, ymin, xmax, ymax of a vector file's first layer."""
    ds = ogr.Open(str(path))  # keep the dataset alive while its layer is used
    x0, x1, y0, y1 = ds.GetLayer(0).GetExtent()
    return (x0, y0, x1, y1)


def raster_info(path: str | Path) -> dict[str, Any]:
    """Size, band count, extent and first band's array of a raster."""
    ds = gdal.Open(str(path))
    x0, px, _, y1, _, py = ds.GetGeoTransform()
    cols, rows = ds.RasterXSize, ds.RasterYSize
    return {
        "size": (cols, rows),
        "bands": ds.RasterCount,
        "extent": (x0, y1 + rows * py, x0 + cols * px, y1),
        "array": ds.GetRasterBand(1).ReadAsArray(),
    }


def json_tail(text: str) -> Any:
    """The JSON document qgis_process printed (it may print warnings before it)."""
    start = text.find("{")
    if start < 0:
        return None
    try:
        return json.loads(text[start:])
    except json.JSONDecodeError:
        return None


def run(alg_id: str, parameters: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """``processing.run`` with a fresh feedback unless one is given."""
    import processing
    from qgis.core import QgsProcessingFeedback

    kwargs.setdefault("feedback", QgsProcessingFeedback())
    return dict(processing.run(alg_id, parameters, **kwargs))


def synthetic_scenes() -> tuple[Scene, Scene]:
    """A training scene and a disjoint test scene 100 m east (made once per session)."""
    if "scenes" not in _CACHE:
        folder = SHARED / "scenes"
        folder.mkdir()
        train = make_scene(folder, "train", seed=0)
        test = make_scene(folder, "test", seed=1, origin=(ORIGIN[0] + 100, ORIGIN[1]))
        _CACHE["scenes"] = (train, test)
    return _CACHE["scenes"]  # type: ignore[no-any-return]


def synthetic_model() -> dict[str, Any]:
    """``footprint:train`` results of a compact model trained on the training scene (once)."""
    if "model" not in _CACHE:
        train, _ = synthetic_scenes()
        parameters = {
            "RASTERS": [str(train.raster)],
            "LABELS": [str(train.labels)],
            **QUICK_TRAINING,
            "OUTPUT": str(SHARED / "model.pt"),
        }
        _CACHE["model"] = run("footprint:train", parameters)
    return _CACHE["model"]  # type: ignore[no-any-return]


#: The imagery of the local XYZ layers: Banepa, Nepal (27.6° N), UTM 45N, 0.5 m, 200 m a side.
UTM45N = 32645
XYZ_ORIGIN = (355_000.0, 3_057_000.0)
XYZ_PIXEL = 0.5
XYZ_SIZE = 400


def xyz_imagery() -> np.ndarray:
    """Red grows eastwards, green southwards, blue constant: a colour says where it is."""
    ramp = (np.arange(XYZ_SIZE) * 255 // (XYZ_SIZE - 1)).astype(np.uint8)
    red = np.tile(ramp, (XYZ_SIZE, 1))
    return np.stack([red, red.T, np.full_like(red, 128)])


def make_xyz_tiles(folder: Path) -> Path:
    """XYZ tiles (zoom 17-18, ~0.5 m pixels at zoom 18) of :func:`xyz_imagery`, written by
    gdal2tiles.py into ``folder/tiles`` (its GeoTIFF is ``folder/source.tif``); skips the test
    without gdal2tiles."""
    import pytest

    gdal2tiles = shutil.which("gdal2tiles.py") or shutil.which("gdal2tiles")
    if gdal2tiles is None:
        pytest.skip("gdal2tiles.py not found (Debian: gdal-bin)")
    source = write_raster(folder / "source.tif", xyz_imagery(), UTM45N, XYZ_ORIGIN, XYZ_PIXEL)
    subprocess.run(
        [gdal2tiles, "--xyz", "-z", "17-18", "-q", str(source), str(folder / "tiles")],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return folder / "tiles"


def xyz_uri(tiles: Path) -> str:
    """The data source of an XYZ layer (provider ``wms``) of the tiles in ``tiles``."""
    return f"type=xyz&url=file://{tiles}/{{z}}/{{x}}/{{y}}.png&zmax=18&zmin=0"
