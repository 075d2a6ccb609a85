"""scripts/setup.sh refuses, before installing anything, a disk without room for the packages."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="setup.sh is for Debian")
def test_setup_refuses_a_disk_without_room_and_says_how_to_fix_it(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    env = dict(os.environ, FOOTPRINT_VENV=str(venv), FOOTPRINT_SETUP_NEED_MB=str(10**9))
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "setup.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if "Debian packages present" not in result.stdout:
        pytest.skip("QGIS's Debian packages are not installed here (setup.sh would install them)")
    assert result.returncode == 1
    assert "SET-UP FAILED" in result.stderr and "GB free on the disk of" in result.stderr
    assert "FOOTPRINT_VENV" in result.stderr and "TMPDIR" in result.stderr
    assert "Installing pinned Python packages" not in result.stdout
    assert not (venv / ".footprint-requirements").exists()
    assert not list((venv / "lib").glob("python3*/site-packages/torch"))
