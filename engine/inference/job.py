"""The prediction job that ``predict`` and ``detect`` share: a raster checked against a model,
the grids it runs on, and the probability blocks it yields, final, in row-major order.

How it works (see :mod:`engine.inference.predictor`): prediction windows (512 px on a CPU,
1024 on a GPU, see :mod:`engine.inference.sizing`; the model's training tile sets only the
margin) every ``window - 2 * margin`` pixels over the grid padded by the margin rounded up
to the model's stride (reflect-filled outside the raster), the last of a row or column only
as large as needed (on a CPU; a GPU's are full, one batch shape), predicted in batches (two
at once on a CPU; optionally with 8-way TTA), blended with smooth weights that sum to one per
pixel, and released block by block as soon as a block is final. Memory holds about
``(window + 512) x raster width`` pixels of accumulators, never a scene-sized array.

The model runs at its training resolution: when the raster's ground resolution differs by
more than 5 % (and ``native_resolution`` is off), windows are read from a virtual raster
(WarpedVRT, same CRS, bilinear) at the model's resolution, and the probability is resampled
back (bilinear) onto the raster's grid block by block as soon as the model rows a block reads
are final (:mod:`engine.inference.resample`), so the stages after it run beside the model.
Pixels that are nodata in any input band, and pixels whose centre lies outside the
extent/AOI, are :data:`NODATA` (-1, outside the 0-1 range of probabilities).

With an extent/AOI everything covers its work window only
(:func:`engine.geo.workarea.work_window`): the output grid is that window of the raster's
grid, and the model runs on the windows of the whole grid's plan that meet it (on the model's
grid: that window plus what the bilinear resampling back reads around it), so its pixels get
the values a run over the whole raster gives them. Time and memory follow the area, not the
raster.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.io import DatasetWriter
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window
from rasterio.windows import transform as window_transform
from shapely.geometry.base import BaseGeometry

from engine.config import InferenceOptions
from engine.errors import ConfigError, RasterError
from engine.events import Progress
from engine.geo.normalize import BandStats
from engine.geo.rasters import ground_resolution_m, open_raster, resolve_raster
from engine.geo.windows import Grid
from engine.geo.workarea import area_mask, load_work_area, work_window
from engine.inference.blend import NODATA, Block
from engine.inference.network import Network
from engine.inference.predictor import TiledPredictor, check_tiling, default_margin
from engine.inference.resample import BackResampler, footprint
from engine.inference.sizing import (
    check_row_memory,
    prediction_batch,
    prediction_streams,
    prediction_window,
    row_bytes,
)
from engine.inference.tilereader import valid_inside
from engine.models.spec import ModelSpec, check_bands

__all__ = [
    "BLOCK",
    "NODATA",
    "PredictionJob",
    "open_probability",
    "prepare_job",
    "probability_blocks",
]

#: Relative difference between raster and model resolution above which the raster is resampled.
RESOLUTION_TOLERANCE = 0.05
#: Most times more pixels the model's grid may have than the raster (a model trained on finer
#: pixels: 16 is a raster of 4x coarser pixels).
MAX_UPSAMPLING = 16
#: Side of the output blocks (= GeoTIFF tiles) written as they finish.
BLOCK = 256
#: Creation options of probability GeoTIFFs.
PROFILE: dict[str, Any] = {
    "driver": "GTiff",
    "dtype": "float32",
    "nodata": NODATA,
    "tiled": True,
    "blockxsize": BLOCK,
    "blockysize": BLOCK,
    "compress": "deflate",
    "predictor": 3,
    "BIGTIFF": "IF_SAFER",
}


@dataclass
class PredictionJob:
    """Everything one prediction needs, checked: raster, grids, model and work area.

    ``grid`` is the output's grid: the raster's, or its work window's with an extent/AOI
    (``window`` on ``raster_grid``). ``model_grid`` is the whole grid the model's window
    plan lies on (the raster's, or one at the model's resolution); ``model_window`` the part
    of it that is predicted.
    """

    raster: str
    crs: CRS
    grid: Grid  # the output's: the work window of the raster's grid
    model_grid: Grid  # where the model runs; differs from ``raster_grid`` when resampling
    bands: tuple[int, ...]
    classes: tuple[str, ...]
    area: BaseGeometry | None
    predictor: TiledPredictor
    device: str
    raster_grid: Grid  # the whole raster's grid
    window: Window  # the output's grid on ``raster_grid``
    model_window: Window  # the part of ``model_grid`` predicted

    @property
    def resampled(self) -> bool:
        """True when the model runs on a resampled grid."""
        return self.model_grid != self.raster_grid


def _model_grid(src: Any, spec: ModelSpec, native: bool, progress: Progress) -> Grid:
    """The grid to run the model on: the raster's, or one at the model's resolution."""
    grid = Grid(src.width, src.height, src.transform)
    res = ground_resolution_m(src)
    if native or spec.resolution_m <= 0:
        if native and abs(spec.resolution_m / res - 1) > RESOLUTION_TOLERANCE:
            progress.log(
                f"Predicting at the raster's own {res:.3f} m (native resolution) although the"
                f" model was trained at {spec.resolution_m:.3f} m."
            )
        return grid
    ratio = spec.resolution_m / res
    if abs(ratio - 1) <= RESOLUTION_TOLERANCE:
        return grid
    width, height = max(1, round(src.width / ratio)), max(1, round(src.height / ratio))
    check_upsampling(src, width * height, res, spec.resolution_m)
    transform = src.transform * Affine.scale(src.width / width, src.height / height)
    progress.log(
        f"Raster resolution {res:.3f} m differs from the model's {spec.resolution_m:.3f} m:"
        f" predicting on a resampled {width}x{height} grid (bilinear), then resampling back"
        f" onto the raster's {src.width}x{src.height} grid. Use native resolution to predict"
        " on the raster's own pixels instead."
    )
    return Grid(width, height, transform)


def check_upsampling(src: Any, pixels: int, res: float, model_res: float) -> None:
    """Refuse a model grid of ``pixels`` more than :data:`MAX_UPSAMPLING` times the raster's
    (a model trained on much finer pixels: memory, disk and time would grow as much).

    Raises:
        ConfigError: with the factor and the ways out.
    """
    factor = pixels / (src.width * src.height)
    if factor <= MAX_UPSAMPLING:
        return
    raise ConfigError(
        f"The model was trained at {model_res:g} m per pixel, {res / model_res:.3g} times finer"
        f" than raster {src.name} ({res:.3g} m): predicting at the model's resolution"
        f" would resample it to {factor:,.0f} times its {src.width}x{src.height} pixels (at most"
        f" {MAX_UPSAMPLING} times is allowed). Use a model trained near {res:.3g} m, predict"
        " at the raster's own resolution (--native-resolution; in QGIS: Predict at the raster's"
        " resolution), or resample the raster"
        f" yourself if you mean it, e.g. `gdalwarp -tr {model_res:g} {model_res:g} -r bilinear"
        " in.tif finer.tif` (for a raster in metres)."
    )


def sub_grid(grid: Grid, window: Window) -> Grid:
    """The part of ``grid`` under ``window``, as a grid of its own."""
    return Grid(int(window.width), int(window.height), window_transform(window, grid.transform))


def _model_window(window: Window, raster: Grid, model: Grid) -> Window:
    """The part of ``model`` that the resampling back onto ``window`` of ``raster`` reads
    (:func:`engine.inference.resample.footprint`)."""
    if model == raster:
        return window
    if window == Window(0, 0, raster.width, raster.height):
        return Window(0, 0, model.width, model.height)
    return footprint(window, raster, model)


def prepare_job(
    raster_name: str,
    config: InferenceOptions,
    network: Network,
    spec: ModelSpec,
    progress: Progress,
    workdir: str,
) -> PredictionJob:
    """Open and check the raster against the model; plan grids, tiling and work area.

    Raises:
        RasterError: unreadable or ungeoreferenced raster. ModelFileError: band mismatch.
        ConfigError: bad tiling, batch size, extent or AOI.
    """
    align = network.stride
    margin = default_margin(spec.tile_size, align) if config.margin is None else config.margin
    window = prediction_window(network.kind, margin, align, config.window)
    batch = prediction_batch(network, window, config.batch_size)
    check_tiling(window, margin, batch)
    raster = resolve_raster(raster_name, workdir=workdir)
    with open_raster(raster) as src:
        bands = check_bands(spec, src.count)
        grid = Grid(src.width, src.height, src.transform)
        crs = src.crs
        model_grid = _model_grid(src, spec, config.native_resolution, progress)
    area = load_work_area(
        config.extent, config.aoi, crs, grid.transform, grid.width, grid.height, progress
    )
    work = work_window(area, grid.transform, grid.width, grid.height)
    model_window = _model_window(work, grid, model_grid)
    if area is not None:
        progress.log(
            f"Working on the {int(work.width)}x{int(work.height)} px window of the raster"
            f" that holds the extent/AOI (column {int(work.col_off)}, row"
            f" {int(work.row_off)}); the outputs cover that window"
            + (
                f" ({int(model_window.width)}x{int(model_window.height)} px on the model's grid)."
                if model_grid != grid
                else "."
            )
        )
    predictor = TiledPredictor(
        network,
        window,
        margin,
        len(spec.classes),
        bands,
        BandStats(tuple(spec.mean), tuple(spec.std)),
        batch,
        config.tta,
        BLOCK,
        align,
        prediction_streams(network),
        uniform=network.kind == "cuda",
    )
    return PredictionJob(
        raster,
        crs,
        sub_grid(grid, work),
        model_grid,
        bands,
        tuple(spec.classes),
        area,
        predictor,
        network.description,
        grid,
        work,
        model_window,
    )


@contextmanager
def open_probability(path: str | Path, job: PredictionJob) -> Iterator[DatasetWriter]:
    """A new probability GeoTIFF on the job's output grid."""
    grid = job.grid
    with rasterio.open(
        path,
        "w",
        width=grid.width,
        height=grid.height,
        count=len(job.classes),
        crs=job.crs,
        transform=grid.transform,
        **PROFILE,
    ) as dst:
        for band, name in enumerate(job.classes, start=1):
            dst.set_band_description(band, f"{name} probability")
        yield dst


def with_area(block: Block, job: PredictionJob, transform: Affine) -> Block:
    """``block`` with pixels outside the work area set to nodata."""
    mask = area_mask(job.area, block.window, transform)
    if mask is None:
        return block
    valid = block.valid & mask
    data = block.data
    data[:, ~valid] = NODATA
    return Block(block.index, block.window, data, valid)


def warp_to(dataset: Any, grid: Grid, **options: Any) -> WarpedVRT:
    """``dataset`` seen on ``grid`` (same CRS), resampled bilinearly."""
    return WarpedVRT(
        dataset,
        crs=dataset.crs,
        transform=grid.transform,
        width=grid.width,
        height=grid.height,
        resampling=Resampling.bilinear,
        **options,
    )


def _warped(job: PredictionJob) -> Any:
    """Opener of the raster seen through a WarpedVRT on the model grid."""

    @contextmanager
    def opener() -> Iterator[Any]:
        with open_raster(job.raster) as src, warp_to(src, job.model_grid) as vrt:
            yield vrt

    return opener


def _back_resampler(job: PredictionJob) -> BackResampler:
    """The resampler of ``job``'s model-grid blocks onto its output grid."""
    return BackResampler(sub_grid(job.model_grid, job.model_window), job.grid, BLOCK)


def _resampled_back(
    job: PredictionJob, blocks: Iterable[Block], region: Window, first: int, end: int
) -> Iterator[Block]:
    """Blocks of rows ``first`` to ``end`` of the output grid, bilinear from the model-grid
    ``blocks`` of ``region`` as they come (:class:`engine.inference.resample.BackResampler`)."""
    g = job.grid
    out = Window(0, first, g.width, end - first)
    back = BackResampler(sub_grid(job.model_grid, region), sub_grid(g, out), BLOCK)
    col0, row0 = int(job.window.col_off), int(job.window.row_off)
    with open_raster(job.raster) as src:
        for index, (window, data) in enumerate(back.run(blocks)):
            window = Window(window.col_off, window.row_off + first, window.width, window.height)
            on_raster = Window(
                window.col_off + col0, window.row_off + row0, window.width, window.height
            )
            valid = valid_inside(src, on_raster, job.bands)
            valid &= data[0] != NODATA
            data[:, ~valid] = NODATA
            yield with_area(Block(index, window, data, valid), job, g.transform)


def probability_blocks(
    job: PredictionJob, progress: Progress, rows: tuple[int, int] | None = None
) -> Iterator[Block]:
    """The output's blocks on the raster grid, final, in row-major order (see module doc).
    With ``rows`` (first, end: a Dask strip), only those rows of the output grid, with the
    values the whole job gives them: the model predicts the windows of its whole plan that
    meet the rows they are made from.

    Raises:
        RasterError: no window had a valid pixel (all nodata, or none in the work area; the
            whole job only).
    """
    p = job.predictor
    first, end = rows if rows is not None else (0, job.grid.height)
    w = job.window
    on_raster = Window(w.col_off, w.row_off + first, w.width, end - first)
    if not job.resampled:
        g = job.raster_grid
        for block in p.run(
            lambda: open_raster(job.raster),
            g.width,
            g.height,
            g.transform,
            job.area,
            progress,
            region=on_raster,
        ):
            b = block.window
            window = Window(b.col_off, b.row_off + first, b.width, b.height)
            block = Block(block.index, window, block.data, block.valid)
            yield with_area(block, job, job.grid.transform)
    else:
        g = job.model_grid
        region = _model_window(on_raster, job.raster_grid, g)
        blocks = p.run(_warped(job), g.width, g.height, g.transform, job.area, progress, region)
        yield from _resampled_back(job, blocks, region, first, end)
    if rows is None:
        check_any_valid(job)


def check_any_valid(job: PredictionJob) -> None:
    """Raise RasterError when the job predicted no window (all nodata, or none in the area)."""
    if job.predictor.windows_predicted == 0:
        where = " inside the extent/AOI" if job.area is not None else ""
        raise RasterError(
            f"Raster {job.raster} has no valid pixels{where} (all nodata); check its nodata"
            " value and mask, or choose an area with data."
        )


def check_memory(job: PredictionJob, name: str, raster_rows: int = 0) -> None:
    """Refuse, before any work, a job on raster ``name`` (as the user gave it) whose rows held
    across the work's width would not fit the memory available: the blend's (a window and two
    blocks of the model's grid), the model rows and the row of output blocks the resampling
    back holds (when the model runs at its own resolution) and ``raster_rows`` rows of the
    raster's grid (what the caller holds after it).

    Raises:
        ConfigError: with the figures and the ways out (see
            :func:`engine.inference.sizing.check_row_memory`).
    """
    classes = len(job.classes)
    width = int(job.model_window.width)  # the work's: the extent/AOI's window when given
    rows = job.predictor.window + 2 * BLOCK
    if job.resampled:  # the model rows it reads, and the row of output blocks it makes
        back = _back_resampler(job)
        rows += back.held_rows
        raster_rows += back.held_out_rows
    need = row_bytes(width, rows, classes) + row_bytes(job.grid.width, raster_rows, classes)
    check_row_memory(name, width, need, row_bytes(width, 1, classes))
