"""The spatial split: validation cells from blocks or polygons, training windows around them."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine
from shapely.geometry import box

from engine.geo.windows import WindowPlan
from engine.training.sampling import (
    block_cells,
    cell_shape,
    polygon_cells,
    training_windows,
    validation_windows,
    windows_overlap,
)

T = Affine(0.5, 0, 500_000.0, 0, -0.5, 3_700_000.0)


def pixel_box(c0: float, r0: float, c1: float, r1: float) -> object:
    """A box in the CRS of ``T`` from pixel columns/rows."""
    x0, y0 = T * (c0, r0)
    x1, y1 = T * (c1, r1)
    return box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


def test_cell_shape_rounds_up() -> None:
    assert cell_shape(100, 64, 32) == (2, 4)


def test_polygon_cells_take_overlapping_cells_not_touching_ones() -> None:
    # Covers cells (row 1, cols 1-2) and only touches column 0 and row 0 / row 2 at edges.
    cells = polygon_cells(128, 128, T, 32, [pixel_box(32, 32, 96, 64)])
    expected = np.zeros((4, 4), dtype=bool)
    expected[1, 1:3] = True
    np.testing.assert_array_equal(cells, expected)


def test_polygon_cells_partial_overlap_takes_the_cell() -> None:
    cells = polygon_cells(128, 128, T, 32, [pixel_box(100, 100, 101, 101)])
    assert np.argwhere(cells).tolist() == [[3, 3]]


def test_polygon_cells_empty_without_polygons() -> None:
    assert not polygon_cells(64, 64, T, 32, []).any()


def test_block_cells_are_whole_blocks_near_the_fraction_and_seeded() -> None:
    cells, side = block_cells([(512, 512)], 32, 0.2, seed=3)
    assert side == 4
    (grid,) = cells
    assert grid.shape == (16, 16)
    # 4 of 16 blocks: the first block count reaching 20% of 256 cells.
    assert grid.sum() == 4 * 16
    blocks = grid.reshape(4, 4, 4, 4).transpose(0, 2, 1, 3).reshape(16, 16)
    assert set(blocks.sum(axis=1).tolist()) <= {0, 16}  # each block all in or all out
    again, _ = block_cells([(512, 512)], 32, 0.2, seed=3)
    np.testing.assert_array_equal(again[0], grid)
    others = [block_cells([(512, 512)], 32, 0.2, seed=s)[0][0] for s in range(4, 10)]
    assert any(not np.array_equal(o, grid) for o in others)


def test_block_cells_shrink_blocks_for_small_rasters_and_keep_both_sides() -> None:
    cells, side = block_cells([(128, 128)], 32, 0.9, seed=0)
    assert side == 2
    assert 0 < cells[0].sum() < cells[0].size  # at least one block left for training
    cells, side = block_cells([(32, 32)], 32, 0.2, seed=0)
    assert side == 1
    assert not cells[0].any()  # one cell cannot be split


def test_block_cells_pool_blocks_over_rasters() -> None:
    cells, side = block_cells([(256, 256), (256, 128)], 32, 0.3, seed=1)
    assert side == 4  # 4 + 2 blocks in all
    assert [c.shape for c in cells] == [(8, 8), (4, 8)]
    total = sum(c.size for c in cells)
    assert 0.3 * total <= sum(int(c.sum()) for c in cells) < 0.3 * total + 16


def test_training_windows_never_overlap_validation_cells() -> None:
    cells = np.zeros((5, 5), dtype=bool)
    cells[1:3, 2:4] = True
    width = height = 150  # not a multiple of the tile: last windows shift back
    kept, dropped = training_windows(0, width, height, 32, 16, cells)
    plan = list(WindowPlan(width, height, 32, 16))
    assert len(kept) + dropped == len(plan)
    val = validation_windows(0, cells, 32)
    assert len(val) == 4
    for ref in kept:
        assert not any(windows_overlap(ref, v, 32) for v in val)
    kept_set = {(r.col, r.row) for r in kept}
    for w in plan:  # every plan window that touches no validation window is kept
        ref_overlaps = any(
            abs(int(w.col_off) - v.col) < 32 and abs(int(w.row_off) - v.row) < 32 for v in val
        )
        assert ((int(w.col_off), int(w.row_off)) in kept_set) != ref_overlaps


def test_training_windows_on_a_raster_smaller_than_a_tile() -> None:
    kept, dropped = training_windows(2, 20, 10, 32, 16, np.zeros((1, 1), dtype=bool))
    assert dropped == 0
    assert [(r.raster, r.col, r.row) for r in kept] == [(2, 0, 0)]
    assert kept[0].window(32).width == 32


@pytest.mark.parametrize(("dc", "dr", "overlap"), [(31, 0, True), (32, 0, False), (5, -31, True)])
def test_windows_overlap(dc: int, dr: int, overlap: bool) -> None:
    from engine.training.sampling import WindowRef

    assert windows_overlap(WindowRef(0, 64, 64), WindowRef(0, 64 + dc, 64 + dr), 32) is overlap
    assert not windows_overlap(WindowRef(0, 0, 0), WindowRef(1, 0, 0), 32)
