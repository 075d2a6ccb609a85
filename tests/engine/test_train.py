"""Training loop on a tiny synthetic dataset: learning, repeatability, resume, early stop,
cancel, report. The data comes from a fake ``build_training_data`` (bright squares on a dark,
noisy background), except in the end-to-end test at the bottom."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from engine import __version__
from engine import train as train_module
from engine.config import TrainConfig
from engine.errors import CancelledError, ConfigError, ModelFileError, OutputError
from engine.events import RecordingProgress
from engine.geo.normalize import BandStats
from engine.models.modelfile import load_model, read_spec, save_model
from engine.models.pretrained import OFFLINE
from engine.models.registry import create_model
from engine.polygons.instances import InstanceSettings
from engine.scoring.metrics import ConfusionCounts
from engine.training.dataset import TrainingData
from engine.training.finetune import freeze_statistics, set_encoder_trainable
from engine.training.losses import IGNORE, targets_for
from engine.training.postprocess import DEFAULT, MIN_AREAS, MIN_CHOICE, grid
from engine.training.state import ProbabilityHistogram

TILE = 32


class Squares(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Bright squares (buildings) on a dark noisy background; a nodata strip in every 3rd item."""

    def __init__(self, n: int, seed: int, channels: int = 2, contact: bool = False) -> None:
        rng = np.random.default_rng(seed)
        self.items = []
        for i in range(n):
            mask = np.zeros((TILE, TILE), np.uint8)
            for _ in range(rng.integers(1, 3)):
                s = int(rng.integers(6, 12))
                r, c = rng.integers(0, TILE - s, 2)
                mask[r : r + s, c : c + s] = 1
                if contact:
                    mask[r : r + s, c + s - 1] = 3  # a wall: building in the separation strip
            noise = rng.normal(0, 0.3, (channels, TILE, TILE))
            image = ((mask > 0) * 1.5 - 0.5 + noise).astype(np.float32)
            if i % 3 == 0:
                mask[:, :4] = IGNORE
                image[:, :, :4] = 0
            self.items.append((torch.from_numpy(image), torch.from_numpy(mask)))
        self.epochs: list[int] = []

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.items[index]

    def set_epoch(self, epoch: int) -> None:
        self.epochs.append(epoch)


def fake_data(contact: bool = False) -> TrainingData:
    return TrainingData(
        train=Squares(32, seed=1, contact=contact),  # type: ignore[arg-type]
        val=Squares(12, seed=2, contact=contact),  # type: ignore[arg-type]
        stats=BandStats((100.0, 90.0), (20.0, 25.0)),
        bands=(3, 1),
        resolution_m=0.5,
        input_dtype="uint16",
        classes=("building", "separation") if contact else ("building",),
        summary={"fake": True},
    )


@pytest.fixture(autouse=True)
def one_thread() -> Any:
    """Tiny models run as fast on one thread, and two threads crawl on a busy 2-core box."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[TrainConfig]:
    """Replace the data builder with the fake; record the configs it was called with."""
    seen: list[TrainConfig] = []

    def build(config: TrainConfig, progress: Any) -> TrainingData:
        seen.append(config)
        return fake_data(config.separation)

    monkeypatch.setattr(train_module, "build_training_data", build)
    return seen


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., TrainConfig]:
    def make(name: str = "model.pt", **changes: Any) -> TrainConfig:
        values: dict[str, Any] = dict(
            rasters=("unused.tif",),
            labels=("unused.gpkg",),
            output=str(tmp_path / name),
            architecture="compact",
            encoder="none",
            tile_size=TILE,
            epochs=4,
            batch_size=8,
            lr=0.01,
            device="cpu",
            seed=3,
            separation=False,  # one class unless a test asks for the separation class
        )
        values.update(changes)
        return TrainConfig(**values)

    return make


def history_losses(result: dict[str, Any]) -> list[tuple[float, ...]]:
    history = json.loads((Path(result["report"]) / "history.json").read_text())
    keys = ("epoch", "train_loss", "val_loss", "val_iou", "lr")
    return [tuple(record[k] for k in keys) for record in history]


def val_iou(model: torch.nn.Module, classes: tuple[str, ...]) -> float:
    hist = ProbabilityHistogram()
    model.eval()
    with torch.no_grad():
        for image, mask in DataLoader(fake_data().val, batch_size=6):  # type: ignore[arg-type]
            target, valid = targets_for(classes, mask)
            hist.add(torch.sigmoid(model(image)[:, 0]), target[:, 0] > 0.5, valid[:, 0])
    return hist.counts(0.5).iou


def test_training_learns_and_writes_model_and_report(
    calls: list[TrainConfig], make_config: Callable[..., TrainConfig]
) -> None:
    progress = RecordingProgress()
    config = make_config()
    result = train_module.train(config, progress)
    assert calls == [config]
    assert result["output"] == config.output and result["epochs_run"] == 4
    assert (result["train_windows"], result["val_windows"]) == (32, 12)
    torch.manual_seed(0)
    untrained = val_iou(create_model("compact", "none", 2, 1), ("building",))
    model, spec = load_model(config.output)
    trained = val_iou(model, ("building",))
    assert untrained < 0.3 < 0.7 < trained
    assert result["metrics"]["iou"] >= result["metrics"]["iou_at_0.5"] - 1e-9
    assert trained == pytest.approx(result["metrics"]["iou_at_0.5"])  # best epoch's weights
    assert spec.bands == (3, 1) and spec.mean == (100.0, 90.0) and spec.std == (20.0, 25.0)
    assert (spec.tile_size, spec.resolution_m, spec.input_dtype) == (TILE, 0.5, "uint16")
    assert spec.threshold == result["threshold"] and 0 < spec.threshold < 1
    assert spec.metrics == result["metrics"] and spec.engine_version == __version__
    report = Path(result["report"])
    assert report == Path(config.output).with_name("model_report")
    assert {p.name for p in report.iterdir()} == {
        "history.json",
        "summary.json",
        "loss.png",
        "metrics.png",
    }  # the checkpoint is removed after a finished run
    history = json.loads((report / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    assert {
        "train_loss",
        "val_loss",
        "val_precision",
        "val_recall",
        "val_f1",
        "val_iou",
        "val_accuracy",
        "lr",
        "seconds",
    } <= set(history[0])
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    best = max(history, key=lambda r: r["val_iou"])
    assert result["best_epoch"] == best["epoch"]
    assert json.loads((report / "summary.json").read_text())["data"] == {"fake": True}
    assert (report / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert ("val_iou", history[1]["val_iou"], 2) in progress.metrics
    assert progress.percents[-1] == 100.0
    estimates = [m for m in progress.messages if m.startswith("The first epoch took")]
    assert len(estimates) == 1 and "the 3 epochs left should take about" in estimates[0]


def test_duration_in_words() -> None:
    assert train_module._duration(44.6) == "45 s"
    assert train_module._duration(12 * 60 + 10) == "12 min"
    assert train_module._duration(65 * 60) == "1 h 05 min"


def test_cpu_runs_are_repeatable(
    calls: list[TrainConfig], make_config: Callable[..., TrainConfig]
) -> None:
    first = train_module.train(make_config("a.pt", epochs=3), RecordingProgress())
    second = train_module.train(make_config("b.pt", epochs=3), RecordingProgress())
    assert history_losses(first) == history_losses(second)
    third = train_module.train(make_config("c.pt", epochs=3, seed=4), RecordingProgress())
    assert history_losses(third) != history_losses(first)


@pytest.mark.parametrize("ema_decay", [0.0, 0.9])
def test_cancel_writes_no_model_and_resume_continues(
    calls: list[TrainConfig],
    make_config: Callable[..., TrainConfig],
    tmp_path: Path,
    ema_decay: float,
) -> None:
    whole = train_module.train(make_config("whole.pt", ema_decay=ema_decay), RecordingProgress())
    config = make_config("part.pt", ema_decay=ema_decay)
    # 4 training + 2 validation batches per epoch: cancel during the 3rd epoch.
    with pytest.raises(CancelledError):
        train_module.train(config, RecordingProgress(cancel_after=14))
    assert not Path(config.output).exists()
    checkpoint = Path(config.output).with_name("part_report") / "checkpoint.pt"
    assert checkpoint.is_file()
    progress = RecordingProgress()
    resumed = train_module.train(replace(config, resume=str(checkpoint)), progress)
    assert any("Resuming after epoch 2" in m for m in progress.messages)
    assert sum(m.startswith("Epoch ") for m in progress.messages) == 2  # epochs 3 and 4 only
    assert history_losses(resumed) == history_losses(whole)
    assert resumed["threshold"] == whole["threshold"] and resumed["epochs_run"] == 4
    assert read_spec(config.output).metrics == read_spec(whole["output"]).metrics


def test_resume_refuses_other_settings_and_bad_files(
    calls: list[TrainConfig], make_config: Callable[..., TrainConfig], tmp_path: Path
) -> None:
    config = make_config()
    with pytest.raises(CancelledError):
        train_module.train(config, RecordingProgress(cancel_after=8))
    checkpoint = str(Path(config.output).with_name("model_report") / "checkpoint.pt")
    with pytest.raises(ConfigError, match="epochs: 4 there, 6 now"):
        train_module.train(replace(config, resume=checkpoint, epochs=6), RecordingProgress())
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(ModelFileError, match="not a Footprint training checkpoint"):
        train_module.train(replace(config, resume=str(other)), RecordingProgress())
    payload = torch.load(checkpoint, weights_only=False)
    payload["run"]["decoder_channels"] = (64, 32, 16, 16, 8)
    torch.save(payload, checkpoint)
    there = r"decoder_channels: \(64, 32, 16, 16, 8\) there, \(\) now"
    with pytest.raises(ConfigError, match=there):
        train_module.train(replace(config, resume=checkpoint), RecordingProgress())
    # a checkpoint from before the decoder's widths were a setting: the default widths
    del payload["run"]["decoder_channels"]
    torch.save(payload, checkpoint)
    resumed = train_module.train(replace(config, resume=checkpoint), RecordingProgress())
    assert resumed["epochs_run"] == 4


def test_onnx_files_are_refused_before_any_work(
    calls: list[TrainConfig], make_config: Callable[..., TrainConfig], tmp_path: Path
) -> None:
    """Training reads and writes .pt files: an .onnx output or starting model is named."""
    with pytest.raises(ConfigError, match="name it .pt.*engine export"):
        train_module.train(make_config("m.onnx"), RecordingProgress())
    export = tmp_path / "start.onnx"
    export.write_bytes(b"an export")
    with pytest.raises(ConfigError, match="ONNX export.*give the .pt model file"):
        train_module.train(make_config(init_model=str(export)), RecordingProgress())
    with pytest.raises(ConfigError, match="unet, unetplusplus, manet only, not compact"):
        train_module.train(make_config(decoder_channels=(8, 8, 8, 8, 8)), RecordingProgress())
    assert not calls  # no data was read
    assert sorted(p.name for p in tmp_path.iterdir()) == ["start.onnx"]


def test_an_earlier_report_is_replaced_only_when_asked(
    calls: list[TrainConfig], make_config: Callable[..., TrainConfig]
) -> None:
    config = make_config(epochs=1)
    first = train_module.train(config, RecordingProgress())
    Path(config.output).unlink()  # the model deleted, its report kept
    history = Path(first["report"], "history.json").read_bytes()
    with pytest.raises(OutputError, match="holds an earlier run's report.*--overwrite"):
        train_module.train(config, RecordingProgress())
    assert Path(first["report"], "history.json").read_bytes() == history
    assert len(calls) == 1  # refused before reading any data
    train_module.train(replace(config, overwrite=True), RecordingProgress())
    assert Path(config.output).is_file()


def test_early_stopping(calls: list[TrainConfig], make_config: Callable[..., TrainConfig]) -> None:
    result = train_module.train(make_config(epochs=20, patience=1), RecordingProgress())
    history = json.loads((Path(result["report"]) / "history.json").read_text())
    assert result["epochs_run"] == len(history) < 20
    assert result["epochs_run"] == result["best_epoch"] + 1  # stopped after 1 epoch without gain
    assert history[-1]["val_iou"] <= max(r["val_iou"] for r in history[:-1])


def test_two_classes_sgd_cosine(
    calls: list[TrainConfig], make_config: Callable[..., TrainConfig]
) -> None:
    config = make_config(
        separation=True,
        optimizer="sgd",
        schedule="cosine",
        epochs=2,
        loss="focal+dice",
        pos_weight=2.0,
    )
    result = train_module.train(config, RecordingProgress())
    model, spec = load_model(config.output)
    assert spec.classes == ("building", "separation")
    assert model(torch.zeros(1, 2, TILE, TILE)).shape == (1, 2, TILE, TILE)
    assert result["epochs_run"] == 2
    history = json.loads((Path(result["report"]) / "history.json").read_text())
    f1 = [r["val_building_f1"] for r in history]
    best = history[result["best_epoch"] - 1]
    assert best["val_building_f1"] == max(f1)  # chosen by building F1, ties by IoU
    assert best["val_iou"] == max(r["val_iou"] for r in history if r["val_building_f1"] == max(f1))
    chosen = InstanceSettings(
        spec.threshold, spec.seed_threshold, spec.seed_erosion_m, spec.min_seed_m2
    )
    # the seeds + watershed settings from validation
    assert chosen in [replace(DEFAULT, threshold=chosen.threshold), *grid([chosen.threshold])]
    assert spec.min_area_m2 in MIN_AREAS  # and the smallest building
    assert spec.threshold == result["threshold"]
    assert 0.0 <= result["metrics"]["building_f1"] <= 1.0


def test_bad_settings_fail_before_reading_data(
    calls: list[TrainConfig], make_config: Callable[..., TrainConfig]
) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"optimizer": "adam"}, "adamw or sgd"),
        ({"schedule": "step"}, "onecycle"),
        ({"loss": "hinge"}, "bce"),
        ({"tile_size": 30}, "--tile-size 32"),
        ({"architecture": "unet", "encoder": "resnet0"}, "resnet34"),
        ({"epochs": 0}, "epochs"),
        ({"separation_width_m": 0.0}, "separation_width_m"),
        ({"balance": 1.5}, "balance must be from 0"),
        ({"ema_decay": 1.0}, "ema_decay must be from 0"),
    ]
    for changes, match in cases:
        with pytest.raises(ConfigError, match=match):
            train_module.train(make_config(**changes), RecordingProgress())
    existing = make_config()
    Path(existing.output).write_text("keep me")
    with pytest.raises(OutputError, match="overwrite"):
        train_module.train(existing, RecordingProgress())
    assert Path(existing.output).read_text() == "keep me"
    assert calls == []


def test_histogram_counts_and_threshold() -> None:
    rng = np.random.default_rng(0)
    prob = rng.random((3, 20, 20)).astype(np.float32)
    truth = rng.random((3, 20, 20)) < prob**2  # higher probability, more often building
    valid = rng.random((3, 20, 20)) > 0.2
    hist = ProbabilityHistogram()
    hist.add(torch.from_numpy(prob), torch.from_numpy(truth), torch.from_numpy(valid))
    for threshold in (0.01, 0.3, 0.5, 0.77, 0.99):
        direct = ConfusionCounts.from_arrays(prob >= threshold, truth, valid)
        assert hist.counts(threshold) == direct
    best = hist.best_threshold()
    ious = {
        k / 100: ConfusionCounts.from_arrays(prob >= k / 100, truth, valid).iou
        for k in range(1, 100)
    }
    assert ious[best] == max(ious.values())
    empty = ProbabilityHistogram()
    empty.add(
        torch.from_numpy(prob), torch.zeros(3, 20, 20, dtype=torch.bool), torch.from_numpy(valid)
    )
    assert empty.best_threshold() == 0.5


# ------------------------------------------------------------------ with the real data builder


def test_end_to_end_on_generated_raster(
    raster_factory: Callable[..., Path], labels_factory: Callable[..., Path], tmp_path: Path
) -> None:
    from affine import Affine
    from shapely.geometry import box

    transform = Affine(0.5, 0, 500_000.0, 0, -0.5, 3_700_000.0)
    rng = np.random.default_rng(0)
    data = rng.integers(20, 60, (3, 128, 128)).astype(np.uint8)
    geoms = []
    for r in range(4, 128, 32):
        for c in range(4, 128, 32):
            data[:, r : r + 14, c : c + 18] = 200
            x0, y0 = transform * (c, r)
            geoms.append(box(x0, y0 - 14 * 0.5, x0 + 18 * 0.5, y0))
    raster = raster_factory("scene.tif", data, transform=transform)
    labels = labels_factory("buildings.gpkg", geoms)
    config = TrainConfig(
        rasters=(str(raster),),
        labels=(str(labels),),
        output=str(tmp_path / "m.pt"),
        architecture="compact",
        encoder="none",
        tile_size=32,
        epochs=2,
        batch_size=8,
        device="cpu",
        val_fraction=0.25,
    )
    result = train_module.train(config, RecordingProgress())
    spec = read_spec(result["output"])
    assert spec.bands == (1, 2, 3) and spec.input_dtype == "uint8"
    assert spec.resolution_m == pytest.approx(0.5)
    assert result["train_windows"] > 0 and result["val_windows"] > 0


def test_fine_tuning_starts_from_every_weight_of_the_model_file(
    calls: list[TrainConfig], make_config: Callable[..., TrainConfig]
) -> None:
    first = train_module.train(make_config("first.pt", epochs=2), RecordingProgress())
    progress = RecordingProgress()
    # a vanishing lr and a constant schedule: what comes out is what went in
    tuned = make_config(
        "tuned.pt",
        init_model=first["output"],
        architecture="unet",
        encoder="resnet18",
        decoder_channels=(8, 8, 8, 8, 8),
        lr=1e-12,
        schedule="constant",
        epochs=1,
    )
    train_module.train(tuned, progress)
    # the model file's network, not the config's
    assert calls[-1].architecture == "compact" and calls[-1].decoder_channels == ()
    before, _ = load_model(first["output"])
    after, spec = load_model(tuned.output)
    fresh = create_model("compact", "none", 2, 1)
    pairs = zip(before.parameters(), after.parameters(), fresh.parameters(), strict=True)
    learnt = 0
    for a, b, c in pairs:
        torch.testing.assert_close(b, a, rtol=0, atol=1e-8)
        if b.numel() > 1:  # a lone bias may sit near its initial value by chance
            assert not torch.allclose(b, c, atol=1e-3)
            learnt += 1
    assert learnt >= 4  # the convolutions' weights at least
    assert spec.architecture == "compact" and spec.mean == read_spec(first["output"]).mean
    said = [m for m in progress.messages if m.startswith("Fine-tuning")]
    assert said and "architecture 'unet' -> 'compact'" in said[0]
    assert "decoder_channels (8, 8, 8, 8, 8) -> ()" in said[0]


def test_fine_tuning_on_few_validation_buildings_keeps_the_starting_settings(
    calls: list[TrainConfig], make_config: Callable[..., TrainConfig], tmp_path: Path
) -> None:
    """The fake validation windows hold fewer than MIN_CHOICE buildings: a fine-tuning keeps
    the starting model's threshold and settings, and scores before and after with them."""
    first = train_module.train(
        make_config("first.pt", separation=True, epochs=2), RecordingProgress()
    )
    model, spec = load_model(first["output"])
    odd = dict(
        threshold=1.0, seed_threshold=0.66, seed_erosion_m=0.45, min_seed_m2=2.5, min_area_m2=17.0
    )
    start = save_model(tmp_path / "start.pt", model, replace(spec, **odd))
    progress = RecordingProgress()
    tuned = make_config(
        "tuned.pt", init_model=str(start), separation=True, lr=1e-12, schedule="constant", epochs=1
    )
    result = train_module.train(tuned, progress)
    written = read_spec(tuned.output)
    assert {k: getattr(written, k) for k in odd} == odd
    said = [m for m in progress.messages if "settings are kept" in m]
    assert said and f"too few to choose them on (at least {MIN_CHOICE})" in said[0]
    before, after = result["before"], result["after"]
    assert before is not None and 0 < after["val_buildings"] < MIN_CHOICE
    # the same weights and settings: the same scores, at the kept threshold (1: no pixel is
    # called building, so recall is exactly 0 whatever the weights), not at 0.5
    assert before["val_iou"] == pytest.approx(after["val_iou"])
    assert before["val_building_f1"] == pytest.approx(after["val_building_f1"])
    assert after["val_building_pixels"] > 0
    assert before["val_recall"] == after["val_recall"] == after["val_iou"] == 0.0


def test_weight_averaging_writes_the_average(
    calls: list[TrainConfig], make_config: Callable[..., TrainConfig]
) -> None:
    first = train_module.train(make_config("first.pt", epochs=1), RecordingProgress())
    start, _ = load_model(first["output"])
    moved = {}
    for name, decay in (("plain", 0.0), ("averaged", 0.9999)):
        config = make_config(f"{name}.pt", init_model=first["output"], epochs=2, ema_decay=decay)
        train_module.train(config, RecordingProgress())
        model, _ = load_model(config.output)
        moved[name] = sum(
            float((a - b).detach().abs().sum())
            for a, b in zip(model.parameters(), start.parameters(), strict=True)
        )
    # 8 batches at decay 0.9999: the average holds >99.9% of the starting weights
    assert moved["plain"] > 0
    assert moved["averaged"] < 0.01 * moved["plain"]


def test_fine_tuning_refuses_imagery_the_model_cannot_take(
    monkeypatch: pytest.MonkeyPatch,
    calls: list[TrainConfig],
    make_config: Callable[..., TrainConfig],
) -> None:
    first = train_module.train(make_config("first.pt", epochs=1), RecordingProgress())
    three = replace(fake_data(), bands=(1, 2, 3))
    monkeypatch.setattr(train_module, "build_training_data", lambda config, progress: three)
    with pytest.raises(ConfigError, match="takes 2 band\\(s\\) but the training rasters have 3"):
        train_module.train(make_config("x.pt", init_model=first["output"]), RecordingProgress())
    uint8 = replace(fake_data(), input_dtype="uint8")
    monkeypatch.setattr(train_module, "build_training_data", lambda config, progress: uint8)
    with pytest.raises(ConfigError, match="trained on uint16 imagery but the training rasters"):
        train_module.train(make_config("y.pt", init_model=first["output"]), RecordingProgress())
    with pytest.raises(ConfigError, match="no separate encoder to freeze"):
        train_module.train(make_config("z.pt", freeze_encoder_epochs=1), RecordingProgress())


def test_freezing_the_encoder_leaves_the_decoder_trainable() -> None:
    model = create_model("unet", "resnet18", 3, 1)
    set_encoder_trainable(model, False)
    assert not any(p.requires_grad for p in model.encoder.parameters())
    assert all(p.requires_grad for p in model.decoder.parameters())
    set_encoder_trainable(model, True)
    assert all(p.requires_grad for p in model.parameters())


def test_encoder_weights_default_to_the_packaged_imagenet_where_they_exist(
    make_config: Callable[..., TrainConfig],
) -> None:
    lite = make_config(architecture="unet", encoder="tu-tf_efficientnet_lite0")
    assert train_module.resolve_encoder_weights(lite) == "imagenet"
    assert train_module.resolve_encoder_weights(replace(lite, encoder_weights="none")) is None
    assert train_module.resolve_encoder_weights(replace(lite, encoder="resnet18")) is None
    assert train_module.resolve_encoder_weights(make_config()) is None  # compact
    assert train_module.resolve_encoder_weights(replace(lite, encoder_weights="w.pt")) == "w.pt"
    # fine-tuning: the initial model's weights replace the encoder's (found on a GPU machine
    # without the ImageNet package: fine-tuning refused to start)
    assert train_module.resolve_encoder_weights(replace(lite, init_model="m.pt")) is None
    assert TrainConfig.__dataclass_fields__["encoder"].default in OFFLINE


def test_fine_tuning_starts_from_the_starter_model(
    monkeypatch: pytest.MonkeyPatch,
    calls: list[TrainConfig],
    make_config: Callable[..., TrainConfig],
    tmp_path: Path,
) -> None:
    """``--init-model starter`` fine-tunes the starter model (here a tiny one made the starter
    model through FOOTPRINT_STARTER_MODEL) and says so; a missing one writes nothing."""
    from engine.models.starter import ENV

    first = train_module.train(make_config("first.pt", epochs=1), RecordingProgress())
    monkeypatch.setenv(ENV, first["output"])
    progress = RecordingProgress()
    train_module.train(make_config("tuned.pt", init_model="starter", epochs=1), progress)
    assert calls[-1].init_model == first["output"]
    assert any(
        m.startswith(f"Using the starter model {first['output']}") for m in progress.messages
    )
    assert any(m.startswith(f"Fine-tuning {first['output']}") for m in progress.messages)
    monkeypatch.setenv(ENV, str(tmp_path / "gone.pt"))
    with pytest.raises(ModelFileError, match="missing: give a model with --init-model"):
        train_module.train(make_config("none.pt", init_model="starter"), RecordingProgress())
    assert not (tmp_path / "none.pt").exists() and not (tmp_path / "none_report").exists()


def test_a_time_budget_stops_before_an_epoch_that_would_end_after_it(
    calls: list[TrainConfig], make_config: Callable[..., TrainConfig]
) -> None:
    progress = RecordingProgress()
    result = train_module.train(make_config(epochs=5, max_minutes=1e-6), progress)
    assert result["epochs_run"] == 1 and Path(result["output"]).is_file()
    assert any(m.startswith("Time budget of") for m in progress.messages)
    assert train_module._estimate(60.0, 999, 5.0).endswith(
        "about 4 more fit in the time budget of 5 minutes."
    )
    plenty = train_module.train(make_config("b.pt", epochs=3, max_minutes=600), RecordingProgress())
    assert plenty["epochs_run"] == 3


def test_fine_tuning_scores_the_starting_model_like_the_epochs(
    calls: list[TrainConfig], make_config: Callable[..., TrainConfig]
) -> None:
    first = train_module.train(make_config("first.pt", epochs=2), RecordingProgress())
    assert first["before"] is None
    tuned = make_config(
        "tuned.pt",
        init_model=first["output"],
        lr=1e-12,
        schedule="constant",
        keep_batch_norm=True,
        epochs=1,
    )
    progress = RecordingProgress()
    result = train_module.train(tuned, progress)
    before, after = result["before"], result["after"]
    assert before is not None and set(before) == set(after)
    # a vanishing learning rate and the statistics kept: the tuned weights and threshold
    # score as the starting ones did
    assert after["val_iou"] == pytest.approx(before["val_iou"], abs=1e-6)
    assert any(m.startswith("The starting model on the validation") for m in progress.messages)


def test_frozen_encoder_and_kept_batch_norm_keep_their_statistics() -> None:
    model = create_model("unet", "resnet18", 3, 1, encoder_weights=None)
    batch_norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    encoder = {id(m) for m in model.encoder.modules()}
    model.train()
    freeze_statistics(model, whole=False)  # encoder trainable: nothing frozen
    assert all(m.training for m in batch_norms)
    set_encoder_trainable(model, False)
    model.train()
    freeze_statistics(model, whole=False)
    assert all(m.training == (id(m) not in encoder) for m in batch_norms)
    assert any(m.training for m in batch_norms)  # the decoder's still learn their statistics
    model.train()
    freeze_statistics(model, whole=True)
    assert not any(m.training for m in batch_norms)
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    model(torch.rand(2, 3, 64, 64))
    after = model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())


def test_cpu_bf16_trains_under_bf16_autocast_where_the_cpu_has_a_bf16_path(
    calls: list[TrainConfig], make_config: Callable[..., TrainConfig],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """cpu_bf16 (on by default) runs the forward passes under bf16 autocast on a CPU whose
    torch reports a bf16 path, and only there; --no-cpu-bf16 or another CPU trains in fp32."""
    seen: list[tuple[str, object, bool]] = []
    real = torch.autocast

    def recording(device_type: str, dtype: object = None, enabled: bool = True) -> Any:
        seen.append((device_type, dtype, enabled))
        return real(device_type, dtype=dtype, enabled=enabled)

    monkeypatch.setattr(train_module.torch, "autocast", recording)
    assert TrainConfig(rasters=("r.tif",), labels=("l.gpkg",), output="m.pt").cpu_bf16
    for flag, path in ((False, True), (True, False), (True, True)):
        monkeypatch.setattr(train_module.torchnet, "cpu_bf16", lambda path=path: path)
        seen.clear()
        result = train_module.train(make_config(f"m{flag}{path}.pt", epochs=1, cpu_bf16=flag),
                                    RecordingProgress())  # fmt: skip
        assert Path(result["output"]).is_file()
        assert seen and {s[2] for s in seen} == {flag and path}
        assert result["precision"] == ("bf16" if flag and path else "fp32")
        if flag and path:
            assert {s[:2] for s in seen} == {("cpu", torch.bfloat16)}
