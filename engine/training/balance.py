"""Balanced sampling of training windows across places (one place per training raster).

Without balancing, a place weighs as many windows as it has: a region of many small chips
drowns one of a few large ones. ``balance`` b in [0, 1] gives place p a share of each epoch's
draws proportional to ``n_p ** (1 - b)``: 0 keeps today's shares (proportional to windows), 1
gives every place the same share (its windows repeat when it has few), 0.5 is in between.
Windows are drawn with replacement, as many per epoch as there are windows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler


def place_shares(places: Sequence[int], balance: float) -> dict[int, float]:
    """Each place's share of the draws (sums to 1) for windows belonging to ``places``."""
    ids, counts = np.unique(np.asarray(places, dtype=np.int64), return_counts=True)
    raw = counts.astype(np.float64) ** (1.0 - balance)
    return {int(i): float(r / raw.sum()) for i, r in zip(ids, raw, strict=True)}


def window_weights(places: Sequence[int], balance: float) -> np.ndarray:
    """Each window's probability of a draw: its place's share over the place's windows."""
    shares = place_shares(places, balance)
    ids, counts = np.unique(np.asarray(places, dtype=np.int64), return_counts=True)
    per_window = {int(i): shares[int(i)] / int(c) for i, c in zip(ids, counts, strict=True)}
    return np.array([per_window[int(p)] for p in places], dtype=np.float64)


class BalancedSampler(Sampler[int]):
    """Window indices drawn by :func:`window_weights`, re-seeded per epoch; with several ranks
    every rank draws the same sequence and takes its own slice of it."""

    def __init__(
        self, places: Sequence[int], balance: float, seed: int, rank: int = 0, world: int = 1
    ) -> None:
        self.weights = torch.from_numpy(window_weights(places, balance))
        self.seed, self.rank, self.world = seed, rank, world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Draw a new sequence for ``epoch``."""
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.weights) // self.world)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        total = len(self) * self.world
        draws = torch.multinomial(self.weights, total, replacement=True, generator=generator)
        return iter(draws[self.rank :: self.world].tolist())
