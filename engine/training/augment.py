"""Training-time augmentation: scale jitter, the 8 dihedral flips/rotations,
brightness/contrast jitter and, when asked, colour jitter (each band on its own).

Geometry changes are applied identically to the image and its mask; colour changes only to
the image, and nodata pixels stay 0. Every random choice comes from a generator seeded by
(seed, epoch, index), so a run is repeatable and each epoch sees different variants.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional

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


def colour_jitter(
    image: np.ndarray, valid: np.ndarray, rng: np.random.Generator, strength: float
) -> np.ndarray:
    """Vary a normalised (C, H, W) image's colour by up to ``strength``: its saturation
    (the distance of each pixel from its mean over the bands) by a factor 1 +- 2 x
    ``strength``, then each band by its own gain 1 +- ``strength`` and shift +- ``strength``
    (a camera's white balance and response). A single band gets the gain and shift only.

    Invalid pixels (``valid`` False) stay 0.
    """
    bands = image.shape[0]
    saturation = 1.0 + rng.uniform(-2.0 * strength, 2.0 * strength)
    gain = 1.0 + rng.uniform(-strength, strength, size=(bands, 1, 1))
    shift = rng.uniform(-strength, strength, size=(bands, 1, 1))
    out = image
    if bands > 1:
        grey = image.mean(axis=0, keepdims=True)
        out = grey + np.float32(max(saturation, 0.0)) * (image - grey)
    out = (out * gain.astype(np.float32) + shift.astype(np.float32)).astype(np.float32)
    out[:, ~valid] = 0.0
    return out


def rescale(
    image: np.ndarray,
    mask: np.ndarray,
    factor: float,
    offset: tuple[float, float] = (0.5, 0.5),
    nodata: int = 255,
) -> tuple[np.ndarray, np.ndarray]:
    """Image (C, H, W) and mask (H, W) magnified by ``factor``, at the same shape.

    ``factor`` > 1 shows a crop of 1/``factor`` of the window enlarged (as finer imagery
    would show it); < 1 shows the whole window shrunk (area-averaged, as coarser imagery)
    inside a margin of nodata (image 0, mask ``nodata``). ``offset`` (0-1 each, row and
    column) places the crop in the window, or the shrunk window in the margin. The image is
    resampled bilinearly, the mask by nearest neighbour, on the same grid: they stay aligned.
    """
    height, width = mask.shape
    inner = (max(1, round(height / max(factor, 1.0))), max(1, round(width / max(factor, 1.0))))
    top = round((height - inner[0]) * offset[0])
    left = round((width - inner[1]) * offset[1])
    if factor >= 1.0:
        crop = (slice(top, top + inner[0]), slice(left, left + inner[1]))
        return _resize(image[(slice(None), *crop)], mask[crop], (height, width))
    size = (max(1, round(height * factor)), max(1, round(width * factor)))
    small_image, small_mask = _resize(image, mask, size)
    top = round((height - size[0]) * offset[0])
    left = round((width - size[1]) * offset[1])
    out_image = np.zeros_like(image)
    out_mask = np.full_like(mask, nodata)
    out_image[:, top : top + size[0], left : left + size[1]] = small_image
    out_mask[top : top + size[0], left : left + size[1]] = small_mask
    return out_image, out_mask


def _resize(
    image: np.ndarray, mask: np.ndarray, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Image bilinearly (area-averaged when shrinking) and mask by nearest neighbour."""
    shrink = size[0] < image.shape[-2]
    pixels = functional.interpolate(
        torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None],
        size=size,
        mode="bilinear",
        align_corners=False,
        antialias=shrink,
    )[0].numpy()
    labels = functional.interpolate(
        torch.from_numpy(np.ascontiguousarray(mask))[None, None].float(),
        size=size,
        mode="nearest-exact",
    )[0, 0].numpy()
    return pixels, labels.astype(mask.dtype)


def random_factor(rng: np.random.Generator, largest: float) -> float:
    """A magnification between 1/``largest`` and ``largest``, uniform in its logarithm."""
    span = math.log(largest)
    return float(math.exp(rng.uniform(-span, span)))


def augment(
    image: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    nodata: int = 255,
    scale_jitter: float = 1.0,
    colour: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """A random rescaling (by up to ``scale_jitter``, 1: none), a random dihedral transform
    of image (C, H, W) and mask (H, W), brightness/contrast jitter, then
    :func:`colour_jitter` by ``colour`` (0: none).

    Pixels whose mask is ``nodata`` count as invalid for the jitter.
    """
    if scale_jitter > 1.0:
        factor = random_factor(rng, scale_jitter)
        offset = (float(rng.uniform()), float(rng.uniform()))
        image, mask = rescale(image, mask, factor, offset, nodata)
    k = int(rng.integers(8))
    image = dihedral(image, k)
    mask = dihedral(mask, k)
    valid = mask != nodata
    image = jitter(image, valid, rng)
    if colour > 0.0:
        image = colour_jitter(image, valid, rng, colour)
    return image, mask
