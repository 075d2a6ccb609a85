"""Render a raster layer without a pixel grid of its own (XYZ/TMS, WMS/WMTS, ArcGIS
MapServer...) to a GeoTIFF the engine reads.

The layer is drawn over the requested extent at the model's ground resolution, in the UTM zone
of the extent's centre (Web Mercator "metres" are not metres on the ground), tile by tile
(:data:`TILE_PIXELS` a side) into a tiled GeoTIFF written block by block with GDAL: memory
does not grow with the extent. Tiles are downloaded before each tile is drawn (``RenderBlocking``:
no half-loaded XYZ tiles). The result is RGB plus an alpha band (transparent where the layer
draws nothing: the engine reads it as nodata). Before anything is downloaded the size is
checked against a limit, and servers whose terms forbid bulk downloading are refused.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from osgeo import gdal
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsCoordinateTransformContext,
    QgsMapRendererCustomPainterJob,
    QgsMapSettings,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingUtils,
    QgsRasterDataProvider,
    QgsRasterLayer,
    QgsRectangle,
)
from qgis.PyQt.QtCore import QSize, Qt
from qgis.PyQt.QtGui import QColor, QImage, QPainter

#: Pixels a side of one rendered tile (a multiple of :data:`BLOCK_PIXELS`).
TILE_PIXELS = 1024
#: Pixels a side of the GeoTIFF's blocks.
BLOCK_PIXELS = 256
#: Default size limit of a rendering, in megapixels.
DEFAULT_MAX_MPX = 400.0
#: Providers that draw at any scale (WMS/WMTS/XYZ, ArcGIS MapServer): their layers have no
#: pixel grid to copy. Other providers are drawn when they lack the Size capability.
WEB_PROVIDERS = ("wms", "arcgismapserver")
#: Servers whose terms forbid bulk downloading (part of the source URL -> whose policy).
#: QGIS's own "Convert map to raster" skips openstreetmap.org tile layers likewise.
FORBIDDEN_SERVERS = {
    "tile.openstreetmap.org": "the OpenStreetMap tile usage policy "
    "(https://operations.osmfoundation.org/policies/tiles/)",
    "tile.osm.org": "the OpenStreetMap tile usage policy "
    "(https://operations.osmfoundation.org/policies/tiles/)",
}
GTIFF_OPTIONS = [
    "TILED=YES",
    f"BLOCKXSIZE={BLOCK_PIXELS}",
    f"BLOCKYSIZE={BLOCK_PIXELS}",
    "COMPRESS=DEFLATE",
    "BIGTIFF=IF_SAFER",
    "PHOTOMETRIC=RGB",
    "ALPHA=YES",
]


@dataclass(frozen=True)
class RenderGrid:
    """Where a layer is drawn: CRS, extent (whole pixels) and pixel size."""

    crs: QgsCoordinateReferenceSystem
    extent: QgsRectangle
    resolution: float
    width: int
    height: int

    @property
    def megapixels(self) -> float:
        """Pixels in millions."""
        return self.width * self.height / 1e6

    @property
    def area_km2(self) -> float:
        """Ground area in km²."""
        return float(self.extent.width() * self.extent.height()) / 1e6

    def describe(self) -> str:
        """E.g. ``4000 x 3000 pixels (12.0 Mpx, 0.27 km² at 0.15 m, EPSG:32645)``."""
        return (
            f"{self.width} x {self.height} pixels ({self.megapixels:,.2f} Mpx,"
            f" {self.area_km2:.2f} km² at {self.resolution:g} m, {self.crs.authid()})"
        )


def needs_rendering(layer: QgsRasterLayer) -> bool:
    """True for a layer without a fixed pixel grid (a web map service): it is drawn, not copied."""
    provider = layer.dataProvider()
    if layer.providerType() in WEB_PROVIDERS or provider is None:
        return True
    return not provider.capabilities() & QgsRasterDataProvider.Size


def check_terms(layer: QgsRasterLayer) -> None:
    """Refuse a layer served by a server whose terms forbid bulk downloading."""
    source = layer.source().lower()
    for server, policy in FORBIDDEN_SERVERS.items():
        if server in source:
            raise QgsProcessingException(
                f"Raster layer '{layer.name()}' comes from {server}, whose terms forbid bulk"
                f" downloading ({policy}); QGIS's own Convert map to raster skips such layers"
                " too. Use imagery you may download (your own, or a provider that allows it)."
            )


def utm_crs(
    extent: QgsRectangle, crs: QgsCoordinateReferenceSystem, context: QgsCoordinateTransformContext
) -> QgsCoordinateReferenceSystem:
    """The WGS 84 / UTM zone CRS (EPSG:326xx north, 327xx south) of ``extent``'s centre."""
    wgs84 = QgsCoordinateReferenceSystem("EPSG:4326")
    centre = QgsCoordinateTransform(crs, wgs84, context).transform(extent.center())
    zone = min(max(int(math.floor((centre.x() + 180.0) / 6.0)) + 1, 1), 60)
    return QgsCoordinateReferenceSystem(f"EPSG:{(32600 if centre.y() >= 0 else 32700) + zone}")


def render_grid(
    extent: QgsRectangle,
    crs: QgsCoordinateReferenceSystem,
    resolution: float,
    context: QgsCoordinateTransformContext,
) -> RenderGrid:
    """The UTM grid of ``resolution`` metres covering ``extent`` (in ``crs``), in whole pixels."""
    utm = utm_crs(extent, crs, context)
    box = QgsCoordinateTransform(crs, utm, context).transformBoundingBox(extent)
    x0 = math.floor(box.xMinimum() / resolution) * resolution
    y0 = math.floor(box.yMinimum() / resolution) * resolution
    width = max(1, math.ceil(round((box.xMaximum() - x0) / resolution, 6)))
    height = max(1, math.ceil(round((box.yMaximum() - y0) / resolution, 6)))
    rect = QgsRectangle(x0, y0, x0 + width * resolution, y0 + height * resolution)
    return RenderGrid(utm, rect, resolution, width, height)


def check_size(grid: RenderGrid, max_mpx: float, name: str) -> None:
    """Refuse a grid of more than ``max_mpx`` megapixels (before anything is downloaded)."""
    if grid.megapixels > max_mpx:
        raise QgsProcessingException(
            f"Rendering raster layer '{name}' over this extent would make {grid.describe()},"
            f" more than the limit of {max_mpx:g} Mpx; choose a smaller extent, or raise the"
            " limit (Advanced: Largest rendering of a web layer) if the imagery provider's"
            " terms allow downloading that much."
        )


def _tiles(grid: RenderGrid, tile: int) -> Iterator[tuple[int, int, int, int]]:
    """Column, row, width and height of each tile, row by row."""
    for row in range(0, grid.height, tile):
        for col in range(0, grid.width, tile):
            yield col, row, min(tile, grid.width - col), min(tile, grid.height - row)


def _tile_settings(
    layer: QgsRasterLayer,
    grid: RenderGrid,
    window: tuple[int, int, int, int],
    context: QgsCoordinateTransformContext,
) -> QgsMapSettings:
    """Map settings drawing ``layer`` over one tile (column, row, width, height) of ``grid``."""
    col, row, width, height = window
    res, top = grid.resolution, grid.extent.yMaximum()
    x0 = grid.extent.xMinimum() + col * res
    rect = QgsRectangle(x0, top - (row + height) * res, x0 + width * res, top - row * res)
    settings = QgsMapSettings()
    settings.setLayers([layer])
    settings.setDestinationCrs(grid.crs)
    settings.setTransformContext(context)
    settings.setOutputSize(QSize(width, height))
    settings.setExtent(rect)
    settings.setBackgroundColor(QColor(0, 0, 0, 0))
    settings.setFlag(QgsMapSettings.RenderBlocking, True)  # tiles loaded before drawing
    settings.setFlag(QgsMapSettings.Antialiasing, True)
    return settings


def render_tile(settings: QgsMapSettings) -> np.ndarray:
    """Draw ``settings`` into an image; return it as (rows, cols, 4) RGBA uint8."""
    size = settings.outputSize()
    image = QImage(size, QImage.Format_ARGB32_Premultiplied)
    image.fill(Qt.transparent)
    painter = QPainter(image)
    job = QgsMapRendererCustomPainterJob(settings, painter)
    job.renderSynchronously()
    painter.end()
    image = image.convertToFormat(QImage.Format_RGBA8888)  # straight (not premultiplied)
    bits = image.constBits()
    bits.setsize(image.sizeInBytes())
    rows = np.frombuffer(bits, np.uint8).reshape(size.height(), image.bytesPerLine())
    return rows[:, : size.width() * 4].reshape(size.height(), size.width(), 4).copy()


def _create(path: str, grid: RenderGrid) -> gdal.Dataset:
    """An empty RGBA GeoTIFF on ``grid``."""
    driver = gdal.GetDriverByName("GTiff")
    ds = driver.Create(path, grid.width, grid.height, 4, gdal.GDT_Byte, GTIFF_OPTIONS)
    if ds is None:
        raise QgsProcessingException(
            f"Cannot create {path} ({gdal.GetLastErrorMsg()}); check free disk space in the"
            " Processing temporary folder."
        )
    ds.SetGeoTransform(
        (
            grid.extent.xMinimum(),
            grid.resolution,
            0.0,
            grid.extent.yMaximum(),
            0.0,
            -grid.resolution,
        )
    )
    ds.SetProjection(grid.crs.toWkt(QgsCoordinateReferenceSystem.WKT_PREFERRED_GDAL))
    return ds


def remove_partial(path: str) -> None:
    """Delete a half-written rendering and its side files."""
    for name in (path, path + ".aux.xml", path + ".ovr"):
        with contextlib.suppress(OSError):
            os.remove(name)


def render_layer(
    layer: QgsRasterLayer,
    grid: RenderGrid,
    path: str,
    context: QgsCoordinateTransformContext,
    feedback: QgsProcessingFeedback | None = None,
    tile: int | None = None,
) -> str:
    """Draw ``layer`` over ``grid`` into the GeoTIFF ``path``, tile by tile; return ``path``.

    Tiles are ``tile`` pixels a side (default :data:`TILE_PIXELS`). Progress goes to
    ``feedback``; a cancel stops between tiles and removes the file.

    Raises:
        QgsProcessingException: cancelled, or the file cannot be written (nothing is left).
    """
    feedback = feedback if feedback is not None else QgsProcessingFeedback()
    windows = list(_tiles(grid, tile or TILE_PIXELS))
    ds, done = None, False
    try:
        ds = _create(path, grid)
        for index, window in enumerate(windows):
            if feedback.isCanceled():
                raise QgsProcessingException(
                    f"Cancelled while rendering raster layer '{layer.name()}'; nothing was kept."
                )
            pixels = render_tile(_tile_settings(layer, grid, window, context))
            for band in range(4):
                ds.GetRasterBand(band + 1).WriteArray(pixels[:, :, band], window[0], window[1])
            feedback.setProgress(100.0 * (index + 1) / len(windows))
        ds.FlushCache()
        ds = None  # closes the file
        done = True
    except RuntimeError as err:  # GDAL with exceptions on: a write failed
        raise QgsProcessingException(
            f"Cannot write the rendering of raster layer '{layer.name()}' to {path} ({err});"
            " check free disk space in the Processing temporary folder."
        ) from None
    finally:
        if not done:
            ds = None
            remove_partial(path)
    return path


@dataclass(frozen=True)
class WebRendering:
    """How a run draws web layers: its extent parameter's rectangle (None: not given) in
    ``crs``, the parameter's label, the ground resolution (asked only when a layer is drawn)
    and the size limit in megapixels."""

    extent: QgsRectangle | None
    crs: QgsCoordinateReferenceSystem
    label: str
    resolution: Callable[[], float]
    max_mpx: float = DEFAULT_MAX_MPX


def render_web_layer(
    layer: QgsRasterLayer,
    web: WebRendering,
    context: QgsProcessingContext,
    feedback: QgsProcessingFeedback | None,
    file_name: str,
) -> str:
    """Draw the web layer ``layer`` over ``web``'s extent into a temporary GeoTIFF; return it.

    Checks the server's terms, the extent and the size before anything is downloaded.

    Raises:
        QgsProcessingException: a forbidden server, no extent, too large, cancelled, or the
            file cannot be written.
    """
    check_terms(layer)
    if web.extent is None or web.extent.isNull() or web.extent.isEmpty():
        raise QgsProcessingException(
            f"{web.label}: required for raster layer '{layer.name()}', a web map layer (XYZ,"
            " WMS...) without pixels of its own: set the extent to draw and detect in (e.g."
            " the map canvas extent)."
        )
    transforms = context.transformContext()
    crs = web.crs if web.crs.isValid() else layer.crs()  # an extent without a CRS: the layer's
    grid = render_grid(web.extent, crs, web.resolution(), transforms)
    check_size(grid, web.max_mpx, layer.name())
    path = QgsProcessingUtils.generateTempFilename(file_name)
    if feedback is not None:
        feedback.pushInfo(f"Rendering raster layer '{layer.name()}': {grid.describe()}, to {path}")
    copy = layer.clone()  # this thread's own copy of the layer (Processing runs in a thread)
    return render_layer(copy if copy is not None else layer, grid, path, transforms, feedback)
