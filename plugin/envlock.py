"""Who installs and who runs the engine's environments, so that none is deleted in use.

* The install lock: ``<root>/.install.lock``, made with ``O_CREAT | O_EXCL`` and holding the
  owner's pid and host; a lock whose owner (on this host) is gone is taken over. Every dialog,
  QGIS window or ``qgis_process`` installing into the same profile folder sees it.
* Engine users: while the runner runs an engine it keeps a file named by its pid in
  ``<environment>/.footprint-users/``; on Linux ``/proc`` also shows any process started
  with that environment's interpreter. An environment with a live user, or whose users cannot
  be told, is kept.

No QGIS import: the installer (a worker thread) and the runner use it.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: Marker written into an environment once every install step succeeded (holds the stamp).
COMPLETE = ".footprint-complete"
#: The install lock in the engine folder.
LOCK = ".install.lock"
#: Folder in an environment holding one file per running engine, named ``<pid>-<random>``.
USERS = ".footprint-users"
#: A lock file without a readable owner this old is a crashed writer's.
UNREADABLE_LOCK_SECONDS = 60.0


class LockHeldError(Exception):
    """Another live process holds the install lock (``pid``: 0 when it cannot be read)."""

    def __init__(self, pid: int, host: str) -> None:
        where = "" if host in ("", socket.gethostname()) else f" on {host}"
        super().__init__(f"process {pid or '?'}{where}")
        self.pid = pid


def pid_alive(pid: int) -> bool:
    """True when process ``pid`` runs on this machine, or when that cannot be told."""
    if pid <= 0:
        return False
    if sys.platform == "win32":
        return _windows_pid_alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it runs, as another user
        return True
    return True


def _windows_pid_alive(pid: int) -> bool:
    """Windows: open the process and ask for its exit code (``os.kill`` would end it)."""
    try:
        import ctypes

        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return bool(ctypes.get_last_error() == 5)  # type: ignore[attr-defined]  # denied: it runs
        try:
            code = ctypes.c_ulong()
            if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
                return True
            return code.value == 259  # STILL_ACTIVE
        finally:
            kernel32.CloseHandle(handle)
    except Exception:  # noqa: BLE001 - cannot tell: take it as running
        return True


def lock_owner(path: Path) -> tuple[int, str] | None:
    """(pid, host) of a live holder of the lock file ``path``; None when free or stale."""
    try:
        text = path.read_text(encoding="utf-8")
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None
    except OSError:
        return 0, ""  # unreadable: cannot tell, so held
    parts = text.split()
    if len(parts) < 2 or not parts[0].isdigit():
        return (0, "") if age < UNREADABLE_LOCK_SECONDS else None  # being written, or debris
    pid, host = int(parts[0]), parts[1]
    if host != socket.gethostname():
        return pid, host  # another machine's (a shared profile): cannot tell, so held
    return (pid, host) if pid_alive(pid) else None


class InstallLock:
    """The exclusive install lock of the engine folder ``root``."""

    def __init__(self, root: Path) -> None:
        self.path = root / LOCK
        self.held = False

    def acquire(self) -> None:
        """Take the lock, or take over a dead owner's.

        Raises:
            LockHeldError: a live process holds it.
        """
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = lock_owner(self.path)
                if owner is not None:
                    raise LockHeldError(*owner) from None
                self.path.unlink(missing_ok=True)  # its owner is gone: take it over
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(f"{os.getpid()} {socket.gethostname()}\n")
            self.held = True
            return
        raise LockHeldError(0, "")

    def release(self) -> None:
        """Give the lock back (only ours)."""
        if self.held:
            self.held = False
            self.path.unlink(missing_ok=True)


def install_running(root: Path) -> int | None:
    """The pid of a live installation into ``root`` (0 when unknown), or None."""
    owner = lock_owner(root / LOCK)
    return None if owner is None else owner[0]


def environment_of(python: str) -> Path | None:
    """The installer-made environment whose interpreter ``python`` is, or None."""
    env = Path(os.path.abspath(python)).parent.parent  # <env>/bin/python, <env>/Scripts/...
    return env if (env / COMPLETE).is_file() else None


@contextmanager
def engine_use(python: str) -> Iterator[None]:
    """While the body runs, mark the environment of ``python`` (if the installer made it) as
    used by this process, so that an update started meanwhile keeps it."""
    env = environment_of(python)
    marker: Path | None = None
    if env is not None:
        try:
            (env / USERS).mkdir(exist_ok=True)
            marker = env / USERS / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
            marker.write_text(f"{os.getpid()}\n", encoding="utf-8")
        except OSError:
            marker = None  # a read-only environment: it cannot be updated either
    try:
        yield
    finally:
        if marker is not None:
            marker.unlink(missing_ok=True)


def _marked_users(env: Path) -> list[int]:
    """Live pids named in ``<env>/.footprint-users``; stale files (dead pids) are dropped.

    Raises:
        OSError: the folder cannot be read.
    """
    folder = env / USERS
    if not folder.is_dir():
        return []
    live = []
    for marker in folder.iterdir():
        head = marker.name.split("-", 1)[0]
        pid = int(head) if head.isdigit() else 0
        if pid_alive(pid):
            live.append(pid)
        else:
            marker.unlink(missing_ok=True)
    return live


def _proc_users(env: Path) -> list[int]:
    """Linux: pids of processes started with an interpreter inside ``env``."""
    proc = Path("/proc")
    if not (proc / "self" / "cmdline").is_file():
        return []
    inside = str(env) + os.sep
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv0 = (entry / "cmdline").read_bytes().split(b"\0", 1)[0].decode("utf-8", "replace")
            if argv0 and not os.path.isabs(argv0):
                argv0 = os.path.join(os.readlink(entry / "cwd"), argv0)
        except OSError:
            continue  # gone meanwhile, or another user's (it cannot use our profile's folder)
        if os.path.abspath(argv0).startswith(inside):
            found.append(int(entry.name))
    return found


def engine_users(env: Path) -> list[int] | None:
    """Pids of running engines of ``env``; None when that cannot be told (then keep it)."""
    try:
        return sorted(set(_marked_users(env) + _proc_users(env)))
    except OSError:
        return None


#: Prefix of a folder being deleted (a leftover of a crash is swept by the next install).
TRASH = ".trash-"


def discard(folder: Path) -> bool:
    """Delete ``folder``: first renamed to a ``.trash-`` name beside it (so no half-deleted
    environment is left under its own name; on Windows the rename fails while a process uses
    it), then removed. False when it could not be renamed (then it is left as it was)."""
    trash = folder.parent / f"{TRASH}{folder.name}-{uuid.uuid4().hex[:8]}"
    try:
        os.replace(folder, trash)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    shutil.rmtree(trash, ignore_errors=True)
    return True
