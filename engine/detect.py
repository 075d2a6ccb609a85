"""Detect buildings: predict and vectorize in one streaming pass.

Finished probability blocks of the prediction job (:mod:`engine.inference.job`) go straight
into the seam joiner (:class:`engine.polygons.seams.SeamJoiner`), so the probability raster is
never re-read; optionally the same blocks are also written to a probability GeoTIFF
(``keep_probability``), identical to what :func:`engine.predict.predict` writes. The result
equals running ``predict`` then ``vectorize`` on its output with the same threshold (for a
single-class model).

Threshold: ``DetectConfig.threshold`` None (the default) uses the threshold stored in the model
file (chosen on validation when training).

Touching buildings: with a model that also predicts *separation* (the strip where two
buildings meet), each building grows from a seed by a watershed
(:mod:`engine.polygons.instances`), block by block with a halo
(:mod:`engine.polygons.blocks`), using the seed threshold and smallest seed stored in the
model. Older models with a *contact* class split where contact probability >= the model's
contact threshold, as they always did.
"""

from __future__ import annotations

import functools
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from rasterio.io import DatasetWriter

from engine.background import BackgroundConsumer, OrderedPool
from engine.cluster import distributed, run_on_cluster
from engine.config import DetectConfig
from engine.events import Progress, SubProgress, check_canceled
from engine.geo.labels import layer_inputs
from engine.geo.outputs import atomic_output, check_output, file_input, prepare_outputs
from engine.geo.rasters import ground_resolution_m, open_raster, raster_inputs
from engine.geo.temporary import work_prefix
from engine.geo.vectors import VectorWriter
from engine.inference.blend import Block
from engine.inference.job import (
    BLOCK,
    PredictionJob,
    check_memory,
    open_probability,
    prepare_job,
    probability_blocks,
)
from engine.inference.network import Network, open_network
from engine.inference.sizing import polygon_workers
from engine.models.spec import ModelSpec
from engine.models.starter import model_file, resolve_model
from engine.polygons.blocks import INSTANCE_BLOCK, HaloAssembler, halo_pixels
from engine.polygons.instances import InstanceParams, InstanceSettings
from engine.polygons.seams import (
    CutBlock,
    PolygonStream,
    SeamJoiner,
    check_polygon_options,
    cut_block,
)
from engine.results import DetectResult

if TYPE_CHECKING:
    import torch

__all__ = ["detect", "detect_with_model", "detect_with_network"]


def model_settings(spec: ModelSpec) -> InstanceSettings:
    """The seeds + watershed settings stored in a model with a separation class."""
    return InstanceSettings(
        spec.threshold, spec.seed_threshold, spec.seed_erosion_m, spec.min_seed_m2
    )


def _instance_setup(job: PredictionJob, settings: InstanceSettings) -> tuple[InstanceParams, int]:
    """The seeds + watershed parameters in the raster's pixels, and the blocks' halo."""
    with open_raster(job.raster) as src:
        pixel = ground_resolution_m(src)
    return settings.params(pixel), halo_pixels(pixel, BLOCK)


def _held_rows(job: PredictionJob, settings: InstanceSettings) -> int:
    """Rows of the raster's grid detect holds across its width after the blend: a row of
    finished blocks queued for the polygon thread and, for seeds + watershed, the halo
    blocks' strip (:class:`engine.polygons.blocks.HaloAssembler`)."""
    if "separation" not in job.classes:
        return BLOCK
    return BLOCK + _instance_setup(job, settings)[1] + INSTANCE_BLOCK + BLOCK


def _polygonize(
    job: PredictionJob,
    threshold: float,
    spec: ModelSpec,
    settings: InstanceSettings,
    dst: DatasetWriter | None,
    stream: PolygonStream,
    progress: Progress,
    workdir: str,
    config: DetectConfig,
    workers: int,
) -> SeamJoiner:
    """Buildings from the job's probability blocks into ``stream`` (blocks also written to
    ``dst`` when given). The blocks are polygonized in a worker thread while the model
    predicts the next ones (:mod:`engine.background`), at most a row of blocks behind, their
    seeds + watershed and polygon pieces in ``workers`` threads side by side; on a Dask
    cluster the workers predict and label strips (:mod:`engine.cluster`)."""
    joiner = SeamJoiner(job.grid.width, job.grid.height, threshold)
    if distributed(config):
        _polygonize_on_cluster(job, spec, settings, dst, stream, joiner, progress, config)
        stream.add(joiner.finish())
        return joiner
    row_blocks = -(-job.grid.width // BLOCK)
    with ExitStack() as stack:
        consume, finish = _block_consumer(job, spec, settings, dst, stream, joiner, workers, stack)
        with BackgroundConsumer(consume, row_blocks, "footprint-polygonize") as worker:
            for block in probability_blocks(job, progress, workdir):
                worker.put(block)
        finish()
    stream.add(joiner.finish())
    return joiner


def _polygonize_on_cluster(
    job: PredictionJob,
    spec: ModelSpec,
    settings: InstanceSettings,
    dst: DatasetWriter | None,
    stream: PolygonStream,
    joiner: SeamJoiner,
    progress: Progress,
    config: DetectConfig,
) -> None:
    """The cluster's strips, in order, into the joiner (and ``dst``)."""
    params, halo = None, 0
    if "separation" in job.classes:
        params, halo = _instance_setup(job, settings)
    contact = spec.contact_threshold if "contact" in job.classes else None
    results = run_on_cluster(
        job, model_file(config.model), config, progress, halo=halo, probability=dst is not None,
        polygons=True, instances=params, contact_threshold=contact,
    )  # fmt: skip
    for result in results:
        for block in result.probability:
            if dst is not None:
                dst.write(block.data, window=block.window)
        for done, valid in result.labelled:
            stream.add(joiner.add_block(done, valid))
        for window, probability, ok in result.plain:
            stream.add(joiner.add(window, probability, ok))


def _block_consumer(
    job: PredictionJob,
    spec: ModelSpec,
    settings: InstanceSettings,
    dst: DatasetWriter | None,
    stream: PolygonStream,
    joiner: SeamJoiner,
    workers: int,
    stack: ExitStack,
) -> tuple[Callable[[Block], None], Callable[[], None]]:
    """What happens to each finished probability block, in row-major order, and what ends
    the work once the last was given. Seeds + watershed and the polygon pieces of each halo
    block run in a pool of ``workers`` threads (kept open on ``stack``); the pieces are joined
    across seams and written in order."""
    contact = job.classes.index("contact") if "contact" in job.classes else None
    building = job.classes.index("building") if "building" in job.classes else 0
    if "separation" in job.classes:
        params, halo = _instance_setup(job, settings)
        assembler = HaloAssembler(job.grid.width, job.grid.height, INSTANCE_BLOCK, halo, BLOCK)
        separation = job.classes.index("separation")

        cut = functools.partial(cut_block, params=params, building=building, separation=separation)
        pool = stack.enter_context(OrderedPool(cut, workers, "footprint-instances"))

        def join(results: list[CutBlock]) -> None:
            for done in results:
                stream.add(joiner.add_block(*done))

        def instances(block: Block) -> None:
            if dst is not None:
                dst.write(block.data, window=block.window)
            for ready in assembler.add(block.window, block.data, block.valid):
                join(pool.submit(ready))

        return instances, lambda: join(pool.drain())

    def plain(block: Block) -> None:
        if dst is not None:
            dst.write(block.data, window=block.window)
        valid = block.valid
        if contact is not None:
            valid = valid & (block.data[contact] < spec.contact_threshold)
        stream.add(joiner.add(block.window, block.data[building], valid))

    return plain, lambda: None


def detect_with_model(
    config: DetectConfig,
    model: torch.nn.Module,
    spec: ModelSpec,
    progress: Progress,
    device: torch.device | None = None,
) -> DetectResult:
    """:func:`detect` with a torch model already in memory (``config.model`` is not read)."""
    from engine.inference.torchnet import torch_network
    from engine.models.device import resolve_device

    device = device or resolve_device(config.device)
    network = torch_network(model, spec, device, config.precision)
    return detect_with_network(config, network, spec, progress)


def detect_with_network(
    config: DetectConfig, network: Network, spec: ModelSpec, progress: Progress
) -> DetectResult:
    """:func:`detect` with a network already open (``config.model`` is not read)."""
    start = time.monotonic()
    threshold = float(spec.threshold if config.threshold is None else config.threshold)
    check_polygon_options(config, threshold)
    settings = model_settings(spec).with_options(config, threshold)
    out = check_paths(config)
    keep = config.keep_probability or None
    with tempfile.TemporaryDirectory(
        prefix=work_prefix(), dir=out.parent, ignore_cleanup_errors=True
    ) as workdir:
        job = prepare_job(config.raster, config, network, spec, progress, workdir)
        if not distributed(config):  # a cluster's workers hold strips, not the whole width
            check_memory(job, config.raster, _held_rows(job, settings))
        source = "the model's" if config.threshold is None else "given"
        progress.log(
            f"Detecting buildings on {job.grid.width}x{job.grid.height} px on {job.device}"
            f" ({network.runtime}, {network.precision}, {job.predictor.window}-px windows,"
            f" batch {job.predictor.batch_size}),"
            f" threshold {threshold:g} ({source})" + _split_note(spec, settings)
        )
        with ExitStack() as stack:
            dst = None
            if keep:
                tmp = stack.enter_context(atomic_output(keep, config.overwrite))
                dst = stack.enter_context(open_probability(tmp, job))
            writer = stack.enter_context(VectorWriter(out, config.overwrite, "Polygon"))
            stream = PolygonStream(writer, job.crs, config, job.grid.transform)
            joiner = _polygonize(
                job,
                threshold,
                spec,
                settings,
                dst,
                stream,
                SubProgress(progress, 0, 95),
                workdir,
                config,
                polygon_workers(network),
            )
            check_canceled(progress)
            stream.close()
    seconds = time.monotonic() - start
    return _result(job, stream, writer.path, keep, threshold, seconds, joiner, progress)


def check_paths(config: DetectConfig) -> Path:
    """Check the outputs before any work (writable, not inputs, not one file); return the
    polygon output, absolute.

    Raises:
        OutputError: see :func:`engine.geo.outputs.check_output` and
            :func:`engine.geo.outputs.check_not_inputs`.
    """
    out = check_output(config.output, config.overwrite)
    keep = config.keep_probability
    kept = check_output(keep, config.overwrite) if keep else None
    inputs = raster_inputs(config.raster) + file_input("model file", config.model)
    outputs = {"output": out, "kept probability raster": kept}
    prepare_outputs(outputs, inputs + layer_inputs("AOI", config.aoi))
    return out


def _split_note(spec: ModelSpec, settings: InstanceSettings) -> str:
    """How touching buildings are told apart, for the log."""
    if "separation" in spec.classes:
        return f"; touching buildings: {settings.describe()}."
    if "contact" in spec.classes:
        return f", contact probability >= {spec.contact_threshold:g} splits touching buildings."
    return "."


def _result(
    job: PredictionJob,
    stream: PolygonStream,
    output: Path,
    keep: str | None,
    threshold: float,
    seconds: float,
    joiner: SeamJoiner,
    progress: Progress,
) -> DetectResult:
    total = stream.total_area_m2
    if joiner.max_value < threshold:
        progress.log(
            f"No pixel reached the threshold {threshold:g} (highest probability"
            f" {max(joiner.max_value, 0.0):.3f}); the layer is empty. Lower the threshold?"
        )
    mpx = job.grid.width * job.grid.height / 1e6  # raster pixels processed
    speed = mpx / seconds if seconds > 0 else 0.0
    check = (
        f", {stream.low_confidence} of them low confidence (low_confidence = 1: check them first)"
        if stream.low_confidence
        else ""
    )
    progress.log(
        f"{stream.buildings} buildings ({total:.1f} m²{check}) written to {output} in"
        f" {seconds:.1f} s."
    )
    progress.set_progress(100.0)
    return {
        "output": str(output),
        "buildings": stream.buildings,
        "low_confidence": stream.low_confidence,
        "total_area_m2": total,
        "probability": str(Path(keep).expanduser().absolute()) if keep else None,
        "threshold": threshold,
        "width": job.grid.width,
        "height": job.grid.height,
        "windows": job.predictor.windows_predicted,
        "window": job.predictor.window,
        "batch_size": job.predictor.batch_size,
        "streams": job.predictor.streams,
        "predicted_megapixels": round(job.predictor.pixels_predicted / 1e6, 3),
        "device": job.device,
        "runtime": job.predictor.network.runtime,
        "precision": job.predictor.network.precision,
        "seconds": round(seconds, 3),
        "megapixels_per_second": round(speed, 4),
        "resampled": job.resampled,
        "score_mean": stream.score_mean,
    }


def detect(config: DetectConfig, progress: Progress) -> DetectResult:
    """Write building polygons (GeoPackage by default) detected in ``config.raster``.

    Polygons are in the raster's CRS with ``id``, ``area_m2`` and ``score`` (mean building
    probability). ``config.keep_probability`` names an optional probability GeoTIFF to keep.
    Outputs are atomic: a failure or cancel leaves none. ``config.model`` None or ``starter``
    is the starter model (:mod:`engine.models.starter`, said in the log).

    Returns:
        ``output``, ``buildings``, ``total_area_m2``, ``probability`` (path or None),
        ``threshold``, ``width``, ``height``, ``windows``, ``window``, ``batch_size``,
        ``streams``, ``predicted_megapixels``, ``device``, ``seconds``,
        ``megapixels_per_second``, ``resampled``, ``score_mean``.
    """
    path = resolve_model(config.model, progress)
    config = replace(config, model=path)
    check_paths(config)
    network, spec = open_network(path, config.runtime, config.device, config.precision, progress)
    return detect_with_network(config, network, spec, progress)
