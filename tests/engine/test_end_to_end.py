"""End to end on real imagery through the command line: train, detect, evaluate.

Scores of a briefly trained compact model must be far above those of the same model untrained.
Skipped (with the reason) when ../shared/data is absent.
"""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import pytest
import shapely
import torch

from engine.models.modelfile import read_spec, save_model
from engine.models.registry import create_model
from tests.engine.test_cli import run_cli

pytestmark = pytest.mark.slow


def _untrained_copy(model_path: Path, out: Path) -> Path:
    """The same architecture and spec as ``model_path`` with fresh random weights."""
    spec = read_spec(model_path)
    torch.manual_seed(123)
    model = create_model(spec.architecture, spec.encoder, spec.in_channels, len(spec.classes))
    save_model(out, model, spec)
    return out


def _detect_and_evaluate(raster: str, model: Path, labels: str, out: Path, tag: str) -> dict:
    polygons = out / f"{tag}.gpkg"
    result = run_cli(
        "detect",
        "--events",
        "quiet",
        "--raster",
        raster,
        "--model",
        str(model),
        "--output",
        str(polygons),
        "--keep-probability",
        str(out / f"{tag}.tif"),
    )
    assert result.returncode == 0, result.stderr
    report = out / f"{tag}.json"
    result = run_cli(
        "evaluate",
        "--events",
        "quiet",
        "--predicted",
        str(polygons),
        "--reference",
        labels,
        "--area",
        str(out / f"{tag}.tif"),
        "--report",
        str(report),
    )
    assert result.returncode == 0, result.stderr
    return json.loads(report.read_text())


def _train(raster: str, labels: str, out: Path, *extra: str) -> Path:
    model = out / "model.pt"
    result = run_cli(
        "train",
        "--events",
        "json",
        "--raster",
        raster,
        "--labels",
        labels,
        "--output",
        str(model),
        "--architecture",
        "compact",
        *extra,
        timeout=3600,  # a hang guard only: alone here 3-4 minutes, on a shared or slow CPU far more
    )
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events[-1]["event"] == "result"
    assert any(e["event"] == "metric" for e in events)
    assert (Path(events[-1]["result"]["report"]) / "history.json").is_file()
    return model


def test_banepa_train_detect_evaluate(shared_data: Path, tmp_path: Path) -> None:
    small = shared_data / "banepa_2x2"
    labels = str(small / "banepa_2x2_buildings.geojson")
    model = _train(
        str(small / "banepa_2x2_rgb_jpeg.tif"),
        labels,
        tmp_path,
        "--tile-size",
        "256",
        "--epochs",
        "20",
        "--batch-size",
        "8",
        "--lr",
        "0.01",
    )
    test_chips = shared_data / "banepa" / "test" / "oam"
    chips = sorted(test_chips.glob("OAM-386694-22024[12]-19.tif"))
    assert len(chips) == 2
    all_labels = str(shared_data / "banepa" / "labels" / "buildings_banepa_osm.geojson")
    glob = str(test_chips / "OAM-386694-22024[12]-19.tif")
    trained = _detect_and_evaluate(glob, model, all_labels, tmp_path, "trained")
    untrained = _detect_and_evaluate(
        glob, _untrained_copy(model, tmp_path / "untrained.pt"), all_labels, tmp_path, "untrained"
    )
    # Dense town: about half the test area is roof, so the masks that need no learning (every
    # pixel building, or none) already score IoU ~0.48 or accuracy ~0.52. What training
    # guarantees is beating them, and the untrained network, clearly (seeds 1-3 here, one with
    # AVX2-only kernels: IoU 0.60-0.68 against 0.48, accuracy 0.74-0.81 against 0.52).
    counts = trained["pixel_counts"]
    roof = (counts["tp"] + counts["fn"]) / sum(counts.values())
    assert trained["pixel_iou"] > roof + 0.05, (roof, trained)  # the all-building mask's IoU
    assert trained["pixel_accuracy"] > max(roof, 1 - roof) + 0.1, (roof, trained)
    assert trained["pixel_iou"] > untrained["pixel_iou"] + 0.1, (trained, untrained)
    assert trained["pixel_accuracy"] > untrained["pixel_accuracy"] + 0.1, (trained, untrained)
    # the default separation class: one polygon per building, valid, neighbours not overlapping
    assert read_spec(model).classes == ("building", "separation")
    polygons = gpd.read_file(tmp_path / "trained.gpkg").geometry.values
    assert len(polygons) > 0 and shapely.is_valid(polygons).all()
    union = shapely.union_all(polygons)
    assert shapely.area(polygons).sum() == pytest.approx(union.area, rel=1e-6)
    assert {"merges", "splits"} <= set(trained)


def test_atlanta_single_band_uint16_utm(shared_data: Path, tmp_path: Path) -> None:
    """The 16-bit, single-band, projected-CRS path learns: a compact model fitted to the one
    image (nothing held out, no augmentation) reproduces its buildings, where the same model
    untrained finds none. Fitting one image is what training guarantees, so the gap is wide on
    any machine (seeds 1-3 here: pixel F1 0.94, building F1 0.93; untrained 0 and 0); a model
    that must generalise from 3/4 of the image to the rest is measured in bench/, not here."""
    folder = shared_data / "atlanta_sn4"
    raster, labels = str(folder / "sample_geotiff.tif"), str(folder / "geotiff_labels.geojson")
    model = _train(
        raster,
        labels,
        tmp_path,
        "--tile-size",
        "128",
        "--epochs",
        "40",
        "--batch-size",
        "8",
        "--lr",
        "0.01",
        "--val-fraction",
        "0",
        "--no-augment",
        "--empty-keep-fraction",
        "1",
        "--no-separation",  # the one-class path (Banepa above trains with the separation class)
    )
    spec = read_spec(model)
    assert spec.in_channels == 1 and spec.input_dtype == "uint16"
    assert spec.resolution_m == pytest.approx(0.5, rel=0.01)
    trained = _detect_and_evaluate(raster, model, labels, tmp_path, "trained")
    untrained = _detect_and_evaluate(
        raster, _untrained_copy(model, tmp_path / "untrained.pt"), labels, tmp_path, "untrained"
    )
    for score in ("pixel_f1", "pixel_iou", "object_f1"):
        assert trained[score] > untrained[score] + 0.5, (score, trained, untrained)
