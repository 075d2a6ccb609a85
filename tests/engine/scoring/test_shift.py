"""ShiftOverlaps: the overlap of two masks for every shift, block by block, and the best one."""

from __future__ import annotations

import numpy as np
import pytest

from engine.scoring.shift import ShiftOverlaps


def blobs(shape: tuple[int, int], seed: int) -> np.ndarray:
    """Random rectangles, the size of houses at a few pixels each."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, dtype=bool)
    for _ in range(shape[0] * shape[1] // 300):
        r, c = rng.integers(0, shape[0] - 12), rng.integers(0, shape[1] - 12)
        mask[r : r + rng.integers(4, 12), c : c + rng.integers(4, 12)] = True
    return mask


def moved(mask: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``mask`` moved ``dy`` rows down and ``dx`` columns right (empty where it left)."""
    out = np.zeros_like(mask)
    h, w = mask.shape
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = mask[
        max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def overlaps(pred: np.ndarray, ref: np.ndarray, margin: int, block: int) -> ShiftOverlaps:
    """``pred`` against ``ref`` in blocks of ``block`` pixels (``ref`` padded by the margin)."""
    wide = np.pad(ref, margin)
    result = ShiftOverlaps(margin)
    for r in range(0, pred.shape[0], block):
        for c in range(0, pred.shape[1], block):
            part = pred[r : r + block, c : c + block]
            h, w = part.shape
            result.add(part, wide[r : r + h + 2 * margin, c : c + w + 2 * margin], None)
    return result


@pytest.mark.parametrize(("dy", "dx"), [(0, 0), (3, -2), (-4, 4), (1, 0)])
def test_the_reference_moved_back_is_found_with_a_perfect_iou(dy: int, dx: int) -> None:
    pred = blobs((90, 120), seed=1)
    ref = moved(pred, dy, dx)  # traced "on other imagery": dy rows down, dx columns right
    result = overlaps(pred, ref, margin=5, block=1000)
    assert result.best() == (dy, dx)
    iou = result.iou()
    # only what the move pushed past the edge is lost
    assert iou[5 + dy, 5 + dx] > 0.9 and iou[5 + dy, 5 + dx] == iou.max()
    if (dy, dx) != (0, 0):
        assert iou[5, 5] < iou[5 + dy, 5 + dx]


def test_blocks_add_up_to_the_whole_and_match_counting_by_hand() -> None:
    pred, ref = blobs((70, 50), seed=2), blobs((70, 50), seed=3) | moved(blobs((70, 50), 2), 2, 1)
    whole = overlaps(pred, ref, margin=3, block=1000)
    blocked = overlaps(pred, ref, margin=3, block=16)
    np.testing.assert_array_equal(blocked.overlap, whole.overlap)
    np.testing.assert_array_equal(blocked.reference, whole.reference)
    assert blocked.predicted == whole.predicted == pred.sum()
    for dy, dx in [(0, 0), (2, 1), (-3, 3)]:
        back = moved(ref, -dy, -dx)  # pixel (r, c) of ``back`` is ref's (r + dy, c + dx)
        assert whole.overlap[3 + dy, 3 + dx] == (pred & back).sum()
        assert whole.reference[3 + dy, 3 + dx] == back.sum()


def test_invalid_pixels_count_for_neither_layer() -> None:
    pred = blobs((40, 40), seed=4)
    valid = np.zeros((40, 40), dtype=bool)
    valid[:, :20] = True
    result = ShiftOverlaps(2)
    result.add(pred, np.pad(pred, 2), valid)
    assert result.predicted == (pred & valid).sum()
    assert result.reference[2, 2] == result.overlap[2, 2] == (pred & valid).sum()


def test_ties_keep_the_smallest_move_and_a_wrong_block_is_refused() -> None:
    result = ShiftOverlaps(2)
    result.add(np.zeros((8, 8), bool), np.zeros((12, 12), bool), None)
    assert result.best() == (0, 0) and result.iou().max() == 0.0
    with pytest.raises(ValueError, match="2 x 2"):
        result.add(np.zeros((8, 8), bool), np.zeros((10, 10), bool), None)
