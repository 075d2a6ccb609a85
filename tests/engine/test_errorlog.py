"""The error log: per user, private (0600 in a 0700 folder), never through a link, rotated."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest

import engine.errorlog as errorlog
from engine.errorlog import BACKUPS, LOG_NAME, MAX_BYTES, log_traceback


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No private fallback folder from an earlier test; the temporary folder is the test's."""
    monkeypatch.setattr(errorlog, "_FALLBACK", None)
    shared = tmp_path / "shared-tmp"
    shared.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(shared))


def _error() -> KeyError:
    try:
        raise KeyError("a bug")
    except KeyError as exc:
        return exc


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_log_and_its_folder_are_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FOOTPRINT_LOG_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    old = os.umask(0o022)
    try:
        log = log_traceback(_error(), "python -m engine detect")
    finally:
        os.umask(old)
    assert log == tmp_path / "cache" / "footprint" / "logs" / LOG_NAME
    assert "KeyError: 'a bug'" in log.read_text()
    assert _mode(log) == 0o600
    assert _mode(log.parent) == 0o700 and _mode(log.parent.parent) == 0o700


def test_an_existing_log_is_made_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOOTPRINT_LOG_DIR", str(tmp_path))
    (tmp_path / LOG_NAME).write_text("older\n")
    (tmp_path / LOG_NAME).chmod(0o644)
    log = log_traceback(_error())
    assert log == tmp_path / LOG_NAME and _mode(log) == 0o600
    assert log.read_text().startswith("older\n")


def test_a_link_at_the_log_is_not_followed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another user's link at the log's path (the old fixed /tmp name, or in the log folder):
    the file it points to is untouched and the log goes to a new private folder."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    shared = Path(tempfile.gettempdir())
    (shared / LOG_NAME).symlink_to(victim)  # the old fallback
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / LOG_NAME).symlink_to(victim)
    monkeypatch.setenv("FOOTPRINT_LOG_DIR", str(logs))
    log = log_traceback(_error())
    assert victim.read_text() == "precious\n"
    assert log is not None and log.parent not in (logs, shared)
    assert log.parent.parent == shared and _mode(log.parent) == 0o700 and _mode(log) == 0o600
    assert "KeyError" in log.read_text()
    assert log_traceback(_error()) == log  # one private folder per process


def test_unwritable_cache_falls_back_to_a_private_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the log folder should be")
    monkeypatch.setenv("FOOTPRINT_LOG_DIR", str(blocker / "logs"))
    log = log_traceback(_error())
    assert log is not None and log.name == LOG_NAME
    assert log.parent.name.startswith("footprint-logs-")
    assert _mode(log.parent) == 0o700 and _mode(log) == 0o600
    assert not (Path(tempfile.gettempdir()) / LOG_NAME).exists()


def test_no_writable_folder_at_all_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import engine.rasterize as rasterize_module
    from engine.cli import main

    def bug(config: object, progress: object) -> None:
        raise KeyError("a bug")

    def no_folder(*args: object, **kwargs: object) -> str:
        raise PermissionError("no temporary folder")

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("FOOTPRINT_LOG_DIR", str(blocker / "logs"))
    monkeypatch.setattr(tempfile, "mkdtemp", no_folder)
    monkeypatch.setattr(rasterize_module, "rasterize_labels", bug)
    code = main(["rasterize-labels", "--raster", "x.tif", "--label", "y.gpkg", "--output", "z"])
    err = capsys.readouterr().err
    assert code == 1 and "Internal error (please report it): 'a bug'" in err
    assert "could not be written to a log file" in err and "Traceback" not in err


def test_the_log_rotates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    logs = tmp_path / "logs"
    monkeypatch.setenv("FOOTPRINT_LOG_DIR", str(logs))
    big = RuntimeError("x" * 300_000)
    for _ in range(30):  # ~9 MB of tracebacks
        log_traceback(big)
    files = sorted(p.name for p in logs.iterdir())
    assert files == [LOG_NAME] + [f"{LOG_NAME}.{i}" for i in range(1, BACKUPS + 1)]
    for path in logs.iterdir():
        assert path.stat().st_size <= MAX_BYTES and _mode(path) == 0o600


def test_a_huge_message_is_cut(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOOTPRINT_LOG_DIR", str(tmp_path / "logs"))
    log = log_traceback(RuntimeError("start " + "é" * 3_000_000 + " end"))
    assert log is not None and log.stat().st_size <= MAX_BYTES
    text = log.read_text()
    assert "RuntimeError: start" in text and text.rstrip().endswith(" end") and "bytes cut" in text
