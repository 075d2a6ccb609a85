"""Temporaries are named by their run, removed when the command ends, and swept at the next
start when their run died (issue 26: cancel leaves debris)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio

from engine.cli import main
from engine.geo import temporary
from engine.geo.outputs import temporary_sibling
from engine.geo.temporary import HOST, make_scratch, remove_scratch, sweep_stale, tag
from tests.engine import fuzz

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def temp_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary folder of this test's own (for this process and the engines it starts)."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    monkeypatch.setenv("TMPDIR", str(folder))
    return folder


def _dead_pid() -> int:
    """The id of a process that has ended."""
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    return done.pid


def test_temporary_names_carry_the_owner() -> None:
    part = temporary_sibling(Path("/data/out.tif"))
    assert part.parent == Path("/data")
    assert part.name.startswith(f".out.part-{os.getpid()}-{HOST}-") and part.suffix == ".tif"
    assert temporary.work_prefix() == f".footprint-{tag()}-"
    assert temporary.scratch_prefix("vrt") == f"footprint-vrt-{tag()}-"


def test_sweep_removes_only_what_dead_runs_left(tmp_path: Path, temp_folder: Path) -> None:
    dead, alive = _dead_pid(), os.getpid()
    other_host = "000000" if HOST != "000000" else "111111"
    stale = [
        f".out.part-{dead}-{HOST}-0123abcd.tif",
        f".out.part-{dead}-{HOST}-0123abcd.tif.aux.xml",
        f".roofs.part-{dead}-{HOST}-89abcdef.shx",
        f".roofs.part-{dead}-{HOST}-89abcdef.gpkg-journal",
        f".footprint-probe-{dead}-{HOST}-0123abcd",
    ]
    kept = [
        f".out.part-{alive}-{HOST}-0123abcd.tif",  # a run still going
        f".out.part-{dead}-{other_host}-0123abcd.tif",  # another machine's, on a shared folder
        f".out.part-{dead}-{HOST}-0123abcd.tif.bak",  # not a name the engine makes
        f"out.part-{dead}-{HOST}-0123abcd.tif",
        ".out.part-0123abcd.tif",  # an older engine's: no owner
        ".footprint-complete",
        "roofs.gpkg",
    ]
    for name in stale + kept:
        (tmp_path / name).write_text("x")
    work = tmp_path / f".footprint-{dead}-{HOST}-ab_cd123"
    (work / "inner").mkdir(parents=True)
    (work / "inner" / "mosaic.vrt").write_text("x")
    live_work = tmp_path / f".footprint-{alive}-{HOST}-ab_cd123"
    live_work.mkdir()
    scratch = temp_folder / f"footprint-vrt-{dead}-{HOST}-abcdefgh"
    scratch.mkdir()
    (scratch / "mosaic.vrt").write_text("x")
    foreign = temp_folder / f"footprint-vrt-{dead}-{HOST}-abc"  # not tempfile's 8 characters
    foreign.mkdir()
    removed = sweep_stale([tmp_path])
    assert sorted(p.name for p in removed) == sorted([*stale, work.name, scratch.name])
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {*kept, live_work.name, "tmp"}
    assert {p.name for p in temp_folder.iterdir()} == {foreign.name}


def test_scratch_folders_go_when_the_command_ends(
    tmp_path: Path, temp_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Train mosaics a folder of chips in a VRT of the temporary folder: gone when the
    command ends, here with an error."""
    (tmp_path / "chips").mkdir()
    fuzz.make_geotiff(tmp_path / "chips" / "a.tif")
    fuzz.make_geotiff(tmp_path / "chips" / "b.tif")
    made = make_scratch("vrt")
    remove_scratch()
    assert not made.exists()
    import engine.geo.rasters as rasters_module

    made_here: list[Path] = []

    def spy(kind: str) -> Path:
        made_here.append(make_scratch(kind))
        return made_here[-1]

    monkeypatch.setattr(rasters_module, "make_scratch", spy)
    empty = tmp_path / "none.geojson"
    empty.write_text('{"type": "FeatureCollection", "features": []}')
    argv = ["train", "--raster", str(tmp_path / "chips"), "--label", str(empty), "--events"]
    argv += ["quiet", "--output", str(tmp_path / "m.pt"), "--architecture", "compact"]
    assert main(argv) == 1  # no building polygons: after the VRT was made
    assert len(made_here) == 1 and made_here[0].parent == temp_folder
    assert not list(temp_folder.glob("footprint-*"))


def _write_scene(path: Path, side: int) -> None:
    rng = np.random.default_rng(0)
    with rasterio.open(
        path, "w", driver="GTiff", width=side, height=side, count=3, dtype="uint8",
        crs=fuzz.CRS, transform=fuzz.ORIGIN, tiled=True, blockxsize=256, blockysize=256,
    ) as dst:  # fmt: skip
        dst.write(rng.integers(0, 255, size=(3, side, side), dtype=np.uint8))


def _kill_when(argv: list[str], temp_folder: Path, appeared: Callable[[], list[Path]]) -> int:
    """Start the engine with ``argv``, SIGKILL it once ``appeared()`` finds something (no
    clean-up can run then); return its process id."""
    env = {**os.environ, "TMPDIR": str(temp_folder)}
    command = [sys.executable, "-m", "engine", *argv, "--events", "quiet", "--device", "cpu"]
    engine = subprocess.Popen(command, cwd=REPO, env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not appeared():
            assert engine.poll() is None, engine.stderr.read() if engine.stderr else ""
            assert time.monotonic() < deadline, "the engine made no temporary"
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        engine.send_signal(signal.SIGKILL)
        engine.wait()
    return engine.pid


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_killed_runs_leave_nothing_after_the_next_run(tmp_path: Path, temp_folder: Path) -> None:
    """Train (its VRT of a folder in the temporary folder) and predict (writing its output)
    are SIGKILLed; the next command on the folder leaves it as the user had it, plus its own
    output, and the temporary folder without their scratch."""
    folder = tmp_path / "project"
    (folder / "chips").mkdir(parents=True)
    _write_scene(folder / "chips" / "a.tif", 2048)
    fuzz.make_geotiff(folder / "chips" / "b.tif")  # two files: a VRT mosaics them
    fuzz.make_model(folder / "model.pt")
    fuzz.make_vector("GPKG")(folder / "labels.gpkg")
    users = sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))
    chips, model, labels = (str(folder / n) for n in ("chips", "model.pt", "labels.gpkg"))
    train = ["train", "--raster", chips, "--label", labels, "--output", str(folder / "m.pt")]
    train += ["--architecture", "compact", "--encoder", "none", "--tile-size", "64"]
    trainer = _kill_when(train, temp_folder, lambda: list(temp_folder.glob("footprint-vrt-*")))
    assert list(temp_folder.glob(f"footprint-vrt-{trainer}-*"))  # (predict will sweep it)
    predict = ["predict", "--raster", chips, "--model", model, "--margin", "8"]
    predict += ["--output", str(folder / "prob.tif"), "--batch-size", "2"]
    predictor = _kill_when(predict, temp_folder, lambda: list(folder.glob(".prob.part-*")))
    debris = sorted(p.name for p in folder.iterdir() if p.name.startswith("."))
    assert any(n.startswith(f".prob.part-{predictor}-") for n in debris), debris
    assert any(n.startswith(f".footprint-{predictor}-") for n in debris), debris
    mask = folder / "mask.tif"
    code = main(
        ["rasterize-labels", "--raster", str(folder / "chips" / "a.tif"), "--events", "quiet",
         "--label", labels, "--output", str(mask), "--window-size", "512"]
    )  # fmt: skip
    assert code == 0
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) == sorted(
        [*users, "mask.tif"]
    )
    assert not list(temp_folder.glob("footprint-*"))
