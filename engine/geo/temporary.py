"""Temporary files and folders of the engine: named by the run that owns them, removed when
the command ends, and swept at the next start when their run died (killed, power cut).

Every temporary name carries the owner's :data:`TAG` (process id and host): a partial output
``.out.part-<pid>-<host>-<hex>.tif`` and its sidecars, a work folder ``.footprint-<pid>-<host>-*``
beside the outputs, scratch folders ``footprint-vrt-<pid>-<host>-*`` (and ``-rasterize-``,
``-strip-``) in the temporary folder. :func:`sweep_stale` removes only names of exactly these
forms whose host is this one and whose process is gone, so a running engine (this machine's or
another's on a shared folder) and the user's own files are never touched.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

#: This machine, in 6 hex digits: a process id means something only on its own host.
HOST = hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:6]
#: Kinds of scratch folders made in the temporary folder.
SCRATCH_KINDS = ("vrt", "rasterize", "strip", "improve")

_OWNER = r"(?P<pid>\d+)-(?P<host>[0-9a-f]{6})"
#: A partial output (see :func:`part_name`) and its sidecars (.aux.xml, SQLite journals,
#: shapefile parts, which replace the suffix).
_PART = re.compile(
    rf"^\..+\.part-{_OWNER}-[0-9a-f]{{8}}(\.[^./\\]+)?(\.aux\.xml|-wal|-shm|-journal)?$"
)
#: Work folders and write probes beside the outputs; TemporaryDirectory adds 8 characters.
_WORK = re.compile(rf"^\.footprint-(probe-)?{_OWNER}-[a-z0-9_]{{8}}$")
_SCRATCH = re.compile(rf"^footprint-({'|'.join(SCRATCH_KINDS)})-{_OWNER}-[a-z0-9_]{{8}}$")

#: Scratch folders this process made that outlive a ``with`` block (removed by
#: :func:`remove_scratch` when the command ends).
_SCRATCH_MADE: list[Path] = []


def tag() -> str:
    """The owner of the temporaries this process makes: ``<pid>-<host>``."""
    return f"{os.getpid()}-{HOST}"


def part_name(out: Path, token: str) -> str:
    """The name of ``out``'s partial file: ``.<stem>.part-<pid>-<host>-<token><suffix>``."""
    return f".{out.stem}.part-{tag()}-{token}{out.suffix}"


def work_prefix() -> str:
    """Prefix of a work folder beside the outputs (``tempfile`` adds 8 characters)."""
    return f".footprint-{tag()}-"


def probe_name(token: str) -> str:
    """The name of a file that probes whether a folder is writable."""
    return f".footprint-probe-{tag()}-{token}"


def scratch_prefix(kind: str) -> str:
    """Prefix of a scratch folder of ``kind`` (one of :data:`SCRATCH_KINDS`) in the temp folder."""
    assert kind in SCRATCH_KINDS, kind
    return f"footprint-{kind}-{tag()}-"


def make_scratch(kind: str) -> Path:
    """A new scratch folder in the temporary folder, removed by :func:`remove_scratch`."""
    folder = Path(tempfile.mkdtemp(prefix=scratch_prefix(kind)))
    _SCRATCH_MADE.append(folder)
    return folder


def remove_scratch() -> None:
    """Remove the scratch folders :func:`make_scratch` made (at the end of every command)."""
    while _SCRATCH_MADE:
        shutil.rmtree(_SCRATCH_MADE.pop(), ignore_errors=True)


def _owner_dead(match: re.Match[str]) -> bool:
    """True when the match's owner ran on this host and is no longer running."""
    if match["host"] != HOST:
        return False
    return not pid_alive(int(match["pid"]))


def pid_alive(pid: int) -> bool:
    """True when a process ``pid`` exists (or may: when unsure, it is alive)."""
    if pid == os.getpid():
        return True
    if pid <= 0:
        return False
    if sys.platform == "win32":
        return _windows_pid_alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, owned by someone else
        return True
    return True


def _windows_pid_alive(pid: int) -> bool:
    """Windows: whether a process ``pid`` can be opened (os.kill(pid, 0) would kill it)."""
    import ctypes

    kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined,unused-ignore]
    kernel32.OpenProcess.restype = ctypes.c_void_p
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return bool(kernel32.GetLastError() == 5)  # access denied: it exists
    code = ctypes.c_ulong()
    kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
    kernel32.CloseHandle(handle)
    return bool(code.value == 259)  # STILL_ACTIVE


def stale_entries(folder: Path) -> list[Path]:
    """Temporaries in ``folder`` (not below) left by dead runs of this host."""
    patterns = (_PART, _WORK, _SCRATCH)
    found = []
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    for name in names:
        for pattern in patterns:
            match = pattern.match(name)
            if match is not None and _owner_dead(match):
                found.append(folder / name)
                break
    return found


def sweep_stale(folders: Iterable[str | os.PathLike[str] | None]) -> list[Path]:
    """Remove the temporaries of dead runs in ``folders`` and the temporary folder.

    Returns the paths removed. Failures (a file in use, no permission) are left alone.
    """
    targets = {Path(f).expanduser().absolute() for f in folders if f}
    targets.add(Path(tempfile.gettempdir()).absolute())
    removed = []
    for folder in sorted(targets):
        for entry in stale_entries(folder):
            with contextlib.suppress(OSError):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
                removed.append(entry)
    return removed
