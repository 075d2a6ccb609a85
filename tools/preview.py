"""A PNG preview: imagery (read at reduced size) with predicted and reference outlines.

``python -m tools.preview --raster R --predicted P [--reference F] --output out.png``
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import geopandas as gpd
import matplotlib
import numpy as np
from rasterio.enums import Resampling
from rasterio.windows import Window

from engine.geo.outputs import atomic_output
from engine.geo.rasters import default_bands, open_raster, read_window, resolve_raster

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _image(raster: str, max_side: int) -> tuple[np.ndarray, tuple[float, float, float, float], str]:
    """The raster reduced to at most ``max_side`` pixels a side, as an RGB(ish) 0-1 image."""
    with open_raster(raster) as src:
        scale = max(src.width, src.height) / max_side
        shape = (max(1, int(src.height / max(scale, 1))), max(1, int(src.width / max(scale, 1))))
        bands = default_bands(src)[:3]
        data, valid = read_window(
            src, Window(0, 0, src.width, src.height), bands, shape, Resampling.average
        )
        b = src.bounds
        extent, crs = (b.left, b.right, b.bottom, b.top), src.crs.to_wkt()
    low, high = np.percentile(data[:, valid], [2, 98], axis=1) if valid.any() else (0, 1)
    image = np.clip(
        (data - np.reshape(low, (-1, 1, 1))) / np.reshape(high - low + 1e-9, (-1, 1, 1)), 0, 1
    )
    image = np.repeat(image, 3, axis=0) if image.shape[0] == 1 else image
    return np.moveaxis(image, 0, -1), extent, crs


def render_preview(
    raster: str,
    predicted: str,
    output: str,
    reference: str | None = None,
    max_side: int = 2000,
    overwrite: bool = False,
) -> Path:
    """Draw ``predicted`` (orange) and ``reference`` (cyan) outlines over ``raster``."""
    image, extent, crs = _image(resolve_raster(raster), max_side)
    height, width = image.shape[:2]
    fig = plt.figure(figsize=(width / 100, height / 100), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(image, extent=extent)
    if reference:
        ref = gpd.read_file(reference).to_crs(crs).clip(extent[0:4:2] + extent[1:4:2])
        ref.boundary.plot(ax=ax, color="cyan", linewidth=1.2)
    gpd.read_file(predicted).to_crs(crs).boundary.plot(ax=ax, color="orangered", linewidth=1.2)
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_axis_off()
    with atomic_output(output, overwrite) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(output).absolute()


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(prog="python -m tools.preview", description=__doc__)
    parser.add_argument("--raster", required=True, help="Imagery (file, folder or glob).")
    parser.add_argument("--predicted", required=True, help="Predicted building polygons.")
    parser.add_argument("--reference", help="Reference building polygons (optional).")
    parser.add_argument("--output", required=True, help="PNG to write.")
    parser.add_argument("--max-side", type=int, default=2000, help="Largest side in pixels.")
    parser.add_argument("--overwrite", action="store_true", help="Replace the PNG if it exists.")
    args = parser.parse_args(argv)
    out = render_preview(
        args.raster, args.predicted, args.output, args.reference, args.max_side, args.overwrite
    )
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
