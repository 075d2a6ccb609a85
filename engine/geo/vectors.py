"""Writing vector layers atomically, the OGR driver chosen by the file extension."""

from __future__ import annotations

import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import pyogrio
import shapely

from engine.errors import OutputError
from engine.geo.outputs import atomic_output

#: What reading a vector layer raises when the file is damaged, incomplete or not vector data
#: (OGR's errors; GEOS's for geometries that cannot be built, e.g. a ring whose bytes were
#: changed so that it no longer closes).
VECTOR_READ_ERRORS: tuple[type[BaseException], ...] = (
    pyogrio.errors.DataSourceError,
    pyogrio.errors.DataLayerError,
    pyogrio.errors.FieldError,
    pyogrio.errors.GeometryError,
    shapely.errors.GEOSException,
    UnicodeDecodeError,
    OSError,
)

#: What to tell a user whose vector file cannot be read.
DAMAGED_LAYER_HINT = (
    "If it is one, the file may be damaged or incomplete (a broken download or copy?): copy it"
    " again, or open it in QGIS to check it."
)

#: The vector formats Footprint writes, by file extension (a name without one: GeoPackage).
DRIVERS = {
    ".gpkg": "GPKG",
    ".geojson": "GeoJSON",
    ".json": "GeoJSON",
    ".shp": "ESRI Shapefile",
    ".fgb": "FlatGeobuf",
    ".sqlite": "SQLite",
}


def vector_driver(out: str | Path) -> str:
    """The OGR driver that writes the vector output ``out``, from its extension.

    Raises:
        OutputError: an extension of no vector format Footprint writes (``.txt`` would make
            GDAL's VDV driver write a folder of hidden files, ``.tif`` is a raster): the user
            is told which extensions to use.
    """
    path = Path(out)
    if not path.suffix:
        return "GPKG"
    driver = DRIVERS.get(path.suffix.lower())
    if driver is None:
        raise OutputError(
            f"Output {path} has the extension {path.suffix}, of no vector format Footprint"
            f" writes; name it {_as_geopackage(path)} (GeoPackage, the usual choice) or give it"
            " .shp, .geojson, .fgb or .sqlite."
        )
    return driver


def _as_geopackage(path: Path) -> str:
    """The name to suggest for ``path`` as a GeoPackage: ``o.txt`` -> ``o.gpkg``,
    ``o.gpkg.zip`` -> ``o.gpkg``, ``roofs_v1.2`` -> ``roofs_v1.2.gpkg``."""
    stem = Path(path.stem)
    if stem.suffix.lower() == ".gpkg":
        return stem.name
    return f"{path.stem}.gpkg" if path.suffix[1:].isalpha() else f"{path.name}.gpkg"


def _options(out: Path) -> tuple[str, dict[str, Any]]:
    """The OGR driver for ``out`` and the creation keywords for pyogrio."""
    driver = vector_driver(out)
    kwargs: dict[str, Any] = {}
    if driver in ("GPKG", "SQLite"):
        kwargs["layer"] = out.stem
    if driver == "GPKG":
        kwargs["dataset_options"] = {"VERSION": "1.2"}
    return driver, kwargs


class VectorWriter:
    """Write a layer batch by batch, atomically: ``output`` appears only when the ``with``
    block ends without error; an error or cancel leaves nothing (and an existing file as it was).

    GeoPackages are appended to on disk batch by batch, so memory holds one batch; other
    formats collect the batches and write once at the end. The first batch fixes the schema
    (an empty frame still writes it).
    """

    def __init__(
        self, output: str | Path, overwrite: bool = False, geometry_type: str | None = None
    ) -> None:
        self.output = Path(output)
        self.overwrite = overwrite
        self.driver, self.kwargs = _options(self.output)
        if geometry_type:
            self.kwargs["geometry_type"] = geometry_type
        self.features = 0
        self._pending: list[gpd.GeoDataFrame] = []
        self._written = False
        self._stack = ExitStack()
        self._tmp: Path | None = None

    def __enter__(self) -> VectorWriter:
        self._tmp = self._stack.enter_context(atomic_output(self.output, self.overwrite))
        return self

    def write(self, frame: gpd.GeoDataFrame) -> None:
        """Add ``frame``'s features (the same columns and CRS every time)."""
        self.features += len(frame)
        if self.driver != "GPKG":
            self._pending.append(frame)
        elif not self._written:
            self._to_file(frame, "w")
        elif len(frame):
            self._to_file(frame, "a")

    def _to_file(self, frame: gpd.GeoDataFrame, mode: str) -> None:
        assert self._tmp is not None, "use VectorWriter in a with block"
        kwargs = dict(self.kwargs)
        if mode == "a":
            kwargs.pop("dataset_options", None)
        frame.to_file(self._tmp, driver=self.driver, engine="pyogrio", mode=mode, **kwargs)
        self._written = True

    def __exit__(self, kind: Any, error: Any, trace: Any) -> None:
        try:
            if kind is None and self._pending:
                self._to_file(pd.concat(self._pending, ignore_index=True), "w")
        except BaseException:
            self._stack.__exit__(*sys.exc_info())
            raise
        self._stack.__exit__(kind, error, trace)

    @property
    def path(self) -> Path:
        """The output's absolute path."""
        return self.output.expanduser().absolute()


def write_vector(
    frame: gpd.GeoDataFrame,
    output: str | Path,
    overwrite: bool = False,
    geometry_type: str | None = None,
) -> Path:
    """Write ``frame`` atomically to ``output``; return its absolute path.

    GeoPackage (also for a name without extension) gets a layer named after the file stem and
    GeoPackage version 1.2, which older GDALs (QGIS 3.22 on Debian 12: GDAL 3.6) read without
    warnings. An empty frame still gets its schema and CRS.
    """
    with VectorWriter(output, overwrite, geometry_type) as writer:
        writer.write(frame)
    return writer.path
