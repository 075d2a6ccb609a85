"""Seeds + watershed settings chosen on the validation windows by building F1.

During validation :class:`ValidationWindows` keeps the building and separation probabilities
of (up to :data:`MAX_WINDOWS`) validation windows with their masks. Every epoch they are
scored with the fixed :data:`DEFAULT` settings (``val_building_f1``: the best epoch is chosen
by it); after training, :func:`choose_settings` tries the coarse :func:`grid` on the best
epoch's windows and keeps the settings with the highest building F1 (ties: the earlier; a
model that no setting separates keeps :data:`DEFAULT` at the threshold best for pixel IoU).
Windows are labelled alone (no halo): their edges cut buildings alike in the prediction and
the reference.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np

from engine.polygons.instances import InstanceSettings, label_instances
from engine.scoring.buildings import IGNORE, BuildingCounts, count_matches, reference_instances

#: Validation windows kept for scoring (the first ones; enough for a stable F1).
MAX_WINDOWS = 96


#: What every epoch is scored with.
DEFAULT = InstanceSettings()
#: The grid tried after training: building thresholds (with the pixel-IoU one), seed
#: thresholds, seed erosions (m) and smallest seeds (m²).
THRESHOLDS = (0.3, 0.4, 0.5)
SEEDS = (0.6, 0.7, 0.8, 0.9, 0.95)
EROSIONS = (0.3, 0.6, 1.0)
MIN_SEEDS = (1.0, 4.0)


def grid(threshold: float) -> list[InstanceSettings]:
    """Every combination of the grid's values, ``threshold`` among the building thresholds."""
    thresholds = sorted({*THRESHOLDS, round(threshold, 2)})
    return [
        InstanceSettings(t, s, e, m)
        for t, s, e, m in itertools.product(thresholds, SEEDS, EROSIONS, MIN_SEEDS)
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

    def score(self, settings: InstanceSettings) -> BuildingCounts:
        """Building matches over the kept windows with ``settings``."""
        params = settings.params(self.pixel_size_m)
        total = BuildingCounts()
        for prob, ref, valid in zip(self.probabilities, self.references, self.valid, strict=True):
            b, s = prob[0].astype(np.float32), prob[1].astype(np.float32)
            total += count_matches(label_instances(b, s, valid, params), ref, valid)
        return total


def choose_settings(
    windows: ValidationWindows, threshold: float, candidates: list[InstanceSettings] | None = None
) -> tuple[InstanceSettings, BuildingCounts]:
    """The settings with the highest building F1 on ``windows``: :data:`DEFAULT` at
    ``threshold`` (the pixel-IoU threshold) unless one of ``candidates`` (default: the
    :func:`grid`) scores higher."""
    best = replace(DEFAULT, threshold=threshold)
    best_counts = windows.score(best)
    for settings in grid(threshold) if candidates is None else candidates:
        counts = windows.score(settings)
        if counts.f1 > best_counts.f1:
            best, best_counts = settings, counts
    return best, best_counts
