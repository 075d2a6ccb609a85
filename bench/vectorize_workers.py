"""vectorize with 1, 2, ... threads cutting blocks, alternating, on one probability raster.

    .venv/bin/python bench/vectorize_workers.py PROBABILITY_TIF [--order 1,2,1,2,1,2]

The raster must hold building and separation probability (``detect --keep-probability`` or
``predict`` writes one). Each run prints its seconds and whether its polygons are exactly the
first run's; nothing is recorded (docs/BENCHMARKS.md quotes the output).
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

import engine.vectorize as vectorize_module  # noqa: E402
from engine.config import VectorizeConfig  # noqa: E402
from engine.events import NullProgress  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("raster")
    parser.add_argument("--order", default="1,2,1,2,1,2")
    args = parser.parse_args()
    first = None
    with tempfile.TemporaryDirectory() as tmp:
        for i, workers in enumerate(int(n) for n in args.order.split(",")):
            vectorize_module.spare_cores = lambda reserved, n=workers: n  # type: ignore[assignment]
            out = str(Path(tmp) / f"v{i}.gpkg")
            config = VectorizeConfig(args.raster, out, threshold=0.5, overwrite=True)
            start = time.perf_counter()
            result = vectorize_module.vectorize(config, NullProgress())
            seconds = time.perf_counter() - start
            wkb = shapely.to_wkb(gpd.read_file(out).geometry.values).tolist()
            first = first or wkb
            print(
                f"workers {workers}: {seconds:.2f} s, {result['buildings']} buildings,"
                f" same polygons as the first run: {wkb == first}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
