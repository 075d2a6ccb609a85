"""Atomic outputs: write under a temporary name in the target folder, rename at the end.

A failed or cancelled run leaves neither a half-written file nor a changed user file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from engine.errors import FootprintError, OutputError
from engine.geo.temporary import part_name, probe_name, sweep_stale

#: Likely cause and fix of a failed write, by errno and by the words of GDAL's or torch's error.
_CAUSES: tuple[tuple[int | None, tuple[str, ...], str], ...] = (
    (
        errno.ENOSPC,
        ("no space left", "free disk space", "not enough disk", "disk full"),
        "the disk is full; free some space or write elsewhere",
    ),
    (errno.EDQUOT, ("quota exceeded",), "the disk quota is used up; free some space"),
    (
        errno.ENOENT,
        ("no such file or directory",),
        "its folder was removed or renamed during the run; choose an existing folder",
    ),
    (errno.EROFS, ("read-only file system",), "the disk is read-only; write elsewhere"),
    (
        errno.EACCES,
        ("permission denied",),
        "the folder or file is not writable (any more); choose another folder",
    ),
    (errno.EIO, ("input/output error",), "the disk reported an I/O error; check it"),
    (None, ("write failed", "failed writing", "write error"), "the disk refused the data"),
)


def write_failure(exc: BaseException) -> str | None:
    """What went wrong when writing failed with ``exc`` (None: ``exc`` is not a write failure)."""
    code = exc.errno if isinstance(exc, OSError) else None
    text = f"{exc} {exc.__cause__ or ''} {exc.__context__ or ''}".lower()
    for number, words, cause in _CAUSES:
        if (number is not None and code == number) or any(w in text for w in words):
            detail = str(exc).strip().rstrip(".") or type(exc).__name__
            return f"{cause} ({detail})"
    return None


def check_output(path: str | os.PathLike[str], overwrite: bool) -> Path:
    """Check that ``path`` may be written; return it as an absolute Path.

    Raises:
        OutputError: the file exists and ``overwrite`` is False, or its folder is missing or
            not writable.
    """
    out = Path(path).expanduser().absolute()
    check_whole_file(out)
    if out.is_dir():
        example = out / ("out" + (out.suffix or ".tif"))
        raise OutputError(f"Output {out} is a folder; give a file name such as {example}.")
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


def check_folder_output(folder: str | os.PathLike[str], what: str, other: Path) -> Path:
    """Check, before any work, that the folder ``folder`` (``what``: "report folder") may be
    made or written in: not a file, not the output file ``other``, and the nearest folder
    that exists writable. Nothing is created.

    Raises:
        OutputError: naming the folder and what is wrong with it.
    """
    out = Path(folder).expanduser().absolute()
    if same_file(out, other):
        raise OutputError(
            f"The {what} {out} is the output file's own name; give the {what} another name (or"
            " leave it out: the default is beside the output)."
        )
    if out.exists() and not out.is_dir():
        raise OutputError(f"The {what} {out} is a file; give a folder name, new or existing.")
    existing = next(p for p in (out, *out.parents) if p.exists())
    if not existing.is_dir():
        raise OutputError(f"Cannot make the {what} {out}: {existing} is a file, not a folder.")
    if not _can_create_in(existing):
        raise OutputError(
            f"Cannot write the {what} {out}: folder {existing} is not writable; choose another."
        )
    return out


#: A QGIS layer option after a file name: ``labels.gpkg|layername=out``.
_LAYER_OPTION = re.compile(r"\|\s*[a-z_]+\s*=", re.IGNORECASE)


def check_whole_file(out: Path) -> None:
    """Refuse an output that names a layer inside a file (``labels.gpkg|layername=out``): the
    engine writes whole files, so it would make a file of that odd name, and writing into the
    GeoPackage instead would replace its other layers.

    Raises:
        OutputError: naming the file and a new name to give.
    """
    match = _LAYER_OPTION.search(out.name)
    if match is None:
        return
    file = out.with_name(out.name[: match.start()] or "output.gpkg")
    new = file.with_name(f"{file.stem}-out{file.suffix}")
    raise OutputError(
        f"Output {out} names a layer inside the file {file}; Footprint writes whole files and"
        " never adds a layer to an existing one (that could destroy its other layers):"
        f" choose another output name, a new file such as {new}."
    )


def _can_create_in(folder: Path) -> bool:
    """True when a file can really be created in ``folder`` (os.access is always True for root,
    and says nothing about read-only mounts)."""
    if not os.access(folder, os.W_OK):
        return False
    probe = folder / probe_name(uuid.uuid4().hex[:8])
    try:
        probe.touch(exist_ok=False)
    except OSError:
        return False
    probe.unlink(missing_ok=True)
    return True


def temporary_sibling(out: Path) -> Path:
    """A temporary path next to ``out`` with the same extension (so drivers match), named by
    this process (see :mod:`engine.geo.temporary`). A shapefile's is ``.shp`` in lower case,
    as OGR writes its parts whatever the case asked for (``B.SHP``)."""
    tmp = out.with_name(part_name(out, uuid.uuid4().hex[:8]))
    return tmp.with_suffix(".shp") if out.suffix.lower() == ".shp" else tmp


@dataclass(frozen=True)
class Input:
    """A file a command reads, and how to name it to a user (``the input raster a.tif``)."""

    path: str
    what: str


def file_input(role: str, path: str | os.PathLike[str] | None) -> list[Input]:
    """``path`` as an input of ``role`` (none when not given)."""
    return [Input(str(path), f"the {role} {path}")] if path else []


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """True when ``a`` and ``b`` are one file: :func:`os.path.samefile` when both exist (links,
    other spellings), else the same resolved path."""
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    try:
        if pa.exists() and pb.exists():
            return os.path.samefile(pa, pb)
        return pa.resolve() == pb.resolve()
    except (OSError, RuntimeError):
        return pa.absolute() == pb.absolute()


def prepare_outputs(
    outputs: Mapping[str, str | os.PathLike[str] | None], inputs: Iterable[Input]
) -> None:
    """What every command does before any work: refuse an output that is an input
    (:func:`check_not_inputs`), then remove what dead runs left in the outputs' folders and
    the temporary folder (:func:`engine.geo.temporary.sweep_stale`)."""
    check_not_inputs(outputs, inputs)
    sweep_stale(Path(p).expanduser().absolute().parent for p in outputs.values() if p)


def check_not_inputs(
    outputs: Mapping[str, str | os.PathLike[str] | None], inputs: Iterable[Input]
) -> None:
    """Refuse, before any work, an output that is one of the ``inputs`` or another output.

    ``outputs`` maps how each output is called (``output``, ``report``) to its path (None:
    not written).

    Raises:
        OutputError: naming the output and the input it would destroy.
    """
    named = [(name, Path(path)) for name, path in outputs.items() if path]
    inputs = list(inputs)
    for i, (name, out) in enumerate(named):
        for other, earlier in named[:i]:
            if same_file(out, earlier):
                raise OutputError(
                    f"The {other} and the {name} are the same file {out}; give them different"
                    " names."
                )
        for item in inputs:
            if same_file(out, item.path):
                raise OutputError(
                    f"{name[0].upper()}{name[1:]} {out} is {item.what}; choose another {name}"
                    " name (writing it would destroy that input)."
                )


def _sidecars(path: Path) -> list[Path]:
    """The GDAL/OGR files that go with ``path`` (.aux.xml, -wal, -shm, shapefile parts)."""
    candidates = [Path(str(path) + ".aux.xml"), Path(str(path) + "-wal")]
    candidates += [Path(str(path) + "-shm"), Path(str(path) + "-journal")]
    if path.suffix.lower() == ".shp":
        candidates += [path.with_suffix(s) for s in (".shx", ".dbf", ".prj", ".cpg", ".qix")]
    return candidates


def _remove(path: Path, keep_main: bool = False) -> None:
    """Remove a file (unless ``keep_main``) and its sidecars."""
    for candidate in _sidecars(path) + ([] if keep_main else [path]):
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
            if not out.parent.is_dir():
                raise OutputError(
                    f"Writing {out} failed: its folder was removed or renamed during the run;"
                    " choose an existing folder. Nothing was written."
                )
            raise OutputError(
                f"Writing {out} failed: its temporary file {tmp.name} disappeared during the run"
                " (removed by another program?). Nothing was written."
            )
        # the old file is replaced in one step (os.replace): if that fails, it is still there;
        # its sidecars go first (a stale -wal or .aux.xml must not meet the new file)
        if out.exists():
            _remove(out, keep_main=out.suffix.lower() != ".shp")
        _rename(tmp, out)
    except FootprintError:
        _remove(tmp)
        raise
    except BaseException as exc:
        _remove(tmp)
        why = write_failure(exc)
        if why is None:
            raise
        raise OutputError(f"Writing {out} failed: {why}. Nothing was written.") from exc
