"""Bad inputs: each gives a QgsProcessingException carrying the engine's message (no
traceback), writes nothing, and QGIS keeps running; labels in another CRS just work."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from qgis.core import QgsProcessingException

from .helpers import (
    WGS84,
    make_scene,
    raster_info,
    run,
    scene_array,
    synthetic_model,
    write_boxes,
    write_raster,
)

pytestmark = pytest.mark.usefixtures("engine_python")


def engine_error(alg_id: str, parameters: dict[str, Any]) -> str:
    """Run ``alg_id``; it must fail with a plain QgsProcessingException: its message."""
    with pytest.raises(QgsProcessingException) as caught:
        run(alg_id, parameters)
    assert type(caught.value) is QgsProcessingException
    message = str(caught.value)
    assert "Traceback" not in message, message
    return message


def still_running(tmp_path: Path) -> None:
    """QGIS and the provider still work after the failure."""
    scene = make_scene(tmp_path, "after")
    result = run(
        "footprint:rasterizelabels",
        scene.mask_parameters(tmp_path / "ok.tif"),
    )
    assert result["BUILDINGS"] == 16


def test_raster_without_crs(tmp_path: Path) -> None:
    data, _ = scene_array(64, seed=2)
    raster = write_raster(tmp_path / "no_crs.tif", data, epsg=None)
    labels = write_boxes(tmp_path / "labels.gpkg", [(500_000, 3_699_980, 500_010, 3_699_990)])
    out = tmp_path / "mask.tif"
    message = engine_error(
        "footprint:rasterizelabels",
        {"INPUT": str(raster), "LABELS": str(labels), "OUTPUT": str(out)},
    )
    assert "has no coordinate reference system" in message and "Assign Projection" in message
    assert str(raster) in message and not out.exists()
    still_running(tmp_path)


def test_labels_in_another_crs_just_work(tmp_path: Path) -> None:
    utm = make_scene(tmp_path, "utm")
    lonlat = make_scene(tmp_path, "lonlat", labels_epsg=WGS84)  # the same roofs, in EPSG:4326
    result = run(
        "footprint:evaluate",
        {"PREDICTED": str(utm.labels), "REFERENCE": str(lonlat.labels), "AREA": str(utm.raster)},
    )
    assert result["OBJECT_F1"] == 1.0 and result["PIXEL_F1"] > 0.97, result


def test_file_that_is_not_a_model(tmp_path: Path) -> None:
    scene = make_scene(tmp_path, "scene")
    fake = tmp_path / "weights.pt"
    fake.write_bytes(b"PK\x03\x04 not a model at all")
    out = tmp_path / "buildings.gpkg"
    message = engine_error(
        "footprint:detect", {"INPUT": str(scene.raster), "MODEL": str(fake), "OUTPUT": str(out)}
    )
    assert message.startswith("ModelFileError: ") and str(fake) in message, message
    assert not out.exists()
    still_running(tmp_path)


def test_band_count_mismatch(tmp_path: Path) -> None:
    data, _ = scene_array(64, seed=4)
    single = write_raster(tmp_path / "one_band.tif", data[:1])
    out = tmp_path / "p.tif"
    message = engine_error(
        "footprint:predict",
        {"INPUT": str(single), "MODEL": synthetic_model()["OUTPUT"], "OUTPUT": str(out)},
    )
    assert "trained on 3 bands" in message and "has 1" in message, message
    assert not out.exists()
    still_running(tmp_path)


@pytest.fixture
def unwritable_folder(tmp_path: Path) -> Callable[[], Path]:
    """A folder where files cannot be created (root ignores permissions: use /sys then)."""

    def make() -> Path:
        if os.geteuid() == 0:
            if not Path("/sys/kernel").is_dir():
                pytest.skip("running as root without /sys: no folder is unwritable")
            return Path("/sys")  # sysfs refuses new files, even to root
        folder = tmp_path / "read_only"
        folder.mkdir()
        folder.chmod(0o555)
        return folder

    yield make
    if (tmp_path / "read_only").exists():
        (tmp_path / "read_only").chmod(0o755)


def test_unwritable_output(tmp_path: Path, unwritable_folder: Callable[[], Path]) -> None:
    scene = make_scene(tmp_path, "scene")
    folder = unwritable_folder()
    message = engine_error(
        "footprint:rasterizelabels",
        scene.mask_parameters(folder / "mask.tif"),
    )
    assert str(folder) in message, message
    assert any(text in message for text in ("not writable", "Permission denied")), message
    assert not list(folder.glob("*mask*"))
    still_running(tmp_path)


def test_missing_engine_interpreter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_settings: None
) -> None:
    monkeypatch.setenv("FOOTPRINT_PYTHON", "/nonexistent/python")
    scene = make_scene(tmp_path, "scene")
    message = engine_error(
        "footprint:rasterizelabels",
        scene.mask_parameters(tmp_path / "m.tif"),
    )
    assert "/nonexistent/python does not exist" in message, message
    assert "Install engine" in message and "FOOTPRINT_PYTHON" in message
    monkeypatch.undo()
    still_running(tmp_path)
    assert raster_info(tmp_path / "ok.tif")["size"] == (128, 128)


def test_output_under_a_file(tmp_path: Path) -> None:
    scene = make_scene(tmp_path, "scene")
    blocker = tmp_path / "taken"
    blocker.write_text("a file, not a folder")
    message = engine_error(
        "footprint:rasterizelabels",
        scene.mask_parameters(f"{blocker}/m.tif"),
    )
    assert f"cannot create the folder {blocker}" in message and "is a file" in message
    still_running(tmp_path)


def test_damaged_raster_and_model_give_the_engines_message(tmp_path: Path) -> None:
    """A GeoTIFF cut off a third of the way in (it opens, then a window cannot be read) and a
    model file cut in half: the engine's message naming the file, nothing written."""
    import numpy as np

    rng = np.random.default_rng(3)
    data = rng.integers(0, 255, size=(3, 600, 600)).astype(np.uint8)
    raster = write_raster(tmp_path / "cut.tif", data)
    whole = raster.read_bytes()
    raster.write_bytes(whole[: len(whole) // 3])
    model = synthetic_model()["OUTPUT"]
    out = tmp_path / "b.gpkg"
    message = engine_error(
        "footprint:detect", {"INPUT": str(raster), "MODEL": model, "OUTPUT": str(out)}
    )
    assert message.startswith("RasterError:") and str(raster) in message
    assert "damaged or incomplete" in message and "gdalinfo -checksum" in message
    cut_model = tmp_path / "cut.pt"
    blob = Path(model).read_bytes()
    cut_model.write_bytes(blob[: len(blob) // 2])
    scene = make_scene(tmp_path, "ok")
    message = engine_error(
        "footprint:predict",
        {"INPUT": str(scene.raster), "MODEL": str(cut_model), "OUTPUT": str(tmp_path / "p.tif")},
    )
    assert message.startswith("ModelFileError:") and str(cut_model) in message
    assert "damaged or incomplete" in message
    assert not out.exists() and not (tmp_path / "p.tif").exists()
    still_running(tmp_path)


def test_a_plain_scheduler_of_another_machine_is_refused(tmp_path: Path) -> None:
    """Dask runs the code a scheduler sends: a plain tcp:// one elsewhere needs the opt-in."""
    scene = make_scene(tmp_path, "scene")
    out = tmp_path / "buildings.gpkg"
    parameters = {
        "INPUT": str(scene.raster),
        "MODEL": synthetic_model()["OUTPUT"],
        "SCHEDULER": "tcp://203.0.113.5:8786",
        "OUTPUT": str(out),
    }
    message = engine_error("footprint:detect", parameters)
    assert "Refusing the unencrypted scheduler address tcp://203.0.113.5:8786" in message
    assert "Allow an unencrypted scheduler on another machine" in message and not out.exists()


def test_predict_onto_its_own_raster_gives_the_engines_message(tmp_path: Path) -> None:
    """Processing always passes --overwrite: an output that is the input raster is refused
    with the engine's message, and the raster keeps its bytes."""
    scene = make_scene(tmp_path, "scene")
    before = scene.raster.read_bytes()
    message = engine_error(
        "footprint:predict",
        {
            "INPUT": str(scene.raster),
            "MODEL": synthetic_model()["OUTPUT"],
            "OUTPUT": str(scene.raster),
        },
    )
    assert f"is the input raster {scene.raster}" in message and "choose another" in message
    assert scene.raster.read_bytes() == before


def test_a_layer_inside_a_geopackage_is_refused(tmp_path: Path) -> None:
    """OUTPUT=labels.gpkg|layername=out: refused (no file of that odd name, labels kept)."""
    scene = make_scene(tmp_path, "scene")
    labels = write_boxes(tmp_path / "labels.gpkg", [(500_000, 3_699_980, 500_010, 3_699_990)])
    before = labels.read_bytes()
    out = f"{labels}|layername=buildings"
    parameters = {"INPUT": str(scene.raster), "MODEL": synthetic_model()["OUTPUT"], "OUTPUT": out}
    message = engine_error("footprint:detect", parameters)
    assert f"names a layer inside the file {labels}" in message
    assert (
        labels.read_bytes() == before
        and sorted(p.name for p in tmp_path.iterdir() if "|" in p.name) == []
    )


def test_an_output_of_no_vector_format_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    """OUTPUT=buildings.txt: GDAL's VDV driver made a folder of hidden files and detect said
    it had written the layer; now the engine's message names the extensions to use."""
    scene = make_scene(tmp_path, "scene")
    out = tmp_path / "buildings.txt"
    model = synthetic_model()["OUTPUT"]
    parameters = {"INPUT": str(scene.raster), "MODEL": model, "OUTPUT": str(out)}
    message = engine_error("footprint:detect", parameters)
    assert "has the extension .txt, of no vector format" in message and "buildings.gpkg" in message
    assert not out.exists() and not list(tmp_path.glob(".buildings*"))


def test_the_dialogs_offer_the_vector_formats_the_engine_writes(engine_python: str) -> None:
    """The provider's output formats are the engine's (engine.geo.vectors.DRIVERS, read with
    the engine's Python): the file dialogs offer nothing the engine would refuse."""
    import subprocess

    from footprint.plugin.provider import FootprintProvider

    code = "from engine.geo.vectors import DRIVERS; print(' '.join(sorted(DRIVERS)))"
    engine = subprocess.run(
        [engine_python, "-c", code],
        capture_output=True, text=True, check=True, cwd=Path(__file__).parents[2],
    ).stdout.split()  # fmt: skip
    offered = FootprintProvider().supportedOutputVectorLayerExtensions()
    assert offered[0] == "gpkg"
    assert sorted(f".{e}" for e in offered) == sorted(set(engine) - {".json"})
