"""Entry point for ``python -m engine``."""

import os
import sys

# Windows are read row by row, each source block a few times in a row, so GDAL's block cache
# (5% of the machine's memory by default) mostly fills with blocks never read again and grows
# with the raster: cap it before GDAL starts (a user's setting wins). 64 MB holds a row of
# 512-px blocks of a 16k-wide RGB raster; reading is ~50x faster than the model either way
# (docs/BENCHMARKS.md).
os.environ.setdefault("GDAL_CACHEMAX", "64")

from engine.cli import EXIT_INTERRUPTED, main  # noqa: E402

if __name__ == "__main__":
    code = main()
    if code == EXIT_INTERRUPTED:
        # Outputs are already cleaned up: skip the interpreter's (torch's) slow teardown so an
        # interrupt ends the process at once.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
