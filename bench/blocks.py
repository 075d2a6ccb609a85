"""Blocks vs whole raster: how many building polygons change when seeds + watershed run block
by block with a halo instead of on the whole raster at once.

    .venv/bin/python bench/blocks.py MODEL [--blocks 256 512] [--tag NAME]

Predicts the Banepa test mosaic (2048 x 2048 px) with MODEL (a model with a separation class,
e.g. one kept by ``bench/accuracy.py --keep-model``), then vectorizes the probability with
the model's seed settings in one window (the whole raster) and in blocks of each given size
(with the halo ``detect`` uses), and counts the polygons of each run that have no identical
polygon in the other (after normalising) and those without a partner at IoU >= 0.99. Prints
the figures and appends them to docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import geopandas as gpd
import shapely

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.accuracy import DATA, DATASETS, _hardware, append_record  # noqa: E402
from engine.config import PredictConfig, VectorizeConfig  # noqa: E402
from engine.events import NullProgress  # noqa: E402
from engine.geo.rasters import ground_resolution_m, open_raster, resolve_raster  # noqa: E402
from engine.models.modelfile import read_spec  # noqa: E402
from engine.polygons.blocks import halo_pixels  # noqa: E402
from engine.predict import predict  # noqa: E402
from engine.scoring.metrics import match_objects  # noqa: E402
from engine.vectorize import vectorize  # noqa: E402


def differing(a: gpd.GeoSeries, b: gpd.GeoSeries) -> tuple[int, int]:
    """Polygons of ``a`` with no identical polygon in ``b``, and without a partner at IoU
    >= 0.99."""
    keys_a = shapely.to_wkb(shapely.normalize(a.values)).tolist()
    keys_b = set(shapely.to_wkb(shapely.normalize(b.values)).tolist())
    exact = sum(k not in keys_b for k in keys_a)
    close = len(a) - match_objects(a.values, b.values, 0.99).tp
    return exact, close


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model")
    parser.add_argument("--blocks", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--tag", default="banepa")
    args = parser.parse_args()
    spec = read_spec(args.model)
    if "separation" not in spec.classes:
        raise SystemExit(f"{args.model} has no separation class ({spec.classes}).")
    seeds = {
        "threshold": spec.threshold,
        "seed_threshold": spec.seed_threshold,
        "seed_erosion_m": spec.seed_erosion_m,
        "min_seed_m2": spec.min_seed_m2,
    }
    lines = [f"### blocks vs whole raster: {args.tag} ({time.strftime('%Y-%m-%d')})", ""]
    lines += [f"- command: `python bench/blocks.py {' '.join(sys.argv[1:])}`"]
    lines += [f"- hardware: {_hardware()}", f"- model settings: `{seeds}`", ""]
    with tempfile.TemporaryDirectory(prefix="footprint-blocks-") as tmp:
        work = Path(tmp)
        raster = resolve_raster(str(DATA / DATASETS["banepa"].test), workdir=tmp)
        prob = work / "p.tif"
        predict(PredictConfig(raster, args.model, str(prob)), NullProgress())
        with open_raster(str(prob)) as src:
            size, pixel = max(src.width, src.height), ground_resolution_m(src)
        runs: dict[int, gpd.GeoSeries] = {}
        seconds: dict[int, float] = {}
        for window in [size, *args.blocks]:
            out = work / f"v{window}.gpkg"
            start = time.monotonic()
            config = VectorizeConfig(str(prob), str(out), window_size=window, simplify=0.0, **seeds)
            vectorize(config, NullProgress())
            seconds[window] = time.monotonic() - start
            runs[window] = gpd.read_file(out).geometry
        whole = runs[size]
        lines += [
            "| blocks | halo px | polygons | not identical | no partner at IoU 0.99 | s |",
            "| --- | --- | --- | --- | --- | --- |",
            f"| whole ({size} px) | - | {len(whole)} | - | - | {seconds[size]:.1f} |",
        ]
        for window in args.blocks:
            got = runs[window]
            exact_a, close_a = differing(got, whole)
            exact_b, close_b = differing(whole, got)
            lines.append(
                f"| {window} | {halo_pixels(pixel, window)} | {len(got)} |"
                f" {exact_a} + {exact_b} ({100 * (exact_a + exact_b) / max(1, len(whole)):.2f}%)"
                f" | {close_a} + {close_b} | {seconds[window]:.1f} |"
            )
    lines += [
        "",
        "Not identical: polygons of the block run with no identical polygon in the whole run,"
        " plus the reverse.",
        "",
    ]
    append_record("\n".join(lines))


if __name__ == "__main__":
    main()
