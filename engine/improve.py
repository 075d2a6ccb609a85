"""Improve a model with a mapper's corrections: the "fix" step of detect, fix, improve, detect.

The mapper ran detect, corrected the buildings in one neighbourhood (deleted false ones,
drew missed ones, fixed outlines) and drew the *area checked*, where the corrected layer is
complete. :func:`improve` fine-tunes the starting model (default: the starter model) on that:

- inside the area checked, every pixel that is not a corrected building is background, so
  deleted false positives are taught, even where no building is left;
- corrected buildings outside it are taught as buildings, their surroundings unknown (the
  labelled area is the area checked plus those buildings);
- a part of the area checked is held back (``validation``, or whole training windows making
  up ``held_back`` of it, at one end): the starting model and the improved one are scored on
  it alike, so the report says whether the corrections helped; when they did not, the model
  written is the starting model unchanged.

Training is ``train``'s fine-tuning with small-data defaults: the starting model's
normalisation, the encoder frozen for the first epochs, a constant learning rate, windows
side by side (no overlap: more epochs in the budget), every checked window kept, and a time
budget instead of a number of epochs.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely
from affine import Affine

from engine.config import ImproveConfig, TrainConfig
from engine.errors import ConfigError, LabelsError
from engine.events import Progress
from engine.geo.labels import layer_inputs, read_labels
from engine.geo.outputs import (
    Input,
    atomic_output,
    check_folder_output,
    check_output,
    file_input,
    prepare_outputs,
)
from engine.geo.rasters import raster_inputs
from engine.geo.temporary import make_scratch
from engine.models.modelfile import read_spec
from engine.models.starter import resolve_model
from engine.results import ImproveResult
from engine.train import CHECKPOINT_NAME, report_dir_for, train
from engine.training.crop import crop_on_model_grid
from engine.training.dataset import open_sources
from engine.training.finetune import check_pytorch_files, check_trainable
from engine.training.report import write_json
from engine.training.sampling import Source, cell_shape

#: Epochs at most when training for a time budget (the budget ends it first).
MAX_EPOCHS = 1000
#: A training window counts when this share of it is inside the labelled area.
MIN_LABELLED_SHARE = 0.05
REPORT_NAME = "improve.json"


def improve(config: ImproveConfig, progress: Progress) -> ImproveResult:
    """Fine-tune ``config.model`` on the corrections; write the model and the report.

    Raises:
        ConfigError: the area checked misses the imagery, or is too small to hold a part back
            (give ``validation``); bad options.
        LabelsError, RasterError, ModelFileError, OutputError, CancelledError: as ``train``.
    """
    started = time.monotonic()
    _check_options(config)
    check_pytorch_files(starting=config.model, output=config.output)
    model_file = check_output(config.output, config.overwrite)
    report = check_folder_output(
        report_dir_for(_train_config(config, "", "", None)), "report folder", model_file
    )
    prepare_outputs(
        {"improved model": config.output, "report": report / REPORT_NAME}, improve_inputs(config)
    )
    start = resolve_model(config.model, progress)
    spec = read_spec(start)
    check_trainable(spec, start)
    (source,) = open_sources(_train_config(config, start, "", None))
    checked = _checked_area(config, source)
    if config.validation:
        _check_room_to_learn(config, source, checked)
    buildings = _corrected_buildings(config, source, progress)
    inside = int(shapely.intersects(buildings.geometry.to_numpy(), checked).sum())
    progress.log(
        f"Corrections: {len(buildings)} building(s) over the imagery, {inside} of them inside"
        " the area checked."
    )
    scratch = make_scratch("improve")
    labelled = shapely.union_all([checked, *buildings.geometry.to_numpy()])
    imagery, resampled = crop_on_model_grid(
        source.path, labelled.bounds, spec.resolution_m, spec.tile_size, scratch / "imagery.tif"
    )
    if resampled:
        progress.log(
            f"Imagery resampled to the model's {spec.resolution_m:g} m per pixel (bilinear, as"
            " detect does) around the area checked."
        )
    (cropped,) = open_sources(
        replace(_train_config(config, start, "", None), rasters=(str(imagery),))
    )
    labelled_path = _write(labelled, source.crs_wkt, scratch / "labelled_area.geojson")
    validation = config.validation or _write(
        held_back_part(checked, cropped, spec.tile_size, config.held_back),
        source.crs_wkt,
        scratch / "held_back.geojson",
    )
    settings = _train_config(config, start, labelled_path, validation)
    tile = spec.tile_size
    settings = replace(settings, rasters=(str(imagery),), tile_size=tile, stride=tile)
    if spec.architecture == "compact" and settings.freeze_encoder_epochs:
        progress.log("The compact U-Net has no separate encoder: nothing is frozen.")
        settings = replace(settings, freeze_encoder_epochs=0)
    earlier = _checkpoint_stamp(report)
    try:
        result = train(settings, progress)
    except BaseException:
        _drop_checkpoint(report, earlier)
        raise
    before, after = result["before"] or {}, result["after"]
    key = "val_building_f1" if "val_building_f1" in after else "val_iou"
    improved = _ranked(after, key) > _ranked(before, key)
    if not improved:
        keep_starting_model(start, result["output"])
        _note_kept_model(Path(result["report"]), start)
    out: ImproveResult = {
        "output": result["output"],
        "report": result["report"],
        "start_model": start,
        "before": before,
        "after": after,
        "improved": improved,
        "epochs_run": result["epochs_run"],
        "minutes": (time.monotonic() - started) / 60.0,
        "train_windows": result["train_windows"],
        "val_windows": result["val_windows"],
        "buildings": len(buildings),
    }
    Path(result["report"], REPORT_NAME).write_text(
        json.dumps({**out, "validation": config.validation or "held back"}, indent=1) + "\n",
        encoding="utf-8",
    )
    progress.log(_verdict(before, after, key, improved))
    return out


def _corrected_buildings(
    config: ImproveConfig, source: Source, progress: Progress
) -> gpd.GeoDataFrame:
    """The corrected building polygons over the imagery, in its CRS; features that are not
    polygons are left out with a log line.

    A layer without any feature is the mapper's word that the area checked holds no
    building (every detection there deleted).

    Raises:
        LabelsError: features, but no polygon over the imagery (points or lines only, or all
            elsewhere): a mistake that would teach the whole area checked as background.
    """
    buildings = read_labels((config.labels,), source.crs_wkt, bounds=source.bounds)
    if len(buildings):
        read = buildings.attrs
        dropped = int(read.get("not_polygonal", 0)) + int(read.get("not_projectable", 0))
        if dropped:
            progress.log(
                f"{dropped} feature(s) of {config.labels} near the imagery are not building"
                " polygons (points, lines, or outside the CRS's area) and were left out."
            )
        return buildings
    read = read_labels((config.labels,), source.crs_wkt).attrs  # the whole layer
    if not read.get("features", 0):
        progress.log(
            f"{config.labels} holds no building: everything in the area checked is taught as"
            " background (what deleting every detection there means)."
        )
        return buildings
    why = f"{read['features']} feature(s) read"
    if read.get("not_polygonal"):
        why += f", {read['not_polygonal']} of them not polygons"
    if read.get("not_projectable"):
        why += f", {read['not_projectable']} outside the area where the imagery's CRS is defined"
    raise LabelsError(
        f"The corrected building layer {config.labels} has no building polygon over the"
        f" imagery {config.raster} ({why}). Improve learns from the corrected buildings: give"
        " the polygons detect wrote, corrected, over the imagery it ran on, in their own CRS"
        " (where the area checked holds no building at all, give a layer without any feature)."
    )


def _checkpoint_stamp(report: Path) -> tuple[bool, float | None]:
    """Whether the report folder exists, and its checkpoint's modification time (None: none)."""
    checkpoint = report / CHECKPOINT_NAME
    return report.is_dir(), checkpoint.stat().st_mtime if checkpoint.is_file() else None


def _drop_checkpoint(report: Path, earlier: tuple[bool, float | None]) -> None:
    """Remove the checkpoint this stopped or failed run wrote (improve does not resume: it
    would be tens of MB of debris), and the report folder if this run made it and nothing
    else is in it. A checkpoint or folder from before the run is left alone."""
    existed, stamp = earlier
    checkpoint = report / CHECKPOINT_NAME
    if checkpoint.is_file() and checkpoint.stat().st_mtime != stamp:
        checkpoint.unlink(missing_ok=True)
    if not existed:
        with contextlib.suppress(OSError):
            report.rmdir()  # only when empty


def _note_kept_model(report: Path, start: str) -> None:
    """Say in train's ``summary.json`` that the model written is the starting one: its
    weights digest and scores are those of the fine-tuned weights that were discarded."""
    path = report / "summary.json"
    if not path.is_file():
        return
    summary = json.loads(path.read_text(encoding="utf-8"))
    summary["model_written"] = (
        f"the starting model {start}, unchanged: the corrections did not help on the part held"
        " back (the scores here are the discarded fine-tuned weights')"
    )
    summary["discarded_weights_sha256"] = summary.pop("weights_sha256", None)
    write_json(path, summary)


def keep_starting_model(start: str, output: str) -> None:
    """Replace the model written by a copy of the starting model (atomically)."""
    with atomic_output(output, overwrite=True) as part:
        shutil.copyfile(start, part)


def improve_inputs(config: ImproveConfig) -> list[Input]:
    """Every file ``improve`` reads."""
    inputs = raster_inputs(config.raster, "imagery")
    inputs += layer_inputs("corrected building layer", config.labels)
    inputs += layer_inputs("area checked layer", config.checked_area)
    inputs += layer_inputs("validation part layer", config.validation)
    inputs += file_input("starting model", config.model)
    return inputs


def _check_options(config: ImproveConfig) -> None:
    if not 0.0 < config.held_back < 1.0:
        raise ConfigError(
            f"The share held back must be between 0 and 1, got {config.held_back}; e.g. 0.25."
        )
    if config.epochs is None and config.minutes <= 0:
        raise ConfigError(f"The time budget must be above 0 minutes, got {config.minutes}.")
    if config.epochs is not None and config.epochs < 1:
        raise ConfigError(f"Epochs must be at least 1, got {config.epochs}.")


def _train_config(
    config: ImproveConfig, start: str, labelled_area: str, validation: str | None
) -> TrainConfig:
    """``train``'s fine-tuning with improve's small-data defaults."""
    return TrainConfig(
        rasters=(config.raster,),
        labels=(config.labels,),
        output=config.output,
        report_dir=config.report_dir,
        validation=validation,
        labelled_area=labelled_area or None,
        init_model=start or None,
        freeze_encoder_epochs=config.freeze_encoder_epochs,
        keep_batch_norm=config.keep_batch_norm,
        lr=config.lr,
        schedule="constant",
        epochs=config.epochs or MAX_EPOCHS,
        max_minutes=None if config.epochs else config.minutes,
        empty_keep_fraction=config.empty_keep_fraction,
        max_nodata_fraction=1.0 - MIN_LABELLED_SHARE,
        seed=config.seed,
        device=config.device,
        overwrite=config.overwrite,
    )


def _checked_area(config: ImproveConfig, source: Source) -> shapely.Geometry:
    """The area checked over the imagery, in its CRS.

    Raises:
        ConfigError: no polygon, or none over the imagery.
    """
    try:
        polygons = read_labels((config.checked_area,), source.crs_wkt)
    except LabelsError as exc:
        raise ConfigError(f"Area checked {config.checked_area}: {exc}") from exc
    if not len(polygons):
        raise ConfigError(
            f"The area checked {config.checked_area} has no polygon; draw the area where the"
            " corrected buildings are complete."
        )
    area = shapely.intersection(
        shapely.union_all(polygons.geometry.to_numpy()), shapely.box(*source.bounds)
    )
    if area.is_empty or area.area == 0:
        raise ConfigError(
            f"The area checked {config.checked_area} lies outside the imagery {config.raster};"
            " draw it over the imagery the buildings were corrected on."
        )
    return area


def _check_room_to_learn(config: ImproveConfig, source: Source, checked: shapely.Geometry) -> None:
    """Refuse a validation part that leaves (almost) nothing of the area checked to learn from.

    Raises:
        ConfigError: naming both layers and the ways out.
    """
    try:
        parts = read_labels((str(config.validation),), source.crs_wkt)
    except LabelsError as exc:
        raise ConfigError(f"Validation part {config.validation}: {exc}") from exc
    held = shapely.union_all(parts.geometry.to_numpy())
    if shapely.difference(checked, held).area > MIN_LABELLED_SHARE * checked.area:
        return
    raise ConfigError(
        f"The validation part {config.validation} covers (almost) all of the area checked"
        f" {config.checked_area}: nothing is left to learn from. Give a validation part over"
        " only a piece of the area checked, or beside it, or leave it out (a quarter of the"
        " area checked is then held back)."
    )


def held_back_part(
    checked: shapely.Geometry, source: Source, tile: int, share: float
) -> shapely.Geometry:
    """The part of ``checked`` held back for scoring: whole training-window cells (``tile``
    pixels) that hold at least :data:`MIN_LABELLED_SHARE` of it, about ``share`` of them (at
    least one, and one left to train on), taken at one end of the area's longer side.

    Raises:
        ConfigError: the area checked fills fewer than two cells.
    """
    transform = Affine(*source.transform)
    rows, cols = cell_shape(source.width, source.height, tile)
    minx, miny, maxx, maxy = checked.bounds
    inverse = ~transform
    corners = [inverse * (x, y) for x in (minx, maxx) for y in (miny, maxy)]
    c0 = max(0, int(min(c for c, _ in corners) // tile))
    c1 = min(cols - 1, int(max(c for c, _ in corners) // tile))
    r0 = max(0, int(min(r for _, r in corners) // tile))
    r1 = min(rows - 1, int(max(r for _, r in corners) // tile))
    cells: list[tuple[int, int, shapely.Geometry]] = []
    for r in range(r0, r1 + 1):
        for c in range(c0, c1 + 1):
            cell = _cell_box(transform, r, c, tile)
            part = shapely.intersection(cell, checked)
            if part.area >= MIN_LABELLED_SHARE * cell.area:
                cells.append((r, c, part))
    if len(cells) < 2:
        size = tile * abs(transform.a)
        raise ConfigError(
            f"The area checked fills {len(cells)} training window(s) of {tile} pixels"
            f" ({size:g} units of its CRS a side): too small to hold a part back for the"
            " before/after scores. Draw a larger area checked, or give the validation part"
            " (polygons of corrected buildings' surroundings not in the area checked)."
        )
    wide = (c1 - c0) >= (r1 - r0)
    cells.sort(key=lambda cell: (cell[1], cell[0]) if wide else (cell[0], cell[1]))
    count = min(len(cells) - 1, max(1, round(share * len(cells))))
    return shapely.union_all([part for _, _, part in cells[-count:]])


def _cell_box(transform: Affine, row: int, col: int, tile: int) -> shapely.Geometry:
    """The cell (``row``, ``col``) of ``tile`` pixels as a box in the raster's CRS."""
    corners = [
        transform * (col * tile + dc, row * tile + dr) for dc in (0, tile) for dr in (0, tile)
    ]
    xs, ys = [x for x, _ in corners], [y for _, y in corners]
    return shapely.box(min(xs), min(ys), max(xs), max(ys))


def _write(geometry: shapely.Geometry, crs_wkt: str, path: Path) -> str:
    """``geometry`` as a one-feature GeoJSON in ``crs_wkt``; its path."""
    parts = [g for g in shapely.get_parts(geometry) if not g.is_empty] or [geometry]
    gpd.GeoDataFrame(geometry=gpd.GeoSeries(np.asarray(parts), crs=crs_wkt)).to_file(path)
    return str(path)


def _ranked(scores: dict[str, float], key: str) -> tuple[float, float]:
    """How scores rank: by ``key``, then (a part without buildings, where building F1 and
    IoU are 0 for every model) by the validation loss, lower first."""
    return float(scores.get(key, 0.0)), -float(scores.get("val_loss", float("inf")))


def _verdict(before: dict[str, float], after: dict[str, float], key: str, improved: bool) -> str:
    """What the held-back part says, in a mapper's words (each model with the threshold and
    settings it is written with)."""
    name = "building F1" if key == "val_building_f1" else "pixel IoU"
    was, now = float(before.get(key, float("nan"))), float(after.get(key, float("nan")))
    pixels = f"pixel IoU {before.get('val_iou', float('nan')):.3f} -> {after['val_iou']:.3f}"
    loss = (
        f"validation loss {before.get('val_loss', float('nan')):.3f} before,"
        f" {after.get('val_loss', float('nan')):.3f} after"
    )
    if not after.get("val_building_pixels", 1.0):
        head = (
            "The part held back holds no corrected building, so only its background compares"
            f" the models ({loss}; {pixels})."
        )
    else:
        digits = 4 if round(was, 3) == round(now, 3) and was != now else 3
        head = (
            f"On the part held back: {name} {was:.{digits}f} before, {now:.{digits}f} after"
            f" ({pixels})."
        )
        if was == now:
            head += f" The same {name}: the {loss} decided."
    if improved:
        return head + " The corrections helped: detect with the improved model."
    return (
        head + " The corrections did not help there, so the model written is the starting"
        " model unchanged; correct more buildings (a larger area checked) and improve again."
    )
