"""Entry point for ``python -m engine``."""

import os
import sys

from engine.cli import EXIT_INTERRUPTED, main

if __name__ == "__main__":
    code = main()
    if code == EXIT_INTERRUPTED:
        # Outputs are already cleaned up: skip the interpreter's (torch's) slow teardown so an
        # interrupt ends the process at once.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
