"""Building matches on label images, and reference buildings from training masks."""

from __future__ import annotations

import numpy as np

from engine.scoring.buildings import (
    BuildingCounts,
    count_matches,
    count_whole_matches,
    reference_instances,
)


def two_houses_mask() -> np.ndarray:
    """Two houses sharing a wall at column 10: the strip inside them is 3, around them 2."""
    mask = np.zeros((12, 24), np.uint8)
    mask[2:10, 2:18] = 1
    mask[2:10, 8:12] = 3  # the wall, labelled on both sides
    mask[0:2, 8:12] = 2  # the strip reaches past the houses
    return mask


def test_reference_instances_split_at_the_wall() -> None:
    labels = reference_instances(two_houses_mask())
    assert set(np.unique(labels)) == {0, 1, 2}
    left, right = labels[5, 2], labels[5, 17]
    assert left != right and left > 0 and right > 0
    assert (labels[2:10, 2:10] == left).all() and (labels[2:10, 10:18] == right).all()
    assert not labels[0:2].any()  # the strip outside the houses is no building


def test_count_matches_one_to_one_at_half_iou() -> None:
    truth = reference_instances(two_houses_mask())
    valid = np.ones(truth.shape, bool)
    assert count_matches(truth, truth, valid) == BuildingCounts(2, 2, 2)
    merged = (truth > 0).astype(np.int32)  # both houses as one prediction
    assert count_matches(merged, truth, valid) == BuildingCounts(0, 1, 2)
    shifted = np.roll(truth, 1, axis=1)  # IoU 7/9 per house
    assert count_matches(shifted, truth, valid) == BuildingCounts(2, 2, 2)
    counts = count_matches(np.zeros_like(truth), truth, valid)
    assert counts == BuildingCounts(0, 0, 2) and counts.f1 == 0.0


def test_ignored_pixels_take_no_part() -> None:
    truth = reference_instances(two_houses_mask())
    valid = np.ones(truth.shape, bool)
    valid[:, 10:] = False  # the right house is outside the labelled area
    pred = truth.copy()
    pred[pred == truth[5, 17]] = 0
    assert count_matches(pred, truth, valid) == BuildingCounts(1, 1, 1)


def houses_in_a_window() -> np.ndarray:
    """Three houses in a 20 x 30 window: two whole, one cut by the right edge."""
    labels = np.zeros((20, 30), np.int32)
    labels[3:9, 3:9] = 1
    labels[12:18, 3:11] = 2
    labels[5:12, 24:30] = 3  # reaches the window's edge
    return labels


def test_whole_matches_leave_out_buildings_cut_by_the_edge() -> None:
    truth = houses_in_a_window()
    valid = np.ones(truth.shape, bool)
    assert count_matches(truth, truth, valid) == BuildingCounts(3, 3, 3)
    assert count_whole_matches(truth, truth, valid) == BuildingCounts(2, 2, 2)
    missed_piece = np.where(truth == 3, 0, truth)  # the cut house not found
    assert count_matches(missed_piece, truth, valid) == BuildingCounts(2, 2, 3)
    assert count_whole_matches(missed_piece, truth, valid) == BuildingCounts(2, 2, 2)
    stray_piece = truth.copy()
    stray_piece[0:3, 15:20] = 4  # a false piece at the top edge: not counted
    assert count_whole_matches(stray_piece, truth, valid) == BuildingCounts(2, 2, 2)
    stray_whole = truth.copy()
    stray_whole[12:16, 15:20] = 4  # a whole false building: counted
    assert count_whole_matches(stray_whole, truth, valid) == BuildingCounts(2, 3, 2)


def test_whole_matches_leave_out_a_pair_when_one_side_is_cut() -> None:
    truth = houses_in_a_window()
    valid = np.ones(truth.shape, bool)
    short = truth.copy()
    short[:, 29] = 0  # the prediction of the cut house stops a pixel short of the edge
    assert count_whole_matches(short, truth, valid) == BuildingCounts(2, 2, 2)
    merged = truth.copy()
    merged[3:18, 3:11] = 1  # houses 1 and 2 as one: both references stay, no match
    assert count_whole_matches(merged, truth, valid) == BuildingCounts(0, 1, 2)


def test_whole_matches_take_invalid_pixels_as_an_edge() -> None:
    truth = houses_in_a_window()
    valid = np.ones(truth.shape, bool)
    valid[:, 6:] = False  # unlabelled from column 6: houses 1 and 2 cut, house 3 unseen
    assert count_matches(truth, truth, valid) == BuildingCounts(2, 2, 2)
    assert count_whole_matches(truth, truth, valid) == BuildingCounts(0, 0, 0)
    valid[11:19, 2:12] = True  # a labelled margin around house 2: it is whole
    assert count_whole_matches(truth, truth, valid) == BuildingCounts(1, 1, 1)
