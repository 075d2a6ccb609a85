"""What each engine command returns: the ``result`` event of ``--events json``, printed by the CLI
and read by the Processing algorithms. Standard library only (the plugin imports it in QGIS), so
both sides read the same typed keys.
"""

from __future__ import annotations

from typing import TypedDict


class RasterizeResult(TypedDict):
    """``rasterize-labels``: the mask and what it holds."""

    output: str
    buildings: int
    building_pixels: int
    separation_pixels: int
    nodata_pixels: int
    width: int
    height: int
    crs: str


class TrainResult(TypedDict):
    """``train``: the model file, its report and the validation scores of the best epoch."""

    output: str
    report: str
    best_epoch: int
    threshold: float
    metrics: dict[str, float]  # iou, f1, precision, recall, accuracy at ``threshold``
    epochs_run: int
    train_windows: int
    val_windows: int
    weights_sha256: str  # of the best weights (equal on every rank of a torchrun run)
    ranks: int  # processes that trained together (torchrun's world size, else 1)
    precision: str  # what the training steps ran in: "bf16", "fp16" (autocast) or "fp32"
    # validation record (val_iou, val_building_f1, ...) of the starting model of a
    # fine-tuning (None otherwise), and of the best epoch, scored alike
    before: dict[str, float] | None
    after: dict[str, float]


class ImproveResult(TypedDict):
    """``improve``: the improved model, its report, and the held-back part's scores before
    (the starting model) and after."""

    output: str
    report: str
    start_model: str
    before: dict[str, float]
    after: dict[str, float]
    improved: bool  # the building F1 (else IoU) on the held-back part went up
    epochs_run: int
    minutes: float
    train_windows: int
    val_windows: int
    buildings: int  # corrected buildings used


class PredictResult(TypedDict):
    """``predict``: the probability GeoTIFF and how the run went."""

    output: str
    width: int
    height: int
    windows: int
    windows_total: int
    window: int  # prediction window side (px)
    batch_size: int
    streams: int  # windows predicted at once (model threads)
    predicted_megapixels: float  # window pixels the model saw, overlap included
    device: str
    runtime: str  # torch or onnx
    precision: str  # fp32 or bf16
    seconds: float
    megapixels_per_second: float
    resampled: bool
    model_grid: list[int]  # width, height of the part of the model's grid predicted
    classes: list[str]


class VectorizeResult(TypedDict):
    """``vectorize``: the polygon layer and its buildings."""

    output: str
    buildings: int
    total_area_m2: float


class DetectResult(TypedDict):
    """``detect``: the polygon layer, the kept probability (or None) and how the run went."""

    output: str
    buildings: int
    low_confidence: int  # buildings marked low_confidence = 1
    total_area_m2: float
    probability: str | None
    threshold: float
    width: int
    height: int
    windows: int
    window: int  # prediction window side (px)
    batch_size: int
    streams: int  # windows predicted at once (model threads)
    predicted_megapixels: float  # window pixels the model saw, overlap included
    device: str
    runtime: str  # torch or onnx
    precision: str  # fp32 or bf16
    seconds: float
    megapixels_per_second: float
    resampled: bool
    score_mean: float | None


class EvaluateResult(TypedDict):
    """``evaluate``: pixel and per-building scores, with what they were computed on."""

    pixel: dict[str, float]
    object: dict[str, float]
    predicted: int
    reference: int
    pixel_counts: dict[str, int]
    iou_threshold: float
    resolution_m: float
    working_crs: str
    output: str | None
    report: str | None
    pixel_precision: float
    pixel_recall: float
    pixel_f1: float
    pixel_iou: float
    pixel_accuracy: float
    object_precision: float
    object_recall: float
    object_f1: float
    merges: int  # predictions holding most of two or more reference buildings
    splits: int  # reference buildings holding most of two or more predictions
    false_causes: dict[str, int]  # false predictions by why: merge, split, extra, outline
    missed_causes: dict[str, int]  # missed references by why: merge, split, missed, outline
    reference_shift: ReferenceShift | None  # with max_shift_m: the move applied
    clip_to_area: bool  # buildings cut at the area's edge, their parts inside scored


class ReferenceShift(TypedDict):
    """How ``evaluate`` moved the reference to line it up with the prediction."""

    east_m: float
    north_m: float
    max_shift_m: float
    pixel_iou_unshifted: float
    pixel_iou_shifted: float


class ModelInfoResult(TypedDict):
    """``model-info``: the model file and its spec (the fields of ``ModelSpec``, e.g.
    ``resolution_m``, ``bands``, ``tile_size``)."""

    model: str
    spec: dict[str, object]


class ExportResult(TypedDict):
    """``export``: the ONNX file and how faithful it is."""

    output: str
    model: str
    max_difference: float  # largest probability difference from torch on the probe
    megabytes: float
