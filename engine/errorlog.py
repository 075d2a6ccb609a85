"""Where tracebacks go: a log file, never the user's screen.

A real bug still ends with "Internal error (please report it)", and that message names the log
file holding the full traceback, to attach to the report. Tracebacks that Python would print
on its own while a command runs (an exception inside a GDAL error callback, which Python can
only report as "Exception ignored in ...") go to the same file.

The folder is ``FOOTPRINT_LOG_DIR`` when set, else ``$XDG_CACHE_HOME/footprint/logs`` (default
``~/.cache/footprint/logs``), else the system's temporary folder.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: The log file's name.
LOG_NAME = "footprint-errors.log"


def log_dir() -> Path:
    """The folder of the error log (see the module doc)."""
    if os.environ.get("FOOTPRINT_LOG_DIR"):
        return Path(os.environ["FOOTPRINT_LOG_DIR"])
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "footprint" / "logs"


def _append(text: str) -> Path:
    """Append ``text`` to the log (in the temporary folder when the usual one is unwritable)."""
    for folder in (log_dir(), Path(tempfile.gettempdir())):
        path = folder / LOG_NAME
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as log:
                log.write(text)
            return path
        except OSError:
            continue
    return Path(tempfile.gettempdir()) / LOG_NAME


def _header(what: str, command: str | None = None) -> str:
    command = command or " ".join(sys.argv)
    return f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {what} (pid {os.getpid()}): {command}\n"


def log_traceback(exc: BaseException, command: str | None = None) -> Path:
    """Write ``exc``'s full traceback (and the ``command`` that raised it) to the log; return
    the log's path."""
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    return _append(_header("internal error", command) + "".join(lines))


def _unraisable(info: Any) -> None:
    """``sys.unraisablehook`` that logs instead of printing."""
    what = f"exception ignored in {info.object!r}" if info.object is not None else "exception"
    lines = traceback.format_exception(info.exc_type, info.exc_value, info.exc_traceback)
    _append(_header(what) + "".join(lines))


@contextmanager
def quiet_unraisable() -> Iterator[None]:
    """Send exceptions Python cannot raise (it would print them) to the log while inside."""
    previous: Callable[[Any], Any] = sys.unraisablehook
    sys.unraisablehook = _unraisable
    try:
        yield
    finally:
        sys.unraisablehook = previous
