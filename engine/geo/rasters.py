"""Opening and reading georeferenced rasters window by window with rasterio.

Handles GeoTIFF, VRT mosaics, and JPEG chips georeferenced by a ``.aux.xml`` sidecar. Nothing
here reads a whole band: every read is one window.
"""

from __future__ import annotations

import glob
import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
import rasterio
from affine import Affine
from rasterio._err import CPLE_BaseError
from rasterio.enums import ColorInterp, Resampling
from rasterio.io import DatasetReader
from rasterio.windows import Window

from engine.errors import ConfigError, RasterError
from engine.geo.ground import metres_per_unit_xy
from engine.geo.outputs import Input
from engine.geo.temporary import make_scratch
from engine.geo.windows import window_bounds


@dataclass(frozen=True)
class RasterInfo:
    """What the engine needs to know about a raster's grid and bands."""

    path: str
    width: int
    height: int
    count: int
    dtype: str
    crs_wkt: str
    transform: tuple[float, float, float, float, float, float]
    nodata: float | None
    is_geographic: bool

    @property
    def affine(self) -> Affine:
        """The geotransform as an Affine."""
        return Affine(*self.transform)


#: What GDAL raises through rasterio when reading fails: damaged or incomplete data (GDAL's
#: messages about binary garbage may not even decode as text).
READ_ERRORS: tuple[type[BaseException], ...] = (
    rasterio.errors.RasterioError,
    CPLE_BaseError,
    UnicodeDecodeError,
)


def gdal_detail(exc: BaseException) -> str:
    """GDAL's own words for a failure (rasterio's "See previous exception" points to them)."""
    text = str(exc)
    cause = exc.__cause__ or exc.__context__
    if "previous exception" in text and cause is not None:
        text = str(cause)
    return text.strip().rstrip(".") or type(exc).__name__


def damaged_file_message(name: str, where: str, exc: BaseException) -> str:
    """The error for data that cannot be read from ``name``: what, where, likely cause, fix."""
    return (
        f"Cannot read {where} of {name} ({gdal_detail(exc)}). The file is damaged or"
        f" incomplete (a broken download or copy?): copy it again, or check it with"
        f" gdalinfo -checksum {name}"
    )


def source_name(src: Any) -> str:
    """The file behind a dataset (a WarpedVRT's source file, not its VRT text)."""
    inner = getattr(src, "src_dataset", None)
    return str(getattr(inner, "name", None) or getattr(src, "name", "the raster"))


@contextmanager
def reading(src: Any, window: Window | None = None) -> Iterator[None]:
    """Turn a read failure of ``src`` (in ``window``) into a :class:`RasterError` that names
    the file, the window and the fix."""
    try:
        yield
    except READ_ERRORS as exc:
        where = "the pixels"
        if window is not None:
            where = (
                f"the window of {int(window.width)} x {int(window.height)} px at column"
                f" {int(window.col_off)}, row {int(window.row_off)}"
            )
        raise RasterError(damaged_file_message(source_name(src), where, exc)) from exc


def open_raster(path: str | os.PathLike[str]) -> DatasetReader:
    """Open a raster for reading, checking that it exists, is a raster and is georeferenced.

    Raises:
        RasterError: the file is missing, not a raster GDAL can read, or has no CRS or
            geotransform.
    """
    p = Path(path)
    if not p.exists():
        raise RasterError(f"Raster {p} does not exist; check the path.")
    if p.is_dir():
        raise RasterError(f"Raster {p} is a folder; give a raster file (or use resolve_raster).")
    try:
        src = rasterio.open(p)
    except READ_ERRORS as exc:
        raise RasterError(
            f"{p} is not a raster that GDAL can read ({gdal_detail(exc)}); give a GeoTIFF, VRT"
            " or a JPEG/PNG with a world file or .aux.xml georeference (if it is one, the file"
            f" may be damaged or incomplete: copy it again, or check it with gdalinfo {p})."
        ) from exc
    try:
        check_georeferenced(src)
    except RasterError:
        src.close()
        raise
    return src


def check_georeferenced(src: DatasetReader) -> None:
    """Raise RasterError when ``src`` lacks a CRS or a geotransform."""
    if src.crs is None:
        hint = " (its .aux.xml sidecar is missing or has no SRS?)" if _is_plain_image(src) else ""
        raise RasterError(
            f"Raster {src.name} has no coordinate reference system{hint}; assign one, e.g."
            " `gdal_edit.py -a_srs EPSG:XXXX file.tif`, or in QGIS with Assign Projection."
        )
    if src.transform == Affine.identity() and not src.gcps[0]:
        raise RasterError(
            f"Raster {src.name} has no georeference (identity geotransform); georeference it or"
            " add a world file / .aux.xml sidecar."
        )
    t = src.transform
    if not all(math.isfinite(v) for v in (t.a, t.b, t.c, t.d, t.e, t.f)) or 0 in (t.a, t.e):
        raise RasterError(
            f"Raster {src.name} has an unusable georeference: pixel size {t.a!r} x {t.e!r},"
            f" origin ({t.c!r}, {t.f!r}); pixel sizes must be finite and not zero. Fix its"
            " geotransform (world file, .aux.xml or VRT <GeoTransform>), e.g. with"
            f" `gdal_edit.py -a_ullr <ulx> <uly> <lrx> <lry> {src.name}`."
        )
    if t.b != 0 or t.d != 0:
        raise RasterError(
            f"Raster {src.name} is rotated or sheared; warp it to a north-up grid first, e.g."
            f" `gdalwarp -overwrite {src.name} north-up.tif`."
        )


def raster_bounds(src: DatasetReader) -> tuple[float, float, float, float]:
    """(xmin, ymin, xmax, ymax) of ``src``, north-up or south-up (rasterio's ``bounds`` has
    bottom > top on a south-up grid)."""
    return window_bounds(Window(0, 0, src.width, src.height), src.transform)


def _is_plain_image(src: DatasetReader) -> bool:
    return src.driver in {"JPEG", "PNG", "GIF", "BMP"}


def describe(src: DatasetReader) -> RasterInfo:
    """A frozen summary of ``src``'s grid."""
    t = src.transform
    return RasterInfo(
        path=str(src.name),
        width=src.width,
        height=src.height,
        count=src.count,
        dtype=str(src.dtypes[0]),
        crs_wkt=src.crs.to_wkt(),
        transform=(t.a, t.b, t.c, t.d, t.e, t.f),
        nodata=None if src.nodata is None else float(src.nodata),
        is_geographic=bool(src.crs.is_geographic),
    )


def default_bands(src: DatasetReader) -> tuple[int, ...]:
    """All bands except alpha bands, 1-based, in order."""
    bands = tuple(i + 1 for i, ci in enumerate(src.colorinterp) if ci != ColorInterp.alpha)
    return bands or tuple(range(1, src.count + 1))


def select_bands(src: DatasetReader, bands: Sequence[int] | None) -> tuple[int, ...]:
    """Validate 1-based band numbers, or return the defaults when ``bands`` is None/empty."""
    if not bands:
        return default_bands(src)
    bad = [b for b in bands if b < 1 or b > src.count]
    if bad:
        raise ConfigError(
            f"Band(s) {bad} do not exist in {src.name}, which has {src.count} band(s);"
            f" choose from 1 to {src.count}."
        )
    return tuple(int(b) for b in bands)


def read_window(
    src: DatasetReader,
    window: Window,
    bands: Sequence[int],
    out_shape: tuple[int, int] | None = None,
    resampling: Resampling = Resampling.bilinear,
) -> tuple[np.ndarray, np.ndarray]:
    """Read ``bands`` of ``window`` as float32 (C, H, W) plus a bool validity mask (H, W).

    Windows may extend past the raster: the outside is read as invalid (zeros). A pixel is
    invalid when it is nodata (or masked) or not finite (NaN, Inf) in any selected band.
    ``out_shape`` resamples while reading.
    """
    shape = out_shape or (int(window.height), int(window.width))
    # Boundless reads go through a temporary VRT (about 100x slower): only when needed.
    boundless = not _inside(window, src.width, src.height)
    with reading(src, window):
        return _read_window(src, window, bands, shape, boundless, resampling)


def _read_window(
    src: DatasetReader,
    window: Window,
    bands: Sequence[int],
    shape: tuple[int, int],
    boundless: bool,
    resampling: Resampling,
) -> tuple[np.ndarray, np.ndarray]:
    data = src.read(
        list(bands),
        window=window,
        out_shape=(len(bands), *shape),
        boundless=boundless,
        fill_value=0,
        resampling=resampling,
        masked=False,
    ).astype(np.float32, copy=False)
    masks = src.read_masks(
        list(bands),
        window=window,
        out_shape=(len(bands), *shape),
        boundless=boundless,
        resampling=Resampling.nearest,
    )
    return data, valid_pixels(data, masks)


def valid_pixels(data: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Pixels valid in every band of ``data`` (C, H, W): not masked (``masks`` (C, H, W), 0 =
    nodata) and finite. NaN and Inf are never data, whatever the raster's nodata value says.
    ``data`` is zeroed in place where invalid."""
    valid: np.ndarray = np.all(masks > 0, axis=0)
    valid &= np.all(np.isfinite(data), axis=0)
    if not valid.all():  # most windows are whole: no copy through a boolean index then
        data[:, ~valid] = 0.0
    return valid


def _inside(window: Window, width: int, height: int) -> bool:
    return bool(
        window.col_off >= 0
        and window.row_off >= 0
        and window.col_off + window.width <= width
        and window.row_off + window.height <= height
    )


def pixel_size_m(src: DatasetReader) -> tuple[float, float]:
    """Ground size of one pixel in metres (x, y), at the raster's centre for geographic CRSs
    and for projections that stretch the ground there (Web Mercator: :mod:`engine.geo.ground`)."""
    rx, ry = abs(src.transform.a), abs(src.transform.e)
    centre_x = (src.bounds.left + src.bounds.right) / 2
    centre_y = (src.bounds.top + src.bounds.bottom) / 2
    if src.crs.is_geographic:
        lat = math.radians(centre_y)
        metres_per_degree = 111_320.0
        return rx * metres_per_degree * math.cos(lat), ry * 110_574.0
    along_x, along_y = metres_per_unit_xy(src.crs, centre_x, centre_y)
    return rx * along_x, ry * along_y


def ground_resolution_m(src: DatasetReader) -> float:
    """Mean ground size of a pixel side in metres."""
    x, y = pixel_size_m(src)
    return (x + y) / 2


# ---------------------------------------------------------------- mosaics of many files

RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".jpg", ".jpeg", ".png", ".img", ".jp2")


def list_rasters(path: str | os.PathLike[str]) -> list[str]:
    """Raster files named by ``path``: a file, a folder (searched recursively) or a glob."""
    text = str(path)
    if any(ch in text for ch in "*?["):
        files = sorted(glob.glob(text, recursive=True))
    elif Path(text).is_dir():
        files = sorted(
            str(p)
            for p in Path(text).rglob("*")
            if p.is_file() and p.suffix.lower() in RASTER_SUFFIXES
        )
    else:
        return [text]
    if not files:
        raise RasterError(f"No raster files found in {text}; give a raster, a folder or a glob.")
    return files


def raster_inputs(item: str | os.PathLike[str] | None, role: str = "input raster") -> list[Input]:
    """The files a raster input reads: the file, each file of a folder or glob, and the
    source files of every VRT among them (none when ``item`` lists nothing: the command
    reports that itself)."""
    if not item:
        return []
    text = str(item)
    try:
        files = list_rasters(text)
    except RasterError:
        return []
    found = []
    for f in files:
        what = f"the {role} {f}" if files == [text] else f"{f}, a file of the {role} {text}"
        found.append(Input(f, what))
        found += vrt_sources(f)
    return found


def vrt_sources(path: str, seen: frozenset[str] = frozenset()) -> list[Input]:
    """The files a VRT reads (as GDAL lists them), nested VRTs included; none for other files
    or a VRT that does not open."""
    if not path.lower().endswith(".vrt") or path in seen or not os.path.isfile(path):
        return []
    try:
        with rasterio.open(path) as src:
            files = [f for f in src.files if os.path.abspath(f) != os.path.abspath(path)]
    except READ_ERRORS:
        return []
    found = []
    for f in files:
        found.append(Input(f, f"{f}, a source file of the VRT {path}"))
        found += vrt_sources(f, seen | {path})
    return found


def resolve_raster(
    paths: str | os.PathLike[str] | Sequence[str], workdir: str | None = None
) -> str:
    """One raster path for ``paths``: the file itself, or a VRT mosaic of several files.

    A folder or glob, or a list of several files, becomes a VRT written in ``workdir`` (by
    default a scratch folder removed when the command ends). The files must share CRS, band
    count, data type and pixel size.
    """
    items = [str(paths)] if isinstance(paths, (str, os.PathLike)) else [str(p) for p in paths]
    files = [f for item in items for f in list_rasters(item)]
    if len(files) == 1:
        return files[0]
    folder = workdir or make_scratch("vrt")
    out = Path(folder) / "mosaic.vrt"
    out.write_text(build_vrt_xml(files))
    return str(out)


def build_vrt_xml(files: Sequence[str]) -> str:
    """VRT XML mosaicking ``files`` (same CRS, bands, dtype and pixel size) side by side."""
    infos = []
    for f in files:
        with open_raster(f) as src:
            infos.append(describe(src))
    first = infos[0]
    for info in infos[1:]:
        if info.count != first.count or info.dtype != first.dtype:
            raise RasterError(
                f"Cannot mosaic {info.path} with {first.path}: band count or data type differ;"
                " mosaic rasters of the same kind only."
            )
        if not rasterio.crs.CRS.from_wkt(info.crs_wkt) == rasterio.crs.CRS.from_wkt(first.crs_wkt):
            raise RasterError(
                f"Cannot mosaic {info.path} with {first.path}: different CRS; reproject first."
            )
        if np.sign(info.transform[4]) != np.sign(first.transform[4]):
            raise RasterError(
                f"Cannot mosaic {info.path} with {first.path}: one is north-up, the other"
                " south-up; make them all north-up first, e.g."
                f" `gdalwarp -overwrite {info.path} north-up.tif`."
            )
        if not np.allclose(
            [info.transform[0], info.transform[4]],
            [first.transform[0], first.transform[4]],
            rtol=1e-3,
        ):
            raise RasterError(
                f"Cannot mosaic {info.path} with {first.path}: different pixel sizes;"
                " resample them to one resolution first."
            )
    rx, ry = first.transform[0], first.transform[4]
    left, width = _mosaic_axis([i.transform[2] for i in infos], [i.width for i in infos], rx)
    top, height = _mosaic_axis([i.transform[5] for i in infos], [i.height for i in infos], ry)
    lines = [
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">',
        f"  <SRS>{escape(first.crs_wkt)}</SRS>",
        f"  <GeoTransform>{left!r}, {rx!r}, 0, {top!r}, 0, {ry!r}</GeoTransform>",
    ]
    for band in range(1, first.count + 1):
        vrt_type = _vrt_dtype(first.dtype)
        lines.append(f'  <VRTRasterBand dataType="{vrt_type}" band="{band}">')
        if first.nodata is not None:
            lines.append(f"    <NoDataValue>{first.nodata!r}</NoDataValue>")
        for info in infos:
            xoff = int(round((info.transform[2] - left) / rx))
            yoff = int(round((info.transform[5] - top) / ry))
            lines += [
                "    <ComplexSource>" if first.nodata is not None else "    <SimpleSource>",
                f'      <SourceFilename relativeToVRT="0">{escape(os.path.abspath(info.path))}'
                "</SourceFilename>",
                f"      <SourceBand>{band}</SourceBand>",
                f'      <SrcRect xOff="0" yOff="0" xSize="{info.width}" ySize="{info.height}"/>',
                f'      <DstRect xOff="{xoff}" yOff="{yoff}" xSize="{info.width}"'
                f' ySize="{info.height}"/>',
            ]
            if first.nodata is not None:
                lines.append(f"      <NODATA>{first.nodata!r}</NODATA>")
            lines.append(
                "    </ComplexSource>" if first.nodata is not None else "    </SimpleSource>"
            )
        lines.append("  </VRTRasterBand>")
    lines.append("</VRTDataset>")
    return "\n".join(lines) + "\n"


def _mosaic_axis(starts: Sequence[float], sizes: Sequence[int], step: float) -> tuple[float, int]:
    """A mosaic's origin and size in pixels along one axis, from its rasters' origins and sizes
    in ``step``-wide pixels: the origin is the first edge in the pixels' direction (the top of
    north-up rasters, the bottom of south-up ones)."""
    edges = [*starts, *(start + size * step for start, size in zip(starts, sizes, strict=True))]
    low, high = min(edges), max(edges)
    return (low if step > 0 else high), int(round((high - low) / abs(step)))


def _vrt_dtype(dtype: str) -> str:
    names = {
        "uint8": "Byte",
        "int8": "Int8",
        "uint16": "UInt16",
        "int16": "Int16",
        "uint32": "UInt32",
        "int32": "Int32",
        "float32": "Float32",
        "float64": "Float64",
    }
    if dtype not in names:
        raise RasterError(f"Data type {dtype} is not supported; convert to uint8/16 or float32.")
    return names[dtype]
