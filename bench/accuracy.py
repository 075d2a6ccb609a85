"""Accuracy benchmark on the Banepa data: train, detect on the test chips, evaluate there.

    .venv/bin/python bench/accuracy.py [--recipe cpu|gpu] [--set key=value ...] [--tag NAME]

Trains on the 32 train chips (one VRT mosaic), detects on the 16 test chips (another mosaic),
evaluates against the OSM labels on the test chips' extent only, and prints and appends to
docs/BENCHMARKS.md: pixel precision/recall/F1/IoU/accuracy, per-building precision/recall/F1 at
IoU >= 0.5, training and inference time, hardware, the exact command and the model settings.
A PNG of test chips with predicted (orange) and reference (cyan) outlines goes to
docs/images/accuracy_<tag>.jpg. ``--set`` overrides any TrainConfig field (e.g. ``--set
pos_weight=6 --set loss=jaccard+bce``), which is how the techniques are measured one by one.
Fails loudly when the data is missing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shlex
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
    PredictConfig,
    TrainConfig,
    VectorizeConfig,  # noqa: E402
)
from engine.detect import USE_MODEL_THRESHOLD, detect  # noqa: E402
from engine.evaluate import evaluate  # noqa: E402
from engine.events import TerminalProgress  # noqa: E402
from engine.preview import render_preview  # noqa: E402
from engine.rasters import resolve_raster  # noqa: E402
from engine.train import train  # noqa: E402

DATA = Path(os.environ.get("FOOTPRINT_DATA", ROOT.parent / "shared" / "data")) / "banepa"

RECIPES: dict[str, dict[str, Any]] = {
    # fits in 20 minutes on 2 CPU cores
    "cpu": {
        "architecture": "compact",
        "encoder": "none",
        "tile_size": 256,
        "epochs": 15,
        "batch_size": 8,
        "lr": 0.01,
    },
    # the H200 machine: a real encoder, longer
    "gpu": {
        "architecture": "unet",
        "encoder": "resnet34",
        "tile_size": 512,
        "epochs": 80,
        "batch_size": 16,
        "lr": 0.001,
        "boundary": True,
        "workers": 8,
    },
}


def _value(text: str) -> Any:
    """Parse a --set value: JSON when it parses (numbers, true/false), else a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _config(recipe: str, overrides: list[str], workdir: Path) -> TrainConfig:
    settings = dict(RECIPES[recipe])
    for item in overrides:
        key, _, value = item.partition("=")
        if key not in {f.name for f in dataclasses.fields(TrainConfig)}:
            raise SystemExit(f"--set {key}: not a TrainConfig field")
        settings[key] = _value(value)
    train_vrt = resolve_raster(str(DATA / "train" / "oam"), workdir=str(workdir / "train"))
    return TrainConfig(
        rasters=(train_vrt,), labels=(str(_labels()),), output=str(workdir / "model.pt"), **settings
    )


def _labels() -> Path:
    return next((DATA / "labels").glob("*.geojson"))


def _hardware() -> str:
    cpu = platform.processor() or platform.machine()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{os.cpu_count()} CPU cores ({cpu}), {gpu}, torch {torch.__version__}"


def run(recipe: str, overrides: list[str], tag: str) -> dict[str, Any]:
    """Train, detect and evaluate once; return the record."""
    if not (DATA / "train" / "oam").is_dir() or not (DATA / "test" / "oam").is_dir():
        raise SystemExit(f"Banepa data not found at {DATA}: set FOOTPRINT_DATA")
    progress = TerminalProgress()
    with tempfile.TemporaryDirectory(prefix="footprint-bench-") as tmp:
        work = Path(tmp)
        (work / "train").mkdir()
        (work / "test").mkdir()
        config = _config(recipe, overrides, work)
        start = time.monotonic()
        trained = train(config, progress)
        train_s = time.monotonic() - start
        test_vrt = resolve_raster(str(DATA / "test" / "oam"), workdir=str(work / "test"))
        prob = work / "probability.tif"
        predict = PredictConfig(test_vrt, config.output, str(prob))
        vec = VectorizeConfig("", str(work / "buildings.gpkg"), threshold=USE_MODEL_THRESHOLD)
        start = time.monotonic()
        detected = detect(DetectConfig(predict, vec, str(prob)), progress)
        detect_s = time.monotonic() - start
        scores = evaluate(EvaluateConfig(vec.output, str(_labels()), area=str(prob)), progress)
        picture = ROOT / "docs" / "images" / f"accuracy_{tag}.jpg"
        _picture(test_vrt, vec.output, picture)
    settings = {
        f.name: getattr(config, f.name)
        for f in dataclasses.fields(TrainConfig)
        if f.name not in ("rasters", "labels", "output", "report_dir")
    }
    return {
        "tag": tag,
        "recipe": recipe,
        "settings": settings,
        "trained": trained,
        "detected": detected,
        "scores": scores,
        "train_s": train_s,
        "detect_s": detect_s,
        "hardware": _hardware(),
        "picture": str(picture.relative_to(ROOT)),
        "command": "python bench/accuracy.py " + shlex.join(sys.argv[1:]),
    }


def _picture(test_vrt: str, polygons: str, out: Path) -> None:
    """Four test chips with outlines, as a JPEG."""
    from PIL import Image

    png = out.with_suffix(".png")
    chips = str(DATA / "test" / "oam" / "OAM-38669[45]-22024[34]-19.tif")
    render_preview(
        chips, polygons, str(png), reference=str(_labels()), max_side=800, overwrite=True
    )
    Image.open(png).convert("RGB").save(out, quality=82)
    png.unlink()


def record(result: dict[str, Any]) -> str:
    """Markdown section for docs/BENCHMARKS.md."""
    s = result["scores"]
    lines = [
        f"### accuracy: {result['tag']} ({time.strftime('%Y-%m-%d')})",
        "",
        f"- command: `{result['command']}`",
        f"- hardware: {result['hardware']}",
        f"- settings: `{json.dumps(result['settings'], default=str)}`",
        f"- training {result['train_s']:.0f} s ({result['trained']['epochs_run']} epochs, best"
        f" {result['trained']['best_epoch']}, threshold {result['trained']['threshold']:.2f});"
        f" detection on the 16 test chips {result['detect_s']:.1f} s",
        "",
        "| pixel P | pixel R | pixel F1 | pixel IoU | pixel acc | bldg P | bldg R | bldg F1 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
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
        + " |",
        "",
        f"![test chips]({Path(result['picture']).relative_to('docs')})",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="cpu")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Override a TrainConfig field.",
    )
    parser.add_argument("--tag", default=None, help="Name of this run (default: the recipe).")
    args = parser.parse_args()
    tag = args.tag or args.recipe
    result = run(args.recipe, args.overrides, tag)
    text = record(result)
    print(text)
    with open(ROOT / "docs" / "BENCHMARKS.md", "a", encoding="utf-8") as out:
        out.write("\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
