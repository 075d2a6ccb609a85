"""Atomic outputs: write under a temporary name in the target folder, rename at the end.

A failed or cancelled run leaves neither a half-written file nor a changed user file.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

from engine.errors import OutputError


def check_output(path: str | os.PathLike[str], overwrite: bool) -> Path:
    """Check that ``path`` may be written; return it as an absolute Path.

    Raises:
        OutputError: the file exists and ``overwrite`` is False, or its folder is missing or
            not writable.
    """
    out = Path(path).expanduser().absolute()
    if out.is_dir():
        raise OutputError(f"Output {out} is a folder; give a file name such as {out / 'out.tif'}.")
    if out.exists() and not overwrite:
        raise OutputError(
            f"Output {out} already exists; choose another name or pass --overwrite to replace it."
        )
    folder = out.parent
    if not folder.is_dir():
        raise OutputError(f"Cannot write {out}: folder {folder} does not exist; create it first.")
    if not _can_create_in(folder):
        raise OutputError(f"Cannot write {out}: folder {folder} is not writable; choose another.")
    return out


def _can_create_in(folder: Path) -> bool:
    """True when a file can really be created in ``folder`` (os.access is always True for root,
    and says nothing about read-only mounts)."""
    if not os.access(folder, os.W_OK):
        return False
    probe = folder / f".footprint-probe-{uuid.uuid4().hex[:8]}"
    try:
        probe.touch(exist_ok=False)
    except OSError:
        return False
    probe.unlink(missing_ok=True)
    return True


def temporary_sibling(out: Path) -> Path:
    """A temporary path next to ``out`` with the same extension (so drivers match)."""
    return out.with_name(f".{out.stem}.part-{uuid.uuid4().hex[:8]}{out.suffix}")


def _remove(path: Path) -> None:
    """Remove a file and its GDAL/OGR sidecars (.aux.xml, -wal, -shm, shapefile parts)."""
    candidates = [path, Path(str(path) + ".aux.xml"), Path(str(path) + "-wal")]
    candidates += [Path(str(path) + "-shm"), Path(str(path) + "-journal")]
    if path.suffix.lower() == ".shp":
        candidates += [path.with_suffix(s) for s in (".shx", ".dbf", ".prj", ".cpg", ".qix")]
    for candidate in candidates:
        with contextlib.suppress(FileNotFoundError):
            candidate.unlink()


def _rename(tmp: Path, out: Path) -> None:
    """Move ``tmp`` (and shapefile parts) onto ``out``."""
    if out.suffix.lower() == ".shp":
        for s in (".shx", ".dbf", ".prj", ".cpg"):
            part = tmp.with_suffix(s)
            if part.exists():
                os.replace(part, out.with_suffix(s))
    aux = Path(str(tmp) + ".aux.xml")
    if aux.exists():
        os.replace(aux, Path(str(out) + ".aux.xml"))
    os.replace(tmp, out)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; on success rename it onto ``path``.

    On any exception (cancel included) the temporary file is removed and ``path`` is left as it
    was.
    """
    out = check_output(path, overwrite)
    tmp = temporary_sibling(out)
    try:
        yield tmp
        if not tmp.exists():
            raise OutputError(f"Internal error: {tmp} was not written.")
        if out.exists():
            _remove(out)
        _rename(tmp, out)
    except BaseException:
        _remove(tmp)
        raise
