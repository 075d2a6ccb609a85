"""Seams: overlapping windows with blended weights vs non-overlapping tiles, in numbers and a
picture.

    .venv/bin/python bench/seams.py MODEL [--window 512] [--tag NAME]

Predicts the Banepa test mosaic with the same model on ``--window``-px prediction windows
(detect's CPU default; the last of a row or column only as large as needed) four ways:
overlapping by a quarter of the model's training tile on each side (margin ``tile/4``), an
eighth (``tile/8``, the default margin) or a sixteenth (``--margin 16`` for 256-px tiles),
blended with weights that fall off towards their edges, and side by side (margin 0). The
*seam step* is the mean absolute change of probability between neighbouring pixels across the
seams (every ``window - 2 x margin`` pixels, where the windows' cores meet) divided by the
same change everywhere else: 1 means the seams cannot be told apart from the rest of the map.
Writes docs/images/seams_<tag>.png (probability crops: blended left, side by side right) and
appends the figures to docs/BENCHMARKS.md. MODEL is a model file, e.g. one kept by
``bench/accuracy.py --keep-model``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.accuracy import DATA, DATASETS, _hardware, append_record  # noqa: E402
from engine.config import PredictConfig  # noqa: E402
from engine.events import NullProgress  # noqa: E402
from engine.geo.rasters import resolve_raster  # noqa: E402
from engine.inference.predictor import window_pad  # noqa: E402
from engine.models.modelfile import read_spec  # noqa: E402
from engine.predict import predict  # noqa: E402


def output_stride_of(model: Path) -> int:
    """The output stride of the network in a model file."""
    from engine.models.modelfile import load_model
    from engine.models.registry import output_stride

    return output_stride(load_model(str(model), device="cpu")[0])


def seam_step(prob: np.ndarray, tile: int, offset: int = 0) -> float:
    """Mean |change| between neighbours across seams every ``tile`` px from ``offset`` /
    elsewhere (rows and columns together)."""
    seams, rest = [], []
    for axis in (0, 1):
        step = np.abs(np.diff(prob, axis=axis))  # step[i] is between pixel i and i + 1
        at = np.zeros(step.shape[axis], bool)
        at[(offset - 1) % tile :: tile] = True
        seams.append(np.compress(at, step, axis=axis).ravel())
        rest.append(np.compress(~at, step, axis=axis).ravel())
    return float(np.concatenate(seams).mean() / np.concatenate(rest).mean())


def _crop(prob: np.ndarray, tile: int, side: int = 384) -> np.ndarray:
    """A ``side``-px crop centred on a crossing of tile seams."""
    y = min(tile, prob.shape[0] - side // 2)
    x = min(tile, prob.shape[1] - side // 2)
    return prob[max(0, y - side // 2) : y + side // 2, max(0, x - side // 2) : x + side // 2]


def picture(blended: np.ndarray, tiled: np.ndarray, tile: int, out: Path) -> None:
    """Two probability crops side by side, seams marked with ticks on the frame."""
    from PIL import Image, ImageDraw, ImageFont

    a, b = _crop(blended, tile), _crop(tiled, tile)
    gap = 8
    canvas = np.full((a.shape[0] + 24, a.shape[1] * 2 + gap), 255, np.uint8)
    canvas[24:, : a.shape[1]] = (a * 255).astype(np.uint8)
    canvas[24:, a.shape[1] + gap :] = (b * 255).astype(np.uint8)
    image = Image.fromarray(canvas).convert("RGB")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=14)
    draw.text((4, 4), "overlapping windows, blended", fill=(0, 0, 0), font=font)
    draw.text((a.shape[1] + gap + 4, 4), "tiles side by side (margin 0)", fill=(0, 0, 0), font=font)
    image.save(out)


def main() -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--window", type=int, default=512, help="prediction window (px)")
    parser.add_argument("--tag", default="cpu")
    args = parser.parse_args()
    data = DATASETS["banepa"]
    if not (DATA / data.test).is_dir():
        raise SystemExit(f"Banepa data not found at {DATA / data.test}: set FOOTPRINT_DATA")
    tile, window = read_spec(args.model).tile_size, args.window
    probs, seconds = {}, {}
    margins = {"blended": tile // 4, "blended8": tile // 8, "blended16": tile // 16, "tiles": 0}
    with tempfile.TemporaryDirectory(prefix="footprint-seams-") as tmp:
        test = resolve_raster(str(DATA / data.test), workdir=tmp)
        for name, margin in margins.items():
            out = Path(tmp) / f"{name}.tif"
            start = time.monotonic()
            config = PredictConfig(test, str(args.model), str(out), margin=margin, window=window)
            predict(config, NullProgress())
            seconds[name] = time.monotonic() - start
            with rasterio.open(out) as src:
                probs[name] = src.read(1)
    align = output_stride_of(args.model)
    steps = {}
    for name, p in probs.items():
        m = margins[name]  # cores meet every window - 2 m px from m - pad
        steps[name] = seam_step(p, window - 2 * m, m - window_pad(m, align, window))
    image = ROOT / "docs" / "images" / f"seams_{args.tag}.png"
    picture(probs["blended"], probs["tiles"], window, image)
    text = "\n".join(
        [
            f"### seams: {args.tag} ({time.strftime('%Y-%m-%d')})",
            "",
            f"- command: `python bench/seams.py {' '.join(sys.argv[1:])}`",
            f"- hardware: {_hardware()}",
            f"- model: {args.model.name} (trained on {tile}-px tiles), {window}-px prediction"
            " windows (the last of a row or column only as large as needed); Banepa test mosaic",
            "",
            "| prediction | seam step (1 = invisible) | time |",
            "| --- | --- | --- |",
            f"| overlapping windows, blended (margin {tile // 4}) | {steps['blended']:.2f} |"
            f" {seconds['blended']:.1f} s |",
            f"| overlapping windows, blended (margin {tile // 8}) | {steps['blended8']:.2f} |"
            f" {seconds['blended8']:.1f} s |",
            f"| overlapping windows, blended (margin {tile // 16}) | {steps['blended16']:.2f} |"
            f" {seconds['blended16']:.1f} s |",
            f"| tiles side by side (margin 0) | {steps['tiles']:.2f} | {seconds['tiles']:.1f} s |",
            "",
            f"![seams]({image.relative_to(ROOT / 'docs')})",
            "",
        ]
    )
    append_record(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
