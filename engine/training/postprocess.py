"""Seeds + watershed settings chosen on the validation windows by building F1.

During validation :class:`ValidationWindows` keeps the building and separation probabilities
of (up to :data:`MAX_WINDOWS`) validation windows with their masks. Every epoch they are
scored with fixed settings, :data:`EPOCH_SETTINGS` (``val_building_f1``, the best of those
few, so a model that is still calibrated low is not scored 0: the best epoch is chosen by
it); after training, :func:`choose_settings` tries the coarse :func:`grid` on the best
epoch's windows and keeps the settings with the highest building F1 over the buildings the
windows show whole (ties: the earlier; a model that no setting separates keeps
:data:`DEFAULT` at the threshold best for pixel IoU). A 256-px window cuts most buildings it
holds; scored on the pieces, the choice favoured small seeds that keep pieces and split whole
roofs (docs/BENCHMARKS.md, *Run to run*). With those settings, :func:`choose_min_area` then
picks the smallest building area kept the same way (*Smallest building*).
Building thresholds are only tried where validation pixel IoU is within :data:`IOU_SLACK` of
its best (:func:`thresholds_near`), so separating buildings never costs the building mask.
Windows are labelled alone (no halo): their edges cut buildings alike in the prediction and
the reference.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import NamedTuple

import numpy as np

from engine.config import MIN_AREA_M2
from engine.polygons.instances import InstanceSettings, label_instances
from engine.scoring.buildings import (
    IGNORE,
    BuildingCounts,
    count_matches,
    count_whole_matches,
    reference_instances,
)

#: The smallest building areas (m²) tried after the settings: the first is the default, what
#: every epoch is scored with.
MIN_AREAS = (MIN_AREA_M2, 8.0, 12.0, 16.0, 20.0, 25.0, 30.0)
#: Validation windows kept for scoring (the first ones; enough for a stable F1).
MAX_WINDOWS = 96


#: The settings when nothing better is found.
DEFAULT = InstanceSettings()
#: What every epoch is scored with (the best of these).
EPOCH_SETTINGS = tuple(replace(DEFAULT, seed_threshold=s) for s in (0.6, 0.75, 0.9))
#: Fewer whole buildings than this in the validation windows: settings are chosen on all.
MIN_WHOLE = 30
#: Fewer reference buildings than this in a fine-tuning's validation windows: the starting
#: model's threshold and settings are kept. Chosen on a handful of buildings they are noise (six
#: buildings once chose a threshold of 0.01: nine pixels in ten became building).
MIN_CHOICE = 30
#: A small house (m²): without a separation class, MIN_CHOICE of them in building pixels.
SMALL_HOUSE_M2 = 30.0
#: How much validation pixel IoU a building threshold may cost against the best one.
IOU_SLACK = 0.01
#: The grid tried after training: building thresholds (with the pixel-IoU one), seed
#: thresholds, seed erosions (m) and smallest seeds (m²).
THRESHOLDS = (0.3, 0.4, 0.5)
SEEDS = (0.6, 0.7, 0.8, 0.9, 0.95)
EROSIONS = (0.3, 0.6, 1.0)
MIN_SEEDS = (1.0, 4.0)


def thresholds_near(iou_at: Callable[[float], float], best: float) -> list[float]:
    """``best`` (the pixel-IoU threshold) and those of :data:`THRESHOLDS` whose validation
    pixel IoU (``iou_at``) is within :data:`IOU_SLACK` of it."""
    top = iou_at(best)
    return sorted({round(best, 2), *(t for t in THRESHOLDS if iou_at(t) >= top - IOU_SLACK)})


def grid(thresholds: Iterable[float]) -> list[InstanceSettings]:
    """Every combination of the grid's values with these building thresholds."""
    return [
        InstanceSettings(t, s, e, m)
        for t, s, e, m in itertools.product(sorted(set(thresholds)), SEEDS, EROSIONS, MIN_SEEDS)
    ]


class ValidationWindows:
    """Building and separation probabilities of validation windows, with their references."""

    def __init__(self, pixel_size_m: float, limit: int = MAX_WINDOWS) -> None:
        self.pixel_size_m, self.limit = pixel_size_m, limit
        self.probabilities: list[np.ndarray] = []  # (2, H, W) float16
        self.references: list[np.ndarray] = []  # int32 labels
        self.valid: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self.probabilities)

    def add(self, building: np.ndarray, separation: np.ndarray, mask: np.ndarray) -> None:
        """Keep a batch (N, H, W) while there is room."""
        for b, s, m in zip(building, separation, mask, strict=True):
            if len(self) >= self.limit:
                return
            self.probabilities.append(np.stack([b, s]).astype(np.float16))
            self.references.append(reference_instances(m))
            self.valid.append(m != IGNORE)

    def buildings(self) -> int:
        """Reference buildings over the kept windows (one cut by two windows counts twice)."""
        return sum(int(np.count_nonzero(np.unique(ref))) for ref in self.references)

    def epoch_f1(self) -> float:
        """The epoch's building F1: the best over :data:`EPOCH_SETTINGS`."""
        return max(self.score(s).f1 for s in EPOCH_SETTINGS)

    def score(self, settings: InstanceSettings, whole: bool = False) -> BuildingCounts:
        """Building matches over the kept windows with ``settings`` (``whole``: only of the
        buildings no window edge cuts, :func:`count_whole_matches`); predicted buildings
        smaller than the settings' smallest building are joined to a neighbour or dropped
        first, as detect does."""
        count = count_whole_matches if whole else count_matches
        params = settings.params(self.pixel_size_m)
        smallest = settings.min_area_m2 / self.pixel_size_m**2
        total = BuildingCounts()
        for prob, ref, valid in zip(self.probabilities, self.references, self.valid, strict=True):
            b, s = prob[0].astype(np.float32), prob[1].astype(np.float32)
            labels = label_instances(b, s, valid, params)
            sizes = np.bincount(labels.ravel())
            labels = np.where(sizes[labels] >= smallest, labels, 0)
            total += count(labels, ref, valid)
        return total


class SettingsChoice(NamedTuple):
    """What :func:`choose_settings` chose, its counts over all the windows' buildings, and
    whether it was chosen on the whole buildings (False: too few of them, on all)."""

    settings: InstanceSettings
    counts: BuildingCounts
    whole: bool


def choose_settings(
    windows: ValidationWindows, threshold: float, candidates: list[InstanceSettings] | None = None
) -> SettingsChoice:
    """The settings with the highest building F1 on the buildings ``windows`` show whole (on
    all their buildings if fewer than :data:`MIN_WHOLE` are whole): :data:`DEFAULT` at
    ``threshold`` (the pixel-IoU threshold) unless one of ``candidates`` (default: the
    :func:`grid` at ``threshold``) scores higher."""
    best = replace(DEFAULT, threshold=threshold)
    counts = windows.score(best, whole=True)
    whole = counts.reference >= MIN_WHOLE
    best_f1 = (counts if whole else windows.score(best)).f1
    for settings in grid([threshold]) if candidates is None else candidates:
        f1 = windows.score(settings, whole=whole).f1
        if f1 > best_f1:
            best, best_f1 = settings, f1
    return SettingsChoice(best, windows.score(best), whole)


def choose_min_area(
    windows: ValidationWindows, settings: InstanceSettings, whole: bool
) -> tuple[InstanceSettings, BuildingCounts]:
    """``settings`` with the smallest building area of :data:`MIN_AREAS` that gives the
    highest building F1 (on the buildings the windows show whole when ``whole``; ties: the
    smaller), and its counts over all the windows' buildings. Which small buildings count depends on
    the labels (many maps leave sheds out): the validation labels say it for the model's
    places, a cut piece of a large roof does not, hence the whole buildings."""
    best, best_f1 = replace(settings, min_area_m2=MIN_AREA_M2), -1.0
    for area in MIN_AREAS:
        candidate = replace(settings, min_area_m2=area)
        f1 = windows.score(candidate, whole=whole).f1
        if f1 > best_f1:
            best, best_f1 = candidate, f1
    return best, windows.score(best)
