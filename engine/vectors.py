"""Writing vector layers atomically, the OGR driver chosen by the file extension."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import geopandas as gpd

from engine.outputs import atomic_output

#: Extensions with an explicit driver; others are left to pyogrio to infer.
DRIVERS = {
    ".gpkg": "GPKG",
    ".geojson": "GeoJSON",
    ".json": "GeoJSON",
    ".shp": "ESRI Shapefile",
    ".fgb": "FlatGeobuf",
    ".sqlite": "SQLite",
}


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
    out = Path(output)
    driver = DRIVERS.get(out.suffix.lower(), "GPKG" if not out.suffix else None)
    kwargs: dict[str, Any] = {}
    if geometry_type:
        kwargs["geometry_type"] = geometry_type
    if driver in ("GPKG", "SQLite"):
        kwargs["layer"] = out.stem
    if driver == "GPKG":
        kwargs["dataset_options"] = {"VERSION": "1.2"}
    with atomic_output(out, overwrite) as tmp:
        frame.to_file(tmp, driver=driver, engine="pyogrio", **kwargs)
    return out.expanduser().absolute()
