"""Training data: windows, split, filters, statistics, lazy items, augmentation, workers."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from shapely.geometry import box
from torch.utils.data import DataLoader

from engine.config import TrainConfig
from engine.errors import CancelledError, ConfigError, LabelsError
from engine.events import NullProgress, RecordingProgress
from engine.geo.normalize import BandStats, value_range
from engine.geo.windows import WindowPlan
from engine.train import make_loader
from engine.training.dataset import TrainingData, WindowDataset, build_training_data
from engine.training.sampling import IGNORE, WindowRef, windows_overlap
from tests.engine.conftest import UTM, WGS84

UTM_T = Affine(0.5, 0, 500_000.0, 0, -0.5, 3_700_000.0)
GEO_T = Affine(1e-5, 0, 85.5, 0, -1e-5, 27.6)


def px_box(t: Affine, c0: float, r0: float, c1: float, r1: float) -> Any:
    """A box in the CRS of ``t`` from pixel columns and rows."""
    x0, y0 = t * (c0, r0)
    x1, y1 = t * (c1, r1)
    return box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


def config(rasters: list[Path], labels: Path, **kw: Any) -> TrainConfig:
    kw.setdefault("separation", False)  # one class unless a test asks for the separation
    return TrainConfig(
        rasters=tuple(str(r) for r in rasters), labels=(str(labels),), output="unused.pt", **kw
    )


def build(cfg: TrainConfig, **kw: Any) -> TrainingData:
    return build_training_data(cfg, RecordingProgress(), **kw)


@pytest.fixture
def rgb(raster_factory: Callable[..., Path]) -> Path:
    """512x512 uint8 RGB in UTM, 0.5 m."""
    data = np.random.default_rng(0).integers(0, 256, (3, 512, 512), dtype=np.uint8)
    return raster_factory("rgb.tif", data, crs=UTM, transform=UTM_T)


@pytest.fixture
def rgb_labels(labels_factory: Callable[..., Path]) -> Path:
    """A building every 64 pixels, so every 64-pixel window holds one."""
    geoms = [
        px_box(UTM_T, c + 20, r + 20, c + 40, r + 36)
        for c in range(0, 512, 64)
        for r in range(0, 512, 64)
    ]
    return labels_factory("rgb.gpkg", geoms, crs=UTM)


@pytest.fixture
def geo16(raster_factory: Callable[..., Path]) -> Path:
    """256x256 uint16 single band in EPSG:4326, nodata 0 in columns 0-99."""
    data = np.random.default_rng(1).integers(100, 4000, (1, 256, 256), dtype=np.uint16)
    data[:, :, :100] = 0
    return raster_factory("geo16.tif", data, crs=WGS84, transform=GEO_T, nodata=0)


@pytest.fixture
def geo_labels(labels_factory: Callable[..., Path]) -> Path:
    """One building straddling the nodata edge (columns 90-130), others in valid pixels."""
    geoms = [px_box(GEO_T, 90, 10, 130, 30)]
    geoms += [
        px_box(GEO_T, c + 8, r + 8, c + 24, r + 24)
        for c in range(128, 256, 32)
        for r in range(0, 256, 32)
    ]
    return labels_factory("geo.geojson", geoms, crs=WGS84)


def overlaps_any(ref: WindowRef, others: list[WindowRef], tile: int) -> bool:
    return any(windows_overlap(ref, o, tile) for o in others)


# ------------------------------------------------------------------------- windows and split


def test_window_counts_with_a_validation_strip(
    rgb: Path, rgb_labels: Path, labels_factory: Callable[..., Path]
) -> None:
    # Validation polygon: pixel columns 384-512 (cells 6 and 7 of 64), full height.
    val = labels_factory("val.gpkg", [px_box(UTM_T, 384, 0, 512, 512)], crs=UTM)
    td = build(config([rgb], rgb_labels, tile_size=64, stride=32, validation=str(val)))
    assert len(td.val) == 16  # 2 columns x 8 rows of non-overlapping tiles
    assert td.summary["val"]["candidates"] == 16
    # Training windows must end at or before column 384: offsets 0..320 -> 11 x 15 rows.
    assert len(td.train) == 11 * 15
    assert (
        td.summary["train"]["dropped_overlap_validation"] == len(WindowPlan(512, 512, 64, 32)) - 165
    )
    assert td.summary["split"] == "polygons"
    assert {r.col for r in td.val.windows} == {384, 448}
    assert max(r.col for r in td.train.windows) == 320
    assert td.bands == (1, 2, 3)
    assert td.input_dtype == "uint8"
    assert td.resolution_m == pytest.approx(0.5)
    assert td.classes == ("building",)


def test_validation_polygons_respected_and_no_leak(
    rgb: Path, rgb_labels: Path, labels_factory: Callable[..., Path]
) -> None:
    areas = [px_box(UTM_T, 70, 70, 150, 120), px_box(UTM_T, 300, 400, 310, 410)]
    val = labels_factory("val.gpkg", areas, crs=UTM)
    td = build(config([rgb], rgb_labels, tile_size=64, validation=str(val)))
    tile = 64
    for ref in td.val.windows:
        assert any(
            px_box(UTM_T, ref.col, ref.row, ref.col + tile, ref.row + tile).intersection(a).area > 0
            for a in areas
        )
    # Cells hit: columns 1-2 x rows 1, and column 4 x row 6.
    assert sorted((r.col, r.row) for r in td.val.windows) == [(64, 64), (128, 64), (256, 384)]
    for ref in td.train.windows:
        footprint = px_box(UTM_T, ref.col, ref.row, ref.col + tile, ref.row + tile)
        assert all(footprint.intersection(a).area == 0 for a in areas)
        assert not overlaps_any(ref, list(td.val.windows), tile)


def test_block_split_is_contiguous_disjoint_and_repeatable(rgb: Path, rgb_labels: Path) -> None:
    cfg = config(
        [rgb], rgb_labels, tile_size=32, stride=16, val_fraction=0.2, empty_keep_fraction=1.0
    )
    td = build(cfg)
    assert td.summary["split"] == "blocks"
    assert td.summary["block_tiles"] == 4
    val = list(td.val.windows)
    # 4 whole blocks of 4x4 tiles (128 px): 64 tiles = 25% of 256.
    assert len(val) == 64
    blocks: dict[tuple[int, int], int] = {}
    for ref in val:
        key = (ref.col // 128, ref.row // 128)
        blocks[key] = blocks.get(key, 0) + 1
    assert len(blocks) == 4 and set(blocks.values()) == {16}
    assert len({(r.col, r.row) for r in val}) == len(val)  # validation windows do not repeat
    for ref in td.train.windows:
        assert not overlaps_any(ref, val, 32)
    again = build(cfg)
    assert again.val.windows == td.val.windows and again.train.windows == td.train.windows
    other = build(config([rgb], rgb_labels, tile_size=32, stride=16, seed=7))
    assert other.val.windows != td.val.windows


def test_nodata_windows_dropped_and_masked(geo16: Path, geo_labels: Path) -> None:
    cfg = config(
        [geo16],
        geo_labels,
        tile_size=32,
        stride=32,
        max_nodata_fraction=0.5,
        empty_keep_fraction=1.0,
        val_fraction=0.25,
        augment=False,
    )
    td = build(cfg)
    with rasterio.open(geo16) as src:
        valid = src.read(1) != 0
    for split, ds in (("train", td.train), ("val", td.val)):
        kept = {(r.col, r.row) for r in ds.windows}
        assert td.summary[split]["kept"] == len(kept)
        for ref in ds.windows:
            assert 1 - valid[ref.row : ref.row + 32, ref.col : ref.col + 32].mean() <= 0.5
    planned = td.summary["train"]["candidates"] + td.summary["val"]["candidates"]
    dropped = td.summary["train"]["dropped_nodata"] + td.summary["val"]["dropped_nodata"]
    # Columns 0-95 are all nodata, 96-127 one-eighth: 3 of 8 tile columns dropped everywhere.
    assert dropped == planned * 3 // 8
    assert td.input_dtype == "uint16"
    assert td.bands == (1,)
    assert td.resolution_m == pytest.approx(1.0, rel=0.15)  # 1e-5 degrees at 27.6 N
    # The building straddling the nodata edge: 255 over nodata, 1 over valid pixels.
    ref = WindowRef(0, 96, 0)
    ds = td.train if ref in td.train.windows else td.val
    image, mask_t = ds[list(ds.windows).index(ref)]
    mask = mask_t.numpy()
    assert np.all(mask[:, :4] == IGNORE)  # columns 96-99
    assert np.all(mask[10:30, 4:32] == 1)  # columns 100-127 of the building
    assert np.all(mask[40:, 4:] == 0)
    assert np.all(image.numpy()[:, :, :4] == 0.0)  # nodata pixels are 0 after normalising
    assert np.all(image.numpy()[:, :, 4:] != 0.0)


def test_empty_windows_undersampled_at_the_fraction(
    raster_factory: Callable[..., Path], labels_factory: Callable[..., Path]
) -> None:
    data = np.random.default_rng(2).integers(0, 256, (1, 1024, 1024), dtype=np.uint8)
    raster = raster_factory("big.tif", data, crs=UTM, transform=UTM_T)
    labels = labels_factory("one.gpkg", [px_box(UTM_T, 5, 5, 20, 20)], crs=UTM)
    val = labels_factory("val.gpkg", [px_box(UTM_T, 900, 900, 1024, 1024)], crs=UTM)
    kept = []
    for seed in (0, 1):
        cfg = config(
            [raster],
            labels,
            tile_size=32,
            stride=32,
            validation=str(val),
            empty_keep_fraction=0.3,
            seed=seed,
        )
        td = build(cfg, cache_bytes=0)
        c = td.summary["train"]
        empties = c["candidates"] - 1
        assert c["empty_kept"] + c["dropped_empty"] == empties
        sigma = (empties * 0.3 * 0.7) ** 0.5
        assert abs(c["empty_kept"] - 0.3 * empties) < 4 * sigma
        assert WindowRef(0, 0, 0) in td.train.windows  # the window with the building stays
        # Validation keeps its empty windows.
        assert td.summary["val"]["dropped_empty"] == 0 and len(td.val) == 16
        kept.append(td.train.windows)
    assert kept[0] != kept[1]
    assert (
        build(
            config(
                [raster],
                labels,
                tile_size=32,
                stride=32,
                validation=str(val),
                empty_keep_fraction=0.3,
                seed=0,
            ),
            cache_bytes=0,
        ).train.windows
        == kept[0]
    )


def test_stats_match_numpy_on_the_train_windows(geo16: Path, geo_labels: Path) -> None:
    td = build(config([geo16], geo_labels, tile_size=32, stride=16, empty_keep_fraction=0.5))
    with rasterio.open(geo16) as src:
        band = src.read(1).astype(np.float64)
    pixels = []
    for ref in td.train.windows:
        win = band[ref.row : ref.row + 32, ref.col : ref.col + 32]
        pixels.append(win[win != 0])
    values = np.concatenate(pixels)
    assert td.stats.mean[0] == pytest.approx(values.mean(), rel=1e-9)
    assert td.stats.std[0] == pytest.approx(values.std(), rel=1e-6)


# ------------------------------------------------------------------------- items


def test_items_are_normalised_tensors_with_masks(rgb: Path, rgb_labels: Path) -> None:
    td = build(config([rgb], rgb_labels, tile_size=64, augment=False))
    image, mask = td.train[0]
    assert image.dtype == torch.float32 and image.shape == (3, 64, 64)
    assert mask.dtype == torch.uint8 and mask.shape == (64, 64)
    data, raw_mask = td.train.read(0)
    mean, std = td.stats.as_arrays()
    np.testing.assert_allclose(image.numpy(), (data - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(mask.numpy(), raw_mask)
    assert set(np.unique(raw_mask)) == {0, 1}


def test_cached_and_uncached_items_are_identical(rgb: Path, rgb_labels: Path) -> None:
    cfg = config([rgb], rgb_labels, tile_size=64, seed=3)
    cached = build(cfg)
    plain = build(cfg, cache_bytes=0)
    assert cached.summary["cached"] and cached.train.cache
    assert not plain.summary["cached"] and plain.train.cache is None
    small = build(cfg, cache_bytes=100_000)  # too small: caching turns itself off
    assert small.train.cache is None and small.val.cache is None
    for i in (0, 5, len(plain.train) - 1):
        for a, b in zip(cached.train[i], plain.train[i], strict=True):
            torch.testing.assert_close(a, b)
    for a, b in zip(cached.val[0], plain.val[0], strict=True):
        torch.testing.assert_close(a, b)


def test_separation_adds_the_separation_class(
    raster_factory: Callable[..., Path], labels_factory: Callable[..., Path]
) -> None:
    raster = raster_factory("r.tif", np.full((1, 128, 128), 9, np.uint8), crs=UTM, transform=UTM_T)
    geoms = [px_box(UTM_T, c, r, c + 16, r + 20) for c in (10, 26, 74, 90) for r in (10, 70)]
    labels = labels_factory("pairs.gpkg", geoms, crs=UTM)
    td = build(config([raster], labels, tile_size=64, separation=True, augment=False))
    assert td.classes == ("building", "separation")
    masks = [np.asarray(td.train[i][1]) for i in range(len(td.train))]
    assert any((m == 3).any() for m in masks)  # the shared walls, labelled on both sides
    assert td.summary["train"]["separation_share"] > 0
    wide = build(config([raster], labels, tile_size=64, separation=True, separation_width_m=1.5))
    share = td.summary["train"]["separation_share"]
    assert wide.summary["train"]["separation_share"] == pytest.approx(3 * share, rel=0.25)
    wide_masks = [np.asarray(wide.train[i][1]) for i in range(len(wide.train))]
    strip = [((m == 2) | (m == 3)).sum() for m in masks]
    wide_strip = [((m == 2) | (m == 3)).sum() for m in wide_masks]
    assert sum(wide_strip) > 2 * sum(strip)


def test_augmented_items_keep_image_and_mask_aligned_across_epochs(
    raster_factory: Callable[..., Path], labels_factory: Callable[..., Path]
) -> None:
    data = np.zeros((2, 64, 64), dtype=np.uint8)
    data[:, 16:32, 16:32] = 10
    data[:, 3, 40] = 250  # the marked pixel
    raster = raster_factory("m.tif", data, crs=UTM, transform=UTM_T)
    labels = labels_factory("m.gpkg", [px_box(UTM_T, 40, 3, 41, 4)], crs=UTM)
    val = labels_factory("v.gpkg", [px_box(UTM_T, 0, 32, 32, 64)], crs=UTM)
    td = build(config([raster], labels, tile_size=32, stride=32, validation=str(val)))
    index = list(td.train.windows).index(WindowRef(0, 32, 0))
    positions = set()
    for epoch in range(60):
        td.train.set_epoch(epoch)
        image, mask = td.train[index]
        (r, c) = np.argwhere(mask.numpy() == 1)[0]
        for band in image.numpy():
            assert np.unravel_index(np.argmax(band), band.shape) == (r, c)
        positions.add((int(r), int(c)))
    assert len(positions) == 8
    td.train.set_epoch(3)
    first = td.train[index]
    assert all(torch.equal(a, b) for a, b in zip(first, td.train[index], strict=True))
    # Validation items are never augmented.
    v0 = td.val[0]
    for _ in range(3):
        td.val.set_epoch(_)
        assert torch.equal(td.val[0][0], v0[0])


def test_dataset_pickles_and_works_in_worker_processes(rgb: Path, rgb_labels: Path) -> None:
    td = build(config([rgb], rgb_labels, tile_size=64, seed=1), cache_bytes=0)
    clone = pickle.loads(pickle.dumps(td.train))
    assert isinstance(clone, WindowDataset)
    torch.testing.assert_close(clone[2], td.train[2])
    td.train.set_epoch(4)
    loader = DataLoader(td.train, batch_size=4, num_workers=2, persistent_workers=True)
    images, masks = next(iter(loader))
    assert images.shape == (4, 3, 64, 64) and masks.shape == (4, 64, 64)
    torch.testing.assert_close(images[1], td.train[1][0])
    td.train.set_epoch(5)  # persistent workers see the new epoch
    images5, _ = next(iter(loader))
    torch.testing.assert_close(images5[1], td.train[1][0])
    assert not torch.equal(images5, images)
    total = sum(len(m) for _, m in DataLoader(td.val, batch_size=8, num_workers=2))
    assert total == len(td.val)


# ------------------------------------------------------------------------- errors


def test_band_count_mismatch_is_a_config_error(
    rgb: Path, rgb_labels: Path, raster_factory: Callable[..., Path]
) -> None:
    gray = raster_factory("gray.tif", np.ones((1, 64, 64), np.uint8), crs=UTM, transform=UTM_T)
    with pytest.raises(ConfigError, match="same bands"):
        build(config([rgb, gray], rgb_labels))
    wide = raster_factory("u16.tif", np.ones((3, 64, 64), np.uint16), crs=UTM, transform=UTM_T)
    with pytest.raises(ConfigError, match="data type"):
        build(config([rgb, wide], rgb_labels))


def two_rasters(
    rgb: Path, rgb_labels: Path, geo_labels: Path, raster_factory: Callable[..., Path]
) -> TrainConfig:
    """``rgb`` (UTM) and a small second raster in WGS84, each with its labels."""
    other = raster_factory(
        "rgb2.tif", np.full((3, 128, 128), 50, np.uint8), crs=WGS84, transform=GEO_T
    )
    return TrainConfig(
        rasters=(str(rgb), str(other)),
        labels=(str(rgb_labels), str(geo_labels)),
        output="x.pt",
        tile_size=64,
    )


def test_two_rasters_in_different_crs(
    rgb: Path,
    rgb_labels: Path,
    geo16: Path,
    geo_labels: Path,
    raster_factory: Callable[..., Path],
) -> None:
    cfg = two_rasters(rgb, rgb_labels, geo_labels, raster_factory)
    progress = RecordingProgress()
    td = build_training_data(cfg, progress)
    rasters_used = {r.raster for r in td.train.windows} | {r.raster for r in td.val.windows}
    assert rasters_used == {0, 1}
    assert td.summary["label_features"] > 64


def test_labels_elsewhere_are_a_labels_error(
    rgb: Path, labels_factory: Callable[..., Path]
) -> None:
    far = labels_factory("far.gpkg", [box(100_000, 100_000, 100_010, 100_010)], crs=UTM)
    with pytest.raises(LabelsError, match="do not overlap"):
        build(config([rgb], far))


def test_empty_split_names_the_fix(
    rgb: Path, rgb_labels: Path, labels_factory: Callable[..., Path]
) -> None:
    nowhere = labels_factory("val.gpkg", [box(0, 0, 1, 1)], crs=UTM)
    with pytest.raises(ConfigError, match="validation polygons"):
        build(config([rgb], rgb_labels, validation=str(nowhere)))
    everywhere = labels_factory("all.gpkg", [px_box(UTM_T, 0, 0, 512, 512)], crs=UTM)
    with pytest.raises(ConfigError, match="No training window"):
        build(config([rgb], rgb_labels, validation=str(everywhere)))
    with pytest.raises(ConfigError, match="val_fraction"):
        build(config([rgb], rgb_labels, val_fraction=1.0))


def test_val_fraction_zero_validates_on_the_training_windows(rgb: Path, rgb_labels: Path) -> None:
    progress = RecordingProgress()
    cfg = config([rgb], rgb_labels, tile_size=32, stride=16, val_fraction=0.0)
    td = build_training_data(cfg, progress)
    assert td.val.windows == td.train.windows and len(td.train) > 0
    assert not td.val.augment and td.train.augment
    assert td.summary["val"]["kept"] == td.summary["train"]["kept"] == len(td.train)
    assert any("val_fraction 0" in m for m in progress.messages)
    held_out = build(config([rgb], rgb_labels, tile_size=32, stride=16, val_fraction=0.2))
    assert len(td.train) > len(held_out.train)


def test_scan_checks_cancel(rgb: Path, rgb_labels: Path) -> None:
    with pytest.raises(CancelledError):
        build_training_data(
            config([rgb], rgb_labels, tile_size=64), RecordingProgress(cancel_after=5)
        )


def test_summary_is_logged(rgb: Path, rgb_labels: Path) -> None:
    progress = RecordingProgress()
    build_training_data(config([rgb], rgb_labels, tile_size=64), progress)
    text = "\n".join(progress.messages)
    assert "train:" in text and "val:" in text and "building share" in text
    assert progress.percents and progress.percents[-1] == pytest.approx(100.0)


# ------------------------------------------------------------------------- real data


def test_banepa_2x2_gives_both_splits(shared_data: Path) -> None:
    folder = shared_data / "banepa_2x2"
    cfg = TrainConfig(
        rasters=(str(folder / "banepa_2x2_rgb_jpeg.tif"),),
        labels=(str(folder / "banepa_2x2_buildings.geojson"),),
        output="x.pt",
        separation=False,
    )
    td = build_training_data(cfg, NullProgress())
    assert len(td.train) > 0 and len(td.val) > 0
    assert td.input_dtype == "uint8" and td.bands == (1, 2, 3)
    assert td.resolution_m == pytest.approx(0.13, abs=0.02)
    for split in ("train", "val"):  # a dense town: about two thirds roofs
        assert 0.3 < td.summary[split]["building_share"] < 0.9
    for ref in td.train.windows:
        assert not overlaps_any(ref, list(td.val.windows), cfg.tile_size)
    image, mask = td.train[0]
    assert image.shape == (3, 256, 256) and abs(float(image.mean())) < 1.5
    assert set(np.unique(mask.numpy())) <= {0, 1}


def test_banepa_chips_with_sidecars_become_one_mosaic(shared_data: Path) -> None:
    chips = shared_data / "banepa" / "train" / "oam"
    labels = shared_data / "banepa" / "labels" / "buildings_banepa_osm.geojson"
    if not chips.is_dir():
        pytest.skip("banepa chips not present")
    cfg = TrainConfig(
        rasters=(str(chips / "OAM-38669[01]-22024[12]-19.tif"),),  # 2x2 chips, JPEG + .aux.xml
        labels=(str(labels),),
        output="x.pt",
    )
    td = build_training_data(cfg, NullProgress())
    assert td.train.sources[0].path.endswith(".vrt")
    assert (td.train.sources[0].width, td.train.sources[0].height) == (1024, 1024)
    assert len(td.train) > 0 and len(td.val) > 0
    assert 0.3 < td.summary["train"]["building_share"] < 0.9


def test_pretrained_scale_gives_the_encoders_inputs(
    rgb: Path, rgb_labels: Path, geo16: Path, geo_labels: Path
) -> None:
    """With a pretrained encoder's mean/std (on 0-1), 8-bit bands are scaled from 0-255 and
    16-bit bands from the training data's range, then normalised with them."""
    scale = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    td = build(config([rgb], rgb_labels, tile_size=64, augment=False), input_scale=scale)
    assert td.stats.mean == pytest.approx([255 * m for m in scale[0]])
    assert td.stats.std == pytest.approx([255 * s for s in scale[1]])
    image, _ = td.train[0]
    data, _ = td.train.read(0)
    expected = (data[0] / 255.0 - 0.485) / 0.229
    np.testing.assert_allclose(image.numpy()[0], expected, rtol=1e-5, atol=1e-5)
    own = build(config([geo16], geo_labels, tile_size=32, stride=16))
    td16 = build(config([geo16], geo_labels, tile_size=32, stride=16), input_scale=scale)
    (lo, hi), m, s = value_range(own.stats, "uint16")[0], own.stats.mean[0], own.stats.std[0]
    assert lo == max(own.stats.low[0], m - 3 * s) and hi == min(own.stats.high[0], m + 3 * s)
    assert td16.stats.mean[0] == pytest.approx(lo + 0.485 * (hi - lo))  # one band: channel 0
    assert td16.stats.std[0] == pytest.approx(0.229 * (hi - lo))


def test_outside_the_labelled_area_is_ignored_not_background(
    rgb: Path, labels_factory: Callable[..., Path]
) -> None:
    """Buildings digitised only in the left half: with that half as the labelled area, the
    right half is neither taught as background nor scored; windows wholly outside are dropped."""
    left = [
        px_box(UTM_T, c + 20, r + 20, c + 40, r + 36) for c in (0, 64) for r in range(0, 512, 64)
    ]
    labels = labels_factory("left.gpkg", left, crs=UTM)
    area = rgb.with_name("area.geojson")  # in another CRS than the raster
    half = gpd.GeoDataFrame(geometry=[px_box(UTM_T, 0, 0, 128, 512)], crs=UTM)
    half.to_crs(WGS84).to_file(area)
    cfg = config([rgb], labels, tile_size=64, stride=32, augment=False, val_fraction=0.0)
    whole = build(cfg)
    part = build(replace(cfg, labelled_area=str(area)))
    assert len(part.train) < len(whole.train)
    for i in range(len(part.train)):
        ref = part.train.windows[i]
        _, mask = part.train.read(i)
        columns = ref.col + np.arange(64)
        assert (mask[:, columns >= 128] == 255).all()  # unknown, not background
        assert (mask[:, columns < 128] != 255).all()
        assert ref.col < 128  # windows wholly outside are not used
    assert any(ref.col == 96 for ref in part.train.windows)  # one straddles the edge
    with pytest.raises(ConfigError, match="covers none of the training rasters"):
        far = labels_factory("far.gpkg", [px_box(UTM_T, 5000, 5000, 5100, 5100)], crs=UTM)
        build(replace(cfg, labelled_area=str(far)))


def test_fixed_stats_are_kept(rgb: Path, rgb_labels: Path) -> None:
    """A model being fine-tuned keeps its normalisation, whatever the new imagery's."""
    kept = BandStats((10.0, 20.0, 30.0), (2.0, 3.0, 4.0))
    td = build(config([rgb], rgb_labels, tile_size=64, augment=False), fixed_stats=kept)
    assert td.stats == kept and td.train.stats == kept and td.val.stats == kept


@pytest.mark.parametrize("nodata", [-9999.0, None])
def test_nan_and_inf_pixels_stay_out_of_the_statistics(
    raster_factory: Callable[..., Path], rgb_labels: Path, nodata: float | None
) -> None:
    """NaN/Inf pixels are no data whatever the nodata value: the statistics stay finite and
    equal those of the finite pixels, and the items hold no NaN."""
    data = np.random.default_rng(2).uniform(10, 20, (3, 512, 512)).astype(np.float32)
    data[0, 5:40, 5:40] = np.nan
    data[1, 100:130, 300:330] = np.inf
    data[2, 200:210, 7:90] = -np.inf
    raster = raster_factory("odd.tif", data, crs=UTM, transform=UTM_T, nodata=nodata)
    td = build(config([raster], rgb_labels, tile_size=64, augment=False, val_fraction=0.0))
    values = np.array(
        [*td.stats.mean, *td.stats.std, *(td.stats.low or ()), *(td.stats.high or ())]
    )
    assert np.isfinite(values).all(), td.stats
    assert min(td.stats.mean) >= 10 and max(td.stats.mean) <= 20
    assert all(torch.isfinite(td.train[i][0]).all() for i in range(len(td.train)))


@pytest.mark.parametrize("value", [0.5, 5.0])
def test_scale_jitter_out_of_range_names_the_range(
    rgb: Path, rgb_labels: Path, value: float
) -> None:
    with pytest.raises(ConfigError, match="Scale jitter must be from 1"):
        build(config([rgb], rgb_labels, scale_jitter=value))


def test_scale_jitter_reaches_training_windows_only(rgb: Path, rgb_labels: Path) -> None:
    data = build(config([rgb], rgb_labels, scale_jitter=2.0))
    assert data.train.scale_jitter == 2.0 and data.val.scale_jitter == 1.0
    plain = build(config([rgb], rgb_labels))
    data.train.set_epoch(1)
    plain.train.set_epoch(1)
    masks = [(data.train[i][1], plain.train[i][1]) for i in range(len(data.train))]
    # rescaled windows: some gain nodata margins or lose pixels the plain ones keep
    assert any(not torch.equal(a, b) for a, b in masks)


@pytest.mark.parametrize("value", [-0.1, 0.6])
def test_colour_jitter_out_of_range_names_the_range(
    rgb: Path, rgb_labels: Path, value: float
) -> None:
    with pytest.raises(ConfigError, match="Colour jitter must be from 0"):
        build(config([rgb], rgb_labels, colour_jitter=value))


def test_colour_jitter_reaches_training_windows_only(rgb: Path, rgb_labels: Path) -> None:
    data = build(config([rgb], rgb_labels, colour_jitter=0.3))
    assert data.train.colour_jitter == 0.3 and data.val.colour_jitter == 0.0
    plain = build(config([rgb], rgb_labels))
    data.train.set_epoch(1)
    plain.train.set_epoch(1)
    pairs = [(data.train[i], plain.train[i]) for i in range(len(data.train))]
    assert all(torch.equal(a[1], b[1]) for a, b in pairs)  # masks untouched
    assert any(not torch.equal(a[0], b[0]) for a, b in pairs)


def test_balance_draws_each_training_raster_in_equal_shares(
    rgb: Path,
    rgb_labels: Path,
    geo_labels: Path,
    raster_factory: Callable[..., Path],
) -> None:
    cfg = replace(two_rasters(rgb, rgb_labels, geo_labels, raster_factory), balance=1.0)
    data = build(cfg)
    places = [w.raster for w in data.train.windows]
    assert places.count(1) * 4 < places.count(0)  # the small raster has far fewer windows
    loader = make_loader(data.train, cfg, True, torch.device("cpu"))
    drawn = []
    for epoch in range(40):
        loader.sampler.set_epoch(epoch)  # type: ignore[union-attr]
        drawn += [places[i] for i in loader.sampler]  # type: ignore[union-attr]
    assert drawn.count(1) / len(drawn) == pytest.approx(0.5, abs=0.05)
    unbalanced = make_loader(data.train, replace(cfg, balance=0.0), True, torch.device("cpu"))
    assert not isinstance(unbalanced.sampler, type(loader.sampler))
