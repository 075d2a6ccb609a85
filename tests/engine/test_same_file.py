"""An output that is an input is refused before any work, naming the input (issue 26)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio

from engine.config import PredictConfig, RasterizeConfig
from engine.errors import OutputError
from engine.events import NullProgress
from engine.geo.outputs import Input, check_not_inputs, same_file
from engine.geo.rasters import raster_inputs
from engine.predict import predict
from engine.rasterize import rasterize_labels
from tests.engine import fuzz


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The cases' inputs, made once (each case works on its own copy)."""
    folder = tmp_path_factory.mktemp("inputs")
    fuzz.make_same_file_inputs(folder)
    return folder


@pytest.mark.parametrize("name", list(fuzz.SAME_FILE_CASES))
def test_an_output_that_is_an_input_is_refused(name: str, inputs: Path, tmp_path: Path) -> None:
    """Every command x input kind (the fuzz suite's cases): exit 1, the input named, every
    file as it was."""
    shutil.copytree(inputs, tmp_path / "case")
    outcome = fuzz.same_file_case(name, tmp_path / "case")
    assert not outcome.problem, outcome.printed
    assert "choose another" in outcome.message


def test_the_fuzz_suite_refuses_every_output_that_is_an_input(tmp_path: Path) -> None:
    outcomes = fuzz.same_file(tmp_path, ["predict / VRT source", "evaluate / reference layer"])
    assert [o.problem for o in outcomes] == ["", ""]


def test_messages_say_which_input(inputs: Path) -> None:
    chip = inputs / "chips" / "a.tif"
    with pytest.raises(OutputError) as caught:
        check_not_inputs({"output": chip}, raster_inputs(str(inputs / "chips")))
    assert str(caught.value) == (
        f"Output {chip} is {chip}, a file of the input raster {inputs / 'chips'}; choose another"
        " output name (writing it would destroy that input)."
    )
    source = inputs / "mosaic-source.tif"
    with pytest.raises(OutputError, match=f"a source file of the VRT {inputs / 'mosaic.vrt'}"):
        check_not_inputs({"output": source}, raster_inputs(str(inputs / "mosaic.vrt")))
    with pytest.raises(OutputError, match="The output and the report are the same file"):
        check_not_inputs({"output": chip, "report": chip}, [])


def test_links_and_other_spellings_are_the_same_file(inputs: Path, tmp_path: Path) -> None:
    scene = inputs / "scene.tif"
    link = tmp_path / "link.tif"
    link.symlink_to(scene)
    hard = tmp_path / "hard.tif"
    os.link(scene, hard)
    spelled = inputs / "chips" / ".." / "scene.tif"
    for other in (link, hard, spelled):
        assert same_file(other, scene)
    assert same_file(tmp_path / "new" / ".." / "x.tif", tmp_path / "x.tif")  # neither exists
    assert not same_file(tmp_path / "x.tif", scene)
    with pytest.raises(OutputError, match="is the input raster"):
        check_not_inputs({"output": hard}, [Input(str(scene), f"the input raster {scene}")])


def test_a_different_existing_output_is_still_replaced(inputs: Path, tmp_path: Path) -> None:
    """--overwrite onto an existing file that is no input works as before."""
    scene = tmp_path / "scene.tif"
    fuzz.make_geotiff(scene)
    mask, prob = tmp_path / "mask.tif", tmp_path / "prob.tif"
    mask.write_bytes(b"an old mask")
    prob.write_bytes(b"an old probability raster")
    rasterize_labels(
        RasterizeConfig(
            raster=str(scene), labels=(str(inputs / "labels.gpkg"),), output=str(mask),
            overwrite=True,
        ),
        NullProgress(),
    )  # fmt: skip
    predict(
        PredictConfig(
            raster=str(scene), model=str(inputs / "model.pt"), output=str(prob), overwrite=True,
            device="cpu",
        ),
        NullProgress(),
    )  # fmt: skip
    with rasterio.open(mask) as m, rasterio.open(prob) as p:
        assert m.read(1).max() == 1 and p.count == 1
        assert np.isfinite(p.read(1)).all()
    assert sorted(f.name for f in tmp_path.iterdir()) == ["mask.tif", "prob.tif", "scene.tif"]
