"""Which score threshold marks the buildings a corrector should check first.

    .venv/bin/python bench/low_confidence.py BUILDINGS REFERENCE AREA [--thresholds ...]

For detected ``BUILDINGS`` (with detect's ``score``: mean building probability) and the
``REFERENCE`` buildings, inside the polygons of ``AREA``: a detection is right when it matches
a reference building at IoU >= 0.5. For each threshold, prints the share of buildings marked
low confidence (score below it), the share of wrong ones among the marked and the unmarked,
and the share of right ones marked (the corrector's wasted checks).
"""

from __future__ import annotations

import argparse

import geopandas as gpd
import numpy as np
import shapely


def best_iou(predicted: gpd.GeoSeries, reference: gpd.GeoSeries) -> np.ndarray:
    """For each predicted polygon, its highest IoU with a reference polygon."""
    tree = shapely.STRtree(reference.to_numpy())
    out = np.zeros(len(predicted))
    for i, geom in enumerate(predicted.to_numpy()):
        for j in tree.query(geom, predicate="intersects"):
            other = reference.iloc[int(j)]
            out[i] = max(out[i], geom.intersection(other).area / geom.union(other).area)
    return out


def main() -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("buildings")
    parser.add_argument("reference")
    parser.add_argument("area")
    parser.add_argument("--thresholds", type=float, nargs="*", default=[0.6, 0.65, 0.7, 0.75, 0.8])
    args = parser.parse_args()
    predicted = gpd.read_file(args.buildings)
    area = gpd.read_file(args.area).to_crs(predicted.crs).union_all()
    reference = gpd.read_file(args.reference).to_crs(predicted.crs)
    predicted = predicted[predicted.intersects(area)]
    reference = reference[reference.intersects(area)]
    right = best_iou(predicted.geometry, reference.geometry) >= 0.5
    score = predicted["score"].to_numpy()
    print(f"{len(predicted)} buildings detected, {int(right.sum())} right (IoU >= 0.5)")
    print(
        "| score below | marked | wrong among marked | wrong among unmarked | right ones marked |"
    )
    print("| --- | --- | --- | --- | --- |")
    for t in args.thresholds:
        low = score < t
        marked_wrong = float((~right[low]).mean()) if low.any() else 0.0
        unmarked_wrong = float((~right[~low]).mean()) if (~low).any() else 0.0
        right_marked = float(low[right].mean()) if right.any() else 0.0
        print(
            f"| {t:g} | {low.mean():.0%} | {marked_wrong:.0%} | {unmarked_wrong:.0%} |"
            f" {right_marked:.0%} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
