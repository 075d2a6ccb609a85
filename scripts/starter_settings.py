"""Re-choose a starter model's seed settings and smallest building with train's rules, keeping
its weights, and ship it.

    .venv/bin/python scripts/starter_settings.py [--model FINAL.pt] [--out DIR]

``--model``: the shipped starter (default) or a final model that ``make_starter_model.py``
made (its ``.train.json`` beside it names its places and command). Rebuilds the model's
validation windows (``scripts/make_starter_model.py``'s places and labelled area, train's
split and seed), chooses the seed settings at the model's building threshold as ``train``
chooses them (``choose_settings``: building F1 over the buildings the windows show whole),
then the smallest building (``choose_min_area``, the same way), writes them and their
validation scores into a copy of the model file and ships that copy as
``make_starter_model.py`` does (Banepa test scores, ONNX export, the JSON card). For when
train's rules change (2026-12-04: whole buildings; 2026-12-05: the smallest building) and the
weights need not: the shipped settings are then those training would choose today, without a
new training run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import make_starter_model as starter  # noqa: E402

from engine.config import TrainConfig  # noqa: E402
from engine.events import NullProgress  # noqa: E402
from engine.models.modelfile import load_model, read_spec  # noqa: E402
from engine.models.spec import spec_to_json  # noqa: E402
from engine.polygons.instances import InstanceSettings  # noqa: E402
from engine.train import Loop, build_training_data, resolve_encoder_weights  # noqa: E402
from engine.training.postprocess import choose_min_area, choose_settings, grid  # noqa: E402
from engine.training.state import seed_everything  # noqa: E402


def validation_windows(places: list[str], work: Path, model: Path):  # type: ignore[no-untyped-def]
    """The starter's validation windows with ``model``'s probabilities."""
    prepared = [starter.prepare(p, work) for p in places]
    area = starter.union_area([a for _, a in prepared], work / "final_area.geojson")
    config = TrainConfig(
        rasters=tuple(str(r) for r, _ in prepared),
        labels=tuple(str(starter.DATA / starter.PLACES[p][1]) for p in places),
        output=str(work / "unused.pt"),
        labelled_area=str(area),
    )
    # the decoder widths the model was made with (--decoder-channels)
    config = replace(config, decoder_channels=read_spec(model).decoder_channels)
    config = replace(config, encoder_weights=resolve_encoder_weights(config))
    seed_everything(config.seed)
    data = build_training_data(config, NullProgress())
    seed_everything(config.seed)
    loop = Loop(config, data, torch.device("cpu"))
    loop.bare.load_state_dict(load_model(model)[0].state_dict())
    windows = loop.validate(NullProgress()).windows
    assert windows is not None, "the starter model has a separation class"
    return windows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=starter.SHIPPED)
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "starter")
    args = parser.parse_args()
    work: Path = args.out
    work.mkdir(parents=True, exist_ok=True)
    made = args.model.with_suffix(".train.json")
    source = made if made.is_file() else starter.SHIPPED.with_suffix(".json")
    card = json.loads(source.read_text(encoding="utf-8"))
    places = list(card.get("trained_on") or card["places"])
    old = read_spec(args.model)
    windows = validation_windows(places, work, args.model)
    settings, _, whole = choose_settings(windows, old.threshold, grid([old.threshold]))
    settings, counts = choose_min_area(windows, settings, whole)
    before = windows.score(InstanceSettings.of_model(old))
    starter.log(
        f"before: {old.seed_threshold}, {old.seed_erosion_m} m, {old.min_seed_m2} m²,"
        f" buildings of {old.min_area_m2:g} m² (validation building F1 {before.f1:.4f});"
        f" chosen now: {settings.describe()} (validation building F1 {counts.f1:.4f})"
    )
    new = replace(
        old,
        seed_threshold=settings.seed_threshold,
        seed_erosion_m=settings.seed_erosion_m,
        min_seed_m2=settings.min_seed_m2,
        min_area_m2=settings.min_area_m2,
        metrics={
            **old.metrics,
            "building_precision": counts.precision,
            "building_recall": counts.recall,
            "building_f1": counts.f1,
        },
    )
    payload = torch.load(args.model, map_location="cpu", weights_only=True)
    payload["spec"] = spec_to_json(new)
    model = work / "final_resettled.pt"
    torch.save(payload, model)
    record = {"places": places, "command": card["command"]}
    trained = (card.get("settings") or {}).get("trained") or card.get("date")
    trained = trained or datetime.date.fromtimestamp(args.model.stat().st_mtime).isoformat()
    starter.ship(model, starter.banepa_test(model, work), work, record)
    shipped = starter.SHIPPED.with_suffix(".json")
    new_card = json.loads(shipped.read_text(encoding="utf-8"))
    new_card["settings"] = {
        "chosen_by": "scripts/starter_settings.py (train's rules of 2026-12-04: whole"
        " buildings; 2026-12-05: the smallest building)",
        "before": [old.seed_threshold, old.seed_erosion_m, old.min_seed_m2, old.min_area_m2],
        "after": [
            settings.seed_threshold,
            settings.seed_erosion_m,
            settings.min_seed_m2,
            settings.min_area_m2,
        ],
        "trained": str(trained),
    }
    shipped.write_text(json.dumps(new_card, indent=1, default=str) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
