"""Squaring: noisy L, T and U outlines come back with right angles and their wings;
neighbours keep their shared wall; a circle stays round."""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely
from rasterio import features
from scipy import ndimage
from shapely import affinity
from shapely.geometry import Polygon, shape

from engine.polygons.shapes import canonical_polygons, simplify_coverage
from engine.polygons.square import square_group

SIZE = 128

L = Polygon([(0, 0), (60, 0), (60, 25), (25, 25), (25, 70), (0, 70)])
T = Polygon([(0, 0), (70, 0), (70, 20), (45, 20), (45, 60), (25, 60), (25, 20), (0, 20)])
U = Polygon([(0, 0), (70, 0), (70, 60), (50, 60), (50, 20), (20, 20), (20, 60), (0, 60)])


def placed(shape_: Polygon, angle: float) -> Polygon:
    """``shape_`` turned by ``angle`` degrees and centred in the raster."""
    turned = affinity.rotate(shape_, angle, origin="centroid")
    c = turned.centroid
    return affinity.translate(turned, SIZE / 2 - c.x, SIZE / 2 - c.y)


def traced(labels: np.ndarray) -> list[Polygon]:
    """Pixel outlines of labelled regions as the detection traces and simplifies them."""
    geoms = [shape(g) for g, _ in features.shapes(labels, mask=labels > 0)]
    return list(simplify_coverage(canonical_polygons(geoms), 1.0))


def noisy_outline(truth: Polygon, seed: int) -> Polygon:
    """``truth`` as a blurred, noisy probability thresholded at 0.5, then traced."""
    mask = features.rasterize([truth], out_shape=(SIZE, SIZE)).astype(float)
    noise = np.random.default_rng(seed).normal(0, 0.3, mask.shape)
    prob = ndimage.gaussian_filter(mask + noise, 1.5)
    labels, _ = ndimage.label(prob > 0.5)
    pieces = traced(labels.astype(np.int32))
    return max(pieces, key=lambda p: p.area)


def noisy_neighbours(a: Polygon, b: Polygon, seed: int) -> np.ndarray:
    """Labels 1 and 2 of two touching buildings, each a blurred noisy probability
    thresholded at 0.5 (the first keeps the pixels both claim)."""
    rng = np.random.default_rng(seed)
    truth = features.rasterize([(a, 1), (b, 2)], out_shape=(SIZE, SIZE))
    labels = np.zeros((SIZE, SIZE), np.int32)
    for value in (1, 2):
        prob = ndimage.gaussian_filter((truth == value) + rng.normal(0, 0.2, truth.shape), 1.0)
        labels[(prob > 0.5) & (labels == 0)] = value
    return labels


def corner_angles(polygon: Polygon) -> np.ndarray:
    xy = np.asarray(polygon.exterior.coords)[:-1]
    before, after = np.roll(xy, 1, axis=0) - xy, np.roll(xy, -1, axis=0) - xy
    cos = (before * after).sum(1) / np.hypot(*before.T) / np.hypot(*after.T)
    return np.degrees(np.arccos(np.clip(cos, -1, 1)))


def iou(a: Polygon, b: Polygon) -> float:
    return float(a.intersection(b).area / a.union(b).area)


@pytest.mark.parametrize(("truth", "corners"), [(L, 6), (T, 8), (U, 8)], ids=["L", "T", "U"])
@pytest.mark.parametrize("angle", [0.0, 17.0, -33.0])
def test_noisy_shapes_come_back_square_with_their_wings(
    truth: Polygon, corners: int, angle: float
) -> None:
    truth = placed(truth, angle)
    outline = noisy_outline(truth, seed=abs(int(angle)) + corners)
    assert len(outline.exterior.coords) - 1 > corners  # the wobble to remove
    (squared,) = square_group([outline])
    assert len(squared.exterior.coords) - 1 == corners  # every wing kept, nothing more
    assert np.abs(corner_angles(squared) - 90).max() < 0.5
    assert iou(squared, truth) >= iou(outline, truth) - 0.02


def test_a_circle_stays_as_it_was() -> None:
    circle = shapely.Point(SIZE / 2, SIZE / 2).buffer(40)
    outline = noisy_outline(circle, seed=5)
    (after,) = square_group([outline])
    assert after.equals(outline)


def test_neighbours_squared_together_still_share_their_wall() -> None:
    a = Polygon([(0, 0), (40, 0), (40, 30), (0, 30)])
    b = Polygon([(40, 0), (75, 0), (75, 30), (40, 30)])
    a, b = (affinity.translate(affinity.rotate(g, 12, origin=(0, 0)), 25, 30) for g in (a, b))
    first, second = traced(noisy_neighbours(a, b, seed=1))
    shared_before = first.intersection(second).length
    assert shared_before > 25
    one, two = square_group([first, second])
    assert len(one.exterior.coords) == len(two.exterior.coords) == 5
    assert one.intersection(two).area < 1e-6  # no overlap
    # the wall is still one: its whole length is shared, no sliver between the two
    assert one.intersection(two).length == pytest.approx(min(_side(one), _side(two)), rel=0.05)


def _side(rect: Polygon) -> float:
    """The shorter side of a rectangle."""
    xy = np.asarray(rect.exterior.coords)
    sides = np.hypot(*np.diff(xy, axis=0).T)
    return float(sides.min())


def test_aspect_squares_on_the_ground() -> None:
    # a ground square drawn on pixels twice as tall as wide: 20 x 10 pixels
    ground = affinity.rotate(Polygon([(0, 0), (40, 0), (40, 40), (0, 40)]), 20, origin=(0, 0))
    pixels = affinity.scale(ground, 1.0, 0.5, origin=(0, 0))
    wobbly = Polygon(
        [
            (x + 0.3 * math.sin(i), y)
            for i, (x, y) in enumerate(pixels.segmentize(3).exterior.coords)
        ]
    )
    (squared,) = square_group([wobbly], aspect=2.0)
    on_ground = affinity.scale(squared, 1.0, 2.0, origin=(0, 0))
    assert np.abs(corner_angles(on_ground) - 90).max() < 0.5


def test_neighbours_at_other_angles_each_keep_their_own() -> None:
    # two touching houses, one turned 30 degrees against the other
    a = affinity.translate(Polygon([(0, 0), (40, 0), (40, 30), (0, 30)]), 10, 20)
    b = affinity.rotate(Polygon([(50, 40), (90, 40), (90, 70), (50, 70)]), 30, origin=(50, 40))
    pieces = traced(noisy_neighbours(a, b, seed=2))
    assert len(pieces) == 2 and pieces[0].intersects(pieces[1])
    squared = square_group(pieces)
    for piece in squared:
        assert len(piece.exterior.coords) - 1 <= 5  # a rectangle (one corner may be cut)
        truth_piece = a if iou(piece, a) > iou(piece, b) else b
        assert iou(piece, truth_piece) > 0.85
    assert squared[0].intersection(squared[1]).area < 1e-6


def test_spikes_are_cleaned_before_they_can_pinch() -> None:
    from engine.polygons.square import _sound

    spiked = Polygon([(0, 0), (10, 0), (10, 5), (20, 5), (10, 5), (10, 10), (0, 10)])
    clean = _sound(spiked)
    assert clean is not None and clean.is_valid
    assert shapely.minimum_clearance(clean) > 1
    assert clean.area == pytest.approx(100)
