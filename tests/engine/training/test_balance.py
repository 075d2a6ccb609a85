"""Balanced sampling draws each place in its intended share."""

from __future__ import annotations

from collections import Counter

import pytest

from engine.training.balance import BalancedSampler, place_shares

# three places with 300, 60 and 6 windows (like Zanzibar, Nairobi and Catanduanes)
PLACES = [0] * 300 + [1] * 60 + [2] * 6


def _drawn_shares(sampler: BalancedSampler, epochs: int) -> dict[int, float]:
    counts: Counter[int] = Counter()
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        counts.update(PLACES[i] for i in sampler)
    total = sum(counts.values())
    return {p: counts[p] / total for p in (0, 1, 2)}


def test_shares_by_hand() -> None:
    assert place_shares(PLACES, 1.0) == pytest.approx({0: 1 / 3, 1: 1 / 3, 2: 1 / 3})
    assert place_shares(PLACES, 0.0) == pytest.approx({0: 300 / 366, 1: 60 / 366, 2: 6 / 366})
    # 0.5: square roots of the counts, 17.32 : 7.75 : 2.45
    roots = 300**0.5 + 60**0.5 + 6**0.5
    assert place_shares(PLACES, 0.5)[2] == pytest.approx(6**0.5 / roots)


@pytest.mark.parametrize("balance", [1.0, 0.5])
def test_draws_follow_the_shares(balance: float) -> None:
    drawn = _drawn_shares(BalancedSampler(PLACES, balance, seed=3), epochs=60)  # ~22,000 draws
    for place, share in place_shares(PLACES, balance).items():
        assert drawn[place] == pytest.approx(share, abs=0.015)


def test_epochs_differ_and_repeat_with_the_seed() -> None:
    sampler = BalancedSampler(PLACES, 1.0, seed=3)
    sampler.set_epoch(1)
    first = list(sampler)
    sampler.set_epoch(2)
    assert list(sampler) != first
    sampler.set_epoch(1)
    assert list(sampler) == first
    assert len(first) == len(PLACES)


def test_ranks_split_one_sequence() -> None:
    ranks = [BalancedSampler(PLACES, 1.0, seed=3, rank=r, world=2) for r in (0, 1)]
    whole = BalancedSampler(PLACES, 1.0, seed=3)
    for s in (*ranks, whole):
        s.set_epoch(4)
    a, b = (list(s) for s in ranks)
    assert len(a) == len(b) == 183
    assert sorted(a + b) == sorted(whole)
