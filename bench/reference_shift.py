"""How far each place's reference sits off its imagery, and what lining it up changes (issue 29).

    .venv/bin/python bench/reference_shift.py --model M.pt [--places banepa nairobi ...]
        [--zoom z20] [--max-shift-m 3] [--work DIR] [--out FILE.json]

For Banepa's test chips and each region's chips at one zoom: detect with the model (kept in
``--work``, reused when there), then ``evaluate`` as the starter records do (inside the chips'
footprint, 0.15 m pixels), once with the reference where it is and once with
``--max-shift-m`` (the reference moved by the whole-pixel shift that best matches the
predicted buildings' pixels). Prints the shift found and pixel IoU and building F1 both ways,
with 95% bootstrap intervals over the chips (z19 chips for the regions, as the starter records).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import geopandas as gpd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from make_starter_model import (  # noqa: E402
    BANEPA_TEST,
    PLACES,
    REGIONS,
    RESOLUTION_M,
    hardware,
    prepare,
)

from bench.accuracy import DATA, chip_spread  # noqa: E402
from engine.config import DetectConfig, EvaluateConfig  # noqa: E402
from engine.detect import detect  # noqa: E402
from engine.evaluate import evaluate  # noqa: E402
from engine.events import NullProgress  # noqa: E402
from engine.geo.rasters import resolve_raster  # noqa: E402

KEYS = ("pixel_iou", "object_precision", "object_recall", "object_f1", "merges", "splits")


def detections(model: Path, place: str, zoom: str, work: Path) -> tuple[Path, Path, Path, Path]:
    """Buildings detected on the place's chips (reused when there), its labels, the area
    scored (the chips' footprint; Banepa: the probability raster) and the chips that give
    the intervals."""
    if place == "banepa":
        chips = DATA / BANEPA_TEST
        out = work / f"{model.stem}_banepa_test"
    else:
        chips = DATA / "regions" / place / zoom
        out = work / f"{model.stem}_{place}_{zoom}"
    buildings, prob = out / "buildings.gpkg", out / "probability.tif"
    if not buildings.is_file():
        out.mkdir(parents=True, exist_ok=True)
        raster = resolve_raster(str(chips), workdir=str(work))
        config = DetectConfig(
            raster, str(model), str(buildings), keep_probability=str(prob), overwrite=True
        )
        detect(config, NullProgress())
    labels = DATA / PLACES[place][1]
    if place == "banepa":
        return buildings, labels, prob, chips
    return buildings, labels, prepare(place, work)[1], DATA / "regions" / place / "z19"


def moved_labels(labels: Path, shift: dict[str, Any], crs: str, out: Path) -> Path:
    """The labels moved by the shift evaluate found (in its working CRS), for the intervals."""
    frame = gpd.read_file(labels).to_crs(crs)
    frame["geometry"] = frame.translate(shift["east_m"], shift["north_m"])
    frame.to_file(out)
    return out


def place_scores(
    model: Path, place: str, zoom: str, max_shift_m: float, work: Path
) -> dict[str, Any]:
    """Scores where the reference is and lined up, with their intervals."""
    buildings, labels, area, chips = detections(model, place, zoom, work)
    row: dict[str, Any] = {}
    for name, shift in (("as_is", 0.0), ("lined_up", max_shift_m)):
        config = EvaluateConfig(
            str(buildings), str(labels), area=str(area), resolution=RESOLUTION_M, max_shift_m=shift
        )
        s = evaluate(config, NullProgress())
        reference = labels
        if s["reference_shift"] is not None:
            row["shift"] = s["reference_shift"]
            reference = moved_labels(
                labels, s["reference_shift"], s["working_crs"], buildings.with_name("moved.gpkg")
            )
        row[name] = {
            "scores": {k: s[k] for k in KEYS},
            "spread": chip_spread(str(buildings), str(reference), chips),
        }
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--places", nargs="+", default=["banepa", *REGIONS])
    parser.add_argument("--zoom", default="z20", choices=["z19", "z20", "z21"])
    parser.add_argument("--max-shift-m", type=float, default=3.0)
    parser.add_argument("--work", type=Path, default=ROOT / "out" / "starter")
    parser.add_argument("--out", type=Path, default=None, help="Write every score as JSON.")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    rows = {}
    for place in args.places:
        row = place_scores(args.model, place, args.zoom, args.max_shift_m, args.work)
        rows[place] = row
        shift = row["shift"]
        a, b = row["as_is"], row["lined_up"]
        print(
            f"{place} {'test' if place == 'banepa' else args.zoom}: reference moved"
            f" {shift['east_m']:+.2f} m east, {shift['north_m']:+.2f} m north; pixel IoU"
            f" {a['scores']['pixel_iou']:.3f} -> {b['scores']['pixel_iou']:.3f}, building F1"
            f" {a['scores']['object_f1']:.3f} {_ci(a)} -> {b['scores']['object_f1']:.3f} {_ci(b)}",
            flush=True,
        )
    if args.out:
        record = {
            "command": "python bench/reference_shift.py " + " ".join(sys.argv[1:]),
            "model": str(args.model),
            "zoom": args.zoom,
            "max_shift_m": args.max_shift_m,
            "places": rows,
            "hardware": hardware(),
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=1, default=str) + "\n", encoding="utf-8")
    return 0


def _ci(row: dict[str, Any]) -> str:
    spread = row["spread"]
    if not spread:
        return ""
    low, high = spread["object_f1"]
    return f"({low:.3f}-{high:.3f})"


if __name__ == "__main__":
    raise SystemExit(main())
