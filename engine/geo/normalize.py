"""Per-band normalisation statistics, computed from training windows and stored in the model.

Statistics are accumulated window by window (sums, not a whole band), ignoring nodata pixels.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from engine.errors import RasterError


@dataclass(frozen=True)
class BandStats:
    """Mean and standard deviation of each input band, in input units."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def as_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std as float32 arrays shaped (C, 1, 1) for broadcasting."""
        mean = np.asarray(self.mean, dtype=np.float32)[:, None, None]
        std = np.asarray(self.std, dtype=np.float32)[:, None, None]
        return mean, std


class StatsAccumulator:
    """Running per-band sums over the valid pixels of many windows."""

    def __init__(self, bands: int) -> None:
        self.count = 0
        self.total = np.zeros(bands, dtype=np.float64)
        self.total_sq = np.zeros(bands, dtype=np.float64)

    def add(self, data: np.ndarray, valid: np.ndarray) -> None:
        """Add a (C, H, W) window whose valid pixels are ``valid`` (H, W)."""
        pixels = data[:, valid].astype(np.float64)
        self.count += pixels.shape[1]
        self.total += pixels.sum(axis=1)
        self.total_sq += (pixels**2).sum(axis=1)

    def result(self) -> BandStats:
        """The statistics so far; raises RasterError when no valid pixel was seen."""
        if self.count == 0:
            raise RasterError(
                "No valid (non-nodata) pixel in the training rasters; check their nodata value."
            )
        mean = self.total / self.count
        var = np.maximum(self.total_sq / self.count - mean**2, 0.0)
        std = np.maximum(np.sqrt(var), 1e-6)
        return BandStats(tuple(float(m) for m in mean), tuple(float(s) for s in std))


def compute_stats(windows: Iterable[tuple[np.ndarray, np.ndarray]], bands: int) -> BandStats:
    """Band statistics over ``(data, valid)`` windows."""
    acc = StatsAccumulator(bands)
    for data, valid in windows:
        acc.add(data, valid)
    return acc.result()


def normalize(data: np.ndarray, valid: np.ndarray, stats: BandStats) -> np.ndarray:
    """Standardise a (C, H, W) window with ``stats``; invalid pixels become 0."""
    mean, std = stats.as_arrays()
    if data.shape[0] != mean.shape[0]:
        raise RasterError(
            f"Window has {data.shape[0]} bands but the statistics have {mean.shape[0]}."
        )
    out: np.ndarray = (data.astype(np.float32, copy=False) - mean) / std
    out[:, ~valid] = 0.0
    return out
