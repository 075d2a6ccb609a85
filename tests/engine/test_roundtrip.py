"""Labels -> rasterize-labels -> vectorize gives the same buildings back (counts and areas)."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
from affine import Affine
from shapely.geometry import Polygon, box

from engine.config import RasterizeConfig, VectorizeConfig
from engine.events import NullProgress
from engine.rasterize import rasterize_labels
from engine.vectorize import vectorize
from tests.engine.conftest import UTM, WGS84, write_labels, write_raster

ORIGIN_UTM = (500_000.0, 3_700_000.0)


def _buildings() -> list[Polygon]:
    x0, y0 = ORIGIN_UTM
    shapes = [
        box(x0 + 5 + 12 * i, y0 - 20 - 9 * j, x0 + 13 + 12 * i, y0 - 14 - 9 * j)
        for i in range(5)
        for j in range(3)
    ]
    shapes.append(
        Polygon(
            [
                (x0 + 5, y0 - 60),
                (x0 + 25, y0 - 60),
                (x0 + 25, y0 - 54),
                (x0 + 12, y0 - 54),
                (x0 + 12, y0 - 46),
                (x0 + 5, y0 - 46),
            ]
        )
    )
    return shapes


@pytest.mark.parametrize(
    ("crs", "dtype", "nodata"), [(UTM, "uint8", None), (WGS84, "uint16", 0), (UTM, "uint16", 0)]
)
def test_rasterize_then_vectorize_round_trips(
    tmp_path: Path, crs: str, dtype: str, nodata: float | None
) -> None:
    truth = gpd.GeoSeries(_buildings(), crs=UTM)
    labels = write_labels(tmp_path / "labels.gpkg", list(truth.to_crs(WGS84)), crs=WGS84)
    if crs == UTM:
        transform = Affine(0.25, 0, ORIGIN_UTM[0], 0, -0.25, ORIGIN_UTM[1])
    else:
        left, top = truth.to_crs(WGS84).total_bounds[[0, 3]]
        transform = Affine(2.6e-6, 0, left - 2e-5, 0, -2.3e-6, top + 2e-5)
    data = np.full((1, 300, 360), 100, dtype=dtype)
    raster = write_raster(tmp_path / "image.tif", data, crs=crs, transform=transform, nodata=nodata)
    mask = tmp_path / "mask.tif"
    rasterize_labels(
        RasterizeConfig(str(raster), (str(labels),), str(mask), window_size=64), NullProgress()
    )
    out = tmp_path / "buildings.gpkg"
    result = vectorize(
        VectorizeConfig(str(mask), str(out), simplify=0.0, min_area_m2=1.0, window_size=64),
        NullProgress(),
    )
    assert result["buildings"] == len(truth)
    found = gpd.read_file(out).to_crs(UTM)
    pixel = max(abs(transform.a), abs(transform.e)) * (111_000 if crs == WGS84 else 1)
    matched = 0
    for geom in truth:
        candidates = found[found.intersects(geom)]
        assert len(candidates) == 1, "each building comes back as exactly one polygon"
        got = candidates.iloc[0]
        # within one pixel along the perimeter
        assert abs(got.geometry.area - geom.area) <= geom.length * pixel
        assert abs(got["area_m2"] - geom.area) <= geom.length * pixel
        matched += 1
    assert matched == len(found)
