"""The Banepa test area detected from its GeoTIFFs and from an XYZ layer of the same imagery.

    .venv/bin/python bench/xyz_vs_geotiff.py [--data DIR] [--work DIR] [--zoom 20] [--tag NAME]

Detects with the starter model (no MODEL: ``FOOTPRINT_STARTER_MODEL`` names another file)
through ``qgis_process`` (``scripts/qgis_process.sh``, the plugin linked into a folder of this
run's own, ``FOOTPRINT_PLUGINPATH``), twice:

(a) from a VRT of the test chips (``<data>/test/oam/*.tif``);
(b) from an XYZ layer of the same imagery: tiles made by ``gdal2tiles.py --xyz`` (zooms 19 to
    ``--zoom``) into the work folder, given as ``wms://type=xyz&url=file:///...`` with the
    test area's extent (the plugin draws the layer at the model's resolution in local UTM).

Each is scored against the OSM labels over the test area (the engine's ``evaluate``, area =
the VRT; 95% bootstrap intervals over the chips, as ``bench/accuracy.py`` does), and the two
results are compared: the IoU of the union of their polygons inside the test area (polygons in
the same place give ~1). Wall minutes and CPU minutes (the qgis_process and engine processes)
of each detect are recorded. Writes docs/benchmarks/xyz/<tag>.json and prints a markdown
record for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.accuracy import DATA, _hardware, chip_spread  # noqa: E402
from engine.config import EvaluateConfig  # noqa: E402
from engine.evaluate import evaluate  # noqa: E402
from engine.events import NullProgress  # noqa: E402

LABELS = Path("labels") / "buildings_banepa_osm.geojson"
#: The shipped starter model (FOOTPRINT_STARTER_MODEL replaces it, as for the engine).
STARTER = Path("resources") / "models" / "footprint-starter.pt"


def _children_cpu_s() -> float:
    """User + system CPU seconds of the waited-for child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(command: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``command`` (output shown); its wall and CPU seconds (children included)."""
    print("$", shlex.join(command), flush=True)
    cpu, start = _children_cpu_s(), time.monotonic()
    subprocess.run(command, check=True, env=env)
    return {
        "command": shlex.join(command),
        "wall_s": time.monotonic() - start,
        "cpu_s": _children_cpu_s() - cpu,
    }


def test_mosaic(data: Path, work: Path) -> Path:
    """A VRT of the test chips."""
    chips = sorted(str(p) for p in (data / "test" / "oam").glob("*.tif"))
    if not chips:
        raise SystemExit(f"No test chips in {data / 'test' / 'oam'}: give --data")
    vrt = work / "test.vrt"
    subprocess.run(["gdalbuildvrt", "-q", "-overwrite", str(vrt), *chips], check=True)
    return vrt


def make_tiles(vrt: Path, work: Path, zoom: int) -> tuple[Path, dict[str, Any]]:
    """XYZ tiles (PNG, zooms 19 to ``zoom``) of ``vrt`` made by gdal2tiles; their folder."""
    tiles = work / "tiles"
    step = _run(
        [
            "gdal2tiles.py",
            "--xyz",
            "-z",
            f"19-{zoom}",
            "-w",
            "none",
            "--processes=1",
            str(vrt),
            str(tiles),
        ]
    )
    step["tiles"] = sum(1 for _ in tiles.rglob("*.png"))
    return tiles, step


def extent_of(vrt: Path) -> str:
    """The raster's extent as Processing takes it: ``xmin,xmax,ymin,ymax [EPSG:n]``."""
    import rasterio

    with rasterio.open(vrt) as src:
        b, epsg = src.bounds, src.crs.to_epsg()
    return f"{b.left!r},{b.right!r},{b.bottom!r},{b.top!r} [EPSG:{epsg}]"


def detect(inputs: list[str], output: Path, plugins: Path) -> dict[str, Any]:
    """``footprint:detect`` through qgis_process with the starter model; wall and CPU."""
    env = {**os.environ, "FOOTPRINT_PLUGINPATH": str(plugins)}
    command = ["bash", str(ROOT / "scripts" / "qgis_process.sh"), "run", "footprint:detect"]
    step = _run([*command, "--", *inputs, f"OUTPUT={output}"], env)
    step["output"] = str(output)
    return step


def scores(buildings: Path, labels: Path, vrt: Path, chips: Path) -> dict[str, Any]:
    """The engine's evaluate over the test area, and the bootstrap intervals over chips."""
    s = evaluate(EvaluateConfig(str(buildings), str(labels), area=str(vrt)), NullProgress())
    return {"scores": s, "spread": chip_spread(str(buildings), str(labels), chips)}


def union_iou(first: Path, second: Path, area: Path) -> dict[str, float]:
    """IoU of the unions of two layers' polygons inside the raster ``area`` (in UTM metres)."""
    import geopandas as gpd
    import rasterio
    import shapely

    with rasterio.open(area) as src:
        box = gpd.GeoSeries([shapely.box(*src.bounds)], crs=src.crs)
    utm = box.estimate_utm_crs()
    region = box.to_crs(utm).iloc[0]
    a, b = (
        shapely.intersection(shapely.union_all(gpd.read_file(p).to_crs(utm).geometry), region)
        for p in (first, second)
    )
    inter, union = shapely.intersection(a, b).area, shapely.union(a, b).area
    return {
        "iou": inter / union if union else 1.0,
        "area_m2_geotiff": a.area,
        "area_m2_xyz": b.area,
        "intersection_m2": inter,
        "union_m2": union,
    }


def record(result: dict[str, Any]) -> str:
    """Markdown for docs/BENCHMARKS.md."""
    lines = [
        f"### xyz-vs-geotiff: {result['tag']} ({result['date']})",
        "",
        f"- command: `{result['command']}`; model: {result['model']} (sha256"
        f" {result['model_sha256'][:16]}...)",
        f"- hardware: {result['hardware']}",
        f"- tiles: `{result['tiles']['command']}` ({result['tiles']['tiles']} PNG,"
        f" {result['tiles']['wall_s']:.0f} s)",
        f"- XYZ input: `{result['xyz_input']}`",
        "",
        "| input | detect wall (s) | CPU (s) | buildings | bldg P | bldg R | bldg F1 |"
        " F1 95% interval | pixel IoU |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in ("geotiff", "xyz"):
        run, s = result[name], result[name]["scores"]
        f1 = run["spread"]["object_f1"] if run["spread"] else [float("nan")] * 2
        lines.append(
            f"| {name} | {run['wall_s']:.0f} | {run['cpu_s']:.0f} |"
            f" {s['predicted']} |"
            f" {s['object_precision']:.3f} | {s['object_recall']:.3f} | {s['object_f1']:.3f} |"
            f" {f1[0]:.3f}-{f1[1]:.3f} | {s['pixel_iou']:.3f} |"
        )
    u = result["union"]
    lines += [
        "",
        f"IoU of the two results' unions inside the test area: {u['iou']:.3f}"
        f" ({u['area_m2_geotiff']:.0f} m² from the GeoTIFF, {u['area_m2_xyz']:.0f} m² from"
        " the XYZ layer).",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA / "banepa")
    parser.add_argument("--work", type=Path, default=ROOT / "out" / "xyz_vs_geotiff")
    parser.add_argument("--zoom", type=int, default=20, help="deepest zoom of the XYZ tiles")
    parser.add_argument("--tag", default="cpu")
    args = parser.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    labels = args.data / LABELS
    vrt = test_mosaic(args.data, work)
    tiles, tiles_step = make_tiles(vrt, work, args.zoom)
    extent = extent_of(vrt)
    url = f"type=xyz&url=file://{tiles}/{{z}}/{{x}}/{{y}}.png&zmax={args.zoom}&zmin=0"
    plugins = work / "plugins"
    model = Path(os.environ.get("FOOTPRINT_STARTER_MODEL") or ROOT / STARTER)
    result: dict[str, Any] = {
        "tag": args.tag,
        "date": time.strftime("%Y-%m-%d"),
        "command": "python bench/xyz_vs_geotiff.py " + shlex.join(sys.argv[1:]),
        "model": str(model),
        "model_sha256": hashlib.sha256(model.read_bytes()).hexdigest(),
        "hardware": _hardware(),
        "tiles": tiles_step,
        "extent": extent,
        "xyz_input": f"wms://{url}",
    }
    result["geotiff"] = detect([f"INPUT={vrt}"], work / "geotiff.gpkg", plugins)
    result["xyz"] = detect([f"INPUT=wms://{url}", f"EXTENT={extent}"], work / "xyz.gpkg", plugins)
    chips = args.data / "test" / "oam"
    for name in ("geotiff", "xyz"):
        result[name].update(scores(Path(result[name]["output"]), labels, vrt, chips))
    result["union"] = union_iou(work / "geotiff.gpkg", work / "xyz.gpkg", vrt)
    out = ROOT / "docs" / "benchmarks" / "xyz" / f"{args.tag}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")
    print(record(result))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
