"""What detect, fix, improve buys: building F1 on a place against corrected buildings and minutes.

    .venv/bin/python bench/improve_curve.py [--regions zanzibar ...] [--counts 0 25 50 100 all]
        [--models out/starter] [--tag -8ep] [--set key=value ...] [--out out/improve_curve]

For each region left out (``../shared/data/regions``): the model that never saw it
(``<models>/loro_<region><tag>.pt``, made by ``scripts/make_starter_model.py``) is improved with
``python -m engine improve``'s defaults on N of its buildings, and scored on another part.

- The region's z19 chips (~77 m) are split along the longer side of their spread: the first
  half is where the mapper corrects, the second half is the test part (never trained on).
- For N buildings, the area checked grows by z20 chips (~38 m) from the correcting half's end
  nearest the test part (chosen by distance from the split), until the buildings whose
  centre lies inside reach N ("all": the whole correcting half); the corrected buildings are
  the OSM buildings touching it.
- Banepa (``--regions banepa``, model ``loro_banepa<tag>.pt``): the mapper corrects on its
  train chips, cut in quarters (~33 m) taken from the east (next to the test chips); scored
  on the test chips as the starter model's card is.
- Each model (N = 0: the starting model) detects on the region's mosaic (0.15 m, UTM) and is
  scored inside the test part, with 95% bootstrap intervals over its z19 chips.

Records go to ``docs/benchmarks/improve/<region>.json``, the table to docs/BENCHMARKS.md's
"Improve" section and the plot to ``docs/images/improve_curve.png``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import geopandas as gpd  # noqa: E402
import numpy as np  # noqa: E402
import rasterio  # noqa: E402
import shapely  # noqa: E402
from make_starter_model import (  # noqa: E402
    BANEPA_TEST,
    DATA,
    PLACES,
    REGIONS,
    _relative,
    banepa_test,
    hardware,
    log,
    prepare,
    scores,
)

from engine.config import ImproveConfig  # noqa: E402
from engine.events import TerminalProgress  # noqa: E402
from engine.improve import improve  # noqa: E402

BANEPA_TRAIN = PLACES["banepa"][0]
RECORDS = ROOT / "docs" / "benchmarks" / "improve"
PLOT = ROOT / "docs" / "images" / "improve_curve.png"
BENCHMARKS = ROOT / "docs" / "BENCHMARKS.md"
START, END = "<!-- improve:start -->", "<!-- improve:end -->"


def chip_boxes(folder: Path) -> tuple[list[Path], np.ndarray]:
    """The chips of ``folder`` and their boxes (EPSG:3857, the chips' CRS)."""
    chips = sorted(folder.glob("*.tif"))
    boxes = []
    for chip in chips:
        with rasterio.open(chip) as src:
            boxes.append(shapely.box(*src.bounds))
    return chips, np.asarray(boxes, dtype=object)


def split(region: str) -> tuple[list[Path], shapely.Geometry, shapely.Geometry, np.ndarray]:
    """The region's test z19 chips, the correcting half, the test part and the split axis."""
    chips, boxes = chip_boxes(DATA / "regions" / region / "z19")
    centres = np.array([[b.centroid.x, b.centroid.y] for b in boxes])
    spread = centres.max(axis=0) - centres.min(axis=0)
    axis = int(np.argmax(spread))
    order = np.argsort(centres[:, axis], kind="stable")
    half = len(chips) // 2
    correcting, test = order[:half], order[half:]
    return (
        [chips[i] for i in test],
        shapely.union_all(boxes[correcting]),
        shapely.union_all(boxes[test]),
        np.array([axis, centres[test, axis].min()]),
    )


def region_cells(correcting: shapely.Geometry, region: str, axis: np.ndarray) -> np.ndarray:
    """The region's z20 chips (~38 m) inside the correcting half, nearest the test part first."""
    _, boxes = chip_boxes(DATA / "regions" / region / "z20")
    boxes = boxes[shapely.within(boxes, correcting.buffer(1.0))]
    coordinate = np.array([[b.centroid.x, b.centroid.y][int(axis[0])] for b in boxes])
    return boxes[np.argsort(-coordinate, kind="stable")]


def banepa_parts() -> tuple[np.ndarray, shapely.Geometry]:
    """Banepa's train chips cut in quarters (256 px, ~33 m; EPSG:3857), east first (the test
    chips lie east of them), and the test chips' footprint."""
    quarters = []
    for chip in sorted((DATA / BANEPA_TRAIN).glob("*.tif")):
        with rasterio.open(chip) as src:
            box = gpd.GeoSeries([shapely.box(*src.bounds)], crs=src.crs).to_crs("EPSG:3857")
        x0, y0, x1, y1 = box.iloc[0].bounds
        xm, ym = (x0 + x1) / 2, (y0 + y1) / 2
        quarters += [
            shapely.box(a, b, c, d)
            for a, c in ((x0, xm), (xm, x1))
            for b, d in ((y0, ym), (ym, y1))
        ]
    cells = np.asarray(quarters, dtype=object)
    cells = cells[np.argsort([-c.centroid.x for c in cells], kind="stable")]
    _, test = chip_boxes(DATA / BANEPA_TEST)
    with rasterio.open(sorted((DATA / BANEPA_TEST).glob("*.tif"))[0]) as src:
        crs = src.crs
    return cells, gpd.GeoSeries([shapely.union_all(test)], crs=crs).to_crs("EPSG:3857").iloc[0]


def checked_area(
    cells: np.ndarray, labels: Path, count: int | None
) -> tuple[shapely.Geometry, int]:
    """The first ``cells`` until ``count`` buildings' centres lie inside (None: all of them);
    the area and the buildings inside."""
    everything = gpd.read_file(labels).to_crs("EPSG:3857")
    centres = everything.geometry.representative_point().to_numpy()
    taken: list[shapely.Geometry] = []
    inside = 0
    for cell in cells:
        taken.append(cell)
        area = shapely.union_all(taken)
        inside = int(shapely.within(centres, area).sum())
        if count is not None and inside >= count:
            break
    return shapely.union_all(taken), inside


def write_layer(geoms: list[shapely.Geometry], path: Path, crs: str = "EPSG:3857") -> Path:
    """Polygons as a GeoJSON."""
    gpd.GeoDataFrame(geometry=gpd.GeoSeries(geoms, crs=crs)).to_file(path)
    return path


def run_region(region: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The curve of one region."""
    start = (args.models / f"loro_{region}{args.tag}.pt").absolute()
    if not start.is_file():
        raise SystemExit(f"{start} is missing: run scripts/make_starter_model.py first")
    raster, _ = prepare(region, args.models.absolute())
    labels = DATA / PLACES[region][1]
    folder = work / region
    folder.mkdir(parents=True, exist_ok=True)
    if region == "banepa":
        cells, test = banepa_parts()
        test_chips: list[Path] = sorted((DATA / BANEPA_TEST).glob("*.tif"))
    else:
        test_chips, correcting, test, axis = split(region)
        cells = region_cells(correcting, region, axis)
        chips_dir = folder / "test_chips"
        chips_dir.mkdir(exist_ok=True)
        for chip in test_chips:
            link = chips_dir / chip.name
            if not link.exists():
                link.symlink_to(chip)
        test_path = write_layer([test], folder / "test_part.geojson")
    rows = []
    for value in args.counts:
        count = None if value == "all" else int(value)
        name = f"n{value}"
        row: dict[str, Any] = {"n": value}
        model = start
        if count != 0:
            area, inside = checked_area(cells, labels, count)
            area_path = write_layer([area], folder / f"{name}_checked.geojson")
            everything = gpd.read_file(labels).to_crs("EPSG:3857")
            corrected = everything[everything.intersects(area)]
            labels_path = folder / f"{name}_buildings.geojson"
            corrected.to_file(labels_path)
            model = folder / f"{name}.pt"
            config = ImproveConfig(
                raster=str(raster),
                labels=str(labels_path),
                checked_area=str(area_path),
                output=str(model),
                model=str(start),
                overwrite=True,
                **dict(args.set),
            )
            began = time.monotonic()
            result = improve(config, TerminalProgress())
            row.update(
                buildings_inside=inside,
                buildings_used=len(corrected),
                area_m2=float(area.area),  # EPSG:3857 square metres, ~(1/cos lat)^2 too large
                improve_minutes=(time.monotonic() - began) / 60,
                epochs=result["epochs_run"],
                held_back_before=result["before"],
                held_back_after=result["after"],
            )
        log(f"{region} N={value}: scoring {model.name}")
        out = folder / name
        if region == "banepa":  # its test chips, as the starter model's card scores them
            row["test"] = banepa_test(model, folder)
        else:
            row["test"] = scores(str(raster), model, labels, test_path, chips_dir, out, test_path)
        rows.append(row)
        f1 = row["test"]["scores"]["object_f1"]
        log(f"{region} N={value}: test building F1 {f1:.3f}")
    return {
        "region": region,
        "variant": args.name,
        "settings": dict(args.set),
        "start_model": str(start),
        "test_chips_z19": len(test_chips),
        "rows": rows,
        "command": "python bench/improve_curve.py " + shlex.join(sys.argv[1:]),
        "hardware": hardware(),
    }


def _pair(text: str) -> tuple[str, Any]:
    key, _, value = text.partition("=")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def markdown() -> str:
    """The "Improve" section of docs/BENCHMARKS.md, from the records."""
    lines = [START, ""]
    for path in sorted(RECORDS.glob("*.json")):
        r = json.loads(path.read_text())
        hw = r["hardware"]
        lines += [
            f"**{r['region']}{r.get('variant', '')}** {r.get('settings') or ''} (left out of the"
            f" starting model; test part: {r['test_chips_z19']}"
            f" z19 chips) on {hw['cpu_model']} ({hw['threads']} threads):"
            f" `{_relative(r['command'])}`",
            "",
            "| N corrected (inside / used) | improve minutes | epochs | held-back F1 before ->"
            " after | test pixel IoU | test bldg F1 (95% interval) | merges / splits |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for row in r["rows"]:
            s, spread = row["test"]["scores"], row["test"].get("spread") or {}
            f1 = spread.get("object_f1")
            interval = f" ({f1[0]:.3f}-{f1[1]:.3f})" if f1 else ""
            if "improve_minutes" in row:
                b, a = row["held_back_before"], row["held_back_after"]
                key = "val_building_f1" if "val_building_f1" in a else "val_iou"
                held = f"{b.get(key, float('nan')):.3f} -> {a[key]:.3f}"
                n = f"{row['n']} ({row['buildings_inside']} / {row['buildings_used']})"
                minutes, epochs = f"{row['improve_minutes']:.1f}", str(row["epochs"])
            else:
                n, minutes, epochs, held = "0 (zero-shot)", "-", "-", "-"
            merges = f"{s.get('merges', '-')} / {s.get('splits', '-')}"
            lines.append(
                f"| {n} | {minutes} | {epochs} | {held} | {s['pixel_iou']:.3f} |"
                f" {s['object_f1']:.3f}{interval} | {merges} |"
            )
        lines.append("")
    lines.append(f"![building F1 against corrected buildings](images/{PLOT.name})")
    return "\n".join([*lines, "", END])


def plot() -> None:
    """Building F1 on the test part against N (the default settings' records) and against
    improve minutes (those and the time-budget variants), one colour per region."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (by_n, by_min) = plt.subplots(1, 2, figsize=(10, 4))
    colours: dict[str, Any] = {}
    steps = ["0", "25", "50", "100", "all"]
    for path in sorted(RECORDS.glob("*.json")):
        r = json.loads(path.read_text())
        variant, region = r.get("variant", ""), r["region"]
        if variant and "min" not in variant:
            continue  # settings variants are in the tables only
        colour = colours.setdefault(region, f"C{len(colours)}")
        xs, mins, ys, lo, hi = [], [], [], [], []
        for row in r["rows"]:
            f1 = row["test"]["scores"]["object_f1"]
            spread = (row["test"].get("spread") or {}).get("object_f1") or (f1, f1)
            xs.append(steps.index(str(row["n"])))
            mins.append(row.get("improve_minutes", 0.0))
            ys.append(f1)
            lo.append(f1 - spread[0])
            hi.append(spread[1] - f1)
        marker = "s" if variant else "o"
        if not variant:
            by_n.errorbar(
                xs, ys, yerr=[lo, hi], marker=marker, capsize=3, color=colour, label=region
            )
        by_min.scatter(
            mins, ys, marker=marker, color=colour, label=f"{region}{variant}" if variant else None
        )
    by_n.set_xticks(range(len(steps)), [*steps[:-1], "all (as many\nas the half holds)"])
    by_n.set(xlabel="corrected buildings (N)", ylabel="test building F1")
    by_min.set(
        xlabel="improve minutes (one core; squares: 15-minute budget)", ylabel="test building F1"
    )
    by_n.legend()
    by_min.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(PLOT, dpi=90)


def update_docs() -> None:
    """Rewrite the section between the markers and the plot."""
    plot()
    text = BENCHMARKS.read_text(encoding="utf-8")
    if START in text:
        before, rest = text.split(START, 1)
        text = before + markdown() + rest.split(END, 1)[1]
        BENCHMARKS.write_text(text, encoding="utf-8")


def main() -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    places = ["banepa", *REGIONS]
    parser.add_argument("--regions", nargs="*", choices=places, default=places)
    parser.add_argument("--counts", nargs="*", default=["0", "25", "50", "100", "all"])
    parser.add_argument("--models", type=Path, default=ROOT / "out" / "starter")
    parser.add_argument("--tag", default="-8ep")
    parser.add_argument("--set", type=_pair, action="append", default=[])
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "improve_curve")
    parser.add_argument("--name", default="", help="Suffix of the records' names (a variant).")
    parser.add_argument("--docs-only", action="store_true")
    args = parser.parse_args()
    if not args.docs_only:
        for region in args.regions:
            record = run_region(region, args, args.out.absolute())
            RECORDS.mkdir(parents=True, exist_ok=True)
            path = RECORDS / f"{region}{args.name}.json"
            path.write_text(json.dumps(record, indent=1, default=str) + "\n", encoding="utf-8")
            log(f"wrote {path.relative_to(ROOT)}")
            update_docs()
    else:
        update_docs()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
