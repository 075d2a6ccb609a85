"""Building scores on label images: one-to-one matches at IoU above 0.5 between predicted and
reference instances of the same window (what ``evaluate`` measures on polygons, here cheap
enough to run on the validation windows every epoch).

The reference instances come from the training mask itself (0 background, 1 building, 2 and 3
the separation strip outside and inside buildings, 255 ignore): the building pixels outside
the strip are the cores of the buildings, and the strip's building pixels go to the nearest
core (a watershed), so houses sharing a wall are two references.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.segmentation import watershed

from engine.polygons.instances import component_labels

#: Mask value of pixels that take no part (nodata, outside the labelled area).
IGNORE = 255


@dataclass(frozen=True)
class BuildingCounts:
    """Matched pairs and the numbers of predicted and reference buildings."""

    tp: int = 0
    predicted: int = 0
    reference: int = 0

    def __add__(self, other: BuildingCounts) -> BuildingCounts:
        return BuildingCounts(
            self.tp + other.tp, self.predicted + other.predicted, self.reference + other.reference
        )

    @property
    def precision(self) -> float:
        """Matched share of the predictions (1 when there are none and none to find)."""
        return self.tp / self.predicted if self.predicted else float(self.reference == 0)

    @property
    def recall(self) -> float:
        """Matched share of the references (1 when there are none)."""
        return self.tp / self.reference if self.reference else 1.0

    @property
    def f1(self) -> float:
        """Harmonic mean of precision and recall."""
        total = self.predicted + self.reference
        return 2 * self.tp / total if total else 1.0


def reference_instances(mask: np.ndarray) -> np.ndarray:
    """Reference building labels (int32, 0 = none) from a training mask."""
    body = (mask == 1) | (mask == 3)
    cores = component_labels(mask == 1)
    n = int(cores.max())
    labels = np.asarray(
        watershed(np.zeros(mask.shape, np.float32), cores, mask=body, connectivity=1), np.int32
    )
    left = component_labels(body & (labels == 0))  # strip pieces with no core (tiny houses)
    return np.where(left > 0, left + n, labels).astype(np.int32)


def count_matches(
    predicted: np.ndarray, reference: np.ndarray, valid: np.ndarray
) -> BuildingCounts:
    """Buildings of ``predicted`` matching one of ``reference`` at IoU above 0.5, counted over
    the ``valid`` pixels. Above 0.5 a region of one label image has at most one partner in
    the other, so the matching is one-to-one without a search (``evaluate``'s polygons use
    >= 0.5; the two differ only at exactly one half)."""
    pred_ids, ref_ids, pairs = _matches(predicted, reference, valid)
    return BuildingCounts(len(pairs[0]), len(pred_ids), len(ref_ids))


def count_whole_matches(
    predicted: np.ndarray, reference: np.ndarray, valid: np.ndarray
) -> BuildingCounts:
    """:func:`count_matches` over the buildings that the window shows whole: a building cut by
    the window's edge or by its invalid pixels (predicted or reference), and its partner if it
    has one, are not counted. A cut building is a piece of unknown size; counting it scores the
    settings by how they treat pieces (a large seed erosion loses them), not buildings."""
    pred_ids, ref_ids, (pred_of, ref_of) = _matches(predicted, reference, valid)
    rim = valid & ~ndimage.binary_erosion(valid, border_value=0)
    cut_pred = np.intersect1d(predicted[rim], pred_ids)
    cut_ref = np.intersect1d(reference[rim], ref_ids)
    cut_pair = np.isin(pred_of, cut_pred) | np.isin(ref_of, cut_ref)
    dropped_pred = np.union1d(cut_pred, pred_of[cut_pair])
    dropped_ref = np.union1d(cut_ref, ref_of[cut_pair])
    return BuildingCounts(
        int((~cut_pair).sum()), len(pred_ids) - len(dropped_pred), len(ref_ids) - len(dropped_ref)
    )


def _matches(
    predicted: np.ndarray, reference: np.ndarray, valid: np.ndarray
) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """The predicted and the reference building labels seen in ``valid`` pixels, and the
    pairs (predicted labels, reference labels) that overlap at IoU above 0.5."""
    pred = np.where(valid, predicted, 0).ravel().astype(np.int64)
    ref = np.where(valid, reference, 0).ravel().astype(np.int64)
    pred_ids, pred = np.unique(pred, return_inverse=True)
    ref_ids, ref = np.unique(ref, return_inverse=True)
    none = np.zeros(0, np.int64)
    if len(pred_ids) == int(pred_ids[0] == 0) or len(ref_ids) == int(ref_ids[0] == 0):
        return pred_ids[pred_ids > 0], ref_ids[ref_ids > 0], (none, none)
    pred_area = np.bincount(pred)
    ref_area = np.bincount(ref)
    both = (pred_ids[pred] > 0) & (ref_ids[ref] > 0)
    pairs, inter = np.unique(pred[both] * len(ref_ids) + ref[both], return_counts=True)
    p, r = pairs // len(ref_ids), pairs % len(ref_ids)
    match = inter / (pred_area[p] + ref_area[r] - inter) > 0.5
    return pred_ids[pred_ids > 0], ref_ids[ref_ids > 0], (pred_ids[p[match]], ref_ids[r[match]])
