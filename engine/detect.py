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

import tempfile
import time
from collections.abc import Iterable
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from rasterio.io import DatasetWriter

from engine.background import BackgroundConsumer
from engine.cluster import distributed, run_on_cluster
from engine.config import DetectConfig
from engine.events import Progress, SubProgress, check_canceled
from engine.geo.labels import layer_inputs
from engine.geo.outputs import atomic_output, check_output, file_input, prepare_outputs
from engine.geo.rasters import ground_resolution_m, open_raster, raster_inputs
from engine.geo.temporary import work_prefix
from engine.geo.vectors import VectorWriter, vector_driver
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
from engine.polygons.instances import InstanceSettings
from engine.polygons.seams import PolygonStream, check_polygon_options
from engine.polygons.stage import BuildingStage, ClassLayout, StageSettings
from engine.results import DetectResult

if TYPE_CHECKING:
    import torch

__all__ = ["detect", "detect_with_model", "detect_with_network"]


def _stage(
    job: PredictionJob, spec: ModelSpec, config: DetectConfig, stream: PolygonStream
) -> BuildingStage:
    """The building stage of ``job`` (its grid, the model's classes and settings with the
    user's options), writing to ``stream``; its cutting threads: see
    :func:`engine.inference.sizing.polygon_workers`."""
    threshold = float(spec.threshold if config.threshold is None else config.threshold)
    settings = StageSettings(
        threshold,
        InstanceSettings.of_model(spec).with_options(config, threshold),
        spec.contact_threshold,
    )
    with open_raster(job.raster) as src:
        pixel = ground_resolution_m(src)
    grid = (job.grid.width, job.grid.height, pixel)
    workers = polygon_workers(job.predictor.network)
    return BuildingStage(ClassLayout.of(job.classes), settings, grid, stream, BLOCK, workers)


def _buildings_here(
    blocks: Iterable[Block], stage: BuildingStage, dst: DatasetWriter | None, width: int
) -> None:
    """Buildings from ``blocks`` (finished probability blocks of a grid ``width`` pixels
    wide) through ``stage``, in a worker thread while the model predicts the next ones
    (:mod:`engine.background`), at most a row of blocks behind; each block also written to
    ``dst`` when given."""

    def consume(block: Block) -> None:
        if dst is not None:
            dst.write(block.data, window=block.window)
        stage.add(block)

    with BackgroundConsumer(consume, -(-width // BLOCK), "footprint-polygonize") as worker:
        for block in blocks:
            worker.put(block)
    stage.finish()


def _buildings_on_cluster(
    job: PredictionJob,
    stage: BuildingStage,
    dst: DatasetWriter | None,
    config: DetectConfig,
    progress: Progress,
) -> None:
    """Buildings from the strips a Dask cluster predicts and cuts into pieces
    (:mod:`engine.cluster`): here the stage only joins the pieces, in order."""
    results = run_on_cluster(
        job, model_file(config.model), config, progress, cutting=stage.cut_settings,
        probability=dst is not None,
    )  # fmt: skip
    for result in results:
        for block in result.probability:
            if dst is not None:
                dst.write(block.data, window=block.window)
        for cut in result.cuts:
            stage.add_cut(cut)
    stage.finish()


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
    if config.min_area_m2 is None:
        config = replace(config, min_area_m2=spec.min_area_m2)
    check_polygon_options(config, threshold)
    out = check_paths(config)
    keep = config.keep_probability or None
    with tempfile.TemporaryDirectory(
        prefix=work_prefix(), dir=out.parent, ignore_cleanup_errors=True
    ) as workdir:
        job = prepare_job(config.raster, config, network, spec, progress, workdir)
        with ExitStack() as stack:
            writer = stack.enter_context(VectorWriter(out, config.overwrite, "Polygon"))
            stream = PolygonStream(writer, job.crs, config, job.grid.transform)
            stage = stack.enter_context(_stage(job, spec, config, stream))
            if not distributed(config):  # a cluster's workers hold strips, not the whole width
                # a row of blocks queued for the polygon thread, and what the stage holds
                check_memory(job, config.raster, BLOCK + stage.held_rows)
            _log_start(job, stage, config, progress)
            dst = None
            if keep:
                tmp = stack.enter_context(atomic_output(keep, config.overwrite))
                dst = stack.enter_context(open_probability(tmp, job))
            part = SubProgress(progress, 0, 95)
            if distributed(config):
                _buildings_on_cluster(job, stage, dst, config, part)
            else:
                blocks = probability_blocks(job, part)
                _buildings_here(blocks, stage, dst, job.grid.width)
            check_canceled(progress)
            stream.close()
    seconds = time.monotonic() - start
    return _result(job, stage, (writer.path, keep), seconds, progress)


def _log_start(
    job: PredictionJob, stage: BuildingStage, config: DetectConfig, progress: Progress
) -> None:
    network, p = job.predictor.network, job.predictor
    source = "the model's" if config.threshold is None else "given"
    progress.log(
        f"Detecting buildings on {job.grid.width}x{job.grid.height} px on {job.device}"
        f" ({network.runtime}, {network.precision}, {p.window}-px windows,"
        f" batch {p.batch_size}), threshold {stage.settings.threshold:g} ({source})"
        + stage.describe()
    )


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
    vector_driver(out)  # after the inputs: "that is your raster" says more than its extension
    return out


def _result(
    job: PredictionJob,
    stage: BuildingStage,
    outputs: tuple[Path, str | None],
    seconds: float,
    progress: Progress,
) -> DetectResult:
    """The result of a finished run (``outputs``: the buildings' file, the kept probability
    raster or None)."""
    output, keep = outputs
    stream, joiner, threshold = stage.stream, stage.joiner, stage.settings.threshold
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
    dropped = (
        f"; {stream.dropped} under {stream.config.smallest_m2:g} m² left out"
        if stream.dropped
        else ""
    )
    progress.log(
        f"{stream.buildings} buildings ({total:.1f} m²{check}{dropped}) written to {output}"
        f" in {seconds:.1f} s."
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
