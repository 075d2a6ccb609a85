"""``improve``: fine-tuning on a mapper's corrections inside the area checked, with before/after
scores on a held-back part. Generated imagery: bright squares (roofs) on a dark noisy ground."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
import torch
from shapely.geometry import box

from engine import improve as improve_module
from engine.config import ImproveConfig, PredictConfig, TrainConfig
from engine.errors import CancelledError, ConfigError, LabelsError, OutputError
from engine.events import RecordingProgress
from engine.improve import held_back_part
from engine.models.modelfile import load_model, save_model
from engine.predict import predict
from engine.train import train
from engine.training.dataset import open_sources
from tests.engine.conftest import UTM, write_labels, write_raster

SIZE = 384  # pixels a side, 0.5 m each (write_raster's grid)
X0, Y0, PX = 500_000.0, 3_700_000.0, 0.5
TILE = 32


def px(c0: float, r0: float, c1: float, r1: float) -> Any:
    """A box from pixel columns/rows on write_raster's default grid."""
    return box(X0 + c0 * PX, Y0 - r1 * PX, X0 + c1 * PX, Y0 - r0 * PX)


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Imagery with a grid of bright squares, their labels, and a model trained on them."""
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("improve")
    rng = np.random.default_rng(0)
    image = rng.normal(60, 8, (3, SIZE, SIZE))
    squares = []
    for r in range(8, SIZE - 24, 40):
        for c in range(8, SIZE - 24, 40):
            image[:, r : r + 16, c : c + 16] += 120
            squares.append(px(c, r, c + 16, r + 16))
    raster = write_raster(folder / "imagery.tif", np.clip(image, 0, 255).astype(np.uint8))
    labels = write_labels(folder / "buildings.gpkg", squares)
    config = TrainConfig(
        rasters=(str(raster),),
        labels=(str(labels),),
        output=str(folder / "start.pt"),
        architecture="compact",
        tile_size=TILE,
        stride=TILE,
        epochs=3,
        lr=0.01,
        device="cpu",
        separation=False,
        augment=False,
    )
    train(config, RecordingProgress())
    return {"raster": raster, "labels": labels, "model": Path(config.output), "folder": folder}


def improve_config(scene: dict[str, Path], tmp_path: Path, **changes: Any) -> ImproveConfig:
    values: dict[str, Any] = {
        "raster": str(scene["raster"]),
        "labels": str(scene["labels"]),
        "checked_area": str(write_labels(tmp_path / "checked.gpkg", [px(0, 0, 192, SIZE)])),
        "output": str(tmp_path / "improved.pt"),
        "model": str(scene["model"]),
        "epochs": 2,
        "lr": 0.01,
        "device": "cpu",
    }
    values.update(changes)
    return ImproveConfig(**values)


def building_share(raster: Path, model: str, where: Any, out: Path) -> float:
    """Share of the pixels of ``where`` (pixel box) that ``model`` calls building (>= 0.5)."""
    predict(PredictConfig(str(raster), model, str(out), device="cpu"), RecordingProgress())
    with rasterio.open(out) as src:
        data = src.read(1)
    c0, r0, c1, r1 = where
    return float((data[r0:r1, c0:c1] >= 0.5).mean())


def test_deleting_every_building_in_the_area_checked_teaches_background(
    scene: dict[str, Path], tmp_path: Path
) -> None:
    # the mapper deleted all detections on the left half: no building is left in the layer
    empty = write_labels(tmp_path / "none.gpkg", [])
    config = improve_config(scene, tmp_path, labels=str(empty), epochs=6, lr=3e-3)
    progress = RecordingProgress()
    result = improve_module.improve(config, progress)
    assert result["buildings"] == 0
    left = (0, 0, 192, SIZE)
    before = building_share(scene["raster"], str(scene["model"]), left, tmp_path / "b.tif")
    after = building_share(scene["raster"], result["output"], left, tmp_path / "a.tif")
    assert result["improved"] and after < before
    verdict = [m for m in progress.messages if "held back" in m][-1]
    assert verdict.startswith("The part held back holds no corrected building")


@pytest.mark.parametrize("kind", ["points", "elsewhere"])
def test_corrections_without_a_polygon_over_the_imagery_are_refused(
    scene: dict[str, Path], tmp_path: Path, kind: str
) -> None:
    """Points only, or polygons all off the imagery: a mistake, not "no building here"."""
    if kind == "points":
        geoms = [px(10, 10, 20, 20).centroid, px(50, 50, 60, 60).centroid]
        why = "2 feature\\(s\\) read, 2 of them not polygons"
    else:
        geoms = [box(0, 0, 10, 10), box(20, 0, 30, 10)]
        why = "2 feature\\(s\\) read\\)"
    bad = write_labels(tmp_path / "bad.gpkg", geoms)
    with pytest.raises(LabelsError, match=f"no building polygon over the imagery.*{why}"):
        improve_module.improve(
            improve_config(scene, tmp_path, labels=str(bad)), RecordingProgress()
        )
    assert not (tmp_path / "improved.pt").exists()


def test_corrections_that_are_not_polygons_are_left_out_with_a_log_line(
    scene: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(improve_module, "train", _stop)
    mixed = write_labels(tmp_path / "mixed.gpkg", [px(8, 8, 24, 24), px(50, 50, 60, 60).centroid])
    progress = RecordingProgress()
    with pytest.raises(ConfigError, match="stop here"):
        improve_module.improve(improve_config(scene, tmp_path, labels=str(mixed)), progress)
    assert any("1 feature(s) of" in m and "left out" in m for m in progress.messages)
    assert any("Corrections: 1 building(s)" in m for m in progress.messages)


def test_a_stopped_improve_leaves_no_checkpoint(scene: dict[str, Path], tmp_path: Path) -> None:
    """Improve does not resume, so the checkpoint of a cancelled run would only be debris."""

    class AfterFirstEpoch(RecordingProgress):
        def is_canceled(self) -> bool:
            return any(m.startswith("Epoch 1/") for m in self.messages)

    config = improve_config(scene, tmp_path, epochs=4)
    progress = AfterFirstEpoch()
    with pytest.raises(CancelledError):
        improve_module.improve(config, progress)
    assert any(m.startswith("Epoch 1/") for m in progress.messages)  # a checkpoint was saved
    assert not (tmp_path / "improved.pt").exists()
    assert not (tmp_path / "improved_report").exists()


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"output": "i.onnx"}, ConfigError, "name it .pt"),
        ({"model": "start.onnx"}, ConfigError, "ONNX export.*give the .pt"),
        ({"report_dir": "improved.pt"}, OutputError, "report folder .* is the output file's own"),
        ({"report_dir": "a_file.txt/report"}, OutputError, "a_file.txt is a file, not a folder"),
        ({"validation": "checked.gpkg"}, ConfigError, r"covers \(almost\) all of the area"),
    ],
)
def test_outputs_are_checked_before_any_training(
    scene: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    changes: dict[str, str], error: type[Exception], message: str,
) -> None:  # fmt: skip
    monkeypatch.setattr(improve_module, "train", _stop)  # reaching training is the failure
    (tmp_path / "a_file.txt").write_text("not a folder")
    paths = {k: str(tmp_path / v) for k, v in changes.items()}
    with pytest.raises(error, match=message):
        improve_module.improve(improve_config(scene, tmp_path, **paths), RecordingProgress())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file.txt", "checked.gpkg"]


def test_a_failed_improve_leaves_an_earlier_checkpoint_alone(
    scene: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(improve_module, "train", _stop)
    report = tmp_path / "mine"
    report.mkdir()
    (report / "checkpoint.pt").write_bytes(b"a run of mine to resume")
    with pytest.raises(ConfigError, match="stop here"):
        improve_module.improve(
            improve_config(scene, tmp_path, report_dir=str(report)), RecordingProgress()
        )
    assert (report / "checkpoint.pt").read_bytes() == b"a run of mine to resume"


def test_the_verdict_says_what_decided() -> None:
    before = {"val_building_f1": 0.6501, "val_iou": 0.7, "val_loss": 0.300}
    after = {"val_building_f1": 0.6504, "val_iou": 0.7, "val_loss": 0.350}
    close = improve_module._verdict(before, after, "val_building_f1", True)
    assert "0.6501 before, 0.6504 after" in close and "decided" not in close
    tied = improve_module._verdict(
        before, {**after, "val_building_f1": 0.6501}, "val_building_f1", False
    )
    assert "The same building F1: the validation loss 0.300 before, 0.350 after decided" in tied


def _stop(config: TrainConfig, progress: Any) -> Any:
    raise ConfigError("stop here")


def test_report_scores_the_starting_and_the_improved_model_on_the_held_back_part(
    scene: dict[str, Path], tmp_path: Path
) -> None:
    progress = RecordingProgress()
    result = improve_module.improve(improve_config(scene, tmp_path), progress)
    # the area checked is 6 x 12 cells of the model's 32-px tile: a quarter held back
    assert result["val_windows"] == 18
    assert set(result["before"]) == set(result["after"]) and "val_iou" in result["before"]
    report = json.loads(Path(result["report"], "improve.json").read_text())
    assert report["before"] == result["before"] and report["after"] == result["after"]
    ranked = [(r["val_iou"], -r["val_loss"]) for r in (result["before"], result["after"])]
    assert report["improved"] == (ranked[1] > ranked[0])
    assert any(m.startswith("On the part held back:") for m in progress.messages)
    assert Path(result["output"]).is_file()


def test_held_back_part_is_whole_cells_at_one_end_of_the_area(tmp_path: Path) -> None:
    raster = write_raster(tmp_path / "r.tif", np.zeros((3, SIZE, SIZE), np.uint8))
    (source,) = open_sources(TrainConfig((str(raster),), ("x",), "m.pt"))
    checked = px(32, 64, 32 + 8 * TILE, 64 + 2 * TILE)  # 8 x 2 cells, wider than tall
    part = held_back_part(checked, source, TILE, 0.25)
    assert part.area == pytest.approx(4 * (TILE * PX) ** 2)
    assert part.within(checked)
    assert part.bounds[2] == pytest.approx(checked.bounds[2])  # at the east end
    whole = held_back_part(checked, source, TILE, 0.99)
    assert whole.area < checked.area  # one cell is always left to train on


def test_an_area_checked_too_small_to_hold_a_part_back_names_the_ways_out(
    scene: dict[str, Path], tmp_path: Path
) -> None:
    small = write_labels(tmp_path / "small.gpkg", [px(40, 40, 60, 60)])
    with pytest.raises(ConfigError, match="too small to hold a part back"):
        improve_module.improve(
            improve_config(scene, tmp_path, checked_area=str(small)), RecordingProgress()
        )
    assert not (tmp_path / "improved.pt").exists()


def test_an_area_checked_outside_the_imagery_is_refused(
    scene: dict[str, Path], tmp_path: Path
) -> None:
    far = write_labels(tmp_path / "far.gpkg", [box(0, 0, 10, 10)], crs=UTM)
    with pytest.raises(ConfigError, match="lies outside the imagery"):
        improve_module.improve(
            improve_config(scene, tmp_path, checked_area=str(far)), RecordingProgress()
        )


def test_buildings_outside_the_area_checked_are_taught_with_unknown_surroundings(
    scene: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[TrainConfig] = []

    def capture(config: TrainConfig, progress: Any) -> Any:
        seen.append(config)
        raise ConfigError("stop here")

    monkeypatch.setattr(improve_module, "train", capture)
    with pytest.raises(ConfigError, match="stop here"):
        improve_module.improve(improve_config(scene, tmp_path), RecordingProgress())
    (config,) = seen
    assert config.labelled_area is not None and config.validation is not None
    labelled = shapely.union_all(gpd.read_file(config.labelled_area).geometry.to_numpy())
    outside = px(328, 8, 344, 24)  # a labelled square on the right half, not checked
    assert labelled.contains(outside.buffer(-0.01))
    assert not labelled.contains(px(300, 40, 320, 60))  # its ground is not taught
    assert config.init_model == str(scene["model"]) and config.schedule == "constant"


@pytest.mark.parametrize(
    ("field", "what"),
    [
        ("model", "starting model"),
        ("raster", "imagery"),
        ("labels", "corrected building layer"),
        ("checked_area", "area checked layer"),
    ],
)
def test_the_improved_model_may_not_replace_an_input(
    scene: dict[str, Path], tmp_path: Path, field: str, what: str
) -> None:
    config = improve_config(scene, tmp_path, overwrite=True)
    before = Path(getattr(config, field)).read_bytes()
    config = replace(config, output=getattr(config, field))
    with pytest.raises(OutputError, match=what):
        improve_module.improve(config, RecordingProgress())
    assert Path(getattr(config, field)).read_bytes() == before


def test_a_model_with_the_old_contact_class_is_not_trained_on(
    scene: dict[str, Path], tmp_path: Path
) -> None:
    """Models made before the separation class still detect (test_detect), but neither improve
    nor train starts from them: the message names the way out and nothing is written."""
    network, spec = load_model(scene["model"])
    old = tmp_path / "contact.pt"
    save_model(old, network, replace(spec, classes=("building", "contact")))
    with pytest.raises(ConfigError, match="contact class.*starter model"):
        improve_module.improve(improve_config(scene, tmp_path, model=str(old)), RecordingProgress())
    tuned = TrainConfig(
        rasters=(str(scene["raster"]),),
        labels=(str(scene["labels"]),),
        output=str(tmp_path / "tuned.pt"),
        init_model=str(old),
        device="cpu",
    )
    with pytest.raises(ConfigError, match="contact class.*starter model"):
        train(tuned, RecordingProgress())
    assert not (tmp_path / "improved.pt").exists() and not (tmp_path / "tuned.pt").exists()


def test_the_starter_model_is_the_default_start(
    scene: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FOOTPRINT_STARTER_MODEL", str(scene["model"]))
    seen: list[TrainConfig] = []

    def capture(config: TrainConfig, progress: Any) -> Any:
        seen.append(config)
        raise ConfigError("stop here")

    monkeypatch.setattr(improve_module, "train", capture)
    progress = RecordingProgress()
    with pytest.raises(ConfigError, match="stop here"):
        improve_module.improve(improve_config(scene, tmp_path, model=None), progress)
    assert seen[0].init_model == str(scene["model"])
    assert any("starter model" in m.lower() for m in progress.messages)


def test_when_the_corrections_do_not_help_the_starting_model_is_written(
    scene: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def worse(config: TrainConfig, progress: Any) -> Any:
        Path(config.output).write_bytes(b"a fine-tuned model")
        report = Path(config.output).with_name("improved_report")
        report.mkdir()
        (report / "summary.json").write_text(json.dumps({"weights_sha256": "abc", "best_epoch": 1}))
        scores = {"val_iou": 0.5}
        return {
            "output": config.output,
            "report": str(report),
            "before": {"val_iou": 0.6},
            "after": scores,
            "epochs_run": 1,
            "train_windows": 4,
            "val_windows": 2,
        }

    monkeypatch.setattr(improve_module, "train", worse)
    progress = RecordingProgress()
    result = improve_module.improve(improve_config(scene, tmp_path), progress)
    assert not result["improved"]
    assert Path(result["output"]).read_bytes() == scene["model"].read_bytes()
    assert any("the starting model unchanged" in m for m in progress.messages)
    summary = json.loads(Path(result["report"], "summary.json").read_text())
    assert summary["model_written"].startswith(f"the starting model {scene['model']}, unchanged")
    assert summary["discarded_weights_sha256"] == "abc" and "weights_sha256" not in summary
