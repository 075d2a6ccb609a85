"""Losses: class mapping, ignored pixels really ignored, pos_weight, sums."""

from __future__ import annotations

import pytest
import torch

from engine.errors import ConfigError
from engine.training.losses import IGNORE, LOSS_TERMS, build_loss, targets_for

ONE = ("building",)
TWO = ("building", "separation")


def sample_mask() -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    mask = torch.randint(0, 3, (2, 16, 16), generator=gen, dtype=torch.uint8)
    mask[:, :, :5] = IGNORE
    return mask


def test_targets_for_maps_classes_to_channels() -> None:
    mask = torch.tensor([[[0, 1], [2, IGNORE]]], dtype=torch.uint8)
    target, valid = targets_for(TWO, mask)
    assert target.shape == (1, 2, 2, 2) and target.dtype == torch.float32
    assert target[0, 0].tolist() == [[0, 1], [0, 0]]  # building: 1 (2 is outside buildings)
    assert target[0, 1].tolist() == [[0, 0], [1, 0]]  # separation: 2
    assert valid.shape == (1, 1, 2, 2) and valid[0, 0].tolist() == [[True, True], [True, False]]
    one, _ = targets_for(ONE, mask[:, None])  # (N, 1, H, W) masks work too
    assert one.shape == (1, 1, 2, 2) and one[0, 0].tolist() == [[0, 1], [0, 0]]
    with pytest.raises(ConfigError, match="roof"):
        targets_for(("roof",), mask)
    with pytest.raises(ConfigError, match="contact"):  # old models' class: no longer trained
        targets_for(("building", "contact"), mask)


def test_separation_targets_keep_the_walls_in_the_buildings() -> None:
    mask = torch.tensor([[[0, 1, 3], [2, 3, IGNORE]]], dtype=torch.uint8)
    target, valid = targets_for(("building", "separation"), mask)
    assert target[0, 0].tolist() == [[0, 1, 1], [0, 1, 0]]  # building: 1 and the walls
    assert target[0, 1].tolist() == [[0, 0, 1], [1, 1, 0]]  # separation: the whole strip


@pytest.mark.parametrize("name", [*LOSS_TERMS, "bce+dice", "jaccard+bce", "focal+dice"])
@pytest.mark.parametrize("classes", [ONE, TWO])
def test_ignored_pixels_do_not_change_the_loss(name: str, classes: tuple[str, ...]) -> None:
    target, valid = targets_for(classes, sample_mask())
    loss = build_loss(name, pos_weight=2.0)
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(target.shape, generator=gen, requires_grad=True)
    base = loss(logits, target, valid)
    changed = logits.detach().clone()
    changed[..., :5] = torch.randn(changed[..., :5].shape, generator=gen) * 20
    assert torch.allclose(loss(changed, target, valid), base, atol=1e-6)
    moved = logits.detach().clone()
    moved[..., 5:] += 2.0  # valid pixels do count
    assert not torch.allclose(loss(moved, target, valid), base, atol=1e-4)
    base.backward()
    assert logits.grad is not None
    assert torch.count_nonzero(logits.grad[..., :5]) == 0
    assert torch.count_nonzero(logits.grad[..., 5:]) > 0


def test_all_ignored_batch_gives_zero_and_backpropagates() -> None:
    mask = torch.full((2, 8, 8), IGNORE, dtype=torch.uint8)
    target, valid = targets_for(ONE, mask)
    logits = torch.randn(2, 1, 8, 8, requires_grad=True)
    value = build_loss("focal+dice")(logits, target, valid)
    assert float(value.detach()) == 0.0
    value.backward()


def test_pos_weight_changes_bce() -> None:
    mask = torch.zeros((1, 8, 8), dtype=torch.uint8)
    mask[0, 2:6, 2:6] = 1
    target, valid = targets_for(ONE, mask)
    logits = torch.zeros(1, 1, 8, 8)
    plain = float(build_loss("bce", 1.0)(logits, target, valid))
    heavy = float(build_loss("bce", 3.0)(logits, target, valid))
    # 16 of 64 pixels are positive, each costs log 2: 3x weight -> (48 + 3*16)/(48 + 16) times.
    assert heavy == pytest.approx(plain * (48 + 3 * 16) / 64)
    empty, valid0 = targets_for(ONE, torch.zeros((1, 8, 8), dtype=torch.uint8))
    assert float(build_loss("bce", 3.0)(logits, empty, valid0)) == pytest.approx(
        float(build_loss("bce", 1.0)(logits, empty, valid0))
    )


def test_sum_is_the_sum_of_its_terms() -> None:
    target, valid = targets_for(TWO, sample_mask())
    logits = torch.randn(target.shape)
    total = build_loss()(logits, target, valid)  # default bce+dice
    parts = build_loss("bce")(logits, target, valid) + build_loss("dice")(logits, target, valid)
    assert torch.allclose(total, parts)
    assert build_loss(" BCE + Dice ").name == "bce+dice"


def test_bad_names_and_weights() -> None:
    with pytest.raises(ConfigError) as err:
        build_loss("bce+hinge")
    assert all(term in str(err.value) for term in ("bce", "dice", "jaccard", "focal"))
    with pytest.raises(ConfigError, match="pos_weight"):
        build_loss("bce", 0.0)


def test_class_weights_weigh_the_channels() -> None:
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 2, 8, 8, generator=gen)
    target = (torch.rand(2, 2, 8, 8, generator=gen) > 0.5).float()
    valid = torch.ones(2, 1, 8, 8, dtype=torch.bool)
    plain = build_loss("bce+dice")
    one = [float(plain(logits[:, c : c + 1], target[:, c : c + 1], valid)) for c in (0, 1)]
    assert float(plain(logits, target, valid)) == pytest.approx(sum(one) / 2)  # the mean
    weighted = float(build_loss("bce+dice", weights=(1.0, 3.0))(logits, target, valid))
    assert weighted == pytest.approx((one[0] + 3 * one[1]) / 4)
    with pytest.raises(ConfigError, match="weights"):
        build_loss("bce", weights=(1.0, 0.0))
