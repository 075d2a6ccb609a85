"""The shipped starter model: it loads, is the version its record names, and has the spec its
card states (structural checks only; its scores are measured by scripts/make_starter_model.py)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from engine.models.modelfile import load_model, read_spec

MODELS = Path(__file__).resolve().parents[2] / "resources" / "models"
MODEL = MODELS / "footprint-starter.pt"
RECORD = MODELS / "footprint-starter.json"
#: What the README's model card says: RGB bands of 8-bit imagery, applied at 0.15 m, one class
#: for buildings and one for the strips that separate touching buildings.
CARD = {
    "resolution_m": 0.15,
    "bands": [1, 2, 3],
    "input_dtype": "uint8",
    "classes": ["building", "separation"],
}


@pytest.fixture(scope="module")
def record() -> dict[str, Any]:
    """The JSON record written beside the model by the script."""
    return dict(json.loads(RECORD.read_text(encoding="utf-8")))


def test_shipped_model_loads_with_the_engines_loader() -> None:
    model, spec = load_model(MODEL)
    assert not model.training
    x = torch.zeros(1, spec.in_channels, 64, 64)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (1, len(spec.classes), 64, 64)
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_shipped_model_is_the_recorded_version(record: dict[str, Any]) -> None:
    assert record["file"] == MODEL.name
    assert hashlib.sha256(MODEL.read_bytes()).hexdigest() == record["sha256"]
    assert MODEL.stat().st_size == record["bytes"]


def test_shipped_model_has_the_spec_of_its_card(record: dict[str, Any]) -> None:
    spec = read_spec(MODEL)
    actual = {
        "resolution_m": spec.resolution_m,
        "bands": list(spec.bands),
        "input_dtype": spec.input_dtype,
        "classes": list(spec.classes),
    }
    assert actual == CARD
    assert {k: record["spec"][k] for k in CARD} == CARD
    assert record["spec"]["architecture"] == spec.architecture
    assert record["spec"]["encoder"] == spec.encoder


def test_shipped_model_is_small_enough_for_the_plugin_zip() -> None:
    assert MODEL.stat().st_size < 15 * 1024 * 1024
