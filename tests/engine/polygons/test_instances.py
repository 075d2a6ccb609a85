"""Seeds + watershed: one polygon per building where generated houses share walls, block by
block as on the whole raster, and neighbours that still share their edges once simplified."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import shapely
from affine import Affine
from rasterio.windows import Window
from scipy import ndimage
from skimage.segmentation import watershed

from engine.config import PolygonOptions
from engine.errors import ConfigError
from engine.geo.windows import Grid
from engine.polygons import blocks
from engine.polygons.blocks import HaloAssembler, HaloBlock, label_block, read_halo_block
from engine.polygons.instances import (
    FOUR,
    InstanceParams,
    InstanceSettings,
    _grow,
    join_small,
    label_instances,
)
from engine.polygons.seams import Building, SeamJoiner
from engine.polygons.shapes import finalize_polygons, simplify_coverage, touching_groups

PARAMS = InstanceParams(threshold=0.5, seed_threshold=0.5, min_seed_px=20, erode_px=2)


def terraces(seed: int, shape: tuple[int, int] = (220, 300)) -> np.ndarray:
    """Labels of rows of houses sharing walls (0 = background), 1..n."""
    rng = np.random.default_rng(seed)
    truth = np.zeros(shape, np.int32)
    k = 0
    for top in range(6, shape[0] - 50, 70):
        height = int(rng.integers(30, 50))
        left = int(rng.integers(3, 15))
        while left < shape[1] - 40:
            width = int(rng.integers(18, 36))
            k += 1
            truth[top : top + height, left : left + width] = k
            left += width  # the next house shares this wall
        if rng.random() < 0.5:  # and a house on its own
            k += 1
            truth[top + height + 4 : top + height + 14, 40:70] = k
    return truth


def separation_of(truth: np.ndarray, width: int = 2) -> np.ndarray:
    """Pixels with two different buildings within ``width`` pixels."""
    size = 2 * width + 1
    high = ndimage.maximum_filter(truth, size=size)
    low = ndimage.minimum_filter(np.where(truth > 0, truth, truth.max() + 1), size=size)
    return (high > 0) & (low <= truth.max()) & (high != low)


def probabilities(truth: np.ndarray, seed: int, gaps: bool = False) -> np.ndarray:
    """(2, H, W) building and separation probability for ``truth``; with ``gaps`` the
    separation strip misses a few pixels along every wall."""
    rng = np.random.default_rng(seed + 100)
    building = np.where(truth > 0, 0.9, 0.05) + rng.uniform(-0.04, 0.04, truth.shape)
    strip = separation_of(truth)
    if gaps:
        rows = np.arange(truth.shape[0]) % 40
        strip &= ~((rows >= 18) & (rows < 21))[:, None]
    separation = np.where(strip, 0.9, 0.03) + rng.uniform(0, 0.02, truth.shape)
    return np.stack([building, separation]).astype(np.float32)


def match_ious(labels: np.ndarray, truth: np.ndarray) -> list[float]:
    """Per true building, the IoU of the predicted label that covers most of it."""
    out = []
    for k in range(1, int(truth.max()) + 1):
        inside = labels[truth == k]
        best = np.bincount(inside[inside > 0]).argmax() if (inside > 0).any() else 0
        if best == 0:
            out.append(0.0)
            continue
        pred = labels == best
        ref = truth == k
        out.append(float((pred & ref).sum() / (pred | ref).sum()))
    return out


@pytest.mark.parametrize("gaps", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_instance_per_house(seed: int, gaps: bool) -> None:
    truth = terraces(seed)
    prob = probabilities(truth, seed, gaps)
    labels = label_instances(prob[0], prob[1], np.ones(truth.shape, bool), PARAMS)
    assert len(np.unique(labels[labels > 0])) == truth.max()
    assert min(match_ious(labels, truth)) > 0.85


def test_without_separation_touching_houses_are_one() -> None:
    """What the separation channel buys: the same building probability with no separation
    gives one instance per terrace."""
    truth = terraces(0)
    prob = probabilities(truth, 0)
    labels = label_instances(prob[0], np.zeros_like(prob[1]), np.ones(truth.shape, bool), PARAMS)
    assert len(np.unique(labels[labels > 0])) < truth.max() / 3


def test_area_no_seed_reaches_is_its_own_building() -> None:
    building = np.zeros((40, 40), np.float32)
    building[5:15, 5:15] = 0.9
    building[25:28, 25:28] = 0.55  # building, but too weak to seed
    labels = label_instances(building, np.zeros_like(building), np.ones((40, 40), bool), PARAMS)
    assert len(np.unique(labels[labels > 0])) == 2
    assert (labels[25:28, 25:28] > 0).all()


def test_invalid_pixels_are_never_building() -> None:
    truth = terraces(3)
    prob = probabilities(truth, 3)
    valid = np.ones(truth.shape, bool)
    valid[:, 150:] = False
    labels = label_instances(prob[0], prob[1], valid, PARAMS)
    assert not labels[:, 150:].any() and labels[:, :150].any()


@pytest.mark.parametrize(("seed", "crop"), [(0, 0), (1, 0), (2, 17)])
def test_growing_from_seed_outlines_gives_the_plain_watershed(seed: int, crop: int) -> None:
    """Seeds' inner pixels are left out of the flooding (a speed-up): the labels are those of
    scikit-image's marker watershed over the whole area, also where seeds touch the edge."""
    truth = terraces(seed)
    prob = probabilities(truth, seed, gaps=True)[:, crop:, crop:]
    area = prob[0] >= 0.5
    score = np.where(area, prob[0] * (1 - prob[1]), 0).astype(np.float32)
    markers, n = ndimage.label(score >= 0.5, structure=FOUR)
    assert n >= 4 and (markers[0] > 0).any() == (crop > 0)
    plain = watershed(-score, markers, mask=area, connectivity=1)
    np.testing.assert_array_equal(_grow(score, markers, area), plain)


@pytest.mark.parametrize(
    "bad", [{"threshold": 0.0}, {"seed_threshold": 1.5}, {"min_seed_px": 0}, {"erode_px": -1}]
)
def test_bad_parameters_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        InstanceParams(**bad)  # type: ignore[arg-type]


def polygons_by_blocks(
    prob: np.ndarray,
    block: int,
    halo: int,
    incoming: int | None = None,
    params: InstanceParams = PARAMS,
) -> list[Building]:
    """Buildings from halo blocks of a ``block`` grid, assembled from the blocks of an
    ``incoming`` grid fed in row-major order."""
    _, height, width = prob.shape
    joiner = SeamJoiner(width, height, params.threshold)
    assembler = HaloAssembler(width, height, block, halo, incoming)
    out: list[Building] = []
    for window in Grid(width, height, Affine.identity()).blocks(incoming or block):
        r, c = int(window.row_off), int(window.col_off)
        h, w = int(window.height), int(window.width)
        data = prob[:, r : r + h, c : c + w]
        for ready in assembler.add(window, data, np.ones((h, w), bool)):
            done = label_block(ready, params)
            out += joiner.add_labels(done.window, done.labels, done.probability, done.ring)
    return out + joiner.finish()


def as_set(buildings: list[Building]) -> set[bytes]:
    geoms = shapely.normalize(np.asarray([b.geometry for b in buildings], dtype=object))
    return set(shapely.to_wkb(geoms).tolist())


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(
    ("block", "halo", "incoming"), [(64, 40, None), (50, 50, None), (96, 48, None), (96, 40, 48)]
)
def test_blocks_give_the_whole_raster_result(
    seed: int, block: int, halo: int, incoming: int | None
) -> None:
    truth = terraces(seed)
    prob = probabilities(truth, seed, gaps=True)
    whole = polygons_by_blocks(prob, max(truth.shape), 1)
    assert len(whole) == truth.max()
    blocks = polygons_by_blocks(prob, block, halo, incoming)
    assert as_set(blocks) == as_set(whole)  # houses cut by block edges are one polygon each
    assert sorted(b.pixels for b in blocks) == sorted(b.pixels for b in whole)


def test_read_halo_block_pads_beyond_the_raster(tmp_path: object) -> None:
    import rasterio

    path = f"{tmp_path}/p.tif"
    data = np.arange(2 * 30 * 40, dtype=np.float32).reshape(2, 30, 40)
    with rasterio.open(
        path, "w", driver="GTiff", width=40, height=30, count=2, dtype="float32",
        transform=Affine(1, 0, 0, 0, -1, 30), crs="EPSG:32645",
    ) as dst:  # fmt: skip
        dst.write(data)
    with rasterio.open(path) as src:
        got = read_halo_block(src, Window(0, 10, 20, 10), 5, [1, 2])
    assert got.data.shape == (2, 20, 30) and got.valid.shape == (20, 30)
    assert not got.valid[:, :5].any() and got.valid[:, 5:].all()  # left of the raster
    np.testing.assert_array_equal(got.core(got.data), data[:, 10:20, 0:20])
    np.testing.assert_array_equal(got.data[:, 0, 5:], data[:, 5, 0:25])


def test_simplified_neighbours_share_their_edges() -> None:
    truth = terraces(5)
    prob = probabilities(truth, 5)
    buildings = polygons_by_blocks(prob, 64, 40)
    options = PolygonOptions(min_area_m2=0.0, hole_area_m2=0.0, simplify=1.5)
    frame = finalize_polygons(
        [b.geometry for b in buildings], [b.score for b in buildings], "EPSG:32645", options,
        Affine.identity(),
    )  # fmt: skip
    geoms = np.asarray(frame.geometry.values, dtype=object)
    assert all(shapely.is_valid(geoms))
    raw = np.asarray([b.geometry for b in buildings], dtype=object)
    assert sum(len(g.exterior.coords) for g in geoms) < 0.8 * sum(
        len(shapely.simplify(g, 0).exterior.coords) for g in raw
    )  # simplified
    union = shapely.union_all(geoms)
    assert shapely.area(geoms).sum() == pytest.approx(union.area, rel=1e-9)  # no overlaps
    raw_union = shapely.union_all(raw)
    parts = lambda g: len(getattr(g, "geoms", [g]))  # noqa: E731
    holes = lambda g: sum(len(p.interiors) for p in getattr(g, "geoms", [g]))  # noqa: E731
    assert parts(union) == parts(raw_union) and holes(union) == holes(raw_union)  # no gaps


def test_simplification_does_not_depend_on_the_order_of_buildings() -> None:
    """GEOS's coverage simplification depends on the order of the polygons given; groups of
    touching buildings are simplified in a fixed order, so buildings that blocks of another
    size emit in another order come out the same."""
    truth = terraces(5)
    prob = probabilities(truth, 5)
    prob[0] += 0.2 * np.sin(np.arange(truth.shape[1]) / 3.0)[None, :]  # ragged outlines
    raw = np.asarray([b.geometry for b in polygons_by_blocks(prob, 64, 40)], dtype=object)
    first = simplify_coverage(raw, 1.5)
    assert sum(map(shapely.get_num_coordinates, first)) < 0.8 * sum(
        map(shapely.get_num_coordinates, shapely.simplify(raw, 0))
    )
    for seed in range(3):
        order = np.random.default_rng(seed).permutation(len(raw))
        again = simplify_coverage(raw[order], 1.5)
        assert shapely.equals_exact(first[order], again, 0).all()


def test_touching_groups_are_the_connected_neighbours() -> None:
    squares = [shapely.box(x, y, x + 2, y + 2) for x, y in [(0, 0), (2, 0), (4, 0), (9, 9), (0, 5)]]
    geoms = np.asarray(squares, dtype=object)
    groups = touching_groups(geoms[::-1])
    assert sorted(sorted(g.tolist()) for g in groups) == [[0], [1], [2, 3, 4]]


@pytest.mark.parametrize(
    ("size", "block", "incoming", "count"),
    [((90, 70), 32, 32, 9), ((90, 70), 32, 16, 9), ((90, 70), 48, 16, 4), ((40, 20), 64, 16, 1)],
)
def test_halo_blocks_match_the_raster_around_them(
    size: tuple[int, int], block: int, incoming: int, count: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Halo blocks cut from the incoming blocks equal the padded raster around each block,
    whatever the block sizes and however the raster ends (a block may be larger than it)."""
    width, height = size
    rng = np.random.default_rng(0)
    prob = rng.random((2, height, width)).astype(np.float32)
    assembler = HaloAssembler(width, height, block, 10, incoming)
    made: list[HaloBlock] = []
    cut = blocks.halo_from
    monkeypatch.setattr(blocks, "halo_from", lambda *a: made.append(cut(*a)) or made[-1])
    got: list[HaloBlock] = []
    for window in Grid(width, height, Affine.identity()).blocks(incoming):
        r, c = int(window.row_off), int(window.col_off)
        h, w = int(window.height), int(window.width)
        for one in assembler.add(window, prob[:, r : r + h, c : c + w], np.ones((h, w), bool)):
            assert list(map(id, made)) == list(map(id, [*got, one]))  # made as taken, one by one
            got.append(one)
    assert len(got) == count
    assert sorted((b.window.row_off, b.window.col_off) for b in got) == sorted(
        (float(r), float(c)) for r in range(0, height, block) for c in range(0, width, block)
    )
    padded = np.pad(prob, ((0, 0), (10, 10), (10, 10)))
    inside = np.pad(np.ones((height, width), bool), 10)
    for one in got:
        r, c = int(one.window.row_off), int(one.window.col_off)
        h, w = int(one.window.height), int(one.window.width)
        np.testing.assert_array_equal(one.data, padded[:, r : r + h + 20, c : c + w + 20])
        np.testing.assert_array_equal(one.valid, inside[r : r + h + 20, c : c + w + 20])


def test_small_pieces_join_the_neighbour_they_touch_most() -> None:
    labels = np.zeros((40, 60), np.int32)
    labels[5:25, 5:25] = 1  # a house
    labels[5:25, 25:45] = 2  # its neighbour, sharing a wall
    labels[25:30, 8:20] = 3  # a 95-px piece under house 1 (17 px of edge) and house 2 (2 px)
    labels[25:30, 20:27] = 3
    labels[32:37, 50:55] = 4  # a small building alone
    labels[0:5, 50:60] = 5  # a small piece at the block's edge: its size is unknown here
    labels[5:8, 50:57] = 6  # and a small piece touching only it
    joined = join_small(labels, min_area_px=100)
    assert (joined[labels == 3] == 1).all()  # the piece is now part of house 1
    assert set(np.unique(joined)) == {0, 1, 2, 4, 5}
    assert (joined[labels == 6] == 5).all()  # into the edge piece (which itself stays)
    assert (join_small(labels, min_area_px=20) == labels).all()  # none is that small


def test_small_halves_that_make_a_building_stay_one() -> None:
    labels = np.zeros((60, 60), np.int32)
    labels[5:35, 5:35] = 1  # a house (900 px)
    labels[35:45, 30:40] = 2  # a garage in two halves of 100 px under it: this one shares
    labels[35:45, 20:30] = 3  # 5 px with the house and 10 with the other, which shares 10
    joined = join_small(labels, min_area_px=150)
    assert set(np.unique(joined)) == {0, 1, 3}  # the halves together (200 px) stay a garage
    assert (joined[labels == 2] == 3).all()


def test_whatever_the_area_drops_is_first_offered_to_a_neighbour() -> None:
    # 4 m² at 0.3 m pixels is 44.4 px: a 44-px building is dropped, so 45 px must be joined
    assert InstanceSettings(min_area_m2=4.0).params(0.3).min_area_px == 45
    assert InstanceSettings(min_area_m2=4.0).params(0.5).min_area_px == 16


def annexes(seed: int) -> np.ndarray:
    """:func:`terraces` with a 10 x 8 px shed (80 px) against every other house."""
    truth = terraces(seed)
    n = int(truth.max())
    for k in range(1, n + 1, 2):
        rows, cols = np.nonzero(truth == k)
        top, left = int(rows.max()) + 1, int(cols.min()) + 4
        if top + 8 < truth.shape[0] and not truth[top : top + 8, left : left + 10].any():
            n += 1
            truth[top : top + 8, left : left + 10] = n
    return truth


@pytest.mark.parametrize("seed", [0, 1])
def test_small_buildings_join_alike_block_by_block(seed: int) -> None:
    truth = annexes(seed)
    prob = probabilities(truth, seed)
    seeding = replace(PARAMS, min_seed_px=4, erode_px=0)  # a shed keeps its own seed
    plain = polygons_by_blocks(prob, max(truth.shape), 1, params=seeding)
    joining = replace(seeding, min_area_px=100)
    whole = polygons_by_blocks(prob, max(truth.shape), 1, params=joining)
    sheds = int(truth.max() - terraces(seed).max())
    assert sheds > 3 and len(whole) == len(plain) - sheds  # each shed joined its house
    assert sum(b.pixels for b in whole) == sum(b.pixels for b in plain)  # no pixel lost
    blocks = polygons_by_blocks(prob, 64, 40, params=joining)
    assert as_set(blocks) == as_set(whole)
