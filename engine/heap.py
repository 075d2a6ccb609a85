"""Giving freed heap memory back to the operating system during long streaming runs.

Vectorizing row by row keeps the polygons still open along a seam (GEOS geometries) while
many short-lived ones come and go; glibc's allocator then keeps the freed pages between the
long-lived ones, and the process's resident memory creeps up with the raster's *area* although
what is alive stays bounded by its width (measured on real predicted probabilities: the
joiner's resident memory grew by 148 MB over 8k x 8k and 317 MB over 16k x 16k without
trimming, 92 and 104 MB with a trim per row of windows; docs/BENCHMARKS.md).
Prediction does the same with its model's batches: the activations a forward pass frees stay
in the heap, and over an 8k x 8k raster detect's peak grew by ~80 MB more than what is alive.
:func:`release_free_memory` asks glibc to return free pages (``malloc_trim(0)``: about 1 ms
in the joiner, ~6 ms after a model's batch); elsewhere it does nothing. :class:`HeapKeeper`
calls it only once resident memory has grown by a slack beyond its level after the last
trim (~1 trim per row of windows over an 8k raster), so the cost stays small where trimming
after every batch would not (10% of detect's time on 2 cores).

:func:`tune_allocator` keeps a model's activations in the heap between forward passes. By
default glibc gives every allocation over its mmap threshold (at most 32 MB) pages of its own
and unmaps them on free, and a thread other than the main one allocates from heaps of at most
64 MB: a forward pass's large activations were mapped, zero-filled page by page and unmapped
again for every window (with two model threads ~830 bytes of page faults per window pixel on
512-px windows, ~2.3 KB on 1024-px ones). With one arena and no mmap threshold they are
reused (2-13 bytes a pixel): on a 2-core AMD EPYC the bare Lite0 U-Net ran 1.35x faster on
512-px windows, 1024-px windows as fast per pixel as 512-px ones instead of 0.7x, and a
training step 1.3x faster (docs/BENCHMARKS.md, ``bench/allocator.py``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from collections.abc import Callable
from functools import cache

__all__ = ["HeapKeeper", "release_free_memory", "resident_bytes", "tune_allocator"]

# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8
#: Allocations above this get pages of their own (none of a model's activations).
MMAP_THRESHOLD = 1 << 30
#: Free memory at the heap's top beyond this goes back at once (else when trimmed).
TRIM_THRESHOLD = 1 << 30
#: The allocator's parameters tune_allocator sets: (mallopt parameter, value, the environment
#: variable and the glibc tunable that set it, for a user who wants their own).
_SETTINGS = (
    (_M_ARENA_MAX, 1, "MALLOC_ARENA_MAX", "glibc.malloc.arena_max"),
    (_M_MMAP_THRESHOLD, MMAP_THRESHOLD, "MALLOC_MMAP_THRESHOLD_", "glibc.malloc.mmap_threshold"),
    (_M_TRIM_THRESHOLD, TRIM_THRESHOLD, "MALLOC_TRIM_THRESHOLD_", "glibc.malloc.trim_threshold"),
)


@cache
def _glibc_function(name: str, *argtypes: type) -> Callable[..., int] | None:
    """Glibc's function ``name``, or None where there is none (macOS, Windows, musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        function = getattr(libc, name)
    except (OSError, AttributeError):
        return None
    function.argtypes, function.restype = list(argtypes), ctypes.c_int
    return function  # type: ignore[no-any-return]


def tune_allocator() -> tuple[str, ...]:
    """Set glibc's allocator for a process that runs a model (see the module's docstring):
    one arena, no mmap for allocations under :data:`MMAP_THRESHOLD`, the heap's top kept up
    to :data:`TRIM_THRESHOLD`. Call it at the start of the process, before its threads
    allocate. A parameter the environment sets (``MALLOC_ARENA_MAX``, ``GLIBC_TUNABLES``, ...;
    Dask sets ``MALLOC_TRIM_THRESHOLD_`` for its workers) is left as set; nothing is changed
    where glibc is absent or ``FOOTPRINT_ALLOCATOR=glibc``. Returns the variables' names of
    the parameters it set."""
    mallopt = _glibc_function("mallopt", ctypes.c_int, ctypes.c_int)
    if mallopt is None or os.environ.get("FOOTPRINT_ALLOCATOR") == "glibc":
        return ()
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    done = []
    for param, value, variable, tunable in _SETTINGS:
        if variable in os.environ or tunable in tunables:
            continue
        if mallopt(param, value) == 1:
            done.append(variable)
    return tuple(done)


def release_free_memory() -> bool:
    """Return freed heap pages to the OS where the C library can; True if it could try."""
    trim = _glibc_function("malloc_trim", ctypes.c_size_t)
    if trim is None:
        return False
    trim(0)
    return True


def resident_bytes() -> int | None:
    """The process's resident memory now (Linux ``/proc/self/statm``), or None elsewhere."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class HeapKeeper:
    """Trims the heap when resident memory has grown by ``slack`` bytes over its level at the
    first check after the last trim.

    Call :meth:`check` between units of work (a model's batch). Right after a trim the next
    unit refills its own working memory (a forward pass's activations), so the level is taken
    at the check after that, and only growth beyond it (pages freed between live objects
    piling up with the raster's area) triggers the next trim: a check costs microseconds, a
    trim milliseconds plus the page faults that follow (trimming after every batch made
    detect 10% slower on 2 CPU cores).
    """

    def __init__(self, slack: int = 32 << 20) -> None:
        self.slack = slack
        self.trims = 0
        self._level: int | None = None  # resident bytes at the first check after a trim

    def check(self) -> bool:
        """Trim if resident memory grew by more than ``slack``; True when it trimmed."""
        now = resident_bytes()
        if now is None:
            return False
        if self._level is None:
            self._level = now
            return False
        if now <= self._level + self.slack or not release_free_memory():
            return False
        self.trims += 1
        self._level = None
        return True
