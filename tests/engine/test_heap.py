"""Freed heap pages go back to the OS during streaming (engine.heap)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from affine import Affine

import engine.heap as heap_module
import engine.polygons.seams as seams_module
from engine.geo.windows import Grid
from engine.heap import HeapKeeper, release_free_memory, resident_bytes
from engine.polygons.seams import SeamJoiner


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim is Linux")
def test_freed_pages_between_live_blocks_are_returned() -> None:
    # 32 KiB arrays come from malloc's heap (below its mmap threshold); keeping every 64th
    # pins the heap's top, so freeing the others leaves ~120 MiB resident but unused.
    arrays = [np.ones(4096, np.float64) for _ in range(4000)]
    kept = arrays[::64]
    del arrays
    before = _rss_mib()
    assert release_free_memory()
    after = _rss_mib()
    assert before - after > 60, (before, after)
    assert all(float(a.sum()) == 4096 for a in kept)  # live data untouched


def test_the_joiner_releases_memory_once_per_row_of_windows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []
    monkeypatch.setattr(seams_module, "release_free_memory", lambda: calls.append(1))
    joiner = SeamJoiner(300, 250, 0.5)
    windows = list(Grid(300, 250, Affine.identity()).blocks(100))  # 3 rows of 3 windows
    for window in windows:
        shape = (int(window.height), int(window.width))
        joiner.add(window, np.ones(shape, np.float32), np.ones(shape, bool))
    assert len(calls) == 2  # at the start of rows 2 and 3


def test_the_keeper_trims_only_after_enough_growth(monkeypatch: pytest.MonkeyPatch) -> None:
    mib = 1 << 20
    resident = iter([100, 120, 131, 60, 90, 121, 200])  # MiB, one reading per check
    monkeypatch.setattr(heap_module, "resident_bytes", lambda: next(resident) * mib)
    monkeypatch.setattr(heap_module, "release_free_memory", lambda: True)
    keeper = HeapKeeper(slack=30 * mib)
    got = [keeper.check() for _ in range(7)]
    # 100 sets the level; 120 is within 100 + 30, 131 is not: trim. The next reading (60)
    # sets the new level (after a trim the work refills its own memory first); 90 is within
    # 60 + 30, 121 is not: trim; 200 sets the level again.
    assert got == [False, False, True, False, False, True, False]
    assert keeper.trims == 2


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/statm is Linux")
def test_resident_bytes_follows_allocation() -> None:
    before = resident_bytes()
    block = np.ones(64 << 20, np.uint8)  # 64 MiB, touched
    after = resident_bytes()
    assert before is not None and after is not None
    assert after - before > 48 << 20
    del block


_REALLOCATE = """
import resource, threading, numpy as np
from engine.heap import tune_allocator
took = tune_allocator()
faults = []
def model_thread():  # a 64 MiB activation, made and freed again and again off the main thread
    a = np.ones(16 << 20, np.float32); del a
    start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        a = np.ones(16 << 20, np.float32); del a
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start)
thread = threading.Thread(target=model_thread); thread.start(); thread.join()
print(",".join(took) or "-", faults[0])
"""


def _reallocation_faults(env: dict[str, str]) -> tuple[str, int]:
    root = Path(__file__).resolve().parents[2]
    inherited = {  # glibc and Dask (MALLOC_TRIM_THRESHOLD_) settings of this process left out
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MALLOC_") and k not in ("GLIBC_TUNABLES", "FOOTPRINT_ALLOCATOR")
    }
    done = subprocess.run(
        [sys.executable, "-c", _REALLOCATE],
        env={**inherited, "PYTHONPATH": str(root), **env},
        capture_output=True,
        text=True,
        check=True,
    )
    took, faults = done.stdout.split()
    return took, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux")
def test_tuned_allocator_reuses_large_blocks_in_threads() -> None:
    # glibc's defaults map a 64 MiB block afresh at every allocation (a page fault per 4 KiB,
    # or per 2 MiB with transparent huge pages); tuned, the freed block is reused as it is
    took, faults = _reallocation_faults({})
    assert took == "MALLOC_ARENA_MAX,MALLOC_MMAP_THRESHOLD_,MALLOC_TRIM_THRESHOLD_"
    assert faults < 5, faults  # fewer than one fault per allocation
    took, default_faults = _reallocation_faults({"FOOTPRINT_ALLOCATOR": "glibc"})
    assert took == "-"  # glibc's defaults kept on request
    assert default_faults >= 5 * 16, default_faults


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux")
def test_parameters_the_environment_sets_are_left_as_set() -> None:
    took, _ = _reallocation_faults({"MALLOC_TRIM_THRESHOLD_": "65536"})  # as Dask's workers
    assert took == "MALLOC_ARENA_MAX,MALLOC_MMAP_THRESHOLD_"
    took, _ = _reallocation_faults({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})
    assert took == "MALLOC_MMAP_THRESHOLD_,MALLOC_TRIM_THRESHOLD_"
