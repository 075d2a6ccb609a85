"""Fixtures: tiny generated GeoTIFFs and label layers, and the shared real data."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from affine import Affine
from shapely.geometry.base import BaseGeometry

#: Real imagery for end-to-end tests: FOOTPRINT_DATA, else ../shared/data beside the project.
DATA = Path(
    os.environ.get("FOOTPRINT_DATA", Path(__file__).resolve().parents[3] / "shared" / "data")
)

UTM = "EPSG:32616"
WGS84 = "EPSG:4326"


@pytest.fixture(autouse=True)
def fp32_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Precision ``auto`` means fp32 in tests on every CPU, in subprocesses and Dask workers
    too (bf16 on a CPU with AMX moves probabilities by ~1e-2): a verdict must not depend on
    the machine. Tests of the bf16 path ask for it, or unset the variable."""
    monkeypatch.setenv("FOOTPRINT_NO_BF16", "1")


@pytest.fixture
def shared_data() -> Path:
    """The shared real data folder; skips the test with a reason when it is absent."""
    if not (DATA / "banepa_2x2").is_dir():
        pytest.skip(f"real data not found at {DATA} (set FOOTPRINT_DATA to its folder)")
    return DATA


def write_raster(
    path: Path,
    data: np.ndarray,
    crs: str | None = UTM,
    transform: Affine | None = None,
    nodata: float | None = None,
) -> Path:
    """Write a (C, H, W) array as a GeoTIFF; default grid: 0.5 m pixels in UTM 16N."""
    if data.ndim == 2:
        data = data[None]
    count, height, width = data.shape
    if transform is None:
        transform = Affine(0.5, 0, 500_000.0, 0, -0.5, 3_700_000.0)
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": count,
        "dtype": str(data.dtype),
        "transform": transform,
        "nodata": nodata,
    }
    if crs is not None:
        profile["crs"] = crs
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def write_labels(path: Path, geoms: Sequence[BaseGeometry], crs: str | None = UTM) -> Path:
    """Write polygons to a vector file (driver from the extension)."""
    gpd.GeoDataFrame({"id": list(range(len(geoms)))}, geometry=list(geoms), crs=crs).to_file(path)
    return path


@pytest.fixture
def raster_factory(tmp_path: Path) -> Callable[..., Path]:
    """Make a GeoTIFF in tmp_path: ``raster_factory(name, data, crs=..., nodata=...)``."""

    def make(name: str, data: np.ndarray, **kwargs: object) -> Path:
        return write_raster(tmp_path / name, data, **kwargs)  # type: ignore[arg-type]

    return make


@pytest.fixture
def labels_factory(tmp_path: Path) -> Callable[..., Path]:
    """Make a vector file in tmp_path: ``labels_factory(name, geoms, crs=...)``."""

    def make(name: str, geoms: Sequence[BaseGeometry], **kwargs: object) -> Path:
        return write_labels(tmp_path / name, geoms, **kwargs)  # type: ignore[arg-type]

    return make
