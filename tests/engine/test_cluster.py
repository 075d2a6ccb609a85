"""Detection and prediction on a local Dask cluster: the same result as one process, faults,
cancel, a scheduler that cannot be reached."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import psutil
import pytest
import rasterio
import shapely
import torch

import engine.cluster as cluster_module
from engine.config import DetectConfig, PredictConfig, TrainConfig
from engine.detect import detect
from engine.errors import CancelledError, ConfigError
from engine.events import NullProgress, RecordingProgress
from engine.predict import predict
from engine.train import train
from tests.engine.fuzz import CRS, ORIGIN
from tests.engine.test_torchrun import _scene

HEIGHT, WIDTH = 1400, 300  # two strips of 1024 rows; buildings cut by strip and block edges


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A quickly trained separation model and a tall raster of roofs."""
    folder = tmp_path_factory.mktemp("cluster")
    raster, labels = _scene(folder)
    model = folder / "model.pt"
    config = TrainConfig(
        rasters=(str(raster),), labels=(str(labels),), output=str(model),
        architecture="compact", encoder="none", tile_size=32, epochs=3, batch_size=4,
        lr=0.01, device="cpu",
    )  # fmt: skip
    train(config, NullProgress())
    with rasterio.open(raster) as src:
        image = src.read()
    tall = folder / "tall.tif"
    reps = (1, -(-HEIGHT // image.shape[1]), -(-WIDTH // image.shape[2]))
    data = np.tile(image, reps)[:, :HEIGHT, :WIDTH]
    with rasterio.open(
        tall, "w", driver="GTiff", width=WIDTH, height=HEIGHT, count=3, dtype="uint8", crs=CRS,
        transform=ORIGIN,
    ) as dst:  # fmt: skip
        dst.write(data)
    return tall, model


def _run(raster: Path, model: Path, out: Path, progress: Any = None, **kw: Any) -> Any:
    config = DetectConfig(
        raster=str(raster), model=str(model), output=str(out),
        keep_probability=str(out.with_suffix(".tif")), **kw,
    )  # fmt: skip
    return detect(config, progress or NullProgress())


def _polygons(path: Path) -> np.ndarray:
    frame = gpd.read_file(path)
    return np.array(sorted(shapely.to_wkb(shapely.normalize(frame.geometry.values))), object)


def _worker_processes() -> list[psutil.Process]:
    """Dask's worker processes (spawned; not multiprocessing's resource tracker)."""
    found = []
    for process in psutil.Process().children(recursive=True):
        try:
            if "spawn_main" in " ".join(process.cmdline()):
                found.append(process)
        except psutil.Error:  # gone meanwhile
            continue
    return found


def test_two_local_workers_give_what_one_process_gives(
    inputs: tuple[Path, Path], tmp_path: Path
) -> None:
    raster, model = inputs
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers' thread count: the same arithmetic
    try:
        one = _run(raster, model, tmp_path / "one.gpkg")
    finally:
        torch.set_num_threads(threads)
    two = _run(raster, model, tmp_path / "two.gpkg", dask_workers=2)
    assert one["buildings"] == two["buildings"] > 10
    assert two["windows"] >= one["windows"]  # strips also predict their halo rows' windows
    a, b = _polygons(tmp_path / "one.gpkg"), _polygons(tmp_path / "two.gpkg")
    assert (a == b).all()
    with rasterio.open(tmp_path / "one.tif") as p1, rasterio.open(tmp_path / "two.tif") as p2:
        np.testing.assert_allclose(p1.read(), p2.read(), atol=1e-5)
    assert not _worker_processes()  # the local cluster is gone


def test_predict_on_two_workers(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    raster, model = inputs
    one = tmp_path / "one.tif"
    predict(PredictConfig(str(raster), str(model), str(one)), NullProgress())
    two = tmp_path / "two.tif"
    result = predict(
        PredictConfig(str(raster), str(model), str(two), dask_workers=2), NullProgress()
    )
    assert result["windows"] > 0
    with rasterio.open(one) as p1, rasterio.open(two) as p2:
        np.testing.assert_allclose(p1.read(), p2.read(), atol=1e-5)


class KillsAWorker(RecordingProgress):
    """Kills one worker process (SIGKILL) as soon as the first strip is done."""

    def __init__(self) -> None:
        super().__init__()
        self.killed: list[int] = []

    def set_progress(self, percent: float) -> None:
        super().set_progress(percent)
        workers = _worker_processes()
        if not self.killed and percent > 0 and workers:
            victim = workers[-1]
            self.killed.append(victim.pid)
            os.kill(victim.pid, signal.SIGKILL)


def test_a_killed_worker_has_its_tasks_rerun(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    raster, model = inputs
    reference = _run(raster, model, tmp_path / "ref.gpkg", dask_workers=2)
    progress = KillsAWorker()
    result = _run(raster, model, tmp_path / "killed.gpkg", progress, dask_workers=2)
    assert progress.killed, "no worker was killed"
    assert result["buildings"] == reference["buildings"]
    assert (_polygons(tmp_path / "ref.gpkg") == _polygons(tmp_path / "killed.gpkg")).all()


def test_cancel_stops_the_workers_and_leaves_nothing(
    inputs: tuple[Path, Path], tmp_path: Path
) -> None:
    raster, model = inputs
    before = set(tmp_path.iterdir())
    start = time.monotonic()
    with pytest.raises(CancelledError):
        _run(raster, model, tmp_path / "b.gpkg", RecordingProgress(cancel_after=2), dask_workers=2)
    assert time.monotonic() - start < 60
    assert set(tmp_path.iterdir()) == before
    deadline = time.monotonic() + 10
    while _worker_processes() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _worker_processes()


def test_an_unreachable_scheduler_is_a_clear_error(
    inputs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raster, model = inputs
    monkeypatch.setattr(cluster_module, "CONNECT_TIMEOUT_S", 2)
    with pytest.raises(ConfigError, match="Cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        _run(raster, model, tmp_path / "b.gpkg", scheduler="tcp://127.0.0.1:9")
    assert not (tmp_path / "b.gpkg").exists()


def test_cancel_on_a_shared_cluster_cancels_only_the_jobs_tasks(
    inputs: tuple[Path, Path], tmp_path: Path
) -> None:
    """On a cluster given by its scheduler address, cancel releases the job's tasks and leaves
    the cluster running for others."""
    from distributed import Client, LocalCluster

    raster, model = inputs
    with (
        LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        with pytest.raises(CancelledError):
            _run(raster, model, tmp_path / "b.gpkg", RecordingProgress(cancel_after=2),
                 scheduler=cluster.scheduler_address)  # fmt: skip
        deadline = time.monotonic() + 20

        def tasks(dask_scheduler: Any) -> int:
            return len(dask_scheduler.tasks)

        while client.run_on_scheduler(tasks) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert client.run_on_scheduler(tasks) == 0
        assert client.submit(sum, [1, 2]).result() == 3  # still serving others
    assert not (tmp_path / "b.gpkg").exists()


def test_an_extent_on_two_workers_gives_what_one_process_gives(
    inputs: tuple[Path, Path], tmp_path: Path
) -> None:
    """With an extent the strips are rows of its work window (rows 512 to the end here)."""
    raster, model = inputs
    (x0, y0), (x1, y1) = ORIGIN * (20, 1300), ORIGIN * (280, 600)
    extent = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = _run(raster, model, tmp_path / "one.gpkg", extent=extent)
    finally:
        torch.set_num_threads(threads)
    two = _run(raster, model, tmp_path / "two.gpkg", extent=extent, dask_workers=2)
    assert (one["width"], one["height"]) == (two["width"], two["height"]) == (WIDTH, HEIGHT - 512)
    assert one["buildings"] == two["buildings"] > 5
    assert (_polygons(tmp_path / "one.gpkg") == _polygons(tmp_path / "two.gpkg")).all()
    with rasterio.open(tmp_path / "one.tif") as p1, rasterio.open(tmp_path / "two.tif") as p2:
        assert p1.transform == p2.transform == ORIGIN * rasterio.Affine.translation(0, 512)
        np.testing.assert_allclose(p1.read(), p2.read(), atol=1e-5)
