"""The generated example scene and the PNG preview."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
from PIL import Image

from tools.example import make_example
from tools.preview import render_preview


def test_example_scene_layout_labels_and_imagery(tmp_path: Path) -> None:
    folder = make_example(tmp_path / "ex", columns=3, rows=2, seed=1)
    train = sorted((folder / "train" / "oam").glob("*.tif"))
    test = sorted((folder / "test" / "oam").glob("*.tif"))
    assert len(train) == 4 and len(test) == 2
    labels = gpd.read_file(folder / "labels" / "buildings.geojson")
    assert labels.crs.to_epsg() == 4326 and len(labels) > 10
    with rasterio.open(train[0]) as src:
        assert src.crs.to_epsg() == 32645 and src.count == 3 and src.res == (0.25, 0.25)
        image = src.read()
        from rasterio.features import rasterize

        inside = rasterize(labels.to_crs(src.crs).geometry, src.shape, transform=src.transform)
    roofs, ground = image[:, inside == 1], image[:, inside == 0]
    # roofs differ clearly from the ground: the scene is learnable
    assert np.abs(roofs.mean(axis=1) - ground.mean(axis=1)).max() > 30


def test_preview_draws_outlines_over_the_imagery(tmp_path: Path) -> None:
    folder = make_example(tmp_path / "ex", columns=2, rows=1)
    labels = folder / "labels" / "buildings.geojson"
    out = render_preview(
        str(folder / "train" / "oam"),
        str(labels),
        str(tmp_path / "p.png"),
        reference=str(labels),
        max_side=300,
    )
    picture = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert max(picture.shape[:2]) <= 300
    orange = (picture[..., 0] > 200) & (picture[..., 1] < 120) & (picture[..., 2] < 80)
    assert orange.mean() > 0.001, "predicted outlines are drawn"
