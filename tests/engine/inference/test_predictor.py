"""Tests of the streaming pieces: block blending, reflect reads, the reader thread, devices."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch
from rasterio.windows import Window

import engine.heap as heap_module
from engine.errors import ConfigError, RasterError
from engine.events import NullProgress
from engine.geo.normalize import BandStats
from engine.geo.rasters import open_raster
from engine.geo.windows import PredictionPlan
from engine.inference.blend import BlockBlender
from engine.inference.predictor import TiledPredictor, check_tiling
from engine.inference.tilereader import BatchReader, read_reflected
from engine.inference.torchnet import TorchNetwork
from engine.models.device import resolve_device
from tests.engine.predict_helpers import GRID, Pointwise, smooth


def _ones(window: Any, classes: int = 1) -> tuple[np.ndarray, np.ndarray]:
    shape = (int(window.height), int(window.width))
    return np.ones((classes, *shape), np.float32), np.ones(shape, bool)


@pytest.mark.parametrize("uniform", [False, True])
@pytest.mark.parametrize(("window", "align"), [(32, 8), (48, 16), (40, 4)])
def test_blend_weights_sum_to_one_over_a_plan(window: int, align: int, uniform: bool) -> None:
    """Blending windows that all predict 1 gives exactly 1 everywhere, the smaller last
    windows of rows and columns included (or, uniform, the full ones reaching beyond)."""
    margin, width, height = 8, 90, 70
    plan = PredictionPlan(width, height, window, margin, align, pad=margin, uniform=uniform)
    blender = BlockBlender(width, height, margin, 1, plan.rows, plan.columns, block=16)
    out = np.zeros((height, width), np.float32)
    for win in plan:
        for block in blender.add(win, *_ones(win)):
            w = block.window
            out[w.row_off : w.row_off + w.height, w.col_off : w.col_off + w.width] = block.data[0]
    assert blender.complete
    np.testing.assert_allclose(out, 1.0, atol=1e-6)


def test_read_reflected_mirrors_outside() -> None:
    class Src:
        width, height, nodata = 5, 4, None
        arr = np.arange(20, dtype=np.float32).reshape(1, 4, 5)

        def read(self, bands: list[int], window: Any, masked: bool) -> np.ndarray:
            r, c = int(window.row_off), int(window.col_off)
            return self.arr[:, r : r + int(window.height), c : c + int(window.width)].copy()

        def read_masks(self, bands: list[int], window: Any) -> np.ndarray:
            return np.full((1, int(window.height), int(window.width)), 255, np.uint8)

    data, valid = read_reflected(Src(), Window(-2, -1, 8, 8), (1,))
    expected = np.pad(Src.arr[0], ((1, 3), (2, 1)), mode="reflect")
    np.testing.assert_array_equal(data[0], expected)
    assert valid.all()


def test_reader_errors_reach_the_caller() -> None:
    def broken() -> Any:
        raise RasterError("disk on fire")

    reader = BatchReader(broken, [Window(0, 0, 8, 8)], [True], (1,), BandStats((0.0,), (1.0,)), 1)
    with pytest.raises(RasterError, match="disk on fire"), reader:
        list(reader)


def test_device_choice() -> None:
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(ConfigError, match="Unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")


# ------------------------------------------------------------------ streaming


def test_streaming_holds_one_row_of_windows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Blocks are released as they finish: a tall raster never holds much more than the
    blocks under one row of windows; freed heap memory is handed back as resident memory
    grows (here a fake reading that grows by 64 MiB a batch)."""
    growing = itertools.count(step=64 << 20)
    monkeypatch.setattr(heap_module, "resident_bytes", lambda: next(growing))
    trims: list[int] = []
    monkeypatch.setattr(heap_module, "release_free_memory", lambda: trims.append(1) or True)
    width, height, tile, block = 600, 2600, 128, 256
    path = tmp_path / "tall.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=width,
        height=height,
        count=1,
        dtype="float32",
        crs="EPSG:32616",
        transform=GRID,
    ) as dst:
        dst.write(smooth(height, width)[None])
    predictor = TiledPredictor(
        TorchNetwork(Pointwise(), torch.device("cpu")),
        tile,
        32,
        1,
        (1,),
        BandStats((0.0,), (1.0,)),
        batch_size=16,
        block=block,
        align=32,
    )
    released = [
        b.index
        for b in predictor.run(lambda: open_raster(path), width, height, GRID, None, NullProgress())
    ]
    blocks_x = math.ceil(width / block)
    assert released == list(range(blocks_x * math.ceil(height / block)))
    assert predictor.peak_blocks <= blocks_x * (math.ceil(tile / block) + 2)
    assert predictor.peak_blocks < predictor.total_blocks / 3
    assert predictor.heap_trims == len(trims) > 0


@pytest.mark.parametrize(
    ("tile", "align", "margin"),
    [(256, 32, 32), (512, 32, 64), (128, 32, 32), (64, 32, 8), (256, 4, 32), (100, 1, 12)],
)
def test_default_margin_keeps_windows_on_the_models_stride(
    tile: int, align: int, margin: int
) -> None:
    """The default margin is an eighth of the tile, a multiple of the stride when the tile
    allows, so that windows of any multiple of the stride, padded by :func:`window_pad`, all
    start on the stride's grid from pixel (0, 0), as training windows do; so do windows with
    a margin of half the stride (16 px for a stride of 32)."""
    from engine.inference.predictor import default_margin, window_pad

    got = default_margin(tile, align)
    assert got == margin
    check_tiling(tile, got)
    for window in (tile, 2 * tile, 512):
        for m in {got, align // 2} - {0}:
            if window % align or (window - 2 * m) % align or 2 * m >= window:
                continue
            pad = window_pad(m, align, window)
            assert pad >= m
            plan = PredictionPlan(1000, 700, window, m, align, pad)
            assert all(c % align == 0 for c, _ in plan.columns)
            assert all(r % align == 0 for r, _ in plan.rows)
            assert plan.columns[-1][0] + plan.columns[-1][1] - m >= 1000  # cores reach the end
            assert plan.rows[-1][0] + plan.rows[-1][1] - m >= 700


def test_finished_blocks_are_made_one_at_a_time() -> None:
    """A window that finishes a whole row of blocks hands them out one by one, each made as it
    is read, so a row of finished blocks never exists at once."""
    tile, width, height = 32, 96, 32
    plan = PredictionPlan(width, height, tile, 0)  # one row of three windows
    blender = BlockBlender(width, height, 0, 1, plan.rows, plan.columns, block=16)
    windows = list(plan)
    for win in windows[:-1]:
        # the window's top blocks go at once; its bottom ones wait for the top row to end
        assert len(list(blender.add(win, *_ones(win)))) == 2
    held = []
    for block in blender.add(windows[-1], *_ones(windows[-1])):
        held.append(blender.open_blocks)
        assert block.data.shape == (1, 16, 16) and (block.data == 1).all()
    assert held == list(range(7, -1, -1))  # 8 blocks, each released as it was read
    assert blender.complete


def test_open_blocks_hold_sums_and_validity_only() -> None:
    """An open block holds its weighted sums and validity (4 x classes + 1 bytes a pixel); the
    weight sum is made when it finishes, and still normalises overlapping windows exactly."""
    tile, margin, classes, block = 32, 8, 2, 16
    plan = PredictionPlan(80, 64, tile, margin, 16, pad=margin)
    blender = BlockBlender(80, 64, margin, classes, plan.rows, plan.columns, block=block)
    blocks = []
    for win in plan:
        value, valid = _ones(win, classes)
        value[0], value[1] = 0.25, 0.75
        blocks += list(blender.add(win, value, valid))
        assert blender.held_bytes == blender.open_blocks * block * block * (4 * classes + 1)
    assert blender.complete and blender.peak_blocks > 0
    for b in blocks:  # constant windows blend to the same constant: weights sum to one
        assert np.allclose(b.data[0], 0.25) and np.allclose(b.data[1], 0.75) and b.valid.all()


class ShapeRecorder(Pointwise):
    """The pixel-wise model, recording the shape of every batch it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(x.shape))
        return super().forward(x)


@pytest.mark.parametrize(("width", "height"), [(300, 200), (40, 70)])
def test_uniform_batches_have_one_shape_and_give_the_same_raster(
    tmp_path: Path, width: int, height: int
) -> None:
    """A GPU's uniform plan: every batch the model sees is ``batch_size`` full windows (short
    batches filled with empty ones, the last windows reaching into the mirrored raster, even
    beyond a raster smaller than a window), and the blended raster is what the usual plan
    gives (a pixel-wise model: the values do not depend on the window)."""
    path = tmp_path / "r.tif"
    with rasterio.open(
        path, "w", driver="GTiff", width=width, height=height, count=1, dtype="float32",
        crs="EPSG:32616", transform=GRID,
    ) as dst:  # fmt: skip
        dst.write(smooth(height, width)[None])
    rasters = {}
    for uniform in (False, True):
        model = ShapeRecorder()
        predictor = TiledPredictor(
            TorchNetwork(model, torch.device("cpu")), 64, 8, 1, (1,), BandStats((0.0,), (1.0,)),
            batch_size=3, block=32, align=16, uniform=uniform,
        )  # fmt: skip
        out = np.zeros((height, width), np.float32)
        blocks = predictor.run(lambda: open_raster(path), width, height, GRID, None, NullProgress())
        for b in blocks:
            w = b.window
            out[w.row_off : w.row_off + w.height, w.col_off : w.col_off + w.width] = b.data[0]
        rasters[uniform] = out
        shapes = set(model.shapes)
        if uniform:
            assert shapes == {(3, 1, 64, 64)}
        else:
            assert len(shapes) > 1  # short last windows and batches
    np.testing.assert_allclose(rasters[True], rasters[False], atol=1e-6)
