"""The shift that best lines a reference layer up with the predicted buildings.

Reference footprints traced on other imagery (OpenStreetMap's often are) sit a metre or two
off the imagery a model ran on; scored as they are, a right building then misses its IoU.
:class:`ShiftOverlaps` sums, over rasterised blocks, the pixel overlap of the prediction with
the reference moved by every whole-pixel shift up to a margin (one FFT correlation per block),
so the shift with the best pixel IoU is found in one pass, exactly, however many blocks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class ShiftOverlaps:
    """Pixel counts for every shift of the reference by up to ``margin`` pixels.

    ``overlap[margin + dy, margin + dx]`` counts predicted pixels whose pixel ``dy`` rows
    down and ``dx`` columns right is reference, that is the overlap after moving the
    reference ``dy`` rows up and ``dx`` columns left; ``reference`` counts the reference
    pixels that the move brings into the valid pixels.
    """

    margin: int
    overlap: np.ndarray = field(init=False)
    reference: np.ndarray = field(init=False)
    predicted: int = 0

    def __post_init__(self) -> None:
        size = 2 * self.margin + 1
        self.overlap = np.zeros((size, size), dtype=np.int64)
        self.reference = np.zeros((size, size), dtype=np.int64)

    def add(self, pred: np.ndarray, ref_wide: np.ndarray, valid: np.ndarray | None) -> None:
        """Add one block: ``pred`` (H, W) booleans, ``ref_wide`` the reference over the same
        block widened by ``margin`` on every side (H + 2m, W + 2m), ``valid`` (H, W) the
        pixels that count (None: all)."""
        m = self.margin
        if ref_wide.shape != (pred.shape[0] + 2 * m, pred.shape[1] + 2 * m):
            raise ValueError(f"Reference block {ref_wide.shape} is not {pred.shape} + 2 x {m}.")
        valid = np.ones(pred.shape, dtype=bool) if valid is None else valid
        pred = pred & valid
        self.predicted += int(pred.sum())
        if not ref_wide.any():
            return
        ref = ref_wide.astype(np.float64)
        if pred.any():
            self.overlap += _correlate(ref, pred)
        self.reference += _correlate(ref, valid)

    def iou(self) -> np.ndarray:
        """Pixel IoU for every shift (0 where neither layer has a pixel)."""
        union = self.predicted + self.reference - self.overlap
        return np.where(union > 0, self.overlap / np.maximum(union, 1), 0.0)

    def best(self) -> tuple[int, int]:
        """(dy, dx) of the best pixel IoU; among equals, the smallest move."""
        iou = self.iou()
        m = self.margin
        dy, dx = np.mgrid[-m : m + 1, -m : m + 1]
        order = np.lexsort((dy.ravel() ** 2 + dx.ravel() ** 2, -iou.ravel()))
        index = int(order[0])
        return int(dy.ravel()[index]), int(dx.ravel()[index])


def _correlate(wide: np.ndarray, block: np.ndarray) -> np.ndarray:
    """``out[k, l] = sum(block * wide[k:k+H, l:l+W])`` for every offset, rounded to counts."""
    from scipy import signal  # ~1 s to import: only when a line-up is asked for

    out = signal.correlate(wide, block.astype(np.float64), mode="valid", method="fft")
    return np.asarray(np.rint(out), dtype=np.int64)
