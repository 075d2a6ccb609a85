"""Resampling the model grid's probability back onto the output grid as the rows come."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.io import MemoryFile
from rasterio.windows import Window

from engine.geo.windows import Grid
from engine.inference.blend import NODATA, Block
from engine.inference.job import sub_grid, warp_to
from engine.inference.resample import BackResampler, footprint
from engine.inference.sizing import row_bytes

CRS_UTM = CRS.from_epsg(32636)
BLOCK = 32


def model_grid_of(out: Grid, ratio: float, ratio_y: float | None = None) -> Grid:
    """A grid over ``out``'s extent with pixels ``ratio`` (``ratio_y`` down) times the size,
    as the job makes it."""
    ratio_y = ratio if ratio_y is None else ratio_y
    width, height = max(1, round(out.width / ratio)), max(1, round(out.height / ratio_y))
    scale = Affine.scale(out.width / width, out.height / height)
    return Grid(width, height, out.transform * scale)


def probability(grid: Grid, seed: int = 0) -> np.ndarray:
    """Two smooth bands in 0-1 with holes of NODATA (no valid window there)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : grid.height, 0 : grid.width]
    data = np.stack([0.5 + 0.4 * np.sin(xx / 7.0 + yy / 11.0), rng.random(xx.shape)])
    data = data.astype(np.float32)
    data[:, 5:9, 3:20] = NODATA
    data[:, -6:, -4:] = NODATA
    return data


def blocks_of(data: np.ndarray, consumed: list[int]) -> Iterator[Block]:
    """``data`` as the blend releases it: ``BLOCK`` blocks, row-major; counts what was taken."""
    grid = Grid(data.shape[2], data.shape[1], Affine.identity())
    for index, w in enumerate(grid.blocks(BLOCK)):
        r, c, h, wd = int(w.row_off), int(w.col_off), int(w.height), int(w.width)
        part = data[:, r : r + h, c : c + wd].copy()
        consumed.append(index)
        yield Block(index, w, part, part[0] != NODATA)


def warped_whole(data: np.ndarray, model: Grid, out: Grid) -> np.ndarray:
    """The whole model-grid probability written as a raster and read back onto ``out``
    through a WarpedVRT (how detect resampled back before it streamed)."""
    profile = {"driver": "GTiff", "dtype": "float32", "nodata": NODATA, "crs": CRS_UTM}
    with MemoryFile() as mem:
        shape = {"width": model.width, "height": model.height, "count": data.shape[0]}
        with mem.open(**profile, **shape, transform=model.transform) as dst:
            dst.write(data)
        with (
            mem.open() as src,
            warp_to(src, out, src_nodata=NODATA, nodata=NODATA) as vrt,
        ):
            return np.asarray(vrt.read(), np.float32)


NORTH_UP = Affine(0.1, 0, 500_000.0, 0, -0.1, 4_000_000.0)
SOUTH_UP = Affine(0.1, 0, 500_000.0, 0, 0.1, 4_000_000.0)
ROTATED = NORTH_UP * Affine.rotation(20)


@pytest.mark.parametrize(
    ("ratio", "ratio_y", "transform"),
    [(2.0, 2.0, NORTH_UP), (0.5, 0.5, NORTH_UP), (1.07, 1.07, NORTH_UP), (0.93, 0.93, NORTH_UP),
     (3.0, 3.0, NORTH_UP), (1.12, 0.89, NORTH_UP), (0.6, 1.3, SOUTH_UP), (1.3, 0.7, ROTATED),
     (0.49, 0.51, NORTH_UP), (0.33, 0.252, NORTH_UP)],
)  # fmt: skip
def test_streamed_blocks_equal_a_warp_of_the_whole_grid(
    ratio: float, ratio_y: float, transform: Affine
) -> None:
    """Every ratio (up and down, per axis; geographic grids have unequal x and y pixels; near
    a whole number of model pixels per output pixel, where GDAL snaps its kernel), north-up,
    south-up and rotated grids: the values and nodata of GDAL's warp of the whole grid."""
    out = Grid(150, 230, transform)
    model = model_grid_of(out, ratio, ratio_y)
    data = probability(model)
    expected = warped_whole(data, model, out)
    got = np.full_like(expected, 7.0)
    back = BackResampler(model, out, BLOCK)
    windows = []
    for window, values in back.run(blocks_of(data, [])):
        r, c = int(window.row_off), int(window.col_off)
        got[:, r : r + int(window.height), c : c + int(window.width)] = values
        windows.append(window)
    assert windows == list(out.blocks(BLOCK))  # every block once, row-major
    np.testing.assert_array_equal(got == NODATA, expected == NODATA)
    assert (got == NODATA).any() and (got != NODATA).any()
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_a_work_window_reads_only_its_footprint() -> None:
    """With an extent/AOI the model runs on the window's footprint only: resampling that part
    gives what resampling the whole grid gives inside the window."""
    whole = Grid(200, 260, Affine(0.1, 0, 500_000.0, 0, -0.1, 4_000_000.0))
    model_whole = model_grid_of(whole, 1.6)
    data = probability(model_whole, seed=3)
    window = Window(37, 61, 90, 120)
    part = footprint(window, whole, model_whole)
    assert part.col_off > 0 and part.row_off > 0  # a real part, not the whole grid
    r, c = int(part.row_off), int(part.col_off)
    inside = data[:, r : r + int(part.height), c : c + int(part.width)]
    out = sub_grid(whole, window)
    back = BackResampler(sub_grid(model_whole, part), out, BLOCK)
    got = np.zeros((2, out.height, out.width), np.float32)
    for w, values in back.run(blocks_of(np.ascontiguousarray(inside), [])):
        wr, wc = int(w.row_off), int(w.col_off)
        got[:, wr : wr + int(w.height), wc : wc + int(w.width)] = values
    expected = warped_whole(data, model_whole, whole)
    wr, wc = int(window.row_off), int(window.col_off)
    np.testing.assert_allclose(
        got, expected[:, wr : wr + out.height, wc : wc + out.width], atol=1e-5
    )


def _resampled(data: np.ndarray, model: Grid, out: Grid, window: Window) -> np.ndarray:
    """``window`` of ``out`` resampled from the part of ``data`` (on ``model``) it reads."""
    part = footprint(window, out, model)
    r, c = int(part.row_off), int(part.col_off)
    inside = np.ascontiguousarray(data[:, r : r + int(part.height), c : c + int(part.width)])
    sub = sub_grid(out, window)
    got = np.zeros((data.shape[0], sub.height, sub.width), np.float32)
    for w, values in BackResampler(sub_grid(model, part), sub, BLOCK).run(blocks_of(inside, [])):
        wr, wc = int(w.row_off), int(w.col_off)
        got[:, wr : wr + int(w.height), wc : wc + int(w.width)] = values
    return got


@pytest.mark.parametrize("ratio", [1.5, 2.5, 0.75])
def test_rows_resampled_apart_equal_the_whole_run_with_centres_on_pixel_edges(
    ratio: float,
) -> None:
    """Dask strips resample their rows from their own part of the model's grid. At ratios
    that put output centres exactly on model-pixel edges (3/2, 5/2, 3/4) the offsets composed
    from other sub-grids differ in their last bits; the pixel under each centre, and so which
    pixels are nodata, must still be the whole run's (far from the origin, as UTM grids are)."""
    out = Grid(150, 1500, Affine(0.1, 0, 500_000.0, 0, -0.1, 3_700_000.0))
    model = model_grid_of(out, ratio)
    data = probability(model, seed=5)
    data[:, ::2, 10:40] = NODATA  # nodata every other model row: a centre's pick shows
    whole = _resampled(data, model, out, Window(0, 0, out.width, out.height))
    for first, end in [(0, 1085), (963, 1500), (111, 777), (1023, 1024)]:
        got = _resampled(data, model, out, Window(0, first, out.width, end - first))
        expected = whole[:, first:end]
        np.testing.assert_array_equal(got == NODATA, expected == NODATA)
        np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("ratio", [0.5, 1.07, 2.0])
def test_blocks_come_as_the_rows_do_and_few_rows_are_held(ratio: float) -> None:
    """The first output blocks come out long before the model's last block goes in, and the
    model rows held at once stay within what the resampler declares (the memory check's
    figure), a fraction of a tall grid."""
    out = Grid(96, 1200, Affine(0.1, 0, 500_000.0, 0, -0.1, 4_000_000.0))
    model = model_grid_of(out, ratio)
    consumed: list[int] = []
    back = BackResampler(model, out, BLOCK)
    stream = back.run(blocks_of(probability(model), consumed))
    next(stream)
    total = len(list(model.blocks(BLOCK)))
    assert len(consumed) < total / 4
    assert sum(1 for _ in stream) == len(list(out.blocks(BLOCK))) - 1
    assert len(consumed) == total
    assert 0 < back.peak_rows <= back.held_rows and back.peak_rows < model.height / 4


def test_valid_pixels_without_reading_integer_bands(tmp_path: object) -> None:
    """The validity the resampling back uses equals the reader's, from masks alone for
    integer bands, and still finds NaN in float bands."""
    from engine.inference.tilereader import read_inside, valid_inside

    path = f"{tmp_path}/r.tif"
    base = {"driver": "GTiff", "width": 40, "height": 30, "count": 2, "crs": CRS_UTM}
    base["transform"] = Affine(0.1, 0, 500_000.0, 0, -0.1, 4_000_000.0)
    for dtype, nodata in (("uint8", 0), ("float32", -9.0)):
        data = np.full((2, 30, 40), 5, dtype)
        data[1, 3:6, 4:9] = nodata
        if dtype == "float32":
            data[0, 10:12, 20:25] = np.nan
        with rasterio.open(path, "w", **base, dtype=dtype, nodata=nodata) as dst:
            dst.write(data)
        with rasterio.open(path) as src:
            window = Window(2, 1, 30, 20)
            _, expected = read_inside(src, window, (1, 2))
            got = valid_inside(src, window, (1, 2))
        np.testing.assert_array_equal(got, expected)
        assert not got.all()


@pytest.mark.parametrize("ratio", [0.25, 2.0])
def test_memory_stays_within_what_the_memory_check_counts(ratio: float) -> None:
    """The memory the resampling allocates (traced, with nodata holes: the slow path) stays
    within the rows it declares to the memory check, in row_bytes units."""
    out = Grid(600, 900, NORTH_UP)
    model = model_grid_of(out, ratio)
    data = np.full((2, model.height, model.width), 0.5, np.float32)
    data[:, ::7, ::5] = NODATA
    back = BackResampler(model, out, 256)
    grid = Grid(model.width, model.height, Affine.identity())

    def blocks() -> Iterator[Block]:
        for index, w in enumerate(grid.blocks(256)):
            r, c = int(w.row_off), int(w.col_off)
            part = data[:, r : r + int(w.height), c : c + int(w.width)].copy()
            yield Block(index, w, part, part[0] != NODATA)

    tracemalloc.start()
    try:
        for _ in back.run(blocks()):
            pass
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    declared = row_bytes(model.width, back.held_rows, 2) + row_bytes(
        out.width, back.held_out_rows, 2
    )
    assert peak <= declared
