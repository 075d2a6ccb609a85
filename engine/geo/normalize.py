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
    """Mean and standard deviation of each input band, in input units; where known, the
    lowest and highest valid value of each band."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    low: tuple[float, ...] | None = None
    high: tuple[float, ...] | None = None

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
        self.low = np.full(bands, np.inf)
        self.high = np.full(bands, -np.inf)

    def add(self, data: np.ndarray, valid: np.ndarray) -> None:
        """Add a (C, H, W) window whose valid pixels are ``valid`` (H, W)."""
        pixels = data[:, valid].astype(np.float64)
        self.count += pixels.shape[1]
        self.total += pixels.sum(axis=1)
        self.total_sq += (pixels**2).sum(axis=1)
        if pixels.shape[1]:
            self.low = np.minimum(self.low, pixels.min(axis=1))
            self.high = np.maximum(self.high, pixels.max(axis=1))

    def result(self) -> BandStats:
        """The statistics so far; raises RasterError when no valid pixel was seen."""
        if self.count == 0:
            raise RasterError(
                "No valid (non-nodata) pixel in the training rasters; check their nodata value."
            )
        mean = self.total / self.count
        var = np.maximum(self.total_sq / self.count - mean**2, 0.0)
        std = np.maximum(np.sqrt(var), 1e-6)
        return BandStats(
            tuple(float(m) for m in mean),
            tuple(float(s) for s in std),
            tuple(float(v) for v in self.low),
            tuple(float(v) for v in self.high),
        )


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


def value_range(stats: BandStats, dtype: str) -> list[tuple[float, float]]:
    """The range of each band that is scaled to 0-1 for a pretrained encoder.

    8-bit imagery: 0-255, as the encoder saw its ImageNet photographs. Other types (16-bit,
    float): the training data's own range, mean +- 3 standard deviations within its lowest and
    highest value, so a few extreme pixels do not squeeze the rest.
    """
    if dtype == "uint8":
        return [(0.0, 255.0)] * len(stats.mean)
    low = stats.low or tuple(m - 3 * s for m, s in zip(stats.mean, stats.std, strict=True))
    high = stats.high or tuple(m + 3 * s for m, s in zip(stats.mean, stats.std, strict=True))
    ranges = []
    for mean, std, lo, hi in zip(stats.mean, stats.std, low, high, strict=True):
        lo, hi = max(lo, mean - 3 * std), min(hi, mean + 3 * std)
        ranges.append((lo, hi) if hi > lo else (lo, lo + 1.0))
    return ranges


def pretrained_stats(
    stats: BandStats, dtype: str, mean01: tuple[float, ...], std01: tuple[float, ...]
) -> BandStats:
    """Band statistics that give a pretrained encoder its inputs as it was trained on them:
    each band scaled to 0-1 over :func:`value_range`, then normalised with the encoder's own
    ``mean01``/``std01`` (per RGB channel; band ``i`` takes channel ``i % 3``, as smp's
    adapted first convolution repeats the RGB filters over the bands)."""
    mean, std = [], []
    for i, (lo, hi) in enumerate(value_range(stats, dtype)):
        channel = i % len(mean01)
        mean.append(lo + mean01[channel] * (hi - lo))
        std.append(std01[channel] * (hi - lo))
    return BandStats(tuple(mean), tuple(std), stats.low, stats.high)
