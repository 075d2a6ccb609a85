"""Prediction windows and batches chosen for the device; results do not depend on them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from rasterio.windows import Window
from torch import nn

from engine.errors import ConfigError
from engine.geo.normalize import BandStats
from engine.inference.sizing import (
    CPU_BATCH_PIXELS,
    CUDA_BYTES_PER_PIXEL,
    MAX_BATCH,
    model_threads,
    prediction_batch,
    prediction_streams,
    prediction_window,
)
from engine.inference.tilereader import BatchReader
from tests.engine.predict_helpers import run, sig, smooth


class _Network:
    """What sizing reads of a network: its kind, threads and free memory."""

    def __init__(self, kind: str, threads: int = 2, free: int | None = None) -> None:
        self.kind, self.threads, self.free = kind, threads, free

    def free_memory(self) -> int | None:
        return self.free


CPU, CUDA = "cpu", "cuda"


def test_cpu_window_and_batch() -> None:
    assert prediction_window(CPU, 32, 32) == 512
    assert prediction_window(CPU, 100, 32) == 800  # at least 8 margins, on the stride
    cpu = _Network(CPU)
    assert prediction_batch(cpu, 512) == 1
    assert prediction_batch(cpu, 256) == CPU_BATCH_PIXELS // 256**2 == 4
    assert prediction_batch(cpu, 2048) == 1
    assert prediction_window(CPU, 32, 32, requested=256) == 256
    assert prediction_batch(cpu, 512, requested=3) == 3


def test_gpu_window_and_batch_follow_free_memory() -> None:
    """The CUDA path is the same code: 1024-px windows, batches by free memory."""
    free = 40 * 2**30
    gpu = _Network(CUDA, free=free)
    assert prediction_window(CUDA, 32, 32) == 1024
    expected = int(0.5 * free / (CUDA_BYTES_PER_PIXEL * 1024**2))
    assert prediction_batch(gpu, 1024) == expected >= 2
    assert prediction_batch(gpu, 256) == MAX_BATCH
    gpu.free = 2**20  # almost nothing free: still one window
    assert prediction_batch(gpu, 1024) == 1


@pytest.mark.parametrize(
    ("requested", "message"), [(500, "multiple of the model's output stride 32; use 512"),
                               (64, "nothing inside the two 32-px margins")]
)  # fmt: skip
def test_bad_windows_are_refused(requested: int, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        prediction_window(CPU, 32, 32, requested)


def test_batches_hold_windows_of_one_shape() -> None:
    """The short last window of a row starts a batch of its own (a batch is one tensor)."""

    class Src:
        width, height, nodata = 100, 40, None

        def read(self, bands: Any, window: Window, masked: bool) -> np.ndarray:
            return np.ones((1, int(window.height), int(window.width)), np.float32)

        def read_masks(self, bands: Any, window: Window) -> np.ndarray:
            return np.full((1, int(window.height), int(window.width)), 255, np.uint8)

    class Opener:
        def __enter__(self) -> Src:
            return Src()

        def __exit__(self, *args: Any) -> None:
            return None

    windows = [Window(c, r, w, 32) for r in (0, 24) for c, w in ((0, 32), (24, 32), (48, 32),
                                                                  (72, 16))]  # fmt: skip
    reader = BatchReader(Opener, windows, [True] * 8, (1,), BandStats((0.0,), (1.0,)), 3)
    with reader:
        batches = list(reader)
    shapes = [{job.shape for job in batch} for batch in batches]
    assert all(len(s) == 1 for s in shapes)
    assert [len(b) for b in batches] == [3, 1, 3, 1]
    assert [job.window for batch in batches for job in batch] == windows


@pytest.mark.parametrize("window", [32, 64, 96, 160, None])
def test_probabilities_do_not_depend_on_the_window(tmp_path: Path, window: int | None) -> None:
    """Whatever the window (short last windows, one window for all, the default), every pixel
    is covered and the blend weights sum to one: a pixel-wise model gives its exact values."""
    data = smooth(77, 101, seed=5)
    result, values = run(tmp_path, data, window=window, margin=4)
    np.testing.assert_allclose(values[0], sig(data), atol=5e-6)
    assert result["window"] == (window or 512)
    assert result["predicted_megapixels"] * 1e6 >= data.size


class Slow(nn.Module):
    """A pixel-wise model that takes a little time, so that two windows are in flight; its
    values do not depend on torch's thread count, so the comparison holds on any CPU (a
    window blended in another window's place would show)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(0.01)
        return 10.0 * (x[:, :1] - 0.5)


def test_two_streams_give_what_one_gives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows predicted two at a time (a CPU's default) give the same raster as one at a
    time, blended in plan order; torch's thread count is given back afterwards."""
    import engine.inference.job as job

    data = smooth(150, 170, seed=3)
    outputs = {}
    threads = torch.get_num_threads()
    for streams in (1, 2):
        monkeypatch.setattr(job, "prediction_streams", lambda device, n=streams: n)
        result, outputs[streams] = run(tmp_path, data, model=Slow(), name=f"s{streams}.tif")
        assert result["streams"] == streams and result["windows"] > 4
        assert torch.get_num_threads() == threads
    np.testing.assert_array_equal(outputs[1], outputs[2])


def test_model_threads_share_torchs_threads() -> None:
    threads = torch.get_num_threads()
    with model_threads(2) as each:
        assert each == max(1, threads // 2) == torch.get_num_threads()
    assert torch.get_num_threads() == threads
    assert prediction_streams(_Network(CPU, threads)) == min(2, threads)
    assert prediction_streams(_Network(CUDA, threads)) == 1


def test_available_memory_from_psutil_else_proc_meminfo(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from engine.inference.sizing import available_memory, row_bytes

    first = available_memory()
    assert first is not None and first > 0
    monkeypatch.setitem(sys.modules, "psutil", None)  # not installed: /proc/meminfo (Linux)
    second = available_memory()
    if Path("/proc/meminfo").exists():
        assert second is not None and abs(second - first) < max(first, second) / 2
    assert row_bytes(1_000_000, 1024, 2) == 9_216_000_000  # the blend of a 2-class model
