"""Entry point for ``python -m engine``."""

import os
import sys

# Every window is read about once, so GDAL's block cache (5% of the machine's memory by
# default) only grows with the raster: cap it before GDAL starts (a user's setting wins).
os.environ.setdefault("GDAL_CACHEMAX", "256")

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
