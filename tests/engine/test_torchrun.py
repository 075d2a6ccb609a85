"""Training under torchrun: two CPU ranks (gloo) train one model together."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import torch
from shapely.geometry import box

from engine.config import TrainConfig
from engine.events import NullProgress
from engine.models.modelfile import load_model
from engine.train import Loop
from engine.training.dataset import build_training_data
from tests.engine.fuzz import CRS, ORIGIN

ROOT = Path(__file__).resolve().parents[2]
SIDE = 160


def _scene(folder: Path) -> tuple[Path, Path]:
    """A 3-band raster with bright rectangular roofs and their polygons."""
    rng = np.random.default_rng(4)
    image = rng.integers(30, 90, size=(3, SIDE, SIDE), dtype=np.uint8)
    boxes = []
    for row in range(6, SIDE - 20, 30):
        for col in range(4, SIDE - 20, 26):
            h, w = rng.integers(8, 18, size=2)
            image[:, row : row + h, col : col + w] = 210
            x0, y0 = ORIGIN * (col, row + h)
            x1, y1 = ORIGIN * (col + w, row)
            boxes.append(box(x0, y0, x1, y1))
    raster = folder / "scene.tif"
    with rasterio.open(
        raster, "w", driver="GTiff", width=SIDE, height=SIDE, count=3, dtype="uint8", crs=CRS,
        transform=ORIGIN,
    ) as dst:  # fmt: skip
        dst.write(image)
    labels = folder / "roofs.gpkg"
    gpd.GeoDataFrame(geometry=boxes, crs=CRS).to_file(labels, driver="GPKG")
    return raster, labels


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_two_ranks_train_one_model_with_one_process_scores(tmp_path: Path) -> None:
    torchrun = Path(sys.executable).parent / "torchrun"
    if not torchrun.is_file():
        pytest.skip(f"torchrun not found beside {sys.executable}")
    raster, labels = _scene(tmp_path)
    out = tmp_path / "model.pt"
    options = ["--architecture", "compact", "--encoder", "none", "--tile-size", "32",
               "--epochs", "2", "--batch-size", "4", "--lr", "0.01", "--device", "cpu"]  # fmt: skip
    done = subprocess.run(
        [str(torchrun), "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
         "--master-port", str(_free_port()), "-m", "engine", "train", "--raster", str(raster),
         "--label", str(labels), "--output", str(out), *options, "--events", "json"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = [
        json.loads(line)["result"]
        for line in done.stdout.splitlines()
        if line.startswith("{") and '"event": "result"' in line
    ]
    assert len(results) == 2  # one per rank
    assert [r["ranks"] for r in results] == [2, 2]  # they trained together, not side by side
    written_logs = [line for line in done.stdout.splitlines() if "model written to" in line]
    assert len(written_logs) == 1  # rank 0 alone logs and writes
    assert results[0]["weights_sha256"] == results[1]["weights_sha256"]
    assert results[0]["metrics"] == results[1]["metrics"]
    assert results[0]["threshold"] == results[1]["threshold"]
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["model.pt", "model_report", "roofs.gpkg", "scene.tif"]  # once, no parts
    # the validation scores equal one process's evaluation of the model on the same windows
    config = TrainConfig(
        rasters=(str(raster),), labels=(str(labels),), output=str(tmp_path / "again.pt"),
        architecture="compact", encoder="none", tile_size=32, batch_size=4, device="cpu",
    )  # fmt: skip
    data = build_training_data(config, NullProgress())
    assert len(data.val) == results[0]["val_windows"] and len(data.val) > 0
    model, spec = load_model(out)
    loop = Loop(config, data, torch.device("cpu"))
    loop.bare.load_state_dict(model.state_dict())
    from engine.train import weights_digest

    assert weights_digest(loop.bare.state_dict()) == results[0]["weights_sha256"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each rank ran (OMP_NUM_THREADS=1): the same arithmetic
    try:
        validation = loop.validate(NullProgress())
    finally:
        torch.set_num_threads(threads)
    counts = validation.hist.counts(results[0]["threshold"])
    assert counts.iou == pytest.approx(results[0]["metrics"]["iou"], abs=1e-9)
    assert spec.threshold == pytest.approx(results[0]["threshold"])
