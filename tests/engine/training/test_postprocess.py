"""Seed settings chosen on validation: which building thresholds may be tried, and on which
buildings the settings are compared; the smallest building kept."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from engine.polygons.instances import InstanceSettings
from engine.scoring.buildings import BuildingCounts
from engine.training.postprocess import (
    DEFAULT,
    IOU_SLACK,
    MIN_AREAS,
    MIN_WHOLE,
    THRESHOLDS,
    ValidationWindows,
    choose_min_area,
    choose_settings,
    grid,
    thresholds_near,
)


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


class FakeWindows:
    """Validation windows whose scores are given: all buildings and the whole ones."""

    def __init__(self, scores: dict[float, tuple[BuildingCounts, BuildingCounts]]) -> None:
        self.scores = scores  # by seed erosion: (all buildings, whole buildings)

    def score(self, settings: InstanceSettings, whole: bool = False) -> BuildingCounts:
        return self.scores[settings.seed_erosion_m][int(whole)]


def test_settings_are_chosen_on_whole_buildings() -> None:
    # erosion 1.0 loses the pieces at the windows' edges (lower on all buildings) but
    # separates the whole ones better
    pieces_kept, pieces_lost = BuildingCounts(80, 100, 100), BuildingCounts(70, 100, 100)
    scores = {
        DEFAULT.seed_erosion_m: (pieces_kept, BuildingCounts(30, 50, 50)),
        1.0: (pieces_lost, BuildingCounts(40, 50, 50)),
    }
    candidates = [InstanceSettings(0.5, 0.9, 1.0, 4.0)]
    chosen, counts, whole = choose_settings(FakeWindows(scores), 0.5, candidates)  # type: ignore[arg-type]
    assert chosen == candidates[0] and whole
    assert counts == pieces_lost  # reported over all the windows' buildings


def test_too_few_whole_buildings_choose_on_all() -> None:
    few = MIN_WHOLE - 1
    scores = {
        DEFAULT.seed_erosion_m: (BuildingCounts(80, 100, 100), BuildingCounts(1, few, few)),
        1.0: (BuildingCounts(70, 100, 100), BuildingCounts(few, few, few)),
    }
    candidates = [InstanceSettings(0.5, 0.9, 1.0, 4.0)]
    chosen, _, whole = choose_settings(FakeWindows(scores), 0.5, candidates)  # type: ignore[arg-type]
    assert chosen == replace(DEFAULT, threshold=0.5) and not whole


def _window(sheds_labelled: bool) -> ValidationWindows:
    """One 160-px validation window at 0.25 m: nine whole 6 x 6 m houses (576 px) predicted
    and labelled, and nine 2.5 x 2.5 m sheds (100 px, 6.25 m²) apart from them, predicted,
    labelled only when ``sheds_labelled`` (many maps leave sheds out)."""
    building = np.zeros((160, 160), np.float32)
    mask = np.zeros((160, 160), np.uint8)
    for i in range(3):
        for j in range(3):
            r, c = 10 + 50 * i, 10 + 50 * j
            building[r : r + 24, c : c + 24] = 0.95
            mask[r : r + 24, c : c + 24] = 1
            building[r + 30 : r + 40, c + 30 : c + 40] = 0.95
            mask[r + 30 : r + 40, c + 30 : c + 40] = int(sheds_labelled)
    windows = ValidationWindows(0.25)
    windows.add(building[None], np.zeros((1, 160, 160), np.float32), mask[None])
    return windows


def test_the_smallest_building_follows_what_the_labels_count() -> None:
    settings = replace(DEFAULT, threshold=0.5, min_seed_m2=1.0)
    # sheds unlabelled: 9 false buildings of 6.25 m² go with the first area above them
    chosen, counts = choose_min_area(_window(False), settings, whole=True)
    assert chosen == replace(settings, min_area_m2=min(a for a in MIN_AREAS if a > 6.25))
    assert (counts.tp, counts.predicted, counts.reference) == (9, 9, 9)
    # sheds labelled: they are buildings, and the default keeps them
    chosen, counts = choose_min_area(_window(True), settings, whole=True)
    assert chosen.min_area_m2 == MIN_AREAS[0] and (counts.tp, counts.reference) == (18, 18)
