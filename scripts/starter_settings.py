"""Re-choose the shipped starter model's seed settings with train's rule, keeping its weights.

    .venv/bin/python scripts/starter_settings.py [--out DIR]

Rebuilds the starter's validation windows (``scripts/make_starter_model.py``'s places and
labelled area, train's split and seed), chooses the seed settings at the model's building
threshold as ``train`` chooses them (``choose_settings``: building F1 over the buildings the
windows show whole), writes them and their validation scores into a copy of the shipped file
and ships that copy as ``make_starter_model.py`` does (Banepa test scores, ONNX export, the
JSON card). For when train's rule changes (2026-12-04) and the weights need not: the shipped
settings are then those training would choose today, without a new training run.
"""

from __future__ import annotations

import argparse
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
from engine.detect import model_settings  # noqa: E402
from engine.events import NullProgress  # noqa: E402
from engine.models.modelfile import load_model, read_spec  # noqa: E402
from engine.models.spec import spec_to_json  # noqa: E402
from engine.train import Loop, build_training_data, resolve_encoder_weights  # noqa: E402
from engine.training.postprocess import choose_settings, grid  # noqa: E402
from engine.training.state import seed_everything  # noqa: E402


def validation_windows(places: list[str], work: Path):  # type: ignore[no-untyped-def]
    """The starter's validation windows with the shipped weights' probabilities."""
    prepared = [starter.prepare(p, work) for p in places]
    area = starter.union_area([a for _, a in prepared], work / "final_area.geojson")
    config = TrainConfig(
        rasters=tuple(str(r) for r, _ in prepared),
        labels=tuple(str(starter.DATA / starter.PLACES[p][1]) for p in places),
        output=str(work / "unused.pt"),
        labelled_area=str(area),
    )
    config = replace(config, encoder_weights=resolve_encoder_weights(config))
    seed_everything(config.seed)
    data = build_training_data(config, NullProgress())
    seed_everything(config.seed)
    loop = Loop(config, data, torch.device("cpu"))
    loop.bare.load_state_dict(load_model(starter.SHIPPED)[0].state_dict())
    windows = loop.validate(NullProgress()).windows
    assert windows is not None, "the starter model has a separation class"
    return windows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "starter")
    args = parser.parse_args()
    work: Path = args.out
    work.mkdir(parents=True, exist_ok=True)
    card = json.loads(starter.SHIPPED.with_suffix(".json").read_text(encoding="utf-8"))
    old = read_spec(starter.SHIPPED)
    windows = validation_windows(list(card["trained_on"]), work)
    settings, counts, _ = choose_settings(windows, old.threshold, grid([old.threshold]))
    before = windows.score(model_settings(old))
    starter.log(
        f"shipped: {old.seed_threshold}, {old.seed_erosion_m} m, {old.min_seed_m2} m²"
        f" (validation building F1 {before.f1:.4f}); chosen now: {settings.describe()}"
        f" (validation building F1 {counts.f1:.4f})"
    )
    new = replace(
        old,
        seed_threshold=settings.seed_threshold,
        seed_erosion_m=settings.seed_erosion_m,
        min_seed_m2=settings.min_seed_m2,
        metrics={
            **old.metrics,
            "building_precision": counts.precision,
            "building_recall": counts.recall,
            "building_f1": counts.f1,
        },
    )
    payload = torch.load(starter.SHIPPED, map_location="cpu", weights_only=True)
    payload["spec"] = spec_to_json(new)
    model = work / "final_resettled.pt"
    torch.save(payload, model)
    record = {"places": card["trained_on"], "command": card["command"]}
    starter.ship(model, starter.banepa_test(model, work), work, record)
    shipped = starter.SHIPPED.with_suffix(".json")
    new_card = json.loads(shipped.read_text(encoding="utf-8"))
    new_card["settings"] = {
        "chosen_by": "scripts/starter_settings.py (train's rule of 2026-12-04: whole buildings)",
        "before": [old.seed_threshold, old.seed_erosion_m, old.min_seed_m2],
        "after": [settings.seed_threshold, settings.seed_erosion_m, settings.min_seed_m2],
        "trained": card["date"],
    }
    shipped.write_text(json.dumps(new_card, indent=1, default=str) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
