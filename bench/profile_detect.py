"""Where detect's time goes: every stage of detect timed alone, one after another, in one thread.

    .venv/bin/python bench/profile_detect.py MODEL [--side 4096] [--window W] [--tag NAME]
        [--precision fp32|bf16|auto]

On a ``--side`` raster made from the Banepa test mosaic (as ``bench/scale.py`` makes it) it
runs detect's stages in one loop, without the reader and polygonizing threads, timing each
call: reading windows (GDAL, reflect padding), normalising them, the model, blending them
into blocks, writing the probability GeoTIFF (what ``--keep-probability`` and ``predict``
add), instance extraction (seeds + watershed per block with its halo) and polygons (seam
joining, simplification and writing the GeoPackage). The sum is the time detect would take
with no overlap at all; the shares say what can be hidden behind the model and what cannot.
Figures are appended to docs/BENCHMARKS.md with the CPU.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.accuracy import _hardware, append_record  # noqa: E402
from bench.scale import make_raster, resolve_test_mosaic  # noqa: E402

T = TypeVar("T")


class Clock:
    """Seconds spent per stage."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def time(self, stage: str, call: Callable[..., T], *args: Any) -> T:
        """``call(*args)``, its time added to ``stage``."""
        start = time.perf_counter()
        try:
            return call(*args)
        finally:
            self.seconds[stage] += time.perf_counter() - start


def profile(
    raster: Path, model_file: Path, window: int | None, work: Path, precision: str = "fp32"
) -> dict[str, Any]:
    """Run detect's stages on ``raster`` one after another; return seconds per stage."""
    import rasterio
    import torch

    from engine.config import DetectConfig
    from engine.events import NullProgress
    from engine.geo.normalize import normalize
    from engine.geo.rasters import ground_resolution_m
    from engine.geo.vectors import VectorWriter
    from engine.geo.windows import PredictionPlan
    from engine.inference.blend import BlockBlender
    from engine.inference.job import BLOCK, PROFILE, prepare_job
    from engine.inference.predictor import window_pad
    from engine.inference.tilereader import read_reflected
    from engine.inference.torchnet import torch_network
    from engine.models.modelfile import load_model
    from engine.models.registry import output_stride
    from engine.polygons.blocks import INSTANCE_BLOCK, HaloAssembler, halo_pixels, label_block
    from engine.polygons.instances import InstanceSettings
    from engine.polygons.seams import PolygonStream, SeamJoiner

    model, spec = load_model(str(model_file), device="cpu")
    device = torch.device("cpu")
    config = DetectConfig(raster=str(raster), model=str(model_file), output="unused")
    network = torch_network(model, spec, device, precision)  # folded, channels-last, as detect
    job = prepare_job(str(raster), config, network, spec, NullProgress(), str(work))
    p = job.predictor
    side = window or p.window
    g = job.grid
    align = output_stride(model)
    plan = PredictionPlan(
        g.width, g.height, side, p.margin, align, window_pad(p.margin, align, side)
    )
    blender = BlockBlender(
        job.grid.width, job.grid.height, p.margin, p.channels, plan.rows, plan.columns, BLOCK
    )
    with rasterio.open(raster) as src:
        pixel = ground_resolution_m(src)
    settings = InstanceSettings.of_model(spec)
    params = settings.params(pixel)
    building, separation = spec.classes.index("building"), spec.classes.index("separation")
    assembler = HaloAssembler(
        job.grid.width, job.grid.height, INSTANCE_BLOCK, halo_pixels(pixel, BLOCK), BLOCK
    )
    joiner = SeamJoiner(job.grid.width, job.grid.height, spec.threshold)
    clock = Clock()
    predicted = 0
    profile = {**PROFILE, "width": job.grid.width, "height": job.grid.height}
    with (
        rasterio.open(raster) as src,
        rasterio.open(
            work / "p.tif", "w", count=len(spec.classes), crs=src.crs, transform=src.transform,
            **profile,
        ) as dst,
        VectorWriter(work / "b.gpkg", True, "Polygon") as writer,
    ):  # fmt: skip
        stream = PolygonStream(writer, src.crs, config, src.transform)

        def polygons(block: Any) -> None:
            for ready in clock.time("instances", lambda: list(assembler.add(
                    block.window, block.data, block.valid))):  # fmt: skip
                done = clock.time("instances", label_block, ready, params, building, separation)
                valid = ready.core(ready.valid)
                pieces = clock.time(
                    "polygons", joiner.add_labels, done.window, done.labels, done.probability,
                    done.ring, valid,
                )  # fmt: skip
                clock.time("polygons", stream.add, pieces)

        for win in plan:
            data, valid = clock.time("read", read_reflected, src, win, p.bands)
            x = clock.time("normalise", normalize, data, valid, p.stats)
            probs = clock.time("model", network.probabilities, x[None], False)
            predicted += x.shape[1] * x.shape[2]
            blocks = clock.time("blend", lambda *a: list(blender.add(*a)), win, probs[0], valid)
            for block in blocks:
                clock.time("write probability", dst.write, block.data, None, block.window)
                polygons(block)
        clock.time("polygons", lambda: stream.add(joiner.finish()))
        clock.time("polygons", stream.close)
    return {
        "seconds": dict(clock.seconds),
        "window": side,
        "raster_px": job.grid.width * job.grid.height,
        "predicted_px": predicted,
        "buildings": stream.buildings,
    }


def record(result: dict[str, Any], args: argparse.Namespace) -> str:
    """Markdown for docs/BENCHMARKS.md."""
    seconds = result["seconds"]
    total = sum(seconds.values())
    lines = [
        f"### detect profile: {args.tag} ({time.strftime('%Y-%m-%d')})",
        "",
        f"- command: `python bench/profile_detect.py {' '.join(sys.argv[1:])}`",
        f"- hardware: {_hardware()}",
        f"- raster {args.side} x {args.side} px, windows {result['window']} px (batch 1),"
        f" {result['predicted_px'] / result['raster_px']:.2f}x the raster's pixels predicted,"
        f" {result['buildings']} buildings; every stage alone, one thread, one after another;"
        f" model precision {args.precision}",
        "",
        "| stage | seconds | share |",
        "| --- | --- | --- |",
    ]
    for stage, value in seconds.items():
        lines.append(f"| {stage} | {value:.1f} | {value / total:.1%} |")
    alone = total - seconds.get("write probability", 0.0)
    lines += [
        f"| all | {total:.1f} | 100% |",
        f"| all but writing the probability (what detect does without keeping it) | {alone:.1f}"
        f" | {alone / total:.1%} |",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--side", type=int, default=4096)
    parser.add_argument("--window", type=int)
    parser.add_argument("--tag", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=("auto", "fp32", "bf16"))
    args = parser.parse_args()
    (ROOT / "out").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="footprint-profile-", dir=ROOT / "out") as tmp:
        work = Path(tmp)
        raster = work / "scene.tif"
        make_raster(raster, args.side, resolve_test_mosaic(work))
        result = profile(raster, args.model, args.window, work, args.precision)
    append_record(record(result, args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
