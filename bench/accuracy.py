"""Accuracy benchmark on the Banepa data: train, detect on the test chips, evaluate there.

    .venv/bin/python bench/accuracy.py [--data banepa|atlanta] [--recipe cpu|gpu|fit]
        [--set key=value ...] [--tag NAME]
        [--model FILE | --keep-model FILE] [--predict key=value ...] [--vectorize key=value ...]

Trains on the 32 train chips (one VRT mosaic), detects on the 16 test chips (another mosaic),
evaluates against the OSM labels on the test chips' extent only, and prints and appends to
docs/BENCHMARKS.md: pixel precision/recall/F1/IoU/accuracy, per-building precision/recall/F1 at
IoU >= 0.5, training and inference time, hardware, the exact command and the model settings.
A PNG of test chips with predicted (orange) and reference (cyan) outlines goes to
docs/images/accuracy_<tag>.jpg. ``--set`` overrides any TrainConfig field (e.g. ``--set
pos_weight=6 --set loss=jaccard+bce``), which is how the techniques are measured one by one;
``--predict``/``--vectorize`` override InferenceOptions/PolygonOptions fields (e.g. ``--predict
margin=0`` for non-overlapping tiles, ``--vectorize threshold=0.5``), and ``--model`` reuses a
model kept with ``--keep-model`` instead of training, so prediction-side techniques are measured
on the very same weights. Each run also writes its record as JSON to
docs/benchmarks/accuracy/<tag>.json, from which ``bench/table.py`` builds the techniques table.
``--data atlanta --recipe fit`` is the single-image fit: train on the Atlanta SpaceNet 4 sample
and detect on the same image. Fails loudly when the data is missing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from engine.config import (  # noqa: E402
    DetectConfig,
    EvaluateConfig,
    InferenceOptions,
    PolygonOptions,
    TrainConfig,
)
from engine.detect import detect  # noqa: E402
from engine.evaluate import evaluate  # noqa: E402
from engine.events import NullProgress, TerminalProgress  # noqa: E402
from engine.geo.rasters import ground_resolution_m, open_raster, resolve_raster  # noqa: E402
from engine.models.device import describe_cpu  # noqa: E402
from engine.train import train  # noqa: E402
from engine.training.crop import crop_on_model_grid  # noqa: E402
from tools.preview import render_preview  # noqa: E402

DATA = Path(os.environ.get("FOOTPRINT_DATA", ROOT.parent / "shared" / "data"))


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Where a benchmark trains, detects and evaluates (paths under DATA)."""

    train: str  # raster file or folder of chips
    test: str
    labels: str  # glob
    picture: str  # raster(s) shown with outlines (glob)
    description: str


DATASETS = {
    "banepa": Dataset(
        "banepa/train/oam",
        "banepa/test/oam",
        "banepa/labels/*.geojson",
        "banepa/test/oam/OAM-38669[45]-22024[34]-19.tif",
        "Banepa: train on the 32 train chips, detect on the 16 test chips",
    ),
    # fine-tuning (issue 14): a model from a quarter of the training chips, then a few
    # buildings of the rest (--labelled-chips marks where they are)
    "banepa-quarter": Dataset(
        "banepa/train/oam/OAM-386690-*-19.tif",
        "banepa/test/oam",
        "banepa/labels/*.geojson",
        "banepa/test/oam/OAM-38669[45]-22024[34]-19.tif",
        "Banepa: train on the 8 chips of column 386690 (a quarter), detect on the 16 test chips",
    ),
    "banepa-rest": Dataset(
        "banepa/train/oam/OAM-38669[123]-*-19.tif",
        "banepa/test/oam",
        "banepa/labels/*.geojson",
        "banepa/test/oam/OAM-38669[45]-22024[34]-19.tif",
        "Banepa: train on the 24 chips of columns 386691-386693 (labels complete only in the"
        " --labelled-chips), detect on the 16 test chips",
    ),
    # the single-image fit: train on the image, predict the same image
    "atlanta": Dataset(
        "atlanta_sn4/sample_geotiff.tif",
        "atlanta_sn4/sample_geotiff.tif",
        "atlanta_sn4/geotiff_labels.geojson",
        "atlanta_sn4/sample_geotiff.tif",
        "Atlanta SpaceNet 4 sample: single-image fit (train and detect on the same image)",
    ),
}

RECIPES: dict[str, dict[str, Any]] = {
    # fits in 20 minutes on 2 CPU cores
    "cpu": {
        "architecture": "compact",
        "encoder": "none",
        "tile_size": 256,
        "epochs": 15,
        "batch_size": 8,
        "lr": 0.01,
        "separation": False,  # the baseline of the techniques table; train's default adds it
    },
    # the single-image fit (Atlanta): a real encoder, small windows, every window kept
    "fit": {
        "architecture": "unet",
        "encoder": "resnet18",
        "tile_size": 128,
        "stride": 64,
        "val_fraction": 0.0,  # nothing held out: the best epoch is the best fit
        "empty_keep_fraction": 1.0,
        "augment": False,
        "epochs": 60,
        "batch_size": 8,
        "lr": 0.001,
    },
    # train's own defaults (the recipe users get)
    "default": {},
    # the H200 machine: a real encoder, longer
    "gpu": {
        "architecture": "unet",
        "encoder": "resnet34",
        "tile_size": 512,
        "epochs": 80,
        "batch_size": 16,
        "lr": 0.001,
        "separation": True,
        "workers": 8,
    },
}


def _value(text: str) -> Any:
    """Parse a --set value: JSON when it parses (numbers, true/false, lists), else a string."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text
    return tuple(value) if isinstance(value, list) else value


def _overrides(kind: type, items: list[str]) -> dict[str, Any]:
    """``key=value`` items as a dict of ``kind``'s fields; unknown keys stop the run."""
    names = {f.name for f in dataclasses.fields(kind)}
    settings = {}
    for item in items:
        key, _, value = item.partition("=")
        if key not in names:
            raise SystemExit(f"{key}: not a {kind.__name__} field ({', '.join(sorted(names))})")
        settings[key] = _value(value)
    return settings


def labelled_area(chips: str, out: Path) -> str:
    """A GeoJSON of the footprints of the chips matching ``chips`` (under DATA): where the labels
    count as complete for a fine-tuning run."""
    import geopandas as gpd
    import rasterio
    import shapely

    paths = sorted(DATA.glob(chips))
    if not paths:
        raise SystemExit(f"No chips {DATA / chips}")
    boxes, crs = [], None
    for path in paths:
        with rasterio.open(path) as src:
            boxes.append(shapely.box(*src.bounds))
            crs = src.crs
    gpd.GeoDataFrame(geometry=[shapely.union_all(boxes)], crs=crs).to_file(out)
    return str(out)


def upsampled(raster: str, factor: float, out: Path) -> str:
    """``raster`` resampled to ``factor`` times its resolution as improve resamples imagery to
    a model's (:func:`engine.training.crop.crop_on_model_grid`: bilinear, same CRS, its mask
    kept): a model trained on it runs at that finer resolution, and detect resamples to it."""
    with open_raster(raster) as src:
        bounds, res = tuple(src.bounds), ground_resolution_m(src)
    return str(crop_on_model_grid(raster, bounds, res / factor, 0, out)[0])


def _config(
    data: Dataset,
    recipe: str,
    overrides: list[str],
    workdir: Path,
    labelled_chips: str = "",
    upsample: float = 1.0,
) -> TrainConfig:
    settings = {**RECIPES[recipe], **_overrides(TrainConfig, overrides)}
    if labelled_chips:
        settings["labelled_area"] = labelled_area(labelled_chips, workdir / "labelled.geojson")
    train_vrt = resolve_raster(str(DATA / data.train), workdir=str(workdir / "train"))
    if upsample != 1.0:
        train_vrt = upsampled(train_vrt, upsample, workdir / "train" / "upsampled.tif")
    return TrainConfig(
        rasters=(train_vrt,),
        labels=(str(_labels(data)),),
        output=str(workdir / "model.pt"),
        **settings,
    )


def _labels(data: Dataset) -> Path:
    found = sorted(DATA.glob(data.labels))
    if not found:
        raise SystemExit(f"No labels {DATA / data.labels}: set FOOTPRINT_DATA")
    return found[0]


def _hardware() -> str:
    """The machine as it explains speed: CPU model, flags, torch kernels, threads, quota; GPU."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{describe_cpu()}; {gpu}; torch {torch.__version__}"


def _train(
    data: Dataset,
    recipe: str,
    overrides: list[str],
    work: Path,
    progress: Any,
    labelled_chips: str = "",
    upsample: float = 1.0,
) -> dict[str, Any]:
    """Train once; the record's training part."""
    config = _config(data, recipe, overrides, work, labelled_chips, upsample)
    start = time.monotonic()
    trained = train(config, progress)
    return {
        "model": config.output,
        "recipe": recipe,
        "settings": {
            f.name: getattr(config, f.name)
            for f in dataclasses.fields(TrainConfig)
            if f.name not in ("rasters", "labels", "output", "report_dir")
        },
        "trained": trained,
        "train_s": time.monotonic() - start,
        "train_upsample": upsample,
    }


def _reuse(model: Path) -> dict[str, Any]:
    """The training part of the record kept beside ``model`` by ``--keep-model``."""
    sidecar = model.with_suffix(".json")
    if not model.is_file() or not sidecar.is_file():
        raise SystemExit(f"{model} (and {sidecar.name} beside it) not found: use --keep-model")
    part = json.loads(sidecar.read_text(encoding="utf-8"))
    return {**part, "model": str(model)}


def _keep(part: dict[str, Any], model: Path) -> None:
    model.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(part["model"], model)
    fields = {k: v for k, v in part.items() if k != "model"}
    model.with_suffix(".json").write_text(json.dumps(fields, default=str), encoding="utf-8")


def run(
    data: Dataset,
    recipe: str,
    overrides: list[str],
    tag: str,
    model: Path | None = None,
    keep_model: Path | None = None,
    predict_overrides: list[str] | None = None,
    vectorize_overrides: list[str] | None = None,
    labelled_chips: str = "",
    upsample: float = 1.0,
) -> dict[str, Any]:
    """Train (or reuse ``model``), detect and evaluate once; return the record."""
    for pattern in (data.train, data.test):
        if not any(DATA.glob(pattern)):
            raise SystemExit(f"Benchmark data not found: {DATA / pattern}; set FOOTPRINT_DATA")
    progress = TerminalProgress()
    predict_settings = _overrides(InferenceOptions, predict_overrides or [])
    vectorize_settings = _overrides(PolygonOptions, vectorize_overrides or [])
    with tempfile.TemporaryDirectory(prefix="footprint-bench-") as tmp:
        work = Path(tmp)
        (work / "train").mkdir()
        (work / "test").mkdir()
        part = (
            _reuse(model)
            if model
            else _train(data, recipe, overrides, work, progress, labelled_chips, upsample)
        )
        if keep_model:
            _keep(part, keep_model)
        test_vrt = resolve_raster(str(DATA / data.test), workdir=str(work / "test"))
        prob = work / "probability.tif"
        buildings = str(work / "buildings.gpkg")
        config = DetectConfig(
            test_vrt,
            part["model"],
            buildings,
            keep_probability=str(prob),
            **predict_settings,
            **vectorize_settings,
        )
        start = time.monotonic()
        detected = detect(config, progress)
        detect_s = time.monotonic() - start
        labels = str(_labels(data))
        scores = evaluate(EvaluateConfig(buildings, labels, area=str(prob)), progress)
        spread = chip_spread(buildings, labels, DATA / data.test)
        picture = ROOT / "docs" / "images" / f"accuracy_{tag}.jpg"
        _picture(str(DATA / data.picture), labels, buildings, picture)
    return {
        **{k: v for k, v in part.items() if k != "model"},
        "tag": tag,
        "dataset": data.description,
        "predict": predict_settings,
        "vectorize": vectorize_settings,
        "detected": detected,
        "scores": scores,
        "spread": spread,
        "detect_s": detect_s,
        "hardware": _hardware(),
        "picture": str(picture.relative_to(ROOT)),
        "command": "python bench/accuracy.py " + shlex.join(sys.argv[1:]),
    }


def chip_spread(
    buildings: str, labels: str, test: Path, resamples: int = 2000
) -> dict[str, Any] | None:
    """95% bootstrap intervals of pixel IoU and building F1 over the test chips (resampled
    with replacement, counts summed), or None with fewer than two chips. Chips without a
    reference building (their scores are undefined) are left out and counted."""
    import numpy as np

    from engine.errors import LabelsError

    chips = sorted(test.glob("*.tif")) if test.is_dir() else []
    rows, empty = [], 0
    for chip in chips:
        try:
            s = evaluate(EvaluateConfig(buildings, labels, area=str(chip)), NullProgress())
        except LabelsError as exc:
            if "no reference buildings" not in str(exc):
                raise
            empty += 1
            continue
        c, o = s["pixel_counts"], s["object"]
        rows.append([c["tp"], c["fp"], c["fn"], o["tp"], o["fp"], o["fn"]])
    if len(rows) < 2:
        return None
    counts = np.asarray(rows, dtype=np.float64)
    rng = np.random.default_rng(0)
    sums = counts[rng.integers(0, len(rows), (resamples, len(rows)))].sum(axis=1)
    iou = sums[:, 0] / np.maximum(sums[:, :3].sum(axis=1), 1)
    f1 = 2 * sums[:, 3] / np.maximum(2 * sums[:, 3] + sums[:, 4] + sums[:, 5], 1)
    return {
        "chips": len(rows),
        "chips_without_buildings": empty,
        "resamples": resamples,
        "pixel_iou": [float(np.percentile(iou, 2.5)), float(np.percentile(iou, 97.5))],
        "object_f1": [float(np.percentile(f1, 2.5)), float(np.percentile(f1, 97.5))],
    }


def _picture(chips: str, labels: str, polygons: str, out: Path) -> None:
    """Test chips with predicted and reference outlines, as a JPEG."""
    from PIL import Image

    png = out.with_suffix(".png")
    render_preview(chips, polygons, str(png), reference=labels, max_side=800, overwrite=True)
    Image.open(png).convert("RGB").save(out, quality=82)
    png.unlink()


def record(result: dict[str, Any]) -> str:
    """Markdown section for docs/BENCHMARKS.md."""
    s = result["scores"]
    lines = [
        f"### accuracy: {result['tag']} ({time.strftime('%Y-%m-%d')})",
        "",
        f"- data: {result['dataset']}",
        f"- command: `{result['command']}`",
        f"- hardware: {result['hardware']}",
        f"- settings: `{json.dumps(result['settings'], default=str)}`",
        f"- prediction: `{json.dumps(result['predict'])}`, vectorizing:"
        f" `{json.dumps(result['vectorize'])}` (no threshold: the model's)",
        f"- training {result['train_s']:.0f} s ({result['trained']['epochs_run']} epochs,"
        f" {result['train_s'] / max(1, result['trained']['epochs_run']):.0f} s/epoch, best"
        f" {result['trained']['best_epoch']}, threshold {result['trained']['threshold']:.2f});"
        f" detection {result['detect_s']:.1f} s",
        "",
        "| pixel P | pixel R | pixel F1 | pixel IoU | pixel acc | bldg P | bldg R | bldg F1 |"
        " merges | splits |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        "| "
        + " | ".join(
            f"{s[k]:.3f}"
            for k in (
                "pixel_precision",
                "pixel_recall",
                "pixel_f1",
                "pixel_iou",
                "pixel_accuracy",
                "object_precision",
                "object_recall",
                "object_f1",
            )
        )
        + f" | {s.get('merges', '-')} | {s.get('splits', '-')} |",
        "",
        _spread_line(result.get("spread")),
        f"![test chips]({Path(result['picture']).relative_to('docs')})",
        "",
    ]
    return "\n".join(lines)


def _spread_line(spread: dict[str, Any] | None) -> str:
    """The bootstrap intervals as a sentence ('' without them)."""
    if not spread:
        return ""
    iou, f1 = spread["pixel_iou"], spread["object_f1"]
    return (
        f"95% bootstrap intervals over the {spread['chips']} test chips"
        f" ({spread['resamples']} resamples): pixel IoU {iou[0]:.3f}-{iou[1]:.3f}, building F1"
        f" {f1[0]:.3f}-{f1[1]:.3f}.\n"
    )


def append_record(text: str) -> None:
    """Print a markdown record and append it to docs/BENCHMARKS.md."""
    print(text)
    with open(ROOT / "docs" / "BENCHMARKS.md", "a", encoding="utf-8") as out:
        out.write("\n" + text)


def main() -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", choices=sorted(DATASETS), default="banepa")
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="cpu")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Override a TrainConfig field.",
    )
    parser.add_argument("--predict", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--vectorize", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--model", type=Path, help="Reuse a model kept with --keep-model.")
    parser.add_argument("--keep-model", type=Path, help="Keep the trained model here.")
    parser.add_argument("--tag", default=None, help="Name of this run (default: the recipe).")
    parser.add_argument(
        "--labelled-chips",
        default="",
        metavar="GLOB",
        help="Train with the labels complete only over these chips (a glob under the data).",
    )
    parser.add_argument(
        "--train-upsample",
        type=float,
        default=1.0,
        metavar="F",
        help="Train on the train mosaic warped to F times its resolution (bilinear): the model "
        "then runs at that finer resolution, and detect resamples the test chips to it.",
    )
    args = parser.parse_args()
    if args.model and (args.overrides or args.train_upsample != 1.0):
        parser.error("--set changes training; it cannot go with --model")
    tag = args.tag or args.recipe
    result = run(
        DATASETS[args.data],
        args.recipe,
        args.overrides,
        tag,
        args.model,
        args.keep_model,
        args.predict,
        args.vectorize,
        args.labelled_chips,
        args.train_upsample,
    )
    append_record(record(result))
    records = ROOT / "docs" / "benchmarks" / "accuracy"
    records.mkdir(parents=True, exist_ok=True)
    (records / f"{tag}.json").write_text(
        json.dumps(result, indent=1, default=str) + "\n", encoding="utf-8"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
