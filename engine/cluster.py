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
:class:`engine.polygons.blocks.HaloAssembler` would see them. A model at another resolution
than the raster's predicts the rows of its own grid that the strip is resampled from (its
whole plan's windows there) and the worker resamples them back
(:func:`engine.inference.job.probability_blocks` with rows). The main process takes the
strips in order, writes their probability blocks (predict, ``--keep-probability``) and feeds
their labelled blocks to the one :class:`engine.polygons.seams.SeamJoiner`, so polygons are
joined across strips and blocks as in one process. A worker that dies has its tasks rerun
elsewhere by Dask (tasks are pure); cancel cancels the job's tasks (and stops a local
cluster's workers) and leaves no output. At most :data:`IN_FLIGHT_PER_THREAD` strips per worker
thread are submitted and not yet taken, so memory does not grow with the raster.

A scheduler runs whatever code it sends to its clients and workers (Dask pickles functions and
results): :func:`scheduler_security` accepts a plain ``tcp://`` scheduler only on this machine
(loopback) unless the user opts in (``--scheduler-insecure``), and a ``tls://`` one with the
cluster's certificates. Workers check that they run the client's engine version and reload a
model file that changed (cache key: path, size and modification time).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import math
import os
import socket
import ssl
import tempfile
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

import engine
from engine.config import InferenceOptions
from engine.cores import usable_cores
from engine.errors import ConfigError, ModelFileError
from engine.events import NullProgress, Progress, check_canceled
from engine.geo.temporary import scratch_prefix
from engine.geo.windows import Grid
from engine.heap import tune_allocator
from engine.inference.blend import Block
from engine.inference.job import (
    BLOCK,
    PredictionJob,
    check_any_valid,
    prepare_job,
    probability_blocks,
)
from engine.inference.network import open_network
from engine.polygons.blocks import INSTANCE_BLOCK, halo_from
from engine.polygons.seams import Cut, cut_block
from engine.polygons.stage import CutSettings, cut_plain_block

#: Block rows per task.
STRIP_BLOCKS = 4
#: Seconds to wait for a scheduler given by address.
CONNECT_TIMEOUT_S = 10
#: Strips submitted and not yet taken by the main process, per worker thread of the cluster.
IN_FLIGHT_PER_THREAD = 2
#: Address schemes whose connections are encrypted and authenticated with certificates.
SECURE_SCHEMES = ("tls", "wss")

#: Open networks by (path, size, mtime_ns, (runtime, device, precision, threads)): a model file
#: rewritten in place is opened again.
_MODELS: dict[tuple[str, int, int, tuple[str, str, str, int]], Any] = {}


@dataclass(frozen=True)
class StripJob:
    """Everything a worker needs for one strip (pickled to it)."""

    raster: str  # resolved (a VRT for folders and globs)
    model: str
    options: InferenceOptions
    first: int  # first row of the strip
    end: int  # row after its last
    block: int
    probability: bool  # return the strip's probability blocks
    cutting: CutSettings | None  # return its blocks cut into pieces (detect), with its halo
    threads: int
    version: str = engine.__version__  # the client's engine version


@dataclass
class StripResult:
    """What a worker returns for one strip, in row-major block order."""

    probability: list[Block]
    cuts: list[Cut]  # its blocks cut into pieces, for the seam joiner
    windows: int  # predicted
    pixels: int
    planned: int = 0  # windows of the plan that meet the strip (all-nodata ones included)


def _distributed() -> Any:
    """The ``distributed`` package (imported when a cluster is asked for; untyped)."""
    import distributed

    return distributed


def _network(path: str, options: InferenceOptions, threads: int) -> Any:
    """The network of model file ``path`` for ``options`` (runtime, device, precision) on
    ``threads`` cores, opened and made ready to predict
    (:func:`engine.inference.network.open_network`) once per worker process and version of the
    file (its size and modification time), not per strip; older versions are dropped.

    Raises:
        ModelFileError: the worker cannot see the file.
    """
    try:
        stat = os.stat(path)
    except OSError as exc:
        raise ModelFileError(
            f"The Dask worker on {socket.gethostname()} cannot read the model file {path}"
            f" ({exc.strerror}); put it on storage every worker sees, at the same path."
        ) from exc
    how = (options.runtime, options.device, options.precision, threads)
    key = (path, stat.st_size, stat.st_mtime_ns, how)
    if key not in _MODELS:
        for stale in [k for k in _MODELS if (k[0], k[3]) == (path, how)]:
            del _MODELS[stale]
        _MODELS[key] = open_network(
            path, options.runtime, options.device, options.precision, NullProgress(), threads
        )
    return _MODELS[key]


def check_version(job: StripJob) -> None:
    """Refuse a strip sent by a client of another engine version (runs on a worker).

    Raises:
        ConfigError: the versions differ.
    """
    if job.version != engine.__version__:
        raise ConfigError(
            f"The Dask worker on {socket.gethostname()} runs Footprint engine"
            f" {engine.__version__}, this client {job.version}: install the same version in"
            " every worker's environment and restart the workers."
        )


def run_strip(job: StripJob) -> StripResult:
    """Predict, blend and label one strip (runs on a worker)."""
    check_version(job)
    tune_allocator()  # the worker's model threads: see engine.heap
    network, spec = _network(job.model, job.options, job.threads)
    with tempfile.TemporaryDirectory(prefix=scratch_prefix("strip")) as workdir:
        pj = prepare_job(job.raster, job.options, network, spec, NullProgress(), workdir)
    g = pj.grid  # strips are rows of the output grid (the work window's)
    halo = job.cutting.halo if job.cutting is not None else 0
    first, end = max(0, job.first - halo), min(g.height, job.end + halo)
    data = np.zeros((len(pj.classes), end - first, g.width), np.float32)
    valid = np.zeros((end - first, g.width), bool)
    for block in probability_blocks(pj, NullProgress(), (first, end)):
        window = block.window
        rows = slice(int(window.row_off) - first, int(window.row_off + window.height) - first)
        cols = slice(int(window.col_off), int(window.col_off + window.width))
        data[:, rows, cols], valid[rows, cols] = block.data, block.valid
    p = pj.predictor
    result = StripResult([], [], p.windows_predicted, p.pixels_predicted, p.windows_total)
    grid = Grid(g.width, g.height, g.transform)
    for window in grid.blocks(job.block):
        top = int(window.row_off)
        if not job.first <= top < job.end:
            continue
        rows = slice(top - first, top - first + int(window.height))
        cols = slice(int(window.col_off), int(window.col_off + window.width))
        block = Block(0, window, data[:, rows, cols], valid[rows, cols])
        if job.probability:
            result.probability.append(block)
        if job.cutting is not None and job.cutting.params is None:
            result.cuts.append(cut_plain_block(block, job.cutting))
    cutting = job.cutting
    if cutting is not None and cutting.params is not None:
        separation = cutting.layout.separation
        assert separation is not None  # seeds + watershed come with a separation class
        for window in grid.blocks(INSTANCE_BLOCK):
            if job.first <= int(window.row_off) < job.end:
                part = halo_from(data, valid, (first, 0), window, cutting.halo)
                cut = cut_block(part, cutting.params, cutting.layout.building, separation)
                result.cuts.append(cut)
    return result


def strip_jobs(
    raster: str,
    model: str,
    options: InferenceOptions,
    sizes: tuple[int, int, int],
    probability: bool = True,
    cutting: CutSettings | None = None,
) -> list[StripJob]:
    """The tasks of a raster ``height`` rows high in blocks of ``block`` rows, each worker on
    ``threads`` threads (``sizes``: height, block, threads), in order."""
    height, block, threads = sizes
    step = STRIP_BLOCKS * block
    local = replace(
        options, dask_workers=0, scheduler=None, scheduler_ca=None, scheduler_cert=None,
        scheduler_key=None,
    )  # fmt: skip
    return [
        StripJob(
            raster,
            model,
            local,
            top,
            min(top + step, height),
            block,
            probability,
            cutting,
            threads,
        )  # fmt: skip
        for top in range(0, height, step)
    ]


def _scheduler_host(address: str) -> tuple[str, str]:
    """The scheme (``tcp`` when none is given) and host of a scheduler address.

    Raises:
        ConfigError: it is not an address.
    """
    addressing = _distributed().comm.addressing
    try:
        scheme, location = addressing.parse_address(address)
        host, _ = addressing.parse_host_port(location)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"{address!r} is not a Dask scheduler address ({exc}); give tls://HOST:PORT, or"
            " tcp://127.0.0.1:PORT for a scheduler on this machine."
        ) from exc
    if not host:
        raise ConfigError(f"The scheduler address {address!r} names no host; give HOST:PORT.")
    return str(scheme), str(host)


def is_loopback(host: str) -> bool:
    """True when every address ``host`` resolves to is this machine's loopback (127.0.0.0/8,
    ::1).

    Raises:
        ConfigError: the host name does not resolve.
    """
    try:
        infos = socket.getaddrinfo(host, None)
    except (OSError, UnicodeError) as exc:
        raise ConfigError(
            f"Cannot resolve the Dask scheduler's host {host!r} ({exc}); check the address."
        ) from exc
    ips = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    mapped = [ip.ipv4_mapped or ip if isinstance(ip, ipaddress.IPv6Address) else ip for ip in ips]
    return bool(mapped) and all(ip.is_loopback for ip in mapped)


def _tls_files(options: InferenceOptions) -> dict[str, str]:
    """The certificate options given, by their command-line option."""
    given = {
        "--scheduler-ca": options.scheduler_ca,
        "--scheduler-cert": options.scheduler_cert,
        "--scheduler-key": options.scheduler_key,
    }
    return {flag: path for flag, path in given.items() if path}


def _check_tls_files(files: dict[str, str], address: str) -> None:
    """The CA and client certificate are given, every file exists and loads.

    Raises:
        ConfigError: one is missing, not a file, or not a PEM certificate or key.
    """
    missing = [flag for flag in ("--scheduler-ca", "--scheduler-cert") if flag not in files]
    if missing:
        raise ConfigError(
            f"The scheduler address {address} uses TLS: give the cluster's CA certificate"
            " (--scheduler-ca) and this client's certificate signed by it (--scheduler-cert,"
            f" with --scheduler-key); missing: {', '.join(missing)}."
        )
    for flag, path in files.items():
        if not os.path.isfile(path) or "\n" in path:
            what = "is a folder" if os.path.isdir(path) else "does not exist"
            raise ConfigError(f"{flag} {path} {what}; give the path of a PEM file.")
    ca, cert, key = files["--scheduler-ca"], files["--scheduler-cert"], files.get("--scheduler-key")
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise ConfigError(f"--scheduler-ca {ca} is not a PEM CA certificate ({exc}).") from exc
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError, ValueError) as exc:
        named = f"{cert} and --scheduler-key {key}" if key else f"{cert} (no --scheduler-key)"
        raise ConfigError(
            f"--scheduler-cert {named}: not a PEM certificate and its private key ({exc})."
        ) from exc


def scheduler_security(options: InferenceOptions) -> Any:
    """The Dask ``Security`` for ``options.scheduler``: the certificates for a ``tls://``
    address, None for a plain one on this machine (or any, with ``scheduler_insecure``).

    Raises:
        ConfigError: a plain address of another machine without ``scheduler_insecure``,
            certificates with a plain address, missing or unreadable certificates.
    """
    address = str(options.scheduler)
    scheme, host = _scheduler_host(address)
    files = _tls_files(options)
    if scheme in SECURE_SCHEMES:
        _check_tls_files(files, address)
        return _distributed().Security(
            tls_ca_file=files["--scheduler-ca"],
            tls_client_cert=files["--scheduler-cert"],
            tls_client_key=files.get("--scheduler-key"),
            require_encryption=True,
        )
    if files:
        raise ConfigError(
            f"{', '.join(files)} given but the scheduler address {address} is not tls://:"
            f" use tls://{host}:PORT with a scheduler started with certificates (see the"
            " README's cluster section), or leave the certificates out."
        )
    if not options.scheduler_insecure and not is_loopback(host):
        raise ConfigError(
            f"Refusing the unencrypted scheduler address {address}: Dask sends code to run"
            " as pickles, so whoever runs or can reach a plain tcp:// scheduler can run any"
            " program as you here. Use tls://HOST:PORT with certificates (--scheduler-ca,"
            " --scheduler-cert, --scheduler-key), a scheduler on this machine"
            " (tcp://127.0.0.1:PORT), or, on a network you trust, --scheduler-insecure (in"
            " QGIS: 'Allow an unencrypted scheduler on another machine')."
        )
    return None


@contextmanager
def dask_client(options: InferenceOptions, progress: Progress) -> Iterator[Any]:
    """A client of a local cluster (``dask_workers``) or of ``scheduler`` (checked by
    :func:`scheduler_security`); closed after."""
    dask = _distributed()
    cluster = None
    if options.scheduler:
        security = scheduler_security(options)
        try:
            client = dask.Client(
                options.scheduler, timeout=f"{CONNECT_TIMEOUT_S}s", security=security
            )
        except Exception as exc:  # noqa: BLE001 - whatever answers there, it is no scheduler
            hint = (
                " and that its certificate is signed by --scheduler-ca and it trusts"
                " --scheduler-cert's CA"
                if security is not None
                else ""
            )
            raise ConfigError(
                f"Cannot reach the Dask scheduler at {options.scheduler} ({exc!r:.300}); check the"
                f" address (tls://HOST:8786) and that the scheduler is running{hint}, or use"
                " local workers instead."
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
    :func:`strip_jobs`); counts the windows planned and predicted into ``job.predictor``
    (summed over strips: windows their halos share count once per strip).

    Raises:
        ConfigError: the scheduler cannot be reached. RasterError: no valid pixel.
    """
    sizes = (job.grid.height, BLOCK, threads_per_worker(options))
    jobs = strip_jobs(job.raster, model_file, options, sizes, **kw)
    predictor = job.predictor
    predictor.windows_predicted = predictor.pixels_predicted = predictor.windows_total = 0
    with dask_client(options, progress) as client:
        for result in strip_results(client, jobs, progress):
            predictor.windows_predicted += result.windows
            predictor.pixels_predicted += result.pixels
            predictor.windows_total += result.planned
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


def _result(future: Any) -> StripResult:
    """A strip's result; a scheduler or worker without this engine's environment is a clear
    error.

    Raises:
        ConfigError: the scheduler cannot read the task, or a worker cannot import a module.
    """
    remedy = (
        " start the scheduler and the workers in this engine's environment (the same Python"
        " packages, and PYTHONPATH=/path/to/footprint): see the README's cluster section."
    )
    try:
        return future.result()  # type: ignore[no-any-return]
    except ImportError as exc:
        raise ConfigError(f"A Dask worker cannot import {exc.name or exc}:{remedy}") from exc
    except RuntimeError as exc:
        if "deserialization" not in str(exc):
            raise
        raise ConfigError(f"The Dask scheduler cannot read this engine's tasks:{remedy}") from exc


def in_flight_limit(client: Any) -> int:
    """Strips to keep submitted and not yet taken: :data:`IN_FLIGHT_PER_THREAD` per worker
    thread of the cluster now (at least 2)."""
    return max(2, IN_FLIGHT_PER_THREAD * int(sum(client.nthreads().values())))


def strip_results(
    client: Any, jobs: Sequence[StripJob], progress: Progress
) -> Iterator[StripResult]:
    """Run ``jobs`` on the cluster; yield their results in order, with at most
    :func:`in_flight_limit` strips submitted and not yet yielded (progress counts finished
    strips across workers; cancel cancels the job's tasks)."""
    wait = _distributed().wait
    rest = iter(jobs)
    pending: deque[Any] = deque()  # submitted, in order
    taken = 0

    def top_up() -> None:
        limit = in_flight_limit(client)
        while len(pending) < limit and (job := next(rest, None)) is not None:
            pending.append(client.submit(run_strip, job, pure=False))

    try:
        top_up()
        while pending:
            head = pending[0]
            while not head.done():
                check_canceled(progress)
                done = taken + sum(f.done() for f in pending)
                progress.set_progress(100.0 * done / len(jobs))
                with contextlib.suppress(TimeoutError):
                    wait([head], timeout=0.5)
            check_canceled(progress)
            result = _result(head)
            pending.popleft().release()
            taken += 1
            top_up()
            yield result
        progress.set_progress(100.0)
    finally:
        client.cancel(list(pending))
