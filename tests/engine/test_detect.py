"""Tests of detect: prediction and vectorization in one streaming pass."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
import torch
from affine import Affine
from scipy import ndimage
from shapely.geometry import box
from torch import nn

from engine.config import DetectConfig, PredictConfig, VectorizeConfig
from engine.detect import detect, detect_with_model
from engine.errors import CancelledError, ConfigError, OutputError
from engine.events import NullProgress, RecordingProgress
from engine.models.modelfile import ModelSpec
from engine.models.spec import spec_from_json, spec_to_json
from engine.predict import predict_with_model
from engine.vectorize import vectorize
from tests.engine.polygons.test_instances import probabilities, terraces
from tests.engine.predict_helpers import Pointwise

GRID = Affine(0.5, 0, 500_000.0, 0, -0.5, 3_700_000.0)
# Pixel rectangles (col0, row0, col1, row1); two cross the 256-pixel block seams.
RECTS = [(10, 10, 40, 30), (240, 100, 300, 140), (100, 240, 130, 290), (350, 20, 360, 60)]


class WithContact(nn.Module):
    """Building from band 1, contact from band 2 (both pointwise)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([10.0 * (x[:, :1] - 0.5), 10.0 * (x[:, 1:2] - 0.5)], dim=1)


def spec(
    classes: tuple[str, ...] = ("building",),
    threshold: float = 0.5,
    contact: float = 0.5,
    **seeds: float,
) -> ModelSpec:
    n = len(classes)
    return ModelSpec(
        architecture="test",
        encoder="none",
        in_channels=n,
        classes=classes,
        bands=tuple(range(1, n + 1)),
        mean=(0.0,) * n,
        std=(1.0,) * n,
        tile_size=64,
        resolution_m=0.5,
        threshold=threshold,
        contact_threshold=contact,
        **seeds,
    )


def write(path: Path, data: np.ndarray, transform: Affine = GRID) -> Path:
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=data.shape[2],
        height=data.shape[1],
        count=data.shape[0],
        dtype="float32",
        crs="EPSG:32616",
        transform=transform,
    ) as dst:
        dst.write(data.astype(np.float32))
    return path


def rect_raster(tmp_path: Path, rects: list[tuple[int, int, int, int]] = RECTS) -> Path:
    data = np.zeros((1, 300, 400), np.float32)
    for c0, r0, c1, r1 in rects:
        data[0, r0:r1, c0:c1] = 1.0
    return write(tmp_path / "rects.tif", data)


def world_box(c0: int, r0: int, c1: int, r1: int) -> Any:
    (x0, y0), (x1, y1) = GRID * (c0, r1), GRID * (c1, r0)
    return box(x0, y0, x1, y1)


def config(
    raster: Path,
    out: Path,
    threshold: float | None = None,
    keep: Path | None = None,
    **options: Any,
) -> DetectConfig:
    return DetectConfig(
        raster=str(raster),
        model="unused.pt",
        output=str(out),
        keep_probability=str(keep) if keep else None,
        threshold=threshold,
        **{"min_area_m2": 0.0, "hole_area_m2": 0.0, "simplify": 0.0, "window": 64, **options},
    )


def test_polygons_match_drawn_rectangles(tmp_path: Path) -> None:
    raster = rect_raster(tmp_path)
    out = tmp_path / "b.gpkg"
    result = detect_with_model(config(raster, out), Pointwise(), spec(), NullProgress())
    frame = gpd.read_file(out)
    assert result["buildings"] == len(RECTS) == len(frame)
    assert frame.crs.to_epsg() == 32616
    assert {"area_m2", "score"} <= set(frame.columns)
    expected = [world_box(*r) for r in RECTS]
    for geom in expected:
        match = frame[frame.intersects(geom.centroid)]
        assert len(match) == 1
        assert shapely.symmetric_difference(match.geometry.iloc[0], geom).area < 1e-6
        assert match["area_m2"].iloc[0] == pytest.approx(geom.area)
    assert np.allclose(frame["score"], 1 / (1 + np.exp(-5.0)), atol=1e-5)
    assert result["probability"] is None and result["threshold"] == 0.5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.gpkg", "rects.tif"]
    # every score is ~0.993: none is low confidence by default (0.75), all are at 0.999
    assert result["low_confidence"] == frame["low_confidence"].sum() == 0
    strict = config(raster, tmp_path / "s.gpkg", low_confidence=0.999)
    marked = detect_with_model(strict, Pointwise(), spec(), NullProgress())
    assert marked["low_confidence"] == len(RECTS)


def _reading_order(frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Rows sorted by top edge, then left edge (layers are written in batches: ids follow
    reading order within a batch only)."""
    bounds = frame.geometry.bounds
    return frame.iloc[np.lexsort((bounds["minx"], -bounds["maxy"]))].reset_index(drop=True)


def test_detect_equals_predict_then_vectorize(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    data = rect_raster(tmp_path)
    with rasterio.open(data) as src:
        noisy = src.read() * 0.5 + rng.random((1, 300, 400)).astype(np.float32) * 0.6
    raster = write(tmp_path / "noisy.tif", noisy)
    keep = tmp_path / "kept.tif"
    one = detect_with_model(
        config(raster, tmp_path / "one.gpkg", 0.6, keep=keep), Pointwise(), spec(), NullProgress()
    )
    prob = tmp_path / "prob.tif"
    predict_with_model(
        PredictConfig(str(raster), "unused.pt", str(prob), window=64),
        Pointwise(),
        spec(),
        NullProgress(),
    )
    vectorize(
        VectorizeConfig(
            str(prob),
            str(tmp_path / "two.gpkg"),
            threshold=0.6,
            min_area_m2=0.0,
            hole_area_m2=0.0,
            simplify=0.0,
        ),
        NullProgress(),
    )
    a, b = (_reading_order(gpd.read_file(tmp_path / n)) for n in ("one.gpkg", "two.gpkg"))
    assert one["buildings"] == len(a) == len(b) > 4
    assert all(shapely.equals(a.geometry.values, b.geometry.values))
    np.testing.assert_allclose(a["score"], b["score"], rtol=1e-9)
    np.testing.assert_allclose(a["area_m2"], b["area_m2"], rtol=1e-9)
    with rasterio.open(keep) as k, rasterio.open(prob) as p:
        np.testing.assert_array_equal(k.read(), p.read())
        assert k.profile == p.profile
    assert one["probability"] == str(keep)


def test_contact_class_splits_touching_buildings(tmp_path: Path) -> None:
    data = np.zeros((2, 300, 400), np.float32)
    data[0, 50:90, 50:130] = 1.0  # two 40x40 buildings sharing a wall at column 90
    data[1, 50:90, 89:91] = 1.0  # contact strip along the wall
    raster = write(tmp_path / "pair.tif", data)
    two = spec(("building", "contact"))
    result = detect_with_model(
        config(raster, tmp_path / "c.gpkg"), WithContact(), two, NullProgress()
    )
    assert result["buildings"] == 2
    frame = gpd.read_file(tmp_path / "c.gpkg")
    assert (
        shapely.symmetric_difference(
            frame.union_all(),
            shapely.union_all([world_box(50, 50, 89, 90), world_box(91, 50, 130, 90)]),
        ).area
        < 1e-6
    )
    single = write(tmp_path / "one-band.tif", data[:1])
    merged = detect_with_model(
        config(single, tmp_path / "m.gpkg"), Pointwise(), spec(), NullProgress()
    )
    assert merged["buildings"] == 1


def test_contact_threshold_comes_from_the_model(tmp_path: Path) -> None:
    data = np.zeros((2, 120, 200), np.float32)
    data[0, 20:60, 20:100] = 1.0  # two buildings sharing a wall at column 60
    data[1, 20:60, 59:61] = 0.4  # a faint contact strip: probability ~0.27
    raster = write(tmp_path / "faint.tif", data)
    classes = ("building", "contact")
    default = detect_with_model(
        config(raster, tmp_path / "a.gpkg"), WithContact(), spec(classes), NullProgress()
    )
    low = detect_with_model(
        config(raster, tmp_path / "b.gpkg"),
        WithContact(),
        spec(classes, contact=0.2),
        NullProgress(),
    )
    assert (default["buildings"], low["buildings"]) == (1, 2)


def test_threshold_defaults_to_the_models(tmp_path: Path) -> None:
    data = np.zeros((1, 120, 120), np.float32)
    data[0, 10:30, 10:30] = 0.62  # probability ~0.77
    data[0, 60:80, 60:80] = 0.8  # probability ~0.95
    raster = write(tmp_path / "t.tif", data)
    strict = spec(threshold=0.9)
    r1 = detect_with_model(config(raster, tmp_path / "a.gpkg"), Pointwise(), strict, NullProgress())
    r2 = detect_with_model(
        config(raster, tmp_path / "b.gpkg", 0.5), Pointwise(), strict, NullProgress()
    )
    assert (r1["threshold"], r1["buildings"]) == (0.9, 1)
    assert (r2["threshold"], r2["buildings"]) == (0.5, 2)
    with pytest.raises(ConfigError, match="Threshold"):
        detect_with_model(
            config(raster, tmp_path / "c.gpkg", 0.0), Pointwise(), strict, NullProgress()
        )


def test_resampled_detect_keeps_raster_grid(tmp_path: Path) -> None:
    """A 0.25 m raster with a 0.5 m model: polygons still land on the drawn rectangle."""
    data = np.zeros((1, 200, 200), np.float32)
    data[0, 40:120, 60:160] = 1.0
    fine = Affine(0.25, 0, 500_000.0, 0, -0.25, 3_700_000.0)
    raster = write(tmp_path / "fine.tif", data, fine)
    result = detect_with_model(
        config(raster, tmp_path / "r.gpkg"), Pointwise(), spec(), NullProgress()
    )
    assert result["resampled"] and result["buildings"] == 1
    geom = gpd.read_file(tmp_path / "r.gpkg").geometry.iloc[0]
    (x0, y0), (x1, y1) = fine * (60, 120), fine * (160, 40)
    assert shapely.symmetric_difference(geom, box(x0, y0, x1, y1)).area < 0.05 * geom.area


def test_cancel_leaves_nothing(tmp_path: Path) -> None:
    raster = rect_raster(tmp_path)
    keep = tmp_path / "p.tif"
    with pytest.raises(CancelledError):
        detect_with_model(
            config(raster, tmp_path / "b.gpkg", keep=keep, batch_size=1),
            Pointwise(),
            spec(),
            RecordingProgress(cancel_after=3),
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rects.tif"]


def test_existing_output(tmp_path: Path) -> None:
    raster = rect_raster(tmp_path)
    (tmp_path / "b.gpkg").write_text("old")
    with pytest.raises(OutputError, match="already exists"):
        detect_with_model(config(raster, tmp_path / "b.gpkg"), Pointwise(), spec(), NullProgress())
    assert (tmp_path / "b.gpkg").read_text() == "old"
    result = detect_with_model(
        config(raster, tmp_path / "b.gpkg", overwrite=True), Pointwise(), spec(), NullProgress()
    )
    assert result["buildings"] == len(RECTS)


def test_an_output_of_no_vector_format_is_refused_before_any_work(tmp_path: Path) -> None:
    raster = rect_raster(tmp_path)
    progress = RecordingProgress()
    with pytest.raises(OutputError, match=r"extension \.txt, of no vector format"):
        detect_with_model(
            config(raster, tmp_path / "b.txt", overwrite=True), Pointwise(), spec(), progress
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rects.tif"]
    assert not progress.messages


def test_detect_with_model_file(tmp_path: Path) -> None:
    from engine.models.modelfile import save_model
    from engine.models.registry import create_model

    torch.manual_seed(0)
    model = create_model("compact", "none", 1, 1)
    s = ModelSpec(
        architecture="compact",
        encoder="none",
        in_channels=1,
        classes=("building",),
        bands=(1,),
        mean=(0.5,),
        std=(0.5,),
        tile_size=32,
        resolution_m=0.5,
        threshold=0.5,
    )
    save_model(tmp_path / "m.pt", model, s)
    raster = rect_raster(tmp_path)
    cfg = replace(
        config(raster, tmp_path / "b.gpkg", keep=tmp_path / "p.tif"), model=str(tmp_path / "m.pt")
    )
    result = detect(cfg, NullProgress())
    assert Path(result["output"]).exists() and Path(result["probability"]).exists()
    assert gpd.read_file(result["output"]).crs.to_epsg() == 32616


SEPARATION = ("building", "separation")
SEEDS = {"seed_threshold": 0.5, "seed_erosion_m": 1.0, "min_seed_m2": 5.0}


def test_separation_gives_one_polygon_per_house_across_blocks(tmp_path: Path) -> None:
    """Rows of houses sharing walls, cut by the 256-pixel blocks: one polygon per house, the
    same as vectorizing the whole probability raster at once."""
    truth = terraces(7, (600, 620))
    raster = write(tmp_path / "terraces.tif", probabilities(truth, 7, gaps=True))
    keep = tmp_path / "p.tif"
    model = spec(SEPARATION, **SEEDS)
    result = detect_with_model(
        config(raster, tmp_path / "d.gpkg", keep=keep), WithContact(), model, NullProgress()
    )
    assert result["buildings"] == truth.max()
    whole = VectorizeConfig(
        str(keep), str(tmp_path / "v.gpkg"), threshold=0.5, min_area_m2=0.0, hole_area_m2=0.0,
        simplify=0.0, window_size=2048, **SEEDS,
    )  # fmt: skip
    vectorize(whole, NullProgress())  # the separation band is found by its name
    blocks = gpd.read_file(tmp_path / "d.gpkg").geometry
    at_once = gpd.read_file(tmp_path / "v.gpkg").geometry
    assert set(shapely.to_wkb(shapely.normalize(blocks.values)).tolist()) == set(
        shapely.to_wkb(shapely.normalize(at_once.values)).tolist()
    )
    plain = replace(whole, output=str(tmp_path / "plain.gpkg"), separation_band=0)
    assert vectorize(plain, NullProgress())["buildings"] < truth.max() / 3  # terraces as blobs


def test_separation_polygons_share_edges_when_simplified(tmp_path: Path) -> None:
    truth = terraces(8, (300, 400))
    raster = write(tmp_path / "terraces.tif", probabilities(truth, 8))
    out = tmp_path / "s.gpkg"
    model = spec(SEPARATION, **SEEDS)
    detect_with_model(config(raster, out, simplify=1.5), WithContact(), model, NullProgress())
    geoms = gpd.read_file(out).geometry.values
    assert len(geoms) == truth.max() and shapely.is_valid(geoms).all()
    union = shapely.union_all(geoms)
    assert shapely.area(geoms).sum() == pytest.approx(union.area, rel=1e-9)  # no overlaps
    pieces = len(getattr(union, "geoms", [union]))
    assert pieces == ndimage.label(truth > 0)[1]  # each row of houses stays one piece
    assert not any(p.interiors for p in getattr(union, "geoms", [union]))  # no gaps


def test_seed_settings_can_be_overridden(tmp_path: Path) -> None:
    truth = terraces(9, (300, 400))
    raster = write(tmp_path / "terraces.tif", probabilities(truth, 9))
    model = spec(SEPARATION, **SEEDS)
    strict = detect_with_model(
        config(raster, tmp_path / "a.gpkg", seed_threshold=0.999), WithContact(), model,
        NullProgress(),
    )  # fmt: skip
    assert strict["buildings"] < truth.max()  # no seed anywhere: one area per terrace
    with pytest.raises(ConfigError, match="seed_threshold"):
        detect_with_model(
            config(raster, tmp_path / "b.gpkg", seed_threshold=1.5), WithContact(), model,
            NullProgress(),
        )  # fmt: skip
    assert not (tmp_path / "b.gpkg").exists()


def test_polygon_workers_give_what_one_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Halo blocks labelled and cut into pieces by several threads at once give the same
    buildings, in the same order, as one thread (results are joined in the blocks' order)."""
    import engine.detect

    truth = terraces(11, (1100, 1240))  # 3 x 3 instance blocks of 512 px
    raster = write(tmp_path / "terraces.tif", probabilities(truth, 11, gaps=True))
    model = spec(SEPARATION, **SEEDS)
    layers = {}
    for workers in (1, 4):
        monkeypatch.setattr(engine.detect, "polygon_workers", lambda device, n=workers: n)
        out = tmp_path / f"w{workers}.gpkg"
        result = detect_with_model(config(raster, out), WithContact(), model, NullProgress())
        assert result["buildings"] == truth.max()
        layers[workers] = gpd.read_file(out)
    assert (
        shapely.to_wkb(layers[1].geometry.values).tolist()
        == shapely.to_wkb(layers[4].geometry.values).tolist()
    )
    assert layers[1]["score"].tolist() == layers[4]["score"].tolist()


def test_vectorize_cuts_blocks_side_by_side_and_joins_them_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Vectorize with several threads cutting blocks gives what one thread gives."""
    import engine.vectorize

    truth = terraces(12, (700, 760))
    raster = write(tmp_path / "terraces.tif", probabilities(truth, 12, gaps=True))
    keep = tmp_path / "p.tif"
    model = spec(SEPARATION, **SEEDS)
    detect_with_model(
        config(raster, tmp_path / "d.gpkg", keep=keep), WithContact(), model, NullProgress()
    )
    wkb = {}
    for workers in (1, 3):
        monkeypatch.setattr(engine.vectorize, "spare_cores", lambda reserved, n=workers: n)
        cfg = VectorizeConfig(
            str(keep), str(tmp_path / f"v{workers}.gpkg"), threshold=0.5, window_size=256, **SEEDS
        )
        assert vectorize(cfg, NullProgress())["buildings"] == truth.max()
        wkb[workers] = shapely.to_wkb(gpd.read_file(cfg.output).geometry.values).tolist()
    assert wkb[1] == wkb[3]


def test_the_models_smallest_building_applies_unless_one_is_given(tmp_path: Path) -> None:
    # RECTS cover 150, 600, 375 and 100 m² (0.5 m pixels); the model keeps 120 m² and up
    raster, model = rect_raster(tmp_path), spec(min_area_m2=120.0)
    log = RecordingProgress()
    own = config(raster, tmp_path / "own.gpkg", min_area_m2=None)
    assert detect_with_model(own, Pointwise(), model, log)["buildings"] == 3
    areas = gpd.read_file(tmp_path / "own.gpkg")["area_m2"]
    assert areas.min() == pytest.approx(150.0)
    assert any("1 under 120 m² left out" in m for m in log.messages)
    given = config(raster, tmp_path / "given.gpkg", min_area_m2=0.0)
    assert detect_with_model(given, Pointwise(), model, NullProgress())["buildings"] == 4
    # a model file from before train chose it keeps 4 m², as detect always did
    before = json.loads(spec_to_json(model))
    del before["min_area_m2"]
    assert spec_from_json(json.dumps(before)).min_area_m2 == 4.0
