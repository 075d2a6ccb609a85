"""Squared outlines against traced ones and minimum rectangles, on real places.

    .venv/bin/python bench/squaring.py [--models /work/runs/starter] [--out out/squaring]

For Banepa's test chips (the shipped starter model) and each region's z20 chips (the model
that never saw it, ``<models>/loro_<region>-8ep.pt``), detect three ways:

- **off**: the traced outlines (coverage-simplified, as detect writes them by default);
- **rectangles**: each building replaced by its minimum rotated rectangle shrunk to its area
  when it fills 85% of it (what ``--regularize`` did before), applied to the off outlines;
- **squared**: ``--regularize`` (engine/polygons/square.py).

and measure: building F1 at IoU 0.5 with its 95% interval over chips, mean IoU of matched
buildings, the share of corners within 10 degrees of 90 (and the reference's), vertices per
building (and the reference's), and neighbours (buildings closer than 0.5 m): pairs that
overlap (count, m²) and pairs apart with a sliver between them (count, m² of the gap closed
by a 0.25 m buffer). Records go to docs/benchmarks/squaring/<place>.json and the table to
docs/BENCHMARKS.md between the ``squaring`` markers; the picture to
docs/images/squaring.png.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import geopandas as gpd  # noqa: E402
import numpy as np  # noqa: E402
import shapely  # noqa: E402
from make_starter_model import (  # noqa: E402
    BANEPA_TEST,
    DATA,
    PLACES,
    REGIONS,
    SHIPPED,
    _relative,
    chip_spread,
    hardware,
    log,
    prepare,
    scores,
)
from shapely import affinity  # noqa: E402
from shapely.geometry import Polygon  # noqa: E402

from engine.geo.rasters import resolve_raster  # noqa: E402

RECORDS = ROOT / "docs" / "benchmarks" / "squaring"
BENCHMARKS = ROOT / "docs" / "BENCHMARKS.md"
PICTURE = ROOT / "docs" / "images" / "squaring.png"
START, END = "<!-- squaring:start -->", "<!-- squaring:end -->"
MODES = ("off", "rectangles", "squared")
#: Buildings closer than this (metres) are neighbours.
NEIGHBOUR_M = 0.5


def rectangle(geom: Polygon, fill: float = 0.85) -> Polygon:
    """The old ``--regularize``: the minimum rotated rectangle shrunk to the building's area,
    when the building fills ``fill`` of it (projected CRS: square pixels on the ground)."""
    rect = shapely.minimum_rotated_rectangle(geom)
    if not isinstance(rect, Polygon) or rect.area <= 0 or geom.area / rect.area < fill:
        return geom
    shrink = math.sqrt(geom.area / rect.area)
    return affinity.scale(rect, shrink, shrink, origin=rect.centroid)


def corner_angles(geoms: gpd.GeoSeries) -> np.ndarray:
    """Every exterior corner's angle in degrees."""
    out = []
    for g in geoms:
        for poly in getattr(g, "geoms", [g]):
            xy = np.asarray(poly.exterior.coords)[:-1]
            if len(xy) < 3:
                continue
            a, b = np.roll(xy, 1, axis=0) - xy, np.roll(xy, -1, axis=0) - xy
            norm = np.hypot(*a.T) * np.hypot(*b.T)
            ok = norm > 0
            cos = (a * b).sum(1)[ok] / norm[ok]
            out.append(np.degrees(np.arccos(np.clip(cos, -1, 1))))
    return np.concatenate(out) if out else np.empty(0)


def shape_stats(geoms: gpd.GeoSeries) -> dict[str, float]:
    """Share of corners within 10 degrees of 90 and vertices per building."""
    angles = corner_angles(geoms)
    vertices = [len(p.exterior.coords) - 1 for g in geoms for p in getattr(g, "geoms", [g])]
    return {
        "right_corners": float((np.abs(angles - 90) <= 10).mean()) if len(angles) else 0.0,
        "vertices_per_building": float(np.mean(vertices)) if vertices else 0.0,
    }


def neighbours(geoms: gpd.GeoSeries) -> dict[str, float]:
    """Neighbour pairs (closer than NEIGHBOUR_M): how many, how many overlap (and m²), how
    many are apart with a gap (and m² of the gap a 0.25 m closing fills)."""
    arr = np.asarray(geoms.values, dtype=object)
    tree = shapely.STRtree(arr)
    left, right = tree.query(arr, predicate="dwithin", distance=NEIGHBOUR_M)
    pairs = [(i, j) for i, j in zip(left.tolist(), right.tolist(), strict=True) if i < j]
    overlaps = gaps = 0
    overlap_m2 = gap_m2 = 0.0
    for i, j in pairs:
        a, b = arr[i], arr[j]
        shared = shapely.intersection(a, b).area
        if shared > 1e-4:
            overlaps += 1
            overlap_m2 += shared
        elif shapely.distance(a, b) > 1e-6:
            gaps += 1
            both = shapely.union(a, b)
            gap_m2 += both.buffer(0.25, join_style="mitre").buffer(-0.25, join_style="mitre").area
            gap_m2 -= both.area
    return {
        "neighbour_pairs": len(pairs),
        "overlapping_pairs": overlaps,
        "overlap_m2": overlap_m2,
        "gapped_pairs": gaps,
        "gap_m2": max(gap_m2, 0.0),
    }


def place_inputs(place: str, models: Path, work: Path) -> tuple[str, Path, Path | None, Path]:
    """Raster, model, scoring area and chips (for intervals) of a place."""
    if place == "banepa":
        test = resolve_raster(str(DATA / BANEPA_TEST), workdir=str(work))
        return test, SHIPPED, None, DATA / BANEPA_TEST
    _, area = prepare(place, models)
    raster = resolve_raster(str(DATA / "regions" / place / "z20"), workdir=str(work))
    return raster, models / f"loro_{place}-8ep.pt", area, DATA / "regions" / place / "z19"


def run_place(place: str, args: argparse.Namespace) -> dict[str, Any]:
    """The three modes on one place."""
    work = (args.out / place).absolute()
    work.mkdir(parents=True, exist_ok=True)
    raster, model, area, chips = place_inputs(place, args.models.absolute(), work)
    labels = DATA / PLACES[place][1]
    record: dict[str, Any] = {"place": place, "model": _relative(str(model)), "raster": raster}
    for mode in ("off", "squared"):
        log(f"{place}: detect, {mode}")
        out = work / mode
        record[mode] = scores(raster, model, labels, area, chips, out, regularize=mode == "squared")
        record[mode]["buildings"] = str(out / "buildings.gpkg")
    # rectangles: the old squaring applied to the off outlines (in the raster's projected CRS)
    off = gpd.read_file(record["off"]["buildings"])
    utm = off.estimate_utm_crs()
    rect = off.to_crs(utm)
    rect["geometry"] = [rectangle(g) for g in rect.geometry]
    rect_path = work / "rectangles.gpkg"
    rect.to_crs(off.crs).to_file(rect_path)
    from engine.config import EvaluateConfig
    from engine.evaluate import evaluate
    from engine.events import NullProgress

    s = evaluate(
        EvaluateConfig(
            str(rect_path), str(labels), area=str(area or work / "off" / "probability.tif")
        ),
        NullProgress(),
    )
    keys = ("pixel_iou", "object_precision", "object_recall", "object_f1", "mean_iou_matched")
    record["rectangles"] = {
        "scores": {
            **{k: s[k] for k in (*keys, "merges", "splits") if k in s},
            "mean_iou_matched": s["object"]["mean_iou_matched"],
        },
        "spread": chip_spread(str(rect_path), str(labels), chips),
        "buildings": str(rect_path),
    }
    reference = gpd.read_file(labels).to_crs(utm)
    clip = gpd.read_file(area).to_crs(utm).union_all() if area else None
    if clip is None:
        import rasterio

        with rasterio.open(raster) as src:
            bounds = gpd.GeoSeries([shapely.box(*src.bounds)], crs=src.crs).to_crs(utm)
        clip = bounds.iloc[0]
    reference = reference[reference.within(clip)]
    record["reference"] = shape_stats(reference.geometry)
    for mode in MODES:
        layer = gpd.read_file(record[mode]["buildings"]).to_crs(utm)
        record[mode].update(shape_stats(layer.geometry), **neighbours(layer.geometry))
        record[mode]["count"] = len(layer)
    record["command"] = "python bench/squaring.py " + shlex.join(sys.argv[1:])
    record["hardware"] = hardware()
    return record


def markdown() -> str:
    """The squaring table from the records."""
    lines = [
        START,
        "",
        "| place | outlines | buildings | bldg F1 (95% interval) | mean IoU matched |"
        " corners 90±10° (reference) | vertices / bldg (reference) | neighbour pairs:"
        " overlapping (m²) | apart with a gap (m²) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for path in sorted(RECORDS.glob("*.json")):
        r = json.loads(path.read_text())
        ref = r["reference"]
        for mode in MODES:
            m = r[mode]
            s, spread = m["scores"], (m.get("spread") or {}).get("object_f1")
            interval = f" ({spread[0]:.3f}-{spread[1]:.3f})" if spread else ""
            lines.append(
                f"| {r['place']} | {mode} | {m['count']} | {s['object_f1']:.3f}{interval} |"
                f" {s.get('mean_iou_matched', float('nan')):.3f} |"
                f" {m['right_corners']:.2f} ({ref['right_corners']:.2f}) |"
                f" {m['vertices_per_building']:.1f} ({ref['vertices_per_building']:.1f}) |"
                f" {m['neighbour_pairs']}: {m['overlapping_pairs']} ({m['overlap_m2']:.1f}) |"
                f" {m['gapped_pairs']} ({m['gap_m2']:.2f}) |"
            )
    lines += ["", f"![traced, rectangles, squared](images/{PICTURE.name})", "", END]
    return "\n".join(lines)


def picture(record: dict[str, Any], source: str) -> None:
    """The three modes side by side over the imagery of the 40 m square with most buildings."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import rasterio
    from rasterio.windows import from_bounds

    layers = {m: gpd.read_file(record[m]["buildings"]) for m in MODES}
    utm = layers["off"].estimate_utm_crs()
    centres = layers["off"].to_crs(utm).geometry.centroid
    best, count = None, -1
    for c in centres.sample(min(len(centres), 300), random_state=0):
        box = shapely.box(c.x - 20, c.y - 20, c.x + 20, c.y + 20)
        n = int(centres.within(box).sum())
        if n > count:
            best, count = box, n
    assert best is not None
    with rasterio.open(source) as src:
        b = gpd.GeoSeries([best], crs=utm).to_crs(src.crs).total_bounds
        img = src.read([1, 2, 3], window=from_bounds(*b, src.transform), boundless=True)
        geographic = src.crs.is_geographic
    frame = shapely.box(*b)
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.3))
    for ax, mode in zip(axes, MODES, strict=True):
        ax.imshow(np.moveaxis(img, 0, -1), extent=(b[0], b[2], b[1], b[3]))
        layer = layers[mode].to_crs(src.crs)
        layer[layer.intersects(frame)].boundary.plot(ax=ax, color="orange", linewidth=1.2)
        ax.set_xlim(b[0], b[2])
        ax.set_ylim(b[1], b[3])
        if geographic:
            ax.set_aspect(1 / math.cos(math.radians((b[1] + b[3]) / 2)))
        ax.set_title(mode)
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(PICTURE, dpi=90)


def main() -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--places", nargs="*", default=["banepa", *REGIONS])
    parser.add_argument("--models", type=Path, default=ROOT / "out" / "starter")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "squaring")
    parser.add_argument("--docs-only", action="store_true")
    args = parser.parse_args()
    RECORDS.mkdir(parents=True, exist_ok=True)
    if not args.docs_only:
        for place in args.places:
            record = run_place(place, args)
            if place == "banepa":
                picture(record, record["raster"])
            (RECORDS / f"{place}.json").write_text(json.dumps(record, indent=1, default=str))
            f1 = {m: round(record[m]["scores"]["object_f1"], 3) for m in MODES}
            log(f"{place}: building F1 {f1}")
    text = BENCHMARKS.read_text(encoding="utf-8")
    if START in text:
        before, rest = text.split(START, 1)
        BENCHMARKS.write_text(before + markdown() + rest.split(END, 1)[1], encoding="utf-8")
    else:
        print(markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
