"""The evaluate command: pixel and building scores on hand-built layers with known answers."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pytest
import shapely
from affine import Affine
from shapely.geometry import Polygon, box

from engine.config import EvaluateConfig
from engine.errors import CancelledError, ConfigError, InputError, LabelsError, OutputError
from engine.evaluate import count_pixels, evaluate, pixel_grid
from engine.events import RecordingProgress
from engine.scoring.metrics import ConfusionCounts
from tests.engine.conftest import UTM, WGS84

X0, Y0 = 740_000.0, 3_730_000.0  # Atlanta, UTM zone 16N


def at(x0: float, y0: float, x1: float, y1: float) -> Polygon:
    """A box in metres relative to (X0, Y0)."""
    return box(X0 + x0, Y0 + y0, X0 + x1, Y0 + y1)


def run(tmp_path: Path, **fields: Any) -> dict[str, Any]:
    """Evaluate with ``fields`` (paths as Path or str); return the result."""
    args: dict[str, Any] = {k: str(v) if isinstance(v, Path) else v for k, v in fields.items()}
    config = EvaluateConfig(**args)
    return evaluate(config, RecordingProgress())


@pytest.fixture
def offset_pair(labels_factory: Callable[..., Path]) -> tuple[Path, Path]:
    """A 10 m square predicted 2 m east of its 10 m reference square."""
    return labels_factory("pred.gpkg", [at(2, 0, 12, 10)]), labels_factory(
        "ref.gpkg", [at(0, 0, 10, 10)]
    )


def test_offset_squares_known_scores(tmp_path: Path, offset_pair: tuple[Path, Path]) -> None:
    pred, ref = offset_pair
    r = run(tmp_path, predicted=pred, reference=ref)  # area: both layers' bounds, 0.25 m
    # 12 x 10 m = 48 x 40 px; overlap 8 x 10 m = 32 x 40 px; 8 x 40 px on each side
    assert r["pixel_counts"] == {"tp": 1280, "fp": 320, "fn": 320, "tn": 0}
    assert r["pixel"] == pytest.approx(
        {"precision": 0.8, "recall": 0.8, "f1": 0.8, "iou": 2 / 3, "accuracy": 2 / 3}
    )
    assert r["object"]["mean_iou_matched"] == pytest.approx(2 / 3)
    assert (r["object"]["tp"], r["object"]["fp"], r["object"]["fn"]) == (1, 0, 0)
    assert r["object_f1"] == 1.0 and r["pixel_iou"] == pytest.approx(2 / 3)
    assert (r["predicted"], r["reference"], r["output"], r["report"]) == (1, 1, None, None)
    r7 = run(tmp_path, predicted=pred, reference=ref, iou_threshold=0.7, resolution=0.5)
    assert r7["object_f1"] == 0.0 and r7["pixel_counts"]["tp"] == 320


def test_a_shifted_reference_is_lined_up_within_the_largest_shift(
    tmp_path: Path, offset_pair: tuple[Path, Path]
) -> None:
    pred, ref = offset_pair  # the prediction 2 m east of the reference
    r = run(tmp_path, predicted=pred, reference=ref, max_shift_m=3)
    assert r["reference_shift"] == {
        "east_m": 2.0,
        "north_m": 0.0,
        "max_shift_m": 3,
        "pixel_iou_unshifted": pytest.approx(2 / 3),
        "pixel_iou_shifted": 1.0,
    }
    assert r["pixel_iou"] == 1.0 and r["object"]["mean_iou_matched"] == 1.0
    # never further than asked: 1 m east of 2 is the best within reach (9 of 11 m overlap)
    near = run(tmp_path, predicted=pred, reference=ref, max_shift_m=1)
    assert near["reference_shift"]["east_m"] == 1.0
    assert near["pixel_iou"] == pytest.approx(9 / 11)
    assert run(tmp_path, predicted=pred, reference=ref)["reference_shift"] is None


def test_largest_shift_out_of_range_is_refused(
    tmp_path: Path, offset_pair: tuple[Path, Path]
) -> None:
    pred, ref = offset_pair
    with pytest.raises(ConfigError, match="from 0 \\(off\\) to 10 m"):
        run(tmp_path, predicted=pred, reference=ref, max_shift_m=12)


def test_split_prediction_and_duplicates(
    tmp_path: Path, labels_factory: Callable[..., Path]
) -> None:
    ref = labels_factory("ref.gpkg", [at(0, 0, 10, 10), at(30, 0, 40, 10)])
    pred = labels_factory(
        "pred.gpkg",
        [at(0, 0, 4.9, 10), at(5.1, 0, 10, 10), at(30, 0, 40, 10), at(30.5, 0, 40, 10)],
    )
    r = run(tmp_path, predicted=pred, reference=ref)
    assert (r["object"]["tp"], r["object"]["fp"], r["object"]["fn"]) == (1, 3, 1)
    assert r["object_precision"] == 0.25 and r["object_recall"] == 0.5


def test_geographic_inputs_score_like_their_utm_equivalent(
    tmp_path: Path, labels_factory: Callable[..., Path]
) -> None:
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 200, size=(25, 2))
    refs = [at(x, y, x + 12, y + 9) for x, y in xy]
    preds = [shapely.affinity.translate(g, *rng.uniform(-4, 4, 2)) for g in refs]
    utm = run(
        tmp_path,
        predicted=labels_factory("p.gpkg", preds),
        reference=labels_factory("r.gpkg", refs),
    )
    geo_pred = gpd.GeoSeries(preds, crs=UTM).to_crs(WGS84)
    geo_ref = gpd.GeoSeries(refs, crs=UTM).to_crs(WGS84)
    geo = run(
        tmp_path,
        predicted=labels_factory("p.geojson", list(geo_pred), crs=WGS84),
        reference=labels_factory("r.gpkg", list(geo_ref), crs=WGS84),
        output=tmp_path / "status.gpkg",
    )
    assert geo["working_crs"] == "EPSG:32616"
    assert 0 < utm["object"]["tp"] < 25
    for key in ("tp", "fp", "fn"):
        assert geo["object"][key] == utm["object"][key]
    assert geo["object"]["mean_iou_matched"] == pytest.approx(
        utm["object"]["mean_iou_matched"], abs=1e-3
    )
    for key, value in utm["pixel"].items():
        assert geo["pixel"][key] == pytest.approx(value, abs=0.01), key
    assert gpd.read_file(tmp_path / "status.gpkg").crs == WGS84


@pytest.fixture
def edge_scene(labels_factory: Callable[..., Path]) -> tuple[Path, Path]:
    """Buildings around the line x = 50 m: inside, mostly inside, mostly outside, outside."""
    refs = [at(10, 10, 20, 20), at(44, 10, 54, 20), at(47, 30, 57, 40), at(70, 10, 80, 20)]
    preds = [at(10, 10, 20, 20), at(44, 10, 54, 20), at(47, 30, 57, 40), at(70, 10, 80, 20)]
    return labels_factory("pred.gpkg", preds), labels_factory("ref.gpkg", refs)


def test_area_raster_clips_objects_by_representative_point_and_pixels(
    tmp_path: Path, edge_scene: tuple[Path, Path], raster_factory: Callable[..., Path]
) -> None:
    pred, ref = edge_scene
    # 50 x 50 m at 0.5 m: x from X0 to X0 + 50, y from Y0 to Y0 + 50
    area = raster_factory(
        "area.tif", np.ones((100, 100), np.uint8), transform=Affine(0.5, 0, X0, 0, -0.5, Y0 + 50)
    )
    r = run(tmp_path, predicted=pred, reference=ref, area=area)
    assert (r["predicted"], r["reference"]) == (2, 2)
    assert r["resolution_m"] == 0.5
    # pixels inside x < 50 only: 20x20 + 12x20 + 6x20 px of building, the rest of 100x100
    assert r["pixel_counts"] == {"tp": 760, "fp": 0, "fn": 0, "tn": 10_000 - 760}


def test_clip_to_area_scores_the_parts_of_buildings_inside_the_area(
    tmp_path: Path, labels_factory: Callable[..., Path], raster_factory: Callable[..., Path]
) -> None:
    # a raster's extent (x < 50 m) cuts the predictions; the reference goes on beyond it
    refs = [at(10, 10, 20, 20), at(47, 30, 57, 40), at(49, 0, 60, 2), at(49.5, 45, 60, 46)]
    refs.append(at(20, 40, 20.5, 41))  # a 0.5 m² shed wholly inside: counted either way
    preds = [at(10, 10, 20, 20), at(47, 30, 50, 40)]
    pred, ref = labels_factory("pred.gpkg", preds), labels_factory("ref.gpkg", refs)
    area = raster_factory(
        "area.tif", np.ones((100, 100), np.uint8), transform=Affine(0.5, 0, X0, 0, -0.5, Y0 + 50)
    )
    whole = run(tmp_path, predicted=pred, reference=ref, area=area)
    # whole buildings, by representative point: the cut prediction is false, its building
    # (mostly outside) not counted
    assert (whole["predicted"], whole["reference"]) == (2, 2)
    assert (whole["object"]["tp"], whole["object"]["fp"], whole["object"]["fn"]) == (1, 1, 1)
    assert whole["clip_to_area"] is False
    layer = tmp_path / "cut.gpkg"
    cut = run(tmp_path, predicted=pred, reference=ref, area=area, clip_to_area=True, output=layer)
    # parts inside: 3 x 10 m of the second building matches the cut prediction; the third's
    # 1 x 2 m inside is missed; the fourth's 0.5 x 1 m sliver is under 1 m² and left out
    assert (cut["predicted"], cut["reference"]) == (2, 4)
    assert (cut["object"]["tp"], cut["object"]["fp"], cut["object"]["fn"]) == (2, 0, 2)
    assert cut["missed_causes"]["missed"] == 2
    assert cut["clip_to_area"] is True
    assert cut["pixel_counts"] == whole["pixel_counts"]  # pixels count inside the area anyway
    # the evaluation layer shows the parts scored
    frame = gpd.read_file(layer)
    missed = frame[frame["status"] == "FN"]
    assert sorted(missed.area.round(3)) == [0.5, 2.0]
    assert sorted(frame[frame["status"] == "TP"].area.round(3)) == [30.0, 100.0]


def test_clip_to_area_without_a_part_inside_is_refused(
    tmp_path: Path, labels_factory: Callable[..., Path], raster_factory: Callable[..., Path]
) -> None:
    pred = labels_factory("pred.gpkg", [at(10, 10, 20, 20)])
    ref = labels_factory("ref.gpkg", [at(10, 10, 20, 20), at(49.5, 45, 60, 46)])
    area = raster_factory(
        "area.tif",
        np.ones((100, 100), np.uint8),
        transform=Affine(0.5, 0, X0 + 59.5, 0, -0.5, Y0 + 50),
    )  # x from 59.5 m: of the reference only a 0.5 x 1 m sliver lies inside
    with pytest.raises(LabelsError, match="has a part of 1 m² or more inside it"):
        run(tmp_path, predicted=pred, reference=ref, area=area, clip_to_area=True)


def test_area_polygon_in_another_crs(
    tmp_path: Path, edge_scene: tuple[Path, Path], labels_factory: Callable[..., Path]
) -> None:
    pred, ref = edge_scene
    half = gpd.GeoSeries([at(0, 0, 25, 50), at(25, 0, 50, 50)], crs=UTM).to_crs(WGS84)
    area = labels_factory("area.geojson", list(half), crs=WGS84)
    r = run(tmp_path, predicted=pred, reference=ref, area=area, resolution=0.5)
    assert (r["predicted"], r["reference"]) == (2, 2)
    assert r["pixel_counts"]["tp"] == pytest.approx(760, abs=40)  # edge reprojected, not exact
    assert r["pixel_counts"]["fp"] == r["pixel_counts"]["fn"] == 0


def test_output_layer_statuses(tmp_path: Path, labels_factory: Callable[..., Path]) -> None:
    refs = [at(0, 0, 10, 10), at(20, 0, 30, 10), at(60, 0, 70, 10)]
    preds = [at(40, 0, 50, 10), at(1, 0, 11, 10), at(20, 0, 24, 10)]
    out = tmp_path / "status.geojson"
    r = run(
        tmp_path,
        predicted=labels_factory("p.shp", preds),
        reference=labels_factory("r.gpkg", refs),
        output=out,
        report=tmp_path / "scores.json",
    )
    layer = gpd.read_file(out)
    assert r["output"] == str(out)
    assert layer.crs == UTM
    assert list(layer["status"]) == ["FP", "TP", "FP", "FN", "FN"]
    assert list(layer["layer"]) == ["predicted"] * 3 + ["reference"] * 2
    assert list(layer["feature"]) == [0, 1, 2, 1, 2]
    assert layer["iou"].tolist() == pytest.approx([0, 9 / 11, 0.4, 0.4, 0])
    assert layer["match_id"].iloc[1] == 0 and layer["match_id"].drop(index=1).isna().all()
    # why: nothing under the first; the third lies on a building whose 40% it covers
    assert layer["cause"].fillna("").tolist() == ["extra", "", "outline", "missed", "missed"]
    assert r["false_causes"] == {"merge": 0, "split": 0, "extra": 1, "outline": 1}
    assert r["missed_causes"] == {"merge": 0, "split": 0, "missed": 2, "outline": 0}
    assert layer.geometry.iloc[3].equals(refs[1])
    saved = json.loads((tmp_path / "scores.json").read_text())
    assert saved["object"] == r["object"] and saved["object_f1"] == pytest.approx(1 / 3)


def test_overwrite_rules_and_atomic_output(tmp_path: Path, offset_pair: tuple[Path, Path]) -> None:
    pred, ref = offset_pair
    out = tmp_path / "status.gpkg"
    out.write_text("old")
    with pytest.raises(OutputError, match="already exists"):
        run(tmp_path, predicted=pred, reference=ref, output=out)
    assert out.read_text() == "old"
    run(tmp_path, predicted=pred, reference=ref, output=out, overwrite=True)
    assert len(gpd.read_file(out, layer="status")) == 1
    with pytest.raises(OutputError, match="extension"):
        run(tmp_path, predicted=pred, reference=ref, output=tmp_path / "x.unknown")
    with pytest.raises(OutputError, match="is the reference layer"):
        run(tmp_path, predicted=pred, reference=ref, output=ref, overwrite=True)
    config = EvaluateConfig(str(pred), str(ref), output=str(tmp_path / "new.gpkg"), resolution=0.1)
    with pytest.raises(CancelledError):
        evaluate(config, RecordingProgress(cancel_after=0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pred.gpkg", "ref.gpkg", "status.gpkg"]


def test_metrics_and_logs_are_reported(tmp_path: Path, offset_pair: tuple[Path, Path]) -> None:
    progress = RecordingProgress()
    evaluate(EvaluateConfig(str(offset_pair[0]), str(offset_pair[1])), progress)
    metrics = {name: value for name, value, _ in progress.metrics}
    assert metrics["pixel_iou"] == pytest.approx(2 / 3) and metrics["object_f1"] == 1.0
    assert {"pixel_precision", "pixel_accuracy", "object_recall", "mean_iou_matched"} <= set(
        metrics
    )
    assert progress.percents[-1] == 100 and any("IoU >= 0.5" in m for m in progress.messages)
    assert not any(m.startswith("Why") for m in progress.messages)  # nothing missed or false


def test_the_log_says_why_buildings_are_missed(
    tmp_path: Path, labels_factory: Callable[..., Path]
) -> None:
    refs = [at(0, 0, 10, 10), at(10, 0, 20, 10), at(20, 0, 30, 10), at(60, 0, 70, 10)]
    pred = labels_factory("p.gpkg", [at(0, 0, 30, 10)])  # three houses in one polygon
    progress = RecordingProgress()
    config = EvaluateConfig(str(pred), str(labels_factory("r.gpkg", refs)), resolution=0.5)
    evaluate(config, progress)
    why = [m for m in progress.messages if m.startswith("Why")]
    assert why == [
        "Why: of the 4 missed, 3 merged with a neighbour, 1 mostly not found; of the 1 false,"
        " 1 merging two or more buildings."
    ]
    config = replace(config, output=str(tmp_path / "e.gpkg"))
    evaluate(config, progress := RecordingProgress())
    assert any("evaluation layer's cause field" in m for m in progress.messages)


def test_windowed_counts_equal_single_window() -> None:
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 90, size=(40, 2))
    geoms = shapely.box(xy[:, 0], xy[:, 1], xy[:, 0] + 8, xy[:, 1] + 6)
    pred = shapely.affinity.rotate(shapely.union_all(geoms[:20]), 10).geoms  # overlapping, merged
    pred = np.asarray(list(pred), dtype=object)
    ref = geoms[20:]
    area = Polygon([(0, 0), (100, 10), (60, 95)])  # not a rectangle: the valid mask matters
    grid = pixel_grid(area, 0.3)
    whole = count_pixels(pred, ref, area, grid, window=100_000)
    windowed = count_pixels(pred, ref, area, grid, window=37)
    assert windowed == whole
    assert min(whole.tp, whole.fp, whole.fn, whole.tn) > 0
    assert whole.tp + whole.fp + whole.fn + whole.tn == pytest.approx(area.area / 0.09, rel=0.01)
    assert count_pixels(pred, ref, area, grid, 37) != ConfusionCounts()


def test_invalid_and_non_polygon_features(
    tmp_path: Path, labels_factory: Callable[..., Path]
) -> None:
    bowtie = Polygon([(X0, Y0), (X0 + 10, Y0 + 10), (X0 + 10, Y0), (X0, Y0 + 10)])
    pred = labels_factory("p.gpkg", [bowtie, shapely.LineString([(X0, Y0), (X0 + 5, Y0)])])
    ref = labels_factory("r.gpkg", [Polygon([(X0, Y0), (X0 + 5, Y0 + 5), (X0, Y0 + 10)])])
    r = run(tmp_path, predicted=pred, reference=ref, iou_threshold=0.4)
    assert r["predicted"] == 1 and r["object"]["mean_iou_matched"] == pytest.approx(0.5)


def test_input_errors(
    tmp_path: Path, offset_pair: tuple[Path, Path], labels_factory: Callable[..., Path]
) -> None:
    pred, ref = offset_pair
    with pytest.raises(LabelsError, match="does not exist"):
        run(tmp_path, predicted=tmp_path / "missing.gpkg", reference=ref)
    garbage = tmp_path / "garbage.gpkg"
    garbage.write_text("not a geopackage")
    with pytest.raises(LabelsError, match="cannot be read"):
        run(tmp_path, predicted=garbage, reference=ref)
    with pytest.warns(UserWarning, match="crs"):
        no_crs = labels_factory("nocrs.shp", [at(0, 0, 1, 1)], crs=None)
    with pytest.raises(LabelsError, match="no coordinate reference system"):
        run(tmp_path, predicted=pred, reference=no_crs)
    far = labels_factory("far.gpkg", [at(5000, 5000, 5100, 5100)])
    with pytest.raises(InputError, match="does not overlap"):
        run(tmp_path, predicted=pred, reference=ref, area=far)
    only_pred = labels_factory("only_pred.gpkg", [at(11, 0, 13, 10)])
    with pytest.raises(LabelsError, match="area contains no reference buildings"):
        run(tmp_path, predicted=pred, reference=ref, area=only_pred)
    with pytest.raises(ConfigError, match="IoU threshold"):
        run(tmp_path, predicted=pred, reference=ref, iou_threshold=0)
    with pytest.raises(ConfigError, match="Resolution"):
        run(tmp_path, predicted=pred, reference=ref, resolution=-1.0)


def test_empty_prediction_scores_zero(tmp_path: Path, labels_factory: Callable[..., Path]) -> None:
    empty = tmp_path / "empty.gpkg"
    gpd.GeoDataFrame({"id": []}, geometry=[], crs=UTM).to_file(empty)
    r = run(tmp_path, predicted=empty, reference=labels_factory("r.gpkg", [at(0, 0, 10, 10)]))
    assert r["predicted"] == 0 and r["object"]["fn"] == 1
    assert r["object_f1"] == r["pixel_f1"] == r["pixel_precision"] == 0.0


def test_real_labels_against_themselves_and_shifted(tmp_path: Path, shared_data: Path) -> None:
    folder = shared_data / "atlanta_sn4"
    labels = folder / "geotiff_labels.geojson"
    same = run(tmp_path, predicted=labels, reference=labels, area=folder / "sample_geotiff.tif")
    assert same["reference"] == 43 and same["resolution_m"] == 0.5
    for key in ("precision", "recall", "f1", "iou", "accuracy"):
        assert same[f"pixel_{key}"] == 1.0
    assert same["object_f1"] == 1.0 and same["object"]["mean_iou_matched"] == pytest.approx(1.0)
    frame = gpd.read_file(labels)
    frame["geometry"] = frame.translate(3.0, 0.0)
    shifted_path = tmp_path / "shifted.gpkg"
    frame.to_file(shifted_path)
    shifted = run(tmp_path, predicted=shifted_path, reference=labels)
    assert 0 < shifted["object_f1"] < 1.0
    assert 0 < shifted["pixel_iou"] < 1.0
    assert shifted["object"]["tp"] + shifted["object"]["fn"] == 43
    lined_up = run(tmp_path, predicted=shifted_path, reference=labels, max_shift_m=4)
    assert lined_up["reference_shift"]["east_m"] == pytest.approx(3.0)
    assert lined_up["reference_shift"]["north_m"] == pytest.approx(0.0)
    assert lined_up["object_f1"] == 1.0 and lined_up["pixel_iou"] > 0.99
