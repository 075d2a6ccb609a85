"""Entry point for ``python -m engine``."""

import contextlib
import logging
import multiprocessing
import os
import sys

# Windows are read row by row, each source block a few times in a row, so GDAL's block cache
# (5% of the machine's memory by default) mostly fills with blocks never read again and grows
# with the raster: cap it before GDAL starts (a user's setting wins). 64 MB holds a row of
# 512-px blocks of a 16k-wide RGB raster; reading is ~50x faster than the model either way
# (docs/BENCHMARKS.md).
os.environ.setdefault("GDAL_CACHEMAX", "64")

from engine.cli import main  # noqa: E402

if __name__ == "__main__":
    code = main()
    # Every output is written and closed by now (or cleaned up after an error or an
    # interrupt): skip the interpreter's teardown, which takes about a second once torch and
    # its libraries are loaded (docs/BENCHMARKS.md), after flushing what is buffered. A child
    # process still running (it may hold the output pipe) gets the normal exit instead.
    if multiprocessing.active_children():
        sys.exit(code)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            stream.flush()
    os._exit(code)
