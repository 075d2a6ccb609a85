"""A small synthetic example scene, for trying Footprint where no real imagery is at hand.

``python -m tools.example OUT_FOLDER`` writes the same layout as the Banepa example:
``train/oam/*.tif`` and ``test/oam/*.tif`` (RGB GeoTIFF chips, UTM 45N, 0.25 m pixels) and
``labels/buildings.geojson`` (the buildings' footprints, in EPSG:4326 as real labels often are).
Roofs are rotated rectangles and L-shapes of varied colour with a shadow, on textured ground
and trees; some buildings touch.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
from affine import Affine
from rasterio.features import rasterize
from shapely import affinity
from shapely.geometry import Polygon, box

CRS = "EPSG:32645"
PIXEL = 0.25
CHIP = 256
ORIGIN = (330_000.0, 3_060_000.0)
ROOF_COLOURS = np.array(
    [[200, 60, 50], [60, 110, 200], [210, 210, 200], [150, 150, 150], [190, 140, 90]], float
)


def _building(rng: np.random.Generator, x: float, y: float) -> Polygon:
    """One footprint near (x, y) metres: a rotated rectangle or an L-shape."""
    w, h = rng.uniform(5, 12), rng.uniform(5, 10)
    shape = box(x, y, x + w, y + h)
    if rng.random() < 0.3:
        shape = shape.difference(box(x + w * 0.55, y + h * 0.5, x + w + 1, y + h + 1))
    return affinity.rotate(shape, rng.uniform(-30, 30), origin="centroid")


def _buildings(rng: np.random.Generator, width_m: float, height_m: float) -> list[Polygon]:
    """Buildings on a jittered grid: blocks of two or three sharing walls, some alone."""
    out: list[Polygon] = []
    for gy in np.arange(4, height_m - 14, 17.0):
        for gx in np.arange(4, width_m - 26, 28.0):
            if rng.random() < 0.2:
                continue
            x, y = gx + rng.uniform(0, 4), gy + rng.uniform(0, 4)
            first = _building(rng, x, y)
            out.append(first)
            if rng.random() < 0.4:  # a neighbour sharing a wall
                minx, miny, maxx, maxy = first.bounds
                out.append(box(maxx, miny, maxx + rng.uniform(5, 9), miny + (maxy - miny) * 0.8))
    return out


def _image(
    rng: np.random.Generator, shapes: list[Polygon], transform: Affine, size: tuple[int, int]
) -> np.ndarray:
    """RGB uint8 image: ground texture, roads, trees, shadows and roofs."""
    height, width = size
    ground = np.array([110, 105, 80], float)[:, None, None]
    img = ground + rng.normal(0, 12, (3, height, width))
    for _ in range(int(width * height / 6000)):  # trees
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(4, 12)
        yy, xx = np.ogrid[:height, :width]
        img[:, (xx - cx) ** 2 + (yy - cy) ** 2 < r**2] = np.array([50, 90, 40])[:, None]
    for shape, _ in shapes:
        shadow = affinity.translate(shape, 1.0, -1.0)
        m = rasterize([shadow], (height, width), transform=transform).astype(bool)
        img[:, m] *= 0.45
    for shape, colour in shapes:
        m = rasterize([shape], (height, width), transform=transform).astype(bool)
        img[:, m] = colour[:, None] + rng.normal(0, 6, (3, int(m.sum())))
    return np.clip(img, 0, 255).astype(np.uint8)


def _write_chip(path: Path, data: np.ndarray, transform: Affine) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "GTiff",
        "width": data.shape[2],
        "height": data.shape[1],
        "count": 3,
        "dtype": "uint8",
        "crs": CRS,
        "transform": transform,
        "compress": "deflate",
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)


def make_example(folder: str | Path, columns: int = 6, rows: int = 4, seed: int = 0) -> Path:
    """Write the example scene into ``folder``; the last third of the columns is the test part."""
    rng = np.random.default_rng(seed)
    out = Path(folder)
    size_m = CHIP * PIXEL
    width_m, height_m = columns * size_m, rows * size_m
    local = _buildings(rng, width_m, height_m)
    # scene coordinates: metres east/north of the top-left corner, y growing downwards
    shapes = [affinity.affine_transform(s, [1, 0, 0, -1, ORIGIN[0], ORIGIN[1]]) for s in local]
    colours = ROOF_COLOURS[rng.integers(len(ROOF_COLOURS), size=len(shapes))]
    colours += rng.normal(0, 10, colours.shape)
    test_from = columns - max(1, columns // 3)
    for r in range(rows):
        for c in range(columns):
            t = Affine(PIXEL, 0, ORIGIN[0] + c * size_m, 0, -PIXEL, ORIGIN[1] - r * size_m)
            chip = box(t.c, t.f - size_m, t.c + size_m, t.f)
            near = [(s, k) for s, k in zip(shapes, colours, strict=True) if s.intersects(chip)]
            part = "test" if c >= test_from else "train"
            _write_chip(
                out / part / "oam" / f"chip-{c}-{r}.tif", _image(rng, near, t, (CHIP, CHIP)), t
            )
    labels = gpd.GeoDataFrame({"building": ["yes"] * len(shapes)}, geometry=shapes, crs=CRS)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    labels.to_crs("EPSG:4326").to_file(out / "labels" / "buildings.geojson", driver="GeoJSON")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(prog="python -m tools.example", description=__doc__)
    parser.add_argument("folder", help="Folder to write the example into.")
    parser.add_argument("--seed", type=int, default=0, help="Random seed.")
    args = parser.parse_args(argv)
    print(make_example(args.folder, seed=args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
