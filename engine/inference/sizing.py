"""Choosing the prediction window and the batch for a device.

The model is fully convolutional, so it need not predict on its training tile: every window
loses ``2 x margin`` pixels per axis to the blend, so larger windows waste fewer pixels
(windows of 512 px with a 32-px margin see 1.31x the raster's pixels, of 256 px 1.78x).

On a CPU, with the engine's allocator settings (:func:`engine.heap.tune_allocator`) and the
model in channels-last, 512-, 768- and 1024-px windows run at about the same speed per pixel
(2-core AMD EPYC, Lite0 U-Net, two at once: 1.75, 1.74 and 1.69 Mpx/s; with glibc's defaults
larger windows were markedly slower, 1.11, 0.91 and 0.78, their activations mapped afresh for
every window; docs/BENCHMARKS.md), but their activations grow with the window: two 768-px
windows at once peaked ~330 MB above two 512-px ones, for detect 2.5% faster on a 4k raster.
So a CPU predicts on 512-px windows, one per batch (about :data:`CPU_BATCH_PIXELS` a batch),
and the whole of detect stays under 2 GB at 16k.

On a CPU the model also runs two windows at once, each on half of torch's threads
(:func:`prediction_streams`): one window on all threads spends part of its time with threads
waiting for each other at every layer; two side by side keep the cores busier (2 cores, 512-px
windows: 1.10-1.17 Mpx/s against 1.01-1.06; detect 7% faster) for the memory of a second
window's activations (~170 MB).

A GPU is fastest with large windows and batches: 1024-px windows, as many per batch as fit a
share of the free memory at an estimated :data:`CUDA_BYTES_PER_PIXEL` (bf16 autocast, the
activations of a U-Net decoder at full resolution, with headroom), at most :data:`MAX_BATCH`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from engine.background import MAX_POOL_WORKERS
from engine.errors import ConfigError
from engine.geo.windows import round_up

if TYPE_CHECKING:
    from engine.inference.network import Network

#: Prediction window side on a CPU and on a GPU (pixels, before rounding to the stride).
CPU_WINDOW, CUDA_WINDOW = 512, 1024
#: Window pixels per batch on a CPU.
CPU_BATCH_PIXELS = 512 * 512
#: Estimated device memory per window pixel while predicting on a GPU (bytes).
CUDA_BYTES_PER_PIXEL = 4096
#: Share of the GPU's free memory a batch may take.
CUDA_MEMORY_SHARE = 0.5
#: Most windows in a batch.
MAX_BATCH = 64
#: Windows predicted at once on a CPU (each on its share of torch's threads).
CPU_STREAMS = 2
#: A window is at least this many margins wide, so the blend wastes at most a quarter of it.
MARGINS_PER_WINDOW = 8
#: Memory left free besides the rows held across the raster's width (activations, polygons).
MEMORY_RESERVE = 512 << 20


def prediction_window(kind: str, margin: int, align: int, requested: int | None = None) -> int:
    """The prediction window side: ``requested`` (checked), else the device's, at least
    :data:`MARGINS_PER_WINDOW` margins, a multiple of ``align`` (the model's output stride).

    Raises:
        ConfigError: ``requested`` is not a multiple of ``align`` or leaves no room inside
            the margins.
    """
    if requested is not None:
        if requested < align or requested % align:
            raise ConfigError(
                f"Prediction window {requested} px must be a multiple of the model's output"
                f" stride {align}; use {round_up(max(requested, 1), align)}."
            )
        if 2 * margin >= requested:
            raise ConfigError(
                f"Prediction window {requested} px leaves nothing inside the two {margin}-px"
                f" margins; use at least {round_up(2 * margin + 1, align)} (default"
                f" {prediction_window(kind, margin, align)})."
            )
        return requested
    base = CUDA_WINDOW if kind == "cuda" else CPU_WINDOW
    return round_up(max(base, MARGINS_PER_WINDOW * margin), align)


def prediction_batch(network: Network, window: int, requested: int | None = None) -> int:
    """Windows per batch: ``requested``, else what the network's device allows (>= 1)."""
    if requested is not None:
        return requested
    pixels = window * window
    free = network.free_memory()
    if network.kind != "cuda" or free is None:
        return max(1, min(MAX_BATCH, CPU_BATCH_PIXELS // pixels))
    budget = CUDA_MEMORY_SHARE * free / (CUDA_BYTES_PER_PIXEL * pixels)
    return max(1, min(MAX_BATCH, int(budget)))


def prediction_streams(network: Network) -> int:
    """Windows predicted at once: :data:`CPU_STREAMS` on a CPU where the runtime has that
    many threads, else one (a GPU runs its batches one after another)."""
    if network.kind != "cpu":
        return 1
    return max(1, min(CPU_STREAMS, network.threads))


def polygon_workers(network: Network) -> int:
    """Threads that turn finished blocks into buildings side by side while ``network``
    predicts (seeds + watershed and polygon pieces, :class:`engine.background.OrderedPool`),
    at most :data:`engine.background.MAX_POOL_WORKERS`.

    Behind a GPU the CPU has nothing else to do: every core the runtime may use but two (the
    reader and the thread that joins and writes the buildings). On an H200 the model took
    0.1 s of a 4k raster's 12-17 s: the rest was this stage on one core. On a CPU the model
    keeps the cores busy, so a quarter of them (on 16 cores 4 threads made detect 1.11x faster
    than 1), but at least two where there are two cores: once the model is done, the last
    row of blocks is cut two at a time instead of on one core (a 2-core EPYC, 4k raster:
    detect's own time 3% less in bf16 and in fp32, docs/BENCHMARKS.md).
    """
    cores = network.threads
    share = cores - 2 if network.kind == "cuda" else max(min(2, cores), cores // 4)
    return max(1, min(MAX_POOL_WORKERS, share))


@contextmanager
def model_threads(streams: int) -> Iterator[int]:
    """Torch's threads shared among ``streams`` model threads for the duration; yields the
    threads each gets. torch's thread count is the process's: it is restored on leaving."""
    import torch

    total = torch.get_num_threads()
    each = max(1, total // max(1, streams))
    if each != total:
        torch.set_num_threads(each)
    try:
        yield each
    finally:
        if each != total:
            torch.set_num_threads(total)


def row_bytes(width: int, rows: int, classes: int) -> int:
    """Bytes of ``rows`` rows of ``width`` pixels of probabilities (float32 per class) and
    their validity (a byte): what the blend and the blocks after it hold per pixel."""
    return rows * width * (4 * classes + 1)


def available_memory() -> int | None:
    """Bytes of memory available now (psutil, else ``/proc/meminfo``), or None when unknown."""
    try:
        import psutil  # type: ignore[import-untyped]

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    with contextlib.suppress(OSError, ValueError, IndexError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return None


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB"


def check_row_memory(raster: str, width: int, need: int, per_window_px: int) -> None:
    """Refuse, before any work, rows held across a ``width``-pixel work area that need
    ``need`` bytes when they would not fit the memory available (unknown: no check);
    ``per_window_px`` is what one pixel less of prediction window saves.

    Raises:
        ConfigError: with the figures and the ways out.
    """
    available = available_memory()
    if available is None or need + MEMORY_RESERVE <= available:
        return
    raise ConfigError(
        f"Raster {raster} is {width:,} px wide where the work runs: the rows held across that"
        f" width need about {_gb(need)} of memory, and this machine has {_gb(available)}"
        " available. Limit the work to an area with --extent or an AOI (in QGIS: Extent;"
        " memory follows the area's width), or cut the raster into narrower pieces (e.g."
        " gdal_translate -srcwin); a smaller --window (in QGIS: advanced Prediction window)"
        f" saves about {_gb(256 * per_window_px)} per 256 px."
    )
