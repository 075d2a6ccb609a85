"""Scores of predicted buildings against reference buildings: pixel counts and object matching.

Pure functions over numpy arrays and shapely geometries, shared by training (validation
scores) and evaluation.

Zero-denominator rule: a ratio whose denominator is zero is 1.0 when there is nothing to
disagree about (no true positive, false positive or false negative: nothing to find and
nothing found) and 0.0 otherwise. So predicting nothing where there is nothing gives perfect
scores, while predicting nothing where buildings exist gives precision 0.0 (not a vacuous
1.0), and predicting buildings where none exist gives recall 0.0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from engine.errors import ConfigError


def _ratio(numerator: int, denominator: int, perfect: bool) -> float:
    """``numerator / denominator``; for 0/0, 1.0 when ``perfect`` else 0.0."""
    if denominator == 0:
        return 1.0 if perfect else 0.0
    return numerator / denominator


@dataclass(frozen=True)
class ConfusionCounts:
    """Counts of true/false positives/negatives (pixels or objects); add them up with ``+``."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def __add__(self, other: ConfusionCounts) -> ConfusionCounts:
        return ConfusionCounts(
            self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn
        )

    @classmethod
    def from_arrays(
        cls, pred: np.ndarray, truth: np.ndarray, valid: np.ndarray | None = None
    ) -> ConfusionCounts:
        """Count pixels of boolean ``pred`` against ``truth`` where ``valid`` (default: all).

        Raises:
            ValueError: the arrays do not share one shape.
        """
        pred = np.asarray(pred, dtype=bool)
        truth = np.asarray(truth, dtype=bool)
        if pred.shape != truth.shape or (valid is not None and np.shape(valid) != pred.shape):
            shapes = [pred.shape, truth.shape] + ([np.shape(valid)] if valid is not None else [])
            raise ValueError(f"Prediction, truth and valid mask differ in shape: {shapes}.")
        if valid is not None:
            valid = np.asarray(valid, dtype=bool)
            pred = pred & valid
            truth = truth & valid
            total = int(np.count_nonzero(valid))
        else:
            total = pred.size
        tp = int(np.count_nonzero(pred & truth))
        fp = int(np.count_nonzero(pred)) - tp
        fn = int(np.count_nonzero(truth)) - tp
        return cls(tp=tp, fp=fp, fn=fn, tn=total - tp - fp - fn)

    @property
    def _perfect(self) -> bool:
        return self.fp == 0 and self.fn == 0

    @property
    def precision(self) -> float:
        """Tp / (tp + fp)."""
        return _ratio(self.tp, self.tp + self.fp, self._perfect)

    @property
    def recall(self) -> float:
        """Tp / (tp + fn)."""
        return _ratio(self.tp, self.tp + self.fn, self._perfect)

    @property
    def f1(self) -> float:
        """2 tp / (2 tp + fp + fn), the harmonic mean of precision and recall."""
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn, self._perfect)

    @property
    def iou(self) -> float:
        """Tp / (tp + fp + fn), the Jaccard index."""
        return _ratio(self.tp, self.tp + self.fp + self.fn, self._perfect)

    @property
    def accuracy(self) -> float:
        """(tp + tn) / all."""
        return _ratio(self.tp + self.tn, self.tp + self.fp + self.fn + self.tn, self._perfect)

    def scores(self) -> dict[str, float]:
        """precision, recall, f1, iou and accuracy."""
        return {
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "iou": self.iou,
            "accuracy": self.accuracy,
        }


@dataclass(frozen=True)
class Matching:
    """A one-to-one matching of predicted to reference objects.

    Attributes:
        pairs: (k, 2) int array of matched (prediction index, reference index).
        ious: (k,) IoU of each matched pair.
        unmatched_pred: indices of predictions without a match (false positives).
        unmatched_ref: indices of references without a match (false negatives).
        pred_best_iou: (n_pred,) best IoU of each prediction with any reference (0 if none).
        ref_best_iou: (n_ref,) best IoU of each reference with any prediction (0 if none).
        pred_match: (n_pred,) matched reference index per prediction, -1 when unmatched.
        ref_match: (n_ref,) matched prediction index per reference, -1 when unmatched.
        iou_threshold: the IoU a pair needed to match.
        merges: predictions that hold most (>= half the area) of two or more references:
            buildings run together.
        splits: references that hold most of two or more predictions: a building cut up.
        pred_cause: (n_pred,) why each unmatched prediction is false (:data:`FALSE_CAUSES`),
            "" for a matched one.
        ref_cause: (n_ref,) why each unmatched reference is missed (:data:`MISSED_CAUSES`),
            "" for a matched one.
    """

    pairs: np.ndarray
    ious: np.ndarray
    unmatched_pred: np.ndarray
    unmatched_ref: np.ndarray
    pred_best_iou: np.ndarray
    ref_best_iou: np.ndarray
    pred_match: np.ndarray
    ref_match: np.ndarray
    iou_threshold: float
    pred_cause: np.ndarray
    ref_cause: np.ndarray
    merges: int = 0
    splits: int = 0

    @property
    def tp(self) -> int:
        """Matched pairs."""
        return len(self.pairs)

    @property
    def fp(self) -> int:
        """Unmatched predictions."""
        return len(self.unmatched_pred)

    @property
    def fn(self) -> int:
        """Unmatched references."""
        return len(self.unmatched_ref)


def _as_geometry_array(geoms: Sequence[BaseGeometry] | np.ndarray) -> np.ndarray:
    """An object array of geometries, invalid ones repaired, missing ones empty."""
    arr = np.asarray(list(geoms) if not isinstance(geoms, np.ndarray) else geoms, dtype=object)
    arr = arr.reshape(-1)
    arr = np.where(shapely.is_missing(arr), shapely.Polygon(), arr)
    bad = ~shapely.is_valid(arr)
    if bad.any():
        arr = arr.copy()
        arr[bad] = shapely.make_valid(arr[bad])
    return arr


@dataclass(frozen=True)
class Overlaps:
    """Every intersecting (prediction, reference) pair: indices, intersection area, IoU."""

    pred: np.ndarray
    ref: np.ndarray
    inter: np.ndarray
    iou: np.ndarray


def pair_overlaps(pred: np.ndarray, ref: np.ndarray) -> Overlaps:
    """Every intersecting (prediction, reference) pair and its IoU, via an STRtree."""
    tree = shapely.STRtree(ref)
    p_idx, r_idx = tree.query(pred, predicate="intersects")
    inter = shapely.area(shapely.intersection(pred[p_idx], ref[r_idx]))
    union = shapely.area(pred)[p_idx] + shapely.area(ref)[r_idx] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return Overlaps(p_idx.astype(np.int64), r_idx.astype(np.int64), inter, iou)


#: Why a prediction matched nothing, in order of precedence: it runs two or more reference
#: buildings together; it is a piece of a reference building cut in two or more; less than
#: half of it lies on reference buildings (extra); it lies on one but the outlines differ too
#: much (IoU under the threshold).
FALSE_CAUSES = ("merge", "split", "extra", "outline")
#: Why a reference building matched nothing: a prediction runs it together with another
#: one; it is cut in two or more; less than half of it is predicted (missed); the outlines
#: differ too much.
MISSED_CAUSES = ("merge", "split", "missed", "outline")


@dataclass(frozen=True)
class Overlapping:
    """The predictions and references that hold most (``share``) of two or more of the
    other: merges and splits."""

    overlaps: Overlaps
    pred_area: np.ndarray
    ref_area: np.ndarray
    ref_inside: np.ndarray  # per overlapping pair: the reference lies mostly in the prediction
    pred_inside: np.ndarray  # per overlapping pair: the prediction lies mostly in the reference
    merging: np.ndarray  # (n_pred,) bool: holds most of two or more references
    split: np.ndarray  # (n_ref,) bool: holds most of two or more predictions

    @classmethod
    def of(
        cls, overlaps: Overlaps, pred_area: np.ndarray, ref_area: np.ndarray, share: float = 0.5
    ) -> Overlapping:
        """Merges and splits among ``overlaps`` of geometries with these areas."""
        p, r, inter = overlaps.pred, overlaps.ref, overlaps.inter
        ref_inside = (inter >= share * ref_area[r]) & (ref_area[r] > 0)
        pred_inside = (inter >= share * pred_area[p]) & (pred_area[p] > 0)
        merging = np.bincount(p[ref_inside], minlength=len(pred_area)) >= 2
        split = np.bincount(r[pred_inside], minlength=len(ref_area)) >= 2
        return cls(overlaps, pred_area, ref_area, ref_inside, pred_inside, merging, split)

    def causes(
        self, pred_match: np.ndarray, ref_match: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Why each unmatched prediction is false (:data:`FALSE_CAUSES`) and each unmatched
        reference missed (:data:`MISSED_CAUSES`); "" for the matched ones."""
        p, r, inter = self.overlaps.pred, self.overlaps.ref, self.overlaps.inter
        ref_merged = np.zeros(len(self.ref_area), bool)  # lies mostly in a merging prediction
        ref_merged[r[self.ref_inside & self.merging[p]]] = True
        pred_split = np.zeros(len(self.pred_area), bool)  # lies mostly in a split reference
        pred_split[p[self.pred_inside & self.split[r]]] = True
        pred_on = np.bincount(p, weights=inter, minlength=len(self.pred_area))
        ref_on = np.bincount(r, weights=inter, minlength=len(self.ref_area))
        false = np.select(
            [self.merging, pred_split, (pred_on < 0.5 * self.pred_area) | (self.pred_area == 0)],
            FALSE_CAUSES[:3],
            FALSE_CAUSES[3],
        ).astype(object)
        missed = np.select(
            [ref_merged, self.split, (ref_on < 0.5 * self.ref_area) | (self.ref_area == 0)],
            MISSED_CAUSES[:3],
            MISSED_CAUSES[3],
        ).astype(object)
        false[pred_match >= 0] = ""
        missed[ref_match >= 0] = ""
        return false, missed


def match_objects(
    pred_geoms: Sequence[BaseGeometry] | np.ndarray,
    ref_geoms: Sequence[BaseGeometry] | np.ndarray,
    iou_threshold: float = 0.5,
) -> Matching:
    """Match predictions to references one-to-one at IoU >= ``iou_threshold``.

    The SpaceNet rule: candidate pairs are taken greedily from the highest IoU down, each
    prediction and each reference used at most once. Ties go to the lower prediction, then
    the lower reference index. Invalid geometries are repaired first.

    Raises:
        ConfigError: ``iou_threshold`` is not in (0, 1].
    """
    if not 0.0 < iou_threshold <= 1.0:
        raise ConfigError(f"IoU threshold must be in (0, 1], got {iou_threshold}; 0.5 is usual.")
    pred = _as_geometry_array(pred_geoms)
    ref = _as_geometry_array(ref_geoms)
    overlaps = pair_overlaps(pred, ref)
    p_idx, r_idx, iou = overlaps.pred, overlaps.ref, overlaps.iou
    found = Overlapping.of(overlaps, shapely.area(pred), shapely.area(ref))
    pred_best = np.zeros(len(pred))
    ref_best = np.zeros(len(ref))
    np.maximum.at(pred_best, p_idx, iou)
    np.maximum.at(ref_best, r_idx, iou)
    pred_match = np.full(len(pred), -1, dtype=np.int64)
    ref_match = np.full(len(ref), -1, dtype=np.int64)
    keep = iou >= iou_threshold
    order = np.lexsort((r_idx[keep], p_idx[keep], -iou[keep]))
    pairs: list[tuple[int, int]] = []
    ious: list[float] = []
    for p, r, v in zip(p_idx[keep][order], r_idx[keep][order], iou[keep][order], strict=True):
        if pred_match[p] < 0 and ref_match[r] < 0:
            pred_match[p], ref_match[r] = r, p
            pairs.append((int(p), int(r)))
            ious.append(float(v))
    pred_cause, ref_cause = found.causes(pred_match, ref_match)
    return Matching(
        pairs=np.asarray(pairs, dtype=np.int64).reshape(-1, 2),
        ious=np.asarray(ious, dtype=np.float64),
        unmatched_pred=np.flatnonzero(pred_match < 0),
        unmatched_ref=np.flatnonzero(ref_match < 0),
        pred_best_iou=pred_best,
        ref_best_iou=ref_best,
        pred_match=pred_match,
        ref_match=ref_match,
        iou_threshold=float(iou_threshold),
        merges=int(found.merging.sum()),
        splits=int(found.split.sum()),
        pred_cause=pred_cause,
        ref_cause=ref_cause,
    )


def cause_counts(causes: np.ndarray, names: Sequence[str]) -> dict[str, int]:
    """How many of ``causes`` are each of ``names`` (in that order)."""
    return {name: int((causes == name).sum()) for name in names}


def object_scores(matching: Matching) -> dict[str, float]:
    """object_precision, object_recall, object_f1, tp, fp, fn, mean_iou_matched, merges and
    splits (see :class:`Matching`).

    Ratios follow the module's zero-denominator rule; ``mean_iou_matched`` is 0.0 when
    nothing matched.
    """
    counts = ConfusionCounts(tp=matching.tp, fp=matching.fp, fn=matching.fn)
    return {
        "object_precision": counts.precision,
        "object_recall": counts.recall,
        "object_f1": counts.f1,
        "tp": matching.tp,
        "fp": matching.fp,
        "fn": matching.fn,
        "mean_iou_matched": float(matching.ious.mean()) if len(matching.ious) else 0.0,
        "merges": matching.merges,
        "splits": matching.splits,
    }
