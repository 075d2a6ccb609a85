"""Augmentation: dihedral transforms keep image and mask aligned, jitter spares nodata."""

from __future__ import annotations

import numpy as np
import pytest

from engine.training.augment import augment, dihedral, item_rng, jitter


def marked(shape: tuple[int, int] = (16, 16), at: tuple[int, int] = (2, 5)) -> np.ndarray:
    a = np.zeros(shape, dtype=np.float32)
    a[at] = 1.0
    return a


def test_dihedral_gives_eight_distinct_transforms() -> None:
    a = np.arange(9).reshape(3, 3)
    results = {dihedral(a, k).tobytes() for k in range(8)}
    assert len(results) == 8
    np.testing.assert_array_equal(dihedral(a, 0), a)
    np.testing.assert_array_equal(dihedral(a, 1), np.rot90(a))
    np.testing.assert_array_equal(dihedral(a, 4), a[:, ::-1])


def test_dihedral_works_on_channels_and_is_contiguous() -> None:
    img = np.stack([marked(), 2 * marked()])
    out = dihedral(img, 5)
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(out[1], 2 * dihedral(marked(), 5))


def test_dihedral_rejects_bad_index() -> None:
    with pytest.raises(ValueError, match="0-7"):
        dihedral(np.zeros((2, 2)), 8)


def test_augment_moves_image_and_mask_together_through_all_eight_transforms() -> None:
    image = np.stack([marked() * 5, marked() * 7])
    mask = marked().astype(np.uint8)
    positions = set()
    for index in range(200):
        out_img, out_mask = augment(image, mask, item_rng(0, 0, index))
        (r, c) = np.argwhere(out_mask == 1)[0]
        # The marked pixel is the brightest one in every band, exactly where the mask is 1.
        for band in out_img:
            assert np.unravel_index(np.argmax(band), band.shape) == (r, c)
        positions.add((int(r), int(c)))
    assert len(positions) == 8


def test_augment_is_repeatable_per_seed_epoch_index() -> None:
    rng_image = np.random.default_rng(0).random((3, 8, 8), dtype=np.float32)
    mask = np.zeros((8, 8), dtype=np.uint8)
    a = augment(rng_image, mask, item_rng(1, 2, 3))[0]
    b = augment(rng_image, mask, item_rng(1, 2, 3))[0]
    c = augment(rng_image, mask, item_rng(1, 3, 3))[0]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_jitter_changes_valid_pixels_and_keeps_nodata_zero() -> None:
    image = np.ones((2, 4, 4), dtype=np.float32)
    valid = np.ones((4, 4), dtype=bool)
    valid[0, :] = False
    image[:, ~valid] = 0.0
    out = jitter(image, valid, np.random.default_rng(5))
    assert out.dtype == np.float32
    assert np.all(out[:, ~valid] == 0.0)
    assert not np.allclose(out[:, valid], 1.0)
    assert np.all(np.abs(out[:, valid] - 1.0) <= 0.2 * 1.0 + 0.2 + 1e-6)


def test_augment_keeps_nodata_pixels_zero() -> None:
    image = np.full((1, 6, 6), 3.0, dtype=np.float32)
    mask = np.zeros((6, 6), dtype=np.uint8)
    mask[:, :2] = 255
    image[:, mask == 255] = 0.0
    for index in range(16):
        out_img, out_mask = augment(image, mask, item_rng(0, 0, index))
        assert np.all(out_img[:, out_mask == 255] == 0.0)
        assert np.all(out_img[:, out_mask != 255] != 0.0)
