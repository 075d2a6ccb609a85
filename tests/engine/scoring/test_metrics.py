"""Pixel confusion counts and one-to-one building matching, against hand-computed answers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import shapely
from shapely.geometry import Polygon, box

from engine.errors import ConfigError
from engine.scoring.metrics import (
    FALSE_CAUSES,
    ConfusionCounts,
    cause_counts,
    match_objects,
    object_scores,
)


def strip(x0: float, x1: float) -> Polygon:
    """A 10 m tall rectangle from x0 to x1, so IoUs are ratios of lengths."""
    return box(x0, 0, x1, 10)


# ------------------------------------------------------------------ ConfusionCounts


def test_from_arrays_counts_each_cell() -> None:
    pred = np.array([[1, 1, 0, 0], [1, 0, 0, 1]], dtype=bool)
    truth = np.array([[1, 0, 1, 0], [1, 0, 1, 0]], dtype=bool)
    assert ConfusionCounts.from_arrays(pred, truth) == ConfusionCounts(tp=2, fp=2, fn=2, tn=2)


def test_from_arrays_ignores_invalid_pixels() -> None:
    pred = np.array([1, 1, 0, 0, 1], dtype=bool)
    truth = np.array([1, 0, 1, 0, 0], dtype=bool)
    valid = np.array([1, 1, 1, 0, 0], dtype=bool)
    assert ConfusionCounts.from_arrays(pred, truth, valid) == ConfusionCounts(1, 1, 1, 0)


def test_from_arrays_rejects_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="shape"):
        ConfusionCounts.from_arrays(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="shape"):
        ConfusionCounts.from_arrays(np.zeros((2, 2)), np.zeros((2, 2)), np.ones(4))


def test_counts_add_up() -> None:
    total = ConfusionCounts(1, 2, 3, 4) + ConfusionCounts(10, 20, 30, 40)
    assert total == ConfusionCounts(11, 22, 33, 44)


def test_scores_known_values() -> None:
    scores = ConfusionCounts(tp=6, fp=2, fn=4, tn=8).scores()
    assert scores == pytest.approx(
        {"precision": 0.75, "recall": 0.6, "f1": 2 / 3, "iou": 0.5, "accuracy": 0.7}
    )


def test_f1_is_harmonic_mean_of_precision_and_recall() -> None:
    for tp, fp, fn in itertools.product(range(1, 5), range(4), range(4)):
        c = ConfusionCounts(tp, fp, fn, 3)
        assert c.f1 == pytest.approx(2 * c.precision * c.recall / (c.precision + c.recall))


def test_zero_denominators_perfect_when_nothing_to_find_and_nothing_found() -> None:
    assert set(ConfusionCounts().scores().values()) == {1.0}
    assert set(ConfusionCounts(tn=7).scores().values()) == {1.0}


def test_zero_denominators_zero_when_prediction_and_truth_disagree() -> None:
    missed = ConfusionCounts(fn=3, tn=5)  # nothing predicted, buildings exist
    assert (missed.precision, missed.recall, missed.f1, missed.iou) == (0.0, 0.0, 0.0, 0.0)
    assert missed.accuracy == pytest.approx(5 / 8)
    false = ConfusionCounts(fp=2, tn=6)  # buildings predicted where there are none
    assert (false.precision, false.recall, false.f1, false.iou) == (0.0, 0.0, 0.0, 0.0)


# ------------------------------------------------------------------ match_objects


def test_offset_squares_have_known_iou() -> None:
    m = match_objects([box(2, 0, 12, 10)], [box(0, 0, 10, 10)])
    assert m.tp == 1 and m.fp == 0 and m.fn == 0
    assert m.ious[0] == pytest.approx(80 / 120)
    assert match_objects([box(2, 0, 12, 10)], [box(0, 0, 10, 10)], 0.7).tp == 0


def test_split_prediction_matches_nothing() -> None:
    halves = [strip(0, 4.9), strip(5.1, 10)]  # each covers 49 % of the reference
    m = match_objects(halves, [strip(0, 10)])
    assert (m.tp, m.fp, m.fn) == (0, 2, 1)
    assert m.pred_best_iou == pytest.approx([0.49, 0.49])
    assert m.ref_best_iou == pytest.approx([0.49])


def test_threshold_is_inclusive() -> None:
    m = match_objects([strip(0, 5), strip(5, 10)], [strip(0, 10)])  # IoU exactly 0.5 each
    assert (m.tp, m.fp, m.fn) == (1, 1, 0)
    assert m.pairs.tolist() == [[0, 0]]  # a tie goes to the lower prediction index


def test_two_predictions_over_one_reference_give_one_tp_one_fp() -> None:
    m = match_objects([strip(0.5, 10), strip(0, 10)], [strip(0, 10)])
    assert (m.tp, m.fp, m.fn) == (1, 1, 0)
    assert m.pairs.tolist() == [[1, 0]]  # the exact copy wins
    assert m.pred_match.tolist() == [-1, 0] and m.ref_match.tolist() == [1]
    assert m.unmatched_pred.tolist() == [0]


def test_greedy_takes_the_best_pair_first() -> None:
    refs = [strip(0, 10), strip(4, 14)]
    # P0 prefers R0 (0.783) but also fits R1 (0.577); P1 fits R0 only (0.9).
    preds = [strip(1, 11.5), strip(0, 9)]
    m = match_objects(preds, refs)
    assert sorted(m.pairs.tolist()) == [[0, 1], [1, 0]]
    assert dict(zip(m.pairs[:, 0].tolist(), m.ious.tolist(), strict=True)) == pytest.approx(
        {1: 0.9, 0: 7.5 / 13}
    )
    assert m.pred_best_iou == pytest.approx([9 / 11.5, 0.9])


def test_empty_sides() -> None:
    none_predicted = match_objects([], [strip(0, 1), strip(5, 6)])
    assert (none_predicted.tp, none_predicted.fp, none_predicted.fn) == (0, 0, 2)
    no_reference = match_objects([strip(0, 1)], [])
    assert (no_reference.tp, no_reference.fp, no_reference.fn) == (0, 1, 0)


def test_invalid_geometry_is_repaired() -> None:
    bowtie = Polygon([(0, 0), (10, 10), (10, 0), (0, 10)])
    assert not bowtie.is_valid
    m = match_objects([bowtie], [Polygon([(0, 0), (5, 5), (0, 10)])])  # its left triangle
    assert m.ious[0] == pytest.approx(0.5)


@pytest.mark.parametrize("threshold", [0.0, -0.1, 1.5])
def test_bad_threshold(threshold: float) -> None:
    with pytest.raises(ConfigError, match="IoU threshold"):
        match_objects([strip(0, 1)], [strip(0, 1)], threshold)


def test_matching_against_brute_force() -> None:
    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 40, size=(60, 2))
    wh = rng.uniform(2, 8, size=(60, 2))
    geoms = shapely.box(xy[:, 0], xy[:, 1], xy[:, 0] + wh[:, 0], xy[:, 1] + wh[:, 1])
    preds, refs = geoms[:30], geoms[30:]
    m = match_objects(preds, refs, 0.3)
    iou = np.array([[p.intersection(r).area / p.union(r).area for r in refs] for p in preds])
    assert m.pred_best_iou == pytest.approx(iou.max(axis=1))
    assert m.ref_best_iou == pytest.approx(iou.max(axis=0))
    assert m.tp > 0
    for (p, r), v in zip(m.pairs, m.ious, strict=True):
        assert v == pytest.approx(iou[p, r]) and v >= 0.3
    assert len(set(m.pairs[:, 0])) == m.tp and len(set(m.pairs[:, 1])) == m.tp
    # maximal: no pair left that could still match
    assert not (iou[np.ix_(m.unmatched_pred, m.unmatched_ref)] >= 0.3).any()
    assert m.tp + m.fp == 30 and m.tp + m.fn == 30


def test_object_scores() -> None:
    m = match_objects([strip(0, 10), strip(20, 30), strip(50, 60)], [strip(1, 10), strip(40, 45)])
    scores = object_scores(m)
    assert scores == pytest.approx(
        {
            "object_precision": 1 / 3,
            "object_recall": 0.5,
            "object_f1": 0.4,
            "tp": 1,
            "fp": 2,
            "fn": 1,
            "mean_iou_matched": 0.9,
            "merges": 0,
            "splits": 0,
        }
    )
    assert object_scores(match_objects([], [strip(0, 1)]))["mean_iou_matched"] == 0.0


# ------------------------------------------------------------------ merges and splits


def test_merges_and_splits_are_counted() -> None:
    refs = [strip(0, 10), strip(10, 20), strip(40, 50), strip(60, 70)]
    preds = [
        strip(0, 20),  # runs the first two buildings together: a merge
        strip(40, 45),  # cuts the third in two: a split
        strip(45, 50),
        strip(60, 70),  # right
        strip(100, 110),  # nothing there
    ]
    m = match_objects(preds, refs)
    assert (m.merges, m.splits) == (1, 1)
    scores = object_scores(m)
    assert (scores["merges"], scores["splits"]) == (1, 1)


def test_each_false_and_missed_building_gets_its_cause() -> None:
    refs = [
        strip(0, 10),  # 0-2: run together by one prediction
        strip(10, 20),
        strip(20, 30),
        strip(40, 50),  # 3: cut in three
        strip(60, 70),  # 4: right
        strip(80, 90),  # 5: half found, IoU 1/3
        strip(120, 130),  # 6: nothing there
        strip(140, 150),  # 7: a fifth of it found
        strip(170, 180),  # 8: half of it under a prediction mostly off buildings
    ]
    preds = [
        strip(0, 30),
        strip(40, 44),
        strip(44, 47),
        strip(47, 50),
        strip(60, 70),
        strip(85, 95),
        strip(100, 110),  # nothing under it
        strip(140, 142),
        strip(160, 175),  # 5 of its 15 m on a building: mostly off, so extra
    ]
    m = match_objects(preds, refs)
    assert m.pred_cause.tolist() == [
        "merge", "split", "split", "split", "", "outline", "extra", "outline", "extra"
    ]  # fmt: skip
    assert m.ref_cause.tolist() == [
        "merge", "merge", "merge", "split", "", "outline", "missed", "missed", "outline"
    ]  # fmt: skip
    assert (m.merges, m.splits) == (1, 1)  # the causes follow the same rule as the counts
    assert cause_counts(m.pred_cause, FALSE_CAUSES) == {
        "merge": 1, "split": 3, "extra": 2, "outline": 2
    }  # fmt: skip


def test_no_cause_without_an_error() -> None:
    m = match_objects([strip(0, 10)], [strip(0, 10)])
    assert m.pred_cause.tolist() == m.ref_cause.tolist() == [""]
    empty = match_objects([], [strip(0, 1)])
    assert empty.ref_cause.tolist() == ["missed"] and len(empty.pred_cause) == 0
    flat = Polygon([(0, 0), (5, 0), (10, 0)])  # no area: nothing of it can be found
    assert match_objects([strip(20, 30)], [flat]).ref_cause.tolist() == ["missed"]
    assert match_objects([flat], [strip(20, 30)]).pred_cause.tolist() == ["extra"]


def test_a_slight_overlap_is_neither_merge_nor_split() -> None:
    refs = [strip(0, 10), strip(10, 20)]
    preds = [strip(0, 11), strip(11, 20)]  # one pixel off, one building each
    m = match_objects(preds, refs)
    assert (m.merges, m.splits) == (0, 0) and m.tp == 2
