"""Coverage simplification: one GEOS call for all buildings against a call per group of
touching buildings (what ``detect`` does), and how each depends on the order of the buildings.

    .venv/bin/python bench/simplify.py MODEL [--side 4096] [--tolerance 1] [--tag NAME]

On a ``--side`` raster made from the Banepa test mosaic (as ``bench/scale.py`` makes it) it
runs ``detect`` with MODEL and ``--simplify 0``, takes the buildings back to pixel coordinates
(where the tolerance is, in pixels) and simplifies them as a coverage both ways, each on the
buildings in their order and shuffled. Prints the times, the share of buildings that come out
the same, and appends the figures to docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import shapely

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.accuracy import _hardware, append_record  # noqa: E402
from bench.scale import make_raster, resolve_test_mosaic  # noqa: E402
from engine.config import DetectConfig  # noqa: E402
from engine.detect import detect  # noqa: E402
from engine.events import NullProgress  # noqa: E402
from engine.polygons.shapes import canonical_polygons, simplify_coverage  # noqa: E402


def one_call(geoms: np.ndarray, tolerance: float) -> np.ndarray:
    """All buildings in one GEOS coverage simplification (as before per-group calls)."""
    out = shapely.coverage_simplify(shapely.segmentize(geoms, 1.0), tolerance)
    return np.asarray(shapely.normalize(out), dtype=object)


def pixel_polygons(layer: Path, raster: Path) -> np.ndarray:
    """The layer's polygons in pixel coordinates of ``raster``, in canonical form."""
    with rasterio.open(raster) as src:
        t = ~src.transform
    geoms = gpd.read_file(layer).geometry.values

    def move(xy: np.ndarray) -> np.ndarray:
        x, y = xy[:, 0], xy[:, 1]
        return np.column_stack([t.a * x + t.b * y + t.c, t.d * x + t.e * y + t.f])

    moved = shapely.set_precision(shapely.transform(geoms, move), 1e-6)
    return canonical_polygons(moved)


def same_share(a: np.ndarray, b: np.ndarray) -> float:
    """Share of positions where ``a`` and ``b`` hold the same polygon."""
    return float(np.mean(shapely.equals_exact(a, b, 1e-9)))


def timed(call: Callable[[], np.ndarray]) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    out = call()
    return out, time.perf_counter() - start


def main() -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--side", type=int, default=4096)
    parser.add_argument("--tolerance", type=float, default=1.0)
    parser.add_argument("--tag", default="cpu")
    args = parser.parse_args()
    (ROOT / "out").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="footprint-simplify-", dir=ROOT / "out") as tmp:
        work = Path(tmp)
        raster, layer = work / "scene.tif", work / "raw.gpkg"
        make_raster(raster, args.side, resolve_test_mosaic(work))
        config = DetectConfig(str(raster), str(args.model), str(layer), simplify=0.0)
        detect(config, NullProgress())
        geoms = pixel_polygons(layer, raster)
    order = np.random.default_rng(0).permutation(len(geoms))
    back = np.argsort(order)
    tol = args.tolerance
    one, one_s = timed(lambda: one_call(geoms, tol))
    groups, groups_s = timed(lambda: simplify_coverage(geoms, tol))
    one_shuffled = one_call(geoms[order], tol)[back]
    groups_shuffled = simplify_coverage(geoms[order], tol)[back]
    vertices = int(shapely.get_num_coordinates(geoms).sum())
    text = "\n".join(
        [
            f"### simplify: {args.tag} ({time.strftime('%Y-%m-%d')})",
            "",
            f"- command: `python bench/simplify.py {' '.join(sys.argv[1:])}`",
            f"- hardware: {_hardware()}",
            f"- {len(geoms)} buildings ({vertices} vertices) detected with --simplify 0 on a"
            f" {args.side}-px raster; coverage simplification at {tol:g} px",
            "",
            "| simplification | seconds | same as one call | same after shuffling |",
            "| --- | --- | --- | --- |",
            f"| one call for all buildings | {one_s:.2f} | 100% |"
            f" {same_share(one, one_shuffled):.1%} |",
            f"| a call per group of touching buildings, fixed order | {groups_s:.2f} |"
            f" {same_share(one, groups):.1%} | {same_share(groups, groups_shuffled):.1%} |",
            "",
        ]
    )
    append_record(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
