"""Augmentation: dihedral transforms and rescaling keep image and mask aligned, jitter spares
nodata."""

from __future__ import annotations

import numpy as np
import pytest

from engine.training.augment import augment, colour_jitter, dihedral, item_rng, jitter, rescale


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


def square(size: int = 64, side: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """A bright centred square: image (2, size, size) and its mask."""
    mask = np.zeros((size, size), dtype=np.uint8)
    start = (size - side) // 2
    mask[start : start + side, start : start + side] = 1
    image = np.stack([mask.astype(np.float32) * 4.0, mask.astype(np.float32) * 2.0])
    return image, mask


def sides(mask: np.ndarray, value: int = 1) -> tuple[int, int]:
    """Height and width of the bounding box of ``mask == value``."""
    rows, cols = np.nonzero(mask == value)
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


@pytest.mark.parametrize("factor", [0.5, 0.625, 1.25, 1.6, 2.0])
def test_rescale_keeps_a_square_a_square_of_the_scaled_size(factor: float) -> None:
    image, mask = square()
    out_image, out_mask = rescale(image, mask, factor)
    assert out_image.shape == image.shape and out_mask.shape == mask.shape
    assert out_mask.dtype == mask.dtype
    height, width = sides(out_mask)
    assert abs(height - 20 * factor) <= 1 and abs(width - 20 * factor) <= 1
    # the image's bright square sits where the mask's is (bilinear edges aside)
    bright = out_image[0] > 2.0
    both = np.logical_and(bright, out_mask == 1).sum()
    assert both / np.logical_or(bright, out_mask == 1).sum() > 0.85
    assert np.allclose(out_image[1], out_image[0] / 2.0, atol=1e-5)


def test_shrinking_leaves_a_margin_of_nodata() -> None:
    image, mask = square()
    out_image, out_mask = rescale(image, mask, 0.5, offset=(0.0, 1.0))
    assert np.all(out_mask[32:, :] == 255) and np.all(out_mask[:, :32] == 255)
    assert np.all(out_image[:, out_mask == 255] == 0.0)
    assert set(np.unique(out_mask[:32, 32:])) == {0, 1}


def test_magnifying_crops_where_the_offset_says() -> None:
    image, mask = square()
    top_left = rescale(image, mask, 2.0, offset=(0.0, 0.0))[1]
    # the crop is the window's top-left 32 x 32 pixels: the square's top-left quarter, doubled
    assert sides(top_left) == (20, 20)
    assert top_left[-1, -1] == 1 and top_left[0, 0] == 0


def test_augment_with_scale_jitter_stays_aligned_and_within_its_range() -> None:
    image, mask = square(side=24)
    areas = []
    for index in range(60):
        out_image, out_mask = augment(image, mask, item_rng(0, 0, index), scale_jitter=1.6)
        valid = out_mask != 255
        assert np.all(out_image[:, ~valid] == 0.0)
        area = int((out_mask == 1).sum())
        if area:
            height, width = sides(out_mask)
            areas.append(area)
            assert min(height, width) >= 24 / 1.6 - 1 and max(height, width) <= 24 * 1.6 + 1
    # both enlarged and shrunk squares were drawn
    assert min(areas) < 24 * 24 * 0.8 and max(areas) > 24 * 24 * 1.25


def test_no_scale_jitter_leaves_the_scale_alone() -> None:
    image, mask = square(side=24)
    for index in range(16):
        out_mask = augment(image, mask, item_rng(0, 0, index))[1]
        assert int((out_mask == 1).sum()) == 24 * 24


def test_colour_jitter_gives_a_grey_image_a_cast_within_its_range_and_spares_nodata() -> None:
    rng = np.random.default_rng(0)
    grey = np.repeat(rng.normal(size=(1, 16, 16)).astype(np.float32), 3, axis=0)
    valid = np.ones((16, 16), dtype=bool)
    valid[:3] = False
    gains = []
    for index in range(50):
        out = colour_jitter(grey, valid, item_rng(0, 0, index), 0.2)
        assert np.all(out[:, ~valid] == 0.0)
        for band in out:  # each band an affine map of the grey one: gain and shift in range
            gain, shift = np.polyfit(grey[0][valid], band[valid], 1)
            assert 0.8 - 1e-4 <= gain <= 1.2 + 1e-4 and abs(shift) <= 0.2 + 1e-4
            gains.append(gain)
        assert np.ptp(out[:, valid], axis=0).max() > 0.0  # the bands no longer agree
    assert min(gains) < 0.85 and max(gains) > 1.15  # the whole range is drawn


def test_colour_jitter_leaves_geometry_and_mask_alone() -> None:
    image, mask = square(side=24)
    for index in range(8):
        plain_image, plain_mask = augment(image, mask, item_rng(0, 0, index))
        out_image, out_mask = augment(image, mask, item_rng(0, 0, index), colour=0.3)
        np.testing.assert_array_equal(out_mask, plain_mask)
        # the same dihedral transform and jitter came first: only the colour differs
        assert not np.allclose(out_image, plain_image)
