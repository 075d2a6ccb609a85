"""Make the starter model ``resources/models/footprint-starter.pt``: the one way it is made.

    .venv/bin/python scripts/make_starter_model.py [--epochs N] [--loro-epochs N]
        [--encoder NAME] [--scale-jitter F] [--colour-jitter S] [--skip-loro]
        [--only PLACE ...] [--out DIR]

Data (``../shared/data`` or ``$FOOTPRINT_DATA``): the Banepa *train* chips (never the test
chips) and the zoom-20 chips (~15 cm) of the three regions (Zanzibar, Nairobi, Catanduanes).

1. Prepare: each place's chips become one mosaic, warped to the place's UTM zone at
   ``RESOLUTION_M`` (bilinear, an alpha band: nodata outside the imagery), so that ``train``
   sees one ground resolution; the union of its chip footprints is its labelled area (the
   regions' labels reach beyond the chips: pixels outside them are unknown, not background).
   The training windows of each place are counted (``windows.json``).
2. Train the final model with ``python -m engine train``'s default recipe on all four places.
3. Score it on the Banepa test chips as ``bench/accuracy.py`` does (pixel and building scores,
   95% bootstrap intervals over the chips), in full and in half precision; write the shipped
   file (half precision when the pixel IoU moves by less than ``FP16_TOLERANCE``) and its
   record ``resources/models/footprint-starter.json`` (sha256, date, spec, scores), and its
   ONNX export ``footprint-starter.onnx`` (detection without torch, engine.models.onnxfile).
4. Leave one region out, for each region: train on the other two + Banepa train, detect on the
   left-out region's z19, z20 and z21 chips (detect resamples them itself), score against its
   labels inside its z20 chips' footprint (intervals over its z19 chips).

Each run's record (command, CPU, minutes, scores) goes to ``docs/benchmarks/starter/``.
Finished steps found in the work folder (``--out``) are reused, so a stopped run continues.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from bench.accuracy import DATA, chip_spread  # noqa: E402
from engine.config import DetectConfig, EvaluateConfig  # noqa: E402
from engine.detect import detect  # noqa: E402
from engine.evaluate import evaluate  # noqa: E402
from engine.events import NullProgress  # noqa: E402
from engine.geo.rasters import resolve_raster  # noqa: E402
from engine.models.device import describe_cpu  # noqa: E402
from engine.models.modelfile import load_model, read_spec  # noqa: E402
from engine.models.onnxfile import export_onnx, file_sha256  # noqa: E402
from engine.models.registry import output_stride  # noqa: E402

#: Ground resolution the model is trained and applied at (metres).
RESOLUTION_M = 0.15
#: Largest change of Banepa test pixel IoU that half-precision weights may make.
FP16_TOLERANCE = 0.005
REGIONS = ("zanzibar", "nairobi", "catanduanes")
#: The regions' chip folders scored when a region is left out (~30, 15 and 7.5 cm).
ZOOMS = ("z19", "z20", "z21")
#: place -> (chips, labels), under DATA
PLACES = {
    "banepa": ("banepa/train/oam", "banepa/labels/buildings_banepa_osm.geojson"),
    **{r: (f"regions/{r}/z20", f"regions/{r}/labels.geojson") for r in REGIONS},
}
BANEPA_TEST = "banepa/test/oam"
SHIPPED = ROOT / "resources" / "models" / "footprint-starter.pt"
RECORDS = ROOT / "docs" / "benchmarks" / "starter"


def log(text: str) -> None:
    """A time-stamped line on stdout."""
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def sh(*args: str) -> None:
    """Run a command; stop on failure."""
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)


# ------------------------------------------------------------------------------ data


def chips_of(place: str) -> list[Path]:
    """The chip files of ``place``."""
    chips = sorted((DATA / PLACES[place][0]).glob("*.tif"))
    if not chips:
        raise SystemExit(f"No chips in {DATA / PLACES[place][0]}: set FOOTPRINT_DATA")
    return chips


def utm_epsg(lon: float, lat: float) -> int:
    """EPSG code of the UTM zone holding (lon, lat)."""
    zone = int((lon + 180) // 6) % 60 + 1
    return (32600 if lat >= 0 else 32700) + zone


def footprint(chips: list[Path], out: Path) -> Path:
    """The union of the chips' footprints as a GeoJSON in EPSG:4326 (merged in the chips' own
    CRS on a millimetre grid, where neighbours share their edges exactly: no slivers)."""
    import geopandas as gpd
    import rasterio
    import shapely

    boxes, crs = [], None
    for chip in chips:
        with rasterio.open(chip) as src:
            boxes.append(shapely.box(*src.bounds))
            crs = src.crs
    grid = 1e-3 if crs is not None and crs.is_projected else 1e-8
    union = shapely.union_all(shapely.set_precision(boxes, grid))
    area = gpd.GeoSeries([union], crs=crs).to_crs("EPSG:4326").make_valid()
    gpd.GeoDataFrame(geometry=area).to_file(out)
    return out


def prepare(place: str, work: Path) -> tuple[Path, Path]:
    """The place's mosaic at RESOLUTION_M in its UTM zone, and its footprint (cached)."""
    raster, area = work / f"{place}.tif", work / f"{place}_area.geojson"
    if raster.is_file() and area.is_file():
        return raster, area
    chips = chips_of(place)
    footprint(chips, area)
    import geopandas as gpd

    centre = gpd.read_file(area).geometry.iloc[0].centroid
    vrt = work / f"{place}_chips.vrt"
    sh("gdalbuildvrt", "-q", str(vrt), *map(str, chips))
    part = raster.with_suffix(".part.tif")
    sh(
        "gdalwarp", "-q", "-overwrite", "-t_srs", f"EPSG:{utm_epsg(centre.x, centre.y)}",
        "-tr", str(RESOLUTION_M), str(RESOLUTION_M), "-tap", "-r", "bilinear", "-dstalpha",
        "-co", "TILED=YES", "-co", "COMPRESS=DEFLATE", "-co", "PREDICTOR=2",
        str(vrt), str(part),
    )  # fmt: skip
    part.rename(raster)
    log(f"prepared {place}: {len(chips)} chips -> {raster.name}")
    return raster, area


def union_area(areas: list[Path], out: Path) -> Path:
    """One GeoJSON holding the footprints of several places (train's --labelled-area)."""
    import geopandas as gpd
    import pandas as pd

    frames = [gpd.read_file(a) for a in areas]
    gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs="EPSG:4326").to_file(out)
    return out


def count_windows(places: list[str], work: Path) -> dict[str, Any]:
    """Training and validation windows per place, as ``train`` plans them (cached)."""
    cache = work / "windows.json"
    if cache.is_file():
        return dict(json.loads(cache.read_text()))
    from engine.config import TrainConfig
    from engine.training.dataset import build_training_data

    prepared = [prepare(p, work) for p in places]
    config = TrainConfig(
        rasters=tuple(str(r) for r, _ in prepared),
        labels=tuple(str(DATA / PLACES[p][1]) for p in places),
        output=str(work / "count.pt"),
        labelled_area=str(union_area([a for _, a in prepared], work / "count_area.geojson")),
    )
    data = build_training_data(config, NullProgress(), cache_bytes=0)
    counts = {p: {"train": 0, "val": 0} for p in places}
    for split, windows in (("train", data.train.windows), ("val", data.val.windows)):
        for ref in windows:
            counts[places[ref.raster]][split] += 1
    cache.write_text(json.dumps(counts, indent=1))
    return counts


# ------------------------------------------------------------------------------ runs


def train_args(
    places: list[str], work: Path, name: str, epochs: int | None, extra: list[str]
) -> list[str]:
    """``python -m engine train`` arguments for the default recipe on ``places``."""
    prepared = [prepare(p, work) for p in places]
    area = union_area([a for _, a in prepared], work / f"{name}_area.geojson")
    args = ["--raster", *(str(r) for r, _ in prepared)]
    args += ["--labels", *(str(DATA / PLACES[p][1]) for p in places)]
    args += ["--labelled-area", str(area), "--output", str(work / f"{name}.pt"), "--overwrite"]
    args += ["--epochs", str(epochs)] if epochs else []
    return args + extra


def train_run(
    places: list[str], work: Path, name: str, epochs: int | None, extra: list[str]
) -> dict[str, Any]:
    """Train (or reuse) the model ``name``; the record's training part."""
    args = train_args(places, work, name, epochs, extra)
    model, done = work / f"{name}.pt", work / f"{name}.train.json"
    command = [sys.executable, "-m", "engine", "train", *args, "--events", "json"]
    if model.is_file() and done.is_file():
        return dict(json.loads(done.read_text()))
    log(f"training {name} on {', '.join(places)}")
    start = time.monotonic()
    result = run_engine(command)
    part = {
        "places": places,
        "command": "python -m engine train " + shlex.join(args),
        "train_minutes": (time.monotonic() - start) / 60,
        "trained": {k: v for k, v in result.items() if k not in ("output", "report")},
    }
    done.write_text(json.dumps(part, indent=1, default=str))
    log(f"trained {name} in {part['train_minutes']:.1f} min")
    return part


def run_engine(command: list[str]) -> dict[str, Any]:
    """Run an engine command with JSON events: echo its log lines, return its result."""
    result: dict[str, Any] = {}
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                print(line, end="", flush=True)
                continue
            kind = event.get("event")
            if kind in ("log", "error"):
                log(str(event.get("message")))
            elif kind == "metric":
                log(f"{event.get('name')} {event.get('value'):.4f} (epoch {event.get('step')})")
            elif kind == "result":
                result = dict(event.get("result") or {})
    if proc.returncode != 0:
        raise SystemExit(f"{shlex.join(command)} failed (exit {proc.returncode})")
    return result


def scores(
    raster: str,
    model: Path,
    labels: Path,
    area: Path | None,
    chips: Path,
    out: Path,
    aoi: Path | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Detect on ``raster`` (only inside ``aoi`` when given) and score inside ``area`` (None:
    the raster's extent), with 95% bootstrap intervals over the ``chips`` (bench/accuracy.py's).
    ``options``: more DetectConfig fields (e.g. regularize=True)."""
    out.mkdir(parents=True, exist_ok=True)
    buildings, prob = out / "buildings.gpkg", out / "probability.tif"
    start = time.monotonic()
    config = DetectConfig(
        raster,
        str(model),
        str(buildings),
        keep_probability=str(prob),
        aoi=aoi and str(aoi),
        **options,
    )
    detect(dataclasses.replace(config, overwrite=True), NullProgress())
    detect_s = time.monotonic() - start
    area_arg = str(area or prob)
    s = evaluate(
        EvaluateConfig(str(buildings), str(labels), area=area_arg, resolution=RESOLUTION_M),
        NullProgress(),
    )
    keys = ("pixel_precision", "pixel_recall", "pixel_f1", "pixel_iou")
    keys += ("object_precision", "object_recall", "object_f1", "mean_iou_matched")
    keys += ("merges", "splits")
    found = {**s, "mean_iou_matched": s["object"].get("mean_iou_matched")}
    return {
        "scores": {k: found[k] for k in keys if k in found},
        "spread": chip_spread(str(buildings), str(labels), chips),
        "detect_s": detect_s,
    }


def banepa_test(model: Path, work: Path) -> dict[str, Any]:
    """Scores on the Banepa test chips (as bench/accuracy.py measures them)."""
    test = resolve_raster(str(DATA / BANEPA_TEST), workdir=str(work))
    labels = DATA / PLACES["banepa"][1]
    out = work / f"{model.stem}_banepa_test"
    return scores(test, model, labels, None, DATA / BANEPA_TEST, out)


def region_test(model: Path, region: str, work: Path) -> dict[str, Any]:
    """Scores on the left-out region's z19, z20 and z21 chips (~30, 15 and 7.5 cm; detect
    resamples them to the model's resolution) inside its z20 chips' footprint, with intervals
    over its z19 chips (each the area of 4 z20 chips)."""
    labels = DATA / PLACES[region][1]
    _, area = prepare(region, work)
    # intervals over the z19 chips (~77 m, as big as Banepa's chips; z20 ones are often empty)
    z19 = DATA / "regions" / region / "z19"
    result = {}
    for zoom in ZOOMS:
        chips = DATA / "regions" / region / zoom
        raster = resolve_raster(str(chips), workdir=str(work))
        out = work / f"{model.stem}_{zoom}"
        result[zoom] = scores(raster, model, labels, area, z19, out)
    return result


def hardware() -> dict[str, Any]:
    """The CPU as it explains the minutes."""
    return {
        "cpu": describe_cpu(),
        "cpu_model": _cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def write_record(name: str, record: dict[str, Any]) -> Path:
    """docs/benchmarks/starter/<name>.json."""
    RECORDS.mkdir(parents=True, exist_ok=True)
    path = RECORDS / f"{name}.json"
    path.write_text(json.dumps(record, indent=1, default=str) + "\n", encoding="utf-8")
    log(f"wrote {path.relative_to(ROOT)}")
    update_benchmarks()
    return path


BENCHMARKS = ROOT / "docs" / "BENCHMARKS.md"
START, END = "<!-- starter:start -->", "<!-- starter:end -->"


def _interval(spread: dict[str, Any] | None, key: str) -> str:
    """' (a-b)': the 95% interval of ``key``, or ''."""
    if not spread:
        return ""
    low, high = spread[key]
    return f" ({low:.3f}-{high:.3f})"


def _row(what: str, part: dict[str, Any]) -> str:
    """One table row of scores."""
    s, spread = part["scores"], part.get("spread")
    cells = [
        what,
        f"{s['pixel_iou']:.3f}{_interval(spread, 'pixel_iou')}",
        f"{s['object_precision']:.3f}",
        f"{s['object_recall']:.3f}",
        f"{s['object_f1']:.3f}{_interval(spread, 'object_f1')}",
        f"{s.get('merges', '-')} / {s.get('splits', '-')}",
    ]
    return "| " + " | ".join(cells) + " |"


def markdown() -> str:
    """The "Starter model" section of docs/BENCHMARKS.md, from the records."""
    records = {p.stem: json.loads(p.read_text()) for p in sorted(RECORDS.glob("*.json"))}
    lines = [START, ""]
    head = "| run | pixel IoU (95% interval) | bldg P | bldg R | bldg F1 (95% interval) |"
    head += " merges / splits |\n| --- | --- | --- | --- | --- | --- |"
    for name, r in records.items():
        hw = r["hardware"]
        trained = r.get("trained", {})
        lines += [
            f"**{name}**: trained on {', '.join(r['places'])};"
            f" {r['train_minutes']:.0f} minutes of training ({trained.get('epochs_run', '?')}"
            f" epochs, best {trained.get('best_epoch', '?')}) on {hw['cpu_model']}"
            f" ({hw['cpu_capability']} kernels, {hw['threads']} threads).",
            "",
            f"`{_relative(r['command'])}`",
            "",
        ]
        if "windows" in r:
            counts = ", ".join(f"{p} {c['train']}/{c['val']}" for p, c in r["windows"].items())
            lines += [f"Training/validation windows per place: {counts}.", ""]
        lines.append(head)
        if "banepa_test" in r:
            lines.append(_row("Banepa test chips (16)", r["banepa_test"]))
        for zoom in ZOOMS:
            if zoom in r:
                lines.append(_row(f"{r['left_out']} {zoom}, left out", r[zoom]))
        lines.append("")
    return "\n".join(lines + [END])


def _relative(command: str) -> str:
    """A recorded command with this checkout's and the data's absolute paths shortened."""
    return command.replace(f"{ROOT}/", "").replace(str(DATA.resolve()), "$FOOTPRINT_DATA")


def update_benchmarks() -> None:
    """Replace the section between the markers in docs/BENCHMARKS.md."""
    text = BENCHMARKS.read_text(encoding="utf-8")
    if START not in text:
        return
    before, rest = text.split(START, 1)
    after = rest.split(END, 1)[1]
    BENCHMARKS.write_text(before + markdown() + after, encoding="utf-8")


# ------------------------------------------------------------------------------ shipping


def half(model: Path, out: Path) -> Path:
    """A copy of ``model`` with its floating-point weights in half precision."""
    payload = torch.load(model, map_location="cpu", weights_only=True)
    payload["state_dict"] = {
        k: v.half() if v.is_floating_point() else v for k, v in payload["state_dict"].items()
    }
    torch.save(payload, out)
    return out


def ship(model: Path, test: dict[str, Any], work: Path, record: dict[str, Any]) -> None:
    """Write the shipped file (half precision when it scores the same) and its JSON."""
    fp16 = half(model, work / "final_fp16.pt")
    fp16_test = banepa_test(fp16, work)
    delta = abs(fp16_test["scores"]["pixel_iou"] - test["scores"]["pixel_iou"])
    use_half = delta <= FP16_TOLERANCE
    chosen = fp16 if use_half else model
    log(f"fp16 pixel IoU differs by {delta:.4f}: shipping {'fp16' if use_half else 'fp32'}")
    load_model(chosen)  # the engine's own loader reads it
    SHIPPED.parent.mkdir(parents=True, exist_ok=True)
    SHIPPED.write_bytes(chosen.read_bytes())
    spec = read_spec(SHIPPED)
    card = {
        "file": SHIPPED.name,
        "sha256": file_sha256(SHIPPED),
        "bytes": SHIPPED.stat().st_size,
        "date": datetime.date.today().isoformat(),
        "made_by": "scripts/make_starter_model.py",
        "weights": "float16" if use_half else "float32",
        "spec": {
            "resolution_m": spec.resolution_m,
            "bands": list(spec.bands),
            "in_channels": spec.in_channels,
            "input_dtype": spec.input_dtype,
            "classes": list(spec.classes),
            "architecture": spec.architecture,
            "encoder": spec.encoder,
            "tile_size": spec.tile_size,
        },
        "trained_on": record["places"],
        "command": record["command"],
        "banepa_test": {"fp32": test, "fp16": fp16_test, "pixel_iou_delta": delta},
        "licence": "produced work of OpenStreetMap data, (c) OpenStreetMap contributors, ODbL"
        " 1.0; imagery OpenAerialMap contributors, CC BY 4.0",
    }
    onnx = SHIPPED.with_suffix(".onnx")
    network, _ = load_model(SHIPPED)
    card["onnx"] = {
        "file": onnx.name,
        "max_difference": export_onnx(
            network, spec, output_stride(network), onnx, True, file_sha256(SHIPPED)
        ),
        "sha256": file_sha256(onnx),
    }
    SHIPPED.with_suffix(".json").write_text(json.dumps(card, indent=1, default=str) + "\n")
    log(f"wrote {SHIPPED.relative_to(ROOT)} ({card['bytes'] / 1e6:.1f} MB) and {onnx.name}")


# ------------------------------------------------------------------------------ main


def main() -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=None, help="Final model (default: train's).")
    parser.add_argument("--loro-epochs", type=int, default=None, help="Leave-one-out runs.")
    parser.add_argument(
        "--scale-jitter", type=float, default=None, help="train's --scale-jitter (all runs)."
    )
    parser.add_argument(
        "--colour-jitter", type=float, default=None, help="train's --colour-jitter (all runs)."
    )
    parser.add_argument(
        "--encoder", default=None, help="train's --encoder (all runs; default: train's)."
    )
    parser.add_argument("--seed", type=int, default=None, help="train's --seed (all runs).")
    parser.add_argument(
        "--no-ship",
        action="store_true",
        help="Train and score the final model (final<tag>) without replacing the shipped one.",
    )
    parser.add_argument("--skip-loro", action="store_true")
    parser.add_argument("--skip-final", action="store_true")
    parser.add_argument(
        "--only",
        nargs="*",
        choices=["banepa", *REGIONS],
        default=list(REGIONS),
        help="Places left out, one run each (banepa: scored on its test chips).",
    )
    parser.add_argument(
        "--tag",
        default="",
        help="Suffix of the runs' names (e.g. -8ep); a tagged final model needs --no-ship.",
    )
    parser.add_argument(
        "--markdown", action="store_true", help="Only rewrite docs/BENCHMARKS.md's section."
    )
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "starter")
    args = parser.parse_args()
    if args.markdown:
        update_benchmarks()
        return 0
    work = args.out.absolute()
    work.mkdir(parents=True, exist_ok=True)
    os.chdir(ROOT)
    command = "python scripts/make_starter_model.py " + shlex.join(sys.argv[1:])
    places = ["banepa", *REGIONS]
    extra = ["--scale-jitter", str(args.scale_jitter)] if args.scale_jitter else []
    extra += ["--colour-jitter", str(args.colour_jitter)] if args.colour_jitter else []
    extra += ["--encoder", args.encoder] if args.encoder else []
    extra += ["--seed", str(args.seed)] if args.seed is not None else []
    final = f"final{args.tag}"
    if not args.skip_final and args.tag and not args.no_ship:
        parser.error("--tag names a candidate: add --no-ship, or drop --tag to ship it")
    if not args.skip_final:
        trained = train_run(places, work, final, args.epochs, extra)
        windows = count_windows(places, work)
        log(f"windows per place: {windows}")
        test = banepa_test(work / f"{final}.pt", work)
        record = {
            "run": final,
            "script": command,
            **trained,
            "windows": windows,
            "banepa_test": test,
            "hardware": hardware(),
        }
        write_record(final, record)
        if not args.no_ship:
            ship(work / f"{final}.pt", test, work, record)
    if not args.skip_loro:
        for region in args.only:
            others = [p for p in places if p != region]
            name = f"loro_{region}{args.tag}"
            epochs = args.loro_epochs or args.epochs
            trained = train_run(others, work, name, epochs, extra)
            if region == "banepa":
                result = {"banepa_test": banepa_test(work / f"{name}.pt", work)}
            else:
                result = region_test(work / f"{name}.pt", region, work)
            record = {
                "run": name,
                "script": command,
                "left_out": region,
                **trained,
                **result,
                "hardware": hardware(),
            }
            write_record(name, record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
