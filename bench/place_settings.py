"""On a place left out: test-time augmentation, and seed settings chosen on the place itself.

    .venv/bin/python bench/place_settings.py MODEL.pt REGION [--no-tta] [--out FILE.json]

``MODEL`` is a leave-one-out model of ``scripts/make_starter_model.py`` that never saw
``REGION`` (zanzibar, nairobi or catanduanes). On the region's z20 and z21 chips, scored as
that script scores them (inside the z20 chips' footprint, intervals over the z19 chips):

- detect with the model's settings, and with ``--tta`` (8 flips and rotations averaged);
- the probability of the first vectorized with every seed setting of train's grid at the
  model's building threshold; the setting best on one zoom's chips (the place's own labels)
  is then scored on the other zoom's, against the model's settings and the best there.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "bench"))

import make_starter_model as starter  # noqa: E402

from engine.config import EvaluateConfig, VectorizeConfig  # noqa: E402
from engine.evaluate import evaluate  # noqa: E402
from engine.events import NullProgress  # noqa: E402
from engine.models.modelfile import read_spec  # noqa: E402
from engine.training.postprocess import EROSIONS, MIN_SEEDS, SEEDS  # noqa: E402
from engine.vectorize import vectorize  # noqa: E402

ZOOMS = ("z20", "z21")
GRID = list(itertools.product(SEEDS, EROSIONS, MIN_SEEDS))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("region", choices=("zanzibar", "nairobi", "catanduanes"))
    parser.add_argument("--out", type=Path, default=None, help="Write every score as JSON.")
    parser.add_argument("--no-tta", action="store_true", help="Skip the detect with --tta.")
    args = parser.parse_args()
    spec = read_spec(args.model)
    labels = starter.DATA / starter.PLACES[args.region][1]
    z19 = starter.DATA / "regions" / args.region / "z19"
    record: dict[str, Any] = {"detect": {}, "grid": {}}
    with tempfile.TemporaryDirectory(prefix="footprint-place-") as tmp:
        work = Path(tmp)
        _, area = starter.prepare(args.region, work)
        for zoom in ZOOMS:
            chips = starter.DATA / "regions" / args.region / zoom
            raster = starter.resolve_raster(str(chips), workdir=str(work))
            for tta in (False,) if args.no_tta else (False, True):
                out = work / f"{zoom}-{tta}"
                found = starter.scores(raster, args.model, labels, area, z19, out, tta=tta)
                record["detect"][f"{zoom} tta={tta}"] = found
                s, spread = found["scores"], found["spread"]
                print(
                    f"{zoom} {'tta' if tta else 'plain'}: building F1 {s['object_f1']:.3f}"
                    f" {spread and spread['object_f1']}, pixel IoU {s['pixel_iou']:.3f},"
                    f" merges / splits {s['merges']} / {s['splits']},"
                    f" detect {found['detect_s']:.1f} s",
                    flush=True,
                )
            prob, polygons = work / f"{zoom}-False" / "probability.tif", work / "grid.gpkg"
            for seed, erosion, smallest in GRID:
                config = VectorizeConfig(
                    str(prob),
                    str(polygons),
                    overwrite=True,
                    threshold=spec.threshold,
                    seed_threshold=seed,
                    seed_erosion_m=erosion,
                    min_seed_m2=smallest,
                )
                vectorize(config, NullProgress())
                s = evaluate(
                    EvaluateConfig(
                        str(polygons), str(labels), area=str(area), resolution=starter.RESOLUTION_M
                    ),
                    NullProgress(),
                )
                record["grid"][f"{zoom} {seed} {erosion} {smallest}"] = s["object_f1"]
    for pick, test in (ZOOMS, ZOOMS[::-1]):
        f1 = record["grid"]
        best = max(GRID, key=lambda g: f1[f"{pick} {g[0]} {g[1]} {g[2]}"])
        oracle = max(v for k, v in f1.items() if k.startswith(test))
        own = record["detect"][f"{test} tta=False"]["scores"]["object_f1"]
        print(
            f"settings chosen on {pick} {best}: {test} building F1"
            f" {f1[f'{test} {best[0]} {best[1]} {best[2]}']:.3f}, the model's {own:.3f},"
            f" the best of the grid there {oracle:.3f}"
        )
    if args.out:
        args.out.write_text(json.dumps(record, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
