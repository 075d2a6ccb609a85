"""Vectorize a building probability or mask raster into polygons, window by window.

The raster is read in windows of ``window_size`` pixels; :mod:`engine.polygons.seams`
polygonizes them and joins polygons across window seams, so the result equals polygonizing the
whole raster at once while memory depends on the window size, never on the raster size.
"""

from __future__ import annotations

import math

from engine.config import VectorizeConfig
from engine.errors import ConfigError
from engine.events import Progress, check_canceled
from engine.geo.outputs import check_output
from engine.geo.rasters import open_raster, read_window, select_bands
from engine.geo.vectors import VectorWriter
from engine.geo.windows import Grid
from engine.polygons.seams import PolygonStream, SeamJoiner, check_polygon_options
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


def vectorize(config: VectorizeConfig, progress: Progress) -> VectorizeResult:
    """Vectorize ``config.raster`` into building polygons written to ``config.output``.

    Returns:
        ``{"output": path, "buildings": n, "total_area_m2": float}``.
    """
    check_vectorize_config(config)
    check_output(config.output, config.overwrite)
    with (
        open_raster(config.raster) as src,
        VectorWriter(config.output, config.overwrite, "Polygon") as writer,
    ):
        band = select_bands(src, [config.band])[0]
        joiner = SeamJoiner(src.width, src.height, config.threshold)
        stream = PolygonStream(writer, src.crs, config, src.transform)
        windows = list(Grid(src.width, src.height, src.transform).blocks(config.window_size))
        for i, window in enumerate(windows, start=1):
            check_canceled(progress)
            data, valid = read_window(src, window, [band])
            stream.add(joiner.add(window, data[0], valid))
            progress.set_progress(90.0 * i / len(windows))
        stream.add(joiner.finish())
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
