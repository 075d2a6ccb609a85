"""The smallest building kept, chosen on validation as train chooses it (issue 29).

    .venv/bin/python bench/min_area_choice.py starter:NAME [...] banepa:MODEL.pt:SEED [...]
        [--work DIR] [--out FILE.json]
    .venv/bin/python bench/min_area_choice.py --markdown FILE.json

``starter:NAME``: a model made by ``scripts/make_starter_model.py`` in ``--work`` (default
/work/runs/starter), ``loro_<place>-...`` (scored on the left-out place's ``--zooms`` chips,
by default z20, ~15 cm, the model's own resolution) or ``final...`` (on the Banepa test
chips); the probability its detection there kept is reused. ``banepa:MODEL.pt:SEED``: a model
of ``bench/accuracy.py --recipe default --set seed=SEED`` (detected here on the Banepa test
chips).

For each model it rebuilds the validation windows (the same places, split and seed as in
training), chooses the smallest building with the model's own seed settings as train does
since 2026-12-05 (:func:`engine.training.postprocess.choose_min_area`: building F1 over the
buildings the windows show whole; a smaller building joins the neighbour it touches most, or
is dropped alone), vectorizes the test probability with those settings at 4 m² (detect's
smallest building before) and at the chosen area, and prints both scores; the record also
keeps evaluate's causes of each missed and false building (``--markdown`` tables them).
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "scripts"))

import make_starter_model as starter  # noqa: E402
from accuracy import DATA, DATASETS, _config, _labels  # noqa: E402

from engine.config import DetectConfig, EvaluateConfig, TrainConfig, VectorizeConfig  # noqa: E402
from engine.detect import detect  # noqa: E402
from engine.evaluate import evaluate  # noqa: E402
from engine.events import NullProgress  # noqa: E402
from engine.geo.rasters import resolve_raster  # noqa: E402
from engine.models.modelfile import load_model, read_spec  # noqa: E402
from engine.polygons.instances import InstanceSettings  # noqa: E402
from engine.scoring.metrics import FALSE_CAUSES, MISSED_CAUSES  # noqa: E402
from engine.train import Loop, build_training_data, resolve_encoder_weights  # noqa: E402
from engine.training.postprocess import (  # noqa: E402
    MIN_AREAS,
    MIN_WHOLE,
    ValidationWindows,
    choose_min_area,
)
from engine.training.state import seed_everything  # noqa: E402
from engine.vectorize import vectorize  # noqa: E402

#: A test: (kept probability raster, reference labels, area scored: polygons or a raster).
Test = tuple[Path, Path, Path]
#: The zooms of a left-out place scored by default (z20, ~15 cm, the starter's resolution;
#: detect labels the probability on the chips' own grid, as vectorize does here).
ZOOMS = ("z20",)


def windows_of(config: TrainConfig, model: Path) -> ValidationWindows:
    """``model``'s probabilities on the validation windows of ``config`` (as training saw
    them: the same split for the same seed)."""
    # the decoder widths the model was made with (--decoder-channels)
    config = replace(config, decoder_channels=read_spec(str(model)).decoder_channels)
    config = replace(config, encoder_weights=resolve_encoder_weights(config))
    seed_everything(config.seed)
    data = build_training_data(config, NullProgress())
    seed_everything(config.seed)
    loop = Loop(config, data, torch.device("cpu"))
    loop.bare.load_state_dict(load_model(str(model))[0].state_dict())
    windows = loop.validate(NullProgress()).windows
    if windows is None:
        raise SystemExit(f"{model} has no separation class: train chooses no area for it")
    return windows


def starter_case(
    name: str, work: Path, zooms: tuple[str, ...] = ZOOMS
) -> tuple[TrainConfig, Path, dict[str, Test]]:
    """The training config, model and tests of a model made by make_starter_model.py."""
    record = json.loads((work / f"{name}.train.json").read_text())
    places = list(record["places"])
    prepared = [starter.prepare(p, work) for p in places]
    seed = (
        int(record["command"].split("--seed ")[1].split()[0])
        if "--seed " in record["command"]
        else 0
    )
    config = TrainConfig(
        rasters=tuple(str(r) for r, _ in prepared),
        labels=tuple(str(DATA / starter.PLACES[p][1]) for p in places),
        output=str(work / "unused.pt"),
        labelled_area=str(work / f"{name}_area.geojson"),
        seed=seed,
    )
    if name.startswith("loro_"):
        left = next(p for p in starter.PLACES if p not in places)
        labels, area = DATA / starter.PLACES[left][1], work / f"{left}_area.geojson"
        tests = {z: (work / f"{name}_{z}" / "probability.tif", labels, area) for z in zooms}
    else:
        out = work / f"{name}_banepa_test"
        tests = {
            "banepa": (
                out / "buildings.gpkg",
                DATA / starter.PLACES["banepa"][1],
                out / "probability.tif",
            )
        }
    return config, work / f"{name}.pt", tests


def banepa_case(model: Path, seed: int, work: Path) -> tuple[TrainConfig, Path, dict[str, Test]]:
    """The training config, model and Banepa test of a bench/accuracy.py model (detected)."""
    data = DATASETS["banepa"]
    (work / "train").mkdir(parents=True, exist_ok=True)
    raster = resolve_raster(str(DATA / data.test), workdir=str(work))
    buildings, prob = work / "buildings.gpkg", work / "probability.tif"
    detect(
        DetectConfig(
            raster, str(model), str(buildings), keep_probability=str(prob), overwrite=True
        ),
        NullProgress(),
    )
    return (
        _config(data, "default", [f"seed={seed}"], work),
        model,
        {"banepa": (prob, _labels(data), prob)},
    )


def vectorize_with(prob: Path, out: Path, settings: InstanceSettings) -> None:
    """Vectorize the probability raster ``prob`` into ``out`` with ``settings``."""
    config = VectorizeConfig(
        str(prob),
        str(out),
        threshold=settings.threshold,
        seed_threshold=settings.seed_threshold,
        seed_erosion_m=settings.seed_erosion_m,
        min_seed_m2=settings.min_seed_m2,
        min_area_m2=settings.min_area_m2,
    )
    vectorize(config, NullProgress())


def test_scores(test: Test, settings: InstanceSettings) -> dict[str, dict[str, float]]:
    """Building P/R/F1, pixel IoU, merges and splits of the kept probability vectorized with
    ``settings`` at 4 m² (detect's smallest building before) and at the settings' own."""
    prob, labels, area = test
    scores = {}
    with tempfile.TemporaryDirectory(prefix="footprint-area-") as tmp:
        for smallest in sorted({MIN_AREAS[0], settings.min_area_m2}):
            out = Path(tmp) / f"{smallest:g}.gpkg"
            vectorize_with(prob, out, replace(settings, min_area_m2=smallest))
            s = evaluate(
                EvaluateConfig(str(out), str(labels), area=str(area), resolution=0.15),
                NullProgress(),
            )
            keys = ("object_precision", "object_recall", "object_f1", "pixel_iou")
            more = ("merges", "splits", "false_causes", "missed_causes")
            scores[f"{smallest:g}"] = {k: s[k] for k in (*keys, *more)}
    return scores


def markdown(record: dict[str, Any]) -> str:
    """The record as a table: per model and test, building F1, pixel IoU and splits at 4 m²
    and at the chosen area."""
    rows = [
        "| model | chosen | test | building F1 at 4 m² -> chosen | pixel IoU | merges / splits |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for model, found in record.items():
        chosen = f"{found['chosen_m2']:g}"
        for name, by_area in found["test"].items():
            a, b = by_area["4"], by_area[chosen]
            rows.append(
                f"| {Path(model).stem} | {chosen} m² | {name} | {a['object_f1']:.3f} ->"
                f" {b['object_f1']:.3f} | {a['pixel_iou']:.3f} -> {b['pixel_iou']:.3f} |"
                f" {a['merges']} / {a['splits']} -> {b['merges']} / {b['splits']} |"
            )
    return "\n".join(rows)


def causes_markdown(record: dict[str, Any]) -> str:
    """Why the buildings at the chosen area are missed or false (evaluate's causes), per
    model and test, as a table (records made before the causes were counted are skipped)."""
    rows = [
        "| model | test | missed: merge / split / missed / outline |"
        " false: merge / split / extra / outline |",
        "| --- | --- | --- | --- |",
    ]
    for model, found in record.items():
        for name, by_area in found["test"].items():
            scores = by_area[f"{found['chosen_m2']:g}"]
            if "missed_causes" in scores:
                missed = " / ".join(str(scores["missed_causes"][c]) for c in MISSED_CAUSES)
                false = " / ".join(str(scores["false_causes"][c]) for c in FALSE_CAUSES)
                rows.append(f"| {Path(model).stem} | {name} | {missed} | {false} |")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="*", help="starter:NAME or banepa:MODEL.pt:SEED")
    parser.add_argument("--work", type=Path, default=Path("/work/runs/starter"))
    parser.add_argument("--zooms", nargs="+", default=list(ZOOMS), help="Of a left-out place.")
    parser.add_argument("--out", type=Path, default=None, help="Write every score as JSON.")
    parser.add_argument("--markdown", type=Path, default=None, help="Print FILE.json as a table.")
    args = parser.parse_args()
    if args.markdown:
        models = json.loads(args.markdown.read_text())["models"]
        print(markdown(models) + "\n\n" + causes_markdown(models))
        return 0
    record: dict[str, Any] = {}
    for item in args.models:
        kind, rest = item.split(":", 1)
        with tempfile.TemporaryDirectory(prefix="footprint-area-") as tmp:
            if kind == "starter":
                config, model, tests = starter_case(rest, args.work, tuple(args.zooms))
            else:
                path, seed = rest.rsplit(":", 1)
                config, model, tests = banepa_case(Path(path), int(seed), Path(tmp))
            settings = InstanceSettings.of_model(read_spec(model))
            windows = windows_of(config, model)
            whole = windows.score(settings, whole=True).reference >= MIN_WHOLE
            val = {
                f"{a:g}": windows.score(replace(settings, min_area_m2=a), whole=whole).f1
                for a in MIN_AREAS
            }
            chosen_settings = choose_min_area(windows, settings, whole)[0]
            chosen = chosen_settings.min_area_m2
            tested = {name: test_scores(test, chosen_settings) for name, test in tests.items()}
        record[str(model)] = {"chosen_m2": chosen, "validation_f1": val, "test": tested}
        line = [f"{model.stem}: chosen {chosen:g} m²"]
        for name, by_area in tested.items():
            f1 = {a: s["object_f1"] for a, s in by_area.items()}
            iou = {a: s["pixel_iou"] for a, s in by_area.items()}
            line.append(
                f"{name} building F1 {f1['4']:.3f} -> {f1[f'{chosen:g}']:.3f}, pixel IoU"
                f" {iou['4']:.3f} -> {iou[f'{chosen:g}']:.3f}"
            )
        print(" | ".join(line), flush=True)
    if args.out:
        meta = {
            "command": shlex.join(["bench/min_area_choice.py", *sys.argv[1:]]),
            "date": datetime.date.today().isoformat(),
            "hardware": starter.hardware(),
        }
        args.out.write_text(json.dumps({"meta": meta, "models": record}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
