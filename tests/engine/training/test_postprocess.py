"""Seed settings chosen on validation: which building thresholds may be tried."""

from __future__ import annotations

from engine.training.postprocess import IOU_SLACK, THRESHOLDS, grid, thresholds_near


def test_only_thresholds_that_keep_pixel_iou_are_tried() -> None:
    def iou(t: float) -> float:  # best at 0.45, falling 0.01 per 0.1 away
        return 0.8 - 0.1 * abs(t - 0.45)

    # by hand: 0.4 and 0.5 cost 0.005 of IoU (within the 0.01 slack), 0.3 costs 0.015
    assert IOU_SLACK == 0.01 and THRESHOLDS == (0.3, 0.4, 0.5)
    assert thresholds_near(iou, 0.45) == [0.4, 0.45, 0.5]
    settings = grid([0.4, 0.45, 0.5])
    # each threshold with the same 30 seed settings (5 seed thresholds x 3 erosions x 2 sizes)
    by_threshold: dict[float, set[tuple[float, float, float]]] = {}
    for s in settings:
        by_threshold.setdefault(s.threshold, set()).add(
            (s.seed_threshold, s.seed_erosion_m, s.min_seed_m2)
        )
    assert sorted(by_threshold) == [0.4, 0.45, 0.5]
    assert all(len(combos) == 30 for combos in by_threshold.values())
    assert len(settings) == 90
