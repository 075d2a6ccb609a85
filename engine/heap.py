"""Giving freed heap memory back to the operating system during long streaming runs.

Vectorizing row by row keeps the polygons still open along a seam (GEOS geometries) while
many short-lived ones come and go; glibc's allocator then keeps the freed pages between the
long-lived ones, and the process's resident memory creeps up with the raster's *area* although
what is alive stays bounded by its width (measured on real predicted probabilities: the
joiner's resident memory grew by 148 MB over 8k x 8k and 317 MB over 16k x 16k without
trimming, 92 and 104 MB with a trim per row of windows; docs/BENCHMARKS.md).
:func:`release_free_memory` asks glibc to return those pages (``malloc_trim(0)``, about a
millisecond per call); elsewhere it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Callable
from functools import cache

__all__ = ["release_free_memory"]


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where there is none (macOS, Windows, musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_free_memory() -> bool:
    """Return freed heap pages to the OS where the C library can; True if it could try."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
