"""Detection and prediction on a Dask cluster: strips of the raster are tasks.

``--dask-workers N`` starts a local cluster on this machine (N worker processes, each with its
share of the cores for torch); ``--scheduler ADDRESS`` uses an existing one (its workers need
the same engine environment and must see the raster and model paths). Without either, nothing
here runs.

A task (:func:`run_strip`) is a strip of :data:`STRIP_BLOCKS` block rows across the raster,
with ``halo`` rows above and below: the worker predicts the windows of the *whole raster's*
plan that meet those rows and blends them (so every pixel gets the value one process gives
it), then labels the strip's blocks (:data:`engine.polygons.blocks.INSTANCE_BLOCK`, a strip
holds a whole number of them) with their halo exactly as one process's
:class:`engine.polygons.blocks.HaloAssembler` would see them. The main process takes the
strips in order, writes their probability blocks (predict, ``--keep-probability``) and feeds
their labelled blocks to the one :class:`engine.polygons.seams.SeamJoiner`, so polygons are
joined across strips and blocks as in one process. A worker that dies has its tasks rerun
elsewhere by Dask (tasks are pure); cancel cancels the job's tasks (and stops a local
cluster's workers) and leaves no output.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from rasterio.windows import Window

from engine.config import InferenceOptions
from engine.cores import usable_cores
from engine.errors import ConfigError
from engine.events import NullProgress, Progress, check_canceled
from engine.geo.rasters import open_raster
from engine.geo.windows import Grid
from engine.heap import tune_allocator
from engine.inference.blend import Block
from engine.inference.job import (
    BLOCK,
    PredictionJob,
    check_any_valid,
    inference_model,
    prepare_job,
    with_area,
)
from engine.models.device import resolve_device
from engine.polygons.blocks import INSTANCE_BLOCK, LabelledBlock, halo_from, label_block
from engine.polygons.instances import InstanceParams

#: Block rows per task.
STRIP_BLOCKS = 4
#: Seconds to wait for a scheduler given by address.
CONNECT_TIMEOUT_S = 10

_MODELS: dict[tuple[str, str], Any] = {}


@dataclass(frozen=True)
class StripJob:
    """Everything a worker needs for one strip (pickled to it)."""

    raster: str  # resolved (a VRT for folders and globs)
    model: str
    options: InferenceOptions
    first: int  # first row of the strip
    end: int  # row after its last
    halo: int  # rows predicted above and below for instance labelling (0: none)
    block: int
    probability: bool  # return the strip's probability blocks
    polygons: bool  # return its pieces for the seam joiner (detect)
    instances: InstanceParams | None  # seeds + watershed (separation models)
    contact_threshold: float | None  # contact split (contact models)
    threads: int


@dataclass
class StripResult:
    """What a worker returns for one strip, in row-major block order."""

    probability: list[Block]
    labelled: list[tuple[LabelledBlock, np.ndarray]]  # with the core's valid pixels
    plain: list[tuple[Window, np.ndarray, np.ndarray]]  # window, building prob., valid
    windows: int
    pixels: int


def _distributed() -> Any:
    """The ``distributed`` package (imported when a cluster is asked for; untyped)."""
    import distributed

    return distributed


def _model(path: str, device: str) -> Any:
    """The model of ``path`` on ``device``, loaded and made ready to predict
    (:func:`engine.inference.job.inference_model`) once per worker process, not per strip."""
    key = (path, device)
    if key not in _MODELS:
        from engine.models.modelfile import load_model

        model, spec = load_model(path, device=device)
        _MODELS[key] = inference_model(model, spec.in_channels, torch.device(device)), spec
    return _MODELS[key]


def run_strip(job: StripJob) -> StripResult:
    """Predict, blend and label one strip (runs on a worker)."""
    tune_allocator()  # the worker's model threads: see engine.heap
    torch.set_num_threads(job.threads)
    device = resolve_device(job.options.device)
    model, spec = _model(job.model, str(device))
    with tempfile.TemporaryDirectory(prefix="footprint-strip-") as workdir:
        pj = prepare_job(job.raster, job.options, model, spec, device, NullProgress(), workdir)
    g, r, w = pj.grid, pj.raster_grid, pj.window  # strips are rows of the work window
    first, end = max(0, job.first - job.halo), min(g.height, job.end + job.halo)
    data = np.zeros((len(pj.classes), end - first, g.width), np.float32)
    valid = np.zeros((end - first, g.width), bool)
    blocks = pj.predictor.run(
        lambda: open_raster(pj.raster), r.width, r.height, r.transform, pj.area,
        NullProgress(), region=Window(w.col_off, w.row_off + first, w.width, end - first),
    )  # fmt: skip
    for block in blocks:
        w = block.window
        window = Window(w.col_off, w.row_off + first, w.width, w.height)
        block = with_area(Block(block.index, window, block.data, block.valid), pj, g.transform)
        rows = slice(int(window.row_off) - first, int(window.row_off + window.height) - first)
        cols = slice(int(window.col_off), int(window.col_off + window.width))
        data[:, rows, cols], valid[rows, cols] = block.data, block.valid
    result = StripResult([], [], [], pj.predictor.windows_predicted, pj.predictor.pixels_predicted)
    classes = pj.classes
    building = classes.index("building") if "building" in classes else 0
    grid = Grid(g.width, g.height, g.transform)
    for window in grid.blocks(job.block):
        top = int(window.row_off)
        if not job.first <= top < job.end:
            continue
        rows = slice(top - first, top - first + int(window.height))
        cols = slice(int(window.col_off), int(window.col_off + window.width))
        if job.probability:
            result.probability.append(Block(0, window, data[:, rows, cols], valid[rows, cols]))
        if not job.polygons or job.instances is not None:
            continue
        ok = valid[rows, cols]
        if job.contact_threshold is not None:
            ok = ok & (data[classes.index("contact"), rows, cols] < job.contact_threshold)
        result.plain.append((window, data[building, rows, cols], ok))
    if job.polygons and job.instances is not None:
        separation = classes.index("separation")
        for window in grid.blocks(INSTANCE_BLOCK):
            if job.first <= int(window.row_off) < job.end:
                halo = halo_from(data, valid, (first, 0), window, job.halo)
                done = label_block(halo, job.instances, building, separation)
                result.labelled.append((done, halo.core(halo.valid)))
    return result


def strip_jobs(
    raster: str,
    model: str,
    options: InferenceOptions,
    height: int,
    block: int,
    threads: int,
    halo: int = 0,
    probability: bool = True,
    polygons: bool = False,
    instances: InstanceParams | None = None,
    contact_threshold: float | None = None,
) -> list[StripJob]:
    """The tasks of a raster ``height`` rows high, in order."""
    step = STRIP_BLOCKS * block
    local = replace(options, dask_workers=0, scheduler=None)
    return [
        StripJob(
            raster,
            model,
            local,
            top,
            min(top + step, height),
            halo,
            block,
            probability,
            polygons,
            instances,
            contact_threshold,
            threads,
        )  # fmt: skip
        for top in range(0, height, step)
    ]


@contextmanager
def dask_client(options: InferenceOptions, progress: Progress) -> Iterator[Any]:
    """A client of a local cluster (``dask_workers``) or of ``scheduler``; closed after."""
    dask = _distributed()
    cluster = None
    if options.scheduler:
        try:
            client = dask.Client(options.scheduler, timeout=f"{CONNECT_TIMEOUT_S}s")
        except (OSError, TimeoutError) as exc:
            raise ConfigError(
                f"Cannot reach the Dask scheduler at {options.scheduler} ({exc}); check the"
                " address (tcp://HOST:8786) and that the scheduler is running, or use local"
                " workers instead."
            ) from exc
        progress.log(f"Using the Dask cluster at {options.scheduler}.")
    else:
        # workers killed on cancel leave semaphores that the resource tracker would warn about
        os.environ.setdefault(
            "PYTHONWARNINGS", "ignore::UserWarning:multiprocessing.resource_tracker"
        )
        cluster = dask.LocalCluster(
            n_workers=options.dask_workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.CRITICAL,
        )
        client = dask.Client(cluster)
        progress.log(f"Started a local Dask cluster of {options.dask_workers} worker(s).")
    failed = True
    try:
        yield client
        failed = False
    finally:
        if failed and cluster is not None:  # cancel or error: stop at once, do not wait
            _kill_workers()
        client.close(timeout=1 if failed else CONNECT_TIMEOUT_S)
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close(timeout=1 if failed else None)


def distributed(options: InferenceOptions) -> bool:
    """True when the options ask for a Dask cluster."""
    return bool(options.dask_workers or options.scheduler)


def run_on_cluster(
    job: PredictionJob, model_file: str, options: InferenceOptions, progress: Progress, **kw: Any
) -> Iterator[StripResult]:
    """The strips of ``job`` computed on the cluster the options name, in order (``kw``: see
    :func:`strip_jobs`); counts the windows predicted into ``job.predictor``.

    Raises:
        ConfigError: the model must resample the raster (not done on a cluster), or the
            scheduler cannot be reached. RasterError: no valid pixel.
    """
    if job.resampled:
        raise ConfigError(
            "On a Dask cluster the model predicts on the raster's own grid only: this raster's"
            " resolution differs from the model's; use 'Predict at the raster's resolution'"
            " (--native-resolution), resample the raster first, or run in one process."
        )
    jobs = strip_jobs(
        job.raster, model_file, options, job.grid.height, BLOCK, threads_per_worker(options), **kw
    )
    predictor = job.predictor
    predictor.windows_predicted = predictor.pixels_predicted = 0
    with dask_client(options, progress) as client:
        for result in strip_results(client, jobs, progress):
            predictor.windows_predicted += result.windows
            predictor.pixels_predicted += result.pixels
            yield result
    check_any_valid(job)


def _kill_workers() -> None:
    """Kill this process's local Dask worker processes (a task in the middle of a batch does
    not stop by itself)."""
    import psutil  # type: ignore[import-untyped]

    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "spawn_main" in " ".join(child.cmdline()):
                child.kill()


def threads_per_worker(options: InferenceOptions) -> int:
    """Torch threads for each worker: ``OMP_NUM_THREADS`` when set, else a local worker's
    share of this machine's cores (1 on a shared cluster)."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    workers = max(1, options.dask_workers)
    return max(1, math.floor(usable_cores() / workers)) if not options.scheduler else 1


def strip_results(
    client: Any, jobs: Sequence[StripJob], progress: Progress
) -> Iterator[StripResult]:
    """Run ``jobs`` on the cluster; yield their results in order (progress counts finished
    strips across workers; cancel cancels the job's tasks)."""
    wait = _distributed().wait
    futures: list[Any] = client.map(run_strip, jobs, pure=False)
    try:
        for index, future in enumerate(futures):
            while not future.done():
                check_canceled(progress)
                done = sum(f is None or f.done() for f in futures)
                progress.set_progress(100.0 * done / len(futures))
                with contextlib.suppress(TimeoutError):
                    wait([future], timeout=0.5)
            check_canceled(progress)
            yield future.result()
            futures[index] = None
            future.release()
        progress.set_progress(100.0)
    finally:
        client.cancel([f for f in futures if f is not None])
