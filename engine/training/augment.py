"""Training-time augmentation: the 8 dihedral flips/rotations and brightness/contrast jitter.

Geometry changes are applied identically to the image and its mask; colour changes only to
the image, and nodata pixels stay 0. Every random choice comes from a generator seeded by
(seed, epoch, index), so a run is repeatable and each epoch sees different variants.
"""

from __future__ import annotations

import numpy as np

#: Largest brightness shift, in standard deviations of the normalised image.
BRIGHTNESS = 0.2
#: Largest relative contrast change.
CONTRAST = 0.2


def item_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator for one item of one epoch."""
    return np.random.default_rng((seed, epoch, index))


def dihedral(array: np.ndarray, k: int) -> np.ndarray:
    """Transform ``k`` (0-7) of the dihedral group on the last two axes.

    ``k % 4`` quarter turns counter-clockwise, then a left-right flip when ``k >= 4``;
    0 is the identity. The result is a contiguous copy.
    """
    if not 0 <= k < 8:
        raise ValueError(f"Dihedral transform index must be 0-7, got {k}.")
    out = np.rot90(array, k % 4, axes=(-2, -1))
    if k >= 4:
        out = out[..., ::-1]
    return np.ascontiguousarray(out)


def jitter(
    image: np.ndarray,
    valid: np.ndarray,
    rng: np.random.Generator,
    brightness: float = BRIGHTNESS,
    contrast: float = CONTRAST,
) -> np.ndarray:
    """Scale a normalised (C, H, W) image by a random contrast and shift it by a brightness.

    Invalid pixels (``valid`` False) stay 0.
    """
    gain = 1.0 + rng.uniform(-contrast, contrast)
    shift = rng.uniform(-brightness, brightness)
    out = (image * np.float32(gain) + np.float32(shift)).astype(np.float32, copy=False)
    out[:, ~valid] = 0.0
    return out


def augment(
    image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, nodata: int = 255
) -> tuple[np.ndarray, np.ndarray]:
    """A random dihedral transform of image (C, H, W) and mask (H, W), then colour jitter.

    Pixels whose mask is ``nodata`` count as invalid for the jitter.
    """
    k = int(rng.integers(8))
    image = dihedral(image, k)
    mask = dihedral(mask, k)
    return jitter(image, mask != nodata, rng), mask
