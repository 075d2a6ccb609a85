"""Score predicted building polygons against reference polygons, by pixel and by building.

Geometry work happens in metres: in the prediction's CRS when it is projected, else in the
UTM zone of the evaluated area. Objects count when their representative point lies in the
area (so a building on the edge counts once, whole), or with ``clip_to_area`` by their parts
inside it (a raster's edge cuts the buildings the reference has whole); pixels count only
inside the area. Pixel scores are accumulated window by window on a grid of ``resolution``
metres.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from affine import Affine
from pyproj import CRS
from rasterio import features, windows
from shapely.geometry.base import BaseGeometry

from engine.config import EvaluateConfig
from engine.errors import ConfigError, InputError, LabelsError, RasterError
from engine.events import NullProgress, Progress, SubProgress, check_canceled
from engine.geo import labels
from engine.geo.ground import is_stretched, unit_metres
from engine.geo.labels import layer_inputs
from engine.geo.outputs import Input, atomic_output, check_output, prepare_outputs
from engine.geo.rasters import RASTER_SUFFIXES, ground_resolution_m, open_raster, raster_inputs
from engine.geo.vectors import (
    DAMAGED_LAYER_HINT,
    VECTOR_READ_ERRORS,
    vector_driver,
    write_vector,
)
from engine.geo.windows import Grid
from engine.results import EvaluateResult, ReferenceShift
from engine.scoring.metrics import (
    FALSE_CAUSES,
    MISSED_CAUSES,
    ConfusionCounts,
    Matching,
    cause_counts,
    match_objects,
    object_scores,
)
from engine.scoring.shift import ShiftOverlaps

#: Pixels per side of one rasterising window.
WINDOW = 2048
#: Smallest part (m²) of a building cut by the area's edge that still counts (clip_to_area):
#: smaller slivers are no building either layer could be blamed for.
MIN_CUT_PART_M2 = 1.0
#: Pixel size in metres when neither the config nor an area raster gives one.
DEFAULT_RESOLUTION_M = 0.25
_POLYGONAL = (3, 6)  # shapely type ids of Polygon and MultiPolygon


@dataclass(frozen=True)
class Scene:
    """Both layers in the prediction's CRS and in the working (metric) CRS, and the area."""

    pred: gpd.GeoDataFrame
    ref: gpd.GeoDataFrame
    pred_w: np.ndarray
    ref_w: np.ndarray
    area: BaseGeometry
    crs: CRS
    raster_resolution_m: float | None


def evaluate(config: EvaluateConfig, progress: Progress) -> EvaluateResult:
    """Score ``config.predicted`` against ``config.reference``; write the optional outputs.

    Returns pixel and object scores (nested and flat), counts and the written paths.

    Raises:
        LabelsError: a layer is missing, unreadable, without CRS, or the area holds no
            reference building.
        InputError: the area is unreadable or does not overlap the layers.
        ConfigError, OutputError: bad threshold/resolution or output paths.
    """
    output, report = _check_config(config)
    scene = load_scene(config)
    check_canceled(progress)
    progress.set_progress(10)
    unit = unit_metres(scene.crs)
    ref_scored, ref_in = counted(scene.ref_w, scene.area, config.clip_to_area, unit)
    if not ref_in.any():
        which = (
            f"none of the {len(scene.ref)} in {config.reference} has a part of"
            f" {MIN_CUT_PART_M2:g} m² or more inside it"
            if config.clip_to_area
            else f"none of the {len(scene.ref)} in {config.reference}"
        )
        raise LabelsError(
            f"The area contains no reference buildings ({which}), so the scores are undefined;"
            " choose an area that holds reference buildings."
        )
    resolution = config.resolution or scene.raster_resolution_m or DEFAULT_RESOLUTION_M
    grid = pixel_grid(scene.area, resolution / unit)
    ref_w, shift = scene.ref_w, None
    if config.max_shift_m > 0:
        ref_w, shift = line_up(scene, grid, config.max_shift_m, resolution, progress)
        ref_scored, ref_in = counted(ref_w, scene.area, config.clip_to_area, unit)
    pred_scored, pred_in = counted(scene.pred_w, scene.area, config.clip_to_area, unit)
    progress.log(
        f"Evaluating {int(pred_in.sum())} predicted against {int(ref_in.sum())} reference"
        f" buildings in {scene.crs.name}"
        + (", cut at the area's edge" if config.clip_to_area else "")
        + f"; pixel scores on {grid.width}x{grid.height} pixels of {resolution:g} m."
    )
    counts = count_pixels(
        scene.pred_w, ref_w, scene.area, grid, WINDOW, SubProgress(progress, 10, 85)
    )
    matching = match_objects(pred_scored[pred_in], ref_scored[ref_in], config.iou_threshold)
    progress.set_progress(90)
    result = _result(counts, matching, config, resolution, scene.crs, output, report)
    result["reference_shift"] = shift
    _report(result, progress)
    if output is not None:
        frame = _status_frame(scene, pred_in, ref_in, matching, config.clip_to_area)
        write_layer(frame, output, config.overwrite)
    if report is not None:
        with atomic_output(report, config.overwrite) as tmp:
            tmp.write_text(json.dumps(result, indent=2) + "\n")
    progress.set_progress(100)
    return result


def _check_config(config: EvaluateConfig) -> tuple[Path | None, Path | None]:
    """Validate parameters and output paths before any work; return the absolute outputs."""
    if not 0.0 < config.iou_threshold <= 1.0:
        raise ConfigError(f"IoU threshold must be in (0, 1], got {config.iou_threshold}.")
    if not 0.0 <= config.max_shift_m <= 10.0:
        raise ConfigError(
            f"The largest shift of the reference must be from 0 (off) to 10 m, got"
            f" {config.max_shift_m}; OpenStreetMap outlines are typically 1-3 m off."
        )
    if config.resolution is not None and not config.resolution > 0:
        raise ConfigError(
            f"Resolution must be a positive number of metres, got {config.resolution}."
        )
    output = check_output(config.output, config.overwrite) if config.output else None
    report = check_output(config.report, config.overwrite) if config.report else None
    prepare_outputs({"output layer": output, "report": report}, evaluate_inputs(config))
    if output is not None:
        vector_driver(output)
    return output, report


def evaluate_inputs(config: EvaluateConfig) -> list[Input]:
    """The files ``evaluate`` reads: both layers and the area (a raster: with VRT sources)."""
    inputs = layer_inputs("predicted layer", config.predicted)
    inputs += layer_inputs("reference layer", config.reference)
    if config.area and Path(config.area).suffix.lower() in RASTER_SUFFIXES:
        return inputs + raster_inputs(config.area, "area raster")
    return inputs + layer_inputs("area layer", config.area)


# ----------------------------------------------------------------------------- reading


def read_polygons(path: str | Path, role: str) -> gpd.GeoDataFrame:
    """Polygons of a vector layer (first layer), repaired, with ``feature`` = row in the file.

    Invalid geometries are repaired with ``make_valid`` and only their polygonal parts kept;
    empty, missing and non-polygonal features are dropped.

    Raises:
        LabelsError: the file is missing, unreadable or has no CRS.
    """
    p = Path(path)
    if not p.exists():
        raise LabelsError(f"The {role} layer {p} does not exist; check the path.")
    try:
        frame = gpd.read_file(p, columns=[], engine="pyogrio")
    except VECTOR_READ_ERRORS as exc:
        raise LabelsError(
            f"The {role} layer {p} cannot be read as vector data ({exc}); give a polygon layer"
            " in a format GDAL/OGR reads (GeoPackage, Shapefile, GeoJSON, ...)."
            f" {DAMAGED_LAYER_HINT}"
        ) from exc
    if frame.crs is None:
        raise LabelsError(
            f"The {role} layer {p} has no coordinate reference system; assign one (QGIS: Assign"
            " Projection; or ogr2ogr -a_srs EPSG:XXXX) and try again."
        )
    geoms = polygonal(np.asarray(frame.geometry.values, dtype=object))
    keep = ~shapely.is_empty(geoms)
    return gpd.GeoDataFrame(
        {"feature": np.flatnonzero(keep)}, geometry=geoms[keep], crs=frame.crs
    ).reset_index(drop=True)


def polygonal(geoms: np.ndarray) -> np.ndarray:
    """:func:`engine.geo.labels.polygonal` with empty polygons for None (keeps positions)."""
    out = labels.polygonal(geoms)
    out[~shapely.is_geometry(out)] = shapely.Polygon()
    return out


def read_area(path: str | Path) -> tuple[gpd.GeoSeries, float | None]:
    """The area as a one-polygon GeoSeries in its own CRS, and its pixel size in metres when
    it is a raster (its bounds) rather than a polygon layer (the union of its polygons)."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"The area {p} does not exist; give a raster or a polygon layer.")
    if p.suffix.lower() in RASTER_SUFFIXES:
        return _raster_area(p)
    try:
        polygons = read_polygons(p, "area")
    except LabelsError as exc:
        try:
            return _raster_area(p)
        except RasterError:
            raise InputError(
                f"The area {p} is neither a raster nor a polygon layer: {exc}"
            ) from exc
    if polygons.empty:
        raise InputError(f"The area layer {p} holds no polygons; give polygons or a raster.")
    return gpd.GeoSeries([shapely.union_all(polygons.geometry.values)], crs=polygons.crs), None


def _raster_area(path: Path) -> tuple[gpd.GeoSeries, float | None]:
    with open_raster(path) as src:
        footprint = shapely.box(*src.bounds)
        return gpd.GeoSeries([footprint], crs=src.crs.to_wkt()), ground_resolution_m(src)


def _to_crs(series: gpd.GeoSeries, crs: CRS) -> gpd.GeoSeries:
    """Reproject, densifying long edges first so they bend as they should."""
    if series.crs == crs:
        return series
    xmin, ymin, xmax, ymax = series.total_bounds
    step = max(xmax - xmin, ymax - ymin) / 64
    dense = shapely.segmentize(np.asarray(series.values, dtype=object), step)
    return gpd.GeoSeries(dense, crs=series.crs).to_crs(crs)


def load_scene(config: EvaluateConfig) -> Scene:
    """Read both layers and the area; choose the working CRS and project everything to it."""
    pred = read_polygons(config.predicted, "predicted")
    ref = read_polygons(config.reference, "reference")
    if ref.empty:
        raise LabelsError(f"The reference layer {config.reference} holds no polygons.")
    if ref.crs != pred.crs:
        ref = ref.to_crs(pred.crs)
    raster_res: float | None = None
    if config.area:
        area_src, raster_res = read_area(config.area)
        area_geom = _to_crs(area_src, pred.crs).iloc[0]
    else:
        area_src = gpd.GeoSeries([_extent(pred.geometry, ref.geometry)], crs=pred.crs)
        area_geom = area_src.iloc[0]
    crs = CRS(pred.crs)
    centre = area_geom.representative_point() if not area_geom.is_empty else None
    if crs.is_geographic or (centre is not None and is_stretched(crs, centre.x, centre.y)):
        # metres on the ground: a UTM zone, not degrees nor Web Mercator's stretched metres
        crs = gpd.GeoSeries([area_geom], crs=pred.crs).estimate_utm_crs()
    area = polygonal(np.asarray([_to_crs(area_src, crs).iloc[0]], dtype=object))[0]
    pred_w = np.asarray(pred.geometry.to_crs(crs).values, dtype=object)
    ref_w = np.asarray(ref.geometry.to_crs(crs).values, dtype=object)
    if not area.intersects(_extent(pred_w, ref_w)):
        raise InputError(
            f"The area {config.area} does not overlap the predicted or reference buildings;"
            " check that it is the right area and that its CRS is set correctly."
        )
    return Scene(pred, ref, polygonal(pred_w), polygonal(ref_w), area, crs, raster_res)


def _extent(*layers: Any) -> BaseGeometry:
    """The rectangle around every geometry of the given layers."""
    geoms = np.concatenate([np.asarray(layer, dtype=object) for layer in layers])
    return shapely.box(*shapely.total_bounds(geoms))


# ----------------------------------------------------------------------------- scoring


def counted(
    geoms: np.ndarray, area: BaseGeometry, clip: bool, unit_m: float
) -> tuple[np.ndarray, np.ndarray]:
    """The geometries as scored and the mask of those that count in ``area``.

    Without ``clip``: the geometries whole, counted where their representative point lies
    (:func:`inside`). With it: :func:`cut_at` the area's edge, a building inside counted
    whole and one the edge cuts by its part inside, when that part is at least
    :data:`MIN_CUT_PART_M2` (``unit_m``: metres per CRS unit).
    """
    if not clip:
        return geoms, inside(geoms, area)
    cut, edge = cut_at(geoms, area)
    keep = ~shapely.is_empty(cut)
    keep[edge] &= shapely.area(cut[edge]) * unit_m**2 >= MIN_CUT_PART_M2
    return cut, keep


def cut_at(geoms: np.ndarray, area: BaseGeometry) -> tuple[np.ndarray, np.ndarray]:
    """``geoms`` cut at ``area``'s edge (those inside as they are, those outside empty) and
    the mask of those the edge cuts; only those are intersected."""
    shapely.prepare(area)
    whole = np.asarray(shapely.contains_properly(area, geoms), dtype=bool)
    edge = ~whole & np.asarray(shapely.intersects(area, geoms), dtype=bool)
    cut = np.where(whole, geoms, shapely.Polygon())
    cut[edge] = polygonal(shapely.intersection(geoms[edge], area))
    return cut, edge


def inside(geoms: np.ndarray, area: BaseGeometry) -> np.ndarray:
    """Boolean mask of geometries whose representative point lies in ``area`` (edge included)."""
    shapely.prepare(area)
    return np.asarray(shapely.intersects(area, shapely.point_on_surface(geoms)), dtype=bool)


def pixel_grid(area: BaseGeometry, resolution: float) -> Grid:
    """A grid of ``resolution`` CRS units from the top-left of ``area``'s bounds, covering it."""
    xmin, ymin, xmax, ymax = area.bounds
    width = max(1, math.ceil((xmax - xmin) / resolution - 1e-6))
    height = max(1, math.ceil((ymax - ymin) / resolution - 1e-6))
    return Grid(width, height, Affine(resolution, 0.0, xmin, 0.0, -resolution, ymax))


def count_pixels(
    pred: np.ndarray,
    ref: np.ndarray,
    area: BaseGeometry,
    grid: Grid,
    window: int = WINDOW,
    progress: Progress | None = None,
) -> ConfusionCounts:
    """Pixel confusion counts of rasterised ``pred`` against ``ref``, inside ``area`` only,
    rasterising one ``window`` x ``window`` block at a time (pixel centres decide)."""
    pred_tree, ref_tree = shapely.STRtree(pred), shapely.STRtree(ref)
    total = ConfusionCounts()
    for box, shape, transform, valid in area_blocks(area, grid, window, progress):
        pred_mask = _burn(pred[pred_tree.query(box, predicate="intersects")], shape, transform)
        ref_mask = _burn(ref[ref_tree.query(box, predicate="intersects")], shape, transform)
        total += ConfusionCounts.from_arrays(pred_mask, ref_mask, valid)
    return total


def area_blocks(
    area: BaseGeometry, grid: Grid, window: int, progress: Progress | None = None
) -> Iterator[tuple[BaseGeometry, tuple[int, int], Affine, np.ndarray | None]]:
    """The ``window`` x ``window`` blocks of ``grid`` that meet ``area``: each one's box,
    shape, transform and valid pixels (None: all of them inside), with cancel checks and
    progress over all the blocks."""
    progress = progress or NullProgress()
    shapely.prepare(area)
    blocks = list(grid.blocks(window))
    for i, block in enumerate(blocks):
        check_canceled(progress)
        transform = windows.transform(block, grid.transform)
        shape = (int(block.height), int(block.width))
        box = shapely.box(*windows.bounds(block, grid.transform))
        if area.intersects(box):
            valid = (
                None
                if area.contains(box)
                else _burn([shapely.clip_by_rect(area, *box.bounds)], shape, transform)
            )
            yield box, shape, transform, valid
        progress.set_progress(100.0 * (i + 1) / len(blocks))


def line_up(
    scene: Scene, grid: Grid, max_shift_m: float, resolution_m: float, progress: Progress
) -> tuple[np.ndarray, ReferenceShift]:
    """The reference moved by the whole-pixel shift of up to ``max_shift_m`` that gives the
    best pixel IoU with the prediction inside the area (:class:`ShiftOverlaps`), and the move."""
    margin = max(1, math.floor(max_shift_m / resolution_m + 1e-9))
    overlaps = ShiftOverlaps(margin)
    pred_tree, ref_tree = shapely.STRtree(scene.pred_w), shapely.STRtree(scene.ref_w)
    pixel = grid.transform.a
    for box, shape, transform, valid in area_blocks(scene.area, grid, WINDOW):
        check_canceled(progress)
        pred = _burn(scene.pred_w[pred_tree.query(box, predicate="intersects")], shape, transform)
        xmin, ymin, xmax, ymax = box.bounds
        reach = margin * pixel
        wide_box = shapely.box(xmin - reach, ymin - reach, xmax + reach, ymax + reach)
        wide = _burn(
            scene.ref_w[ref_tree.query(wide_box, predicate="intersects")],
            (shape[0] + 2 * margin, shape[1] + 2 * margin),
            transform * Affine.translation(-margin, -margin),
        )
        overlaps.add(pred, wide, valid)
    dy, dx = overlaps.best()
    iou = overlaps.iou()
    east, north = -dx * pixel, dy * pixel
    moved = shapely.transform(scene.ref_w, lambda xy: xy + np.array([east, north]))
    unit = unit_metres(scene.crs)
    shift: ReferenceShift = {
        "east_m": round(east * unit, 6),
        "north_m": round(north * unit, 6),
        "max_shift_m": max_shift_m,
        "pixel_iou_unshifted": float(iou[margin, margin]),
        "pixel_iou_shifted": float(iou[margin + dy, margin + dx]),
    }
    progress.log(
        f"The reference lines up best with the predicted buildings moved"
        f" {shift['east_m']:+.2f} m east, {shift['north_m']:+.2f} m north (searched up to"
        f" {max_shift_m:g} m in steps of {resolution_m:g} m): pixel IoU"
        f" {shift['pixel_iou_unshifted']:.4f} where it is, {shift['pixel_iou_shifted']:.4f}"
        " moved. The scores below are of the moved reference."
    )
    return moved, shift


def _burn(geoms: Any, shape: tuple[int, int], transform: Affine) -> np.ndarray:
    """Boolean mask of pixels whose centre lies in any of ``geoms``."""
    geoms = [g for g in geoms if not g.is_empty]
    if not geoms:
        return np.zeros(shape, dtype=bool)
    burned = features.rasterize(
        geoms, out_shape=shape, transform=transform, fill=0, default_value=1, dtype="uint8"
    )
    return np.asarray(burned, dtype=bool)


# ----------------------------------------------------------------------------- outputs


def _result(
    counts: ConfusionCounts,
    matching: Matching,
    config: EvaluateConfig,
    resolution: float,
    crs: CRS,
    output: Path | None,
    report: Path | None,
) -> EvaluateResult:
    pixel = counts.scores()
    objects = object_scores(matching)
    return {
        "pixel": pixel,
        "object": objects,
        "predicted": int(len(matching.pred_match)),
        "reference": int(len(matching.ref_match)),
        "pixel_counts": asdict(counts),
        "iou_threshold": config.iou_threshold,
        "resolution_m": float(resolution),
        "working_crs": crs.to_string(),
        "output": None if output is None else str(output),
        "report": None if report is None else str(report),
        "pixel_precision": pixel["precision"],
        "pixel_recall": pixel["recall"],
        "pixel_f1": pixel["f1"],
        "pixel_iou": pixel["iou"],
        "pixel_accuracy": pixel["accuracy"],
        "object_precision": objects["object_precision"],
        "object_recall": objects["object_recall"],
        "object_f1": objects["object_f1"],
        "merges": matching.merges,
        "splits": matching.splits,
        "false_causes": cause_counts(matching.pred_cause, FALSE_CAUSES),
        "missed_causes": cause_counts(matching.ref_cause, MISSED_CAUSES),
        "reference_shift": None,
        "clip_to_area": config.clip_to_area,
    }


def _report(result: EvaluateResult, progress: Progress) -> None:
    """Log the scores and send each as a metric."""
    for name, value in result["pixel"].items():
        progress.metric(f"pixel_{name}", float(value))
    obj = result["object"]
    for name in ("object_precision", "object_recall", "object_f1", "mean_iou_matched"):
        progress.metric(name, float(obj[name]))
    pix = result["pixel"]
    progress.log(
        f"Pixels: precision {pix['precision']:.4f}, recall {pix['recall']:.4f},"
        f" F1 {pix['f1']:.4f}, IoU {pix['iou']:.4f}, accuracy {pix['accuracy']:.4f}."
    )
    progress.log(
        f"Buildings at IoU >= {result['iou_threshold']:g}: {obj['tp']} matched, {obj['fp']}"
        f" false, {obj['fn']} missed; precision {obj['object_precision']:.4f}, recall"
        f" {obj['object_recall']:.4f}, F1 {obj['object_f1']:.4f}; {result['merges']}"
        " predictions run two or more buildings together (merges),"
        f" {result['splits']} buildings are cut into two or more (splits)."
    )
    why = []
    if obj["fn"]:
        why.append(f"of the {obj['fn']} missed, {_causes(result['missed_causes'], _MISSED_WORDS)}")
    if obj["fp"]:
        why.append(f"of the {obj['fp']} false, {_causes(result['false_causes'], _FALSE_WORDS)}")
    if why:
        where = " (each marked in the evaluation layer's cause field)" if result["output"] else ""
        progress.log(f"Why: {'; '.join(why)}{where}.")


#: Each cause in a user's words, for the log: missed references, false predictions.
_MISSED_WORDS = {
    "merge": "merged with a neighbour",
    "split": "cut into pieces",
    "missed": "mostly not found",
    "outline": "found with too different an outline",
}
_FALSE_WORDS = {
    "merge": "merging two or more buildings",
    "split": "pieces of a cut building",
    "extra": "mostly off any reference building",
    "outline": "on a building with too different an outline",
}


def _causes(counts: dict[str, int], words: dict[str, str]) -> str:
    """``counts`` of causes in words ("12 merged with a neighbour, 3 cut into pieces")."""
    return ", ".join(f"{n} {words[c]}" for c, n in counts.items() if n)


def _status_frame(
    scene: Scene, pred_in: np.ndarray, ref_in: np.ndarray, matching: Matching, clip: bool
) -> gpd.GeoDataFrame:
    """Predictions (TP/FP) and missed references (FN) in the prediction's CRS, cut at the
    area's edge with ``clip`` (the parts scored).

    ``iou`` is each feature's best IoU with the other layer; ``match_id`` is, for a TP, the
    row number of the matched reference in the reference layer (empty otherwise); ``feature`` is
    the feature's own row number in its layer; ``cause`` says why an FP or FN did not match
    (:data:`~engine.scoring.metrics.FALSE_CAUSES`, :data:`~engine.scoring.metrics.MISSED_CAUSES`;
    empty for a TP).
    """
    preds = scene.pred[pred_in].reset_index(drop=True)
    refs = scene.ref[ref_in].reset_index(drop=True)
    missed = refs.iloc[matching.unmatched_ref]
    matched_ref = np.where(
        matching.pred_match >= 0, refs["feature"].to_numpy()[matching.pred_match], -1
    )
    rows = {
        "status": np.concatenate(
            [np.where(matching.pred_match >= 0, "TP", "FP"), np.full(len(missed), "FN")]
        ),
        "layer": ["predicted"] * len(preds) + ["reference"] * len(missed),
        "feature": np.concatenate([preds["feature"].to_numpy(), missed["feature"].to_numpy()]),
        "iou": np.concatenate(
            [matching.pred_best_iou, matching.ref_best_iou[matching.unmatched_ref]]
        ),
        "match_id": pd.array(
            [int(m) if m >= 0 else None for m in matched_ref] + [None] * len(missed),
            dtype="Int64",
        ),
        "cause": [c or None for c in matching.pred_cause]
        + list(matching.ref_cause[matching.unmatched_ref]),
    }
    geometry = np.concatenate(
        [
            np.asarray(preds.geometry.values, dtype=object),
            np.asarray(missed.geometry.values, dtype=object),
        ]
    )
    if clip:
        edge = gpd.GeoSeries([scene.area], crs=scene.crs).to_crs(scene.pred.crs).iloc[0]
        geometry = cut_at(geometry, edge)[0]
    return gpd.GeoDataFrame(rows, geometry=geometry, crs=scene.pred.crs)


def write_layer(frame: gpd.GeoDataFrame, path: Path, overwrite: bool) -> None:
    """Write ``frame`` atomically; the format follows the extension."""
    write_vector(frame, path, overwrite)
