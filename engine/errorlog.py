"""Where tracebacks go: a log file, never the user's screen.

A real bug still ends with "Internal error (please report it)", and that message names the log
file holding the full traceback, to attach to the report. Tracebacks that Python would print
on its own while a command runs (an exception inside a GDAL error callback, which Python can
only report as "Exception ignored in ...") go to the same file.

The folder is ``FOOTPRINT_LOG_DIR`` when set, else ``$XDG_CACHE_HOME/footprint/logs`` (default
``~/.cache/footprint/logs``); the folders made for it are private (0700) and the log is
private to its user (0600). A log that is a symbolic link, not a regular file or another
user's is never written: the log then goes to a new private folder (``tempfile.mkdtemp``),
never to a fixed name in a shared folder that another user could have made first. The log
rotates at :data:`MAX_BYTES`, keeping :data:`BACKUPS` older files (``.1`` the newest).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
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
#: Size at which the log rotates, and how many older logs are kept beside it.
MAX_BYTES = 1_000_000
BACKUPS = 4
#: Append-only, created private, never through a symbolic link (where the system can tell),
#: never blocking on a FIFO.
_OPEN_FLAGS = (
    os.O_WRONLY
    | os.O_APPEND
    | os.O_CREAT
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_CLOEXEC", 0)
)
#: The private folder made when the usual one cannot be written (one per process).
_FALLBACK: Path | None = None


def log_dir() -> Path:
    """The folder of the error log (see the module doc)."""
    if os.environ.get("FOOTPRINT_LOG_DIR"):
        return Path(os.environ["FOOTPRINT_LOG_DIR"])
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "footprint" / "logs"


def _append(text: str) -> Path | None:
    """Append ``text`` to the log; return its path (None: no log could be written).

    The usual folder first, then a private folder made for this process (see the module doc).
    """
    global _FALLBACK
    text = _capped(text)
    for folder in (log_dir(), _FALLBACK):
        if folder is not None and _write_log(folder, text):
            return folder / LOG_NAME
    try:
        _FALLBACK = Path(tempfile.mkdtemp(prefix="footprint-logs-"))
    except OSError:
        return None
    return _FALLBACK / LOG_NAME if _write_log(_FALLBACK, text) else None


def _capped(text: str) -> str:
    """``text``, its middle cut out when it is larger than half the log (a huge message)."""
    data = text.encode("utf-8")
    keep = MAX_BYTES // 4
    if len(data) <= 2 * keep:
        return text
    cut = f"\n[... {len(data) - 2 * keep} bytes cut ...]\n"
    return data[:keep].decode("utf-8", "ignore") + cut + data[-keep:].decode("utf-8", "ignore")


def _write_log(folder: Path, text: str) -> bool:
    """Append ``text`` to ``folder``'s log, rotating it first when full; False on failure."""
    try:
        _make_private_folder(folder)
        path = folder / LOG_NAME
        _rotate(path, len(text.encode("utf-8")))
        fd = os.open(path, _OPEN_FLAGS, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as log:
            _check_private_file(fd)
            log.write(text)
    except OSError:
        return False
    return True


def _make_private_folder(folder: Path) -> None:
    """Make ``folder`` (and missing parents) readable by its user only; an existing one is
    left as it is."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    for part in reversed(missing):
        with contextlib.suppress(FileExistsError):
            part.mkdir(mode=0o700)


def _check_private_file(fd: int) -> None:
    """Raise OSError unless ``fd`` is a regular file of this user with one name; make it
    0600."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise OSError(errno.EINVAL, "the error log is not a regular file")
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise OSError(errno.EPERM, "the error log belongs to another user")
    if info.st_nlink > 1:  # a hard link another user made to one of this user's files
        raise OSError(errno.EMLINK, "the error log has other names")
    if hasattr(os, "fchmod") and stat.S_IMODE(info.st_mode) != 0o600:
        os.fchmod(fd, 0o600)


def _rotate(path: Path, adding: int) -> None:
    """Shift ``path`` to ``path.1`` (``.1`` to ``.2``, ...; the oldest goes) when ``adding``
    bytes would take it past :data:`MAX_BYTES` (links are moved, never followed)."""
    try:
        size = path.lstat().st_size
    except FileNotFoundError:
        return
    if size == 0 or size + adding <= MAX_BYTES:
        return
    for index in range(BACKUPS - 1, 0, -1):
        older = path.with_name(f"{path.name}.{index}")
        if older.is_symlink() or older.exists():
            os.replace(older, path.with_name(f"{path.name}.{index + 1}"))
    os.replace(path, path.with_name(f"{path.name}.1"))


def _header(what: str, command: str | None = None) -> str:
    command = command or " ".join(sys.argv)
    return f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {what} (pid {os.getpid()}): {command}\n"


def log_traceback(exc: BaseException, command: str | None = None) -> Path | None:
    """Write ``exc``'s full traceback (and the ``command`` that raised it) to the log; return
    the log's path (None: no log could be written)."""
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
