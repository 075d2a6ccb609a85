"""Seed settings chosen on validation: which building thresholds may be tried."""

from __future__ import annotations

from engine.training.postprocess import IOU_SLACK, THRESHOLDS, grid, thresholds_near


def test_only_thresholds_that_keep_pixel_iou_are_tried() -> None:
    def iou(t: float) -> float:  # best at 0.45, falling 0.1 per 0.1 away
        return 0.8 - abs(t - 0.45)

    near = thresholds_near(iou, 0.45)
    assert near == sorted({0.45, *(t for t in THRESHOLDS if iou(t) >= 0.8 - IOU_SLACK)})
    assert 0.3 not in near and 0.45 in near  # 0.3 would cost 0.15 of IoU
    settings = grid(near)
    assert {s.threshold for s in settings} == set(near)
    assert len(settings) == len(near) * len(grid([0.5]))
