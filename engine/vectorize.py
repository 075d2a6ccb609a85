"""Vectorize a building probability or mask raster into polygons, window by window.

The raster is read in windows of ``window_size`` pixels; :mod:`engine.polygons.seams`
polygonizes them and joins polygons across window seams, so the result equals polygonizing the
whole raster at once while memory depends on the window size, never on the raster size.

With a separation band (a probability raster that ``predict`` wrote with a model that has a
separation class: found by its band name, or given) touching buildings are told apart as
``detect`` does: seeds + watershed per window with a halo (:mod:`engine.polygons.blocks`),
with the settings given or the defaults of :class:`engine.polygons.instances.InstanceSettings`.
"""

from __future__ import annotations

import math

from rasterio.io import DatasetReader

from engine.background import spare_cores
from engine.config import VectorizeConfig
from engine.errors import ConfigError
from engine.events import Progress, check_canceled
from engine.geo.outputs import check_output, prepare_outputs
from engine.geo.rasters import (
    ground_resolution_m,
    open_raster,
    raster_inputs,
    read_window,
    select_bands,
)
from engine.geo.vectors import VectorWriter, vector_driver
from engine.geo.windows import Grid
from engine.inference.blend import Block
from engine.polygons.blocks import read_halo_block
from engine.polygons.instances import InstanceSettings
from engine.polygons.seams import PolygonStream, check_polygon_options
from engine.polygons.stage import BuildingStage, ClassLayout, StageSettings
from engine.results import VectorizeResult

#: Smallest window side: smaller windows only add seams.
MIN_WINDOW = 64


def check_vectorize_config(config: VectorizeConfig) -> None:
    """Raise ConfigError for parameters out of range."""
    check_polygon_options(config, config.threshold)
    if config.window_size < MIN_WINDOW:
        raise ConfigError(
            f"Window size must be at least {MIN_WINDOW} pixels, got {config.window_size};"
            " use e.g. 1024 or 2048."
        )


#: The band name ``predict`` gives separation probability.
SEPARATION_NAME = "separation probability"


def separation_band(src: DatasetReader, config: VectorizeConfig) -> int | None:
    """The separation band to use: as given (0: none), else the one named
    :data:`SEPARATION_NAME` when ``config.band`` is not that one."""
    if config.separation_band == 0:
        return None
    if config.separation_band is not None:
        return select_bands(src, [config.separation_band])[0]
    names = [(d or "").strip().lower() for d in src.descriptions]
    if SEPARATION_NAME in names and names.index(SEPARATION_NAME) + 1 != config.band:
        return names.index(SEPARATION_NAME) + 1
    return None


def vectorize(config: VectorizeConfig, progress: Progress) -> VectorizeResult:
    """Vectorize ``config.raster`` into building polygons written to ``config.output``.

    Returns:
        ``{"output": path, "buildings": n, "total_area_m2": float}``.
    """
    check_vectorize_config(config)
    out = check_output(config.output, config.overwrite)
    prepare_outputs({"output": out}, raster_inputs(config.raster))
    vector_driver(out)  # after the inputs: "that is your raster" says more than its extension
    with (
        open_raster(config.raster) as src,
        VectorWriter(config.output, config.overwrite, "Polygon") as writer,
    ):
        band = select_bands(src, [config.band])[0]
        separation = separation_band(src, config)
        stream = PolygonStream(writer, src.crs, config, src.transform)
        windows = list(Grid(src.width, src.height, src.transform).blocks(config.window_size))
        layout = ClassLayout(0, None if separation is None else 1)
        settings = StageSettings(
            config.threshold, InstanceSettings().with_options(config, config.threshold)
        )
        pixel_m = ground_resolution_m(src) if separation is not None else 0.0  # seeds only
        grid = (src.width, src.height, pixel_m)
        # seeds + watershed and pieces of blocks side by side on every core (this thread
        # mostly waits for them: 2 cores, 4k raster: 4.0-4.8 s against 4.7-6.0 s with one)
        with BuildingStage(
            layout, settings, grid, stream, config.window_size, spare_cores(0)
        ) as stage:
            if separation is not None:
                progress.log(
                    f"Band {separation} is separation: touching buildings:"
                    f" {settings.instances.describe()}."
                )
            for i, window in enumerate(windows, start=1):
                check_canceled(progress)
                if separation is not None:
                    stage.add_halo(read_halo_block(src, window, stage.halo, [band, separation]))
                else:
                    data, valid = read_window(src, window, [band])
                    stage.add(Block(i, window, data, valid))
                progress.set_progress(90.0 * i / len(windows))
            joiner = stage.finish()
        check_canceled(progress)
        stream.close()
    if joiner.max_value < config.threshold:
        seen = (
            "no valid pixel"
            if joiner.max_value == -math.inf
            else (f"the band's largest value is {joiner.max_value:g}")
        )
        progress.log(
            f"No pixel reaches the threshold {config.threshold:g} ({seen}); the layer is"
            " empty. Lower the threshold or check the band."
        )
    total = stream.total_area_m2
    progress.log(
        f"{stream.buildings} buildings ({stream.dropped} under {config.min_area_m2:g} m²"
        f" dropped), {total:.1f} m² in all, written to {writer.path}."
    )
    progress.set_progress(100.0)
    return {"output": str(writer.path), "buildings": stream.buildings, "total_area_m2": total}
