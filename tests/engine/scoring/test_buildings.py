"""Building matches on label images, and reference buildings from training masks."""

from __future__ import annotations

import numpy as np

from engine.scoring.buildings import BuildingCounts, count_matches, reference_instances


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
