"""Predict building probability over a raster with a trained model, window by window.

The output is a float32 GeoTIFF on the input's exact grid (CRS, transform, width, height; see
below for an extent/AOI):
band 1 "building probability" and, for models with a separation class, band 2 "separation
probability" (``vectorize`` finds it by that name; older models: "contact probability");
tiled 256 x 256, DEFLATE with floating-point predictor, BigTIFF when needed.
Its nodata value is :data:`engine.inference.job.NODATA` (-1, outside the 0-1 range of
probabilities, so any threshold treats it as background). With an extent/AOI the output covers
the window of the raster's grid that holds the area (its bounding box rounded out to 512-pixel
blocks of the raster's grid: same pixel size, alignment and CRS as the raster), pixels outside
the area being nodata, with the values a run over the whole raster gives them; time, memory and
disk follow the area. The work itself is the prediction job of :mod:`engine.inference.job`,
which ``detect`` shares.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from engine.cluster import distributed, run_on_cluster
from engine.config import PredictConfig
from engine.events import Progress
from engine.geo.labels import layer_inputs
from engine.geo.outputs import atomic_output, check_output, file_input, prepare_outputs
from engine.geo.rasters import raster_inputs
from engine.geo.temporary import work_prefix
from engine.inference.job import (
    PredictionJob,
    check_memory,
    open_probability,
    prepare_job,
    probability_blocks,
)
from engine.inference.network import Network, open_network
from engine.models.spec import ModelSpec
from engine.models.starter import model_file, resolve_model
from engine.results import PredictResult

if TYPE_CHECKING:
    import torch

__all__ = ["predict", "predict_with_model", "predict_with_network"]


def predict_with_model(
    config: PredictConfig,
    model: torch.nn.Module,
    spec: ModelSpec,
    progress: Progress,
    device: torch.device | None = None,
) -> PredictResult:
    """:func:`predict` with a torch model already in memory (``config.model`` is not read)."""
    from engine.inference.torchnet import torch_network
    from engine.models.device import resolve_device

    device = device or resolve_device(config.device)
    network = torch_network(model, spec, device, config.precision)
    return predict_with_network(config, network, spec, progress)


def predict_with_network(
    config: PredictConfig, network: Network, spec: ModelSpec, progress: Progress
) -> PredictResult:
    """:func:`predict` with a network already open (``config.model`` is not read)."""
    start = time.monotonic()
    out = check_paths(config)
    with tempfile.TemporaryDirectory(
        prefix=work_prefix(), dir=out.parent, ignore_cleanup_errors=True
    ) as workdir:
        job = prepare_job(config.raster, config, network, spec, progress, workdir)
        if not distributed(config):  # a cluster's workers hold strips, not the whole width
            check_memory(job, config.raster)
        _log_start(job, config, progress)
        with atomic_output(out, config.overwrite) as tmp, open_probability(tmp, job) as dst:
            if distributed(config):
                for result in run_on_cluster(job, model_file(config.model), config, progress):
                    for block in result.probability:
                        dst.write(block.data, window=block.window)
            else:
                for block in probability_blocks(job, progress):
                    dst.write(block.data, window=block.window)
    progress.set_progress(100.0)
    return _result(job, str(out), time.monotonic() - start, progress)


def check_paths(config: PredictConfig) -> Path:
    """Check the output before any work (writable, not an input); return it, absolute.

    Raises:
        OutputError: see :func:`engine.geo.outputs.check_output` and
            :func:`engine.geo.outputs.check_not_inputs`.
    """
    out = check_output(config.output, config.overwrite)
    inputs = raster_inputs(config.raster) + file_input("model file", config.model)
    prepare_outputs({"output": out}, inputs + layer_inputs("AOI", config.aoi))
    return out


def _log_start(job: PredictionJob, config: PredictConfig, progress: Progress) -> None:
    p, w = job.predictor, job.model_window
    progress.log(
        f"Predicting {int(w.width)}x{int(w.height)} px with {p.window}-px windows,"
        f" margin {p.margin},"
        f" batch {p.batch_size}{', 8-way TTA' if config.tta else ''} on {job.device}"
        f" ({p.network.runtime}, {p.network.precision})."
    )


def _result(job: PredictionJob, output: str, seconds: float, progress: Progress) -> PredictResult:
    p = job.predictor
    mpx = job.grid.width * job.grid.height / 1e6  # raster pixels processed
    speed = mpx / seconds if seconds > 0 else 0.0
    progress.log(
        f"Predicted {p.windows_predicted} of {p.windows_total} windows in {seconds:.1f} s"
        f" ({speed:.2f} Mpx/s)."
    )
    progress.metric("megapixels_per_second", speed)
    return {
        "output": output,
        "width": job.grid.width,
        "height": job.grid.height,
        "windows": p.windows_predicted,
        "windows_total": p.windows_total,
        "window": p.window,
        "batch_size": p.batch_size,
        "streams": p.streams,
        "predicted_megapixels": round(p.pixels_predicted / 1e6, 3),
        "device": job.device,
        "runtime": p.network.runtime,
        "precision": p.network.precision,
        "seconds": round(seconds, 3),
        "megapixels_per_second": round(speed, 4),
        "resampled": job.resampled,
        "model_grid": [int(job.model_window.width), int(job.model_window.height)],
        "classes": list(job.classes),
    }


def predict(config: PredictConfig, progress: Progress) -> PredictResult:
    """Write a building-probability GeoTIFF for ``config.raster`` with ``config.model`` (None
    or ``starter``: the starter model, :mod:`engine.models.starter`, said in the log).

    Returns:
        ``output``, ``width``, ``height`` (the output's), ``windows`` (predicted),
        ``windows_total``, ``window`` (side), ``batch_size``, ``streams``, ``predicted_megapixels``,
        ``device``, ``seconds``, ``megapixels_per_second`` (raster pixels), ``resampled``,
        ``model_grid`` (width, height of the part of the model's grid predicted), ``classes``.

    Raises:
        ModelFileError (the starter model too, when no model is given and it is missing),
        RasterError, ConfigError, OutputError, CancelledError (nothing is written then).
    """
    path = resolve_model(config.model, progress)
    config = replace(config, model=path)
    check_paths(config)
    network, spec = open_network(path, config.runtime, config.device, config.precision, progress)
    return predict_with_network(config, network, spec, progress)
