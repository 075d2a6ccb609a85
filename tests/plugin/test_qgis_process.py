"""Headless use: the plugin's algorithms through the ``qgis_process`` command line."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from .helpers import (
    REPO,
    UTM,
    UTM45N,
    feature_count,
    json_tail,
    layer_epsg,
    make_scene,
    make_xyz_tiles,
    scene_array,
    synthetic_model,
    synthetic_scenes,
    write_boxes,
    write_raster,
    xyz_uri,
)

pytestmark = pytest.mark.usefixtures("engine_python")


@pytest.fixture(scope="module")
def qgis_process(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Any]:
    """Run ``qgis_process <args>`` with the plugin enabled; returns (process, JSON or None)."""
    found = subprocess.run(
        ["bash", str(REPO / "scripts" / "qgis_process_path.sh")], capture_output=True, text=True
    )
    binary = found.stdout.strip()
    if found.returncode != 0 or not binary:
        pytest.skip("qgis_process not found (bash scripts/setup.sh installs QGIS)")
    home = tmp_path_factory.mktemp("qgis_process")
    (home / "plugins").mkdir()
    (home / "plugins" / "footprint").symlink_to(REPO, target_is_directory=True)
    env = {
        **os.environ,
        "HOME": str(home / "home"),  # a fresh QGIS profile, not the user's
        "QGIS_PLUGINPATH": str(home / "plugins"),
        "QT_QPA_PLATFORM": "offscreen",
        "FOOTPRINT_PYTHON": os.environ["FOOTPRINT_PYTHON"],
    }

    def run(
        *args: str, cwd: Path = home, **extra: str
    ) -> tuple[subprocess.CompletedProcess[str], Any]:
        """``extra``: more environment variables."""
        done = subprocess.run(
            [binary, *args], capture_output=True, text=True, env={**env, **extra}, timeout=300,
            cwd=cwd,
        )  # fmt: skip
        return done, json_tail(done.stdout)

    enabled, _ = run("plugins", "enable", "footprint")
    assert enabled.returncode == 0, enabled.stdout + enabled.stderr
    return run


def test_detect_then_evaluate_with_qgis_process(
    qgis_process: Callable[..., Any], tmp_path: Path
) -> None:
    _, test = synthetic_scenes()
    trained = synthetic_model()
    buildings = tmp_path / "buildings.gpkg"
    done, detected = qgis_process(
        "--json",
        "run",
        "footprint:detect",
        "--",
        f"INPUT={test.raster}",
        f"MODEL={trained['OUTPUT']}",
        "MIN_AREA=10",
        f"OUTPUT={buildings}",
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = detected["results"]
    assert results["OUTPUT"] == str(buildings)
    assert 14 <= results["BUILDINGS"] == feature_count(buildings) <= 18
    assert layer_epsg(buildings) == UTM
    assert results["USED_THRESHOLD"] == pytest.approx(trained["THRESHOLD"])
    assert any("--min-area-m2 10.0" in line for line in detected["log"]["info"])
    done, evaluated = qgis_process(
        "--json",
        "run",
        "footprint:evaluate",
        "--",
        f"PREDICTED={buildings}",
        f"REFERENCE={test.labels}",
        f"AREA={test.raster}",
        f"REPORT={tmp_path / 'scores.json'}",
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    scores = evaluated["results"]
    assert scores["OBJECT_F1"] > 0.8 and scores["PIXEL_IOU"] > 0.6, scores
    assert (tmp_path / "scores.json").is_file() and scores["OUTPUT"] is None


def test_detect_without_a_model_uses_the_starter_model_with_qgis_process(
    qgis_process: Callable[..., Any], tmp_path: Path
) -> None:
    """No MODEL: the starter model (here the synthetic model, made the starter through
    FOOTPRINT_STARTER_MODEL), said in the log."""
    _, test = synthetic_scenes()
    trained = synthetic_model()
    buildings = tmp_path / "buildings.gpkg"
    done, detected = qgis_process(
        "--json", "run", "footprint:detect", "--", f"INPUT={test.raster}",
        f"OUTPUT={buildings}", FOOTPRINT_STARTER_MODEL=trained["OUTPUT"],
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert 14 <= detected["results"]["BUILDINGS"] == feature_count(buildings) <= 18
    info = detected["log"]["info"]
    assert any(f"Using the starter model {trained['OUTPUT']}" in line for line in info), info
    assert not any("--model" in line for line in info)


def test_detect_on_an_xyz_layer_with_qgis_process(
    qgis_process: Callable[..., Any], tmp_path: Path, compact_model: Path
) -> None:
    """A web layer given as ``wms://<its data source>`` with an extent (Web Mercator here)."""
    tiles = make_xyz_tiles(tmp_path)
    buildings = tmp_path / "buildings.gpkg"
    done, detected = qgis_process(
        "--json",
        "run",
        "footprint:detect",
        "--",
        f"INPUT=wms://{xyz_uri(tiles)}",
        f"MODEL={compact_model}",
        "EXTENT=9521242,9521342,3202179,3202248 [EPSG:3857]",
        f"OUTPUT={buildings}",
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert detected["results"]["OUTPUT"] == str(buildings) and layer_epsg(buildings) == UTM45N
    assert any("Rendering raster layer" in line for line in detected["log"]["info"])


def test_qgis_process_reports_the_engine_error(
    qgis_process: Callable[..., Any], tmp_path: Path
) -> None:
    _, test = synthetic_scenes()
    fake = tmp_path / "not_a_model.pt"
    fake.write_text("this is not a model")
    done, _ = qgis_process(
        "run",
        "footprint:detect",
        "--",
        f"INPUT={test.raster}",
        f"MODEL={fake}",
        f"OUTPUT={tmp_path / 'b.gpkg'}",
    )
    assert done.returncode != 0
    assert "ModelFileError" in done.stdout + done.stderr
    assert not (tmp_path / "b.gpkg").exists()


def test_qgis_process_names_a_damaged_raster(
    qgis_process: Callable[..., Any], tmp_path: Path
) -> None:
    """A raster cut off mid-way: the engine's message, no traceback, no output."""
    _, test = synthetic_scenes()
    cut = tmp_path / "cut.tif"
    whole = Path(test.raster).read_bytes()
    cut.write_bytes(whole[: len(whole) // 3])
    done, _ = qgis_process(
        "run",
        "footprint:detect",
        "--",
        f"INPUT={cut}",
        f"MODEL={synthetic_model()['OUTPUT']}",
        f"OUTPUT={tmp_path / 'b.gpkg'}",
    )
    printed = done.stdout + done.stderr
    assert done.returncode != 0
    assert "RasterError" in printed and "damaged or incomplete" in printed and str(cut) in printed
    assert "Traceback" not in printed
    assert not (tmp_path / "b.gpkg").exists()


def test_relative_paths_are_read_from_the_working_folder(
    qgis_process: Callable[..., Any], tmp_path: Path
) -> None:
    """``INPUT=in/mask.tif`` means the file in qgis_process's folder, not the engine's."""
    work = tmp_path / "work"
    (work / "in").mkdir(parents=True)
    scene = make_scene(work / "in", "scene", seed=0)
    _, roofs = scene_array(128, seed=0)
    mask = np.zeros((1, 128, 128), dtype=np.float32)
    for r0, c0, h, w in roofs:
        mask[0, r0 : r0 + h, c0 : c0 + w] = 1.0
    write_raster(work / "in" / "mask.tif", mask)
    done, vectorized = qgis_process(
        "--json",
        "run",
        "footprint:vectorize",
        "--",
        "INPUT=in/mask.tif",
        "SIMPLIFY=0",
        "OUTPUT=out/buildings.gpkg",
        cwd=work,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    buildings = work / "out" / "buildings.gpkg"
    assert vectorized["results"]["OUTPUT"] == str(buildings)
    assert feature_count(buildings) == vectorized["results"]["BUILDINGS"] == len(scene.boxes)
    done, evaluated = qgis_process(
        "--json",
        "run",
        "footprint:evaluate",
        "--",
        "PREDICTED=out/buildings.gpkg",
        "REFERENCE=in/scene.gpkg",
        "AREA=in/scene.tif",
        "REPORT=scores.json",
        cwd=work,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert evaluated["results"]["OBJECT_F1"] == 1.0 and (work / "scores.json").is_file()


def test_improve_then_detect_with_the_improved_model_with_qgis_process(
    qgis_process: Callable[..., Any], tmp_path: Path
) -> None:
    """The mapper's loop headless: improve the starter model (here the synthetic model, made
    the starter through FOOTPRINT_STARTER_MODEL) with the corrected buildings of the area
    checked (the whole training scene), one epoch; then detect with the improved model."""
    train, test = synthetic_scenes()
    starter = synthetic_model()["OUTPUT"]
    checked = write_boxes(tmp_path / "checked.gpkg", [train.extent])
    improved = tmp_path / "improved.pt"
    done, result = qgis_process(
        "--json", "run", "footprint:improve", "--", f"INPUT={train.raster}",
        f"BUILDINGS={train.labels}", f"CHECKED_AREA={checked}", "EPOCHS=1",
        f"OUTPUT={improved}", FOOTPRINT_STARTER_MODEL=starter,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    outputs = result["results"]
    assert outputs["OUTPUT"] == str(improved) and improved.is_file()
    report = json.loads((Path(outputs["REPORT_DIR"]) / "improve.json").read_text())
    assert report["start_model"] == starter and outputs["EPOCHS_RUN"] == 1
    assert outputs["BEFORE_IOU"] == pytest.approx(report["before"]["val_iou"])
    assert outputs["AFTER_IOU"] == pytest.approx(report["after"]["val_iou"])
    assert outputs["IMPROVED"] == int(report["improved"])
    info = result["log"]["info"]
    assert any(line.startswith("On the part held back:") for line in info), info
    buildings = tmp_path / "buildings.gpkg"
    done, detected = qgis_process(
        "--json", "run", "footprint:detect", "--", f"INPUT={test.raster}",
        f"MODEL={improved}", f"OUTPUT={buildings}",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert detected["results"]["BUILDINGS"] == feature_count(buildings) > 0
    assert any(f"--model {improved}" in line for line in detected["log"]["info"])
