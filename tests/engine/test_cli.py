"""The command line: help for every command, JSON events, exit codes, interrupts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.cli import COMMANDS, build_parser

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``python -m engine`` in a subprocess from the project root."""
    return subprocess.run(
        [sys.executable, "-m", "engine", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_every_command_has_help() -> None:
    assert set(COMMANDS) == {
        "export",
        "rasterize-labels",
        "train",
        "improve",
        "predict",
        "vectorize",
        "detect",
        "evaluate",
        "model-info",
    }
    for name in COMMANDS:
        with pytest.raises(SystemExit) as exc:
            build_parser().parse_args([name, "--help"])
        assert exc.value.code == 0


def test_options_map_onto_configs() -> None:
    args = build_parser().parse_args(
        [
            "train",
            "--raster",
            "a.tif",
            "--raster",
            "b.tif",
            "--labels",
            "l.gpkg",
            "--output",
            "m.pt",
            "--bands",
            "1",
            "3",
            "--no-augment",
            "--epochs",
            "3",
        ]
    )
    from engine.cli import _build
    from engine.config import TrainConfig

    cfg = _build(TrainConfig, args, "c_")
    assert cfg.rasters == ("a.tif", "b.tif") and cfg.labels == ("l.gpkg",)
    assert cfg.bands == (1, 3) and cfg.augment is False and cfg.epochs == 3
    assert cfg.tile_size == TrainConfig.__dataclass_fields__["tile_size"].default
    assert cfg.decoder_channels == ()  # the architecture's own widths
    given = build_parser().parse_args(
        ["train", "--raster", "a.tif", "--labels", "l.gpkg", "--output", "m.pt",
         "--decoder-channels", "128", "64", "32", "16", "16"]
    )  # fmt: skip
    assert _build(TrainConfig, given, "c_").decoder_channels == (128, 64, 32, 16, 16)


def test_detect_options_from_both_groups_and_no_threshold_means_the_models() -> None:
    from engine.cli import _build
    from engine.config import DetectConfig

    base = ["detect", "--raster", "r.tif", "--model", "m.pt", "--output", "b.gpkg"]
    cfg = _build(DetectConfig, build_parser().parse_args(base), "c_")
    assert cfg.threshold is None and cfg.keep_probability is None and cfg.margin is None
    more = [*base, "--threshold", "0.3", "--margin", "8", "--min-area-m2", "2", "--tta"]
    cfg = _build(
        DetectConfig, build_parser().parse_args([*more, "--keep-probability", "p.tif"]), "c_"
    )
    assert (cfg.threshold, cfg.margin, cfg.min_area_m2, cfg.tta) == (0.3, 8, 2.0, True)
    assert cfg.keep_probability == "p.tif" and cfg.hole_area_m2 == 4.0


def test_error_exit_code_message_and_json_event(tmp_path: Path) -> None:
    missing = tmp_path / "missing.tif"
    result = run_cli(
        "rasterize-labels",
        "--events",
        "json",
        "--raster",
        str(missing),
        "--labels",
        str(tmp_path / "l.geojson"),
        "--output",
        str(tmp_path / "m.tif"),
    )
    assert result.returncode == 1
    assert "does not exist" in result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert events[-1]["event"] == "error"
    assert events[-1]["type"] == "RasterError" and str(missing) in events[-1]["message"]
    assert not (tmp_path / "m.tif").exists()


def test_model_info_prints_the_spec_and_names_a_bad_file(tmp_path: Path) -> None:
    from engine.models.modelfile import ModelSpec, save_model
    from engine.models.registry import create_model

    spec = ModelSpec(
        "compact", "none", 3, ("building",), (1, 2, 3), (127.0,) * 3, (50.0,) * 3, 64, 0.3
    )
    model = save_model(tmp_path / "m.pt", create_model("compact", "none", 3, 1), spec)
    result = run_cli("model-info", "--events", "json", "--model", str(model))
    assert result.returncode == 0, result.stderr
    event = json.loads(result.stdout.strip().splitlines()[-1])
    assert event["event"] == "result" and event["result"]["model"] == str(model)
    assert event["result"]["spec"]["resolution_m"] == 0.3
    assert event["result"]["spec"]["bands"] == [1, 2, 3]
    (tmp_path / "bad.pt").write_text("not a model")
    result = run_cli("model-info", "--model", str(tmp_path / "bad.pt"))
    assert result.returncode == 1 and "not a Footprint model file" in result.stderr


def test_bad_arguments_exit_non_zero() -> None:
    result = run_cli("predict", "--raster", "x.tif")
    assert result.returncode == 2 and "required" in result.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_stops_within_two_seconds_and_leaves_nothing(tmp_path: Path, sig: int) -> None:
    import numpy as np

    from engine.models.modelfile import ModelSpec, save_model
    from engine.models.registry import create_model
    from tests.engine.conftest import write_raster

    raster = write_raster(
        tmp_path / "big.tif", np.random.default_rng(0).integers(0, 255, (3, 2048, 2048), np.uint8)
    )
    spec = ModelSpec(
        "compact", "none", 3, ("building",), (1, 2, 3), (127.0,) * 3, (50.0,) * 3, 64, 0.5
    )
    model = save_model(tmp_path / "m.pt", create_model("compact", "none", 3, 1), spec)
    out = tmp_path / "prob.tif"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "engine",
            "predict",
            "--events",
            "json",
            "--raster",
            str(raster),
            "--model",
            str(model),
            "--output",
            str(out),
            "--margin",
            "8",
            "--batch-size",
            "2",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    for line in proc.stdout:  # wait until windows are being predicted
        if json.loads(line)["event"] == "progress":
            break
    time.sleep(0.5)
    proc.send_signal(sig)
    start = time.monotonic()
    code = proc.wait(timeout=10)
    assert time.monotonic() - start < 2.0, "the engine stops within 2 s"
    assert code == 130
    assert "Interrupted" in proc.stderr.read() if proc.stderr else False
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.tif", "m.pt"]
