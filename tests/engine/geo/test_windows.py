"""Window plans cover the grid exactly; blend weights sum to one."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine

from engine.errors import ConfigError
from engine.geo.windows import Grid, PredictionPlan, WindowPlan, blend_weights, clip_to_grid


@pytest.mark.parametrize(
    ("width", "height", "tile", "stride", "pad"),
    [
        (100, 70, 32, 32, 0),
        (100, 70, 32, 16, 0),
        (257, 129, 64, 40, 8),
        (20, 10, 32, 16, 0),
        (20, 10, 32, 16, 4),
        (64, 64, 64, 64, 0),
        (65, 64, 64, 32, 16),
    ],
)
def test_plan_covers_grid_exactly(
    width: int, height: int, tile: int, stride: int, pad: int
) -> None:
    plan = WindowPlan(width, height, tile, stride, pad)
    cover = np.zeros((height + 2 * pad, width + 2 * pad), dtype=int)
    for w in plan:
        r0, c0 = int(w.row_off) + pad, int(w.col_off) + pad
        assert r0 >= 0 and c0 >= 0, "window starts before the padded grid"
        assert r0 + w.height <= height + 2 * pad and c0 + w.width <= width + 2 * pad
        assert w.width == min(tile, width + 2 * pad) and w.height == min(tile, height + 2 * pad)
        cover[r0 : r0 + w.height, c0 : c0 + w.width] += 1
    assert cover.min() >= 1
    assert len(plan) == len(list(plan))


def test_plan_steps_by_stride_and_ends_at_edge() -> None:
    plan = WindowPlan(100, 50, 32, 20)
    assert plan.columns == [0, 20, 40, 60, 68]
    assert plan.rows == [0, 18]


def test_bad_plan_parameters() -> None:
    with pytest.raises(ConfigError, match="Stride"):
        WindowPlan(10, 10, 8, 9)
    with pytest.raises(ConfigError, match="empty"):
        WindowPlan(0, 10, 8, 8)


@pytest.mark.parametrize(("size", "tile", "margin"), [(300, 64, 16), (200, 96, 24), (129, 64, 8)])
def test_normalised_blend_weights_sum_to_one(size: int, tile: int, margin: int) -> None:
    plan = WindowPlan(size, size, tile, tile - 2 * margin, pad=margin)
    weights = blend_weights(tile, margin)
    total = np.zeros((size + 2 * margin,) * 2)
    for w in plan:
        r, c = int(w.row_off) + margin, int(w.col_off) + margin
        total[r : r + tile, c : c + tile] += weights
    # Each window's share is weight / total; shares over all windows sum to one everywhere.
    shares = np.zeros_like(total)
    for w in plan:
        r, c = int(w.row_off) + margin, int(w.col_off) + margin
        shares[r : r + tile, c : c + tile] += weights / total[r : r + tile, c : c + tile]
    np.testing.assert_allclose(shares, 1.0, rtol=1e-6)
    assert weights.min() > 0 and weights.max() == pytest.approx(1.0)
    # smooth: no jump larger than the ramp step inside a window
    assert np.abs(np.diff(weights[tile // 2])).max() < 2.5 / margin


def test_blend_weights_validate_margin() -> None:
    with pytest.raises(ConfigError, match="half the tile"):
        blend_weights(64, 40)
    assert np.all(blend_weights(16, 0) == 1.0)


def test_clip_to_grid() -> None:
    from rasterio.windows import Window

    assert clip_to_grid(Window(-5, -5, 20, 20), 10, 12) == Window(0, 0, 10, 12)
    assert clip_to_grid(Window(8, 2, 20, 5), 10, 12) == Window(8, 2, 2, 5)


def test_blocks_cover_the_grid_once_in_reading_order() -> None:
    grid = Grid(90, 70, Affine.identity())
    seen = np.zeros((70, 90), dtype=int)
    blocks = list(grid.blocks(32))
    for w in blocks:
        seen[w.row_off : w.row_off + w.height, w.col_off : w.col_off + w.width] += 1
        assert w.col_off % 32 == 0 and w.row_off % 32 == 0
    assert (seen == 1).all()
    assert [(w.row_off, w.col_off) for w in blocks] == sorted(
        (w.row_off, w.col_off) for w in blocks
    )
    assert (blocks[-1].width, blocks[-1].height) == (90 - 64, 70 - 64)  # the rest, not a shift
    with pytest.raises(ConfigError, match="Block size"):
        list(grid.blocks(0))


@pytest.mark.parametrize(
    ("width", "height", "window", "margin", "align", "pad"),
    [
        (100, 70, 32, 8, 8, 8),
        (1000, 700, 512, 32, 32, 32),
        (4096, 300, 512, 32, 32, 32),
        (20, 10, 64, 8, 16, 8),
        (65, 64, 48, 0, 16, 0),
        (97, 33, 40, 4, 4, 4),
    ],
)
def test_prediction_plan_covers_the_padded_grid_with_short_last_windows(
    width: int, height: int, window: int, margin: int, align: int, pad: int
) -> None:
    plan = PredictionPlan(width, height, window, margin, align, pad)
    cover = np.zeros((height + 2 * pad + align, width + 2 * pad + align), dtype=int)
    for w in plan:
        r0, c0 = int(w.row_off) + pad, int(w.col_off) + pad
        assert r0 >= 0 and c0 >= 0, "window starts before the padded grid"
        assert w.width % align == 0 and w.height % align == 0
        assert w.width <= window and w.height <= window
        cover[r0 : r0 + w.height, c0 : c0 + w.width] += 1
    assert cover[: height + 2 * pad, : width + 2 * pad].min() >= 1
    for size, spans in ((width, plan.columns), (height, plan.rows)):
        starts = [s for s, _ in spans]
        assert all(b - a == window - 2 * margin for a, b in zip(starts, starts[1:], strict=False))
        start, length = spans[-1]
        assert start + length >= size + pad > start + length - align  # no whole stride too many
        assert all(n == window for _, n in spans[:-1])
    assert len(plan) == len(list(plan))
    assert plan.pixels == sum(w.width * w.height for w in plan)


def test_prediction_plan_overlap_costs_the_margins_only() -> None:
    """512-px windows with 32-px margins over 4096 px: the model sees (512 / 448)^2 of the
    raster's pixels, plus the padding, where windows shifted back to the edge saw 1.9x."""
    plan = PredictionPlan(4096, 4096, 512, 32, 32, 32)
    per_axis = sum(n for _, n in plan.columns)
    assert per_axis == 9 * 512 + 128  # the last window: 128 px, not a shifted 512
    assert plan.pixels / 4096**2 < (512 / 448) ** 2 * 1.05
    old = WindowPlan(4096, 4096, 256, 192, 32)
    assert len(old) * 256**2 / 4096**2 > 1.8


@pytest.mark.parametrize(("width", "height"), [(4096, 300), (100, 40)])
def test_a_uniform_plan_has_full_windows_at_the_same_places(width: int, height: int) -> None:
    """Every window of a uniform plan is a full window, starting where the usual plan's do;
    only the last of a row or column reaches further."""
    usual = PredictionPlan(width, height, 512, 32, 32, 32)
    uniform = PredictionPlan(width, height, 512, 32, 32, 32, uniform=True)
    for a, b in ((usual.columns, uniform.columns), (usual.rows, uniform.rows)):
        assert [s for s, _ in a] == [s for s, _ in b]
        assert all(n == 512 for _, n in b) and a[:-1] == b[:-1]
    assert {(w.width, w.height) for w in uniform} == {(512, 512)}


def test_bad_prediction_plans() -> None:
    with pytest.raises(ConfigError, match="multiple of the model's output stride 32"):
        PredictionPlan(100, 100, 500, 8, 32)
    with pytest.raises(ConfigError, match="Margin 32 does not fit"):
        PredictionPlan(100, 100, 64, 32, 32)
